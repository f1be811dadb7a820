"""Release pages: a lot's gates, QA's review by exception and of the audit trail, the QP's
certification, the sponsor release, rejection and certificates; the release work queues."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Select
from sqlmodel import Session

from .. import clock, inputs, lots, pdf, qc, release, users
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session, require
from ..errors import DomainError, InvalidInput, NotFound
from ..models import Lot, LotState, Role
from ..release import READERS, certificates
from ..specifications import versions as spec_versions
from ..templating import render
from . import paging
from .home import QueueItem, line_of, work_queue

router = APIRouter(include_in_schema=False)
# Each queue: its title, and the query of the lots in it for this viewer (the QP sees what waits
# for them). A queue lists; the gates are on each lot's page, evaluated there in full.
QUEUES: dict[str, tuple[str, Callable[[Viewer], Select]]] = {
    "review": ("Lots awaiting QA review", lambda v: release.awaiting_review()),
    "certification": ("Lots awaiting certification (QA-reviewed; the lot page shows its gates)",
                      lambda v: release.awaiting_certification(v.actor if v.has(Role.qp) else None)),
    "sponsor": ("Certified lots awaiting sponsor release", lambda v: release.awaiting_sponsor_release()),
    "pending": ("Lots with tests pending after an initial certification",
                lambda v: release.lots_pending_for(v.user.id)),
}


LISTED = (LotState.qc_pending, LotState.initial_certified, LotState.released_for_shipment, LotState.qp_certified,
          LotState.released, LotState.rejected)


def _url(number: str) -> str:
    return f"/lots/{quote(number, safe='')}/release"


def _qc_url(lot: Lot) -> str:
    return f"/lots/{quote(lot.number, safe='')}/qc"


@work_queue
def _release_waiting(session: Session, viewer: Viewer) -> list[QueueItem]:
    """Counts and at most two lots per line (line_of), however many wait."""
    items = []
    if viewer.has(Role.qa):
        items += line_of(session, release.awaiting_review(), "lots await your batch-record and audit-trail review",
                         "lot awaits your batch-record and audit-trail review", "/release?queue=review",
                         lambda lot: _url(lot.number) + "#reviews")
    if viewer.has(Role.qp):
        items += line_of(session, release.awaiting_certification(viewer.actor),
                         "reviewed lots await your certification", "reviewed lot awaits your certification",
                         "/release?queue=certification", lambda lot: _url(lot.number) + "#certify")
    if viewer.has(Role.supply_manager):
        items += line_of(session, release.awaiting_sponsor_release(), "certified lots await your sponsor release",
                         "certified lot awaits your sponsor release", "/release?queue=sponsor",
                         lambda lot: _url(lot.number) + "#sponsor-release")
    if viewer.has(Role.qc_analyst) and (tests := release.pending_count(session, viewer.user.id)):
        # Counted in tests (each is a result to enter); one lot holding them all opens its QC page.
        lots_of = line_of(session, release.lots_pending_for(viewer.user.id), "", "", "/release?queue=pending", _qc_url)
        items.append(QueueItem(tests, "tests left pending by an initial certification are yours to complete",
                               lots_of[0].href if lots_of else "/release?queue=pending",
                               one="test left pending by an initial certification is yours to complete"))
    return items


@router.get("/release")
def release_list(request: Request, viewer: Viewer = Depends(require(*READERS)),
                 session: Session = Depends(read_session)):
    """Every lot that came to release, or one work queue: either way a page of lots by number. No
    gate is evaluated here: each lot's page shows its gates."""
    queue = (request.query_params.get("queue") or "").strip()
    if queue and queue not in QUEUES:
        raise InvalidInput(f"Unknown queue '{queue}'.", field="queue")
    ask = paging.ask(request)
    found = (release.page_of(session, QUEUES[queue][1](viewer), ask) if queue
             else release.lot_page_in(session, ask, *LISTED))
    return render(request, "release/list.html", rows=found.rows, queue=queue, queues=QUEUES, url=_url,
                  pager=paging.pager("/release", {"queue": queue} if queue else {}, found))


def _page(request: Request, session: Session, viewer: Viewer, number: str, error: DomainError | None = None,
          typed: dict | None = None):
    lot = lots.by_number(session, number)
    row = lots.spec_of(session, lot)
    spec = spec_versions.parsed(row)
    moves = lots.allowed_moves(lot, viewer.actor)
    findings = release.exceptions(session, lot)
    grouped = {kind: [f for f in findings if f.kind == kind] for kind in release.FINDING_KINDS}
    reviewable = LotState(lot.state) in release.REVIEWABLE
    pending = release.pending_tests(session, lot)
    return render(
        request, "release/lot.html", status_code=error.status if error else 200, error=error, typed=typed or {},
        lot=lot, spec_row=row, spec=spec, moves=moves, gates=release.readiness(session, lot, viewer.actor),
        reads_record=viewer.has(*lots.READERS),  # the supply manager releases on this page, without the record
        guard=release.next_guard(lot),
        initial_gates=(release.readiness(session, lot, viewer.actor, "initial_certification")
                       if "certify_initial" in moves else []),
        statuses=qc.test_status(session, lot),
        candidates=release.pending_candidates(session, lot) if "certify_initial" in moves else [],
        analysts=release.qc_analysts(session) if "certify_initial" in moves else [],
        pending=pending, owners=release.owner_names(session, pending), findings=findings, grouped=grouped,
        kinds=release.FINDING_KINDS, reviews=release.reviews_of(session, lot),
        stale={kind: gate(session, lot, None) for kind, gate in release.REVIEW_GATES.items()},
        latest_seq=release.latest_lot_seq(session, lot), decisions=release.decisions_with_signatures(session, lot),
        excursions=release.excursions_of(session, lot), reviewable=reviewable,
        trail=release.lot_audit_trail(session, viewer.actor, lot) if viewer.has(Role.qa) and reviewable else [],
        url=_url(lot.number), today=clock.today().isoformat())


