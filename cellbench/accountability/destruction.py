"""Destruction of kits, in two signed halves, and its certificate.

Destruction has two signed halves: the sponsor (supply manager) authorises chosen kits at a place,
which is refused unless the latest count of each of their blinded lots there balanced and was made
after the last change of those kits; then the person at that place records method, date and
witness, the kits move to "destroyed" with a custody event each, and a certificate can be printed.

Nothing here depends on an arm: kit numbers, blinded lots, states and places only, so the pharmacist
and the monitor read it and it never imports `sealed`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlmodel import Session

from .. import audit, clock, custody, kits, signatures, users
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    AuditEvent,
    BlindedLot,
    Destruction,
    DestructionKit,
    Kit,
    KitState,
    Meaning,
    Reconciliation,
    Role,
    Signature,
    Site,
    Study,
    User,
)
from .site import expected_of, latest_reconciliation, place_filter, place_key, place_name, require_at

AUTHORISERS = (Role.supply_manager,)
DESTROYABLE = kits.MOVES["destroy"].sources


def destroyable_kits(session: Session, study: Study, site: Site | None) -> list[Kit]:
    """Kits at the place that may be destroyed and are in no open authorisation."""
    open_ids = (select(DestructionKit.kit_id).join(Destruction, Destruction.id == DestructionKit.destruction_id)
                .where(Destruction.state == "authorised"))
    return list(session.scalars(select(Kit).where(Kit.study_id == study.id, place_filter(Kit, site),
                                                  Kit.state.in_([s.value for s in DESTROYABLE]),
                                                  Kit.id.not_in(open_ids)).order_by(Kit.number)))


def _last_change(session: Session, kit_list: list[Kit]) -> datetime | None:
    return session.scalar(select(func.max(AuditEvent.at)).where(AuditEvent.entity_type == "kit",
                                                                 AuditEvent.field == "state",
                                                                 AuditEvent.entity_id.in_([k.number for k in kit_list])))


def destruction_blocked(session: Session, study: Study, site: Site | None, kit_list: list[Kit]) -> str | None:
    """Why these kits may not be authorised for destruction yet, or None: each blinded lot they come
    from needs a balanced count at this place, made after the last change of its kits here."""
    by_lot: dict[int, list[Kit]] = defaultdict(list)
    for kit in kit_list:
        by_lot[kit.blinded_lot_id].append(kit)
    where = place_name(site)
    for lot_id in sorted(by_lot, key=lambda i: session.get(BlindedLot, i).code if i else ""):
        blinded = session.get(BlindedLot, lot_id) if lot_id else None
        if blinded is None:
            return "A kit without a blinded lot cannot be reconciled, so it cannot be destroyed."
        rec = latest_reconciliation(session, study, site, blinded)
        if rec is None:
            return f"Blinded lot {blinded.code} has not been counted at {where}: reconcile it first."
        if not rec.balanced:
            return (f"The latest count of blinded lot {blinded.code} at {where} found {rec.counted_in_stock} kits "
                    f"where cellbench expected {expected_of(rec).get('on_hand')}: record a balanced count first.")
        changed = _last_change(session, by_lot[lot_id])
        if changed is not None and changed >= rec.at:
            return (f"Kits of blinded lot {blinded.code} changed at {where} after the last count "
                    f"({rec.at:%Y-%m-%d %H:%M} UTC): count again.")
    return None


def _next_number(session: Session) -> str:
    prefix = f"DS-{utcnow():%Y}-"
    last = session.scalar(select(func.max(Destruction.number)).where(Destruction.number.like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


def kits_of(session: Session, destruction: Destruction) -> list[Kit]:
    return list(session.scalars(select(Kit).join(DestructionKit, DestructionKit.kit_id == Kit.id)
                                .where(DestructionKit.destruction_id == destruction.id).order_by(Kit.number)))


@signatures.content_rule("destruction_authorisation")
def _authorisation_content(session: Session, destruction_id: str) -> dict:
    d = session.get(Destruction, int(destruction_id))
    if d is None:
        raise NotFound("No such destruction.")
    site = session.get(Site, d.site_id) if d.site_id else None
    return {"number": d.number, "study": session.get(Study, d.study_id).code, "place": place_key(site),
            "kits": [k.number for k in kits_of(session, d)], "authorised_by": d.authorised_by,
            "authorised_at": d.authorised_at}


@signatures.content_rule("destruction")
def _destruction_content(session: Session, destruction_id: str) -> dict:
    d = session.get(Destruction, int(destruction_id))
    if d is None:
        raise NotFound("No such destruction.")
    return {"number": d.number, "kits": [k.number for k in kits_of(session, d)], "method": d.method,
            "destroyed_on": d.destroyed_on, "witness": d.witness, "destroyed_by": d.destroyed_by}


def _kit_numbers(values: object) -> list[str]:
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    numbers = [str(v).strip() for v in (values or []) if str(v).strip()]
    if not numbers:
        raise InvalidInput("Choose the kits to destroy.", field="kits")
    return numbers


def authorise(session: Session, user: User, password: str | None, study: Study, site: Site | None,
              kit_numbers: object) -> Destruction:
    """The sponsor's signed authorisation to destroy these kits at this place."""
    actor = users.actor(session, user)
    users.require_role(actor, *AUTHORISERS)
    chosen: dict[int, Kit] = {}
    for number in _kit_numbers(kit_numbers):
        kit = kits.by_number(session, number, field="kits")
        if kit.study_id != study.id:
            raise InvalidInput(f"Kit {kit.number} is not of {study.code}.", field="kits")
        if kit.site_id != (site.id if site else None):
            raise InvalidInput(f"Kit {kit.number} is not at {place_name(site)}.", field="kits")
        if KitState(kit.state) not in DESTROYABLE:
            raise InvalidInput(f"Kit {kit.number} is {kits.state_label(kit.state).lower()}: only withdrawn, returned, "
                               "not administered or damaged kits are destroyed.", field="kits")
        chosen[kit.id] = kit
    kit_list = sorted(chosen.values(), key=lambda k: k.number)
    # Two authorisations of one kit at the same moment: the second waits here, then finds the first.
    session.execute(select(Kit.id).where(Kit.id.in_(list(chosen))).order_by(Kit.id).with_for_update())
    taken = session.scalars(select(Kit.number).join(DestructionKit, DestructionKit.kit_id == Kit.id)
                            .join(Destruction, Destruction.id == DestructionKit.destruction_id)
                            .where(Destruction.state == "authorised", Kit.id.in_(list(chosen))).order_by(Kit.number)).first()
    if taken is not None:
        raise InvalidInput(f"Kit {taken} is already authorised for destruction.", field="kits")
    if why := destruction_blocked(session, study, site, kit_list):
        raise InvalidInput(f"Destruction cannot be authorised yet. {why}", field="kits")
    d = Destruction(number=_next_number(session), study_id=study.id, site_id=site.id if site else None,
                    state="authorised", kit_count=len(kit_list), authorised_by=user.id, authorised_at=utcnow())
    session.add(d)
    session.flush()
    session.add_all(DestructionKit(destruction_id=d.id, kit_id=kit.id) for kit in kit_list)
    session.flush()
    d.authorisation_signature_id = signatures.sign(session, user, password or "", Meaning.approved,
                                                   "destruction_authorisation", str(d.id)).id
    audit.record(session, actor, "destruction authorised", "destruction", d.number, field="kits",
                 new=[k.number for k in kit_list], reason=f"{study.code}, {place_name(site)}")
    for kit in kit_list:
        audit.record(session, actor, "kit destruction authorised", "kit", kit.number, field="destruction",
                     new=d.number)
    session.flush()
    return d


