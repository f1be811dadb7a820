"""OOS investigations: every out-of-specification result opens a deviation at once; one arriving
after certification or release also marks the lot and calls POST_CERTIFICATION_OOS_HOOKS (the
kits' blind-preserving quarantine registers there). The lot's state is left to QA and the QP."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, deviations
from ..audit import Actor
from ..models import AuditEvent, Lot, LotState, QcResult, Visibility
from ..specifications import ReleaseTest
from .grid import criterion_words
from .results import POST_CERTIFICATION, describe, release_test, spec_of

POST_CERTIFICATION_OOS = "post-certification OOS"

# Called as hook(session, actor, lot, result) in the transaction that records a post-certification
# OOS. A hook that raises rolls the whole entry back: the result is saved with its consequences or
# not at all.
PostCertificationHook = Callable[[Session, Actor, Lot, QcResult], None]
POST_CERTIFICATION_OOS_HOOKS: list[PostCertificationHook] = []


def post_certification_oos(session: Session, lot: Lot) -> list[QcResult]:
    """The OOS results that arrived after the lot was certified or released, oldest first."""
    query = select(col(AuditEvent.field), col(AuditEvent.new_value)).where(
        col(AuditEvent.entity_type) == "lot", col(AuditEvent.entity_id) == lot.number,
        col(AuditEvent.action) == POST_CERTIFICATION_OOS).order_by(col(AuditEvent.seq))
    ids = [int(new) for field, new in session.execute(query) if field == "qc_result" and (new or "").isdigit()]
    return [r for r in (session.get(QcResult, i) for i in ids) if r is not None]



def open_investigation(session: Session, actor: Actor, lot: Lot, test: ReleaseTest, result: QcResult,
                        state: LotState) -> None:
    description = (f"Out-of-specification QC result on lot {lot.number}: {test.name} = "
                   f"{describe(test, result)}; accepted: {criterion_words(test)}. "
                   f"Result #{result.id}, entered by {result.entered_by_name}"
                   + (f", retest of result #{result.retest_of}" if result.retest_of else "") + ". "
                   "Investigate before any retest; a passing retest does not clear this result.")
    if state in POST_CERTIFICATION:
        description += (f" The lot was already {state.value.replace('_', ' ')}: its kits are to be quarantined "
                        "without breaking the blind, and the sites' investigators informed.")
    deviation = deviations.raise_deviation(session, actor, lot_id=lot.id, origin="oos", severity="major",
                                           description=description)
    result.deviation_id = deviation.id
    session.flush()
    audit.record(session, actor, "oos investigation opened", "qc_result", result.id, field="deviation",
                 new=deviation.number, visibility=Visibility.unblinded)


def _name(session: Session, lot: Lot, result: QcResult) -> str:
    test = release_test(spec_of(session, lot), result.test_code)
    return test.name if test else result.test_code


def on_post_certification_oos(session: Session, actor: Actor, lot: Lot, result: QcResult) -> None:
    """Mark the lot (an audited event post_certification_oos() finds) and call every registered
    hook. The lot's state is left as it is: QA and the QP decide what happens to it."""
    audit.record(session, actor, POST_CERTIFICATION_OOS, "lot", lot.number, field="qc_result", new=result.id,
                 reason=f"{_name(session, lot, result)} out of specification while the lot is "
                        f"{LotState(lot.state).value.replace('_', ' ')}",
                 visibility=Visibility.unblinded)
    for hook in POST_CERTIFICATION_OOS_HOOKS:
        hook(session, actor, lot, result)

