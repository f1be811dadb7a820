"""JSON API: participants and visits, kit assignment and dispensing by scan, the preparation
clock, administration per gland, and returns. Every response is the same shape and wording for
both arms; none carries an arm."""
from __future__ import annotations

from datetime import date, datetime
from typing import cast

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import custody, kits, pharmacy, studies
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import Participant, Site, Study
from ..pagination import PAGE_SIZE, Ask
from . import paging
from .codes import CODE_DESCRIPTION, ManualEntryIn

router = APIRouter(prefix="/api/v1", tags=["pharmacy"])
readers = require(*pharmacy.READERS)
pharmacists = require(*pharmacy.PHARMACY)


class AdministrationOut(BaseModel):
    gland: str
    administered_at: datetime
    volume_ml: float
    administered_by: str
    recorded_by: str


class VisitOut(BaseModel):
    study: str
    participant: str = Field(description="The randomisation number (the screening number before randomisation)")
    screening_number: str
    site: str
    treatment: int
    target_date: date
    window_start: date
    window_end: date
    state: str
    state_label: str
    kit_number: str | None
    kit_state_label: str | None
    blinded_lot: str | None
    expiry: date | None
    preparation_started_at: datetime | None
    use_by: datetime | None
    administrations: list[AdministrationOut]
    replaced_kits: list[str]
    visit_version: int = Field(description="Send it back to act on the visit: a stale one is a 409 conflict")
    kit_version: int | None
    allowed_actions: list[str] = Field(description="What the visit's transition table lets the caller do now")


class ParticipantOut(BaseModel):
    study: str
    site: str
    screening_number: str
    randomisation_number: str | None
    enrolled_at: datetime
    randomised_at: datetime | None
    unblinded_at: datetime | None
    visits: list[VisitOut]


def visit_out(view: pharmacy.VisitView) -> VisitOut:
    return VisitOut(
        study=view.study, participant=view.participant, screening_number=view.screening_number, site=view.site,
        treatment=view.treatment, target_date=view.target_date, window_start=view.window_start,
        window_end=view.window_end, state=view.state, state_label=view.state_label, kit_number=view.kit_number,
        kit_state_label=view.kit_state_label, blinded_lot=view.blinded_lot, expiry=view.expiry,
        preparation_started_at=view.preparation_started_at, use_by=view.use_by,
        administrations=[AdministrationOut(gland=a.gland, administered_at=a.administered_at, volume_ml=a.volume_ml,
                                           administered_by=a.administered_by, recorded_by=a.recorded_by)
                         for a in view.administrations],
        replaced_kits=view.replaced_kits, visit_version=view.visit_version, kit_version=view.kit_version,
        allowed_actions=view.allowed)


def participant_out(session: Session, viewer: Viewer, participant: Participant) -> ParticipantOut:
    study = custody.fetch(session, Study, participant.study_id, "study")
    site = custody.fetch(session, Site, participant.site_id, "site")
    return participants_out(session, viewer, [(participant, study, site)])[0]


def participants_out(session: Session, viewer: Viewer,
                     rows: list[tuple[Participant, Study, Site]]) -> list[ParticipantOut]:
    """A page of participants with their visits, in a fixed number of reads whatever the page's size."""
    visits_of = pharmacy.visits_by_participant(session, [p for p, _study, _site in rows])
    shown = iter(pharmacy.views(session, viewer.actor, [v for visits in visits_of.values() for v in visits]))
    by_participant = {pid: [next(shown) for _visit in visits] for pid, visits in visits_of.items()}
    return [ParticipantOut(
        study=study.code, site=site.code, screening_number=participant.screening_number,
        randomisation_number=participant.randomisation_number, enrolled_at=participant.enrolled_at,
        randomised_at=participant.randomised_at, unblinded_at=participant.unblinded_at,
        visits=[visit_out(v) for v in by_participant[cast(int, participant.id)]])  # stored rows have ids
        for participant, study, site in rows]


def _visit(session: Session, viewer: Viewer, study: str, number: str, treatment: int) -> VisitOut:
    visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
    return visit_out(pharmacy.view(session, viewer.actor, visit))


class NewParticipant(BaseModel):
    study: str = Field(description="Study code, e.g. NCT07290946")
    site: str = Field(description="Site code, e.g. RH-ENT")
    screening_number: str = Field(description="Letters, digits and hyphens with a digit; never a name")


class RandomiseIn(BaseModel):
    consent_date: date | None = Field(default=None, description="Date of informed consent (not in the future)")
    criteria: dict[str, bool] = Field(default_factory=dict, description="Each eligibility criterion of the study "
                                      "file by code: true = inclusion met / exclusion absent")