def local_zone(session: Session, d: Destruction) -> ZoneInfo:
    """Where the kits were destroyed: the site's zone, or the cell bench's (the app's) zone."""
    return clock.zone(session.get(Site, d.site_id) if d.site_id else None)


def local_today(session: Session, d: Destruction) -> date:
    """Today as the people destroying the kits write the date, not the UTC date (which is
    yesterday's for an hour or two after midnight in Copenhagen)."""
    return utcnow().astimezone(local_zone(session, d)).date()


def _destroyed_on(value: object, authorised: datetime, zone: ZoneInfo) -> date:
    if isinstance(value, date):
        day = value
    else:
        try:
            day = date.fromisoformat(str(value or "").strip())
        except ValueError:
            raise InvalidInput("Give the date of destruction as YYYY-MM-DD.", field="destroyed_on") from None
    authorised_day = authorised.astimezone(zone).date()
    if day > utcnow().astimezone(zone).date():
        raise InvalidInput("The date of destruction cannot be in the future.", field="destroyed_on")
    if day < authorised_day:
        raise InvalidInput(f"The kits were authorised for destruction on {authorised_day:%Y-%m-%d}; they cannot "
                           "have been destroyed before.", field="destroyed_on")
    return day


def _text(value: str | None, field_name: str, label: str, limit: int = 200) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"Give the {label}.", field=field_name)
    if len(text) > limit:
        raise InvalidInput(f"The {label} is at most {limit} characters.", field=field_name)
    return text


