"""The supply simulation's pages (unblinded: supply manager, QA, QP): the studies, one study's form
with its figures and charts, and the PDF. The form is a GET, so a result's address is its parameters
and seed: bookmarked or sent, it gives the same figures again."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .. import pdf, simulation
from ..db import Database
from ..deps import Viewer, get_db, require
from ..errors import DomainError
from ..simulation import figures, plots
from ..templating import render
from .accountability import pdf_response

router = APIRouter(prefix="/simulation", include_in_schema=False)
readers = require(*simulation.READERS)


@router.get("")
def simulation_studies(request: Request, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    return render(request, "simulation/index.html", studies=simulation.study_choices(db))


@router.get("/{code}")
def simulation_page(request: Request, code: str, viewer: Viewer = Depends(readers), db: Database = Depends(get_db)):
    typed = dict(request.query_params)
    try:
        plan = simulation.plan(db, code, typed)
    except DomainError as error:
        return render(request, "simulation/study.html", status_code=error.status,
                      plan=simulation.form_of(db, code, typed), error=error, charts=[], rows=[], query="")
    res = plan.results
    return render(request, "simulation/study.html", plan=plan, error=None,
                  charts=[plots.svg(chart) for chart in figures.charts(res)] if res else [],
                  rows=figures.rows(res) if res else [], duration=figures.duration_text(res) if res else "",
                  query=str(request.url.query))


@router.get("/{code}/simulation.pdf")
async def simulation_pdf(request: Request, code: str, viewer: Viewer = Depends(readers),
                         db: Database = Depends(get_db)) -> Response:
    query = dict(request.query_params)
    return pdf_response(*await pdf.render_for(
        request, f"simulation report of study {code[:40]}",
        lambda: simulation.pdf_file(db, code, query, printed_by=viewer.user.full_name,
                                    zone=request.app.state.settings.zone)))
