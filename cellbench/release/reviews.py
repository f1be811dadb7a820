"""QA's reviews before certification: the lot's audit trail as QA reads it, review by exception of
the batch record (only what needs attention), and the signed reviews, each covering the lot's audit
trail up to one event so that any later change to the lot makes it stale."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, func, literal, or_, select, union_all
from sqlmodel import Session, col

from .. import audit, limits, lots, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    AuditEvent,
    Deviation,
    Lot,
    LotDecision,
    LotReview,
    LotState,
    Meaning,
    QcResult,
    Role,
    Signature,
    StepEntry,
    StepState,
    StepValue,
    User,
    saved_id,
)
from ..specifications import versions as spec_versions
from ..statemachine import claim

REVIEW_KINDS = ("batch_record", "audit_trail")
# Where QA may review and the QP may certify: a complete batch record awaiting (final) certification.
REVIEWABLE = frozenset({LotState.qc_pending, LotState.initial_certified, LotState.released_for_shipment})


def standing(session: Session, signature_id: int | None) -> Signature | None:
    """The signature, if it still stands (not invalidated since)."""
    sig = session.get(Signature, signature_id) if signature_id else None
    return sig if sig is not None and sig.invalidated_at is None else None


# --- the lot's audit trail ----------------------------------------------------------------------


def _lot_scope(session: Session, lot: Lot) -> ColumnElement[bool]:
    """Every audit event about this lot: the lot itself, its step entries' signatures, its
    deviations, QC results, decisions. QA's own review signatures (entity lot_review) are left out:
    signing one review must not make the other stale. The records' ids are read in one statement
    (the release page asks for the scope three times), and given as lists, not subqueries: an OR of
    IN-lists walks the audit trail's entity index on both engines, an OR of subqueries does not."""
    def ids(kind: str, key: Any, lot_id: Any) -> Select:
        return select(literal(kind), cast(key, String)).where(lot_id == lot.id)

    found: dict[str, list[str]] = {}
    for kind, entity_id in session.execute(union_all(
            ids("step_entry", col(StepEntry.id), col(StepEntry.lot_id)),
            ids("deviation", col(Deviation.number), col(Deviation.lot_id)),
            ids("lot_decision", col(LotDecision.id), col(LotDecision.lot_id)),
            ids("qc_result", col(QcResult.id), col(QcResult.lot_id)))):
        found.setdefault(kind, []).append(entity_id)
    parts = [and_(col(AuditEvent.entity_type) == "lot", col(AuditEvent.entity_id) == lot.number)]
    parts += [and_(col(AuditEvent.entity_type) == kind, col(AuditEvent.entity_id).in_(entity_ids))
              for kind, entity_ids in found.items()]
    return or_(*parts)


def latest_lot_seq(session: Session, lot: Lot) -> int:
    return session.scalar(select(func.max(col(AuditEvent.seq))).where(_lot_scope(session, lot))) or 0


def latest_change_seq(session: Session, lot: Lot) -> int:
    """The lot's latest audit event that changes what QA reviewed. The decisions that rest on QA's
    reviews (a certification, a sponsor release: the lot's state and its decision records) change no
    recorded data; counting them would make every review stale the moment the QP signs."""
    decision = or_(col(AuditEvent.entity_type) == "lot_decision",
                   and_(col(AuditEvent.entity_type) == "lot", col(AuditEvent.field) == "state"))
    return session.scalar(select(func.max(col(AuditEvent.seq)))
                          .where(_lot_scope(session, lot), ~decision)) or 0


def lot_audit_trail(session: Session, viewer: Actor, lot: Lot) -> list[AuditEvent]:
    """The lot's whole audit trail, oldest first: what QA reads before signing its audit-trail review."""
    return list(session.scalars(audit.visible_events(viewer).where(_lot_scope(session, lot))
                                .order_by(col(AuditEvent.seq))))


# --- review by exception ------------------------------------------------------------------------

FINDING_KINDS = {
    "out_of_limit": "Values out of limits",
    "correction": "Corrections",
    "not_applicable": "N/A entries",
    "late_entry": "Late entries",
    "deviation": "Deviations",
    "qc_result": "OOS, retested and invalidated QC results",
    "after_signing": "Changes after a step was signed",
}
_VALUE_ACTIONS = frozenset({"value recorded", "value corrected", "value computed", "value not applicable",
                            "material recorded", "equipment recorded"})


@dataclass
class Finding:
    """One thing QA must look at; everything else in the record is as expected."""

    kind: str  # a key of FINDING_KINDS
    where: str
    what: str
    who: str | None = None
    at: datetime | None = None
    original: str | None = None
    new: str | None = None
    reason: str | None = None
    link: str | None = None


