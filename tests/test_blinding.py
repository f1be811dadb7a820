"""The blind holds: for every route of the app, every blinded role gets the same answer about an
active kit as about a placebo kit in the same situation, their kit numbers aside (DESIGN.md,
invariant 4).

The routes are the app's own (app.iter_routes), so a new page, API call or export is covered the
day it is added, without editing this file. For each blinded user (pharmacist, investigator,
monitor, admin) and each pair of kits, one active and one placebo, made in the same operations and
in the same situation (blinding_support.build_world):

* released at the cell bench;
* held by a "proportionate" manual quarantine of their ASC lot (the placebo kit a companion);
* in that blinded lot but not held (made in its other packaging run);
* held by a "blinded_lot" manual quarantine;
* shipped to a site, scanned in and in its stock;
* given to two participants, one on each arm (assigned, dispensed, prepared, administered);
* returned to the site's pharmacy, counted, and destroyed;

the test asks:

* every GET route, its path filled from the world (a kit's number for {number} under /kits, its
  manufacturing lot's for {number} under /lots, each participant's numbers under /participants
  and /unblinding, the pair's blinded lot, shipment, destruction, study...), bare and with query
  strings that name the kit (audit filters, scan codes, searches, list filters);
* every scan route (POST .../scan) with the kit's number and with its label's QR payload;
* every other POST route that has a kit or lot in its path or reads a kit from its form or body
  (a refused action on each kit: its error page or error JSON);
* every refused kit move at the service level (the error message and field);
* the kit's outer and vial labels: PDF text, ZPL and QR payload.

A request about one kit is compared with the same request about the other, after each side's own
identifiers (kit number, QR payload and QR image, manufacturing lot number, participant numbers)
are replaced by placeholders. A request that is the same for both kits (a list, the audit trail, a
CSV export, a shipment's manifest) is compared row by row: the rows that name the active kit
against the rows that name the placebo kit, and the rest of the page around them.

Times are not normalised. The world is built with cellbench's clock held still during each
operation (blinding_support.Clock), so kits made in the same operation carry the very same
timestamps, and pages are compared exactly, times and the order of events included.

Every blinded answer is also checked for words that reveal contents: a manufacturing lot number,
"placebo", "saline", "NaCl", "CryoStor"... except in the fixed texts that name both products (the
label's "… or placebo (0.9 % NaCl)", the study's arms as the protocol lists them).

And the sealed compartment is wired to fail (blinding_support.sealed_tripwire) for every blinded
request: no blinded answer may call into cellbench.sealed or run SQL on a sealed_ table.
"""
from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import json
import os
import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

import pytest
from sqlalchemy import select

from cellbench import kits, labels, qrpayload, studies
from cellbench.app import create_app, iter_routes
from cellbench.config import Settings
from cellbench.db import Database
from cellbench.errors import DomainError
from cellbench.labels import particulars as label_particulars
from cellbench.models import Kit, SpecVersion

from .blinding_support import (
    BLINDED_USERS,
    LOGIN_TOKEN,
    QUERIES,
    Answer,
    Call,
    Clock,
    Pair,
    Probe,
    Side,
    build_url,
    build_world,
    diff,
    is_api,
    kit_fields_taken,
    path_variants,
    pdf_text,
    projections,
    readable,
    replace_all,
    rest,
    sealed_tripwire,
    side_view,
)
from .conftest import FAST_HASHER, SECRET, actor_of, sign_in

# Routes whose path holds something the test world has none of, and which not every blinded role
# is refused outright (the refusal comes before any look-up, so a stand-in value proves it).
# A route that newly lands here fails the test until someone decides: teach path_fill (in
# blinding_support) what fills it, or add it here with the reason it cannot be filled.
UNFILLABLE: dict[str, str] = {
    # The world's kits are received without boxes. A box page lists kit numbers by the positions
    # the pharmacist's scans put them in, and its label carries the box code only (tests/custody/
    # test_positions.py compares the two arms' kits placed in one box).
    "GET /storage/boxes/{code}": "a storage box: the world has none",
    "GET /storage/boxes/{code}/label.pdf": "a storage box's label: the world has none",
}

