"""Jinja2 set-up: one environment, filters that show UTC times in the site's zone and keys in words."""
from __future__ import annotations

import functools
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from . import clock, display, notices
from .audit import AUDIT_READERS
from .config import shipped
from .models import Role
from .nav import nav_html
from .specifications import unit_text

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


DAY = "%Y-%m-%d"


def local(moment: Any, zone: ZoneInfo, fmt: str | None = None) -> str:
    """The one format for a time on a page ('2026-12-06 09:44 +01:00'), or the site's day alone for
    a date column. Other formats that older templates still pass are not honoured: one format
    everywhere, always with the offset, so that no time on a page reads in another zone or shape."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        return display.moment_text(moment, zone)
    if fmt == DAY:
        return clock.local_text(moment, zone, DAY)[:10]
    return display.moment(moment, zone)


_NOWRAP, _BETWEEN, _END = Markup('<span class="nowrap">'), Markup('</span> <span class="nowrap">'), Markup("</span>")


def unbroken(text: str) -> Markup | str:
    """'2026-12-06 09:44 +01:00' as two unbreakable parts: the date, and the time with its offset."""
    if not text:
        return text
    # Joined with Markup's + (which escapes the text) rather than Markup.format, whose string.Formatter
    # pass was a third of the batch record page's rendering: a record shows hundreds of times.
    day, _, rest = text.partition(" ")
    if not rest:
        return _NOWRAP + day + _END
    return _NOWRAP + day + _BETWEEN + rest + _END


@functools.cache
def roles_text(roles: frozenset[Role]) -> str:
    """'Operator, Verifier': a viewer's roles as the page header names them, worked out once per role set."""
    return ", ".join(ROLE_LABELS.get(role, str(role)) for role in sorted(roles))


def make_templates(zone: ZoneInfo, *, reload: bool = False) -> Jinja2Templates:
    """The one environment of the app, compiled templates kept for its life. With `reload` (a
    developer editing templates, CELLBENCH_TEMPLATE_RELOAD) each use checks its file's time;
    otherwise a template and those it extends and imports are read once, not looked at on disk
    at every request."""
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.autoescape = True
    env.trim_blocks = env.lstrip_blocks = True
    env.auto_reload = reload

    # On pages a time may break between its date and its time of day, never inside either
    # (a date breaks at its hyphens in a narrow column: "2026-/12-06").
    env.filters["local"] = lambda moment, fmt=None: unbroken(local(moment, zone, fmt))
    env.filters["local_text"] = lambda moment: local(moment, zone)  # plain text, to cut or compare
    env.filters["local_date"] = lambda moment: local(moment, zone, DAY)
    # Stored text (audit values, step values) with its ISO times in site time and its keys in words.
    env.filters["shown"] = lambda stored: display.value_text(stored, zone)
    env.filters["times"] = lambda text: display.times_in(str(text or ""), zone)
    env.filters["words"] = display.words
    env.filters["unit"] = unit_text  # "10^6 cells/mL" as a person writes it: "× 10⁶ cells/mL"
    env.filters["label"] = display.label
    # Enum members and the plain strings read back from the database print the same way.
    env.filters["state"] = lambda value: str(getattr(value, "value", value) or "").replace("_", " ")
    env.filters["role_label"] = lambda role: ROLE_LABELS.get(Role(role), str(role))
    env.filters["roles_text"] = roles_text
    env.globals["Role"] = Role
    env.globals["audit_readers"] = AUDIT_READERS
    env.globals["nav_html"] = nav_html
    env.globals["notice"] = notices.shown  # a redirect's notice, only when cellbench signed it
    env.globals["zone_name"] = str(zone)
    return templates


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)
