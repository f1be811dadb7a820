"""Keyset pagination of the remaining lists (issue 18): donors, material lots, equipment, users,
notifications, unblindings, kit quarantines, label runs, the release list, a sealed list's entries
and a packaging run's kits. Each, walked two rows a page, shows every row that was there exactly
once and in its order while rows are added before and after the cursor; its pages keep their
filters; and a cursor it did not make is refused with one 400 naming `after`, changing nothing."""
from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from cellbench import donors, materials, notifications, pagination, release, sealed, unblinding, users
from cellbench.clock import utcnow
from cellbench.errors import InvalidInput
from cellbench.labels.runs import run_page
from cellbench.models import (
    AuditEvent,
    KitQuarantine,
    LabelRun,
    Lot,
    LotState,
    Notification,
    PackagingRun,
    SealedList,
    Study,
    Unblinding,
)
from cellbench.supply import lists
from cellbench.supply.views import quarantines_page, run_kits

from .conftest import PASSWORD, SECRET, actor_of
from .trialworld import enrol

NEXT = re.compile(r'href="([^"]+)" rel="next"')


def walk(db, read: Callable[[object, pagination.Ask], pagination.Page], key: Callable[[object], object],
         between: Callable[[int], None] | None = None, logged: bool = False) -> list:
    """Every row's key, two rows a page, each page read in its own transaction (a write one when the
    read is `logged`, as the sealed compartment's are); `between(n)` runs (and commits) after the
    n-th page, as another user's work would."""
    seen, after = [], None
    for n in range(200):  # bounded: a cursor that never ends the list fails, not hangs
        with (db.write if logged else db.read)() as s:
            found = read(s, pagination.Ask(after, SECRET, 2))
            seen += [key(row) for row in found.rows]
        if (after := found.next) is None:
            return seen
        if between:
            between(n)
    raise AssertionError("the list never ended")


def whole(db, read: Callable[[object, pagination.Ask], pagination.Page], key: Callable[[object], object]) -> list:
    with db.read() as s:
        return [key(row) for row in read(s, pagination.Ask(None, SECRET, pagination.MAX_PAGE_SIZE)).rows]


def assert_each_once_in_order(walked: list, before: list, added_after: list = ()) -> None:
    assert len(walked) == len(set(walked)), "no row is shown twice"
    assert [k for k in walked if k in set(before)] == before, "every row that was there, once, in its order"
    assert set(added_after) <= set(walked), "a row added after the cursor comes on a later page"


# --- the lists, each with rows to add while it is walked ---------------------------------------------


def test_donors_newest_first_are_walked_once_while_donors_register(db, people):
    olivia = actor_of(db, "olivia")

    def register() -> None:
        with db.write() as s:
            donors.register_donor(s, olivia, donors.next_donor_code(s), date(2026, 1, 5), "consent form v3")

    for _ in range(5):
        register()
    read = lambda s, ask: donors.donor_page(s, ask)  # noqa: E731
    before = whole(db, read, lambda r: r.donor.code)
    walked = walk(db, read, lambda r: r.donor.code, between=lambda n: register())
    assert_each_once_in_order(walked, before)
    assert walked == before, "a donor registered during the walk is newer: it is on the first page, not a later one"
    with db.read() as s, pytest.raises(InvalidInput) as bad:
        donors.donor_page(s, pagination.Ask(None, SECRET), "maybe")
    assert bad.value.field == "eligibility"


def test_material_lots_by_expiry_are_walked_once_while_lots_arrive_before_and_after_the_cursor(db, people):
    olivia = actor_of(db, "olivia")
    received = iter(range(1000))

    def receive(expiry: date) -> str:
        lot = f"L{next(received):03d}"
        with db.write() as s:
            materials.receive_material(s, olivia, material_code="dpbs", name="DPBS", supplier="Gibco",
                                       supplier_lot=lot, expiry=expiry)
        return lot

    for days in (40, 10, 30, 10, 20, 50):  # two lots share an expiry: the key goes on to code and lot
        receive(date(2031, 1, 1) + timedelta(days=days))
    read = lambda s, ask: materials.material_lot_page(s, ask, "quarantine")  # noqa: E731
    key = lambda lot: (lot.expiry, lot.supplier_lot)  # noqa: E731
    before, added_after = whole(db, read, key), []

    def arrive(n: int) -> None:
        receive(date(2030, 1, 1) + timedelta(days=n))  # before the cursor: not shown on this walk
        later = date(2032, 1, 1) + timedelta(days=n)
        added_after.append((later, receive(later)))

    walked = walk(db, read, key, between=arrive)
    assert_each_once_in_order(walked, before, added_after)
    assert walked == sorted(walked)


