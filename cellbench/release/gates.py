"""Release of a lot: the gates, QA's review by exception and of the audit trail, the QP's initial and
final certification, the sponsor release and rejection (DESIGN invariant 3; reference §1.2, §2.1, "Workflow" A).

Each gate is a small named rule `gate(session, lot, actor) -> str | None` returning why it blocks.
`GUARDS` assembles them per gated move of `lots.MOVES`; `move_lot` hands them to `lots.move`, which
runs them, changes the state, audits and records the signed `LotDecision`, then carries the lot's
kits along (supply). Nothing here re-implements a transition.

Placebo (saline) lots go through exactly the same gates and signatures as cell lots; only the
donor rule differs (a placebo lot has no donor).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session

from .. import audit, clock, inputs, lots, qc, signatures, steps, users
from ..audit import Actor
from ..clock import utcnow
from ..deviations import deviations_block
from ..donors import decision_signature
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    AuditEvent,
    Deviation,
    Donation,
    Eligibility,
    Lot,
    LotDecision,
    LotReview,
    LotState,
    Meaning,
    PendingTest,
    QcResult,
    Role,
    Signature,
    StepEntry,
    StepState,
    StepValue,
    StorageExcursion,
    User,
    Visibility,
)
from ..specifications import versions as spec_versions
from ..supply import packaging, quarantine

Gate = Callable[[Session, Lot, Actor | None], str | None]
REVIEW_KINDS = ("batch_record", "audit_trail")
# Where QA may review and the QP may certify: a complete batch record awaiting (final) certification.
REVIEWABLE = frozenset({LotState.qc_pending, LotState.initial_certified})
# lots.move runs the guards with (session, lot, actor) only; the pending tests a QP lists with an
# initial certification reach the test gate through the session, for the length of that one move.
_PENDING_KEY = "cellbench.release.pending_tests"


def _state(lot: Lot) -> LotState:
    return LotState(lot.state)


def _standing(session: Session, signature_id: int | None) -> Signature | None:
    sig = session.get(Signature, signature_id) if signature_id else None
    return sig if sig is not None and sig.invalidated_at is None else None


# --- the lot's audit trail ----------------------------------------------------------------------


def _lot_scope(session: Session, lot: Lot):
    """Every audit event about this lot: the lot itself, its step entries' signatures, its
    deviations, QC results, decisions. QA's own review signatures (entity lot_review) are left out:
    signing one review must not make the other stale."""
    entries = [str(i) for i in session.scalars(select(StepEntry.id).where(StepEntry.lot_id == lot.id))]
    deviation_numbers = list(session.scalars(select(Deviation.number).where(Deviation.lot_id == lot.id)))
    decisions = [str(i) for i in session.scalars(select(LotDecision.id).where(LotDecision.lot_id == lot.id))]
    results = [str(i) for i in session.scalars(select(QcResult.id).where(QcResult.lot_id == lot.id))]
    parts = [and_(AuditEvent.entity_type == "lot", AuditEvent.entity_id == lot.number)]
    for entity_type, ids in (("step_entry", entries), ("deviation", deviation_numbers), ("lot_decision", decisions),
                             ("qc_result", results)):
        if ids:
            parts.append(and_(AuditEvent.entity_type == entity_type, AuditEvent.entity_id.in_(ids)))
    return or_(*parts)


def latest_lot_seq(session: Session, lot: Lot) -> int:
    return session.scalar(select(func.max(AuditEvent.seq)).where(_lot_scope(session, lot))) or 0


def lot_audit_trail(session: Session, viewer: Actor, lot: Lot) -> list[AuditEvent]:
    """The lot's whole audit trail, oldest first: what QA reads before signing its audit-trail review."""
    return list(session.scalars(audit.visible_events(viewer).where(_lot_scope(session, lot)).order_by(AuditEvent.seq)))


# --- the gates ----------------------------------------------------------------------------------


