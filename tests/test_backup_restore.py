"""Backup and restore as one drill (issue 17): a backup taken while others write holds its own chain
head, signed in the `.checkpoint` beside it; it restores only into an empty database, and the restored
database proves itself against that checkpoint, table by table. An edited backup, a truncated backup
and an edited or missing checkpoint fail, naming what is wrong. On SQLite by default, on PostgreSQL
with CELLBENCH_TEST_DATABASE_URL (the restore target is a new database on the same server)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cellbench import backups, checkpoints, cli, integrity, users
from cellbench.backups import postgres
from cellbench.backups import sqlite as sqlite_backups
from cellbench.db import Database

from .conftest import FAST_HASHER, PG_URL, WORKER, actor_of

runner = CliRunner()
# Every wait below is a guard against a hung thread, never a measure of speed.
GUARD = 120


@pytest.fixture(autouse=True)
def fast_passwords(monkeypatch):
    """The command line configures the real argon2 cost; the tests check the drill, not argon2."""
    real = users.configure
    monkeypatch.setattr(users, "configure", lambda length, failures, hasher=None, **signin:
                        real(length, failures, FAST_HASHER, **signin))


@pytest.fixture
def key(tmp_path, monkeypatch, checkpoint_key) -> checkpoints.Key:
    """This installation's checkpoint key, in a file the settings name: the key that signed the
    world's chain heads (conftest's), as the server and the command line share one key file."""
    path = tmp_path / "keys" / "checkpoint.key"
    path.parent.mkdir()
    path.write_bytes(checkpoint_key.private.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    path.chmod(0o600)
    made = checkpoints.load(path)
    checkpoints.install(made)
    monkeypatch.setenv("CELLBENCH_CHECKPOINT_KEY", str(made.path))
    monkeypatch.setenv("CELLBENCH_DATA_DIR", str(tmp_path / "data"))
    return made


def _pg_admin(sql: str) -> None:
    server = make_url(PG_URL).set(drivername="postgresql", database="postgres")
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def empty_target(db, tmp_path) -> Iterator[str]:
    """The URL of a new, empty database of the test's engine to restore into."""
    if db.is_sqlite:
        yield f"sqlite:///{tmp_path / 'restored' / 'cellbench.db'}"
        return
    name = f"{make_url(PG_URL).database}_{WORKER}_restore_{uuid.uuid4().hex[:8]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(db.url).set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cellbench(url: str, *args: str):
    return runner.invoke(cli.app, list(args), env={"CELLBENCH_DATABASE_URL": url})


def contents_of(url: str) -> backups.Contents:
    database = Database(url)
    try:
        path = database.sqlite_path()
        return sqlite_backups.contents(Path(path)) if path else postgres.contents(url)
    finally:
        database.dispose()


def recorded(backup: Path) -> dict:
    return json.loads(backups.checkpoint_path(backup).read_text())


class Writer:
    """Adam (admin) keeps creating API tokens, each with its audit event, through the service
    function, one transaction each, until told to stop."""

    def __init__(self, db: Database):
        self.db, self.written, self.failure = db, 0, None
        self.adam = actor_of(db, "adam")
        self._more = threading.Condition()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self.db.write() as s:
                    users.create_token(s, self.adam, users.by_username(s, "adam"), f"drill {self.written}")
                with self._more:
                    self.written += 1
                    self._more.notify_all()
        except Exception as exc:  # reported by stop()
            self.failure = exc

    def wait_for(self, more: int) -> None:
        """Return once `more` further writes have been committed."""
        with self._more:
            goal = self.written + more
            assert self._more.wait_for(lambda: self.written >= goal or self.failure is not None, GUARD)
        assert self.failure is None, self.failure

    def __enter__(self) -> Writer:
        self.thread.start()
        self.wait_for(3)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(GUARD)
        assert self.failure is None, self.failure