def _shown(value: StepValue) -> str:
    return "N/A" if value.value is None else f"{value.value} {value.unit or ''}".strip()


def exceptions(session: Session, lot: Lot) -> list[Finding]:
    """Review by exception: only what needs attention, grouped by kind in FINDING_KINDS order."""
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    step_of = {s.code: (n, s) for n, s in enumerate(spec.steps, start=1)}
    entries = list(session.scalars(select(StepEntry).where(col(StepEntry.lot_id) == lot.id)
                                   .order_by(col(StepEntry.position), col(StepEntry.repeat_index))))
    by_entry = {e.id: e for e in entries}
    values = list(session.scalars(select(StepValue).where(col(StepValue.entry_id).in_(list(by_entry) or [0]))
                                  .order_by(col(StepValue.id))))
    found: list[Finding] = []

    def where(entry: StepEntry, parameter: str | None = None) -> str:
        n, step = step_of.get(entry.step_code, (entry.position, None))
        title = step.title if step else entry.step_code
        label = f"{n}. {title}" + (f" / {step.repeat.label} {entry.repeat_index}" if step and step.repeat else "")
        if parameter:
            p = next((p for p in step.parameters if p.code == parameter), None) if step else None
            label += f" / {p.label if p else parameter}"
        return label

    found += [Finding("not_applicable", where(entry), "Step entry not applicable", reason=entry.na_reason)
              for entry in entries if entry.na_reason or StepState(entry.state) is StepState.not_applicable]
    for v in values:
        entry = by_entry[v.entry_id]
        if v.within_limits is False:
            found.append(Finding("out_of_limit", where(entry, v.parameter_code),
                                 f"{_shown(v)} outside limits" + (" (since corrected)" if v.superseded_by else ""),
                                 v.entered_by_name, v.entered_at, reason=v.comment))
        if v.correction_reason:
            original = next((o for o in values if o.superseded_by == v.id and o.parameter_code == v.parameter_code),
                            None)
            found.append(Finding("correction", where(entry, v.parameter_code), "Value corrected after entry",
                                 v.entered_by_name, v.entered_at, original=_shown(original) if original else None,
                                 new=_shown(v), reason=v.correction_reason))
        if v.value is None and v.na_reason and v.superseded_by is None:
            found.append(Finding("not_applicable", where(entry, v.parameter_code), "Recorded as N/A",
                                 v.entered_by_name, v.entered_at, reason=v.na_reason))
    rows = session.execute(select(Deviation, col(User.full_name)).outerjoin(User, col(User.id) == Deviation.raised_by)
                           .where(col(Deviation.lot_id) == lot.id)
                           .order_by(col(Deviation.raised_at), col(Deviation.number)))
    for d, raised_by in rows:
        found.append(Finding("late_entry" if d.origin == "late_entry" else "deviation",
                             d.number + (f" · {d.step_code}" if d.step_code else ""),
                             f"{d.origin.replace('_', ' ')}, {d.severity}, {d.state}: {d.description}",
                             raised_by, d.raised_at, link=f"/deviations/{d.number}"))
    tests = {t.code: t for t in spec.tests}
    for r in session.scalars(select(QcResult).where(col(QcResult.lot_id) == lot.id).order_by(col(QcResult.id))):
        notes = []
        if r.verdict == "oos":
            notes.append("out of specification")
        if r.retest_of:
            notes.append(f"retest of result #{r.retest_of}")
        if r.invalidated_at:
            notes.append(f"invalidated: {r.invalidation_reason}")
        if notes:
            name = tests[r.test_code].name if r.test_code in tests else r.test_code
            found.append(Finding("qc_result", f"{name} (result #{r.id})",
                                 f"{r.value} {r.unit or ''}".strip() + " — " + "; ".join(notes),
                                 r.entered_by_name, r.entered_at))
    found += _after_signing(session, lot, entries, where)
    order = list(FINDING_KINDS)
    return sorted(found, key=lambda f: order.index(f.kind))


