"""The simulation as the pages ask for it: a study's parameters from the form (defaults from its
study file and its resupply settings), the run (kept for the next few identical requests: the page
and then its PDF), and the PDF. Nothing is stored: a run changes no record and is reproduced from
its parameters and seed, which the page's address and the PDF both carry (so there is no audit
event either)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session, col

from .. import clock, studies
from ..db import Database
from ..models import ResupplySetting, Role, Site, Study
from .model import Results, simulate
from .parameters import Field, Parameters, StockSettings, as_form, defaults, from_form, labelled
from .pdf import simulation_pdf

# Unblinded planning: it shows arms by name. Blinded roles (pharmacist, investigator, monitor,
# admin) never reach it; QA and the QP read it as they read release and supply.
READERS = (Role.supply_manager, Role.qa, Role.qp)
RUN_FLAG = "run"

cached_simulate = lru_cache(maxsize=8)(simulate)  # Parameters are frozen and hashable


@dataclass(frozen=True)
class Plan:
    study: str
    title: str
    fields: list[Field]  # as the form shows them
    results: Results | None

    @property
    def groups(self) -> list[tuple[str, list[Field]]]:
        """The form's fields in fieldsets: the trial, then each arm's lots and site stock."""
        out: dict[str, list[Field]] = {}
        for f in self.fields:
            arm = f.name.split(".")[0] if "." in f.name else ""
            legend = f"Arm {arm}: lots and site stock" if arm else "Trial, enrolment and shipping"
            short = f.label.removeprefix(f"{arm}: ").removeprefix(f"{arm} at ") if arm else f.label
            out.setdefault(legend, []).append(f._replace(label=short[:1].upper() + short[1:]))
        return list(out.items())


def study_choices(db: Database) -> list[tuple[str, str]]:
    with db.read() as session:
        return [(study.code, studies.definition(study).study.short_title) for study in studies.all_studies(session)]


def _stock(session: Session, study: Study) -> StockSettings:
    """The study's resupply settings, (arm, site) -> (minimum, maximum): the simulation starts from
    the stock levels the supply manager has set, where she has set them."""
    rows = session.execute(select(ResupplySetting, col(Site.code))
                           .join(Site, col(Site.id) == col(ResupplySetting.site_id))
                           .where(col(ResupplySetting.study_id) == study.id))
    return {(row.arm, site): (row.min_stock, row.max_stock) for row, site in rows}


def form_of(db: Database, code: str, typed: Mapping[str, object]) -> Plan:
    """The form with the defaults, overlaid with what was typed (shown again beside an error)."""
    with db.read() as session:
        study = studies.by_code(session, code, field="code")
        d, stock = studies.definition(study), _stock(session, study)
    base = defaults(d, stock=stock)
    shown = as_form(base) | {k: str(v) for k, v in typed.items()}
    return Plan(study.code, d.study.title, [f._replace(value=shown[f.name]) for f in labelled(base)], None)


def plan(db: Database, code: str, form: Mapping[str, object]) -> Plan:
    """The form's parameters, checked (InvalidInput names the field) and, when the form asks to
    run, the simulation's results."""
    with db.read() as session:  # the study only: no session is held while the model runs
        study = studies.by_code(session, code, field="code")
        d, stock = studies.definition(study), _stock(session, study)
    params = from_form(d, form, stock)
    results = cached_simulate(params) if RUN_FLAG in form else None
    return Plan(study.code, d.study.title, labelled(params), results)


def pdf_file(db: Database, code: str, form: Mapping[str, object], *, printed_by: str,
             zone: ZoneInfo) -> tuple[str, bytes]:
    with db.read() as session:
        study = studies.by_code(session, code, field="code")
        d, stock = studies.definition(study), _stock(session, study)
    params: Parameters = from_form(d, form, stock)
    pdf = simulation_pdf(cached_simulate(params), study_title=d.study.title, printed_by=printed_by, zone=zone,
                         now=clock.utcnow())
    return f"supply-simulation-{study.code}-seed-{params.seed}.pdf", pdf