# Non-GET routes that act on the signed-in account rather than on kits, and would end or lock the
# session the test runs in (a wrong password counts toward lock-out).
NOT_ASKED = {
    "POST /logout": "ends the session",
    "POST /login": "signs in (the client is signed in already)",
    "POST /account/password": "a wrong current password counts toward lock-out",
    "POST /account/tokens": "acts on the user's own API tokens",
    "POST /account/tokens/{token_id}/revoke": "acts on the user's own API tokens",
}
REFUSED = (401, 403)
# The app's description of itself (the OpenAPI document and its viewer): the same text for every
# caller and every world, naming every field of every API, the supply manager's "placebo_lots"
# included. Compared like every answer, but not read for words.
SELF_DESCRIPTION = ("/api/v1/openapi.json", "/api/docs")


@dataclasses.dataclass
class Bench:
    db: Database
    app: object
    world: object
    clients: dict
    touched: list
    answers: dict = dataclasses.field(default_factory=dict)  # (user, Call) -> Answer
    refused: set = dataclasses.field(default_factory=set)  # (user, route, variant) refused in the first situation
    queries: dict = dataclasses.field(default_factory=dict)  # (user, route, variant) -> the query strings it reads
    words: dict = dataclasses.field(default_factory=dict)  # (answer, lot) -> what it reveals
    first: dict = dataclasses.field(default_factory=dict)  # (user, route, variant) -> the situation first asked
    _fillable: dict = dataclasses.field(default_factory=dict)
    _fixed: tuple | None = None

    def sides(self, pair: Pair) -> tuple[Side, Side]:
        return (Side(pair.active, pair.asc_lot, qrpayload.make_payload(pair.active, SECRET),
                     *(pair.active_participant or (None, None))),
                Side(pair.placebo, pair.placebo_lot, qrpayload.make_payload(pair.placebo, SECRET),
                     *(pair.placebo_participant or (None, None))))

    def fixed_texts(self, session) -> tuple:
        """The texts that name both products (see revealing_words), read once."""
        if self._fixed is None:
            specs = [name for spec in session.scalars(select(SpecVersion))
                     for name in (f"{spec.product_code} v{spec.version}",
                                  quote(f"{spec.product_code} v{spec.version}", safe=""))]
            arms = [([_normal(arm.name) for arm in studies.definition(study).arms],
                     [arm.code for arm in studies.definition(study).arms]) for study in studies.all_studies(session)]
            # the products' specifications, listed together, are named as the protocol's arms are
            specs_now = list(session.scalars(select(SpecVersion)))
            arms.append((sorted({_normal(spec.name) for spec in specs_now}),
                         sorted({s.product_code for s in specs_now})))
            self._fixed = (allowed_phrases(), specs, arms)
        return self._fixed

    def fillable(self, path: str) -> bool:
        """Whether some situation of the world fills every parameter of this path."""
        if path not in self._fillable:
            self._fillable[path] = any(not path_variants(path, pair)[1] for pair in self.world.pairs)
        return self._fillable[path]

    def ask(self, user: str, call: Call, *, fresh: bool = False) -> Answer:
        key = (user, call)
        if fresh or key not in self.answers:
            client = self.clients[user]
            before = len(self.touched)
            if call.method == "GET":
                response = client.get(call.url, follow_redirects=False)
            elif call.json is not None:
                response = client.request(call.method, call.url, content=call.json,
                                          headers={"content-type": "application/json"}, follow_redirects=False)
            else:
                response = client.request(call.method, call.url,
                                          data={**dict(call.form or ()), "csrf_token": client.csrf()},
                                          follow_redirects=False)
            media = response.headers.get("content-type", "").split(";")[0].strip()
            answer = Answer(call.method, call.url, response.status_code, media, dict(response.headers),
                            response.content)
            if len(self.touched) > before:
                answer.status = -1  # marked: the sealed compartment was reached
            if call.method != "GET":  # it may have changed the world: what was read before is stale
                self.answers = {k: v for k, v in self.answers.items() if k[1].method != "GET"}
                self.words.clear()
            self.answers[key] = answer
        return self.answers[key]

    def routes(self) -> list[tuple[str, object, str]]:
        found = []
        found += [(f"{method} {route.path}", route, method) for route in iter_routes(self.app.routes)
                  for method in sorted(route.methods - {"HEAD"})]
        return found


