"""The destruction certificate: which kits, where, how, when, witnessed by whom, and every signature
with printed name, time and meaning. Blinded: kit numbers and blinded lots only, so it never
imports `sealed` and everyone who reads accountability may print it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session, col

from .. import clock, kits
from ..audit import Actor
from ..clock import utcnow
from ..db import Database
from ..errors import InvalidInput
from ..models import AuditEvent, BlindedLot, Destruction, Meaning, Reconciliation, Signature, Study, User
from ..reports import certificate_start
from .destruction import DestructionState, by_number, kits_of, site_of
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
    kits: list[KitLine] = field(default_factory=list)
    counts: list[tuple[str, Reconciliation, str]] = field(default_factory=list)  # (blinded lot, count, by)
    signatures: list[SignatureLine] = field(default_factory=list)


def gather(session: Session, d: Destruction) -> CertificateData:
    """Everything the certificate prints, read once; nothing here depends on an arm."""
    study = study_of(session, d.study_id)
    site = site_of(session, d)
    names = {u.id: u.full_name for u in session.scalars(select(User))}
    lots = {b.id: b for b in session.scalars(select(BlindedLot).where(col(BlindedLot.study_id) == study.id))}
    members = kits_of(session, d)
    before: dict[str, str | None] = dict(session.execute(  # the state each kit was destroyed from
        select(col(AuditEvent.entity_id), col(AuditEvent.old_value))
        .where(col(AuditEvent.entity_type) == "kit", col(AuditEvent.action) == "kit destroy",
               col(AuditEvent.entity_id).in_([k.number for k in members]))).all())
    data = CertificateData(d.number, d.state, study, place_name(site), names.get(d.authorised_by, ""), d.authorised_at,
                           d.method, d.destroyed_on, d.witness, names.get(d.destroyed_by) if d.destroyed_by else None)
    for kit in members:
        blinded = lots.get(kit.blinded_lot_id)
        data.kits.append(KitLine(kit.number, blinded.code if blinded else "", blinded.expiry if blinded else None,
                                 before.get(kit.number) or kits.state_label(kit.state)))
    for lot_id in sorted({k.blinded_lot_id for k in members if k.blinded_lot_id in lots}, key=lambda i: lots[i].code):
        rec = session.scalars(select(Reconciliation).where(col(Reconciliation.study_id) == study.id,
                                                           col(Reconciliation.blinded_lot_id) == lot_id,
                                                           place_filter(Reconciliation, site),
                                                           col(Reconciliation.at) <= d.authorised_at)
                              .order_by(col(Reconciliation.at).desc()).limit(1)).first()
        if rec is not None:
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
               ("Kits destroyed", str(len(data.kits))),
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
