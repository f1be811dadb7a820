"""The messages cellbench sends, one function per event, each called with one line from where the
event happens (in its transaction).

Where blinded and unblinded readers may learn different things, an event queues two messages. The
blinded builders are never handed an arm, a held-kit count or a kit list, so what they write cannot
differ between an active and a placebo kit (tests/notifications check it byte for byte):

* emergency unblinding: the arm to the sponsor's emergency contact and unblinded supply and QA; to
  the site's investigators and monitors, that the participant was unblinded, when, by whom and the
  reason's category (not the free text, which may describe the treatment's effects);
* kit quarantine: the number, cause, lot, policy and kit list to supply and QA; to each site where
  kits are held, only "temporarily unavailable pending a quality review" (the hold takes both arms
  at every place, supply/quarantine.py, so neither its presence nor its words tell an arm);
* "no kit": to supply at once, with the arm; nothing to blinded roles, whose refusal reads the same
  for both arms (a message to them would add nothing but a time to correlate);
* resupply proposed: to supply only (per-arm figures; the pharmacist never sees them);
* shipments dispatched, received and held on receipt: blinded, since both arms travel alike.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

from sqlalchemy import select
from sqlmodel import Session, col

from .. import clock, studies
from ..audit import Actor
from ..models import Kit, Notification, Participant, Role, Shipment, ShipmentKit, Site, Study, saved_id
from .queue import BLINDED, UNBLINDED, addresses, queue

SUPPLY = (Role.supply_manager,)
SUPPLY_AND_QA = (Role.supply_manager, Role.qa)
CONFIDENTIAL = ("CONFIDENTIAL: this message reveals a treatment allocation. Do not forward it to blinded trial "
                "staff.")


def _when(moment: datetime | None, site: Site | None) -> str:
    return f"{clock.local_text(moment, clock.zone(site), clock.MINUTES)} (the site's time)"


def _study_line(study: Study) -> str:
    return f"Study: {study.code} ({study.short_title})"


def arm_name(study: Study, arm: str) -> str:
    return next((a.name for a in studies.definition(study).arms if a.code == arm), arm)


# --- emergency unblinding -------------------------------------------------------------------------


def emergency_unblinding(session: Session, actor: Actor, *, study: Study, site: Site | None, participant: Participant,
                         at: datetime, reason_label: str, reason: str, by_name: str, by_username: str, arm: str,
                         count: int) -> Notification:
    """The sponsor's message (returned) and the site's blinded notice."""
    subject = f"Emergency unblinding: {study.code} participant {participant.randomisation_number}"
    lines = [
        f"An investigator broke the blind for one participant of {study.code} ({study.short_title}).",
        "",
        f"Participant: {participant.randomisation_number} (screening {participant.screening_number})",
        f"Site: {site.code}, {site.name}" if site else "Site: unknown",
        f"Unblinded by: {by_name} ({by_username})",
        f"When: {_when(at, site)}",
        f"Reason: {reason_label}: {reason}",
        f"Arm: {arm} ({arm_name(study, arm)})",
    ]
    if count > 1:
        lines.append(f"This is unblinding {count} of this participant.")
    lines += ["", "Which other participants' arms this makes certain or more probable (randomisation block-mates, "
                  "shared blinded lots and shipments) is assessed from the sealed lists by the unblinded QA or "
                  "supply team and follows in a separate message.", "", CONFIDENTIAL]
    scope = {"study_id": saved_id(study), "site_id": site.id if site else None}
    note = queue(session, actor, kind="emergency_unblinding", audience=UNBLINDED, subject=subject,
                 body="\n".join(lines), to=[study.emergency_email, *addresses(session, SUPPLY_AND_QA)], **scope)
    blinded = [
        f"Participant {participant.randomisation_number} of {study.code} was unblinded in an emergency.",
        "",
        _study_line(study),
        f"Site: {site.code}, {site.name}" if site else "Site: unknown",
        f"Unblinded by: {by_name}",
        f"When: {_when(at, site)}",
        f"Reason category: {reason_label}",
        "",
        "The arm is not in this message: it was shown once to the investigator who unblinded and sent to the "
        "sponsor's emergency contact. Everyone else stays blinded; record follow-up in the participant's file.",
    ]
    queue(session, actor, kind="emergency_unblinding", audience=BLINDED, subject=subject, body="\n".join(blinded),
          to=addresses(session, (Role.investigator, Role.monitor), **scope), **scope)
    return note


def unblinding_impact(session: Session, actor: Actor, *, study: Study, site_id: int | None, subject: str,
                      body: str) -> Notification:
    """What an unblinding makes inferable (unblinding_impact.py writes it): to the sponsor only."""
    return queue(session, actor, kind="unblinding_impact", audience=UNBLINDED, subject=subject, body=body,
                 to=[study.emergency_email], study_id=saved_id(study), site_id=site_id)


# --- kit quarantine -------------------------------------------------------------------------------

QUARANTINE_NOTICE = (
    "Some kits of {study} at {site} are temporarily unavailable pending a quality review.\n\n"
    "They show as temporarily unavailable on the stock page and cannot be assigned or dispensed until the review "
    "ends. Other kits are assigned to visits where there are any. Nothing needs doing at the site; keep the kits "
    "where they are stored.")


def _sites_holding(session: Session, kits: Sequence[Kit]) -> list[int]:
    """The sites whose people see the hold: kits in their stock, or on their way to them."""
    ids = [saved_id(kit) for kit in kits]
    on_the_way = session.scalars(select(col(Shipment.site_id)).join(ShipmentKit, col(ShipmentKit.shipment_id)
                                                                    == col(Shipment.id))
                                 .where(col(ShipmentKit.kit_id).in_(ids), col(ShipmentKit.received_at).is_(None),
                                        col(Shipment.dispatched_at).is_not(None)))
    return sorted({kit.site_id for kit in kits if kit.site_id} | set(on_the_way))


def kits_quarantined(session: Session, actor: Actor, *, study: Study, number: str, cause: str, lot: str | None,
                     policy: str, reason: str, kits: Sequence[Kit]) -> list[Notification]:
    """Supply and QA: the whole quarantine. Each site holding some of its kits: the blinded notice."""
    listed = [f"- {kit.number} ({kit.location})" for kit in sorted(kits, key=lambda k: k.number)]
    body = "\n".join([
        f"Kit quarantine {number} is open: {len(kits)} kits of {study.code} are held, both arms.", "",
        _study_line(study), f"Cause: {cause}" + (f" (lot {lot})" if lot else ""), f"Reason: {reason}",
        f"Policy: {policy}", "", "Kits held:", *listed, "",
        "QA lifts or withdraws it, signed, on the kit quarantine's page.", "",
        "CONFIDENTIAL: the number and the list of held kits are for unblinded staff only."])
    sent = [queue(session, actor, kind="kit_quarantine", audience=UNBLINDED,
                  subject=f"Kit quarantine {number}: {len(kits)} kits of {study.code} held", body=body,
                  to=addresses(session, SUPPLY_AND_QA), study_id=saved_id(study))]
    for site_id in _sites_holding(session, kits):
        site = session.get(Site, site_id)
        assert site is not None
        sent.append(queue(session, actor, kind="kit_quarantine", audience=BLINDED,
                          subject=f"{study.code}: kits at {site.code} temporarily unavailable",
                          body=QUARANTINE_NOTICE.format(study=study.code, site=f"{site.code} ({site.name})"),
                          to=addresses(session, (Role.pharmacist,), site_id=site_id, study_id=saved_id(study)),
                          study_id=saved_id(study), site_id=site_id))
    return sent


# --- "no kit" and resupply: supply only -----------------------------------------------------------


def no_kit(session: Session, actor: Actor, *, study: Study, site_id: int, participant: str, arm: str,
           in_date_on: date, requirement: str | None = None) -> Notification:
    """A visit found no kit of the participant's arm at the site: supply is told at once, with the
    arm (the sealed compartment calls this where it records the shortage)."""
    site = session.get(Site, site_id)
    where = f"{site.code} ({site.name})" if site else str(site_id)
    lines = [f"A visit at {where} found no kit for participant {participant} of {study.code}.", "",
             _study_line(study), f"Arm: {arm} ({arm_name(study, arm)})",
             f"A kit must be in date until: {in_date_on.isoformat()}"]
    if requirement:
        lines.append(f"Also required: {requirement}")
    lines += ["", "The pharmacist was told that no kit is available, in words the same for both arms. Ship kits of "
                  "this arm to the site, and acknowledge the shortage on the supply page.", "", CONFIDENTIAL]
    return queue(session, actor, kind="no_kit", audience=UNBLINDED,
                 subject=f"No kit: {study.code} participant {participant} at {site.code if site else site_id}",
                 body="\n".join(lines), to=addresses(session, SUPPLY), study_id=saved_id(study), site_id=site_id)


def resupply_proposed(session: Session, actor: Actor, *, study: Study, site: Site, proposal: str,
                      kits_by_arm: Mapping[str, int], reasons: Sequence[str] = (),
                      url: str | None = None) -> Notification:
    """A resupply shipment proposed for a site: to supply, with the kits picked per arm."""
    lines = [f"Resupply {proposal} is proposed for {site.code} ({site.name}) in {study.code}.", "",
             _study_line(study), "Kits picked per arm:"]
    lines += [f"- {arm_name(study, arm)}: {n}" for arm, n in sorted(kits_by_arm.items())]
    lines += [f"Total: {sum(kits_by_arm.values())}"]
    if reasons:
        lines += ["", "Why:", *[f"- {why}" for why in reasons]]
    if url:
        lines += ["", f"Review and approve it: {url}"]
    lines += ["", "CONFIDENTIAL: per-arm figures are for unblinded supply staff only."]
    return queue(session, actor, kind="resupply_proposed", audience=UNBLINDED,
                 subject=f"Resupply proposed: {study.code} to {site.code}", body="\n".join(lines),
                 to=addresses(session, SUPPLY), study_id=saved_id(study), site_id=saved_id(site))


# --- shipments: blinded (both arms travel alike) --------------------------------------------------


def shipment_dispatched(session: Session, actor: Actor, shipment: Shipment, site: Site, kit_count: int) -> Notification:
    study = session.get(Study, shipment.study_id)
    assert study is not None
    body = "\n".join([
        f"Shipment {shipment.number} of {study.code} is on its way to {site.code} ({site.name}).", "",
        _study_line(study), f"Kits: {kit_count}", f"Dispatched: {_when(shipment.dispatched_at, site)}",
        f"Dry shipper: {shipment.shipper_id}", f"Seal: {shipment.seal_number}",
        f"Temperature logger: {shipment.logger_id}", "",
        "On arrival, check the seal, scan every kit out of the dry shipper and record the logger's readings."])
    return queue(session, actor, kind="shipment_dispatched", audience=BLINDED,
                 subject=f"Shipment {shipment.number} dispatched to {site.code}", body=body,
                 to=addresses(session, (Role.pharmacist,), site_id=site.id, study_id=study.id),
                 study_id=study.id, site_id=site.id)


def shipment_received(session: Session, actor: Actor, shipment: Shipment, site: Site, problems: Sequence[str],
                      kit_count: int) -> Notification:
    """Received into stock (to supply), or held on receipt for a failed check, a temperature
    excursion among them (to QA, supply and the site's pharmacists): every kit alike."""
    study = session.get(Study, shipment.study_id)
    assert study is not None
    scope = {"study_id": study.id, "site_id": site.id}
    logger = ("no temperature record" if shipment.logger_min is None
              else f"{shipment.logger_min:g} to {shipment.logger_max:g} °C")
    facts = [_study_line(study), f"Received: {_when(shipment.received_at, site)}", f"Kits scanned: {kit_count}",
             f"Seal: {'intact' if shipment.seal_intact else 'not intact'}", f"Logger: {logger}",
             f"Transit: {shipment.transit_minutes} minutes"]
    if not problems:
        return queue(session, actor, kind="shipment_received", audience=BLINDED,
                     subject=f"Shipment {shipment.number} received at {site.code}",
                     body="\n".join([f"Shipment {shipment.number} was received at {site.code} ({site.name}) and its "
                                     "kits are in the site's stock.", "", *facts]),
                     to=addresses(session, SUPPLY), **scope)
    body = "\n".join([
        f"Shipment {shipment.number} failed its receipt check at {site.code} ({site.name}) and is held, every kit "
        "in it, for QA's assessment.", "", "Problems:", *[f"- {why}" for why in problems], "", *facts, "",
        "Keep the kits in storage and do not dispense them: they show as held until QA accepts or rejects the "
        "shipment."])
    return queue(session, actor, kind="receipt_excursion", audience=BLINDED,
                 subject=f"Shipment {shipment.number} held on receipt at {site.code}", body=body,
                 to=addresses(session, (Role.pharmacist, *SUPPLY_AND_QA), **scope), **scope)
