"""Shipment and storage pages: packing by scanning at the cell bench, dispatch, the site's receipt by
scanning with an immediate verdict per kit, the receipt check, QA's signed assessment of a held
shipment, lost shipments, storage locations and damaged kits. Built for a tablet and a scanner
that types the label code and Enter.

Pharmacists and monitors read these pages: everything on them is the same for an active and a
placebo kit (kit numbers, blinded states, places), and nothing here reaches the sealed compartment.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, custody, kits, studies, users
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError
from ..models import Shipment, Site, StorageBox, Study
from ..templating import render
from . import paging
from .home import QueueItem, line_of, work_queue

router = APIRouter(include_in_schema=False)
readers = require(*custody.READERS)
SHIPPERS = tuple(custody.SHIPPERS)
RECEIVERS = tuple(custody.RECEIVERS)
ASSESSORS = tuple(custody.ASSESSORS)


def url(number: str) -> str:
    return f"/shipments/{quote(number, safe='')}"


def _back(number: str, notice: str | None, **params: str) -> RedirectResponse:
    query = ({"notice": notice} if notice else {}) | params
    return RedirectResponse(f"{url(number)}?{'&'.join(f'{k}={quote(v)}' for k, v in query.items())}", status_code=303)


@work_queue
def _shipments_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    # Each role its own step: supply packs and dispatches, the site receives, QA assesses a quarantine.
    steps = ((SHIPPERS, custody.PACKING, "shipments are being packed: finish and dispatch them",
              "shipment is being packed: finish and dispatch it"),
             (RECEIVERS, custody.IN_TRANSIT, "shipments in transit await your receipt",
              "shipment in transit awaits your receipt"),
             (ASSESSORS, custody.QUARANTINED, "quarantined shipments await your assessment",
              "quarantined shipment awaits your assessment"))
    items = []
    for roles, state, text, one in steps:
        if viewer.has(*roles):
            newest_first = select(Shipment).where(col(Shipment.state) == state).order_by(col(Shipment.id).desc())
            waiting = users.within(newest_first, viewer.actor, site=col(Shipment.site_id), study=col(Shipment.study_id))
            items += line_of(session, waiting, text, one, f"/shipments?state={state}",
                             lambda shipment: url(shipment.number))
    return items


# --- the list and a new shipment ------------------------------------------------------------------


def _study_sites(session: Session) -> list[tuple[str, str, str]]:
    return [(study.code, site.code, site.name) for study in studies.all_studies(session)
            for site, _link in studies.sites_of(session, study)]


def _all_sites(session: Session) -> list[Site]:
    return list(session.scalars(select(Site).order_by(col(Site.code))))


@router.get("/shipments")
def shipment_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    q = request.query_params
    state, site_code = (q.get("state") or "").strip(), (q.get("site") or "").strip()
    site = custody.site_by_code(session, site_code) if site_code else None
    found = custody.shipment_page(session, paging.ask(request), state=state or None, site=site, reader=viewer.actor)
    rows = found.rows
    counts = custody.kit_counts(session, [r.id for r in rows])
    sites = {s.id: s for s in _all_sites(session)}
    study_codes = custody.study_codes(session)
    return render(request, "shipments/list.html", rows=rows, counts=counts, sites=sites, study_codes=study_codes,
                  state=state, site=site.code if site else "", states=custody.STATE_LABELS,
                  label=custody.state_label, url=url, can_create=viewer.has(*SHIPPERS),
                  pager=paging.pager("/shipments", {"state": state, "site": site_code}, found))


def _new(request: Request, session: Session, form: dict, error: DomainError | None = None):
    return render(request, "shipments/new.html", status_code=error.status if error else 200, form=form, error=error,
                  study_sites=_study_sites(session), all_studies=studies.all_studies(session))


@router.get("/shipments/new")
def new_shipment_form(request: Request, viewer: Viewer = Depends(require(*SHIPPERS)),
                      session: Session = Depends(read_session)):
    pairs = _study_sites(session)
    first = pairs[0] if pairs else ("", "", "")
    return _new(request, session, {"study": request.query_params.get("study", first[0]),
                                   "site": request.query_params.get("site", first[1])})


@router.post("/shipments")
def create_shipment(request: Request, viewer: Viewer = Depends(form_by(*SHIPPERS)), db: Database = Depends(get_db),
                    form=Depends(form_data)):
    values = {"study": form.get("study", ""), "site": form.get("site", "")}
    try:
        with db.write() as session:
            shipment = custody.create(session, viewer.actor, values["study"], values["site"])
    except DomainError as error:
        with db.read() as session:
            return _new(request, session, values, error)
    return _back(shipment.number, f"Shipment {shipment.number} created. Scan the kits into it.")


# --- one shipment ------------------------------------------------------------------------------------


def _names(session: Session, *ids: int | None) -> dict[int | None, str]:
    return custody.user_names(session, *ids)


def _detail(request: Request, session: Session, viewer: Viewer, number: str, *, error: DomainError | None = None,
            form: dict | None = None, refused_code: str = ""):
    shipment = custody.by_number(session, number, reader=viewer.actor)
    lines = custody.manifest(session, shipment)
    scanned = sum(1 for line in lines if line.received_at)
    last = None
    if (kit_number := (request.query_params.get("scanned") or "").strip()) and not error:
        last = next((line for line in lines if line.kit_number == kit_number and line.received_at), None)
    study, site = session.get(Study, shipment.study_id), session.get(Site, shipment.site_id)
    filling = _filling(session, viewer, (form or {}).get("box") or request.query_params.get("box"))
    return render(
        request, "shipments/detail.html", status_code=error.status if error else 200, s=shipment, study=study,
        site=site, lines=lines, scanned=scanned, total=len(lines), last=last, error=error, form=form or {},
        filling=filling, last_position=custody.position_of_number(session, last.kit_number) if last else None,
        refused_code=refused_code, actions=custody.allowed_actions(shipment, viewer.actor),
        state_label=custody.state_label(shipment.state), problems=custody.problems_of(shipment),
        names=_names(session, shipment.created_by, shipment.dispatched_by, shipment.received_by),
        signature=custody.qa_signature(session, shipment), url=url(shipment.number),
        history=audit.history(session, viewer.actor, "shipment", shipment.number),
        alarm=custody.cold_chain_of(session, shipment.study_id).transport_max_c,
        readings=custody.reading_count(session, shipment))


def _filling(session: Session, viewer: Viewer, code: str | None) -> dict | None:
    """The box the receipt is putting kits into (the last box label scanned): its place, how full
    it is and the next free position. None when no box is chosen (kits received without one)."""
    if not (code or "").strip():
        return None
    try:
        box = custody.box_by_code(session, code, reader=viewer.actor)
    except DomainError:
        return None
    taken = custody.occupants(session, box)
    free = next((n for n in range(1, box.capacity + 1) if n not in taken), None)
    return {"box": box, "where": custody.positions.position(session, box, free or box.capacity), "filled": len(taken),
            "next": free}


@router.get("/shipments/{number}")
def shipment_detail(request: Request, number: str, viewer: Viewer = Depends(readers),
                    session: Session = Depends(read_session)):
    return _detail(request, session, viewer, number)


@router.get("/shipments/{number}/manifest")
def shipment_manifest(request: Request, number: str, viewer: Viewer = Depends(readers),
                      session: Session = Depends(read_session)):
    shipment = custody.by_number(session, number, reader=viewer.actor)
    return render(request, "shipments/manifest.html", s=shipment, lines=custody.manifest(session, shipment),
                  study=session.get(Study, shipment.study_id), site=session.get(Site, shipment.site_id),
                  state_label=custody.state_label(shipment.state),
                  chain=custody.cold_chain_of(session, shipment.study_id),
                  names=_names(session, shipment.created_by, shipment.dispatched_by, shipment.received_by))


def _act(request: Request, db: Database, viewer: Viewer, number: str, work, notice, *,
         form: dict | None = None, refused_code: bool = False, **params: str):
    """Run one use case on the shipment; a refusal re-renders the page naming the field."""
    try:
        with db.write() as session:
            result = work(session, custody.by_number(session, number, reader=viewer.actor))
    except DomainError as error:
        with db.read() as session:
            return _detail(request, session, viewer, number, error=error, form=form,
                           refused_code=(form or {}).get("code", "") if refused_code else "")
    return _back(number, notice(result) if callable(notice) else notice, **params)


@router.post("/shipments/{number}/kits")
def pack_kit(request: Request, number: str, viewer: Viewer = Depends(form_by(*SHIPPERS)),
             db: Database = Depends(get_db), form=Depends(form_data)):
    code, secret = form.get("code", ""), request.app.state.settings.secret_key
    return _act(request, db, viewer, number, lambda s, shipment: custody.pack(s, viewer.actor, shipment, code, secret),
                lambda kit: f"Kit {kit.number} packed.", form={"code": code}, refused_code=True)


@router.post("/shipments/{number}/unpack")
def unpack_kit(request: Request, number: str, viewer: Viewer = Depends(form_by(*SHIPPERS)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    kit_number = form.get("kit_number", "")
    return _act(request, db, viewer, number,
                lambda s, shipment: custody.unpack(s, viewer.actor, shipment, kit_number),
                lambda kit: f"Kit {kit.number} taken out of the shipment.")


DISPATCH_FIELDS = ("shipper_id", "seal_number", "logger_id", "shipment_version")


@router.post("/shipments/{number}/dispatch")
def dispatch(request: Request, number: str, viewer: Viewer = Depends(form_by(*SHIPPERS)),
             db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in DISPATCH_FIELDS}
    return _act(request, db, viewer, number,
                lambda s, shipment: custody.dispatch(s, viewer.actor, shipment, shipper_id=values["shipper_id"],
                                                     seal_number=values["seal_number"], logger_id=values["logger_id"],
                                                     seen_version=values["shipment_version"]),
                f"Shipment {number} dispatched.", form=values)


@router.post("/shipments/{number}/receipt-scans")
def receipt_scan(request: Request, number: str, viewer: Viewer = Depends(form_by(*RECEIVERS)),
                 db: Database = Depends(get_db), form=Depends(form_data)):
    code, secret = form.get("code", ""), request.app.state.settings.secret_key
    box, position = (form.get("box") or "").strip().upper(), form.get("position", "")
    try:
        with db.write() as session:
            step = custody.receipt_step(session, viewer.actor, number, code, secret, box=box, position=position,
                                        manual=form.get("manual"), reason=form.get("manual_reason"))
    except DomainError as error:
        with db.read() as session:
            return _detail(request, session, viewer, number, error=error, form={"code": code, "box": box},
                           refused_code=code)
    if isinstance(step, StorageBox):  # a box label: the next kits go into it
        return _back(number, None, box=step.code)
    # the verdict box says it, in large type: no notice above it
    return _back(step.shipment, None, scanned=step.kit.number, **({"box": box} if box else {}))


RECEIPT_FIELDS = ("seal_intact", "logger_source", "logger_min", "logger_max", "missing_reason", "shipment_version")


@router.post("/shipments/{number}/receipt")
def complete_receipt(request: Request, number: str, viewer: Viewer = Depends(form_by(*RECEIVERS)),
                     db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") or "" for k in RECEIPT_FIELDS}
    upload = form.get("logger_csv")
    content = upload.file.read() if hasattr(upload, "file") else (upload or "")

    def work(session: Session, shipment):
        logger = custody.logger_record(values["logger_source"], csv_content=content,
                                       minimum=values["logger_min"] or None, maximum=values["logger_max"] or None)
        return custody.complete_receipt(session, viewer.actor, shipment, seal_intact=values["seal_intact"] or None,
                                        logger=logger, missing_reason=values["missing_reason"],
                                        seen_version=values["shipment_version"])

    def notice(problems: list[str]) -> str:
        if problems:
            return f"Shipment {number} is held in quarantine for QA: {'; '.join(problems)}."
        return f"Shipment {number} received: every kit is in the site's stock."

    return _act(request, db, viewer, number, work, notice, form=values)


@router.post("/shipments/{number}/lost")
def report_lost(request: Request, number: str, viewer: Viewer = Depends(form_by(*SHIPPERS)),
                db: Database = Depends(get_db), form=Depends(form_data)):
    values = {"reason": form.get("reason", ""), "shipment_version": form.get("shipment_version", "")}
    return _act(request, db, viewer, number,
                lambda s, shipment: custody.report_lost(s, viewer.actor, shipment, values["reason"],
                                                        seen_version=values["shipment_version"]),
                f"Shipment {number} recorded as lost; its kits are missing.", form=values)


@router.post("/shipments/{number}/assessment")
def assess(request: Request, number: str, viewer: Viewer = Depends(form_by(*ASSESSORS)),
           db: Database = Depends(get_db), form=Depends(form_data)):
    values = {"decision": form.get("decision", ""), "reason": form.get("reason", ""),
              "shipment_version": form.get("shipment_version", "")}
    word = {"accept": "accepted", "reject": "rejected"}.get(values["decision"], "assessed")
    return _act(request, db, viewer, number,
                lambda s, shipment: custody.assess(s, s.merge(viewer.user), shipment, values["decision"],
                                                   values["reason"], form.get("password", ""),
                                                   seen_version=values["shipment_version"]),
                f"Shipment {number} {word} and signed.", form=values)


# --- storage and damaged kits ----------------------------------------------------------------------


def _storage(request: Request, session: Session, viewer: Viewer, *, error: DomainError | None = None,
             form: dict | None = None, which: str = ""):
    # a site role sees its own sites' storage only (custody.storage_places)
    seen = custody.storage_places(session, viewer.actor)
    places = [(site, f"{site.code} · {site.name}" if site else custody.CELL_BENCH) for site in seen]
    stored = custody.stored_counts(session)
    groups = [(label, site, custody.locations(session, site)) for site, label in places]
    choosable = [(loc, custody.place_name(session, loc)) for _l, _s, rows in groups for loc in rows
                 if (loc.site_id is None and viewer.has(*SHIPPERS)) or (loc.site_id and viewer.has(*RECEIVERS))]
    boxes = custody.boxes(session, viewer.actor)
    return render(request, "shipments/storage.html", status_code=error.status if error else 200, groups=groups,
                  stored=stored, choosable=choosable, error=error, form=form or {}, which=which,
                  sites=[site for site in seen if site], kinds=custody.LOCATION_KINDS,
                  can_add=viewer.has(*custody.KEEPERS), can_damage=viewer.has(*custody.DAMAGE_REPORTERS),
                  bench_ok=viewer.has(*SHIPPERS), boxes=boxes,
                  filled=custody.filled(session, [custody.key(box) for box, _tank in boxes]),
                  unplaced=custody.not_put_away(session, viewer.actor), can_place=viewer.has(*RECEIVERS),
                  tanks=[(loc, place) for loc, place in choosable if loc.site_id], max_capacity=custody.MAX_CAPACITY,
                  state_label=kits.state_label)


@router.get("/storage")
def storage(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    return _storage(request, session, viewer)


def _storage_act(request: Request, db: Database, viewer: Viewer, work, form: dict, which: str,
                 **params: str):
    """Run one storage use case; `work` returns the notice. A refusal re-renders naming the field."""
    try:
        with db.write() as session:
            notice = work(session)
    except DomainError as error:
        with db.read() as session:
            return _storage(request, session, viewer, error=error, form=form, which=which)
    extra = "".join(f"&{key}={quote(value)}" for key, value in params.items())
    return RedirectResponse(f"/storage?notice={quote(notice)}{extra}", status_code=303)


@router.post("/storage/locations")
def add_location(request: Request, viewer: Viewer = Depends(form_by(*custody.KEEPERS)),
                 db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in ("site", "code", "name", "kind")}

    def work(session: Session) -> str:
        row = custody.add_location(session, viewer.actor, site_code=values["site"], code=values["code"],
                                   name=values["name"], kind=values["kind"])
        return f"Storage location {row.code} added: {custody.place_name(session, row)}."

    return _storage_act(request, db, viewer, work, values, "add")


@router.post("/storage/store")
def store_kit(request: Request, viewer: Viewer = Depends(form_by(*custody.KEEPERS)),
              db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in ("code", "location")}
    secret = request.app.state.settings.secret_key

    def work(session: Session) -> str:
        kit = kits.scan_code(session, values["code"], secret, reader=viewer.actor, manual_allowed=False)
        location = custody.store(session, viewer.actor, kit, values["location"])
        return f"Kit {kit.number} stored in {custody.place_name(session, location)}."

    # the location stays chosen for the next kit: a tray is put away kit after kit
    return _storage_act(request, db, viewer, work, values, "store", location=values["location"])


@router.post("/storage/damaged")
def report_damaged(request: Request, viewer: Viewer = Depends(form_by(*custody.DAMAGE_REPORTERS)),
                   db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in ("code", "reason")}
    secret = request.app.state.settings.secret_key

    def work(session: Session) -> str:
        kit = kits.scan_code(session, values["code"], secret, reader=viewer.actor, manual_allowed=False)
        custody.report_damaged(session, viewer.actor, kit, values["reason"])
        return f"Kit {kit.number} recorded as damaged."

    return _storage_act(request, db, viewer, work, values, "damaged")

