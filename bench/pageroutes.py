"""Which GET routes each role may open, and a URL for each, for bench/pages.py.

Routes come from the app; who may open each from the gate's declarations. Path parameters are
filled from the links of the role's own pages (a walk from home, one link per route), then from the
values other routes of the same kind used (API routes take the pages' lot, kit, shipment...), then
from the data (a study code, the demo's first site, treatment 1); a route that cannot be filled
says why.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.routing import Route

from cellbench import demo, gate
from cellbench.app import iter_routes
from cellbench.db import Database

HREF = re.compile(r'<a\b[^>]*\bhref="(/[^"#]*)', re.I)
NOT_PAGES = ("/logout", "/static/")
# API segments named differently from their pages' (to reuse the pages' values)
ALIASES = {"label-runs": "labels", "material-lots": "materials", "unblindings": "unblinding",
           "packaging-runs": "packaging", "qc-results": "qc"}
# Required query parameters (FastAPI's 422 without them) and pages that read their query.
QUERIES = {"/api/v1/accountability": "study={study}", "/api/v1/reconciliations": "study={study}",
           "/api/v1/accountability/verifications": "study={study}&site={site}",
           "/accountability/report.pdf": "study={study}&site={site}", "/destructions/new": "study={study}&site={site}",
           "/api/v1/trace/kits": "q={kit}", "/api/v1/trace": "q={lot}"}
# Routes that answer a scan from a device: a signed label or a supplier's barcode, not a page to time.
NOT_TIMED = {"/kits/scan": "answers a scanned label code (a signed payload), made by the scan benchmark",
             "/api/v1/material-lots/by-scan": "answers a supplier's scanned barcode"}
WALK_LIMIT = 120  # pages fetched per role to find links


def gated_routes(app) -> list[tuple[Route, gate.Access]]:
    return [(r, gate.declared(r, app)) for r in iter_routes(app.routes)
            if isinstance(r, Route) and "GET" in (r.methods or ())]


def role_users() -> dict[str, str]:
    """role -> the demo user who holds it (the first one listed: the first site's people)."""
    found: dict[str, str] = {}
    for username, _name, roles in demo.DEMO_USERS:
        for role in roles:
            found.setdefault(role.value, username)
    return found


def sign_in(client: TestClient, username: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    response = client.post("/login", data={"username": username, "password": demo.DEMO_PASSWORD,
                                           "csrf_token": token}, follow_redirects=False)
    if response.status_code != 303:
        raise RuntimeError(f"{username} could not sign in: {response.status_code}")


def _match(routes: list[Route], url: str) -> Route | None:
    path = url.split("?")[0]
    for route in routes:
        if route.path_regex.match(path):
            return route
    return None


def walk(client: TestClient, routes: list[Route], limit: int = WALK_LIMIT) -> dict[str, str]:
    """route path -> a URL of it found in the links of this role's pages, breadth-first from home."""
    found: dict[str, str] = {}
    queue, seen, fetched = deque(["/"]), {"/"}, 0
    while queue and fetched < limit:
        url = queue.popleft()
        response = client.get(url)
        fetched += 1
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith("text/html"):
            continue
        for href in HREF.findall(response.text):
            href = href.replace("&amp;", "&")
            if href in seen or href.startswith(NOT_PAGES):
                continue
            seen.add(href)
            route = _match(routes, href)
            if route is None:
                continue
            known = found.get(route.path)
            if known is None or ("?" in known and "?" not in href):  # the plain URL over a filtered one
                if known is None:
                    queue.append(href)
                found[route.path] = href
    return found


PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def _params(path: str) -> list[tuple[str, str]]:
    """(the resource segment before it, name) for each path parameter."""
    parts = [p for p in path.split("/") if p and p not in ("api", "v1")]
    out, resource = [], ""
    for part in parts:
        if m := PARAM.search(part):
            out.append((ALIASES.get(resource, resource), m[1]))
        else:
            resource = part
    return out


def learn(values: dict[tuple[str, str], str], route: Route, url: str) -> None:
    """The parameter values a found URL carries, keyed by (resource, name)."""
    m = route.path_regex.match(url.split("?")[0])
    if m:
        for (resource, name), value in zip(_params(route.path), m.groups(), strict=False):
            values.setdefault((resource, name), value)


def fill(route: Route, values: dict[tuple[str, str], str], defaults: dict[str, str]) -> tuple[str, str]:
    """A URL for the route, or ("", why not)."""
    url = route.path
    for resource, name in _params(route.path):
        value = values.get((resource, name)) or defaults.get(name)
        if value is None:
            return "", f"no value for {{{name}}} after /{resource} (no link to it on this role's pages)"
        url = re.sub(r"\{" + name + r"(:[^}]*)?\}", value.replace("\\", r"\\"), url, count=1)
    if route.path in QUERIES:
        wanted = {"study": defaults.get("study"), "site": defaults.get("site"), "kit": values.get(("kits", "number")),
                  "lot": values.get(("lots", "number"))}
        template = QUERIES[route.path]
        missing = [k for k in wanted if "{" + k + "}" in template and not wanted[k]]
        if missing:
            return "", f"its query needs a {missing[0]} and none was found"
        url += "?" + template.format(**wanted)
    return url, ""


def data_defaults(db: Database) -> dict[str, str]:
    """What the data gives when no link did: the demo's first study, treatment 1."""
    with db.engine.connect() as conn:
        study = conn.execute(text("SELECT code FROM study ORDER BY id DESC")).scalar()
        site = conn.execute(text("SELECT code FROM site WHERE code = 'RH-ENT'")).scalar()  # the demo's first site
    return {"study": study, "study_code": study, "treatment": "1", "site": site}


@dataclass
class Links:
    """What the roles' walks found: each role's URL per route, and the parameter values they carry."""

    pages: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> route path -> URL
    values: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)  # role -> (resource, name) -> value
    everyone: dict[tuple[str, str], str] = field(default_factory=dict)  # the first value any role found

    def url(self, route: Route, role: str, defaults: dict[str, str]) -> tuple[str, str]:
        """The role's own link to the route, else one filled from the values found; or ("", why not)."""
        found = self.pages[role].get(route.path, "")
        return (found, "") if found else fill(route, {**self.everyone, **self.values[role]}, defaults)


def discover(app, routes: list[Route], people: dict[str, str], clients: dict[str, TestClient],
             limit: int = WALK_LIMIT) -> Links:
    """Signs each role in (its client kept in `clients`) and walks its pages from home."""
    links = Links()
    for role, username in people.items():
        client = clients.setdefault(role, TestClient(app).__enter__())
        sign_in(client, username)
        links.pages[role] = walk(client, routes, limit)
        links.values[role] = {}
        for path, url in links.pages[role].items():
            learn(links.values[role], next(r for r in routes if r.path == path), url)
        for key, value in links.values[role].items():
            links.everyone.setdefault(key, value)
    return links