def batch_record_complete(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """Every step performed and every required verification signed, and the signatures still
    stand: a correction reopens the entry and voids its signatures."""
    state = qc.effective_state(lot)  # a lot on hold counts as where it was held from
    if state in (LotState.in_process, LotState.on_hold, LotState.aborted):
        return f"The batch record of lot {lot.number} is not complete (the lot is {state.value.replace('_', ' ')})."
    spec = spec_versions.parsed(lots.spec_of(session, lot))
    by_code = steps.entries_of(session, lot)
    if (step := steps.current_step(spec, by_code)) is not None:
        return f"Step '{step.title}' of lot {lot.number} is not complete."
    for step in spec.steps:
        for entry in by_code.get(step.code, []):
            state = StepState(entry.state)
            if state is StepState.not_applicable:
                continue
            if state is StepState.open:
                return f"Step '{step.title}' of lot {lot.number} was reopened by a correction and is not signed again."
            if _standing(session, entry.performed_signature_id) is None:
                return f"The performed signature of step '{step.title}' no longer stands."
            if step.verify and _standing(session, entry.verified_signature_id) is None:
                return f"Step '{step.title}' lacks a standing second-person verification."
    return None


def release_tests_in_specification(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """Every release test present, reviewed by a second person and in specification."""
    problems = qc.release_test_problems(session, lot)
    return ("Release tests: " + " ".join(problems)) if problems else None


def release_tests_in_specification_or_pending(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """For an initial certification: the tests the QP lists as pending may still be missing or
    unreviewed. An out-of-specification result blocks, listed or not."""
    pending = session.info.get(_PENDING_KEY)
    if not pending:
        return ("An initial certification lists its pending tests, each with an owner and a due date: certify on "
                f"the release page of lot {lot.number}.")
    blocking = []
    for status in qc.test_status(session, lot):
        code, state = _code(status.test), str(status.state)
        if state == "pass" or not counts_for_release(status.test):
            continue
        if state == "oos":
            blocking.append(f"{_name(status.test)} is out of specification.")
        elif code not in pending:
            blocking.append(f"{_name(status.test)} has no passing reviewed result and is not listed as pending.")
    return ("Release tests: " + " ".join(blocking)) if blocking else None


def donor_eligible(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """A cell lot's donation is signed eligible by QA and that signature stands; a placebo lot has no donor."""
    kind = lots.spec_of(session, lot).kind
    donation = session.get(Donation, lot.donation_id) if lot.donation_id else None
    if kind == "placebo":
        return None if donation is None else (
            f"Placebo lot {lot.number} names donation {donation.identifier}: a saline lot has no donor.")
    if donation is None:
        return f"Lot {lot.number} has no donation: a cell lot cannot be released without an eligible donor."
    state = Eligibility(donation.eligibility)
    if state is not Eligibility.eligible:
        return f"Donation {donation.identifier} is {state.value}, not eligible."
    sig = decision_signature(session, donation)
    if sig is None or sig.invalidated_at is not None or Meaning(sig.meaning) is not Meaning.approved:
        return f"The eligibility decision on donation {donation.identifier} has no standing QA signature."
    return None


def deviations_closed(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """DESIGN allows "closed or assessed and accepted by QA". In the deviation state machine an
    assessment may be recorded by an operator (state "assessed"); QA accepts it only by closing the
    deviation, a signature meaning "approved" on the impact assessment and CAPA. So acceptance by QA
    *is* closure here, and every deviation of the lot not closed blocks, as deviations_block says.
    One rule, in one place: the release gate and the deviation module can never disagree."""
    return deviations_block(session, lot.id)


def no_unassessed_excursion(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """Storage history free of temperature excursions that QA has not assessed as acceptable."""
    reasons = []
    for exc in excursions_of(session, lot):
        seen = f"excursion to {exc.highest_temperature:g} °C at {exc.observed_at:%Y-%m-%d %H:%M} UTC"
        if exc.acceptable is None:
            reasons.append(f"The {seen} is not assessed by QA.")
        elif not exc.acceptable:
            reasons.append(f"The {seen} was assessed unacceptable: {exc.assessment}")
    return " ".join(reasons) or None


def _review_gate(kind: str, what: str) -> Gate:
    def gate(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
        review = latest_review(session, lot, kind)
        if review is None or _standing(session, review.signature_id) is None:
            return f"QA has not signed the {what} of lot {lot.number}."
        latest = latest_lot_seq(session, lot)
        if review.up_to_seq < latest:
            return (f"The {what} of lot {lot.number} is stale: it covers the lot's audit trail up to event "
                    f"{review.up_to_seq}, and the lot changed since (event {latest}). QA reviews it again.")
        return None

    gate.__name__ = f"{kind}_reviewed"
    gate.__doc__ = f"QA's signed {what} covers the lot's latest audit event: a later change makes it stale."
    return gate


audit_trail_reviewed = _review_gate("audit_trail", "audit-trail review")
batch_record_reviewed = _review_gate("batch_record", "batch-record review")


def qp_independent(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """The certifying QP neither performed nor verified any step of the lot (DESIGN separation rule).
    Signatures since voided by a correction count too: the person still did the work."""
    if actor is None or actor.user_id is None:
        return None  # only the QP who signs can be checked; readiness without a QP shows it open
    entry_ids = [str(i) for i in session.scalars(select(StepEntry.id).where(StepEntry.lot_id == lot.id))]
    performed = session.scalars(select(StepEntry.id).where(StepEntry.lot_id == lot.id,
                                                           StepEntry.performed_by == actor.user_id)).first()
    signed = session.scalars(select(Signature.meaning).where(
        Signature.entity_type == "step_entry", Signature.entity_id.in_(entry_ids or ["-"]),
        Signature.signer_id == actor.user_id,
        Signature.meaning.in_([Meaning.performed.value, Meaning.verified.value]))).first()
    if performed is not None or signed is not None:
        did = "performed" if performed is not None or signed == Meaning.performed.value else "verified"
        return (f"{actor.name} {did} steps of lot {lot.number}: the QP who certifies a lot must not have performed "
                "or verified any of its steps.")
    return None


def certified(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """The sponsor releases only what a QP finally certified, with that signature standing."""
    decision = last_decision(session, lot, "certify_final")
    if decision is None:
        return f"Lot {lot.number} has no final QP certification."
    if _standing(session, decision.signature_id) is None:
        return f"The final QP certification of lot {lot.number} no longer stands."
    return None


_CERTIFICATION = (batch_record_complete, donor_eligible, deviations_closed, no_unassessed_excursion,
                  batch_record_reviewed, audit_trail_reviewed, qp_independent)
GUARDS: dict[str, tuple[Gate, ...]] = {
    "initial_certification": (_CERTIFICATION[0], release_tests_in_specification_or_pending, *_CERTIFICATION[1:]),
    "final_certification": (_CERTIFICATION[0], release_tests_in_specification, *_CERTIFICATION[1:]),
    # What may have changed between certification and the sponsor's release is checked again; the
    # reviews are not, since the certification itself is a later event on the lot.
    "sponsor_release": (certified, release_tests_in_specification, deviations_closed, no_unassessed_excursion),
}

LABELS = {
    "batch_record_complete": "Batch record complete, every required verification signed",
    "release_tests_in_specification": "Release tests present, reviewed and in specification",
    "release_tests_in_specification_or_pending": "Release tests in specification or listed as pending (never OOS)",
    "donor_eligible": "Donor eligible (placebo: no donor)",
    "deviations_closed": "Deviations closed by QA",
    "no_unassessed_excursion": "No unassessed storage excursion",
    "batch_record_reviewed": "Batch record reviewed by QA (by exception)",
    "audit_trail_reviewed": "Audit trail of the lot reviewed by QA",
    "qp_independent": "Certifying QP did not perform or verify a step",
    "certified": "Final QP certification",
}


def move_lot(session: Session, user: User, lot: Lot, name: str, reason: str | None, *,
             password: str | None = None, seen_version: int | None = None) -> LotDecision | None:
    """Every move of a lot, pages and API alike: the table's move with its release gates, then what
    it does to the lot's kits, in the same transaction."""
    gates = GUARDS[lots.GATED[name]] if name in lots.GATED else ()
    decision = lots.move(session, user, lot, name, reason, password=password, seen_version=seen_version, gates=gates)
    actor = users.actor(session, user)
    if name == "release":
        packaging.after_lot_release(session, actor, lot)
    elif name in ("quarantine", "recall"):
        quarantine.quarantine_lot(session, actor, lot, cause="lot_quarantine" if name == "quarantine" else "recall",
                                  reason=reason or name)
    elif name == "release_from_quarantine" and decision is not None:
        quarantine.after_lot_quarantine_lifted(session, user, actor, lot, decision.signature_id)
    return decision


@dataclass(frozen=True)
class GateState:
    name: str
    label: str
    blocking_reason: str | None

    @property
    def passed(self) -> bool:
        return self.blocking_reason is None


def next_guard(lot: Lot) -> str:
    """The rule set the lot faces next: certification until certified, then the sponsor release."""
    return "sponsor_release" if _state(lot) in (LotState.qp_certified, LotState.released) else "final_certification"


def readiness(session: Session, lot: Lot, actor: Actor | None = None, guard: str | None = None) -> list[GateState]:
    """Each gate of the lot's next decision with why it blocks (None: it holds). For an initial
    certification, every test without a result counts as listed pending (the form lists them)."""
    guard = guard or next_guard(lot)
    if actor is not None and Role.qp not in actor.roles:
        actor = None

    def label(name: str) -> str:
        if name == "qp_independent" and actor is None:
            return LABELS[name] + " (checked against the QP who signs)"
        return LABELS[name]

    def run() -> list[GateState]:
        return [GateState(g.__name__, label(g.__name__), g(session, lot, actor)) for g in GUARDS[guard]]

    if guard == "initial_certification" and _PENDING_KEY not in session.info:
        with _declared(session, frozenset(_code(t) for t in pending_candidates(session, lot))):
            return run()
    return run()


class _declared:
    """Puts the pending tests where the initial-certification gate reads them, for one move."""

    def __init__(self, session: Session, codes: frozenset[str] | None):
        self.session, self.codes = session, codes

    def __enter__(self) -> None:
        self.session.info[_PENDING_KEY] = self.codes

    def __exit__(self, *exc: object) -> None:
        self.session.info.pop(_PENDING_KEY, None)


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
    entries = list(session.scalars(select(StepEntry).where(StepEntry.lot_id == lot.id)
                                   .order_by(StepEntry.position, StepEntry.repeat_index)))
    by_entry = {e.id: e for e in entries}
    values = list(session.scalars(select(StepValue).where(StepValue.entry_id.in_(list(by_entry) or [0]))
                                  .order_by(StepValue.id)))
    found: list[Finding] = []

    def where(entry: StepEntry, parameter: str | None = None) -> str:
        n, step = step_of.get(entry.step_code, (entry.position, None))
        title = step.title if step else entry.step_code
        label = f"{n}. {title}" + (f" / {step.repeat.label} {entry.repeat_index}" if step and step.repeat else "")
        if parameter:
            p = next((p for p in step.parameters if p.code == parameter), None) if step else None
            label += f" / {p.label if p else parameter}"
        return label

    for entry in entries:
        if entry.na_reason or StepState(entry.state) is StepState.not_applicable:
            found.append(Finding("not_applicable", where(entry), "Step entry not applicable", reason=entry.na_reason))
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
    rows = session.execute(select(Deviation, User.full_name).outerjoin(User, User.id == Deviation.raised_by)
                           .where(Deviation.lot_id == lot.id).order_by(Deviation.raised_at, Deviation.number))
    for d, raised_by in rows:
        found.append(Finding("late_entry" if d.origin == "late_entry" else "deviation",
                             d.number + (f" · {d.step_code}" if d.step_code else ""),
                             f"{d.origin.replace('_', ' ')}, {d.severity}, {d.state}: {d.description}",
                             raised_by, d.raised_at, link=f"/deviations/{d.number}"))
    tests = {t.code: t for t in spec.tests}
    for r in session.scalars(select(QcResult).where(QcResult.lot_id == lot.id).order_by(QcResult.id)):
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
    first_signed: dict[int, datetime] = {}
    ids = {str(e.id): e for e in entries}
    for sig in session.scalars(select(Signature).where(Signature.entity_type == "step_entry",
                                                       Signature.entity_id.in_(list(ids) or ["-"]),
                                                       Signature.meaning == Meaning.performed.value)):
        entry = ids[sig.entity_id]
        first_signed[entry.id] = min(first_signed.get(entry.id, sig.at), sig.at)
    if not first_signed:
        return []
    label_of = {(f"{e.step_code}[{e.repeat_index}]" if e.step_code in repeated else e.step_code): e for e in entries}
    found = []
    events = session.scalars(select(AuditEvent).where(or_(
        and_(AuditEvent.entity_type == "lot", AuditEvent.entity_id == lot.number,
             AuditEvent.action.in_(sorted(_VALUE_ACTIONS))),
        and_(AuditEvent.entity_type == "step_entry", AuditEvent.entity_id.in_(list(ids)),
             AuditEvent.action == "signature invalidated"))).order_by(AuditEvent.seq))
    for e in events:
        if e.entity_type == "step_entry":
            entry = ids[e.entity_id]
        else:
            entry = label_of.get((e.field or "").split(".", 1)[0])
        if entry is None or entry.id not in first_signed or e.at <= first_signed[entry.id]:
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
def _review_content(session: Session, key: str) -> dict:
    number, kind, seq = (key.rsplit(":", 2) + ["", ""])[:3]
    lot = session.scalars(select(Lot).where(Lot.number == number)).first()
    if lot is None or kind not in REVIEW_KINDS or not seq.isdigit():
        raise NotFound("No such lot review.")
    last = session.get(AuditEvent, int(seq))
    return {"lot": lot.number, "kind": kind, "up_to_seq": int(seq), "event_hash": last.hash if last else None}


def latest_review(session: Session, lot: Lot, kind: str) -> LotReview | None:
    return session.scalars(select(LotReview).where(LotReview.lot_id == lot.id, LotReview.kind == kind)
                           .order_by(LotReview.id.desc())).first()


def reviews_of(session: Session, lot: Lot) -> list[tuple[LotReview, Signature | None]]:
    rows = session.execute(select(LotReview, Signature).join(Signature, Signature.id == LotReview.signature_id,
                                                             isouter=True)
                           .where(LotReview.lot_id == lot.id).order_by(LotReview.id))
    return [(r, s) for r, s in rows]


def sign_review(session: Session, qa_user: User, password: str, lot: Lot, kind: str,
                comment: str | None = None) -> LotReview:
    """QA signs (meaning "reviewed") the batch record by exception or the lot's audit trail, up to
    the lot's latest audit event: any later change to the lot makes the review stale."""
    actor = users.actor(session, qa_user)
    users.require_role(actor, Role.qa)
    if kind not in REVIEW_KINDS:
        raise InvalidInput(f"Unknown review '{kind}': batch_record or audit_trail.", field="kind")
    if _state(lot) not in REVIEWABLE:
        raise InvalidInput(f"Lot {lot.number} is {_state(lot).value.replace('_', ' ')}: QA reviews a lot whose batch "
                           "record is complete and that awaits certification.", field="kind")
    up_to = latest_lot_seq(session, lot)
    previous = latest_review(session, lot, kind)
    if previous is not None and previous.up_to_seq >= up_to and _standing(session, previous.signature_id):
        raise Conflict(f"The {kind.replace('_', ' ')} of lot {lot.number} is already reviewed up to its latest event.",
                       field="kind")
    key = review_key(lot, kind, up_to)
    sig = signatures.sign(session, qa_user, password, Meaning.reviewed, "lot_review", key,
                          reason=(comment or "").strip() or None)
    review = LotReview(lot_id=lot.id, kind=kind, up_to_seq=up_to, signature_id=sig.id, created_at=utcnow())
    session.add(review)
    session.flush()
    audit.record(session, actor, "lot reviewed", "lot_review", key, field=kind,
                 new=f"lot {lot.number} up to event {up_to}")
    return review


# --- storage excursions -------------------------------------------------------------------------


def excursions_of(session: Session, lot: Lot) -> list[StorageExcursion]:
    return list(session.scalars(select(StorageExcursion).where(StorageExcursion.lot_id == lot.id)
                                .order_by(StorageExcursion.observed_at, StorageExcursion.id)))


def record_excursion(session: Session, actor: Actor, lot: Lot, *, observed_at: datetime,
                     highest_temperature: float | str, description: str | None) -> StorageExcursion:
    """A temperature excursion in the lot's storage: it blocks release until QA assesses it."""
    users.require_role(actor, Role.operator, Role.qa, Role.supply_manager)
    if observed_at.tzinfo is None:
        raise InvalidInput("Give the time of the excursion with its UTC offset.", field="observed_at")
    if observed_at > utcnow():
        raise InvalidInput("An excursion cannot be observed in the future.", field="observed_at")
    try:
        temperature = float(str(highest_temperature).strip())
    except ValueError:
        raise InvalidInput("The highest temperature is a number in °C.", field="highest_temperature") from None
    description = (description or "").strip()
    if not description:
        raise InvalidInput("Describe the excursion.", field="description")
    exc = StorageExcursion(lot_id=lot.id, observed_at=observed_at, highest_temperature=temperature,
                           description=description, recorded_by=actor.user_id or 0)
    session.add(exc)
    session.flush()
    audit.record(session, actor, "storage excursion recorded", "lot", lot.number, field=f"excursion:{exc.id}",
                 new=f"{temperature:g} °C at {audit.as_text(observed_at)}: {description}",
                 visibility=Visibility.unblinded)
    return exc


def assess_excursion(session: Session, actor: Actor, lot: Lot, excursion_id: int, *, acceptable: bool,
                     assessment: str | None) -> StorageExcursion:
    users.require_role(actor, Role.qa)
    exc = session.get(StorageExcursion, excursion_id)
    if exc is None or exc.lot_id != lot.id:
        raise NotFound("No such excursion on this lot.", field="excursion")
    if exc.acceptable is not None:
        raise Conflict("This excursion is already assessed.", field="excursion")
    assessment = (assessment or "").strip()
    if not assessment:
        raise InvalidInput("The assessment is required.", field="assessment")
    exc.assessment, exc.acceptable = assessment, bool(acceptable)
    exc.assessed_by, exc.assessed_at = actor.user_id, utcnow()
    session.flush()
    audit.record(session, actor, "storage excursion assessed", "lot", lot.number, field=f"excursion:{exc.id}",
                 new="acceptable" if acceptable else "not acceptable", reason=assessment,
                 visibility=Visibility.unblinded)
    return exc


# --- certification, sponsor release, rejection --------------------------------------------------


def counts_for_release(test: object) -> bool:
    """A test the lot's own QC results must cover: required for release and not a donor-stage test,
    whose record is the donation's QA-signed eligibility (qc.release_test_problems, donor_eligible)."""
    return bool(getattr(test, "required_for_release", True)) and getattr(test, "stage", None) != "donor"


def _code(test: object) -> str:
    return getattr(test, "code", test)


def _name(test: object) -> str:
    return getattr(test, "name", None) or str(_code(test))


def pending_candidates(session: Session, lot: Lot) -> list:
    """Release tests an initial certification may list as pending: no passing reviewed result, not OOS."""
    return [s.test for s in qc.test_status(session, lot)
            if counts_for_release(s.test) and str(s.state) not in ("pass", "oos")]


def pending_tests(session: Session, lot: Lot, *, open_only: bool = False) -> list[PendingTest]:
    query = select(PendingTest).where(PendingTest.lot_id == lot.id)
    if open_only:
        query = query.where(PendingTest.resolved_at.is_(None))
    return list(session.scalars(query.order_by(PendingTest.id)))


def _parse_pending(session: Session, lot: Lot, pending: Iterable) -> list[tuple[object, User, date]]:
    statuses = {_code(s.test): s for s in qc.test_status(session, lot) if counts_for_release(s.test)}
    rows, seen = [], set()
    today = clock.today()
    for item in pending:
        code, owner_name, due = (str(item[0] or "").strip(), str(item[1] or "").strip(), item[2])
        if not code:
            continue
        status = statuses.get(code)
        if status is None:
            raise InvalidInput(f"'{code}' is not a test required for the release of lot {lot.number}.", field="pending")
        if code in seen:
            raise InvalidInput(f"{_name(status.test)} is listed twice.", field="pending")
        seen.add(code)
        if str(status.state) == "pass":
            raise InvalidInput(f"{_name(status.test)} already has a passing reviewed result: it is not pending.",
                               field="pending")
        if str(status.state) == "oos":
            raise InvalidInput(f"{_name(status.test)} is out of specification: a lot cannot be certified while an "
                               "OOS result stands.", field="pending")
        owner = session.scalars(select(User).where(User.username == owner_name)).first() if owner_name else None
        if owner is None or not owner.active or Role.qc_analyst not in users.roles_of(session, owner.id):
            raise InvalidInput(f"{_name(status.test)}: the owner must be an active QC analyst.", field="owner")
        day = inputs.day(due, "due_date", f"due date of {_name(status.test)}")
        if day < today:
            raise InvalidInput(f"{_name(status.test)}: the due date {day.isoformat()} is in the past.",
                               field="due_date")
        rows.append((status.test, owner, day))
    if not rows:
        raise InvalidInput("An initial certification lists at least one pending test, with its owner and due date; "
                           "with every result in, certify finally.", field="pending")
    return rows


def certify(session: Session, qp_user: User, password: str, lot: Lot, *, final: bool,
            pending: Iterable[tuple[str, str, date | str]] = (), comment: str | None = None,
            seen_version: int | None = None) -> LotDecision:
    """The QP certifies (meaning "certified"): finally, or initially with the tests still pending,
    each with an owner (a QC analyst) and a due date. A final certification after an initial one
    resolves the pending tests: the gate has just checked that every result is in and in specification."""
    actor = users.actor(session, qp_user)
    users.require_role(actor, Role.qp)
    comment = (comment or "").strip() or None
    if final:
        if any(str(p[0] or "").strip() for p in pending):
            raise InvalidInput("A final certification lists no pending tests.", field="pending")
        decision = move_lot(session, qp_user, lot, "certify_final", comment, password=password,
                             seen_version=seen_version)
        for row in pending_tests(session, lot, open_only=True):
            row.resolved_at = utcnow()
            audit.record(session, actor, "pending test resolved", "lot", lot.number, field=f"pending:{row.test_code}",
                         new=f"final certification #{decision.id}", visibility=Visibility.unblinded)
        session.flush()
        return decision
    rows = _parse_pending(session, lot, pending)
    # The reason is part of what the QP signs: the signature then covers the pending list too.
    listed = "; ".join(f"{_name(t)} ({_code(t)}): owner {o.full_name}, due {d.isoformat()}" for t, o, d in rows)
    reason = f"Pending tests: {listed}." + (f" {comment}" if comment else "")
    with _declared(session, frozenset(_code(t) for t, _, _ in rows)):
        decision = move_lot(session, qp_user, lot, "certify_initial", reason, password=password,
                             seen_version=seen_version)
    for test, owner, due in rows:
        session.add(PendingTest(decision_id=decision.id, lot_id=lot.id, test_code=_code(test), owner_id=owner.id,
                                due_date=due))
        audit.record(session, actor, "pending test listed", "lot", lot.number, field=f"pending:{_code(test)}",
                     new=f"owner {owner.full_name}, due {due.isoformat()}", visibility=Visibility.unblinded)
    session.flush()
    return decision


def sponsor_release(session: Session, supply_user: User, password: str, lot: Lot,
                    seen_version: int | None = None) -> LotDecision:
    """The sponsor's regulatory release (meaning "released"): the lot becomes usable for kits."""
    return move_lot(session, supply_user, lot, "release", None, password=password, seen_version=seen_version)


def reject(session: Session, user: User, password: str, lot: Lot, reason: str | None,
           seen_version: int | None = None) -> LotDecision:
    """QP or QA rejects the lot (meaning "rejected"), with a reason; its pending tests are withdrawn."""
    decision = move_lot(session, user, lot, "reject", reason, password=password, seen_version=seen_version)
    actor = users.actor(session, user)
    for row in pending_tests(session, lot, open_only=True):
        row.resolved_at = utcnow()
        audit.record(session, actor, "pending test withdrawn", "lot", lot.number, field=f"pending:{row.test_code}",
                     new="lot rejected", visibility=Visibility.unblinded)
    session.flush()
    return decision


def last_decision(session: Session, lot: Lot, name: str) -> LotDecision | None:
    return session.scalars(select(LotDecision).where(LotDecision.lot_id == lot.id, LotDecision.decision == name)
                           .order_by(LotDecision.id.desc())).first()


def decisions_with_signatures(session: Session, lot: Lot) -> list[tuple[LotDecision, Signature | None]]:
    rows = session.execute(select(LotDecision, Signature).join(Signature, Signature.id == LotDecision.signature_id,
                                                               isouter=True)
                           .where(LotDecision.lot_id == lot.id).order_by(LotDecision.id))
    return [(d, s) for d, s in rows]


# --- work queues --------------------------------------------------------------------------------


def lots_in(session: Session, *states: LotState) -> list[Lot]:
    return list(session.scalars(select(Lot).where(Lot.state.in_([s.value for s in states])).order_by(Lot.number)))


def awaiting_review(session: Session) -> list[Lot]:
    """Lots awaiting certification whose batch-record or audit-trail review is missing or stale."""
    return [lot for lot in lots_in(session, *REVIEWABLE)
            if batch_record_reviewed(session, lot) or audit_trail_reviewed(session, lot)]


def ready_for_certification(session: Session, actor: Actor | None = None) -> list[Lot]:
    """Lots where every gate of the final certification holds (for this QP, when given)."""
    return [lot for lot in lots_in(session, *REVIEWABLE)
            if all(g.passed for g in readiness(session, lot, actor, "final_certification"))]


def awaiting_sponsor_release(session: Session) -> list[Lot]:
    return lots_in(session, LotState.qp_certified)
