"""Lot pages: the list, the guided batch-record page (tablet-sized), and every step action."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, deviations, inputs, lots, release, steps
from ..db import Database
from ..deps import Viewer, form_by, form_data, form_text, get_db, read_session, require
from ..errors import DomainError, NotFound
from ..lots import vials as vial_rules
from ..models import Donation, Lot, Role, Signature, StepEntry, StepValue
from ..specifications import Parameter, Step
from ..specifications import versions as spec_versions
from ..templating import render
from . import lot_values, paging
from .home import QueueItem, work_queue

router = APIRouter(include_in_schema=False)
READERS = lots.READERS  # kept under this name for the pages that import it from here
RELEASE_PAGE_MOVES = {"certify_initial", "certify_final", "release"}
SIGNED_MOVES = {name for name, move in lots.MOVES.items() if move.signature}


@dataclass
class EntryView:
    entry: StepEntry
    values: list[Any]  # every value (StepValue's columns), the superseded ones too: corrections keep the original
    materials: list
    equipment: list
    signatures: list[Signature]
    parameters: dict[str, Parameter]  # the step's parameters by code: a value finds its own without a search


@dataclass
class StepView:
    step: Step
    state: str  # done | current | waiting
    entries: list[EntryView]


def lot_view(session: Session, lot: Lot) -> dict:
    spec_row = lots.spec_of(session, lot)
    spec = spec_versions.parsed(spec_row)
    by_code = steps.entries_of(session, lot)
    current = steps.current_step(spec, by_code)
    entry_ids = [e.id for entries in by_code.values() for e in entries]
    values: dict[int, list[Any]] = {}
    # Plain rows, not ORM objects: a finished lot shows some 450 values, read only (issue 18)
    query = (select(*StepValue.__table__.columns)  # type: ignore[attr-defined]
             .where(col(StepValue.entry_id).in_(entry_ids)).order_by(col(StepValue.id)))
    for v in session.execute(query):
        values.setdefault(v.entry_id, []).append(v)
    sigs: dict[str, list[Signature]] = {}
    for sig in session.scalars(select(Signature).where(col(Signature.entity_type) == "step_entry",
                                                       col(Signature.entity_id).in_([str(i) for i in entry_ids]))):
        sigs.setdefault(sig.entity_id, []).append(sig)
    materials, equipment = steps.uses_by_entry(session, [i for i in entry_ids if i is not None])
    views, seen_current = [], False
    for step in spec.steps:
        parameters = {p.code: p for p in step.parameters}
        entries = [EntryView(e, values.get(e.id or 0, []), materials.get(e.id or 0, []),
                             equipment.get(e.id or 0, []), sigs.get(str(e.id), []), parameters)
                   for e in by_code.get(step.code, [])]
        if current is not None and step.code == current.code:
            state, seen_current = "current", True
        else:
            state = "waiting" if seen_current else "done"
        views.append(StepView(step, state, entries))
    donation = session.get(Donation, lot.donation_id) if lot.donation_id else None
    return {"lot": lot, "spec_row": spec_row, "spec": spec, "steps": views, "current": current, "by_code": by_code,
            "done_count": sum(1 for view in views if view.state == "done"),
            "donation": donation, "deviations": deviations.open_deviations(session, lot.id),
            "vial_reconciliation": lots.reconcile(session, lot)}


def _draft_view(session: Session, viewer: Viewer, view: dict, typed: dict | None) -> dict:
    """The open entry of the current step as the one form shows it: what was typed (the refused
    save's fields, else this person's saved draft), whether that is a stored draft, and the scans."""
    current: Step | None = view["current"]
    if current is None or not viewer.has(Role.operator) or viewer.actor.user_id is None:
        return {"typed": typed or {}, "draft": None, "scans": {}}
    entry = next((e for e in view["by_code"].get(current.code, []) if e.state == "open"), None)
    draft = steps.draft_of(session, entry, viewer.actor.user_id) if entry is not None else None
    typed = {**steps.fields_of(draft), **(typed or {})}  # another form's refusal still shows the draft
    return {"typed": typed, "draft": draft, "scans": steps.scanned(session, current, typed) if entry else {}}


@router.get("/lots")
def lot_list(request: Request, viewer: Viewer = Depends(require(*READERS)), session: Session = Depends(read_session)):
    state, found = request.query_params.get("state") or "", None
    if request.query_params.get("awaiting") == "verification":  # the verifier's queue, for several lots: unpaged
        waiting = {lot.number: lot for lot, _ in steps.awaiting_verification(session, viewer.user)}
        rows = sorted((lot for lot in waiting.values() if not state or lot.state == state),
                      key=lambda lot: -(lot.id or 0))
    else:
        found = lots.lot_page(session, paging.ask(request), state or None)
        rows = found.rows
    specs = [s for s in spec_versions.all_versions(session) if s.status == "effective"]
    return render(request, "lots/list.html", rows=rows, specs=specs, error=None, form={},
                  pager=paging.pager("/lots", {"state": state}, found))


@router.post("/lots")
def start_lot(request: Request, viewer: Viewer = Depends(form_by(Role.operator)), db: Database = Depends(get_db),
              form=Depends(form_data)):
    try:
        with db.write() as session:
            lot = lots.start_lot(session, viewer.actor, form.get("product", ""), form.get("donation", ""))
            number = lot.number
    except DomainError as error:
        with db.read() as session:
            specs = [s for s in spec_versions.all_versions(session) if s.status == "effective"]
            found = lots.lot_page(session, paging.ask(request))
            return render(request, "lots/list.html", status_code=error.status, rows=found.rows, specs=specs,
                          error=error, form=dict(form), pager=paging.pager("/lots", {}, found))
    return RedirectResponse(f"/lots/{number}?notice=Lot+started.", status_code=303)


def _page(request: Request, session: Session, viewer: Viewer, number: str, error: DomainError | None = None,
          typed: dict | None = None):
    lot = lots.by_number(session, number)
    # Certification and sponsor release need their gates, pending tests and reviews: the release page.
    moves = [m for m in lots.allowed_moves(lot, viewer.actor) if m not in RELEASE_PAGE_MOVES]
    gates = release.readiness(session, lot, viewer.actor) if release.next_guard(lot) else []
    view = lot_view(session, lot)
    return render(request, "lots/detail.html", status_code=error.status if error else 200, error=error,
                  moves=moves, gates=gates, signed_moves=SIGNED_MOVES, reads_release=viewer.has(*release.READERS),
                  value_rows=lot_values.ValueRows.of(request.app.state.templates.env.filters),
                  value_id_slot=lot_values.VALUE_ID,
                  **_history(session, viewer, lot), **view,
                  **_draft_view(session, viewer, view, typed))


def _history(session: Session, viewer: Viewer, lot: Lot) -> dict:
    history, total = lots.latest_history(session, viewer.actor, lot)
    return {"history": history, "history_count": total, "reads_audit": viewer.has(*audit.AUDIT_READERS)}


@router.get("/lots/{number}")
def lot_page(request: Request, number: str, viewer: Viewer = Depends(require(*READERS)),
             session: Session = Depends(read_session)):
    return _page(request, session, viewer, number)


def _seen(form) -> int | None:
    return inputs.seen_version(form.get("lot_version"))


def _inputs(form) -> dict[str, steps.ValueInput]:
    codes = {k[2:] for k in form if k.startswith("v:")} | {k[3:] for k in form if k.startswith("na:")}
    return {c: steps.ValueInput(form.get(f"v:{c}", ""), form.get(f"c:{c}", ""), form.get(f"na:{c}", ""))
            for c in codes}


# Each step action: the service call it makes, from the form.
ACTIONS = {
    "start": lambda s, v, lot, f: steps.start_entry(s, v.actor, lot, f.get("step", ""), _seen(f)),
    "values": lambda s, v, lot, f: steps.record_values(s, v.actor, lot, f.get("step", ""), int(f.get("entry") or 0),
                                                       _inputs(f), _seen(f)),
    "material": lambda s, v, lot, f: steps.record_material(s, v.actor, lot, f.get("step", ""),
                                                           int(f.get("entry") or 0), f.get("scan", ""), _seen(f),
                                                           f.get("override_reason")),
    "equipment": lambda s, v, lot, f: steps.record_equipment(s, v.actor, lot, f.get("step", ""),
                                                             int(f.get("entry") or 0), f.get("scan", ""), _seen(f)),
    "perform": lambda s, v, lot, f: steps.perform(s, s.merge(v.user), f.get("password", ""), lot, f.get("step", ""),
                                                  int(f.get("entry") or 0), _seen(f)),
    "verify": lambda s, v, lot, f: steps.cosign(s, v.actor, f.get("username", ""), f.get("password", ""), lot,
                                                f.get("step", ""), int(f.get("entry") or 0), _seen(f)),
    "correct": lambda s, v, lot, f: steps.correct_value(s, v.actor, lot, int(f.get("value_id") or 0),
                                                        f.get("new_value", ""), f.get("reason"), f.get("comment", ""),
                                                        _seen(f)),
    "vial": lambda s, v, lot, f: lots.record_fate(s, v.actor, lot, f.get("vial", ""), f.get("fate", ""),
                                                 f.get("reason")),
    "move": lambda s, v, lot, f: release.move_lot(s, s.merge(v.user), lot, f.get("move", ""), f.get("reason"),
                                           password=f.get("password"), seen_version=_seen(f)),
}


def _pairs(form) -> list[tuple[str, str]]:
    return [(name, value) for name, value in form.multi_items() if isinstance(value, str)]


@router.post("/lots/{number}/entry")
def save_entry(request: Request, number: str, viewer: Viewer = Depends(form_by(Role.operator)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    """The one step form: with the password, everything typed and scanned is written and signed;
    without it, kept as a draft. A refused save keeps the typing (as the draft) and shows it again."""
    password, signing = form_text(form, "password"), form_text(form, "save") != "draft"
    step, index = form_text(form, "step"), int(form_text(form, "entry") or 0)
    try:
        with db.write() as session:
            lot = lots.by_number(session, number)
            if password and signing:
                steps.save_and_sign(session, session.merge(viewer.user), password, lot, step, index, _pairs(form),
                                    _seen(form))
            else:
                steps.save_draft(session, viewer.actor, lot, step, index, _pairs(form))
    except DomainError as error:
        return _refused(request, db, viewer, number, error, form)
    notice = ("Signed: performed." if password and signing else
              "Draft saved. Enter your password to sign." if signing else
              "Draft saved: not part of the record until signed.")
    return RedirectResponse(f"/lots/{number}?notice={notice}#current", status_code=303)


def _refused(request: Request, db: Database, viewer: Viewer, number: str, error: DomainError, form):
    """The refused save's page, with everything typed still in the fields (and kept as the draft,
    so leaving the page loses nothing either)."""
    typed: dict = dict(form)
    try:
        with db.write() as session:
            typed = steps.save_draft(session, viewer.actor, lots.by_number(session, number), form_text(form, "step"),
                                     int(form_text(form, "entry") or 0), _pairs(form))
    except DomainError:
        pass  # nothing to keep it on (a closed lot, a signed entry): the page still shows the typing
    with db.read() as session:
        return _page(request, session, viewer, number, error, typed)


@router.post("/lots/{number}/draft")
def save_draft(number: str, viewer: Viewer = Depends(form_by(Role.operator)), db: Database = Depends(get_db),
               form=Depends(form_data)):
    """The step page's script saves the form here as it is typed or scanned (JSON, no page load)."""
    with db.write() as session:
        found = steps.keep_typing(session, viewer.actor, lots.by_number(session, number), form_text(form, "step"),
                                  int(form_text(form, "entry") or 0), _pairs(form))
    return JSONResponse({kind: [{"code": s.code, "described": s.described, "problem": s.problem} for s in items]
                         for kind, items in found.items()})