@pytest.fixture(scope="module")
def bench(worlds):
    """One world for the whole module (three seconds to build), in a migrated database of its own
    (conftest's worlds.scratch): built under a held clock, it cannot start from a saved world."""
    monkeypatch = pytest.MonkeyPatch()
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    clock.install(monkeypatch)
    db = worlds.scratch("blinding")
    world = build_world(db, clock)
    app = create_app(Settings(database_url=db.url, secret_key=SECRET, demo=False), password_hasher=FAST_HASHER,
                     database=db)
    clients = {user: sign_in(app, user) for user in BLINDED_USERS}
    with contextlib.ExitStack() as stack:
        for client in clients.values():
            stack.enter_context(client)  # one event loop for all of a client's requests: faster
        # From here on only blinded people act; the compartment must not be reached at all.
        touched = stack.enter_context(sealed_tripwire(db))
        yield Bench(db, app, world, clients, touched)
    monkeypatch.undo()
    db.dispose()


# --- what is asked ---------------------------------------------------------------------------------


def probes(bench: Bench, user: str, pair: Pair, *, posts: bool) -> tuple[list[Probe], dict[str, list[str]]]:
    """Every request this user can make about the pair: GETs (posts=False) or the rest."""
    active, placebo = bench.sides(pair)
    found: list[Probe] = []
    unfilled: dict[str, list[str]] = {}

    def probe(key: str, method: str, path: str, fills: dict, query: dict | None = None, body: dict | None = None):
        calls = []
        for side in (active, placebo):
            url = build_url(path, fills, query or {}, pair, side)
            if body is None:
                calls.append(Call(method, url))
            else:
                filled = {k: v.replace("{kit}", side.kit).replace("{payload}", side.payload) for k, v in body.items()}
                calls.append(Call(method, url, json=json.dumps(filled)) if is_api(path)
                             else Call(method, url, form=tuple(sorted(filled.items()))))
        return Probe(key, *calls)

    for key, route, method in bench.routes():
        variants, missing = path_variants(route.path, pair)
        if missing:
            if bench.fillable(route.path):
                continue  # another situation of the world fills it
            unfilled[key] = missing
        sided = any(re.search(r"\{(kit|lot|participant|randno)\}", v) for fills in variants for v in fills.values())
        if method == "GET":
            if posts:
                continue
            for n, fills in enumerate(variants):
                seen = (user, key, n)
                first = bench.first.setdefault(seen, pair.situation) == pair.situation
                if not first and seen in bench.refused:
                    continue
                bare = probe(key, method, route.path, fills)
                found.append(bare)
                answers = [bench.ask(user, call) for call in (bare.active, bare.placebo)]
                if all(answer.status in REFUSED for answer in answers):
                    # Refused to this role. A refusal is checked in the first situation; it comes
                    # from the role alone, so the other situations are not asked again.
                    bench.refused.add(seen)
                    continue
                if seen not in bench.queries:
                    # Which query strings does this route read? Those whose answer differs from
                    # the bare one, for the first pair's active kit; only they are asked again.
                    # One request with all their keys first: most routes read none of them.
                    everything = {k: v for query in QUERIES for k, v in query.items()}
                    reads = _differs(bench.ask(user, probe(key, method, route.path, fills, everything).active),
                                     answers[0])
                    bench.queries[seen] = [
                        query for query in QUERIES[1:]
                        if reads and _differs(bench.ask(user, probe(key, method, route.path, fills, query).active),
                                              answers[0])]
                found += [probe(key, method, route.path, fills, query) for query in bench.queries[seen]]
                if QUERIES[1] in bench.queries[seen] or QUERIES[5] in bench.queries[seen]:
                    found[found.index(bare)] = dataclasses.replace(bare, rows=False)
        elif posts and key not in NOT_ASKED:
            if route.path.endswith("/scan"):
                bodies = [{"code": code, "station": "blinding test"} for code in ("{kit}", "{payload}")]
            elif sided:
                bodies = [{}]
            elif fields := kit_fields_taken(route):
                bodies = [dict.fromkeys(fields, "{kit}")]
            elif bench.first.setdefault((user, key), pair.situation) == pair.situation:
                # about no kit: asked once, empty, for what its refusal or error page shows
                bodies = [{}]
            else:
                continue
            for n, fills in enumerate(variants):
                for m, body in enumerate(bodies):
                    seen = (user, key, n, m)
                    first = bench.first.setdefault(seen, pair.situation) == pair.situation
                    if not first and seen in bench.refused:
                        continue
                    asked = probe(key, method, route.path, fills, body=body)
                    found.append(asked)
                    if first and all(bench.ask(user, call).status in REFUSED for call in (asked.active, asked.placebo)):
                        bench.refused.add(seen)
    return found, unfilled


