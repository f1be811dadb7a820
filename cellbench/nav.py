"""The navigation bar. Each link is shown to the roles its page admits, read from the page's own
`require(...)` dependency when the app starts, so a link never leads to a refusal, and the nav
imports no domain module (which would put the sealed compartment in every page's import graph)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from fastapi import Request
from fastapi.routing import APIRoute
from markupsafe import Markup
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


class Nav:
    """The app's links, and each role set's share of them, worked out once per role set.

    What a viewer's nav lists depends on the links (fixed when the app is built, from the pages'
    own declarations) and on the viewer's roles, and on nothing else: not the user, their sites or
    studies, nor any data. So the role set alone keys the cache, and the cache is complete; a role
    given or taken changes the set, and the next request finds (or works out) the other entry.
    At most one entry per combination of roles that users hold: a few dozen. Which link is the
    current page depends on the path and is marked per request."""

    def __init__(self, links: tuple[Link, ...]):
        self.links = links
        self._shares: dict[frozenset[Role], tuple[tuple[Link, bool], ...]] = {}
        self._shown: dict[tuple[frozenset[Role], str | None], tuple[Shown, ...]] = {}
        self._html: dict[tuple[frozenset[Role], str | None], Markup] = {}

    def share(self, roles: frozenset[Role]) -> tuple[tuple[Link, bool], ...]:
        """The links these roles may open, each with whether a separator goes before it."""
        found = self._shares.get(roles)
        if found is None:
            mine = [link for link in self.links if link.roles & roles]
            found = tuple((link, link.group != (mine[i - 1].group if i else "home")) for i, link in enumerate(mine))
            self._shares[roles] = found
        return found

    def _current(self, roles: frozenset[Role], path: str) -> str | None:
        """The href of the link for the page at `path`: the longest matching one, home, or none."""
        matching = [link.href for link, _ in self.share(roles) if path == link.href or path.startswith(link.href + "/")]
        return max(matching, key=len) if matching else ("/" if path == "/" else None)

    def shown(self, roles: frozenset[Role], path: str) -> tuple[Shown, ...]:
        """The nav as these roles see it on the page at `path`: kept per role set and current link
        (one of the share's, home or none), as few as the shares times their links, whatever the path."""
        current = self._current(roles, path)
        found = self._shown.get((roles, current))
        if found is None:
            found = (Shown("Home", "/", current == "/", False),
                     *(Shown(link.label, link.href, link.href == current, separated)
                       for link, separated in self.share(roles)))
            self._shown[roles, current] = found
        return found

    def html(self, roles: frozenset[Role], path: str) -> Markup:
        """The nav's links as markup, kept with the same key as `shown`: written out once per role
        set and current link instead of by a template loop on every page (a tenth of a signed-in
        page's floor went on escaping the same twenty links)."""
        current = self._current(roles, path)
        found = self._html.get((roles, current))
        if found is None:
            found = Markup("\n").join(
                (Markup('<span class="sep" aria-hidden="true"></span>') if link.new_group else Markup(""))
                + Markup('<a href="{}"{}>{}</a>').format(link.href, Markup(' aria-current="page"') if link.current
                                                         else Markup(""), link.label)
                for link in self.shown(roles, path))
            self._html[roles, current] = found
        return found


def build(routes: Sequence[BaseRoute]) -> Nav:
    """The links, from the app's endpoint routes (app.iter_routes)."""
    links = [Link(label, href, group, page_roles(routes, href))
             for group, pairs in LINKS.items() for label, href in pairs]
    # Whoever may read the full trace gets that link only, not the blinded one beside it as well.
    full_trace = next(link.roles for link in links if link.href == "/trace")
    return Nav(tuple(link if link.href != "/trace/kits" else link._replace(roles=link.roles - full_trace)
                     for link in links))


def nav_html(request: Request, viewer: Viewer) -> Markup:
    return request.app.state.nav.html(viewer.roles, request.scope["path"])