def record_destruction(session: Session, user: User, password: str | None, d: Destruction, *, method: str | None,
                       destroyed_on: object, witness: str | None) -> Destruction:
    """The destruction carried out: method, date and witness, signed; the kits are destroyed."""
    actor = users.actor(session, user)
    site = session.get(Site, d.site_id) if d.site_id else None
    require_at(actor, site, "recording a destruction")
    if d.state != "authorised":
        raise InvalidInput(f"{d.number} is already {d.state}.", field="destruction")
    method = _text(method, "method", "method of destruction")
    witness = _text(witness, "witness", "witness's name")
    if witness.casefold() == user.full_name.casefold():
        raise InvalidInput("The witness is a second person, not the one who destroys the kits.", field="witness")
    day = _destroyed_on(destroyed_on, d.authorised_at, local_zone(session, d))
    changed = session.execute(update(Destruction).where(Destruction.id == d.id, Destruction.state == "authorised")
                              .values(state="destroyed", method=method, destroyed_on=day, witness=witness,
                                      destroyed_by=user.id))
    if changed.rowcount != 1:
        raise Conflict(f"Someone else recorded {d.number} at the same moment. Reload and check it.", field="destruction")
    session.refresh(d)
    where = place_name(site)
    for kit in kits_of(session, d):
        kits.move(session, actor, kit, "destroy", reason=f"destroyed under {d.number} ({method}), witness {witness}")
        custody.record(session, actor, kit, "destroyed", from_place=where, to_place=None,
                       condition=f"{method}; witness {witness}; {day.isoformat()}")
    d.signature_id = signatures.sign(session, user, password or "", Meaning.destroyed, "destruction", str(d.id)).id
    audit.record(session, actor, "destruction recorded", "destruction", d.number, field="state", old="authorised",
                 new="destroyed", reason=f"{method}, {day.isoformat()}, witness {witness}")
    session.flush()
    return d


def by_number(session: Session, number: str | None) -> Destruction:
    d = session.scalars(select(Destruction).where(Destruction.number == (number or "").strip().upper())).first()
    if d is None:
        raise NotFound(f"No destruction '{(number or '').strip()}'.", field="destruction")
    return d


def destructions(session: Session, study: Study | None = None, state: str | None = None, limit: int = 200) -> list[Destruction]:
    query = select(Destruction)
    if study is not None:
        query = query.where(Destruction.study_id == study.id)
    if state:
        query = query.where(Destruction.state == state)
    return list(session.scalars(query.order_by(Destruction.id.desc()).limit(limit)))


# --- the certificate ----------------------------------------------------------------------------------


@dataclass
class KitLine:
    number: str
    blinded_lot: str
    expiry: date | None
    state_before: str


@dataclass
class SignatureLine:
    label: str
    name: str
    meaning: str
    at: datetime


@dataclass
class CertificateData:
    number: str
    state: str
    study: Study
    place: str
    authorised_by: str
    authorised_at: datetime
    method: str | None
    destroyed_on: date | None
    witness: str | None
    destroyed_by: str | None
    kits: list[KitLine] = field(default_factory=list)
    counts: list[tuple[str, Reconciliation, str]] = field(default_factory=list)  # (blinded lot, count, by)
    signatures: list[SignatureLine] = field(default_factory=list)


