"""Backup and restore as one drill: back up with a signed checkpoint of what the backup holds,
restore into an empty database, and prove the restored database is that backup."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .. import checkpoints, integrity
from ..checkpoints import Checkpoint, Key, KeyProblem
from ..checkpoints import store as checkpoint_store
from ..config import Settings
from ..db import Database, backup_sqlite, schema_is_current
from . import manifest, postgres, sqlite
from .files import digest, kind_of, mode_of
from .manifest import BackupProblem, Contents, Manifest

ENGINE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def signing_key(settings: Settings) -> Key:
    """The checkpoint key: the file the settings name; else the key this process installed (the
    server's, the tests'); else the clear error of the missing file."""
    path = settings.checkpoint_key_path
    if path.exists() or checkpoints.installed() is None:
        return checkpoints.load(path)
    installed = checkpoints.installed()
    assert installed is not None
    return installed


def _signed_checkpoint(db: Database, key: Key, seq: int, head_hash: str, why: str) -> Checkpoint:
    """A signed checkpoint of the backup's own head (older than the live one as soon as the next write
    lands), kept in the database and the log beside the key like every checkpoint."""
    del why  # every backup checkpoint's reason is "backup"
    return checkpoint_store.issue_for(db, seq, head_hash, "backup", key)


@dataclass(frozen=True)
class Written:
    path: Path
    checkpoint_path: Path
    contents: Contents
    manifest: Manifest


def _sqlite_backup(db: Database, path: Path) -> Contents:
    try:
        backup_sqlite(db, str(path))
    except sqlite3.Error as exc:
        raise BackupProblem(f"the SQLite copy failed ({exc}): nothing was written") from None
    problems = sqlite.quick_check(path)
    if problems != ["ok"]:
        raise BackupProblem(f"the copy in {path} fails SQLite's page check ({'; '.join(problems)}): "
                            "nothing is signed; check the live database (`cellbench verify`)", 2)
    return sqlite.contents(path)  # the copy's own head, not the live one that has moved on


def backup(db: Database, path: Path, key: Key) -> Written:
    """Write the backup and its `.checkpoint` beside it, both new files, mode 0600 from the first byte."""
    cp_path = manifest.checkpoint_path(path)
    for existing in (path, cp_path):
        if existing.exists():
            raise BackupProblem(f"{existing} exists: choose a new file name, so that no backup is overwritten")
    try:
        if db.is_sqlite:
            contents = _sqlite_backup(db, path)
        else:
            contents = postgres.dump(db.engine.url.render_as_string(hide_password=False), path)
    except FileExistsError:
        raise BackupProblem(f"{path} exists: choose a new file name, so that no backup is overwritten") from None
    except OSError as exc:
        raise BackupProblem(f"cannot write {path} ({exc.strerror}): give a folder that exists and that this "
                            "user may write to") from None
    wrong = contents.head_problem()
    if wrong:
        raise BackupProblem(f"{path} was written but not signed: {wrong}", 2)
    size, sha256 = digest(path)
    cp = _signed_checkpoint(db, key, contents.head_seq, contents.head_hash, f"backup {path.name}")
    record = manifest.make(key, cp, contents, size, sha256, path.name)
    manifest.write(cp_path, record)
    return Written(path, cp_path, contents, record)


# --- restore -------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    problems: list[str]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Restored:
    backup: Path
    target: str  # shown without a password
    engine: str
    recorded: Manifest
    checks: list[Check] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    schema_current: bool = True  # False: the backup is of an older schema (`cellbench init` upgrades it)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _target_is_empty(url: str, engine: str) -> None:
    if engine == "sqlite":
        target = Path(make_url(url).database or "")
        found = sqlite.tables_in(target)
    else:
        found = postgres.tables_in(url)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise BackupProblem(f"the target database {_shown(url)} is not empty (it holds {shown}): a backup is "
                            "restored only into an empty database, so that nothing in it is mixed or overwritten")


def _file_check(path: Path, engine: str, recorded: Manifest) -> Check:
    size, sha256 = digest(path)
    problems = []
    if recorded.engine != engine:
        problems.append(f"the checkpoint records a {recorded.engine} backup, the file is {engine}")
    if size != recorded.size:
        problems.append(f"the file has {size} bytes, the checkpoint records {recorded.size}: "
                        f"it was {'truncated or ' if size < recorded.size else ''}edited after it was written")
    elif sha256 != recorded.sha256:
        problems.append("the file's SHA-256 is not the one recorded at backup: it was edited after it was written")
    return Check("backup file", problems, f"{size} bytes, SHA-256 {sha256[:16]}…")


def _chain_check(restored: Database, cp: Checkpoint, public: str) -> tuple[Check, Check]:
    # Against the backup's own checkpoint, not the key's log: the log runs on past the backup (the
    # live database went on), and a restored copy is a past state, not a truncated one.
    report = integrity.verify(restored, given=[cp], logs=[], public_key=public)
    chain = Check("audit chain", list(report.problems),
                  f"{report.events} events and {report.signatures} signatures verified")
    problems = []
    with restored.engine.connect() as conn:
        at = conn.execute(text("SELECT hash FROM audit_event WHERE seq = :seq"), {"seq": cp.seq}).first()
    if cp.seq and (at is None or at[0] != cp.head_hash):
        problems.append(f"audit event {cp.seq}: " + ("is missing" if at is None else
                        f"its hash {at[0][:16]}… is not the checkpoint's {cp.head_hash[:16]}…"))
    if (report.head_seq, report.head_hash) != (cp.seq, cp.head_hash):
        problems.append(f"the restored chain ends at event {report.head_seq}, the checkpoint at event {cp.seq}")
    head = Check("chain head", problems, f"event {cp.seq} {cp.head_hash[:16]}… as signed at {cp.at}")
    return chain, head


def _counts_check(found: dict[str, int], recorded: dict[str, int]) -> Check:
    problems = [f"table {name}: {found.get(name, 'absent')} rows restored, {recorded.get(name, 'absent')} recorded"
                for name in sorted(set(found) | set(recorded)) if found.get(name) != recorded.get(name)]
    return Check("rows", problems, f"{len(found)} tables, {sum(found.values())} rows")


def restore(settings: Settings, path: Path, checkpoint_path: Path | None, public_text: str | None) -> Restored:
    """Restore the backup into the empty database the settings name and check it against its checkpoint.

    Refusals (BackupProblem, code 1) change nothing. Once the target was found empty, every check is
    run and reported, even after one failed: an edited backup is restored, so that `verify` can
    name the edited event, and the report says FAILED."""
    if not path.is_file():
        raise BackupProblem(f"{path} does not exist or is not a file")
    try:
        engine = kind_of(path)
    except OSError as exc:
        raise BackupProblem(f"{path} cannot be read ({exc.strerror})") from None
    if engine is None:
        raise BackupProblem(f"{path} is neither a SQLite database nor a pg_dump custom archive: not a cellbench "
                            "backup (or its first bytes were damaged)", 2)
    url = settings.url
    target_engine = "sqlite" if url.startswith("sqlite") else "postgresql"
    if engine != target_engine:
        raise BackupProblem(f"{path} is a {ENGINE_NAMES[engine]} backup but the target database {_shown(url)} is "
                            f"{ENGINE_NAMES[target_engine]}: restore it into a {ENGINE_NAMES[engine]} database")
    recorded = manifest.read(checkpoint_path or manifest.checkpoint_path(path))
    try:
        public = public_text or signing_key(settings).public_text
        signed = manifest.signature_problems(recorded, public)
    except KeyProblem as exc:
        raise BackupProblem(str(exc), 2) from None
    _target_is_empty(url, engine)

    result = Restored(path, _shown(url), engine, recorded)
    result.checks.append(Check("checkpoint", signed, f"signed by key {recorded.checkpoint.key_id}"))
    result.checks.append(_file_check(path, engine, recorded))
    try:
        if engine == "sqlite":
            sqlite.copy_in(path, Path(make_url(url).database or ""))
        else:
            postgres.restore(url, path)
    except BackupProblem as exc:
        result.checks.append(Check("restore", [exc.message]))
        return result
    restored = Database(url)
    try:
        result.checks.extend(_chain_check(restored, recorded.checkpoint, public))
        held = sqlite.contents(Path(restored.sqlite_path() or "")) if engine == "sqlite" else postgres.contents(url)
        result.schema_current = schema_is_current(restored)
    except BackupProblem as exc:
        result.checks.append(Check("restored database", [exc.message]))
        return result
    except (SQLAlchemyError, sqlite3.Error, psycopg.Error) as exc:
        # What was restored is not a cellbench database this version can read: a failure to report, not a traceback.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result.checks.append(Check("restored database", [f"cannot be read as a cellbench database ({first})"]))
        return result
    finally:
        restored.dispose()
    result.tables = held.tables
    result.checks.append(_counts_check(held.tables, recorded.tables))
    return result


def private(path: Path) -> bool:
    return mode_of(path) == 0o600