def _differs(answer: Answer, bare: Answer) -> bool:
    """Whether a route read the query string: its answer differs from the bare one by more than
    the query echoed back (a CSV link, a "back" link)."""
    query = answer.url.partition("?")[2]
    echoes = [query, query.replace("&", "&amp;"),
              *(v for pair in parse_qsl(query) for v in (pair[1], quote(pair[1], safe="")))]

    def seen(a: Answer) -> tuple:
        body = a.text if a.media_type.startswith("text/") or a.media_type.endswith("json") else a.body.hex()
        if a.media_type == "text/html":
            body = LOGIN_TOKEN.sub("", body)
        for echo in sorted(filter(None, echoes), key=len, reverse=True):
            body = body.replace(echo, "")
        return a.status, a.headers.get("location"), body.replace("?\"", "\"")
    return seen(answer) != seen(bare)


# --- what must not be said --------------------------------------------------------------------------


def _normal(text: str) -> str:
    return " ".join(html.unescape(text).replace("\u00a0", " ").replace("\u202f", " ").split())


def allowed_phrases() -> list[str]:
    """Fixed texts that name the placebo beside the active product, the same on every kit's
    page and label: the label's product particulars, the quarantine policies' descriptions."""
    phrases = []
    for key in ("product", "product_short"):
        phrases += [_normal(text.replace("{cells}", "\x00")) for text in label_particulars.TEXTS[key]]
    phrases += [_normal(text) for text in studies.QUARANTINE_POLICIES.values()]
    return phrases


FORBIDDEN = re.compile(r"placebo|saline|\bNaCl\b|natriumklorid|sodium chloride|CryoStor|\bCS10\b|\bsalt?vand\b",
                       re.IGNORECASE)


def revealing_words(bench: Bench, answer: Answer, own_lot: str | None, session) -> list[str]:
    """What in a blinded answer names contents: a manufacturing lot (other than one the request
    itself named), or an arm word outside the fixed texts that name both products."""
    key = (id(answer), own_lot)
    if key not in bench.words:
        bench.words[key] = (answer, _revealing_words(bench, answer, own_lot, session))
    return bench.words[key][1]


