"""JSON API for the supply manager (unblinded): lists, packaging runs, blinded-lot compositions and the
unblinded kit view (the quarantines: supply_quarantines.py). Blinded roles get 403 on every route here.

Every read of the sealed compartment is a logged read, so the routes that return an arm, a list's
entries or a kit's contents run in a write transaction."""
from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from .. import kits, sealed, studies
from ..db import Database
from ..deps import Viewer, get_db, require
from ..errors import NotFound
from ..models import BlindedLot, KitState, Meaning, PackagingRun, Signature, Study, User, saved_id
from ..pagination import Ask
from ..sealing import LIST_MACHINE
from ..supply import lists, packaging
from ..supply.views import READERS, composition_by_arm, find_list, run_kits, signature_of
from . import paging

router = APIRouter(prefix="/api/v1/supply", tags=["supply (unblinded)"])
readers = require(*READERS)
makers = require(*lists.MAKERS)
packers = require(*packaging.PACKERS)


class SignatureOut(BaseModel):
    signer_name: str
    at: datetime
    meaning: Meaning
    content_hash: str


def signature_out(sig: Signature | None) -> SignatureOut | None:
    return SignatureOut(signer_name=sig.signer_name, at=sig.at, meaning=Meaning(sig.meaning),
                        content_hash=sig.content_hash) if sig else None


class ListOut(BaseModel):
    study: str
    kind: str = Field(description="randomisation | kit")
    version: int
    method: str = Field(description="generated | imported")
    seed: str | None = Field(description="Reproduces a generated list exactly")
    block_sizes: list[int]
    source_sha256: str | None = Field(description="SHA-256 of an imported file")
    size: int
    state: str = Field(description="draft | sealed | discarded")
    created_by: str
    created_at: datetime
    signature: SignatureOut | None


class EntryOut(BaseModel):
    position: int
    block: int
    number: str = Field(description="Participant number (randomisation list) or kit number (kit list)")
    arm: str


class ListDetailOut(ListOut):
    actions: list[str] = Field(description="What you may do with the list now, by its lifecycle: seal, discard")
    arm_counts: dict[str, int]
    entries: list[EntryOut] = Field(description="A page of the entries, in list order")
    next: str | None = Field(description=paging.NEXT)


def list_out(session: Session, study: Study, row) -> ListOut:
    creator = session.get(User, row.created_by)
    return ListOut(study=study.code, kind=row.kind, version=row.version, method=row.method, seed=row.seed,
                   block_sizes=[int(b) for b in (row.block_sizes or "").split(",") if b],
                   source_sha256=row.source_sha256, size=row.size, state=row.state,
                   created_by=creator.full_name if creator else "", created_at=row.created_at,
                   signature=signature_out(signature_of(session, row.signature_id)))


def list_detail(session: Session, viewer: Viewer, study: Study, row, ask: Ask) -> ListDetailOut:
    found = sealed.list_page(session, viewer.actor, row, ask)
    return ListDetailOut(**list_out(session, study, row).model_dump(),
                         actions=LIST_MACHINE.allowed(row, viewer.actor.roles),
                         arm_counts=sealed.arm_counts(session, viewer.actor, row), next=found.next,
                         entries=[EntryOut(position=e.position, block=e.block, number=e.key, arm=e.arm)
                                  for e in found.rows])


class NewList(BaseModel):
    kind: str = Field(description="randomisation | kit")
    size: int
    seed: str | None = Field(None, description="Empty: a new random seed")
    block_sizes: str | None = Field(None, description="e.g. '2,4'; empty: the protocol's block sizes")


class ImportedList(BaseModel):
    kind: str = Field(description="randomisation | kit")
    csv: str = Field(description="Header participant_number,arm or kit_number,arm, optionally block; arms by code")


class Seal(BaseModel):
    password: str = Field(description="The supply manager's password: sealing signs the list (meaning approved)")


class Reason(BaseModel):
    reason: str


