"""The audit trail: written in the same transaction, hash-chained, filtered by blinding, exported."""
from __future__ import annotations

import csv
import io
import itertools
import threading

import pytest
from sqlalchemy import select, text

from cellbench import audit, audit_export, checkpoints, integrity, users
from cellbench.audit import Actor
from cellbench.errors import InvalidInput
from cellbench.models import AuditEvent, Role, Visibility

from .conftest import actor_of


def _trail(client, **filters) -> list[dict]:
    """The caller's audit trail through the API, every page of it (pages of 1000)."""
    events, after = [], None
    while True:
        page = client.get("/api/v1/audit", params={"limit": 1000, **filters, **({"after": after} if after else {})})
        events += page.json()["events"]
        after = page.json()["next"]
        if after is None:
            return events

def all_events(db):
    with db.read() as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_each_event_links_to_the_one_before_and_the_chain_verifies(db, people):
    chain = all_events(db)
    assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
    assert chain[0].prev_hash == audit.GENESIS_HASH
    for before, after in itertools.pairwise(chain):
        assert after.prev_hash == before.hash
    report = integrity.verify(db)
    assert report.ok and report.events == len(chain) and report.head_seq == chain[-1].seq


def head_row(conn) -> tuple[int, str, str | None]:
    return tuple(conn.execute(text("SELECT seq, hash, signature FROM audit_head WHERE id = 1")).one())


def test_a_transaction_of_many_events_commits_its_head_signed_as_one_event_at_a_time_would(db, people,
                                                                                        checkpoint_key):
    """The first event moves the head signed, the later ones unsigned until the commit signs the
    head they leave: the committed head carries the very signature signing each event gave."""
    actor = Actor(None, "test")
    with db.write() as s:
        audit.record(s, actor, "noted", "thing", "1")
        first = head_row(s.connection())
        assert first[2] == checkpoints.sign_head(checkpoint_key, first[0], first[1])
        for n in range(2, 6):
            audit.record(s, actor, "noted", "thing", str(n))
        assert head_row(s.connection())[2] is None  # signed at commit: no one else sees this head
    with db.engine.connect() as conn:
        seq, hashed, signature = head_row(conn)
    assert seq == first[0] + 4 and signature == checkpoints.sign_head(checkpoint_key, seq, hashed)
    assert integrity.verify(db).ok


def test_the_head_a_rolled_back_savepoint_leaves_is_the_one_signed_at_commit(db, people, checkpoint_key):
    actor = Actor(None, "test")
    with db.write() as s:
        audit.record(s, actor, "noted", "thing", "1")
        audit.record(s, actor, "noted", "thing", "2")  # unsigned until the commit
        kept = head_row(s.connection())
        with s.begin_nested() as savepoint:
            audit.record(s, actor, "noted", "thing", "3")
            savepoint.rollback()
    with db.engine.connect() as conn:
        seq, hashed, signature = head_row(conn)
    assert (seq, hashed) == kept[:2] and signature == checkpoints.sign_head(checkpoint_key, seq, hashed)
    assert integrity.verify(db).ok


def test_an_event_records_who_when_what_and_why(db, people):
    with db.write() as s:
        users.set_roles(s, actor_of(db, "adam"), users.by_username(s, "olivia"), ["operator", "verifier"],
                        "trained as verifier")
    event = all_events(db)[-1]
    assert (event.user_name, event.action, event.entity_type, event.entity_id, event.field) == (
        "Adam Admin", "roles changed", "user", "olivia", "roles")
    assert (event.old_value, event.new_value, event.reason) == ('["operator"]', '["operator", "verifier"]',
                                                                "trained as verifier")
    assert event.at.tzinfo is not None and event.user_id is not None


def test_a_users_newest_events_are_the_same_read_by_their_own_index_or_with_other_filters(db, people):
    """'What I did lately' (every home) picks a user's newest events on (user_id, seq) first; the
    rows are those the plain filter gives, and another filter on top is not cut to the ten picked."""
    olivia, anna = actor_of(db, "olivia"), actor_of(db, "anna")
    with db.write() as s:
        for n in range(6):
            audit.record(s, olivia, "noted", "thing", f"o{n}")
            audit.record(s, anna, "noted", "other" if n % 2 else "thing", f"a{n}")
    qa = actor_of(db, "anna")
    with db.read() as s:
        mine = audit.trail(s, qa, audit.TrailFilter(user=str(anna.user_id)), limit=3)
        plain = [e for e in audit.trail(s, qa, audit.TrailFilter(), limit=None) if e.user_id == anna.user_id][:3]
        assert [e.entity_id for e in mine] == [e.entity_id for e in plain] == ["a5", "a4", "a3"]
        things = audit.trail(s, qa, audit.TrailFilter(user=str(anna.user_id), entity_type="thing"), limit=3)
        assert [e.entity_id for e in things] == ["a4", "a2", "a0"]