def _revealing_words(bench: Bench, answer: Answer, own_lot: str | None, session) -> list[str]:
    text = readable(answer)
    if "^XA" in text:  # ZPL: the text of its fields, as printed
        text = " ".join(_zpl_hex(field) for field in re.findall(r"\^FD(.*?)\^FS", text, re.DOTALL))
    text = _normal(text)
    if own_lot:
        text = text.replace(own_lot, "⟨LOT⟩")
    found = [f"names manufacturing lot {lot}" for lot in bench.world.lots if lot in text]
    if answer.media_type == "application/json":
        try:
            data = json.loads(answer.body)
        except ValueError:
            data = None
        if _has_key(data, "arm"):
            found.append("has a JSON field 'arm'")
    if not FORBIDDEN.search(text):
        return found
    phrases, specs, study_arms = bench.fixed_texts(session)
    for phrase in phrases:
        if "\x00" in phrase:  # the product text with a number of cells in it
            head, tail = phrase.split("\x00")
            text = re.sub(re.escape(head) + r".{1,20}?" + re.escape(tail), "⟨PRODUCT TEXT⟩", text)
        else:
            text = text.replace(phrase, "⟨FIXED TEXT⟩")
    # Specifications are named by product code and version ("specification saline-placebo v1")
    # in the audit trail that monitors and admins read: product knowledge, tied to no kit.
    for name in specs:
        text = text.replace(name, "⟨SPECIFICATION⟩")
    for names, codes in study_arms:
        if all(name in text for name in names):  # the protocol's arms, listed together
            for name in names:
                text = text.replace(name, "⟨ARM NAME⟩")
            # and their codes beside their names ("code": "placebo", "name": …)
            if codes:
                either = "|".join(map(re.escape, codes))
                text = re.sub(rf"\b({either})\b(?=.{{0,40}}⟨ARM NAME⟩)", "⟨ARM CODE⟩", text)
                text = re.sub(rf"(⟨ARM NAME⟩.{{0,40}}?)\b({either})\b", r"\1⟨ARM CODE⟩", text)
    found += [f"says {match.group(0)!r}: …{text[max(0, match.start() - 80):match.end() + 80]}…"
              for match in FORBIDDEN.finditer(text)]
    return found


