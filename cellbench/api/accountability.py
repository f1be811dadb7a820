"""JSON API: accountability by place and blinded lot, signed counts, and destruction (authorise,
record, certificate). The same for both arms: nothing here reaches the sealed compartment."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import Session, SQLModel, col

from .. import accountability, kits, pdf, studies
from ..accountability import destruction, listing
from ..db import Database
from ..deps import Viewer, get_db, read_session, require
from ..models import BlindedLot, Destruction, Meaning, Reconciliation, Signature, Site, Study, User
from ..pagination import Ask
from . import paging

router = APIRouter(prefix="/api/v1", tags=["accountability and destruction"])
readers = require(*accountability.READERS)
PLACE = "'bench' for the cell bench, or a site code"


class RowOut(BaseModel):
    place: str = Field(description=PLACE)
    place_name: str
    blinded_lot: str
    expiry: date
    counts: dict[str, int] = Field(description="Kits by category, with 'released' and 'on_hand'")
    status: str = Field(description="not counted | discrepancy | changed since | balanced")
    last_change: datetime | None
    latest_count: dict | None


class SignatureOut(BaseModel):
    signer_name: str
    at: datetime
    meaning: Meaning
    content_hash: str


class CountIn(BaseModel):
    study: str
    place: str = Field(description=PLACE)
    blinded_lot: str
    counted_in_stock: int = Field(description="Kits of the blinded lot physically on hand at the place")
    comment: str | None = Field(None, description="Required when the count differs from cellbench's")
    password: str = Field(description="The counter's password: the count is signed (meaning performed)")


class CountOut(BaseModel):
    study: str
    place: str
    blinded_lot: str
    expected: dict[str, int]
    counted_in_stock: int
    balanced: bool
    comment: str | None
    by: str
    at: datetime
    signature: SignatureOut | None


class AuthoriseIn(BaseModel):
    study: str
    place: str = Field(description=PLACE)
    kits: list[str] = Field(description="Kit numbers: withdrawn, returned, not administered or damaged, at the place")
    password: str = Field(description="The supply manager's password: the authorisation is signed (meaning approved)")


class RecordIn(BaseModel):
    method: str
    destroyed_on: date
    witness: str = Field(description="The witness's printed name: a second person")
    password: str = Field(description="Your password: the destruction is signed (meaning destroyed)")


class DestructionSummaryOut(BaseModel):
    number: str
    study: str
    place: str
    state: str = Field(description="authorised | destroyed")
    actions: list[str] = Field(description="What you may do with it now ('record': carry it out)")
    kit_count: int
    authorised_at: datetime
    method: str | None
    destroyed_on: date | None


class DestructionOut(DestructionSummaryOut):
    """One destruction with its certificate's data (the list gives the summary only)."""

    kits: list[dict] = Field(description="Kit number, blinded lot and expiry, state before destruction: on GET, one "
                                         "page of them by kit number (`after`, `limit`); `kit_count` counts them all")
    kits_next: str | None = Field(None, description="The cursor of the kits' next page (pass it as `after`); null on "
                                                    "the last page. (Before issue 18 every kit was listed at once.)")
    authorised_by: str
    witness: str | None
    destroyed_by: str | None
    signatures: list[dict] = Field(description="Label, printed name, meaning and time of each signature")


def _sig(session: Session, sig_id: int | None) -> SignatureOut | None:
    sig = session.get(Signature, sig_id) if sig_id else None
    return SignatureOut(signer_name=sig.signer_name, at=sig.at, meaning=Meaning(sig.meaning),
                        content_hash=sig.content_hash) if sig else None


def count_out(session: Session, rec: Reconciliation) -> CountOut:
    site = accountability.stored(session, Site, rec.site_id, "site") if rec.site_id else None
    return CountOut(study=accountability.study_of(session, rec.study_id).code, place=accountability.place_key(site),
                    blinded_lot=accountability.stored(session, BlindedLot, rec.blinded_lot_id, "blinded lot").code,
                    expected=accountability.expected_of(rec), counted_in_stock=rec.counted_in_stock,
                    balanced=rec.balanced, comment=rec.comment,
                    by=accountability.stored(session, User, rec.by_user, "person").full_name, at=rec.at,
                    signature=_sig(session, rec.signature_id))