def test_equipment_by_calibration_due_is_walked_once_while_equipment_is_registered(db, people):
    olivia = actor_of(db, "olivia")
    counter = iter(range(1000))

    def register(due: date) -> str:
        asset = f"CF-{next(counter):03d}"
        with db.write() as s:
            materials.register_equipment(s, olivia, asset_id=asset, equipment_code="centrifuge", name="Centrifuge",
                                         calibration_due=due)
        return asset

    for days in (5, 1, 3, 1, 4):
        register(date(2031, 6, 1) + timedelta(days=days))
    read = lambda s, ask: materials.equipment_page(s, ask)  # noqa: E731
    key = lambda e: (e.calibration_due, e.asset_id)  # noqa: E731
    before, added_after = whole(db, read, key), []

    def add(n: int) -> None:
        register(date(2031, 1, 1))
        later = date(2033, 1, 1) + timedelta(days=n)
        added_after.append((later, register(later)))

    walked = walk(db, read, key, between=add)
    assert_each_once_in_order(walked, before, added_after)
    assert walked == sorted(walked)


def test_users_by_username_are_walked_once_while_users_are_created(db, people):
    made = iter(range(1000))

    def create(prefix: str) -> str:
        name = f"{prefix}{next(made):03d}"
        with db.write() as s:
            users.create_user(s, users.cli_actor(), name, "Paged User", PASSWORD, ["qa"])
        return name

    before, added_after = whole(db, users.user_page, lambda row: row[0].username), []

    def add(n: int) -> None:
        create("aa")
        added_after.append(create("zz"))

    walked = walk(db, users.user_page, lambda row: row[0].username, between=add)
    assert_each_once_in_order(walked, before, added_after)
    with db.read() as s:
        page = users.user_page(s, pagination.Ask(None, SECRET, 3))
    assert all(isinstance(roles, frozenset) and roles for _user, roles in page.rows), "each user with its roles"


def _message(db, state: str = "pending") -> int:
    with db.write() as s:
        note = Notification(kind="test", to_address="sponsor@example.org", subject="Paged", body="A message.",
                            created_at=utcnow(), state=state)
        s.add(note)
        s.flush()
        return note.id


def test_notifications_newest_first_are_walked_once_while_messages_are_queued_and_keep_their_state(db, people):
    for state in ("pending", "sent", "pending", "pending", "sent", "pending"):
        _message(db, state)
    sara = actor_of(db, "sara")
    read = lambda s, ask: notifications.message_page(s, sara, ask, state="pending")  # noqa: E731
    before = whole(db, read, lambda n: n.id)
    walked = walk(db, read, lambda n: n.id, between=lambda n: _message(db))
    assert_each_once_in_order(walked, before)
    assert walked == before and len(before) == 4, "only pending messages, newest first"


def test_unblinding_records_newest_first_are_walked_once_while_participants_are_unblinded(db, trial_world):
    participant = enrol(db, "P-901", "S-901")
    with db.read() as s:
        ida = users.by_username(s, "ida")
    start = utcnow()

    def record(at) -> None:
        with db.write() as s:
            s.add(Unblinding(participant_id=participant, reason_code="sae", reason="paged", by_user=ida.id, at=at))

    for minutes in (3, 1, 3, 2, 5):  # two at the same moment: the key goes on to the id
        record(start - timedelta(minutes=minutes))
    read = lambda s, ask: unblinding.record_page(s, ask)  # noqa: E731
    before = whole(db, read, lambda r: r.id)
    walked = walk(db, read, lambda r: r.id, between=lambda n: record(utcnow()))
    assert_each_once_in_order(walked, before)
    assert walked == before


def _study_id(db) -> int:
    with db.read() as s:
        return s.scalars(select(Study.id)).first()


@pytest.mark.parametrize("which", ["quarantines", "label runs"])
def test_open_first_lists_are_walked_once_while_records_are_opened_and_closed_ones_added(db, kit_world, which):
    study_id, sara = _study_id(db), actor_of(db, "sara")
    made = iter(range(1000))

    def add(open_: bool) -> None:
        n = next(made)
        with db.write() as s:
            if which == "quarantines":
                s.add(KitQuarantine(number=f"KQ-P{n:03d}", study_id=study_id, cause="manual", policy="blinded_lot",
                                    reason="paged", state="open" if open_ else "lifted", opened_at=utcnow()))
            else:
                s.add(LabelRun(number=f"LR-P{n:03d}", study_id=study_id, kind="outer", output="zpl", printed=1,
                               created_by=sara.user_id, created_at=utcnow(),
                               reconciled_at=None if open_ else utcnow()))

    for open_ in (True, False, True, False, False, True, False):
        add(open_)
    read = ((lambda s, ask: quarantines_page(s, ask)) if which == "quarantines"
            else (lambda s, ask: run_page(s, ask)))
    is_open = (lambda r: r.state == "open") if which == "quarantines" else (lambda r: r.reconciled_at is None)
    before = whole(db, read, lambda r: r.number)
    walked = walk(db, read, lambda r: r.number, between=lambda n: (add(True), add(False)))
    assert_each_once_in_order(walked, before)
    with db.read() as s:
        rows = read(s, pagination.Ask(None, SECRET, pagination.MAX_PAGE_SIZE)).rows
    flags = [is_open(r) for r in rows]
    assert flags == sorted(flags, reverse=True), "open ones first"
    assert [r.id for r in rows if is_open(r)] == sorted((r.id for r in rows if is_open(r)), reverse=True)