class VersionIn(BaseModel):
    visit_version: int | None = Field(None, description="The visit_version you saw (optional)")


class ScanIn(VersionIn, ManualEntryIn):
    code: str = Field(description=CODE_DESCRIPTION)
    kit_version: int | None = None


class ReplacementIn(VersionIn):
    what: str = Field(description="damaged | missing | unusable (still in the pharmacy: back to stock)")
    reason: str
    password: str = Field(description="The pharmacist's password: replacing a kit needs re-authentication")


class ReasonIn(VersionIn):
    reason: str


class PreparationIn(ManualEntryIn):
    code: str = Field(description=CODE_DESCRIPTION)


class AdministrationIn(VersionIn):
    gland: str = Field(description="left | right (or 1 | 2)")
    volume_ml: float = Field(description="Volume injected, more than 0 and at most 5 mL")
    administered_at: str | None = Field(None, description="ISO 8601 time; without an offset, the site's local "
                                                          "time; empty: now")
    administered_by: str | None = Field(None, description="Who gave it (default: the caller)")


class ReturnIn(ManualEntryIn):
    code: str = Field(description=CODE_DESCRIPTION)
    condition: str = Field(description="The kit's condition as it comes back")


class KitOut(BaseModel):
    kit_number: str
    state_label: str
    location: str


ParticipantPageOut = paging.page_model("ParticipantPageOut", "participants", ParticipantOut,
                                     "By study and screening number")


