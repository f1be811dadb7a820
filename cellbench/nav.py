"""The navigation bar. Each link is shown to the roles its page admits, read from the page's own
`require(...)` dependency when the app starts, so a link never leads to a refusal, and the nav
imports no domain module (which would put the sealed compartment in every page's import graph)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from .models import Role

if TYPE_CHECKING:  # only a type: importing deps would bring users and the database into the nav
    from .deps import Viewer


class Link(NamedTuple):
    label: str
    href: str
    group: str
    roles: frozenset[Role]


class Shown(NamedTuple):
    """A link as one viewer's nav shows it."""
    label: str
    href: str
    current: bool  # the page open now: the link with the longest matching path (/audit/review, not /audit)
    new_group: bool  # a separator goes before it


# Grouped by the work: the cell bench, supply, the site pharmacy, oversight, administration.
LINKS = {
    "bench": (("Lots", "/lots"), ("Donors", "/donors"), ("Materials", "/materials"), ("Equipment", "/equipment"),
              ("Deviations", "/deviations"), ("Release", "/release"), ("Specifications", "/specifications")),
    "supply": (("Supply", "/supply"), ("Labels", "/labels"), ("Shipments", "/shipments"), ("Storage", "/storage"),
               ("Scan", "/scan"), ("Kits", "/kits"), ("Studies", "/studies"),
               ("Simulation", "/simulation"),
               ("Resupply", "/supply/resupply")),
    "site": (("Participants", "/participants"), ("Dispensing", "/dispensing"), ("Preparation", "/preparation"),
             ("Returns", "/returns")),
    "oversight": (("Accountability", "/accountability"), ("Trace", "/trace"), ("Trace", "/trace/kits"),
                  ("Unblinding", "/unblinding"), ("Study data", "/study-data"), ("Notifications", "/notifications"),
                  ("Audit trail", "/audit"), ("Audit review", "/audit/review")),
    "admin": (("Users", "/admin/users"),),
}


def page_roles(routes: Iterable[BaseRoute], path: str) -> frozenset[Role]:
    """The roles the GET page at `path` admits, from its require(...) dependency (deps.RoleCheck)."""
    for route in routes:
        if isinstance(route, APIRoute) and route.path == path and "GET" in (route.methods or ()):
            roles = [getattr(d.call, "roles", None) for d in route.dependant.dependencies]
            admitted = [r for r in roles if isinstance(r, frozenset)]
            if admitted:
                return admitted[0]
            raise LookupError(f"The page {path} admits no named roles: the nav cannot show its link.")
    raise LookupError(f"The nav links to {path}, which is no page.")


def build(routes: Sequence[BaseRoute]) -> tuple[Link, ...]:
    """The links, from the app's endpoint routes (app.iter_routes)."""
    links = [Link(label, href, group, page_roles(routes, href))
             for group, pairs in LINKS.items() for label, href in pairs]
    # Whoever may read the full trace gets that link only, not the blinded one beside it as well.
    full_trace = next(link.roles for link in links if link.href == "/trace")
    return tuple(link if link.href != "/trace/kits" else link._replace(roles=link.roles - full_trace)
                 for link in links)


def links_for(request: Request, viewer: Viewer) -> list[Shown]:
    path = request.url.path
    mine = [link for link in request.app.state.nav if viewer.has(*link.roles)]
    matching = [link.href for link in mine if path == link.href or path.startswith(link.href + "/")]
    current = max(matching, key=len) if matching else ("/" if path == "/" else None)
    shown, group = [Shown("Home", "/", current == "/", False)], "home"
    for link in mine:
        shown.append(Shown(link.label, link.href, link.href == current, link.group != group))
        group = link.group
    return shown
