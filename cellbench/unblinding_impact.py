"""What an emergency unblinding really reveals: the participants whose arm it makes certain or more
probable, each with why and how strongly, and this participant's own kits. For unblinded roles and
the sponsor only.

The investigator's unblinding reaches the sealed compartment through its one door, which returns
that participant's arm and nothing else, so her request cannot work this out (and must not: the
block sizes stay sealed, and she must not be handed a list of whose arm she now knows). QA or the
supply manager reads it here, every sealed read logged under their name, and sends it to the
sponsor's emergency contact with one click; their work queue shows every unblinding whose impact
has not been sent.

Each channel is one function of `CHANNELS`; a new way to infer arms is one more. Strength is
judged for a reader who knows the revealed arm and the randomisation's block structure (block sizes
are sealed but easily guessed, and randomisation numbers run in list order), and who knows what
blinded staff see (kit numbers, blinded lots, shipments): the worst reader the sponsor must assume.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from sqlalchemy import select
from sqlmodel import Session, col

from . import audit, notifications, sealed, unblinding, users
from .audit import Actor
from .custody import fetch
from .errors import NotFound
from .models import (
    AuditEvent,
    BlindedLot,
    Kit,
    Notification,
    Participant,
    Role,
    Shipment,
    ShipmentKit,
    Site,
    Study,
    Unblinding,
    Visibility,
    Visit,
)

READERS = (Role.qa, Role.supply_manager)
NOTIFICATION_KIND = "unblinding_impact"
SENT = "unblinding impact sent"
CERTAIN, MORE_PROBABLE = "certain", "more probable"


@dataclass
class Impact:
    """`findings`: participants (one entry each, strongest first), `kits`: this participant's own kits,
    `notes`: what was looked at and revealed nothing, said so."""

    study: Study
    participant: Participant
    findings: list[dict] = field(default_factory=list)
    kits: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    _by_participant: dict[str, dict] = field(default_factory=dict, repr=False)

    def add(self, number: str, site: str, strength: str, why: str) -> None:
        # found by number, not by walking the findings: a block or a lot may name thousands
        entry = self._by_participant.get(number)
        if entry is not None:
            entry["why"].append(why)
            if strength == CERTAIN:
                entry["strength"] = CERTAIN
            return
        entry = {"participant": number, "site": site, "strength": strength, "why": [why]}
        self._by_participant[number] = entry
        self.findings.append(entry)

    def as_json(self) -> dict:
        order = sorted(self.findings, key=lambda e: (e["strength"] != CERTAIN, e["participant"]))
        return {"study": self.study.code, "participant": self.participant.randomisation_number, "findings": order,
                "kits": self.kits, "notes": self.notes}


Channel = Callable[[Session, Actor, Impact], None]


def _sites(session: Session, study: Study, numbers: list[str]) -> dict[str, str]:
    return dict(session.execute(select(col(Participant.randomisation_number), col(Site.code))
                                .join(Site, col(Site.id) == col(Participant.site_id))
                                .where(col(Participant.study_id) == study.id,
                                       col(Participant.randomisation_number).in_(numbers))).all())


def _share(p: Fraction) -> str:
    return f"{p.numerator} in {p.denominator}"


def block_mates(session: Session, actor: Actor, impact: Impact) -> None:
    """Permuted blocks: each block holds a fixed count of each arm, so every arm known in a block
    shifts the rest; a block of 2 gives its mate away, and each further unblinding in a block
    narrows what is left (or, when it evens the count out, takes a shift back)."""
    own = impact.participant.randomisation_number or ""
    mates = sealed.block_mates(session, actor, impact.study, own)
    sites = _sites(session, impact.study, [m["participant"] for m in mates])
    unchanged = []
    # every line of the block has the same known list: joined once, not once a line
    known_text = ", ".join(mates[0]["known"]) if mates else ""
    for mate in mates:
        now, before = mate["same_now"], mate["same_before"]
        known = f"; also known in the block: {known_text}" if known_text else ""
        where = f"block of {mate['block_size']} in the randomisation list{known}"
        if now in (0, 1):
            relation = "the same arm as" if now == 1 else "the other arm than"
            impact.add(mate["participant"], sites.get(mate["participant"], "not yet randomised"), CERTAIN,
                       f"{relation} {own}, certainly ({where})")
        elif now != before:
            relation, p, p0 = (("the same arm as", now, before) if now > before
                               else ("the other arm than", 1 - now, 1 - before))
            impact.add(mate["participant"], sites.get(mate["participant"], "not yet randomised"), MORE_PROBABLE,
                       f"{relation} {own}: {_share(p)} now, {_share(p0)} before ({where})")
        else:
            unchanged.append(mate["participant"])
    if unchanged:
        impact.notes.append(f"Block-mates {', '.join(unchanged)}: the arms known in their block are in its "
                            "allocation ratio, so nothing follows for them.")


def _holders(session: Session, study: Study, kit_ids: list[int], exclude: int | None) -> list[tuple[str, str, int]]:
    """(participant, site, kit id) for other participants whose visit holds one of these kits."""
    if not kit_ids:
        return []
    return [tuple(row) for row in session.execute(
        select(col(Participant.randomisation_number), col(Site.code), col(Visit.kit_id))
        .join(Visit, col(Visit.participant_id) == col(Participant.id))
        .join(Site, col(Site.id) == col(Participant.site_id))
        .where(col(Participant.study_id) == study.id, col(Participant.id) != exclude,
               col(Visit.kit_id).in_(kit_ids)))]


def shared_lots_and_shipments(session: Session, actor: Actor, impact: Impact) -> None:
    """A blinded lot or a shipment holding kits of both arms reveals nothing certain: its other
    kits' odds of this arm move by one kit in its count, and only for a reader who knows the sealed
    counts. One holding a single arm gives every other recipient away."""
    own = unblinding.kits_of_participant(session, impact.participant)
    own_ids = [kit.id for kit in own if kit.id is not None]
    if not own_ids:
        return
    groups: dict[str, list[int]] = {}
    for lot_id, code in session.execute(select(col(BlindedLot.id), col(BlindedLot.code))
                                        .where(col(BlindedLot.id).in_({k.blinded_lot_id for k in own}))):
        groups[f"blinded lot {code}"] = list(session.scalars(select(col(Kit.id))
                                                             .where(col(Kit.blinded_lot_id) == lot_id)))
    for shipment_id, number in session.execute(select(col(Shipment.id), col(Shipment.number))
                                               .join(ShipmentKit, col(ShipmentKit.shipment_id) == col(Shipment.id))
                                               .where(col(ShipmentKit.kit_id).in_(own_ids)).distinct()):
        groups[f"shipment {number}"] = list(session.scalars(select(col(ShipmentKit.kit_id))
                                                            .where(col(ShipmentKit.shipment_id) == shipment_id)))
    arms = sealed.arms_of_kits(session, actor, {i for ids in groups.values() for i in ids} | set(own_ids),
                               why="unblinding impact")
    arm = arms.get(own_ids[0])
    numbers = dict(session.execute(select(col(Kit.id), col(Kit.number))
                                   .where(col(Kit.id).in_({i for ids in groups.values() for i in ids}))).all())
    for name, ids in sorted(groups.items()):
        others = _holders(session, impact.study, ids, impact.participant.id)
        same = sum(1 for i in ids if arms.get(i) == arm)
        if same == len(ids):
            for number, site, kit_id in others:
                impact.add(number, site, CERTAIN, f"the same arm as {impact.participant.randomisation_number}, "
                           f"certainly: kit {numbers[kit_id]} is from {name}, which holds kits of one arm only")
        elif others:
            impact.notes.append(
                f"{name[0].upper()}{name[1:]} holds kits of both arms: nothing certain follows for the "
                f"{len(others)} other participant(s) given its kits; to a reader who knew its sealed counts, each "
                f"other kit's chance of this arm would fall from {same} in {len(ids)} to {same - 1} in {len(ids) - 1}.")


def own_kits(session: Session, actor: Actor, impact: Impact) -> None:
    """This participant's kits (every treatment, replaced ones included) are of the revealed arm;
    anyone else who was later given one of them is too."""
    own = unblinding.kits_of_participant(session, impact.participant)
    by_id = {kit.id: kit.number for kit in own if kit.id is not None}
    current = dict(session.execute(select(col(Visit.kit_id), col(Visit.treatment))
                                   .where(col(Visit.participant_id) == impact.participant.id)).all())
    for kit in own:
        when = f"treatment {current[kit.id]}" if kit.id in current else "replaced at one of its visits"
        impact.kits.append({"kit": kit.number, "strength": CERTAIN, "why": f"this participant's own kit ({when})"})
    for number, site, kit_id in _holders(session, impact.study, list(by_id), impact.participant.id):
        impact.add(number, site, CERTAIN, f"the same arm as {impact.participant.randomisation_number}, certainly: "
                   f"given kit {by_id[kit_id]}, which was first this participant's")


def assignment_order(session: Session, actor: Actor, impact: Impact) -> None:
    """Nothing: the kit for a visit is drawn uniformly at random among the eligible kits of the arm
    (sealed.assign_kit, issue 12), so which kits were passed over says nothing about their arms.
    While kits were handed out in a fixed order (earliest expiry, then kit number) every kit at the
    site ordered before this participant's was of the other arm; if an order ever comes back, its
    channel is counted here."""
    return None


CHANNELS: tuple[Channel, ...] = (block_mates, shared_lots_and_shipments, own_kits, assignment_order)


def assess(session: Session, actor: Actor, study: Study, participant_number: str | None) -> Impact:
    """The impact of the participant's unblinding, as of now (later unblindings in the same block
    and later dispensing count)."""
    users.require_role(actor, *READERS)
    participant = unblinding.participant_by_number(session, study, participant_number)
    if participant.unblinded_at is None:
        raise NotFound(f"Participant {participant.randomisation_number} has not been unblinded.", field="participant")
    impact = Impact(study, participant)
    for channel in CHANNELS:
        channel(session, actor, impact)
    return impact


def body(impact: Impact, actor: Actor) -> str:
    data = impact.as_json()
    lines = [f"What the emergency unblinding of {data['participant']} ({data['study']}) reveals, as assessed by "
             f"{actor.name} from the sealed randomisation and kit lists.", "",
             "Participants whose arm is now certain or more probable:"]
    lines += [f"- {e['participant']} ({e['site']}): {e['strength']}: {'; '.join(e['why'])}"
              for e in data["findings"]] or ["- none"]
    lines += ["", "This participant's kits (of the revealed arm):"]
    lines += [f"- {k['kit']}: {k['why']}" for k in data["kits"]] or ["- none"]
    if data["notes"]:
        lines += ["", "Looked at, and nothing follows:"] + [f"- {note}" for note in data["notes"]]
    lines += ["", "CONFIDENTIAL: this message reveals treatment allocations. Do not forward it to blinded trial staff."]
    return "\n".join(lines)


def send(session: Session, actor: Actor, study: Study, participant_number: str | None) -> Notification:
    """Queue the impact for the sponsor's emergency contact, and record what was sent."""
    impact = assess(session, actor, study, participant_number)
    latest = session.scalars(select(Unblinding).where(col(Unblinding.participant_id) == impact.participant.id)
                             .order_by(col(Unblinding.id).desc())).first()
    row = fetch(session, Unblinding, latest.id if latest else None, "unblinding")
    note = notifications.unblinding_impact(
        session, actor, study=study, site_id=impact.participant.site_id,
        subject=f"Emergency unblinding impact: {study.code} participant {impact.participant.randomisation_number}",
        body=body(impact, actor))
    audit.record(session, actor, SENT, "unblinding", row.id, field="impact", new=impact.as_json(),
                 reason=f"notification {note.id} to {note.to_address}", visibility=Visibility.unblinded)
    return note


def sent(session: Session, unblinding_ids: list[int]) -> list[AuditEvent]:
    """The impacts sent for these unblindings, newest first."""
    return list(session.scalars(select(AuditEvent).where(
        col(AuditEvent.action) == SENT, col(AuditEvent.entity_type) == "unblinding",
        col(AuditEvent.entity_id).in_([str(i) for i in unblinding_ids])).order_by(col(AuditEvent.seq).desc())))


def awaiting(session: Session) -> list[unblinding.Record]:
    """Participants whose latest unblinding's impact has not been sent to the sponsor yet."""
    done = {int(i) for i in session.scalars(select(col(AuditEvent.entity_id)).where(
        col(AuditEvent.action) == SENT, col(AuditEvent.entity_type) == "unblinding")) if i.isdigit()}
    latest: dict[tuple[str, str], unblinding.Record] = {}
    for record in unblinding.records(session):  # newest first
        latest.setdefault((record.study, record.participant), record)
    return [r for r in latest.values() if r.id not in done]
