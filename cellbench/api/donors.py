"""JSON API: donors, donations, eligibility tests and the eligibility decision.

Donations are addressed by their identifier in any spelling (as stored, or scanned or typed);
percent-encode it in the path (spaces, '=')."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import clock, donors
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Donation, Donor, DonorTest, Eligibility, Meaning, Role
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["donors"])
reader = require(*donors.READERS)
operator = require(Role.operator)


class TestOut(BaseModel):
    test: str
    name: str
    result: Literal["negative", "positive", "indeterminate"]
    sample_date: date
    laboratory: str
    recorded_at: datetime


class SignatureOut(BaseModel):
    signer_name: str
    at: datetime
    meaning: Meaning
    reason: str | None


class EligibilityOut(BaseModel):
    state: Eligibility
    blockers: list[str] = Field(description="Why the donation cannot (yet) be signed eligible; empty when it can.")
    may_start_lot: bool
    lot_refusal: str | None = Field(description="Why a lot cannot be started from this donation, if it cannot.")
    signature: SignatureOut | None


class DonationSummary(BaseModel):
    identifier: str = Field(description="Exactly as received.")
    id_system: Literal["ISBT128", "SEC"]
    donated_on: date
    eligibility: Eligibility


class DonationOut(DonationSummary):
    donor: str
    check_character: str | None
    created_at: datetime
    tests: list[TestOut]
    missing_tests: list[str]
    decision: EligibilityOut


class DonorOut(BaseModel):
    code: str
    consent_date: date | None
    consent_reference: str | None
    created_at: datetime
    donations: list[DonationSummary]


class NewDonor(BaseModel):
    code: str = Field(max_length=32, description=f"Pseudonym: {donors.DONOR_CODE_HINT}.")
    consent_date: date
    consent_reference: str = Field(max_length=100)


class NewDonation(BaseModel):
    identifier: str = Field(max_length=64, description="ISBT 128 DIN, or 'SEC' and the SEC donation sequence.")
    check_character: str | None = Field(None, max_length=1,
                                        description="ISBT 128: the eye-readable check character. SEC: omit.")
    donated_on: date


class TestIn(BaseModel):
    test: str = Field(description="One of: " + ", ".join(donors.REQUIRED_PANEL) + ".")
    result: Literal["negative", "positive", "indeterminate"]
    sample_date: date
    laboratory: str = Field(max_length=200)


class TestsIn(BaseModel):
    tests: list[TestIn]
    reason: str | None = Field(None, description="Required when a recorded result is changed.")


class DecisionIn(BaseModel):
    decision: Literal["eligible", "ineligible"]
    password: str = Field(description="The signer's password: the decision is an electronic signature.")
    reason: str | None = Field(None, description="Required for 'ineligible'.")


def _summary(d: Donation) -> DonationSummary:
    return DonationSummary(identifier=d.identifier, id_system=d.id_system, donated_on=d.donated_on,
                           eligibility=d.eligibility)


def donor_out(session: Session, donor: Donor) -> DonorOut:
    return DonorOut(code=donor.code, consent_date=donor.consent_date, consent_reference=donor.consent_reference,
                    created_at=donor.created_at, donations=[_summary(d) for d in donors.donations_of(session, donor)])


def _test_out(t: DonorTest) -> TestOut:
    return TestOut(test=t.test, name=donors.REQUIRED_PANEL.get(t.test, t.test), result=t.result,
                   sample_date=t.sample_date, laboratory=t.laboratory, recorded_at=t.recorded_at)


def eligibility_out(session: Session, d: Donation) -> EligibilityOut:
    sig = donors.decision_signature(session, d)
    refusal = donors.donation_may_start_lot(session, d)
    return EligibilityOut(
        state=d.eligibility, blockers=donors.eligibility_blockers(session, d), may_start_lot=refusal is None,
        lot_refusal=refusal,
        signature=SignatureOut(signer_name=sig.signer_name, at=sig.at, meaning=sig.meaning,
                               reason=donors.decision_reason(session, sig)) if sig else None)


def donation_out(session: Session, d: Donation) -> DonationOut:
    tests = donors.tests_of(session, d)
    return DonationOut(**_summary(d).model_dump(), donor=donors.donor_of(session, d).code,
                       check_character=d.check_character, created_at=d.created_at,
                       tests=[_test_out(t) for t in tests.values()],
                       missing_tests=[c for c in donors.REQUIRED_PANEL if c not in tests],
                       decision=eligibility_out(session, d))



DonorPageOut = paging.page_model("DonorPageOut", "donors", DonorOut, "Newest donor first")


@router.get("/donors", response_model=DonorPageOut)
def list_donors(viewer: Viewer = Depends(reader), session: Session = Depends(read_session),
                eligibility: Eligibility | None = None, ask: Ask = Depends(paging.ask)):
    found = donors.donor_page(session, ask, eligibility.value if eligibility else None)
    return DonorPageOut(donors=[DonorOut(code=r.donor.code, consent_date=r.donor.consent_date,
                                         consent_reference=r.donor.consent_reference, created_at=r.donor.created_at,
                                         donations=[_summary(d) for d in r.donations]) for r in found.rows],
                        next=found.next)


@router.post("/donors", response_model=DonorOut, status_code=201)
def register_donor(body: NewDonor, request: Request, viewer: Viewer = Depends(operator),
                   db: Database = Depends(get_db)):
    with db.write() as session:
        donor = donors.register_donor(session, viewer.actor, body.code, body.consent_date, body.consent_reference,
                                      today=clock.today())
        return donor_out(session, donor)


@router.get("/donors/{code}", response_model=DonorOut)
def get_donor(code: str, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    return donor_out(session, donors.donor_by_code(session, code))


@router.post("/donors/{code}/donations", response_model=DonationOut, status_code=201)
def register_donation(code: str, body: NewDonation, request: Request, viewer: Viewer = Depends(operator),
                      db: Database = Depends(get_db)):
    with db.write() as session:
        donation = donors.register_donation(session, viewer.actor, donors.donor_by_code(session, code),
                                            body.identifier, body.check_character, body.donated_on,
                                            today=clock.today())
        return donation_out(session, donation)


@router.get("/donations/{identifier}", response_model=DonationOut)
def get_donation(identifier: str, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    return donation_out(session, donors.donation_by_identifier(session, identifier))


@router.post("/donations/{identifier}/tests", response_model=DonationOut,
             description="Record results, one test or the whole panel. A result that differs from the recorded "
                         "one is a correction and needs `reason`.")
def record_tests(identifier: str, body: TestsIn, request: Request, viewer: Viewer = Depends(operator),
                 db: Database = Depends(get_db)):
    with db.write() as session:
        donation = donors.donation_by_identifier(session, identifier)
        entries = [donors.TestEntry(t.test, t.result, t.sample_date, t.laboratory) for t in body.tests]
        donors.record_tests(session, viewer.actor, donation, entries, body.reason, today=clock.today())
        return donation_out(session, donation)


@router.get("/donations/{identifier}/eligibility", response_model=EligibilityOut)
def get_eligibility(identifier: str, viewer: Viewer = Depends(reader), session: Session = Depends(read_session)):
    return eligibility_out(session, donors.donation_by_identifier(session, identifier))


@router.post("/donations/{identifier}/eligibility", response_model=EligibilityOut,
             description="QA signs the decision (meaning `approved` for eligible, `rejected` for ineligible). Final.")
def decide(identifier: str, body: DecisionIn, viewer: Viewer = Depends(require(Role.qa)),
           db: Database = Depends(get_db)):
    with db.write() as session:
        donation = donors.donation_by_identifier(session, identifier)
        donors.decide_eligibility(session, session.merge(viewer.user), body.password, donation, body.decision,
                                  body.reason)
        return eligibility_out(session, donation)