def _zpl_hex(text: str) -> str:
    """A ZPL field as printed: ^FH hex escapes (_5E) decoded."""
    return re.sub(r"_([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _has_key(data, key: str) -> bool:
    if isinstance(data, dict):
        return key in data or any(_has_key(v, key) for v in data.values())
    if isinstance(data, list):
        return any(_has_key(v, key) for v in data)
    return False


# --- the comparison -----------------------------------------------------------------------------------


def compare(bench: Bench, user: str, pair: Pair, probe: Probe, *, fresh: bool = False) -> list[str]:
    """What differs between the active and the placebo kit's answers, or what a blinded answer
    reveals by itself. Empty when the blind holds."""
    active, placebo = bench.sides(pair)
    a = bench.ask(user, probe.active, fresh=fresh)
    b = bench.ask(user, probe.placebo, fresh=fresh)
    where = f"{probe.route} as {user} ({BLINDED_USERS[user]}), {pair.situation}"
    problems = []
    if a.status == -1 or b.status == -1:
        problems.append(f"{where}: the request reached the sealed compartment: {bench.touched[-3:]}")
    pair_kits = active.needles() + placebo.needles()
    names_other = (any(n in readable(a, active, placebo) for n in placebo.needles()),
                   any(n in readable(b, placebo, active) for n in active.needles()))
    if probe.active.method != "GET" and not probe.shared:
        # An action's answer about its own kit. Rows about other kits (the user's recent scans,
        # which this test makes in turn) belong to those kits and are left out.
        others = [kit for kit in bench.world.every_kit if kit not in pair_kits]
        view_a = rest(a, active, placebo, others + placebo.needles())
        view_b = rest(b, placebo, active, others + active.needles())
        if view_a != view_b:
            problems.append(f"{where}\n  {probe.active.describe()}\n  {probe.placebo.describe()}\n"
                            + diff(view_a, view_b))
    elif probe.shared or all(names_other):
        # A page about many kits (asked the same for both, or naming both anyway): the rows naming
        # each kit, and everything else on the page, must be the same.
        rows_a, rows_b = projections(a, active, placebo), projections(b, placebo, active)
        if probe.rows and rows_a != rows_b:
            problems.append(f"{where}\n  {probe.active.describe()}\n  the rows naming each kit differ:\n"
                            + diff("\n".join(rows_a), "\n".join(rows_b)))
        rest_a, rest_b = rest(a, active, placebo, pair_kits), rest(b, placebo, active, pair_kits)
        if not probe.shared and rest_a != rest_b:
            problems.append(f"{where}\n  {probe.active.describe()}\n  {probe.placebo.describe()}\n"
                            "  the page around the kits' rows differs:\n" + diff(rest_a, rest_b))
    elif any(names_other):
        problems.append(f"{where}\n  {probe.active.describe()}\n  {probe.placebo.describe()}\n  only the "
                        f"{'active' if names_other[0] else 'placebo'} kit's answer names the other kit")
    else:
        view_a, view_b = side_view(a, active, placebo), side_view(b, placebo, active)
        if view_a != view_b:
            problems.append(f"{where}\n  {probe.active.describe()}\n  {probe.placebo.describe()}\n"
                            + diff(view_a, view_b))
    with bench.db.read() as session:
        for answer, side in ((a, active), (b, placebo)):
            if answer.url.split("?")[0] in SELF_DESCRIPTION:
                continue
            named = side.lot in answer.url or side.lot in (probe.active.describe() + probe.placebo.describe())
            own_lot = side.lot if named else None
            problems += [f"{where}\n  {answer.method} {answer.url} ({answer.status}) {word}"
                         for word in revealing_words(bench, answer, own_lot, session)]
    return problems


def report(problems: list[str], limit: int = int(os.environ.get("BLINDING_REPORT_LIMIT", "12"))) -> str:
    shown = "\n\n".join(problems[:limit])
    more = f"\n\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} difference(s) an active and a placebo kit should not have:\n\n{shown}{more}"


USERS = list(BLINDED_USERS)


# --- the tests ------------------------------------------------------------------------------------------
# In this order: the actions first (a scan is recorded, so pages read afterwards show it, and
# nothing read before has to be read again), then every page.


@pytest.mark.parametrize("user", USERS)
def test_scans_of_an_active_and_a_placebo_kit_read_the_same(bench, user):
    problems, asked = [], 0
    for pair in bench.world.pairs:
        for probe in probes(bench, user, pair, posts=True)[0]:
            if probe.route.endswith("/scan"):
                asked += 1
                problems += compare(bench, user, pair, probe)
    assert asked, "no scan route found"
    assert not problems, report(problems)


@pytest.mark.parametrize("user", USERS)
def test_refused_actions_on_an_active_and_a_placebo_kit_read_the_same(bench, user):
    problems = []
    for pair in bench.world.pairs:
        for probe in probes(bench, user, pair, posts=True)[0]:
            if not probe.route.endswith("/scan"):
                problems += compare(bench, user, pair, probe)
    problems += refused_moves(bench, user)
    with bench.db.read() as session:
        from cellbench import users as users_module
        assert not users_module.by_username(session, user).locked, "the test locked the account: its answers are void"
    assert not problems, report(problems)


def refused_moves(bench: Bench, user: str) -> list[str]:
    """Every move of the kit state machine, tried on each kit by the blinded user at the service
    level and rolled back: the refusal (or the outcome) reads the same for both kits."""
    from sqlmodel import Session

    actor = actor_of(bench.db, user)
    problems = []
    for pair in bench.world.pairs:
        active, placebo = bench.sides(pair)
        for name in kits.MOVES:
            outcome = {}
            for side, other in ((active, placebo), (placebo, active)):
                with Session(bench.db.engine) as session:
                    kit = session.scalars(select(Kit).where(Kit.number == side.kit)).one()
                    try:
                        kits.move(session, actor, kit, name, reason="blinding test")
                        result = f"moved to {kits.view(session, kit)}"
                    except DomainError as refused:
                        result = f"{type(refused).__name__} {refused.status} {refused.field}: {refused.message}"
                    finally:
                        session.rollback()
                outcome[side.kit] = result.replace(side.kit, "⟨KIT⟩").replace(other.kit, "⟨OTHER-KIT⟩")
            if outcome[active.kit] != outcome[placebo.kit]:
                problems.append(f"kits.move(…, {name!r}) as {user}, {pair.situation}:\n"
                                f"  active:  {outcome[active.kit]}\n  placebo: {outcome[placebo.kit]}")
    return problems


def test_every_route_is_asked_about_both_kits_or_known_to_be_unfillable(bench):
    """A page or scan route whose path the world cannot fill is asked with a stand-in; it must then be
    refused to every blinded role, or be listed in UNFILLABLE (so a new one fails until someone
    decides)."""
    unfillable = {}
    for user in USERS:
        for pair in bench.world.pairs:
            for posts in (False, True):
                found, unfilled = probes(bench, user, pair, posts=posts)
                for key, names in unfilled.items():
                    if not (key.startswith("GET ") or key.endswith("/scan")):
                        continue  # other actions are asked for their refusals only
                    asked = [p for p in found if p.route == key]
                    if any(bench.ask(user, p.active).status not in REFUSED for p in asked):
                        unfillable[key] = names
    assert set(unfillable) == set(UNFILLABLE), (
        "Routes with path parameters the test world cannot fill, answered (not refused) to a blinded role: "
        f"{json.dumps(unfillable, indent=1)}; expected {sorted(UNFILLABLE)}")


@pytest.mark.parametrize("user", USERS)
def test_every_page_answer_and_export_reads_the_same_for_an_active_and_a_placebo_kit(bench, user):
    problems, asked = [], 0
    for pair in bench.world.pairs:
        for probe in probes(bench, user, pair, posts=False)[0]:
            asked += 1
            problems += compare(bench, user, pair, probe)
    assert asked > 50
    assert not problems, report(problems)


def test_labels_of_an_active_and_a_placebo_kit_differ_only_in_kit_number_and_qr(bench):
    """Outer and vial labels, as single-label PDF pages, A4 sheets and ZPL, and the QR payload,
    made as label runs make them (labelling.kit_labels, from the kit as a blinded person sees it).

    Rendering a PDF costs a third of a second, so every pair's labels go into one single-label PDF
    (one page each) and one ZPL file per label kind, compared label by label; the A4 sheet, drawn
    by the same code at other offsets, is rendered per kit for the first pair."""
    from pypdf import PdfReader

    from cellbench.labels import printing as labelling

    problems = []
    with bench.db.read() as session:
        sides = [side for pair in bench.world.pairs for side in bench.sides(pair)]
        rows = {k.number: k for k in session.scalars(select(Kit).where(Kit.number.in_([s.kit for s in sides])))}
        made = labelling.kit_labels(session, [rows[side.kit] for side in sides], SECRET)
        per_label: list[dict[str, str]] = [{"payload": label.qr_payload} for label in made]
        for kind in labels.LabelKind:
            pdf = labels.render_single_label_pdf(made, kind)
            pages = PdfReader(io.BytesIO(pdf)).pages
            assert len(pages) == len(made)
            for n, page in enumerate(pages):
                per_label[n][f"{kind.value} label page"] = f"{page.mediabox}\n{page.extract_text()}"
            for n, label in enumerate(made):
                per_label[n][f"{kind.value} label ZPL"] = labels.render_zpl([label], kind)
            for n in (0, 1):
                per_label[n][f"{kind.value} A4 sheet"] = pdf_text(labels.render_label_sheet_pdf([made[n]], kind))
        for n, pair in enumerate(bench.world.pairs):
            active, placebo = sides[2 * n], sides[2 * n + 1]
            assert len(made[2 * n].qr_payload) == len(made[2 * n + 1].qr_payload) == qrpayload.PAYLOAD_LENGTH
            for name in per_label[2 * n]:
                texts = []
                for m, (own, other) in ((2 * n, (active, placebo)), (2 * n + 1, (placebo, active))):
                    text = per_label[m][name]
                    answer = Answer("label", name, 200, "text/plain", {}, text.encode())
                    problems += [f"{name} of {own.kit} ({pair.situation}): {word}"
                                 for word in revealing_words(bench, answer, None, session)]
                    texts.append(replace_all(text, own.replacements("") + other.replacements("OTHER-")))
                if texts[0] != texts[1]:
                    problems.append(f"{name}, {pair.situation}:\n" + diff(*texts))
    assert not problems, report(problems)


def test_the_comparison_reports_a_kit_view_that_leaks_its_arm(bench, monkeypatch):
    """The test can fail: a kits.view that puts the arm into one kit's location is caught on the
    kit's page, its JSON, and the kit list's row."""
    pair = bench.world.pairs[0]
    arms = bench.world.every_kit
    real_view, real_views = kits.view, kits.views

    def leaky_views(session, rows):  # a page of kits is viewed in one go (kits.views), one kit by kits.view
        return [dataclasses.replace(view, location=view.location + " ") if arms[view.number] == "active" else view
                for view in real_views(session, rows)]  # one space: no word to spot

    monkeypatch.setattr(kits, "views", leaky_views)
    monkeypatch.setattr(kits, "view", lambda session, kit: leaky_views(session, [kit])[0])
    active, placebo = bench.sides(pair)
    caught = {}
    for route in ("/kits/{number}", "/api/v1/kits/{number}", "/kits"):
        if route == "/kits":
            probe = Probe(f"GET {route}", Call("GET", route), Call("GET", route))
        else:
            probe = Probe(f"GET {route}", Call("GET", route.replace("{number}", pair.active)),
                          Call("GET", route.replace("{number}", pair.placebo)))
        caught[route] = compare(bench, "frida", pair, probe, fresh=True)
    monkeypatch.setattr(kits, "view", real_view)
    monkeypatch.setattr(kits, "views", real_views)
    assert all(caught.values()), {route: bool(found) for route, found in caught.items()}
    assert "the rows naming each kit differ" in caught["/kits"][0]
    assert "-      <tr><th>Location</th><td>Cell bench </td></tr>" in caught["/kits/{number}"][0] or \
        "Cell bench " in caught["/kits/{number}"][0]

    # and a word that names the arm is caught by the negative check as well
    monkeypatch.setattr(kits, "view", lambda session, kit: dataclasses.replace(
        real_view(session, kit), location="saline store" if arms[kit.number] == "placebo" else "cell store"))
    found = compare(bench, "ida", pair, Probe("GET /kits/{number}", Call("GET", f"/kits/{active.kit}"),
                                              Call("GET", f"/kits/{placebo.kit}")), fresh=True)
    assert any("says 'saline'" in problem for problem in found), found


def test_a_blinded_page_that_reaches_the_sealed_compartment_is_caught(bench, monkeypatch):
    """The wires are live: a kit page that asked the compartment for the kit's arm fails."""
    from cellbench import sealed

    pair = bench.world.pairs[0]
    real_view = kits.view

    def curious_view(session, kit):
        sealed.arms_of_kits(session, actor_of(bench.db, "sara"), [kit.id], why="curious")
        return real_view(session, kit)

    monkeypatch.setattr(kits, "view", curious_view)
    with pytest.raises(Exception) as caught:
        bench.ask("frida", Call("GET", f"/kits/{pair.active}"), fresh=True)
    assert "sealed" in str(caught.value)
    assert bench.touched and "arms_of_kits" in bench.touched[-1]
    bench.touched.clear()
