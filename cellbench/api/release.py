"""JSON API for release: a lot's gates and state, QA's reviews, the QP's certification, the sponsor
release, rejection and storage excursions. Signing calls take the password again (21 CFR 11.200).

Paths sit under /api/v1/lots/{number}/release/...: the batch-record API owns /lots/{number}/{move}."""
from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import lots, qc, release
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Lot, Role, Signature

router = APIRouter(prefix="/api/v1", tags=["release"])
reader = require(*release.READERS)


class GateOut(BaseModel):
    name: str
    label: str
    passed: bool
    blocking_reason: str | None


class TestOut(BaseModel):
    code: str
    name: str
    required_for_release: bool
    state: str = Field(description="missing | unreviewed | pass | oos | invalidated_only")
    value: str | None
    unit: str | None


class PendingOut(BaseModel):
    test: str
    owner: str
    due_date: date
    resolved_at: datetime | None


class SignatureOut(BaseModel):
    signer: str
    meaning: str
    at: datetime
    invalidated: bool


class DecisionOut(BaseModel):
    decision: str
    from_state: str
    to_state: str
    reason: str | None
    signature: SignatureOut | None


class ReviewOut(BaseModel):
    kind: str
    up_to_seq: int
    signature: SignatureOut | None


class ReleaseOut(BaseModel):
    number: str
    state: str
    lot_version: int
    next_decision: str = Field(description="final_certification or sponsor_release: the rule set the gates are of")
    ready: bool
    gates: list[GateOut]
    tests: list[TestOut]
    pending_tests: list[PendingOut]
    reviews: list[ReviewOut]
    decisions: list[DecisionOut]
    allowed_actions: list[str] = Field(description="the lot moves this caller may make now")


class FindingOut(BaseModel):
    kind: str
    where: str
    what: str
    who: str | None
    at: datetime | None
    original: str | None
    new: str | None
    reason: str | None


def _sig(sig: Signature | None) -> SignatureOut | None:
    if sig is None:
        return None
    return SignatureOut(signer=sig.signer_name, meaning=str(getattr(sig.meaning, "value", sig.meaning)), at=sig.at,
                        invalidated=sig.invalidated_at is not None)


def release_out(session: Session, lot: Lot, viewer: Viewer) -> ReleaseOut:
    gates = release.readiness(session, lot, viewer.actor)
    pending = release.pending_tests(session, lot)
    owners = release.owner_names(session, pending)
    return ReleaseOut(
        number=lot.number, state=str(getattr(lot.state, "value", lot.state)), lot_version=lot.row_version,
        next_decision=release.next_guard(lot), ready=all(g.passed for g in gates),
        gates=[GateOut(name=g.name, label=g.label, passed=g.passed, blocking_reason=g.blocking_reason) for g in gates],
        tests=[TestOut(code=s.test.code, name=s.test.name, required_for_release=s.test.required_for_release,
                       state=s.state, value=s.result.value if s.result else None,
                       unit=s.result.unit if s.result else s.test.unit) for s in qc.test_status(session, lot)],
        pending_tests=[PendingOut(test=p.test_code, owner=owners.get(p.owner_id, ""), due_date=p.due_date,
                                  resolved_at=p.resolved_at) for p in pending],
        reviews=[ReviewOut(kind=r.kind, up_to_seq=r.up_to_seq, signature=_sig(s))
                 for r, s in release.reviews_of(session, lot)],
        decisions=[DecisionOut(decision=d.decision, from_state=d.from_state, to_state=d.to_state, reason=d.reason,
                               signature=_sig(s)) for d, s in release.decisions_with_signatures(session, lot)],
        allowed_actions=lots.allowed_moves(lot, viewer.actor))


class Signing(BaseModel):
    password: str
    lot_version: int | None = Field(None, description="the lot_version last read; omit to act on the lot as it is")


class ReviewIn(BaseModel):
    kind: str = Field(description="batch_record or audit_trail")
    password: str
    comment: str | None = None


class PendingIn(BaseModel):
    test: str = Field(description="release test code")
    owner: str = Field(description="username of the QC analyst who owns the result")
    due_date: date


class CertificationIn(Signing):
    final: bool = Field(description="true: final certification; false: initial, listing the pending tests")
    pending: list[PendingIn] = []
    comment: str | None = None


class RejectionIn(Signing):
    reason: str


class ExcursionIn(BaseModel):
    observed_at: datetime = Field(description="with its UTC offset")
    highest_temperature: float = Field(description="°C")
    description: str


