"""The release gates (DESIGN invariant 3; reference §1.2, §2.1, "Workflow" A).

Each gate is a small named rule `gate(session, lot, actor) -> str | None` returning why it blocks.
`GUARDS` assembles them per gated move of `lots.GATED`; `decisions.move_lot` hands them to
`lots.move`, which runs them, changes the state, audits and records the signed `LotDecision`.
Nothing here re-implements a transition. `readiness` shows each gate of the lot's next decision
with why it blocks, for the pages, the API and the work queues.

Placebo (saline) lots go through exactly the same gates and signatures as cell lots; only the
donor rule differs (a placebo lot has no donor).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from .. import lots, qc, signatures, steps
from ..audit import Actor
from ..deviations import deviations_block
from ..donors import decision_signature
from ..models import (
    Donation,
    Eligibility,
    Lot,
    LotDecision,
    LotState,
    Meaning,
    Role,
    Signature,
    StepEntry,
    StepState,
    saved_id,
)
from ..specifications import ReleaseTest
from ..specifications import versions as spec_versions
from .excursions import excursions_of
from .reviews import latest_change_seq, latest_review, standing

Gate = Callable[[Session, Lot, Actor | None], str | None]
# lots.move runs the guards with (session, lot, actor) only; the pending tests a QP lists with an
# initial certification reach the test gate through the session, for the length of that one move.
_PENDING_KEY = "cellbench.release.pending_tests"


# --- what the test gates share with the pending tests -------------------------------------------


# A test the lot's own QC results must cover: required for release and not a donor-stage test, whose
# record is the donation's QA-signed eligibility (donor_eligible). One rule, kept by qc.
counts_for_release = qc.needs_lot_result


def name_of(test: ReleaseTest) -> str:
    return test.name or test.code


def pending_candidates(session: Session, lot: Lot) -> list[ReleaseTest]:
    """Release tests an initial certification may list as pending: no passing reviewed result, not OOS."""
    return [s.test for s in qc.test_status(session, lot)
            if counts_for_release(s.test) and s.state not in (qc.PASS, qc.OOS)]


@contextmanager
def declared_pending(session: Session, codes: frozenset[str]) -> Iterator[None]:
    """Puts the pending tests where the initial-certification gate reads them, for one move."""
    session.info[_PENDING_KEY] = codes
    try:
        yield
    finally:
        session.info.pop(_PENDING_KEY, None)


def last_decision(session: Session, lot: Lot, name: str) -> LotDecision | None:
    return session.scalars(select(LotDecision).where(col(LotDecision.lot_id) == lot.id,
                                                     col(LotDecision.decision) == name)
                           .order_by(col(LotDecision.id).desc())).first()


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
    stands = signatures.standing_ids(session, (i for entries in by_code.values() for entry in entries
                                               for i in (entry.performed_signature_id, entry.verified_signature_id)))
    for step in spec.steps:
        for entry in by_code.get(step.code, []):
            entry_state = StepState(entry.state)
            if entry_state is StepState.not_applicable:
                continue
            if entry_state is StepState.open:
                return f"Step '{step.title}' of lot {lot.number} was reopened by a correction and is not signed again."
            if entry.performed_signature_id not in stands:
                return f"The performed signature of step '{step.title}' no longer stands."
            if step.verify and entry.verified_signature_id not in stands:
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
        if status.state == qc.PASS or not counts_for_release(status.test):
            continue
        if status.state == qc.OOS:
            blocking.append(f"{name_of(status.test)} is out of specification.")
        elif status.test.code not in pending:
            blocking.append(f"{name_of(status.test)} has no passing reviewed result and is not listed as pending.")
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


def vials_reconciled(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """Every vial accounted for: filled = placed + pulled for QC + retained + destroyed, each vial
    with exactly one fate (lots.vials records them; one column holds the one fate)."""
    why = lots.unreconciled(lots.reconcile(session, lot))
    return f"Vials of lot {lot.number}: {why}" if why else None


def deviations_closed(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """DESIGN allows "closed or assessed and accepted by QA". In the deviation state machine an
    assessment may be recorded by an operator (state "assessed"); QA accepts it only by closing the
    deviation, a signature meaning "approved" on the impact assessment and CAPA. So acceptance by QA
    *is* closure here, and every deviation of the lot not closed blocks, as deviations_block says.
    One rule, in one place: the release gate and the deviation module can never disagree."""
    return deviations_block(session, saved_id(lot))


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
        if review is None or standing(session, review.signature_id) is None:
            return f"QA has not signed the {what} of lot {lot.number}."
        latest = latest_change_seq(session, lot)
        if review.up_to_seq < latest:
            return (f"The {what} of lot {lot.number} is stale: it covers the lot's audit trail up to event "
                    f"{review.up_to_seq}, and the lot changed since (event {latest}). QA reviews it again.")
        return None

    gate.__name__ = f"{kind}_reviewed"
    gate.__doc__ = f"QA's signed {what} covers the lot's latest audit event: a later change makes it stale."
    return gate


audit_trail_reviewed = _review_gate("audit_trail", "audit-trail review")
batch_record_reviewed = _review_gate("batch_record", "batch-record review")
# Each kind of QA review (reviews.REVIEW_KINDS) with the gate saying why it is missing or stale.
REVIEW_GATES: dict[str, Gate] = {"batch_record": batch_record_reviewed, "audit_trail": audit_trail_reviewed}


def qp_independent(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """The certifying QP neither performed nor verified any step of the lot (DESIGN separation rule).
    Signatures since voided by a correction count too: the person still did the work."""
    if actor is None or actor.user_id is None:
        return None  # only the QP who signs can be checked; readiness without a QP shows it open
    entry_ids = [str(i) for i in session.scalars(select(col(StepEntry.id)).where(col(StepEntry.lot_id) == lot.id))]
    performed = session.scalars(select(col(StepEntry.id)).where(col(StepEntry.lot_id) == lot.id,
                                                                col(StepEntry.performed_by) == actor.user_id)).first()
    signed = session.scalars(select(col(Signature.meaning)).where(
        col(Signature.entity_type) == "step_entry", col(Signature.entity_id).in_(entry_ids or ["-"]),
        col(Signature.signer_id) == actor.user_id,
        col(Signature.meaning).in_([Meaning.performed.value, Meaning.verified.value]))).first()
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
    if standing(session, decision.signature_id) is None:
        return f"The final QP certification of lot {lot.number} no longer stands."
    return None


def initially_certified(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """The sponsor releases for shipment only what a QP initially certified, that signature standing."""
    decision = last_decision(session, lot, "certify_initial")
    if decision is None or standing(session, decision.signature_id) is None:
        return f"Lot {lot.number} has no standing initial QP certification."
    return None


def no_result_out_of_specification(session: Session, lot: Lot, actor: Actor | None = None) -> str | None:
    """No release test stands out of specification: a pending test may still be open, a failed one not."""
    failed = [name_of(s.test) for s in qc.test_status(session, lot) if s.state == qc.OOS]
    return f"Out of specification: {', '.join(failed)}." if failed else None


_CERTIFICATION = (batch_record_complete, vials_reconciled, donor_eligible, deviations_closed, no_unassessed_excursion,
                  batch_record_reviewed, audit_trail_reviewed, qp_independent)
GUARDS: dict[str, tuple[Gate, ...]] = {
    "initial_certification": (_CERTIFICATION[0], release_tests_in_specification_or_pending, *_CERTIFICATION[1:]),
    "final_certification": (_CERTIFICATION[0], release_tests_in_specification, *_CERTIFICATION[1:]),
    # What may have changed between certification and the sponsor's release is checked again; the
    # reviews are not, since the certification itself is a later event on the lot.
    "sponsor_release": (certified, release_tests_in_specification, deviations_closed, no_unassessed_excursion),
    # Two-step release: shipment under quarantine after the initial certification, its pending tests open.
    "shipment_release": (initially_certified, no_result_out_of_specification, deviations_closed,
                         no_unassessed_excursion),
}

LABELS = {
    "batch_record_complete": "Batch record complete, every required verification signed",
    "release_tests_in_specification": "Release tests present, reviewed and in specification",
    "release_tests_in_specification_or_pending": "Release tests in specification or listed as pending (never OOS)",
    "vials_reconciled": "Every vial accounted for: placed, pulled for QC, retained or destroyed",
    "donor_eligible": "Donor eligible",
    "deviations_closed": "Deviations closed by QA",
    "no_unassessed_excursion": "No unassessed storage excursion",
    "batch_record_reviewed": "Batch record reviewed by QA (by exception)",
    "audit_trail_reviewed": "Audit trail of the lot reviewed by QA",
    "qp_independent": "Certifying QP did not perform or verify a step",
    "certified": "Final QP certification",
    "initially_certified": "Initial QP certification, its pending tests listed",
    "no_result_out_of_specification": "No release test out of specification",
}


# --- readiness ----------------------------------------------------------------------------------


def donor_label(session: Session, lot: Lot) -> str:
    """The donor gate as a reviewer would write it: a cell lot names its donation, a saline lot
    says it has no donor to assess."""
    if lots.spec_of(session, lot).kind == "placebo":
        return "No donor to assess: saline placebo (0.9 % sodium chloride)"
    donation = session.get(Donation, lot.donation_id) if lot.donation_id else None
    if donation is None:
        return LABELS["donor_eligible"]
    return f"Donor eligible (donation {donation.identifier}, decided by QA)"


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
    return ("sponsor_release" if LotState(lot.state) in (LotState.qp_certified, LotState.released)
            else "final_certification")


def readiness(session: Session, lot: Lot, actor: Actor | None = None, guard: str | None = None) -> list[GateState]:
    """Each gate of the lot's next decision with why it blocks (None: it holds). For an initial
    certification, every test without a result counts as listed pending (the form lists them)."""
    guard = guard or next_guard(lot)
    qp = actor if actor is not None and Role.qp in actor.roles else None

    def label(name: str) -> str:
        if name == "qp_independent" and qp is None:
            return LABELS[name] + " (checked against the QP who signs)"
        if name == "donor_eligible":
            return donor_label(session, lot)
        return LABELS[name]

    def run() -> list[GateState]:
        return [GateState(g.__name__, label(g.__name__), g(session, lot, qp)) for g in GUARDS[guard]]

    if guard == "initial_certification" and _PENDING_KEY not in session.info:
        with declared_pending(session, frozenset(t.code for t in pending_candidates(session, lot))):
            return run()
    return run()