@router.get("/lots/{number}/release")
def release_page(request: Request, number: str, viewer: Viewer = Depends(require(*READERS)),
                 session: Session = Depends(read_session)):
    return _page(request, session, viewer, number)


def _seen(form) -> int | None:
    return inputs.seen_version(form.get("lot_version"))


def _pending_rows(form) -> list[tuple[str, str, str]]:
    """The pending-test rows of the form: test_<n>, owner_<n>, due_<n>; empty rows are skipped."""
    rows = []
    for key in sorted((k for k in form if k.startswith("test_")), key=lambda k: int(k[5:]) if k[5:].isdigit() else 0):
        n = key[5:]
        if (form.get(key) or "").strip():
            rows.append((form.get(key), form.get(f"owner_{n}", ""), form.get(f"due_{n}", "")))
    return rows


def _observed(value: str) -> datetime:
    return inputs.moment(value, "observed_at", "time observed")


# Each action: the one service call it makes, from the form; and what the notice says.
ACTIONS = {
    "review": (lambda s, v, lot, f: release.sign_review(s, s.merge(v.user), f.get("password", ""), lot,
                                                         f.get("kind", ""), f.get("comment")), "Review signed."),
    "certify": (lambda s, v, lot, f: release.certify(s, s.merge(v.user), f.get("password", ""), lot,
                                                      final=f.get("stage") != "initial",
                                                      pending=_pending_rows(f) if f.get("stage") == "initial" else (),
                                                      comment=f.get("comment"), seen_version=_seen(f)),
                "Lot certified."),
    "sponsor_release": (lambda s, v, lot, f: release.sponsor_release(s, s.merge(v.user), f.get("password", ""), lot,
                                                                      seen_version=_seen(f)), "Lot released."),
    "release_for_shipment": (lambda s, v, lot, f: release.release_for_shipment(
        s, s.merge(v.user), f.get("password", ""), lot, seen_version=_seen(f)), "Lot released for shipment."),
    "reject": (lambda s, v, lot, f: release.reject(s, s.merge(v.user), f.get("password", ""), lot, f.get("reason"),
                                                    seen_version=_seen(f)), "Lot rejected."),
    "excursion": (lambda s, v, lot, f: release.record_excursion(
        s, v.actor, lot, observed_at=_observed(f.get("observed_at", "")),
        highest_temperature=f.get("highest_temperature", ""), description=f.get("description")),
        "Excursion recorded."),
    "assess_excursion": (lambda s, v, lot, f: release.assess_excursion(
        s, v.actor, lot, inputs.db_id(f.get("excursion"), "excursion", "excursion"),
        acceptable=f.get("acceptable") == "yes", assessment=f.get("assessment")), "Assessment saved."),
}


@router.post("/lots/{number}/release/{action}")
def release_action(request: Request, number: str, action: str, viewer: Viewer = Depends(form_by(*READERS)),
                   db: Database = Depends(get_db), form=Depends(form_data)):
    try:
        if action not in ACTIONS:
            raise NotFound("There is no such action.", field="action")
        users.require_role(viewer.actor, *READERS)
        call, notice = ACTIONS[action]
        with db.write() as session:
            call(session, viewer, lots.by_number(session, number), form)
    except DomainError as error:
        with db.read() as session:
            return _page(request, session, viewer, number, error, {**dict(form), "action": action})
    return RedirectResponse(f"{_url(number)}?notice={quote(notice)}", status_code=303)


async def _pdf(request: Request, viewer: Viewer, db: Database, number: str, kind: str) -> Response:
    def make() -> tuple[str, bytes]:
        with db.read() as session:  # gather, then let go of the database before rendering
            data = certificates.gather(session, number)
        render_pdf = certificates.coa_pdf if kind == "coa" else certificates.release_certificate_pdf
        return data.lot.number, render_pdf(data, zone=request.app.state.settings.zone,
                                           printed_by=viewer.user.full_name, printed_at=clock.utcnow(),
                                           authorisation=request.app.state.settings.manufacturing_authorisation)

    title = "certificate of analysis" if kind == "coa" else "release certificate"
    lot, document = await pdf.render_for(request, f"{title} of lot {number[:40]}", make)
    name = quote(f"{'certificate-of-analysis' if kind == 'coa' else 'release-certificate'}-{lot}.pdf")
    return Response(document, media_type="application/pdf",
                    headers={"Content-Disposition": f"inline; filename*=UTF-8''{name}"})


@router.get("/lots/{number}/coa.pdf")
async def coa(request: Request, number: str, viewer: Viewer = Depends(require(*READERS)),
              db: Database = Depends(get_db)):
    return await _pdf(request, viewer, db, number, "coa")


@router.get("/lots/{number}/release-certificate.pdf")
async def release_certificate(request: Request, number: str, viewer: Viewer = Depends(require(*READERS)),
                              db: Database = Depends(get_db)):
    return await _pdf(request, viewer, db, number, "release")
