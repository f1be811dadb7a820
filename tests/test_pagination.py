"""Keyset pagination: a list walked page by page shows every row exactly once even while rows are
inserted before and after the cursor, its filters are kept from page to page, and a cursor that
cellbench did not make for that list is refused with a 400 naming `after`, changing nothing."""
from __future__ import annotations

import base64
import html
import re

import pytest
from sqlalchemy import func, select

from cellbench import audit, deviations, pagination, users
from cellbench.clock import utcnow
from cellbench.identifiers import new_kit_numbers
from cellbench.models import AuditEvent, Kit

from .conftest import SECRET, actor_of

NEXT = re.compile(r'href="([^"]+)" rel="next"')
KIT_LINK = re.compile(r'<a href="/kits/([A-Z0-9-]+)">')


def _add_kits(db, numbers: list[str], state: str = "released") -> None:
    with db.write() as s:
        like = s.scalars(select(Kit)).first()
        for number in numbers:
            s.add(Kit(number=number, study_id=like.study_id, blinded_lot_id=like.blinded_lot_id, state=state,
                      created_at=utcnow()))


def _numbers_around(db, mark: str, count: int = 400) -> tuple[str, str]:
    """A new kit number sorting before `mark` and one after it."""
    with db.read() as s:
        taken = set(s.scalars(select(Kit.number)))
    fresh = new_kit_numbers(count, taken)
    return next(n for n in fresh if n < mark), next(n for n in fresh if n > mark)


def test_walking_the_kit_api_page_by_page_shows_every_kit_once_while_kits_are_added_before_and_after(
        kit_world, as_, db):
    client = as_("sara")
    before_walk = sorted(kit_world.active + kit_world.placebo)
    seen, added_after, cursor = [], [], None
    for _page in range(100):  # bounded: a cursor that never ends the list fails, not hangs
        answer = client.get("/api/v1/kits", params={"limit": 3, **({"after": cursor} if cursor else {})}).json()
        seen += [k["kit_number"] for k in answer["kits"]]
        cursor = answer["next"]
        if cursor is None:
            break
        earlier, later = _numbers_around(db, seen[-1])
        _add_kits(db, [earlier, later])
        added_after.append(later)
    assert len(seen) == len(set(seen)), "no kit is shown twice"
    assert set(before_walk) <= set(seen), "no kit that was there is skipped"
    assert set(added_after) <= set(seen), "a kit added after the cursor comes on a later page"
    assert seen == sorted(seen)


def test_the_kit_list_page_keeps_its_filters_from_page_to_page(kit_world, as_, db, monkeypatch):
    from cellbench.web import kits as kit_pages
    monkeypatch.setattr(kit_pages, "PAGE_SIZE", 3)
    every = sorted(kit_world.active + kit_world.placebo)
    _add_kits(db, new_kit_numbers(5, set(every)), state="planned")  # not released: filtered out
    client = as_("mette")
    url, shown = "/kits?study=NCT07290946&state=released", []
    for _page in range(100):
        if not url:
            break
        page = client.get(url).text
        shown += KIT_LINK.findall(page)
        found = NEXT.search(page)
        url = html.unescape(found.group(1)) if found else None
        if url:
            assert "state=released" in url and "study=NCT07290946" in url
    assert shown == every


def test_the_audit_trail_walked_newest_first_is_not_shifted_by_new_events(kit_world, as_, db):
    client = as_("anna")
    with db.read() as s:
        total = s.scalar(select(func.count()).select_from(AuditEvent))
    seen, cursor = [], None
    for _page in range(100):  # bounded: a cursor that never ends the list fails, not hangs
        answer = client.get("/api/v1/audit", params={"limit": 50, **({"after": cursor} if cursor else {})}).json()
        seen += [e["seq"] for e in answer["events"]]
        cursor = answer["next"]
        if cursor is None:
            break
        with db.write() as s:  # a new event lands at the head of the trail, before the cursor
            users.create_user(s, users.cli_actor(), f"walker{len(seen)}", "Walker", "pagination-pass-123456",
                              ["qa"])
    assert len(seen) == len(set(seen)) == total and seen == sorted(seen, reverse=True)


def test_a_blinded_readers_audit_cursor_does_not_show_sequence_numbers(kit_world, as_):
    answer = as_("mette").get("/api/v1/audit", params={"limit": 1}).json()
    assert answer["events"][0]["seq"] is None and answer["next"]
    order = audit.TRAIL_ORDER
    sealed = {seq: pagination.encode(order, (seq,), SECRET) for seq in (1, 2, 10**12)}
    assert len({len(c) for c in sealed.values()}) == 1, "a cursor's length says nothing of its key"
    for seq, cursor in sealed.items():
        assert f"[{seq}]".encode() not in base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def _another_lists_cursor() -> str:
    return pagination.encode(audit.TRAIL_ORDER, (3,), SECRET)


def _tampered(cursor: str) -> str:
    return cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]


@pytest.mark.parametrize("cursor", ["3", "NaN", str(2**70), "-1", "%00", "x" * 500, "é", "[1,2]", "another list",
                                    "tampered"])
def test_a_cursor_not_made_for_the_kit_list_is_refused_naming_after_and_changes_nothing(kit_world, as_, db, cursor):
    client = as_("sara")
    if cursor == "another list":
        cursor = _another_lists_cursor()
    elif cursor == "tampered":
        cursor = _tampered(client.get("/api/v1/kits", params={"limit": 2}).json()["next"])
    with db.read() as s:
        events = s.scalar(select(func.count()).select_from(AuditEvent))
    api = client.get("/api/v1/kits", params={"after": cursor})
    assert api.status_code == 400 and api.json()["field"] == "after"
    page = client.get("/kits", params={"after": cursor})
    assert page.status_code == 400 and "page link is not valid" in page.text
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_a_cursor_of_a_wrong_shape_is_refused_even_when_sealed_with_the_servers_key():
    kits_order = pagination.Order("kits", (Kit.number,))
    for key in [("A", "B"), (2**64,), (1.5,)]:
        sealed = pagination.encode(pagination.Order("kits", tuple([Kit.number] * len(key))), key, SECRET)
        with pytest.raises(pagination.BadCursor) as refused:
            pagination.decode(kits_order, sealed, SECRET)
        assert refused.value.field == "after" and refused.value.status == 400
    with pytest.raises(pagination.BadCursor):
        pagination.decode(kits_order, pagination.encode(kits_order, ("A",), "another-secret-0123456789-abcdefgh"),
                          SECRET)


@pytest.mark.parametrize("order", ["severity", "age"])
def test_deviations_page_by_page_in_either_order_are_the_whole_list_once(db, people, order):
    anna = actor_of(db, "anna")
    with db.write() as s:
        for i, severity in enumerate(["minor", "critical", "major", "minor", "critical", "major", "minor"]):
            deviations.raise_deviation(s, anna, lot_id=None, step_code=None, origin="manual", severity=severity,
                                       description=f"Deviation {i} for the pagination walk.")
    with db.read() as s:
        whole = [d.number for d in deviations.deviations(s, order=order)]
        walked, after = [], None
        for _page in range(100):  # bounded: a cursor that never ends the list fails, not hangs
            page = deviations.deviation_page(s, pagination.Ask(after, SECRET, 2), order=order)
            walked += [d.number for d in page.rows]
            if (after := page.next) is None:
                break
    assert walked == whole and len(whole) == 7