def _after_signing(session: Session, lot: Lot, entries: list[StepEntry],
                   where: Callable[[StepEntry], str]) -> list[Finding]:
    """Audit events after a step entry was first signed as performed that change that entry."""
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    repeated = {s.code for s in spec.steps if s.repeat}
    first_signed: dict[str, datetime] = {}  # by the entry's id as the signature names it
    ids = {str(e.id): e for e in entries}
    for sig in session.scalars(select(Signature).where(col(Signature.entity_type) == "step_entry",
                                                       col(Signature.entity_id).in_(list(ids) or ["-"]),
                                                       col(Signature.meaning) == Meaning.performed.value)):
        first_signed[sig.entity_id] = min(first_signed.get(sig.entity_id, sig.at), sig.at)
    if not first_signed:
        return []
    label_of = {(f"{e.step_code}[{e.repeat_index}]" if e.step_code in repeated else e.step_code): e for e in entries}
    found = []
    events = session.scalars(select(AuditEvent).where(or_(
        and_(col(AuditEvent.entity_type) == "lot", col(AuditEvent.entity_id) == lot.number,
             col(AuditEvent.action).in_(sorted(_VALUE_ACTIONS))),
        and_(col(AuditEvent.entity_type) == "step_entry", col(AuditEvent.entity_id).in_(list(ids)),
             col(AuditEvent.action) == "signature invalidated"))).order_by(col(AuditEvent.seq)))
    for e in events:
        if e.entity_type == "step_entry":
            entry: StepEntry | None = ids[e.entity_id]
        else:
            entry = label_of.get((e.field or "").split(".", 1)[0])
        if entry is None or str(entry.id) not in first_signed or e.at <= first_signed[str(entry.id)]:
            continue
        change = " → ".join(x for x in (e.old_value, e.new_value) if x is not None)
        found.append(Finding("after_signing", where(entry), f"{e.action}: {e.field or ''} {change}".strip(),
                             e.user_name, e.at, reason=e.reason))
    return found


# --- QA's signed reviews ------------------------------------------------------------------------


def review_key(lot: Lot, kind: str, up_to_seq: int) -> str:
    """What a review signature is on: the lot, the kind and the last event read. The review row
    refers to its signature, so the signature cannot refer to the row."""
    return f"{lot.number}:{kind}:{up_to_seq}"


@signatures.content_rule("lot_review")
def _review_content(session: Session, key: str) -> dict[str, Any]:
    number, kind, seq = ([*key.rsplit(":", 2), "", ""])[:3]
    lot = session.scalars(select(Lot).where(col(Lot.number) == number)).first()
    if lot is None or kind not in REVIEW_KINDS or not seq.isdigit():
        raise NotFound("No such lot review.")
    last = session.get(AuditEvent, int(seq))
    return {"lot": lot.number, "kind": kind, "up_to_seq": int(seq), "event_hash": last.hash if last else None}


def latest_review(session: Session, lot: Lot, kind: str) -> LotReview | None:
    return session.scalars(select(LotReview).where(col(LotReview.lot_id) == lot.id, col(LotReview.kind) == kind)
                           .order_by(col(LotReview.id).desc())).first()


def reviews_of(session: Session, lot: Lot) -> list[tuple[LotReview, Signature | None]]:
    rows = session.execute(select(LotReview, Signature)
                           .join(Signature, col(Signature.id) == LotReview.signature_id, isouter=True)
                           .where(col(LotReview.lot_id) == lot.id).order_by(col(LotReview.id)))
    return [(r, s) for r, s in rows]


def _state(lot: Lot) -> LotState:
    return LotState(lot.state)


def sign_review(session: Session, qa_user: User, password: str, lot: Lot, kind: str,
                comment: str | None = None) -> LotReview:
    """QA signs (meaning "reviewed") the batch record by exception or the lot's audit trail, up to
    the lot's latest audit event: any later change to the lot makes the review stale."""
    actor = users.actor(session, qa_user)
    users.require_role(actor, Role.qa)
    if kind not in REVIEW_KINDS:
        raise InvalidInput(f"Unknown review '{kind}': batch_record or audit_trail.", field="kind")
    # The lot first, then the "already reviewed" check: two QA signing at once, the second waits
    # here for the first and then finds the review done (one signature, not one each).
    claim(session, lot)
    if _state(lot) not in REVIEWABLE:
        raise InvalidInput(f"Lot {lot.number} is {_state(lot).value.replace('_', ' ')}: QA reviews a lot whose batch "
                           "record is complete and that awaits certification.", field="kind")
    up_to = latest_lot_seq(session, lot)
    previous = latest_review(session, lot, kind)
    if previous is not None and previous.up_to_seq >= up_to and standing(session, previous.signature_id):
        raise Conflict(f"The {kind.replace('_', ' ')} of lot {lot.number} is already reviewed up to its latest event.",
                       field="kind")
    key = review_key(lot, kind, up_to)
    sig = signatures.sign(session, qa_user, password, Meaning.reviewed, "lot_review", key,
                          reason=limits.text(comment, "comment", "comment", "comment"))
    review = LotReview(lot_id=saved_id(lot), kind=kind, up_to_seq=up_to, signature_id=saved_id(sig),
                       created_at=utcnow())
    session.add(review)
    session.flush()
    audit.record(session, actor, "lot reviewed", "lot_review", key, field=kind,
                 new=f"lot {lot.number} up to event {up_to}")
    return review
