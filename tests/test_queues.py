"""Every role of the demo opens its home page and finds honest work-queue lines: each counts what
waits for that role's action, reads "1 shipment" and "3 lots", and opens a page (200) that shows
what it counted: the one item itself, or the list filtered to exactly what waits."""
from __future__ import annotations

import html
import re
from urllib.parse import unquote

import pytest

from cellbench.demo import DEMO_PASSWORD, DEMO_USERS
from cellbench.web.home import QueueItem, line_for

from .conftest import sign_in

LINE = re.compile(r'<div class="queue-item attention"><span><strong>(\d+)</strong> (.*?)</span>\s*<a href="([^"]+)"')
# The filtered lists these queues open, each a table with one row per thing that waits.
FILTERED_LISTS = ("/deviations?state=", "/release?queue=", "/shipments?state=", "/participants?due=", "/dispensing",
                  "/donors?eligibility=", "/materials?status=", "/labels?open=", "/destructions?state=",
                  "/supply/quarantines?state=")
EVERYONE = [username for username, _name, _roles in DEMO_USERS] + ["pharmacist-aarhus"]


def queue_of(client) -> list[tuple[int, str, str]]:
    page = client.get("/")
    assert page.status_code == 200
    return [(int(n), html.unescape(text), html.unescape(href)) for n, text, href in LINE.findall(page.text)]


def body_rows(page_text: str) -> int:
    main = page_text.split("<main>", 1)[1]
    return sum(tbody.count("<tr") for tbody in re.findall(r"<tbody>.*?</tbody>", main, re.S))


@pytest.mark.parametrize("username", EVERYONE)
def test_every_queue_line_of_every_demo_role_opens_a_page_showing_what_it_counted(demo_trial_world, app, username):
    client = sign_in(app, username, DEMO_PASSWORD)
    for count, text, href in queue_of(client):
        assert count > 0, f"{username}: a line counting nothing is no work: {text}"
        page = client.get(href.split("#")[0])
        assert page.status_code == 200, f"{username}: {text} -> {href}"
        if href.startswith(FILTERED_LISTS):
            assert body_rows(page.text) == count, f"{username}: {text} -> {href} lists other things"
        elif count == 1 and "?" not in href and href not in ("/preparation", "/outbox", "/audit/review", "/supply"):
            # the exact item: its page names it
            reference = unquote(href.split("#")[0].rstrip("/").split("/")[-1 if not href.endswith(
                ("/dispense", "/impact", "/qc")) else -2])
            assert reference in page.text, f"{username}: {text} -> {href} does not show {reference}"


def test_one_thing_reads_in_the_singular_and_opens_itself_several_read_in_the_plural_and_open_the_list(
        demo_trial_world, app):
    qa = {text: (n, href) for n, text, href in queue_of(sign_in(app, "qa", DEMO_PASSWORD))}
    assert qa["quarantined shipment awaits your assessment"] == (1, "/shipments/SH-2026-0005")
    assert qa["lots await your batch-record and audit-trail review"] == (3, "/release?queue=review")
    pharmacist = queue_of(sign_in(app, "pharmacist", DEMO_PASSWORD))
    assert (1, "shipment in transit awaits your receipt", "/shipments/SH-2026-0006") in pharmacist
    assert (5, "visits today await a dispensed kit", "/dispensing") in pharmacist
    aarhus = queue_of(sign_in(app, "pharmacist-aarhus", DEMO_PASSWORD))
    assert aarhus == [(1, "visit today awaits a dispensed kit", "/participants/NCT07290946/AAR-001/visits/1/dispense")]
    for username in EVERYONE:
        for n, text, href in queue_of(sign_in(app, username, DEMO_PASSWORD)):
            first = text.split()[0]
            # never "1 lots", "1 shipments" (web/lots.py's lines are another change's)
            if n == 1 and not href.startswith("/lots?"):
                assert not re.match(r"^(lots|shipments|visits|deviations|studies|days|kits|tests)\b", first), text


def test_qa_reviews_the_audit_trail_by_period_not_by_counting_thousands_of_events(demo_trial_world, app, db):
    from cellbench import audit_review, clock

    line = next((n, text, href) for n, text, href in queue_of(sign_in(app, "qa", DEMO_PASSWORD))
                if "audit trail" in text)
    with db.read() as s:
        start, end = audit_review.pending_range(s)
        first, last = audit_review.pending_days(s, clock.zone())
    assert end - start > 1000, "the demo leaves thousands of events unreviewed"
    assert line == ((last - first).days + 1,
                    f"days of the audit trail await your periodic review (since {first.isoformat()})", "/audit/review")
    nobody_else = [u for u in EVERYONE if u != "qa"]
    for username in nobody_else:
        assert not any("audit trail" in text for _n, text, _h in queue_of(sign_in(app, username, DEMO_PASSWORD)))