def test_a_failed_use_case_leaves_neither_its_change_nor_its_audit_event(db, people):
    before = len(all_events(db))
    with pytest.raises(RuntimeError), db.write() as s:
        user = users.by_username(s, "olivia")
        user.full_name = "Changed Name"
        audit.record(s, actor_of(db, "adam"), "renamed", "user", "olivia", field="full_name", new="Changed Name")
        raise RuntimeError("something failed later in the same use case")
    assert len(all_events(db)) == before
    with db.read() as s:
        assert users.by_username(s, "olivia").full_name == "Olivia Operator"


def test_a_correction_without_a_reason_is_refused():
    with pytest.raises(InvalidInput) as refused:
        audit.require_reason("   ")
    assert refused.value.field == "reason"


def test_the_database_itself_refuses_to_update_or_delete_audit_events(db, people):
    for statement in ("UPDATE audit_event SET reason = 'x' WHERE seq = 1", "DELETE FROM audit_event WHERE seq = 1"):
        with pytest.raises(Exception) as refused, db.engine.begin() as conn:
            conn.execute(text(statement))
        assert "append-only" in str(refused.value)


# --- tampering, as someone with database owner rights would do it ------------------------------


def _without_guard(db, statement: str, **params) -> None:
    """Run SQL with the append-only triggers out of the way, as an attacker with owner rights could."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.execute(text("DROP TRIGGER audit_event_no_update"))
            conn.execute(text("DROP TRIGGER audit_event_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        conn.execute(text(statement), params)
        if not db.is_sqlite:
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))


def test_verify_names_a_changed_row(db, people):
    _without_guard(db, "UPDATE audit_event SET new_value = '[\"qa\", \"qp\"]' WHERE seq = 6")
    report = integrity.verify(db)
    assert not report.ok
    assert report.problems[0] == "audit event 6: its content does not match its hash: the row was changed"


def test_verify_names_a_row_whose_hash_was_recomputed_but_not_its_successors(db, people):
    row = all_events(db)[4]
    forged = audit.event_hash(row.prev_hash, [row.seq, "2020-01-01T00:00:00.000000Z", row.user_id, row.user_name,
                                              row.action, row.entity_type, row.entity_id, row.field,
                                              row.old_value, row.new_value, row.reason, row.visibility])
    _without_guard(db, "UPDATE audit_event SET at = '2020-01-01T00:00:00.000000Z', hash = :h WHERE seq = 5", h=forged)
    report = integrity.verify(db)
    assert report.problems[0].startswith("audit event 6: its link to the previous event does not match")


def test_verify_names_a_deleted_row(db, people):
    _without_guard(db, "DELETE FROM audit_event WHERE seq = 7")
    assert integrity.verify(db).problems[0] == "audit event 7: is missing (the sequence jumps to 8): a row was deleted"


def test_verify_names_a_deleted_last_row(db, people):
    last = all_events(db)[-1].seq
    _without_guard(db, f"DELETE FROM audit_event WHERE seq = {last}")
    assert integrity.verify(db).problems[0].startswith(f"audit event {last}: is missing")


def test_verify_names_an_inserted_row(db, people):
    last = all_events(db)[-1]
    content = [last.seq + 1, "2026-01-01T00:00:00.000000Z", None, "Mallory", "user created", "user", "mallory",
               None, None, None, None, "all"]
    digest = audit.event_hash(last.hash, content)
    with db.engine.begin() as conn:  # inserting needs no trigger to be dropped
        conn.execute(text("INSERT INTO audit_event (seq, at, user_id, user_name, action, entity_type, entity_id, "
                          "field, old_value, new_value, reason, visibility, prev_hash, hash) VALUES (:seq, :at, "
                          "NULL, 'Mallory', 'user created', 'user', 'mallory', NULL, NULL, NULL, NULL, 'all', "
                          ":prev, :hash)"), {"seq": last.seq + 1, "at": content[1], "prev": last.hash, "hash": digest})
    report = integrity.verify(db)
    assert report.problems[0] == (f"audit event {last.seq + 1}: was added outside cellbench: "
                                  "it lies beyond the recorded chain head")


def test_verify_checks_ranges_in_parallel_and_still_finds_the_first_problem(db, people, monkeypatch):
    monkeypatch.setattr(integrity, "_PARALLEL_FROM", 1)
    assert integrity.verify_chain(db, workers=3).ok
    _without_guard(db, "UPDATE audit_event SET user_name = 'Someone Else' WHERE seq = 20")
    report = integrity.verify_chain(db, workers=3)
    assert report.problems == ["audit event 20: its content does not match its hash: the row was changed"]


# --- visibility -------------------------------------------------------------------------------


def _record_arm_revealing_event(db, kit: str = "K7QX-4MHT-W") -> None:
    with db.write() as s:
        audit.record(s, actor_of(db, "sara"), "kit contents assigned", "kit", kit, field="arm",
                     new="active", visibility=Visibility.unblinded)
        audit.record(s, actor_of(db, "sara"), "kit labelled", "kit", kit)


@pytest.mark.parametrize("reader", ["mette"])
def test_blinded_readers_never_see_arm_revealing_events_not_even_as_a_gap(db, as_, reader, kit_world):
    # a kit of the monitor's study at the bench: within her scope (audit.site_trial_records)
    kit = kit_world.active[0]
    _record_arm_revealing_event(db, kit)
    client = as_(reader)
    page = client.get(f"/audit?entity_type=kit&entity_id={kit}")
    assert "kit labelled" in page.text and "kit contents assigned" not in page.text and "active" not in page.text
    api = _trail(client, entity_type="kit", entity_id=kit)
    assert api[0]["action"] == "kit labelled" and "kit contents assigned" not in [e["action"] for e in api]
    assert {e["seq"] for e in api} == {None}
    exported = list(csv.reader(io.StringIO(client.get(f"/audit.csv?entity_type=kit&entity_id={kit}").text)))
    assert exported[0][0] == "time" and len(exported) == len(api) + 1  # header + the visible events, no seq


def test_the_administrators_trail_holds_no_kit_event_at_all(db, as_):
    """Users, roles and security events only (audit.trail_scope): a kit is not the admin's business."""
    _record_arm_revealing_event(db)
    assert _trail(as_("adam"), entity_type="kit") == []
    assert "kit labelled" not in as_("adam").get("/audit?entity_type=kit").text