@router.get("/participants", response_model=ParticipantPageOut)
def list_participants(study: str | None = None, ask: Ask = Depends(paging.asking(PAGE_SIZE)),
                      viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    """Participants with their visits, a page at a time: by default as many as a page of the site's
    participant list (each brings its visits, their kits and administrations); `limit` asks for more."""
    chosen = studies.by_code(session, study) if study else None
    found = pharmacy.participant_page(session, ask, chosen, reader=viewer.actor)
    return ParticipantPageOut(participants=participants_out(session, viewer, list(found.rows)), next=found.next)


@router.post("/participants", response_model=ParticipantOut, status_code=201)
def enrol(body: NewParticipant, viewer: Viewer = Depends(require(*pharmacy.ENROLLERS)),
          db: Database = Depends(get_db)):
    with db.write() as session:
        participant = pharmacy.enrol(session, viewer.actor, studies.by_code(session, body.study), site_code=body.site,
                                     screening_number=body.screening_number)
        return participant_out(session, viewer, participant)


@router.get("/participants/{study}/{number}", response_model=ParticipantOut)
def get_participant(study: str, number: str, viewer: Viewer = Depends(readers),
                    session: Session = Depends(read_session)):
    return participant_out(session, viewer, pharmacy.participant_by_ref(session, study, number, reader=viewer.actor))


@router.post("/participants/{study}/{number}/randomise", response_model=ParticipantOut)
def randomise(study: str, number: str, body: RandomiseIn | None = None,
              viewer: Viewer = Depends(require(*pharmacy.RANDOMISERS)), db: Database = Depends(get_db)):
    """Randomise after the investigator confirms the consent date and every eligibility criterion."""
    body = body or RandomiseIn()
    with db.write() as session:
        participant = pharmacy.randomise(session, viewer.actor,
                                         pharmacy.participant_by_ref(session, study, number, reader=viewer.actor),
                                         consent_date=body.consent_date, criteria=body.criteria)
        return participant_out(session, viewer, participant)


class DuePageOut(BaseModel):
    visits: list[VisitOut] = Field(description="Soonest window end first, then by participant and treatment")
    count: int = Field(description="How many visits are due today in all (every page)")
    next: str | None = Field(description=paging.NEXT)


@router.get("/visits/due", response_model=DuePageOut)
def visits_due(ask: Ask = Depends(paging.asking(pharmacy.DUE_SHOWN)), viewer: Viewer = Depends(readers),
               session: Session = Depends(read_session)):
    """Open treatment visits whose window includes today at their site, a page at a time (by
    default a day's work at a site: `limit` asks for more), with how many are due in all (`count`).
    A paged list since issue 18: it was a bare array of every visit."""
    found, count = pharmacy.due_list(session, ask, reader=viewer.actor)
    return DuePageOut(visits=[visit_out(v) for v in found.rows], count=count, next=found.next)


@router.get("/participants/{study}/{number}/visits/{treatment}", response_model=VisitOut)
def get_visit(study: str, number: str, treatment: int, viewer: Viewer = Depends(readers),
              session: Session = Depends(read_session)):
    return _visit(session, viewer, study, number, treatment)


@router.post("/participants/{study}/{number}/visits/{treatment}/assign", response_model=VisitOut)
def assign(study: str, number: str, treatment: int, body: VersionIn | None = None,
           viewer: Viewer = Depends(pharmacists), db: Database = Depends(get_db)):
    """Assign a kit of the participant's arm at the site (the arm is never told). No kit: 409, the
    same message for both arms, and the supply manager is told."""
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        kit = pharmacy.assign(session, viewer.actor, visit, seen_version=body.visit_version if body else None)
        answer = _visit(session, viewer, study, number, treatment)
    if kit is None:  # what the attempt leaves is committed; the answer is a refusal
        raise pharmacy.NoKitAvailable()
    return answer


@router.post("/participants/{study}/{number}/visits/{treatment}/dispense", response_model=VisitOut)
def dispense(study: str, number: str, treatment: int, body: ScanIn, request: Request,
             viewer: Viewer = Depends(pharmacists), db: Database = Depends(get_db)):
    """Scan the assigned kit's label: the kit is dispensed to the preparer. Another kit: 422 naming both."""
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.dispense(session, viewer.actor, visit, body.code, request.app.state.settings.secret_key,
                          seen_version=body.visit_version, kit_version=body.kit_version, manual=body.manual,
                          reason=body.manual_reason)
        return _visit(session, viewer, study, number, treatment)


@router.post("/participants/{study}/{number}/visits/{treatment}/replace", response_model=VisitOut)
def replace(study: str, number: str, treatment: int, body: ReplacementIn, viewer: Viewer = Depends(pharmacists),
            db: Database = Depends(get_db)):
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.replace_kit(session, session.merge(viewer.user), body.password, visit, what=body.what,
                             reason=body.reason, seen_version=body.visit_version)
        return _visit(session, viewer, study, number, treatment)


@router.post("/participants/{study}/{number}/visits/{treatment}/unallocate", response_model=VisitOut)
def unallocate(study: str, number: str, treatment: int, body: ReasonIn, viewer: Viewer = Depends(pharmacists),
               db: Database = Depends(get_db)):
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.unallocate(session, viewer.actor, visit, body.reason, seen_version=body.visit_version)
        return _visit(session, viewer, study, number, treatment)


@router.post("/preparation", response_model=VisitOut)
def start_preparation(body: PreparationIn, request: Request, viewer: Viewer = Depends(require(*pharmacy.PREPARERS)),
                      db: Database = Depends(get_db)):
    """Scan the dispensed kit: thawing or preparation starts and the use-by clock with it."""
    with db.write() as session:
        ctx = pharmacy.start_preparation(session, viewer.actor, body.code, request.app.state.settings.secret_key,
                                         manual=body.manual, reason=body.manual_reason)
        return visit_out(pharmacy.view(session, viewer.actor, ctx.visit))


@router.post("/participants/{study}/{number}/visits/{treatment}/administrations", response_model=VisitOut,
             status_code=201)
def administer(study: str, number: str, treatment: int, body: AdministrationIn,
               viewer: Viewer = Depends(require(*pharmacy.ADMINISTRATORS)), db: Database = Depends(get_db)):
    """One gland. After the use-by time: 422, and the dose is recorded not administered with a
    deviation, although the request failed."""
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.administer(session, viewer.actor, visit, gland=body.gland, volume_ml=body.volume_ml,
                            administered_at=body.administered_at, administered_by=body.administered_by,
                            seen_version=body.visit_version)
        return _visit(session, viewer, study, number, treatment)


@router.post("/participants/{study}/{number}/visits/{treatment}/not-administered", response_model=VisitOut)
def not_administered(study: str, number: str, treatment: int, body: ReasonIn,
                     viewer: Viewer = Depends(require(*pharmacy.VISIT_MOVES["not_administered"].roles)),
                     db: Database = Depends(get_db)):
    with db.write() as session:
        visit = pharmacy.visit_by_ref(session, study, number, treatment, reader=viewer.actor)
        pharmacy.record_not_administered(session, viewer.actor, visit, body.reason, seen_version=body.visit_version)
        return _visit(session, viewer, study, number, treatment)


@router.post("/returns", response_model=KitOut)
def return_kit(body: ReturnIn, request: Request, viewer: Viewer = Depends(pharmacists),
               db: Database = Depends(get_db)):
    with db.write() as session:
        kit = pharmacy.return_kit(session, viewer.actor, body.code, request.app.state.settings.secret_key,
                                  body.condition, manual=body.manual, reason=body.manual_reason)
        return KitOut(kit_number=kit.number, state_label=kits.state_label(kit.state), location=kit.location)