class SignedReason(BaseModel):
    reason: str
    password: str = Field(description="QA's password: the decision is signed")


@router.get("/studies/{code}/lists", response_model=list[ListOut])
def get_lists(code: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, code, field="code")
        return [list_out(session, study, row) for row in sealed.lists_of(session, viewer.actor, study)]


@router.post("/studies/{code}/lists", response_model=ListOut, status_code=201)
def generate_list(code: str, body: NewList, viewer: Viewer = Depends(makers), db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, code, field="code")
        row = lists.generate(session, viewer.actor, study, body.kind, body.size, seed=body.seed,
                             block_sizes=body.block_sizes)
        return list_out(session, study, row)


@router.post("/studies/{code}/lists/import", response_model=ListOut, status_code=201)
def import_list(code: str, body: ImportedList, viewer: Viewer = Depends(makers), db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, code, field="code")
        return list_out(session, study, lists.import_csv(session, viewer.actor, study, body.kind, body.csv))


@router.get("/studies/{code}/lists/{kind}/{version}", response_model=ListDetailOut)
def get_list(code: str, kind: str, version: int, ask: Ask = Depends(paging.ask),
             viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, code, field="code")
        row = find_list(session, viewer.actor, study, kind, version)
        return list_detail(session, viewer, study, row, ask)


@router.post("/studies/{code}/lists/{kind}/{version}/seal", response_model=ListOut)
def seal_list(code: str, kind: str, version: int, body: Seal, viewer: Viewer = Depends(makers),
              db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, code, field="code")
        row = find_list(session, viewer.actor, study, kind, version)
        lists.seal(session, session.merge(viewer.user), viewer.actor, row, body.password)
        return list_out(session, study, row)


@router.post("/studies/{code}/lists/{kind}/{version}/discard", response_model=ListOut)
def discard_list(code: str, kind: str, version: int, body: Reason, viewer: Viewer = Depends(makers),
                 db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, code, field="code")
        row = find_list(session, viewer.actor, study, kind, version)
        return list_out(session, study, sealed.discard_list(session, viewer.actor, row, body.reason))


class Policy(BaseModel):
    quarantine_policy: str = Field(description=" | ".join(studies.QUARANTINE_POLICIES))
    reason: str


class PolicyOut(BaseModel):
    study: str
    quarantine_policy: str
    description: str


@router.post("/studies/{code}/quarantine-policy", response_model=PolicyOut)
def set_policy(code: str, body: Policy, viewer: Viewer = Depends(makers), db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, code, field="code")
        studies.set_quarantine_policy(session, viewer.actor, study, body.quarantine_policy, body.reason)
        return PolicyOut(study=study.code, quarantine_policy=study.quarantine_policy,
                         description=studies.QUARANTINE_POLICIES[study.quarantine_policy])


# --- packaging runs and what is inside kits ------------------------------------------------------------


class UnitOut(BaseModel):
    dose: int = Field(description="1 = the first gland of the schedule's dose sites")
    vial: str
    lot: str
    lot_state: str
    lot_expiry: date | None


class UnblindedKitOut(BaseModel):
    kit_number: str
    study: str
    blinded_lot: str | None
    expiry: date | None
    state: KitState
    state_label: str
    location: str
    kit_version: int
    arm: str | None
    units: list[UnitOut]


def units_out(units: list) -> list[UnitOut]:
    return [UnitOut(dose=dose, vial=vial.code, lot=lot.number, lot_state=str(getattr(lot.state, "value", lot.state)),
                    lot_expiry=lot.expiry) for dose, vial, lot in units]


class RunKitOut(BaseModel):
    kit_number: str
    state: KitState
    arm: str | None
    units: list[UnitOut]


class RunOut(BaseModel):
    number: str
    study: str
    blinded_lot: str
    blinded_expiry: date = Field(description="The blinded lot's expiry now: the earliest of every lot in it")
    kit_count: int
    created_by: str
    created_at: datetime
    lots: list[str]
    total: int = Field(description="The run's kits, on every page")
    kits: list[RunKitOut] = Field(description="A page of the run's kits, in kit-number order")
    next: str | None = Field(description=paging.NEXT)