class AssessmentIn(BaseModel):
    acceptable: bool
    assessment: str


@router.get("/lots/{number}/release", response_model=ReleaseOut,
            description="The gates of the lot's next decision, each with why it blocks, and its release record.")
def get_release(number: str, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    return release_out(session, lots.by_number(session, number), viewer)


@router.get("/lots/{number}/release/exceptions", response_model=list[FindingOut],
            description="Review by exception: only what needs QA's attention.")
def get_exceptions(number: str, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    return [FindingOut(**{k: getattr(f, k) for k in FindingOut.model_fields})
            for f in release.exceptions(session, lots.by_number(session, number))]


def _act(db: Database, number: str, viewer: Viewer, action) -> ReleaseOut:
    with db.write() as session:
        lot = lots.by_number(session, number)
        action(session, lot)
        return release_out(session, lot, viewer)


@router.post("/lots/{number}/release/reviews", response_model=ReleaseOut, status_code=201,
             description="QA signs (meaning reviewed) the batch-record review or the audit-trail review.")
def post_review(number: str, body: ReviewIn, viewer: Viewer = Depends(require(Role.qa)),
                db: Database = Depends(get_db)):
    return _act(db, number, viewer, lambda s, lot: release.sign_review(s, s.merge(viewer.user), body.password, lot,
                                                                        body.kind, body.comment))


@router.post("/lots/{number}/release/certification", response_model=ReleaseOut, status_code=201,
             description="The QP certifies (meaning certified): final, or initial with pending tests.")
def post_certification(number: str, body: CertificationIn, viewer: Viewer = Depends(require(Role.qp)),
                       db: Database = Depends(get_db)):
    pending = [(p.test, p.owner, p.due_date) for p in body.pending]
    return _act(db, number, viewer, lambda s, lot: release.certify(
        s, s.merge(viewer.user), body.password, lot, final=body.final, pending=pending, comment=body.comment,
        seen_version=body.lot_version))


@router.post("/lots/{number}/release/sponsor-release", response_model=ReleaseOut, status_code=201,
             description="The supply manager's sponsor release (meaning released).")
def post_sponsor_release(number: str, body: Signing, viewer: Viewer = Depends(require(Role.supply_manager)),
                         db: Database = Depends(get_db)):
    return _act(db, number, viewer, lambda s, lot: release.sponsor_release(s, s.merge(viewer.user), body.password,
                                                                            lot, seen_version=body.lot_version))


@router.post("/lots/{number}/release/shipment-release", response_model=ReleaseOut, status_code=201,
             description="Two-step release: the supply manager releases an initially certified lot for shipment "
                         "under quarantine (meaning released); its kits are assigned only after final certification.")
def post_shipment_release(number: str, body: Signing, viewer: Viewer = Depends(require(Role.supply_manager)),
                          db: Database = Depends(get_db)):
    return _act(db, number, viewer, lambda s, lot: release.release_for_shipment(
        s, s.merge(viewer.user), body.password, lot, seen_version=body.lot_version))


@router.post("/lots/{number}/release/rejection", response_model=ReleaseOut, status_code=201,
             description="QP or QA rejects the lot (meaning rejected), with a reason.")
def post_rejection(number: str, body: RejectionIn, viewer: Viewer = Depends(require(Role.qp, Role.qa)),
                   db: Database = Depends(get_db)):
    return _act(db, number, viewer, lambda s, lot: release.reject(s, s.merge(viewer.user), body.password, lot,
                                                                   body.reason, seen_version=body.lot_version))


@router.post("/lots/{number}/release/excursions", response_model=ReleaseOut, status_code=201)
def post_excursion(number: str, body: ExcursionIn,
                   viewer: Viewer = Depends(require(Role.operator, Role.qa, Role.supply_manager)),
                   db: Database = Depends(get_db)):
    return _act(db, number, viewer, lambda s, lot: release.record_excursion(
        s, viewer.actor, lot, observed_at=body.observed_at, highest_temperature=body.highest_temperature,
        description=body.description))


@router.post("/lots/{number}/release/excursions/{excursion_id}/assessment", response_model=ReleaseOut)
def post_assessment(number: str, excursion_id: int, body: AssessmentIn, viewer: Viewer = Depends(require(Role.qa)),
                    db: Database = Depends(get_db)):
    return _act(db, number, viewer, lambda s, lot: release.assess_excursion(
        s, viewer.actor, lot, excursion_id, acceptable=body.acceptable, assessment=body.assessment))