DestructionPageOut = paging.page_model("DestructionPageOut", "destructions", DestructionSummaryOut,
                                       "Newest first; the kits and signatures of one: GET /destructions/{number}")
CountPageOut = paging.page_model("CountPageOut", "reconciliations", CountOut, "Newest first")


def _read_ahead(session: Session, model: type[SQLModel], ids: Iterable[int | None]) -> list[Any]:
    """These rows in one read, so that each row's session.get below finds them without one. The
    caller holds the list until it is done: the session's identity map holds rows only weakly."""
    wanted = sorted(i for i in ids if i)
    table: Any = model
    return list(session.scalars(select(model).where(col(table.id).in_(wanted)))) if wanted else []


def destruction_summary(session: Session, viewer: Viewer, d: Destruction) -> DestructionSummaryOut:
    return DestructionSummaryOut(number=d.number, study=accountability.study_of(session, d.study_id).code,
                                 place=accountability.place_key(destruction.site_of(session, d)), state=d.state,
                                 actions=destruction.allowed_actions(session, d, viewer.actor), kit_count=d.kit_count,
                                 authorised_at=d.authorised_at, method=d.method, destroyed_on=d.destroyed_on)


def destruction_out(session: Session, viewer: Viewer, d: Destruction, kits_page: Ask | None = None) -> DestructionOut:
    data = accountability.gather(session, d, kits_page)
    place = accountability.place_key(destruction.site_of(session, d))
    return DestructionOut(number=d.number, study=data.study.code, place=place, state=d.state, kit_count=d.kit_count,
                          actions=destruction.allowed_actions(session, d, viewer.actor),
                          kits=[{"kit_number": k.number, "blinded_lot": k.blinded_lot, "expiry": k.expiry,
                                 "state_before": k.state_before} for k in data.kits],
                          authorised_by=data.authorised_by, authorised_at=data.authorised_at, method=data.method,
                          destroyed_on=data.destroyed_on, witness=data.witness, destroyed_by=data.destroyed_by,
                          signatures=[vars(s) for s in data.signatures], kits_next=data.kits_next)


class RowPageOut(BaseModel):
    rows: list[RowOut] = Field(description="Newest blinded lot first within a place (sites, then the cell bench); "
                                           "with discrepant=true, the rows in discrepancy, newest count first")
    next: str | None = Field(description=paging.NEXT)
    totals: dict[str, int] = Field(description="Kits by category over every row of the list (all pages)")
    discrepant: int = Field(description="How many rows' latest count differs from cellbench's (all pages)")


@router.get("/accountability", response_model=RowPageOut)
def balance(study: str, place: str | None = None, blinded_lot: str | None = None,
            discrepant: bool = Query(False, description="Only the rows whose latest count differs from cellbench's"),
            ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(readers),
            session: Session = Depends(read_session)):
    """A page of the balance of each blinded lot at each place (at `place`; of `blinded_lot`), with the
    totals over all of them and how many are in discrepancy; with `place` and `blinded_lot`, the one
    row with its last change. (Until issue 18 this was a plain list of every row.)"""
    chosen = studies.by_code(session, study)
    site = accountability.place_of(session, chosen, place, reader=viewer.actor) if place is not None else "all"
    lot = kits.blinded_lot_by_code(session, blinded_lot) if blinded_lot else None
    shown = listing.listing(session, ask, chosen, site, discrepant=discrepant, blinded_lot=lot, reader=viewer.actor)
    return RowPageOut(rows=[RowOut(**r.as_json()) for r in shown.page.rows], next=shown.page.next,
                      totals=shown.totals, discrepant=shown.discrepant)