def gather(session: Session, d: Destruction) -> CertificateData:
    """Everything the certificate prints, read once; nothing here depends on an arm."""
    study = session.get(Study, d.study_id)
    site = session.get(Site, d.site_id) if d.site_id else None
    names = {u.id: u.full_name for u in session.scalars(select(User))}
    lots = {b.id: b for b in session.scalars(select(BlindedLot).where(BlindedLot.study_id == study.id))}
    members = kits_of(session, d)
    before = dict(session.execute(select(AuditEvent.entity_id, AuditEvent.old_value)
                                  .where(AuditEvent.entity_type == "kit", AuditEvent.action == "kit destroy",
                                         AuditEvent.entity_id.in_([k.number for k in members]))).all())
    data = CertificateData(d.number, d.state, study, place_name(site), names.get(d.authorised_by, ""), d.authorised_at,
                           d.method, d.destroyed_on, d.witness, names.get(d.destroyed_by) if d.destroyed_by else None)
    for kit in members:
        blinded = lots.get(kit.blinded_lot_id)
        data.kits.append(KitLine(kit.number, blinded.code if blinded else "", blinded.expiry if blinded else None,
                                 before.get(kit.number) or kits.state_label(kit.state)))
    for lot_id in sorted({k.blinded_lot_id for k in members if k.blinded_lot_id}, key=lambda i: lots[i].code):
        rec = session.scalars(select(Reconciliation).where(Reconciliation.study_id == study.id,
                                                           Reconciliation.blinded_lot_id == lot_id,
                                                           place_filter(Reconciliation, site),
                                                           Reconciliation.at <= d.authorised_at)
                              .order_by(Reconciliation.at.desc()).limit(1)).first()
        if rec is not None:
            data.counts.append((lots[lot_id].code, rec, names.get(rec.by_user, "")))
    sig_ids = [d.authorisation_signature_id, d.signature_id] + [rec.signature_id for _, rec, _ in data.counts]
    sigs = {s.id: s for s in session.scalars(select(Signature).where(Signature.id.in_([i for i in sig_ids if i])))}
    labelled = [(f"Reconciliation of blinded lot {code}", rec.signature_id) for code, rec, _ in data.counts]
    labelled += [("Destruction authorised (sponsor)", d.authorisation_signature_id),
                 ("Destruction carried out", d.signature_id)]
    for label, sig_id in labelled:
        if sig := sigs.get(sig_id):
            data.signatures.append(SignatureLine(label, sig.signer_name, Meaning(sig.meaning).value, sig.at))
    return data


def certificate_pdf(data: CertificateData, *, zone, printed_by: str, printed_at: datetime) -> bytes:
    """The destruction certificate: which kits, where, how, when, witnessed by whom, and every
    signature with printed name, time and meaning. Blinded: kit numbers and blinded lots only."""
    from ..reports import certificate_start, local_time

    if data.state != "destroyed":
        raise InvalidInput(f"{data.number} is authorised but not carried out yet: there is no certificate.",
                           field="destruction")
    pdf = certificate_start(f"Destruction certificate — {data.number}", f"Destruction {data.number}",
                            "Investigational medicinal product destroyed after reconciliation and the sponsor's "
                            "written authorisation. ", zone=zone, printed_by=printed_by, printed_at=printed_at)
    study = data.study
    pdf.pairs([("Trial", f"{study.code} (EU CT {study.eu_ct_number}), {study.short_title}"),
               ("Sponsor", study.sponsor_name),
               ("Place of destruction", data.place),
               ("Kits destroyed", str(len(data.kits))),
               ("Method", data.method or ""),
               ("Date of destruction", data.destroyed_on.isoformat() if data.destroyed_on else ""),
               ("Destroyed by", data.destroyed_by or ""),
               ("Witness", data.witness or ""),
               ("Authorised by", f"{data.authorised_by}, {local_time(data.authorised_at, zone, '%Y-%m-%d %H:%M:%S')}")])
    pdf.heading("Kits")
    pdf.grid(("Kit number", "Blinded lot", "Blinded expiry", "State before destruction"), (40, 40, 30, 60),
             [[k.number, k.blinded_lot, k.expiry.isoformat() if k.expiry else "", k.state_before] for k in data.kits])
    pdf.heading("Reconciliation before authorisation")
    if data.counts:
        pdf.grid(("Blinded lot", "Counted on hand", "Expected", "Result", "Counted by", "Time"), (26, 22, 20, 22, 36, 40),
                 [[code, str(rec.counted_in_stock), str(expected_of(rec).get("on_hand")),
                   "balanced" if rec.balanced else "DISCREPANCY", by, local_time(rec.at, zone, "%Y-%m-%d %H:%M:%S")]
                  for code, rec, by in data.counts])
    else:
        pdf.line_of([("", "No count recorded.")])
    pdf.heading("Signatures")
    pdf.grid(("Signature", "Printed name", "Meaning", "Time"), (60, 45, 25, 50),
             [[s.label, s.name, s.meaning, local_time(s.at, zone, "%Y-%m-%d %H:%M:%S")] for s in data.signatures])
    return bytes(pdf.output())
