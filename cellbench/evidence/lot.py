"""The inspector's evidence packet of one manufacturing lot, for an unblinded requester (QA, QP).

It holds the lot's record as people read it (the executed batch record, the certificate of analysis
and the release certificate, as PDFs; QC results and deviations as JSON and CSV) and the proof
behind it: the lot's, its vials' and its kits' audit events, every signature on them with the
content it signed, and the stretch of the audit chain from the lot's first event to a signed
checkpoint, whole, so the verifier shipped inside recomputes every hash and every link.

The stretch holds every event between the lot's, of every record, with full content: a hash is
over the whole event, so an event left out or shown only by its hash would break the proof at that
point (anyone could put any content before it). That is why the packet is for unblinded requesters
only: the events between are those of other lots, kits and the sealed compartment. The blinded
site's packet is site.py.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session, col

from .. import audit, checkpoints, lots, reports, sealed, users
from ..audit import Actor
from ..checkpoints import store as checkpoint_store
from ..clock import utcnow
from ..db import Database
from ..errors import Forbidden
from ..models import AuditCheckpoint, AuditEvent, Deviation, Kit, LotDecision, QcResult, Role, StepEntry, Vial
from ..pdf import checkpoint as stop_if_abandoned
from ..release import certificates
from ..spreadsheet import csv_text
from . import readme
from .packet import (
    Built,
    Packet,
    _checkpoint_now,
    raw_events,
    row_dict,
    signature_dict,
    signatures_named_by,
    signing_key,
)

REQUESTERS = (Role.qa, Role.qp)
BUILT = "evidence packet built"
_SLICE = 20_000  # events of the segment read at a time (a few tenths of a second), between stop checks


@dataclass
class _Gathered:
    number: str
    files: dict[str, Any]  # name -> JSON value or text, in packet order
    record: reports.BatchRecord
    certificate: certificates.CertificateData
    with_coa: bool
    with_release: bool
    first_seq: int
    pieces: int
    events: int
    kits: int


def _kit_numbers(session: Session, actor: Actor, number: str) -> list[str]:
    lot = lots.by_number(session, number)
    return [k.number for k in sealed.kits_containing_lot(session, actor, lot, why="evidence packet")]


def _scope(session: Session, lot_id: int, number: str, kit_numbers: list[str], deviations: list[str]) -> Any:
    """Every audit event about the lot: itself (its vials are recorded on it), its step entries, QC
    results, decisions, QA's reviews and deviations; its kits, and the sealed compartment's events
    about it and its kits (the kits filled from it, the reads of its kits)."""
    def ids(model: Any) -> list[str]:
        return [str(i) for i in session.scalars(select(model.id).where(model.lot_id == lot_id))]

    entity, key = col(AuditEvent.entity_type), col(AuditEvent.entity_id)
    parts = [and_(entity == "lot", key == number),
             and_(entity == "lot_review", key.startswith(f"{number}:", autoescape=True)),
             and_(entity == "sealed", key.in_([number, *kit_numbers]))]
    for kind, found in (("step_entry", ids(StepEntry)), ("qc_result", ids(QcResult)),
                        ("lot_decision", ids(LotDecision)), ("deviation", deviations), ("kit", kit_numbers)):
        if found:
            parts.append(and_(entity == kind, key.in_(found)))
    return or_(*parts)


def pieces(seqs: list[int], marks: list[int]) -> list[tuple[int, int]]:
    """The stretches (first, last event) of the chain that prove the events `seqs`: from the first of
    them, and for each later one from just after the checkpoint before it, to the first checkpoint at
    or after it; merged where they touch. `marks`: the checkpoints' events, sorted (for each event at
    least the last before it and the first at or after it), the last at or after every event. With
    one checkpoint (today) that is one stretch from the first event to it; with hourly checkpoints, a
    lot's old events need only their hours, not everything since."""
    found: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        at = bisect_left(marks, seq)
        if found and seq <= found[-1][1]:
            continue
        start = marks[at - 1] + 1 if found else seq  # after the first, anchored at the checkpoint before
        if found and start == found[-1][1] + 1:
            found[-1] = (found[-1][0], marks[at])
        else:
            found.append((start, marks[at]))
    return found


def _bounded(session: Session, scope: Any, up_to: int) -> tuple[list[AuditEvent], list[int]]:
    """The lot's events up to the packet's checkpoint, and the kept checkpoints its pieces need:
    for each event the last one before it and the first at or after it (below `up_to`, the
    packet's own, which ends the last piece). Asked per event along the checkpoints' sequence
    index, in the same statement: ten years of hourly checkpoints (87,600) are never read whole."""
    kept = col(AuditCheckpoint.seq)
    before = select(func.max(kept)).where(kept < col(AuditEvent.seq)).scalar_subquery()
    after = select(func.min(kept)).where(kept >= col(AuditEvent.seq), kept < up_to).scalar_subquery()
    rows = session.execute(select(AuditEvent, before, after).where(scope, col(AuditEvent.seq) <= up_to)
                           .order_by(col(AuditEvent.seq))).all()
    marks = {mark for _, *around in rows for mark in around if mark is not None}
    return [event for event, _, _ in rows], sorted(marks | {up_to})