DONE = {"start": "Step started.", "perform": "Signed: performed.", "verify": "Signed: verified."}
# What an action's answer says when it names what it did, and where the page opens: after a vial's fate,
# at the vial form again, for the next vial to scan.
SAID = {"vial": lambda vial: f"Vial {vial.code}: {vial_rules.words(vial.state)}."}
ANCHOR = {"vial": "#vials"}


@router.post("/lots/{number}/{action}")
def lot_action(request: Request, number: str, action: str, viewer: Viewer = Depends(form_by(*READERS)),
               db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        if action not in ACTIONS:
            raise NotFound("There is no such action.", field="action")
        with db.write() as session:
            done = ACTIONS[action](session, viewer, lots.by_number(session, number), form)
            notice = SAID[action](done) if action in SAID else DONE.get(action, "Saved.")
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, number, error, dict(form))
    return RedirectResponse(f"/lots/{number}?notice={quote(notice)}{ANCHOR.get(action, '#current')}", status_code=303)


@work_queue
def _lots_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    items = []
    if viewer.has(Role.operator):
        in_process = lots.lots(session, "in_process")
        if in_process:
            href = f"/lots/{in_process[0].number}#current" if len(in_process) == 1 else "/lots?state=in_process"
            items.append(QueueItem(len(in_process), "lots in process", href, one="lot in process"))
    if viewer.has(Role.verifier, Role.operator) and viewer.actor.user_id is not None:
        waiting = steps.awaiting_verification(session, viewer.user)
        if waiting:
            first_lot, first = waiting[0]
            one_lot = all(lot.number == first_lot.number for lot, _ in waiting)
            href = (f"/lots/{first_lot.number}#step-{first.step_code}" if one_lot
                    else "/lots?awaiting=verification")
            items.append(QueueItem(len(waiting), "steps await your verification", href,
                                   one="step awaits your verification"))
    return items