def test_unblinded_qa_sees_every_event_with_its_sequence_number(db, as_):
    _record_arm_revealing_event(db)
    api = _trail(as_("anna"), entity_type="kit")
    assert [e["action"] for e in api] == ["kit labelled", "kit contents assigned"]
    assert all(isinstance(e["seq"], int) for e in api)
    exported = list(csv.reader(io.StringIO(as_("anna").get("/audit.csv?entity_type=kit").text)))
    assert exported[0][:2] == ["seq", "hash"] and len(exported) == 3


@pytest.mark.parametrize("reader", ["anna", "mette"])
def test_the_csv_download_streams_the_same_rows_as_the_whole_trail_in_batches(db, as_, reader, kit_world):
    _record_arm_revealing_event(db, kit_world.active[0])
    viewer = actor_of(db, reader)
    with db.read() as s:
        whole = audit.to_csv(audit.trail(s, viewer, audit.TrailFilter(), limit=None, newest_first=False), viewer)
    chunks = list(audit_export.csv_chunks(db, viewer, audit.TrailFilter(), batch=7))
    assert b"".join(chunks).decode() == whole, "streamed, the export is the one the whole list gives"
    assert len(chunks) > 2, "the header, then one chunk a batch of events"
    # over HTTP: the same, and then the events of signing in to download it
    assert as_(reader).get("/audit.csv").text.startswith(whole)


def test_the_trail_filters_by_user_record_and_date(db, as_):
    anna = as_("anna")
    by_adam = _trail(anna, user="Adam")
    assert by_adam == []  # the people were created from the command line
    cli = _trail(anna, user="command line", entity_id="victor")
    assert {e["action"] for e in cli} == {"user created", "roles changed"}
    assert anna.get("/audit?since=2000-01-01&until=2000-01-02").text.count("<tr>") == 2  # header + "No events."
    assert "not a date" in anna.get("/audit?since=yesterday").text
    assert anna.get("/audit?since=yesterday").status_code == 422


def test_entity_history_shows_one_records_events_in_order(db, as_):
    page = as_("anna").get("/audit/user/olivia")
    assert page.status_code == 200
    assert page.text.index("user created") < page.text.index("roles changed")