def _segment(session: Session, stretches: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The pieces' events as stored, a slice at a time: a build whose route gave up on it (past the
    time limit, or its client gone) stops at the next slice instead of reading on for minutes in a
    worker nobody waits for, slowing every request after it."""
    found: list[dict[str, Any]] = []
    for lo, hi in stretches:
        for start in range(lo, hi + 1, _SLICE):
            stop_if_abandoned()
            found += raw_events(session, start, min(hi, start + _SLICE - 1))
    return found


def _table(rows: list[dict[str, Any]]) -> str:
    header = list(rows[0]) if rows else ["(none)"]
    return csv_text(header, [[r[h] for h in header] for r in rows])


def _gather(session: Session, actor: Actor, number: str, kit_numbers: list[str],
            checkpoint: checkpoints.Checkpoint) -> _Gathered:
    lot = lots.by_number(session, number)
    kits = list(session.scalars(select(Kit).where(col(Kit.number).in_(kit_numbers)).order_by(col(Kit.number))))
    kit_ids = [k.id for k in kits if k.id is not None]
    deviation_rows = list(session.scalars(select(Deviation).where(or_(
        col(Deviation.lot_id) == lot.id, col(Deviation.kit_id).in_(kit_ids or [0]))).order_by(col(Deviation.number))))
    scope = _scope(session, lot.id or 0, lot.number, kit_numbers, [d.number for d in deviation_rows])
    up_to = checkpoint.seq
    events, marks = _bounded(session, scope, up_to)
    stretches = pieces([e.seq for e in events] or [up_to], marks)
    segment = _segment(session, stretches)
    anchors = {hi for _, hi in stretches} | {lo - 1 for lo, _ in stretches[1:]}  # each piece's end and start
    kept = [*checkpoint_store.kept_at(session, sorted(anchors - {up_to})), checkpoint]
    by_seq = {e["seq"]: e for e in segment}
    sigs = signatures_named_by(session, events)
    results = [row_dict(r) for r in session.scalars(select(QcResult).where(col(QcResult.lot_id) == lot.id)
                                                     .order_by(col(QcResult.id)))]
    deviations = [row_dict(d) for d in deviation_rows]
    vials = [row_dict(v) for v in session.scalars(select(Vial).where(col(Vial.lot_id) == lot.id)
                                                   .order_by(col(Vial.seq)))]
    certificate = certificates.gather(session, number)
    files: dict[str, Any] = {
        "lot.json": {"lot": row_dict(lot), "vials": vials, "kits": [row_dict(k) for k in kits]},
        "qc-results.json": results, "qc-results.csv": _table(results),
        "deviations.json": deviations, "deviations.csv": _table(deviations),
        "audit/events.json": [by_seq[e.seq] for e in events], "audit/events.csv": audit.to_csv(events, actor),
        "signatures.json": [signature_dict(s) for s in sigs],
        "chain/segment.json": segment,
        "checkpoints.json": [asdict(m) for m in kept],
    }
    return _Gathered(lot.number, files, reports.batch_record(session, number), certificate,
                     with_coa=bool(results), with_release=bool(certificate.certifications or certificate.releases),
                     first_seq=stretches[0][0], pieces=len(stretches), events=len(events), kits=len(kits))


def build(db: Database, actor: Actor, lot_number: str, *, zone: ZoneInfo, authorisation: str = "",
          printed_at: datetime | None = None) -> Built:
    """The packet of one lot, as a ZIP. Its building is on the audit trail (three transactions: the
    audited request, then the checkpoint of the head that includes it, then the reading up to that
    checkpoint; the PDFs are rendered with no transaction open)."""
    if actor.is_blinded:
        raise Forbidden("The lot's evidence packet holds unblinded records: a blinded role asks for the "
                        "blinded lot's packet.")
    users.require_role(actor, *REQUESTERS)
    with db.write() as session:
        number = lots.by_number(session, lot_number).number
        key = signing_key()  # after the lot: an unknown lot is "not found" whatever the server's keys
        kit_numbers = _kit_numbers(session, actor, number)
        audit.record(session, actor, BUILT, "lot", number, field="evidence packet",
                     new=f"lot {number} and {len(kit_numbers)} kits")
    checkpoint = _checkpoint_now(db)
    with db.read() as session:
        found = _gather(session, actor, number, kit_numbers, checkpoint)
    stop_if_abandoned()
    at = printed_at or utcnow()
    packet = Packet(f"evidence-{number}")
    packet.add("README.txt", readme.lot_readme(number, first_seq=found.first_seq, last_seq=checkpoint.seq,
                                               pieces=found.pieces, events=found.events, kits=found.kits,
                                               with_coa=found.with_coa, with_release=found.with_release))
    packet.add(f"batch-record-{number}.pdf",
               reports.batch_record_pdf(found.record, zone=zone, printed_by=actor.name, printed_at=at))
    if found.with_coa:
        packet.add(f"certificate-of-analysis-{number}.pdf", certificates.coa_pdf(
            found.certificate, zone=zone, printed_by=actor.name, printed_at=at, authorisation=authorisation))
    if found.with_release:
        packet.add(f"release-certificate-{number}.pdf", certificates.release_certificate_pdf(
            found.certificate, zone=zone, printed_by=actor.name, printed_at=at, authorisation=authorisation))
    for name, value in found.files.items():
        (packet.add if isinstance(value, str) else packet.add_json)(name, value)
    return Built(f"evidence-{number}.zip", packet.seal(key, actor, "lot", number, checkpoint))
