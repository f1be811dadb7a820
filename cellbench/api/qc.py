"""JSON API for QC results, for a LIMS or an instrument: enter (one, or a set at once), list, review (one, or
a set under one signature), invalidate."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr
from sqlmodel import Session

from .. import lots, qc
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Deviation, Lot, QcResult, Signature

router = APIRouter(prefix="/api/v1", tags=["QC results"])
reader = require(*lots.READERS)


class SignatureOut(BaseModel):
    signer: str
    meaning: str
    at: datetime


class ResultOut(BaseModel):
    id: int
    test: str
    value: str
    unit: str | None
    verdict: str = Field(description="pass | oos")
    sample_id: str | None
    entered_by: str
    entered_at: datetime
    retest_of: int | None = Field(description="the result this one retests; the original stays")
    review: SignatureOut | None = Field(description="the second person's review; a result counts only once reviewed")
    invalidated_at: datetime | None
    invalidation_reason: str | None
    invalidation: SignatureOut | None
    deviation: str | None = Field(description="the OOS investigation deviation")


class ReleaseTestOut(BaseModel):
    test: str
    name: str
    method: str
    unit: str | None
    acceptance: str
    stage: str
    required_for_release: bool
    state: str = Field(description="missing | invalidated_only | oos | unreviewed | pass")
    current_result: int | None


class LotQcOut(BaseModel):
    lot: str
    state: str
    tests: list[ReleaseTestOut]
    results: list[ResultOut]
    release_problems: list[str] = Field(description="why the QC results do not yet allow release")


class NewResult(BaseModel):
    test: str = Field(description="a release test code of the lot's specification version, e.g. viability")
    value: StrictStr | StrictInt | StrictFloat = Field(
        description="a number in the test's unit (decimal point, no unit), or the result word, e.g. 'no growth'")
    sample_id: str | None = None
    retest_of: int | None = Field(None, description="the current result of the test, when this is a retest")
    lot_version: int | None = Field(None, description="the lot's row_version as last read: 409 if it changed")


class Review(BaseModel):
    password: str


class SetRow(BaseModel):
    test: str = Field(description="a release test code of the lot's specification version")
    value: StrictStr | StrictInt | StrictFloat = Field(
        description="a number in the test's unit (decimal point, no unit), or the result word")
    sample_id: str | None = None


class ResultSet(BaseModel):
    results: list[SetRow] = Field(description="the results to enter together: all are saved, or none")
    lot_version: int | None = Field(None, description="the lot's row_version as last read: 409 if it changed")


class SetReview(BaseModel):
    results: list[int] = Field(description="the ids of the results reviewed together under one signature")
    password: str


class SetReviewOut(BaseModel):
    signature: SignatureOut
    content_hash: str = Field(description="SHA-256 of the signed content, which lists every member")
    results: list[ResultOut]


class Invalidation(BaseModel):
    reason: str
    password: str


def _signature(session: Session, sig_id: int | None) -> SignatureOut | None:
    sig = session.get(Signature, sig_id) if sig_id else None
    return SignatureOut(signer=sig.signer_name, meaning=str(getattr(sig.meaning, "value", sig.meaning)),
                        at=sig.at) if sig else None


def result_out(session: Session, r: QcResult) -> ResultOut:
    deviation = session.get(Deviation, r.deviation_id) if r.deviation_id else None
    return ResultOut(id=r.id, test=r.test_code, value=r.value, unit=r.unit, verdict=r.verdict, sample_id=r.sample_id,
                     entered_by=r.entered_by_name, entered_at=r.entered_at, retest_of=r.retest_of,
                     review=_signature(session, r.review_signature_id), invalidated_at=r.invalidated_at,
                     invalidation_reason=r.invalidation_reason,
                     invalidation=_signature(session, r.invalidation_signature_id),
                     deviation=deviation.number if deviation else None)


def lot_qc_out(session: Session, lot: Lot) -> LotQcOut:
    statuses = qc.test_status(session, lot)
    return LotQcOut(
        lot=lot.number, state=str(getattr(lot.state, "value", lot.state)),
        tests=[ReleaseTestOut(test=s.test.code, name=s.test.name, method=s.test.method, unit=s.test.unit,
                       acceptance=s.test.acceptance.describe(s.test.unit), stage=s.test.stage,
                       required_for_release=s.test.required_for_release, state=s.state,
                       current_result=s.result.id if s.result else None) for s in statuses],
        results=[result_out(session, r) for r in qc.results_of(session, lot)],
        release_problems=[p for s in statuses if s.test.required_for_release and (p := qc.problem(s))])


@router.get("/lots/{number}/qc-results", response_model=LotQcOut)
def list_results(number: str, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    return lot_qc_out(session, lots.by_number(session, number))


@router.post("/lots/{number}/qc-results", response_model=ResultOut, status_code=201,
             description="Enter a result (QC analyst). An OOS verdict opens an investigation deviation at once.")
def enter_result(number: str, body: NewResult, viewer: Viewer = Depends(require(*qc.ANALYSTS)),
                 db: Database = Depends(get_db)):
    with db.write() as session:
        result = qc.enter_result(session, viewer.actor, lots.by_number(session, number), body.test, body.value,
                                 sample_id=body.sample_id, retest_of=body.retest_of, seen_version=body.lot_version)
        return result_out(session, result)


@router.post("/lots/{number}/qc-results/set", response_model=list[ResultOut], status_code=201,
             description="Enter several results at once (QC analyst): one bad row saves nothing and the error names "
                         "its test (field 'value:<test>'). Donor-stage tests are the donation's, not entered here.")
def enter_results(number: str, body: ResultSet, viewer: Viewer = Depends(require(*qc.ANALYSTS)),
                  db: Database = Depends(get_db)):
    rows = [qc.Row(r.test, r.value, r.sample_id) for r in body.results]
    with db.write() as session:
        saved = qc.enter_results(session, viewer.actor, lots.by_number(session, number), rows,
                                 seen_version=body.lot_version)
        return [result_out(session, r) for r in saved]


@router.post("/lots/{number}/qc-results/set-review", response_model=SetReviewOut,
             description="Second-person review of a set of results under ONE signature (meaning 'reviewed') whose "
                         "content covers every member; never of a result the reviewer entered; 409 if any member "
                         "was already reviewed.")
def review_results(number: str, body: SetReview, viewer: Viewer = Depends(require(*qc.REVIEWERS)),
                   db: Database = Depends(get_db)):
    with db.write() as session:
        lot = lots.by_number(session, number)
        sig = qc.review_results(session, session.merge(viewer.user), body.password, lot, body.results)
        members = [qc.result_of_lot(session, lot, i) for i in sorted(set(body.results))]
        out = SignatureOut(signer=sig.signer_name, meaning=str(getattr(sig.meaning, "value", sig.meaning)), at=sig.at)
        return SetReviewOut(signature=out, content_hash=sig.content_hash,
                            results=[result_out(session, r) for r in members])


@router.post("/lots/{number}/qc-results/{result_id}/review", response_model=ResultOut,
             description="Second-person review, signed (meaning 'reviewed'); never by the person who entered it.")
def review_result(number: str, result_id: int, body: Review, viewer: Viewer = Depends(require(*qc.REVIEWERS)),
                  db: Database = Depends(get_db)):
    with db.write() as session:
        result = qc.result_of_lot(session, lots.by_number(session, number), result_id)
        qc.review_result(session, session.merge(viewer.user), body.password, result)
        return result_out(session, result)


@router.post("/lots/{number}/qc-results/{result_id}/invalidation", response_model=ResultOut,
             description="QA invalidates a result with a reason and a signature (meaning 'rejected'); the row stays.")
def invalidate_result(number: str, result_id: int, body: Invalidation,
                      viewer: Viewer = Depends(require(*qc.INVALIDATORS)), db: Database = Depends(get_db)):
    with db.write() as session:
        result = qc.result_of_lot(session, lots.by_number(session, number), result_id)
        qc.invalidate_result(session, session.merge(viewer.user), body.password, result, body.reason)
        return result_out(session, result)
