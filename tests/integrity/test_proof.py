"""The quick proof of a sound chain (the database writes each event's canonical JSON) finds what
the reference check finds, gathers the signature events a pass of their own would read, and on the
least doubt hands the range to the reference check, which names the problem as it always did."""
from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select, text
from sqlmodel import col

from cellbench import audit, integrity, signatures, users
from cellbench.db import Database
from cellbench.integrity import chain, gathered, proof
from cellbench.models import Signature


def url_of(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def head(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT max(seq) FROM audit_event")).scalar_one())


def prove(db: Database, lo: int, hi: int) -> proof.Clean | None:
    conn, mark = chain._connect(url_of(db))
    try:
        return proof.range_clean(conn, mark == "%s", lo, hi)
    finally:
        conn.close()


def reference(db: Database, lo: int, hi: int) -> chain._Range:
    conn, mark = chain._connect(url_of(db))
    try:
        return chain._named_first_problem(conn, mark, lo, hi)
    finally:
        conn.close()


def rewrite(db: Database, statement: str, **params) -> None:
    """SQL with the append-only triggers out of the way, as an owner could."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_event_no_update"))
        else:
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        conn.execute(text(statement), params)
        if not db.is_sqlite:
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))


def test_the_database_writes_every_escape_of_the_canonical_json_as_python_does(db):
    conn, mark = chain._connect(url_of(db))
    try:
        assert proof.database_json_holds(conn, mark == "%s", chain._canonical_json())
        assert not proof.database_json_holds(conn, mark == "%s", lambda values: json.dumps(values)), \
            "Python's default JSON (ASCII escapes, spaces) is not what the database writes: the sample tells"
    finally:
        conn.close()


def test_a_sound_chain_is_proved_with_what_the_reference_check_finds(db, people):
    last = head(db)
    for lo, hi in ((1, last), (1, last // 2), (last // 2 + 1, last)):
        clean, ref = prove(db, lo, hi), reference(db, lo, hi)
        assert ref.problem is None
        assert clean == (ref.count, ref.first_prev, ref.last_hash)


def test_a_changed_row_is_not_proved_and_the_reference_check_names_it(db, people):
    rewrite(db, "UPDATE audit_event SET reason = 'Tidied up' WHERE seq = 5")
    assert prove(db, 1, head(db)) is None
    assert str(reference(db, 1, head(db)).problem) == ("audit event 5: its content does not match its hash: "
                                                       "the row was changed")


def test_a_row_missing_inside_a_range_is_not_proved(db, people):
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.execute(text("DROP TRIGGER audit_event_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        last = conn.execute(text("SELECT max(seq) FROM audit_event")).scalar_one()
        conn.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": last})
    assert prove(db, 1, last) is None
    assert integrity.verify_chain(db).problems[0].startswith(f"audit event {last}: is missing")


def test_a_prev_hash_that_only_begins_with_the_right_one_is_a_broken_link(db, people):
    """The SQLite proof checks a link as "the text begins with the last hash": a prev_hash with more
    after it (SQLite; PostgreSQL's column holds 64 characters: there, one short), under a hash
    forged over it, must not pass for a sound link."""
    with db.engine.connect() as conn:
        row = conn.execute(text(f"SELECT {', '.join(audit.HASHED_COLUMNS)}, prev_hash FROM audit_event "
                                "WHERE seq = 6")).one()
    prev = row.prev_hash + "|x" if db.is_sqlite else row.prev_hash[:63]
    rewrite(db, "UPDATE audit_event SET prev_hash = :prev, hash = :hash WHERE seq = 6",
            prev=prev, hash=audit.event_hash(prev, list(row)[:12]))
    assert prove(db, 1, head(db)) is None
    assert integrity.verify_chain(db).problems[0] == f"audit event 6: {integrity.BROKEN_LINK}"


@pytest.mark.parametrize("number", [0.30000000000000004, 1e20])
def test_a_real_number_hashed_as_sqlite_prints_it_is_named_as_a_changed_row(db, people, number):
    """SQLite's JSON prints a REAL with 15 digits (and 1e20 as 1.0e+20), Python's otherwise: a hash
    forged over SQLite's text must not pass where the event hash definition (Python's text) fails."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL keeps user_id an integer")
    rewrite(db, "UPDATE audit_event SET user_id = :number WHERE seq = 4", number=number)
    with db.engine.connect() as conn:
        sqlite_text = conn.execute(text(f"SELECT prev_hash || '|' || json_array({', '.join(audit.HASHED_COLUMNS)}) "
                                        "FROM audit_event WHERE seq = 4")).scalar_one()
    rewrite(db, "UPDATE audit_event SET hash = :hash WHERE seq = 4",
            hash=hashlib.sha256(sqlite_text.encode()).hexdigest())
    assert prove(db, 1, head(db)) is None
    assert integrity.verify_chain(db).problems[0] == ("audit event 4: its content does not match its hash: "
                                                      "the row was changed")


def void_one(db: Database) -> None:
    """A signature voided as a correction voids it (the demo voids none), with a reason JSON escapes."""
    with db.write() as s:
        standing = select(Signature).where(col(Signature.invalidated_at).is_(None))
        sig = s.scalars(standing.order_by(col(Signature.id))).first()
        assert sig is not None
        signatures.invalidate(s, users.cli_actor(), sig, 'Re-read: "1.84" was 1.48 \\ µ')


def test_the_chain_check_gathers_the_signature_events_a_pass_of_their_own_reads(demo_trial_world):
    db = demo_trial_world
    void_one(db)
    last = head(db)
    conn, mark = chain._connect(url_of(db))
    try:
        alone = gathered.read_range(conn, mark, 1, last)
    finally:
        conn.close()
    assert alone.signed > 100 and alone.voidings, "the demo signs, and voids signatures in its corrections"
    for ranges in ([(1, last)], [(1, last // 3), (last // 3 + 1, last)]):
        together = gathered.Gathered()
        for lo, hi in ranges:
            together.add(chain._check_range(url_of(db), lo, hi, gather=True).events or gathered.Gathered())
        assert together == alone


def test_a_range_with_a_problem_still_gathers_all_its_signature_events(demo_trial_world):
    db = demo_trial_world
    void_one(db)
    last = head(db)
    conn, mark = chain._connect(url_of(db))
    try:
        alone = gathered.read_range(conn, mark, 1, last)
    finally:
        conn.close()
    rewrite(db, "UPDATE audit_event SET reason = 'Tidied up' WHERE seq = 3")
    assert alone.voidings, "the voiding is gathered too"
    checked = chain._check_range(url_of(db), 1, last, gather=True)
    assert checked.problem is not None and checked.events == alone