def test_the_release_list_by_lot_number_is_walked_once_while_lots_come_to_release(db, kit_world):
    with db.read() as s:
        model = s.scalars(select(Lot).where(Lot.number == kit_world.asc_lot)).one()
        template = {c.name: getattr(model, c.name) for c in Lot.__table__.columns if c.name not in ("id", "number")}
    made = iter(range(1000))

    def add(prefix: str, state: LotState = LotState.released) -> str:
        number = f"{prefix}{next(made):03d}"
        with db.write() as s:
            s.add(Lot(**{**template, "number": number, "state": state.value}))
        return number

    for _ in range(3):
        add("M")
    add("N", LotState.in_process)  # not a state the list shows
    read = lambda s, ask: release.lot_page_in(s, ask, LotState.released, LotState.qp_certified)  # noqa: E731
    before, added_after = whole(db, read, lambda lot: lot.number), []

    def come(n: int) -> None:
        add("0")
        added_after.append(add("Z"))

    walked = walk(db, read, lambda lot: lot.number, between=come)
    assert_each_once_in_order(walked, before, added_after)
    assert walked == sorted(walked) and not any(n.startswith("N") for n in walked)


def test_a_sealed_lists_entries_and_a_runs_kits_are_walked_whole_in_their_order(db, kit_world):
    sara = actor_of(db, "sara")
    with db.write() as s:  # the compartment's reads are logged: a write transaction
        row = s.scalars(select(SealedList).where(SealedList.kind == "kit")).first()
        entries = sealed.list_lines(s, sara, row, limit=10_000)
        run = s.scalars(select(PackagingRun).where(PackagingRun.number == kit_world.run)).one()

    def read_entries(s, ask):
        return sealed.list_page(s, sara, s.get(SealedList, row.id), ask)

    def read_kits(s, ask):
        return run_kits(s, sara, s.get(PackagingRun, run.id), ask)[0]

    assert walk(db, read_entries, lambda line: line.position, logged=True) == [line.position for line in entries]
    kits = walk(db, read_kits, lambda k: k.kit.number, logged=True)
    assert kits == sorted(kit_world.active + kit_world.placebo), "kit-number order: it says nothing of arms"


# --- filters kept from page to page ------------------------------------------------------------------


@pytest.fixture
def two_a_page(monkeypatch):
    """Every list page two rows a page (web/paging.ask's size)."""
    from cellbench.web import paging
    asked = paging.ask
    monkeypatch.setattr(paging, "ask", lambda request, size=2: asked(request, 2))


def _walk_pages(client, url: str, row: re.Pattern, keep: str) -> list[str]:
    shown = []
    for _page in range(100):
        page = client.get(url)
        assert page.status_code == 200, page.text
        shown += row.findall(page.text)
        found = NEXT.search(page.text)
        if not found:
            return shown
        url = html.unescape(found.group(1))
        assert keep in url, "the next page keeps the list's filter"
    raise AssertionError("the list never ended")


def test_the_material_and_equipment_pages_keep_their_filters_from_page_to_page(db, people, as_, two_a_page):
    olivia, anna = actor_of(db, "olivia"), actor_of(db, "anna")
    with db.write() as s:
        for n in range(5):
            materials.receive_material(s, olivia, material_code="dpbs", name="DPBS", supplier="Gibco",
                                       supplier_lot=f"F{n}", expiry=date(2031, 1, 1) + timedelta(days=n))
            materials.register_equipment(s, olivia, asset_id=f"EQ-{n}", equipment_code="centrifuge",
                                         name="Centrifuge", calibration_due=date(2026, 1, 1) + timedelta(days=n * 400))
        materials.release_material(s, anna, materials.material_lot(s, "dpbs", "F2"), "CoA conforms")
    lots = _walk_pages(as_("anna"), "/materials?status=quarantine", re.compile(r"/materials/dpbs/(F\d)\""),
                       "status=quarantine")
    assert lots == ["F0", "F1", "F3", "F4"]
    with db.read() as s:
        due = [e.asset_id for e in materials.equipment_list(s, due_by=utcnow().date() + timedelta(days=800))]
    shown = _walk_pages(as_("olivia"), "/equipment?due=800", re.compile(r"/equipment/(EQ-\d)\""), "due=800")
    assert shown == due and 0 < len(due) < 5