@contextlib.contextmanager
def moving_on_during_backup(writer: Writer) -> Iterator[None]:
    """Make sure the live database moves on while the backup is being taken: once the copy (SQLite)
    or the snapshot (PostgreSQL) exists, the backup reads what it holds only after the writer has
    committed more. The head it signs must still be the copy's."""
    real_sqlite, real_pg = sqlite_backups.contents, postgres._contents

    def sqlite_contents(path):
        writer.wait_for(3)
        return real_sqlite(path)

    def pg_contents(conn):
        writer.wait_for(3)
        return real_pg(conn)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite_backups, "contents", sqlite_contents)
        patch.setattr(postgres, "_contents", pg_contents)
        yield


def test_a_backup_taken_while_others_write_restores_into_an_empty_database_and_proves_itself(
        db, people, key, tmp_path, empty_target):
    backup = tmp_path / "backups" / "cellbench.backup"
    backup.parent.mkdir()
    with Writer(db) as writer:
        with moving_on_during_backup(writer):
            made = cellbench(db.url, "backup", str(backup))
        writer.wait_for(3)
    assert made.exit_code == 0, made.output
    assert backups.private(backup) and backups.private(backups.checkpoint_path(backup))
    assert f"backup written: {backup}" in made.output and "chain head: event" in made.output

    # The checkpoint signs the head the backup holds, which the live database has since passed.
    written = recorded(backup)
    live = contents_of(db.url)
    in_file = contents_of(f"sqlite:///{backup}") if db.is_sqlite else None
    assert written["seq"] < live.head_seq
    assert written["backup"]["tables"]["audit_event"] == written["seq"]
    assert written["backup"]["tables"]["api_token"] < live.tables["api_token"]
    if in_file is not None:
        assert (in_file.head_seq, in_file.head_hash) == (written["seq"], written["head_hash"])
        assert in_file.tables == written["backup"]["tables"]
    else:
        assert postgres.head_in_dump(backup) == (written["seq"], written["head_hash"])
    assert f"chain head: event {written['seq']} {written['head_hash']}" in made.output

    restored = cellbench(empty_target, "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert "FAILED" not in restored.output and "OK: the restored database is the backup of event" in restored.output
    for check in ("checkpoint", "backup file", "audit chain", "chain head", "rows"):
        assert f"OK      {check}: " in restored.output

    # The restored database is the backup: the checkpoint's head, the checkpoint's counts, a clean verify.
    again = contents_of(empty_target)
    assert (again.head_seq, again.head_hash) == (written["seq"], written["head_hash"])
    assert again.tables == written["backup"]["tables"]
    target = Database(empty_target)
    try:
        report = integrity.verify(target)
    finally:
        target.dispose()
    assert report.ok and report.head_seq == written["seq"]
    if target.is_sqlite:
        assert backups.private(Path(target.sqlite_path() or ""))


def test_backup_files_are_private_whatever_the_umask_and_never_overwritten(db, people, key, tmp_path):
    backup = tmp_path / "cellbench.backup"
    before = os.umask(0)
    try:
        made = cellbench(db.url, "backup", str(backup))
    finally:
        os.umask(before)
    assert made.exit_code == 0, made.output
    assert backups.private(backup) and backups.private(backups.checkpoint_path(backup))

    size = backup.stat().st_size
    again = cellbench(db.url, "backup", str(backup))
    assert again.exit_code == 1 and "exists: choose a new file name" in again.output
    assert backup.stat().st_size == size

    lone = tmp_path / "other.backup"
    backups.checkpoint_path(lone).write_text("{}")
    refused = cellbench(db.url, "backup", str(lone))
    assert refused.exit_code == 1 and "other.backup.checkpoint exists" in refused.output and not lone.exists()

    nowhere = cellbench(db.url, "backup", str(tmp_path / "no such folder" / "cellbench.backup"))
    assert nowhere.exit_code == 1 and "cannot write" in nowhere.output and "give a folder that exists" in nowhere.output


def test_a_backup_without_the_checkpoint_key_is_refused_before_anything_is_written(db, people, key, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("CELLBENCH_CHECKPOINT_KEY", str(tmp_path / "nowhere.key"))
    monkeypatch.setattr(checkpoints.keys, "_installed", None)
    refused = cellbench(db.url, "backup", str(tmp_path / "cellbench.backup"))
    assert refused.exit_code == 1 and "cellbench keys init" in refused.output
    assert not (tmp_path / "cellbench.backup").exists()


def test_restore_refuses_a_database_that_holds_tables_and_changes_nothing(db, people, key, tmp_path):
    backup = tmp_path / "cellbench.backup"
    assert cellbench(db.url, "backup", str(backup)).exit_code == 0
    before = contents_of(db.url)
    refused = cellbench(db.url, "restore", str(backup))
    assert refused.exit_code == 1
    assert "is not empty (it holds" in refused.output and "restored only into an empty database" in refused.output
    assert contents_of(db.url) == before


def test_a_backup_of_the_other_engine_is_refused_naming_both(db, people, key, tmp_path):
    backup = tmp_path / "cellbench.backup"
    assert cellbench(db.url, "backup", str(backup)).exit_code == 0
    other = ("postgresql+psycopg://nobody@127.0.0.1:1/never" if db.is_sqlite
             else f"sqlite:///{tmp_path / 'other' / 'cellbench.db'}")
    refused = cellbench(other, "restore", str(backup))
    assert refused.exit_code == 1
    backup_engine, target_engine = ("SQLite", "PostgreSQL") if db.is_sqlite else ("PostgreSQL", "SQLite")
    assert f"is a {backup_engine} backup but the target database" in refused.output
    assert f"is {target_engine}: restore it into a {backup_engine} database" in refused.output


def _edit_event(url: str, seq: int) -> None:
    """What a database owner can do: drop the append-only guard and change an event's printed name."""
    database = Database(url)
    try:
        with database.engine.begin() as conn:
            if database.is_sqlite:
                conn.execute(text("DROP TRIGGER audit_event_no_update"))
            else:
                conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
            conn.execute(text("UPDATE audit_event SET user_name = 'Nobody' WHERE seq = :seq"), {"seq": seq})
    finally:
        database.dispose()


def _edit_backup(backup: Path, seq: int, scratch_url: str) -> None:
    """Edit one event inside the backup file, keeping it a valid backup of its engine."""
    if backup.read_bytes().startswith(b"SQLite"):
        _edit_event(f"sqlite:///{backup}", seq)
        return
    postgres.restore(scratch_url, backup)  # into a scratch database, edited there and dumped again
    _edit_event(scratch_url, seq)
    backup.unlink()
    conninfo = make_url(scratch_url).set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run([shutil.which("pg_dump") or "pg_dump", "--format=custom", "--file", str(backup), conninfo],
                   check=True)


@pytest.fixture
def scratch_target(db, tmp_path) -> Iterator[str]:
    if db.is_sqlite:
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"{make_url(PG_URL).database}_{WORKER}_scratch_{uuid.uuid4().hex[:8]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(db.url).set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_event_edited_in_the_backup_fails_the_restore_naming_the_event(db, people, key, tmp_path, empty_target,
                                                                         scratch_target):
    backup = tmp_path / "cellbench.backup"
    assert cellbench(db.url, "backup", str(backup)).exit_code == 0
    _edit_backup(backup, 3, scratch_target)

    failed = cellbench(empty_target, "restore", str(backup))
    assert failed.exit_code == 2, failed.output
    assert "FAILED  audit chain: audit event 3: its content does not match its hash" in failed.output
    assert "FAILED  backup file: " in failed.output and "edited after it was written" in failed.output
    assert "is not a proven copy of the backup; do not serve it" in failed.output
    assert "OK      checkpoint: " in failed.output  # the checkpoint itself is sound: it is the backup that changed


def test_a_truncated_backup_fails_and_leaves_the_target_empty(db, people, key, tmp_path, empty_target):
    backup = tmp_path / "cellbench.backup"
    assert cellbench(db.url, "backup", str(backup)).exit_code == 0
    whole = backup.read_bytes()
    backup.write_bytes(whole[:len(whole) // 2])

    failed = cellbench(empty_target, "restore", str(backup))
    assert failed.exit_code == 2, failed.output
    half = len(whole) // 2
    assert f"the file has {half} bytes, the checkpoint records {len(whole)}: it was truncated" in failed.output
    assert "FAILED  restore: " in failed.output and "do not serve it" in failed.output
    if make_url(empty_target).get_backend_name() == "sqlite":
        assert sqlite_backups.tables_in(Path(make_url(empty_target).database or "")) == []
    else:
        assert postgres.tables_in(empty_target) == []


def test_an_edited_checkpoint_fails_the_restore(db, people, key, tmp_path, empty_target):
    backup = tmp_path / "cellbench.backup"
    assert cellbench(db.url, "backup", str(backup)).exit_code == 0
    cp_file = backups.checkpoint_path(backup)
    edited = recorded(backup)
    edited["backup"]["tables"]["audit_event"] -= 1  # as if the backup had one event fewer
    cp_file.write_text(json.dumps(edited))

    failed = cellbench(empty_target, "restore", str(backup))
    assert failed.exit_code == 2, failed.output
    assert "FAILED  checkpoint: the backup's record in the checkpoint file" in failed.output
    assert "the checkpoint file was edited" in failed.output
    assert "FAILED  rows: table audit_event: " in failed.output


def test_a_checkpoint_moved_to_another_head_or_signed_by_another_key_fails(db, people, key, tmp_path):
    if not db.is_sqlite:
        pytest.skip("the signature checks are the same on both engines: SQLite's restore targets are cheaper")
    backup = tmp_path / "cellbench.backup"
    assert cellbench(db.url, "backup", str(backup)).exit_code == 0
    good = recorded(backup)

    moved = {**good, "seq": good["seq"] - 1}
    backups.checkpoint_path(backup).write_text(json.dumps(moved))
    target = f"sqlite:///{tmp_path / 'a' / 'cellbench.db'}"
    failed = cellbench(target, "restore", str(backup))
    assert failed.exit_code == 2
    assert f"checkpoint at event {good['seq'] - 1} (" in failed.output
    assert "its signature does not hold" in failed.output
    assert f"FAILED  chain head: the restored chain ends at event {good['seq']}" in failed.output

    stranger = checkpoints.create(tmp_path / "stranger.key")
    failed = cellbench(f"sqlite:///{tmp_path / 'b' / 'cellbench.db'}", "restore", str(backup),
                       "--public-key", stranger.public_text)
    assert failed.exit_code == 2 and f"but the key it is checked with is {stranger.key_id}" in failed.output


def test_a_missing_or_unreadable_checkpoint_fails_before_anything_is_restored(db, people, key, tmp_path,
                                                                              empty_target):
    backup = tmp_path / "cellbench.backup"
    assert cellbench(db.url, "backup", str(backup)).exit_code == 0
    kept_elsewhere = tmp_path / "elsewhere.checkpoint"
    backups.checkpoint_path(backup).rename(kept_elsewhere)

    missing = cellbench(empty_target, "restore", str(backup))
    assert missing.exit_code == 2 and "cellbench.backup.checkpoint is missing" in missing.output

    kept_elsewhere.write_text(kept_elsewhere.read_text()[:40])
    garbled = cellbench(empty_target, "restore", str(backup), "--checkpoint", str(kept_elsewhere))
    assert garbled.exit_code == 2 and "is not a backup's checkpoint" in garbled.output
    if make_url(empty_target).get_backend_name() == "sqlite":
        assert not Path(make_url(empty_target).database or "").exists()
    else:
        assert postgres.tables_in(empty_target) == []


def test_a_sqlite_backup_is_one_self_contained_file(db, people, key, tmp_path):
    if not db.is_sqlite:
        pytest.skip("SQLite's journal files")
    backup = tmp_path / "cellbench.backup"
    assert cellbench(db.url, "backup", str(backup)).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cellbench.backup")) == [
        "cellbench.backup", "cellbench.backup.checkpoint"]
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_backup_whose_chain_head_does_not_name_its_newest_event_is_not_signed(db, people, key, tmp_path):
    with db.engine.begin() as conn:  # the head moved back by hand, as when the tail of the chain is cut
        conn.execute(text("UPDATE audit_head SET seq = seq - 1 WHERE id = 1"))
    backup = tmp_path / "cellbench.backup"
    refused = cellbench(db.url, "backup", str(backup))
    assert refused.exit_code == 2
    assert "was written but not signed: the chain head records event" in refused.output
    assert "run `cellbench verify`" in refused.output
    assert backups.private(backup) and not backups.checkpoint_path(backup).exists()
