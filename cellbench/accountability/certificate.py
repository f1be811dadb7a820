"""The destruction certificate: which kits, where, how, when, witnessed by whom, and every signature
with printed name, time and meaning. Blinded: kit numbers and blinded lots only, so it never
imports `sealed` and everyone who reads accountability may print it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session, col

from .. import clock, kits, pagination
from ..audit import Actor
from ..clock import utcnow
from ..db import Database
from ..errors import InvalidInput
from ..models import (
    AuditEvent,
    BlindedLot,
    Destruction,
    DestructionKit,
    Kit,
    Meaning,
    Reconciliation,
    Signature,
    Site,
    Study,
    User,
)
from ..reports import certificate_start
from .destruction import DestructionState, by_number, destruction_kits, site_of
from .site import expected_of, place_filter, place_name, study_of


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
    kit_count: int = 0  # all the destruction's kits; `kits` may be one page of them (kits_next: the next)
    kits_next: str | None = None
    kits: list[KitLine] = field(default_factory=list)
    counts: list[tuple[str, Reconciliation, str]] = field(default_factory=list)  # (blinded lot, count, by)
    signatures: list[SignatureLine] = field(default_factory=list)


def gather(session: Session, d: Destruction, kits_page: pagination.Ask | None = None) -> CertificateData:
    """Everything the certificate prints, read once; nothing here depends on an arm. With
    `kits_page`, one page of the kits (by number) and `kits_next` for the next: a page shows the
    count and pages the kits; the certificate lists them all. Only the rows of this destruction
    are read (its kits, their blinded lots, their counts, the people who signed): reading every
    blinded lot of the study and every user made the page grow with the years (issue 18)."""
    study = study_of(session, d.study_id)
    site = site_of(session, d)
    found = destruction_kits(session, d, kits_page)
    members = found.rows
    numbers = [k.number for k in members]
    before: dict[str, str | None] = dict(session.execute(  # the state each kit was destroyed from
        select(col(AuditEvent.entity_id), col(AuditEvent.old_value))
        .where(col(AuditEvent.entity_type) == "kit", col(AuditEvent.action) == "kit destroy",
               col(AuditEvent.entity_id).in_(numbers))).all()) if numbers else {}
    lots = {b.id: b for b in session.scalars(select(BlindedLot).where(
        col(BlindedLot.id).in_(_blinded_lot_ids(session, d))))}
    counts = _latest_counts(session, d, study, site, [i for i in lots if i is not None])
    people = {d.authorised_by, d.destroyed_by} | {rec.by_user for rec in counts.values()}
    names = dict(session.execute(select(col(User.id), col(User.full_name))
                                 .where(col(User.id).in_([i for i in people if i is not None]))).all())
    data = CertificateData(d.number, d.state, study, place_name(site), names.get(d.authorised_by, ""), d.authorised_at,
                           d.method, d.destroyed_on, d.witness, names.get(d.destroyed_by) if d.destroyed_by else None,
                           kit_count=d.kit_count, kits_next=found.next)
    for kit in members:
        blinded = lots.get(kit.blinded_lot_id)
        data.kits.append(KitLine(kit.number, blinded.code if blinded else "", blinded.expiry if blinded else None,
                                 before.get(kit.number) or kits.state_label(kit.state)))
    for lot_id in sorted(counts, key=lambda i: lots[i].code):
        rec = counts[lot_id]
        data.counts.append((lots[lot_id].code, rec, names.get(rec.by_user, "")))
    sig_ids = [d.authorisation_signature_id, d.signature_id] + [rec.signature_id for _, rec, _ in data.counts]
    sigs = {s.id: s for s in session.scalars(select(Signature).where(col(Signature.id).in_([i for i in sig_ids if i])))}
    labelled = [(f"Reconciliation of blinded lot {code}", rec.signature_id) for code, rec, _ in data.counts]
    labelled += [("Destruction authorised (sponsor)", d.authorisation_signature_id),
                 ("Destruction carried out", d.signature_id)]
    for label, sig_id in labelled:
        if sig := sigs.get(sig_id):
            data.signatures.append(SignatureLine(label, sig.signer_name, Meaning(sig.meaning).value, sig.at))
    return data


def _blinded_lot_ids(session: Session, d: Destruction) -> list[int]:
    """The blinded lots of all the destruction's kits (not only the page's: the counts are of them all)."""
    return list(session.scalars(select(col(Kit.blinded_lot_id)).distinct()
                                .join(DestructionKit, col(DestructionKit.kit_id) == col(Kit.id))
                                .where(col(DestructionKit.destruction_id) == d.id,
                                       col(Kit.blinded_lot_id).is_not(None))))


def _latest_counts(session: Session, d: Destruction, study: Study, site: Site | None,
                   lot_ids: list[int]) -> dict[int, Reconciliation]:
    """The latest count of each of these blinded lots at the place before the authorisation, in
    one read (a lot's counts are few: one per count made, newest first per lot)."""
    latest: dict[int, Reconciliation] = {}
    if not lot_ids:
        return latest
    for rec in session.scalars(select(Reconciliation).where(col(Reconciliation.study_id) == study.id,
                                                            col(Reconciliation.blinded_lot_id).in_(lot_ids),
                                                            place_filter(Reconciliation, site),
                                                            col(Reconciliation.at) <= d.authorised_at)
                               .order_by(col(Reconciliation.blinded_lot_id), col(Reconciliation.at).desc(),
                                         col(Reconciliation.id).desc())):
        latest.setdefault(rec.blinded_lot_id, rec)
    return latest


def certificate_pdf(data: CertificateData, *, zone: ZoneInfo, printed_by: str, printed_at: datetime) -> bytes:
    """The destruction certificate: which kits, where, how, when, witnessed by whom, and every
    signature with printed name, time and meaning. Blinded: kit numbers and blinded lots only."""
    if data.state != DestructionState.destroyed.value:
        raise InvalidInput(f"{data.number} is authorised but not carried out yet: there is no certificate.",
                           field="destruction")

    def local(moment: datetime) -> str:
        return clock.local_text(moment, zone, clock.SECONDS)

    pdf = certificate_start(f"Destruction certificate — {data.number}", f"Destruction {data.number}",
                            "Investigational medicinal product destroyed after reconciliation and the sponsor's "
                            "written authorisation. ", zone=zone, printed_by=printed_by, printed_at=printed_at)
    study = data.study
    pdf.pairs([("Trial", f"{study.code} (EU CT {study.eu_ct_number}), {study.short_title}"),
               ("Sponsor", study.sponsor_name),
               ("Place of destruction", data.place),
               ("Kits destroyed", str(data.kit_count)),
               ("Method", data.method or ""),
               ("Date of destruction", data.destroyed_on.isoformat() if data.destroyed_on else ""),
               ("Destroyed by", data.destroyed_by or ""),
               ("Witness", data.witness or ""),
               ("Authorised by", f"{data.authorised_by}, {local(data.authorised_at)}")])
    pdf.heading("Kits")
    pdf.grid(("Kit number", "Blinded lot", "Blinded expiry", "State before destruction"), (40, 40, 30, 60),
             [[k.number, k.blinded_lot, k.expiry.isoformat() if k.expiry else "", k.state_before] for k in data.kits])
    pdf.heading("Reconciliation before authorisation")
    if data.counts:
        pdf.grid(("Blinded lot", "Counted on hand", "Expected", "Result", "Counted by", "Time"),
                 (26, 22, 20, 22, 36, 40),
                 [[code, str(rec.counted_in_stock), str(expected_of(rec).get("on_hand")),
                   "balanced" if rec.balanced else "DISCREPANCY", by, local(rec.at)]
                  for code, rec, by in data.counts])
    else:
        pdf.line_of([("", "No count recorded.")])
    pdf.heading("Signatures")
    pdf.grid(("Signature", "Printed name", "Meaning", "Time"), (60, 45, 25, 50),
             [[s.label, s.name, s.meaning, local(s.at)] for s in data.signatures])
    return bytes(pdf.output())


def certificate_file(db: Database, number: str, *, zone: ZoneInfo, printed_by: str,
                     reader: Actor | None = None) -> tuple[str, bytes]:
    """The certificate of destruction `number` and its file name, for the pages and the API alike
    (one outside the `reader`'s sites and studies answers as a missing one). The data is gathered
    in one read, and the database let go of before the PDF is drawn."""
    with db.read() as session:
        data = gather(session, by_number(session, number, reader=reader))
    return f"destruction-certificate-{data.number}.pdf", certificate_pdf(data, zone=zone, printed_by=printed_by,
                                                                          printed_at=utcnow())