def test_the_donor_and_notification_pages_keep_their_filters_from_page_to_page(db, people, as_, two_a_page):
    for state in ("pending", "sent") * 3:
        _message(db, state)
    with db.read() as s:
        pending = [n.id for n in notifications.message_page(s, actor_of(db, "sara"), pagination.Ask(None, SECRET, 50),
                                                            state="pending").rows]
    page_ids = _walk_pages(as_("sara"), "/notifications?state=pending",
                           re.compile(r'action="/notifications/(\d+)/sent"'), "state=pending")
    assert [int(i) for i in page_ids] == pending
    olivia = actor_of(db, "olivia")
    with db.write() as s:
        for _ in range(5):
            donors.register_donor(s, olivia, donors.next_donor_code(s), date(2026, 1, 5), "consent form v3")
    codes = _walk_pages(as_("anna"), "/donors", re.compile(r'<a href="/donors/(D-\d+)">'), "")
    assert len(codes) == len(set(codes)) == 5


# --- refused cursors ---------------------------------------------------------------------------------


def _paths(db, kit_world) -> list[tuple[str, str]]:
    with db.read() as s:
        row = s.scalars(select(SealedList).where(SealedList.kind == "kit")).first()
        study = s.get(Study, row.study_id)
    return [("anna", "/donors"), ("anna", "/api/v1/donors"), ("anna", "/materials"),
            ("anna", "/api/v1/material-lots"), ("olivia", "/equipment"), ("olivia", "/api/v1/equipment"),
            ("adam", "/admin/users"), ("adam", "/api/v1/users"), ("sara", "/notifications"),
            ("sara", "/api/v1/outbox"), ("mette", "/unblinding"), ("mette", "/api/v1/unblindings"),
            ("anna", "/supply/quarantines"), ("anna", "/api/v1/supply/quarantines"), ("sara", "/labels"),
            ("sara", "/api/v1/label-runs"), ("anna", "/release"),
            ("sara", f"/supply/studies/{study.code}/lists/kit/{row.version}"),
            ("sara", f"/api/v1/supply/studies/{study.code}/lists/kit/{row.version}"),
            ("sara", f"/supply/packaging/{kit_world.run}"), ("sara", f"/api/v1/supply/packaging-runs/{kit_world.run}"),
            ("sara", "/supply/packaging"), ("sara", "/supply/blinded-lots"), ("sara", "/supply/resupply")]


def test_every_newly_paged_list_refuses_a_cursor_it_did_not_make_naming_after_and_changing_nothing(db, kit_world,
                                                                                                  as_):
    another_lists = pagination.encode(pagination.Order("kits", (Lot.number,)), ("A",), SECRET)
    paths = _paths(db, kit_world)
    for who, path in paths:
        assert as_(who).get(path).status_code == 200, path
    with db.read() as s:
        events = s.scalar(select(func.count()).select_from(AuditEvent))
    for who, path in paths:
        for cursor in ("3", "x" * 500, another_lists):
            answer = as_(who).get(path, params={"after": cursor})
            assert answer.status_code == 400, (path, cursor)
            if path.startswith("/api/"):
                assert answer.json()["field"] == "after", path
            else:
                assert "page link is not valid" in answer.text, path
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == events, "not even a logged read is kept"


def test_a_sealed_lists_cursor_is_bound_to_that_list(db, kit_world):
    sara = actor_of(db, "sara")
    with db.write() as s:
        first = s.scalars(select(SealedList).where(SealedList.kind == "kit")).first()
        other = lists.generate(s, sara, s.get(Study, first.study_id), "randomisation", 4, seed="other", block_sizes="4")
        cursor = sealed.list_page(s, sara, first, pagination.Ask(None, SECRET, 1)).next
        assert cursor and sealed.list_page(s, sara, other, pagination.Ask(None, SECRET, 1)).next
        with pytest.raises(pagination.BadCursor) as refused:
            sealed.list_page(s, sara, other, pagination.Ask(cursor, SECRET, 1))
    assert refused.value.field == "after"


def test_the_cursors_of_the_new_lists_are_padded_to_one_length():
    orders = [donors.registry.DONOR_ORDER, materials.MATERIAL_ORDER, materials.EQUIPMENT_ORDER, users.rules.USER_ORDER,
              unblinding.RECORD_ORDER]
    keys = [(1,), (date(2031, 1, 1), "dpbs", "L/1"), (date(2031, 1, 1), "CF-1"), ("carl",), (utcnow(), 10**12)]
    lengths = {len(pagination.encode(order, key, SECRET)) for order, key in zip(orders, keys, strict=True)}
    assert lengths == {len(pagination.encode(orders[0], (10**12,), SECRET))}
