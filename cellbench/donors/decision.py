"""QA's signed eligibility decision: final, covering the results it was made on, and the rule
that only a donation signed eligible starts a cell lot."""
from __future__ import annotations

from sqlalchemy import select, update
from sqlmodel import Session, col

from .. import audit, limits, signatures, users
from ..errors import Conflict, InvalidInput, NotFound
from ..models import AuditEvent, Donation, DonorTest, Eligibility, Meaning, Role, Signature, User
from .common import REQUIRED_PANEL
from .donations import donor_of
from .panel import eligibility_blockers, tests_of


@signatures.content_rule("donation")
def _decision_content(session: Session, identifier: str) -> dict:
    """What QA's eligibility signature covers: the donation, its donor's consent, every test
    result with its sample date and laboratory, and the decision."""
    donation = session.scalars(select(Donation).where(col(Donation.identifier) == identifier)).first()
    if donation is None:
        raise NotFound(f"No donation '{identifier}'.")
    donor = donor_of(session, donation)
    return {
        "donation": donation.identifier,
        "id_system": donation.id_system,
        "check_character": donation.check_character,
        "donated_on": donation.donated_on.isoformat(),
        "donor": donor.code,
        "consent_date": donor.consent_date.isoformat() if donor.consent_date else None,
        "consent_reference": donor.consent_reference,
        "tests": [{"test": t.test, "result": t.result, "sample_date": t.sample_date.isoformat(),
                   "laboratory": t.laboratory} for t in tests_of(session, donation).values()],
        "decision": Eligibility(donation.eligibility).value,
    }


DECISION_MEANING = {Eligibility.eligible: Meaning.approved, Eligibility.ineligible: Meaning.rejected}


def decide_eligibility(session: Session, qa: User, password: str, donation: Donation,
                       decision: Eligibility | str | None, reason: str | None = None) -> Signature:
    """QA signs the eligibility decision (approved = eligible, rejected = ineligible).

    "Eligible" needs every rule to pass. "Ineligible" may be decided at any time and needs a
    reason. Either is final: a second decision is refused.
    """
    actor = users.actor(session, qa)
    users.require_role(actor, Role.qa)
    try:
        choice = Eligibility(str(getattr(decision, "value", decision) or "").strip().lower())
    except ValueError:
        choice = None
    if choice not in DECISION_MEANING:
        raise InvalidInput("Choose the decision: eligible or ineligible.", field="decision")
    if choice is Eligibility.ineligible:
        reason = audit.require_reason(reason)
    else:
        reason = limits.text(reason, "reason", "reason", "reason")
    # Only the pending row changes, and it stays locked to the end: a second QA deciding at the same
    # moment waits on it (PostgreSQL) and then matches nothing, and a test entry waits too, so the
    # rules below and the signature read the same results.
    moved = session.exec(update(Donation).where(col(Donation.id) == donation.id,
                                                col(Donation.eligibility) == Eligibility.pending.value)
                         .values(eligibility=choice.value))
    session.refresh(donation)
    if moved.rowcount != 1:
        raise Conflict(_already_decided(session, donation, Eligibility(donation.eligibility)), field="decision")
    if choice is Eligibility.eligible and (blockers := eligibility_blockers(session, donation)):
        raise InvalidInput("The donation cannot be signed eligible: " + " ".join(blockers), field="decision")
    sig = signatures.sign(session, qa, password, DECISION_MEANING[choice], "donation", donation.identifier,
                          reason=reason)
    donation.eligibility_signature_id = sig.id
    audit.record(session, actor, "eligibility decided", "donation", donation.identifier, field="eligibility",
                 old=Eligibility.pending, new=choice, reason=reason)
    session.flush()
    return sig


def _already_decided(session: Session, donation: Donation, state: Eligibility) -> str:
    sig = decision_signature(session, donation)
    by = f" by {sig.signer_name} on {sig.at:%Y-%m-%d}" if sig else ""
    return (f"Donation {donation.identifier} was already decided {state.value}{by}. An eligibility decision is "
            "final; if new information questions it, raise a deviation.")


def decision_signature(session: Session, donation: Donation) -> Signature | None:
    return session.get(Signature, donation.eligibility_signature_id) if donation.eligibility_signature_id else None


def decision_reason(session: Session, sig: Signature | None) -> str | None:
    """The reason QA gave with the decision (kept on the signature's audit event)."""
    event = session.get(AuditEvent, sig.audit_seq) if sig and sig.audit_seq else None
    return event.reason if event else None


def donation_may_start_lot(session: Session, donation: Donation) -> str | None:
    """Why a lot cannot be started from this donation, or None when QA has signed it eligible.
    An ineligible or undecided donor cannot start a lot."""
    state = Eligibility(donation.eligibility)
    if state is Eligibility.ineligible:
        return f"Donation {donation.identifier} was decided ineligible: an ineligible donor cannot start a lot."
    if state is Eligibility.pending:
        return (f"Donation {donation.identifier} has no eligibility decision yet: an undecided donor cannot start a "
                "lot. QA signs the eligibility first.")
    sig = decision_signature(session, donation)
    if sig is None or sig.invalidated_at is not None or Meaning(sig.meaning) is not Meaning.approved:
        return f"Donation {donation.identifier} has no valid signed eligibility decision: it cannot start a lot."
    return None


def pending_donations(session: Session) -> tuple[list[Donation], list[Donation]]:
    """(pending donations whose panel is complete: QA can decide; pending donations missing results)."""
    recorded: dict[int, set[str]] = {}
    for donation_id, code in session.execute(select(col(DonorTest.donation_id), col(DonorTest.test))):
        recorded.setdefault(donation_id, set()).add(code)
    ready: list[Donation] = []
    missing: list[Donation] = []
    for donation in session.scalars(select(Donation).where(col(Donation.eligibility) == Eligibility.pending.value)
                                    .order_by(col(Donation.id))):
        (ready if set(REQUIRED_PANEL) <= recorded.get(donation.id or 0, set()) else missing).append(donation)
    return ready, missing


def pending_counts(session: Session) -> tuple[int, int]:
    """(pending donations whose panel is complete: QA can decide; pending donations missing results)."""
    ready, missing = pending_donations(session)
    return len(ready), len(missing)