def test_operators_cannot_read_the_whole_audit_trail(as_):
    assert as_("olivia").get("/audit").status_code == 403
    assert as_("olivia").get("/api/v1/audit").status_code == 403


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_writers_leave_one_unbroken_chain(db, people):
    """Several threads, each with its own connection, append at once. On PostgreSQL nothing in the
    process serialises them: only the lock on the chain head keeps the chain one line."""
    writers, each = 6, 25
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        actor = Actor(None, f"writer {n}", frozenset({Role.admin}))
        start.wait()
        try:
            for i in range(each):
                with db.write() as s:
                    audit.record(s, actor, "load test", "thread", n, field="i", new=i)
        except BaseException as exc:
            errors.append(exc)

    before = len(all_events(db))
    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = integrity.verify(db)
    assert report.ok, report.problems
    assert report.events == before + writers * each
    per_thread = {}
    for e in all_events(db)[before:]:
        per_thread.setdefault(e.entity_id, []).append(int(e.new_value))
    assert all(values == list(range(each)) for values in per_thread.values())


# --- a site role's trail: its sites and studies only (audit.site_trial_records) ----------------------------


def _trial_records_at(db, site: str, kit: str, shipment: str, screening: str) -> dict[str, str]:
    """A kit in stock, a shipment, a participant and its sponsor notification at `site`, each with one
    event in the trail (written as the flows write them: the entity ids they use)."""
    from cellbench.clock import utcnow
    from cellbench.models import Notification

    from .trialworld import STUDY, enrol, ship, to_site

    to_site(db, [kit], site=site)
    ship(db, shipment, [kit], site=site)
    number = f"R-{screening}"
    enrol(db, number, screening, site=site)
    with db.write() as s:
        note = Notification(kind="emergency_unblinding", to_address="sponsor@example.org", body="…",
                            subject=f"Emergency unblinding: {STUDY} participant {number}", created_at=utcnow())
        s.add(note)
        s.flush()
        ids = {"kit": kit, "shipment": shipment, "participant": f"{STUDY}/{screening}", "site": site,
               "notification": str(note.id)}
        for kind, ident in ids.items():
            audit.record(s, actor_of(db, "sara"), f"{kind} touched at {site}", kind, ident)
    return ids


def test_the_monitors_trail_holds_the_records_of_her_sites_and_studies_only(trial_world, db, as_):
    home = _trial_records_at(db, "RH-ENT", trial_world.first_active[0], "SH-RH-9", "RH-900")
    away = _trial_records_at(db, "AUH-ENT", trial_world.first_placebo[0], "SH-AUH-9", "AUH-900")
    mette, anna = as_("mette"), as_("anna")
    for kind in home:
        seen = {e["action"] for e in _trail(mette, entity_type=kind)}
        assert f"{kind} touched at RH-ENT" in seen and f"{kind} touched at AUH-ENT" not in seen, kind
        everything = {e["action"] for e in _trail(anna, entity_type=kind)}
        assert {f"{kind} touched at RH-ENT", f"{kind} touched at AUH-ENT"} <= everything, "QA reads every site"
    page, exported = mette.get("/audit").text, mette.get("/audit.csv").text
    assert "touched at RH-ENT" in page and "touched at RH-ENT" in exported
    assert "touched at AUH-ENT" not in page and "touched at AUH-ENT" not in exported
    for kind, ident in away.items():
        asked = {"entity_type": kind, "entity_id": ident}
        assert _trail(mette, **asked) == [], f"another site's {kind} has no history"


def test_a_monitor_linked_to_the_other_site_reads_its_records_too(trial_world, db, as_):
    away = _trial_records_at(db, "AUH-ENT", trial_world.first_placebo[0], "SH-AUH-9", "AUH-900")
    with db.write() as s:
        users.link(s, actor_of(db, "adam"), users.by_username(s, "mette"), site="AUH-ENT")
    seen = {e["action"] for e in _trail(as_("mette"))}
    assert {f"{kind} touched at AUH-ENT" for kind in away} <= seen


def test_a_site_role_with_no_link_reads_no_trial_record(trial_world, db):
    with db.write() as s:
        users.create_user(s, users.cli_actor(), "nina", "Nina Nolink", "correct horse battery", ["monitor"])
    with db.read() as s:
        nina = users.actor(s, users.by_username(s, "nina"))
        assert [e.entity_type for e in audit.trail(s, nina, audit.TrailFilter())] == []