class NewRun(BaseModel):
    study: str
    kit_count: int
    asc_lots: list[str]
    placebo_lots: list[str]
    blinded_lot: str | None = Field(None, description="An existing blinded lot of the study; empty: a new one")


def run_out(session: Session, viewer: Viewer, run: PackagingRun, ask: Ask) -> RunOut:
    found, total = run_kits(session, viewer.actor, run, ask)
    blinded = session.get(BlindedLot, run.blinded_lot_id)
    if blinded is None:
        raise NotFound(f"Packaging run {run.number} names no blinded lot.", field="blinded_lot")
    creator = session.get(User, run.created_by)
    run_id = saved_id(run)
    run_lots = sealed.lots_of_runs(session, viewer.actor, [run_id], why="packaging run API").get(run_id, [])
    return RunOut(number=run.number, study=studies.by_id(session, run.study_id).code, blinded_lot=blinded.code,
                  blinded_expiry=blinded.expiry, kit_count=run.kit_count,
                  created_by=creator.full_name if creator else "", created_at=run.created_at,
                  lots=[lot.number for lot in run_lots], total=total, next=found.next,
                  kits=[RunKitOut(kit_number=r.kit.number, state=KitState(r.kit.state), arm=r.arm,
                                  units=units_out(r.units)) for r in found.rows])


@router.post("/packaging-runs", response_model=RunOut, status_code=201)
def create_run(body: NewRun, request: Request, viewer: Viewer = Depends(packers), db: Database = Depends(get_db)):
    with db.write() as session:
        study = studies.by_code(session, body.study, field="study")
        run = packaging.package(session, viewer.actor, study, kit_count=body.kit_count, asc_lots=body.asc_lots,
                                placebo_lots=body.placebo_lots, blinded_lot_code=body.blinded_lot)
        return run_out(session, viewer, run, Ask(None, request.app.state.settings.secret_key, 100))  # its first page


@router.get("/packaging-runs/{number}", response_model=RunOut)
def get_run(number: str, ask: Ask = Depends(paging.ask), viewer: Viewer = Depends(readers),
            db: Database = Depends(get_db)):
    with db.write() as session:
        return run_out(session, viewer, packaging.run_by_number(session, number), ask)


class LotShareOut(BaseModel):
    lot: str
    expiry: date | None
    kits: int
    kits_by_state: dict[KitState, int]


class CompositionOut(BaseModel):
    code: str
    study: str
    expiry: date = Field(description="The earliest expiry of every lot below, of both arms")
    kits: int
    kits_by_state: dict[KitState, int]
    arms: dict[str, list[LotShareOut]] = Field(description="arm code -> its manufacturing lots in this blinded lot")


@router.get("/blinded-lots/{code}", response_model=CompositionOut)
def blinded_lot_composition(code: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        blinded = kits.blinded_lot_by_code(session, code, field="code")
        counts = kits.counts_by_state(session, blinded_lot=blinded)
        return CompositionOut(
            code=blinded.code, study=studies.by_id(session, blinded.study_id).code, expiry=blinded.expiry,
            kits=sum(counts.values()), kits_by_state=counts,
            arms={arm: [LotShareOut(lot=s.lot, expiry=s.expiry, kits=s.kits, kits_by_state=s.by_state) for s in shares]
                  for arm, shares in composition_by_arm(session, viewer.actor, blinded).items()})


@router.get("/kits/{number}", response_model=UnblindedKitOut)
def unblinded_kit(number: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    with db.write() as session:
        kit = kits.by_number(session, number, field="number")
        arm, units = sealed.contents(session, viewer.actor, kit)
        return UnblindedKitOut(**kits.view(session, kit).as_json(), arm=arm, units=units_out(units))