def test_a_signed_review_empties_the_audit_trail_line_until_something_more_than_signing_in_happens(
        demo_world, app, db):
    from cellbench import audit, audit_review, users

    with db.write() as s:
        _start, end = audit_review.pending_range(s)
        audit_review.sign_review(s, users.by_username(s, "qa"), DEMO_PASSWORD, end, "weekly review")
    qa = sign_in(app, "qa", DEMO_PASSWORD)  # her signing in is an event, and so was the review's signature
    assert not any("audit trail" in text for _n, text, _h in queue_of(qa))
    with db.write() as s:
        audit.record(s, users.actor(s, users.by_username(s, "operator")), "value corrected", "lot", "ASC-X",
                     field="volume", old="10", new="12", reason="typo")
    assert [n for n, text, _h in queue_of(qa) if "audit trail" in text] == [1]


def test_a_queue_line_reads_one_or_many_and_points_at_the_one_thing():
    assert QueueItem(1, "lots in process", "/lots", one="lot in process").label == "lot in process"
    assert QueueItem(2, "lots in process", "/lots", one="lot in process").label == "lots in process"
    assert line_for([], "lots", "lot", "/lots", lambda n: f"/lots/{n}") == []
    [one] = line_for(["A-1"], "lots wait", "lot waits", "/lots?w=1", lambda n: f"/lots/{n}")
    assert (one.count, one.label, one.href) == (1, "lot waits", "/lots/A-1")
    [many] = line_for(["A-1", "A-2"], "lots wait", "lot waits", "/lots?w=1", lambda n: f"/lots/{n}")
    assert (many.count, many.label, many.href) == (2, "lots wait", "/lots?w=1")


def statements_of(read, db):
    """What `read()` returns, and how many SQL statements it ran: all of them, and those reading
    lots (the release lines and lists; the rest vary with a session's touch and other lines)."""
    from sqlalchemy import event

    seen: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        got = read()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return (len(seen), sum(" FROM lot " in " ".join(sql.split()) + " " for sql in seen)), got


def statements_of_home(client, db) -> tuple[int, list[tuple[int, str, str]]]:
    return statements_of(lambda: queue_of(client), db)


def statements_of_lists(client, db) -> list[int]:
    """/release and each of its queues: a page of lots by number, no gate evaluated per row."""
    paths = ["/release", "/release?queue=review", "/release?queue=certification", "/release?queue=sponsor"]
    return [statements_of(lambda path=path: client.get(path).status_code, db) for path in paths]


def test_the_qa_and_qp_homes_read_as_many_statements_with_two_lots_waiting_as_with_more(demo_world, app, db):
    """The release lines are queries (release/queues.py): no gate of a waiting lot is evaluated
    on a home page or the release lists, so more lots waiting add no statement."""
    from cellbench import demo, lots, release, users

    def new_lots(*donors: int) -> list[str]:
        with db.write() as s:
            operator, qa = users.actor(s, users.by_username(s, "operator")), users.by_username(s, "qa")
            return [demo.asc_lot(s, demo.eligible_donation(s, operator, qa, n), until=None).number for n in donors]

    def reviewed(*numbers: str) -> None:
        for number in numbers:
            for kind in release.REVIEW_KINDS:
                with db.write() as s:
                    release.sign_review(s, users.by_username(s, "qa"), DEMO_PASSWORD, lots.by_number(s, number), kind)

    qa, qp = sign_in(app, "qa", DEMO_PASSWORD), sign_in(app, "qp", DEMO_PASSWORD)
    with db.read() as s:
        demo_lots = [lot.number for lot in release.lots_in(s, *release.REVIEWABLE)]
    reviewed(*demo_lots)  # the demo's two lots now wait for the QP
    first = new_lots(8, 9)  # and two new ones for QA
    before = {who: statements_of_home(client, db) for who, client in (("qa", qa), ("qp", qp))}
    lists_before = statements_of_lists(qp, db)
    more = new_lots(10, 11, 12)  # QA: the three new ones, once the first two are reviewed
    reviewed(*first)  # the QP: four
    after = {who: statements_of_home(client, db) for who, client in (("qa", qa), ("qp", qp))}
    assert [lot_reads for (_total, lot_reads), _status in statements_of_lists(qp, db)] == \
        [lot_reads for (_total, lot_reads), _status in lists_before]
    assert all(status == 200 and total < 25 for (total, _lots), status in lists_before)

    line = {"qa": "lots await your batch-record and audit-trail review", "qp": "reviewed lots await your certification"}
    for who, waiting_before, waiting_after in (("qa", 2, 3), ("qp", 2, 4)):
        assert (waiting_before, line[who], f"/release?queue={'review' if who == 'qa' else 'certification'}") \
            in before[who][1]
        assert any(n == waiting_after and text == line[who] for n, text, _h in after[who][1]), after[who][1]
        (total_before, lots_before), (total_after, lots_after) = before[who][0], after[who][0]
        assert lots_after == lots_before and lots_before > 0, who
        # other lines may read a statement more or fewer as their own counts cross one, and signing in
        # is touched now and then; none reads per waiting lot
        assert abs(total_after - total_before) <= 3 and total_after < 40, who
    assert len(more) == 3