@router.get("/reconciliations", response_model=CountPageOut)
def list_counts(study: str, place: str | None = None, blinded_lot: str | None = None, ask: Ask = Depends(paging.ask),
                viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    chosen = studies.by_code(session, study)
    site = accountability.place_of(session, chosen, place, reader=viewer.actor) if place else None
    lot = kits.blinded_lot_by_code(session, blinded_lot) if blinded_lot else None
    found = accountability.reconciliation_page(session, ask, chosen, site, lot, any_place=place is None,
                                               reader=viewer.actor)
    held = [_read_ahead(session, model, ids) for model, ids in (
        (Site, {r.site_id for r in found.rows}), (BlindedLot, {r.blinded_lot_id for r in found.rows}),
        (User, {r.by_user for r in found.rows}), (Signature, {r.signature_id for r in found.rows}))]
    shown = [count_out(session, r) for r in found.rows]
    del held  # read ahead for count_out's look-ups, held until they were made
    return CountPageOut(reconciliations=shown, next=found.next)


@router.post("/reconciliations", response_model=CountOut, status_code=201)
def record_count(body: CountIn, viewer: Viewer = Depends(require(*accountability.COUNTERS)),
                 db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, body.study)
        rec = accountability.reconcile(session, session.merge(viewer.user), body.password, study,
                                       accountability.place_of(session, study, body.place),
                                       kits.blinded_lot_by_code(session, body.blinded_lot), body.counted_in_stock,
                                       body.comment)
        return count_out(session, rec)


@router.get("/destructions", response_model=DestructionPageOut)
def list_destructions(study: str | None = None, state: str | None = None, ask: Ask = Depends(paging.ask),
                      viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    """Each destruction in summary; its kits, signatures and certificate data: GET /destructions/{number}."""
    chosen = studies.by_code(session, study) if study else None
    found = accountability.destruction_page(session, ask, chosen, state, reader=viewer.actor)
    held = [_read_ahead(session, Site, {d.site_id for d in found.rows}),
            _read_ahead(session, Study, {d.study_id for d in found.rows})]
    shown = [destruction_summary(session, viewer, d) for d in found.rows]
    del held  # read ahead for the summaries' look-ups, held until they were made
    return DestructionPageOut(destructions=shown, next=found.next)


@router.post("/destructions", response_model=DestructionOut, status_code=201)
def authorise(body: AuthoriseIn, viewer: Viewer = Depends(require(*destruction.AUTHORISERS)),
              db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, body.study)
        d = destruction.authorise(session, session.merge(viewer.user), body.password, study,
                                     accountability.place_of(session, study, body.place), body.kits)
        return destruction_out(session, viewer, d)


@router.get("/destructions/{number}", response_model=DestructionOut)
def get_destruction(number: str, ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(readers),
                    session: Session = Depends(read_session)):
    """One destruction with a page of its kits (by kit number; `kits_next` for the next page)."""
    return destruction_out(session, viewer, destruction.by_number(session, number, reader=viewer.actor), ask)


@router.post("/destructions/{number}/destroyed", response_model=DestructionOut)
def record_destruction(number: str, body: RecordIn, viewer: Viewer = Depends(require(*destruction.RECORDERS)),
                       db: Database = Depends(get_db)):
    with db.write() as session:
        d = destruction.by_number(session, number)
        destruction.record_destruction(session, session.merge(viewer.user), body.password, d, method=body.method,
                                          destroyed_on=body.destroyed_on, witness=body.witness)
        return destruction_out(session, viewer, d)


@router.get("/destructions/{number}/certificate.pdf")
async def certificate(request: Request, number: str, viewer: Viewer = Depends(readers),
                      db: Database = Depends(get_db)):
    """The destruction certificate (PDF): kits, method, date, witness, and every signature."""
    name, document = await pdf.render_for(
        request, f"destruction certificate {number[:40]}",
        lambda: accountability.certificate_file(db, number, zone=request.app.state.settings.zone,
                                                printed_by=viewer.user.full_name, reader=viewer.actor))
    return Response(document, media_type="application/pdf",
                    headers={"Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}"})

