"""Jinja2 set-up: one environment, filters that show UTC times in the site's zone."""
from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from . import clock
from .config import shipped
from .models import Role
from .nav import links_for

TEMPLATES = shipped("templates")

ROLE_LABELS = {
    Role.operator: "Operator",
    Role.verifier: "Verifier",
    Role.qc_analyst: "QC analyst",
    Role.qa: "Quality assurance",
    Role.qp: "Qualified person",
    Role.supply_manager: "Supply manager",
    Role.pharmacist: "Pharmacist",
    Role.preparer: "Preparer",
    Role.investigator: "Investigator",
    Role.monitor: "Monitor",
    Role.admin: "Administrator",
}


def make_templates(zone: ZoneInfo) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.autoescape = True
    env.trim_blocks = env.lstrip_blocks = True

    env.filters["local"] = lambda moment, fmt=clock.SECONDS: clock.local_text(moment, zone, fmt)
    # Enum members and the plain strings read back from the database print the same way.
    env.filters["state"] = lambda value: str(getattr(value, "value", value) or "").replace("_", " ")
    env.filters["role_label"] = lambda role: ROLE_LABELS.get(Role(role), str(role))
    env.globals["Role"] = Role
    env.globals["nav_links"] = links_for
    env.globals["zone_name"] = str(zone)
    return templates


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)
