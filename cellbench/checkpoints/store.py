"""Issuing checkpoints: a signed (sequence, head hash, time) kept in the database and in a log file
beside the key.

The row lets anyone with the database list them; the log line is what a database owner cannot
undo: deleting rows (and the events after them) leaves the log's later checkpoints pointing past
the chain's end, which `verify` reports. So `issue` appends each checkpoint to
`<key dir>/checkpoints.jsonl` and fsyncs it. One key and its log serve one database (and the copies
restored from its backups).

When: at every backup (the backup command), every evidence packet, every QA review and every
certificate (`after_commit`, from signatures.sign: only once the signature's transaction commits),
every hour the chain moved (the served app's background task), and on demand (`cellbench checkpoint`).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, event, func, insert, select
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import SQLModel

from ..models import AuditCheckpoint, AuditEvent, AuditHead
from . import signing
from .keys import Key, KeyProblem, create, install, installed, load

if TYPE_CHECKING:
    from ..db import Database

log = logging.getLogger("cellbench")
LOG_NAME = "checkpoints.jsonl"
REASONS = ("backup", "qa review", "certificate", "hourly", "evidence", "manual")
HOURLY_SECONDS = 3600
# Signatures whose commit is followed by a checkpoint (signatures.sign calls after_signature).
WHY_BY_SIGNED = {"lot_review": "qa review", "audit_review": "qa review", "lot_decision": "certificate"}

_TABLE = SQLModel.metadata.tables[AuditCheckpoint.__tablename__]
_HEAD = SQLModel.metadata.tables[AuditHead.__tablename__]
_EVENT = SQLModel.metadata.tables[AuditEvent.__tablename__]
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)
_LATEST_SEQ = select(func.max(_TABLE.c.seq))
_DUE = "cellbench_checkpoint_due"  # in Session.info: the reason a checkpoint is due at commit
_log_lock = threading.Lock()


def install_key(path: Path, *, create_missing: bool = False) -> Key:
    """Load the key file (creating it first if it is missing and `create_missing`: the demo) and
    make it the key this process signs with. KeyProblem names what is wrong and the fix."""
    key = create(path) if create_missing and not path.exists() else load(path)
    install(key)
    return key


def log_path(key: Key) -> Path:
    return key.path.parent / LOG_NAME


def _key() -> Key:
    key = installed()
    if key is None:
        raise KeyProblem("no checkpoint key is installed: create one with `cellbench keys init`")
    return key


def issue(db: Database, why: str, key: Key | None = None) -> signing.Checkpoint:
    """A checkpoint of the chain head now, in its own short transaction, then logged beside the key."""
    key = key or _key()
    with db.write_connection() as conn:
        cp = _issue_on(conn, key, why)
    _append(key, cp, why)
    return cp


def issue_for(db: Database, seq: int, head_hash: str, why: str, key: Key | None = None) -> signing.Checkpoint:
    """A checkpoint of a head the chain passed through (a backup's: the live head has moved on by
    the time the copy is read), stored and logged like any other. The live chain must hold exactly
    that hash at that event: a checkpoint is never signed for a chain cellbench does not have."""
    key = key or _key()
    with db.write_connection() as conn:
        if seq == 0:
            found: str | None = "0" * 64  # audit.GENESIS_HASH (audit imports this package)
        else:
            found = conn.execute(select(_EVENT.c.hash).where(_EVENT.c.seq == seq)).scalar()
        if found != head_hash:
            raise KeyProblem(f"the chain here does not hold {head_hash[:16]}… at event {seq}: not signed")
        cp = _issue_on(conn, key, why, (seq, head_hash))
    _append(key, cp, why)
    return cp


def stored(db: Database) -> list[signing.Checkpoint]:
    """Every checkpoint kept in the database, oldest first."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(_TABLE.c.seq, _TABLE.c.head_hash, _TABLE.c.at, _TABLE.c.key_id,
                                   _TABLE.c.signature).order_by(_TABLE.c.seq, _TABLE.c.id)).all()
    return [signing.Checkpoint(*row) for row in rows]


_AT_MOST = 500  # sequence numbers per look-up of the checkpoints kept at them


def kept_at(session: Session | Connection, seqs: list[int]) -> list[signing.Checkpoint]:
    """The checkpoints kept at these events, by sequence (each one, where several share an event),
    along the sequence index: what an evidence packet's pieces start after and end at."""
    found: list[signing.Checkpoint] = []
    wanted = sorted(set(seqs))
    for start in range(0, len(wanted), _AT_MOST):
        found += [signing.Checkpoint(*row) for row in session.execute(
            select(_TABLE.c.seq, _TABLE.c.head_hash, _TABLE.c.at, _TABLE.c.key_id, _TABLE.c.signature)
            .where(_TABLE.c.seq.in_(wanted[start:start + _AT_MOST])).order_by(_TABLE.c.seq, _TABLE.c.id))]
    return found


def issue_if_moved(db: Database, why: str = "hourly") -> signing.Checkpoint | None:
    """A checkpoint only if the chain moved past the latest one (the hourly task: an idle night
    leaves no string of identical checkpoints). None when nothing moved or no key is installed."""
    key = installed()
    if key is None:
        return None
    with db.write_connection() as conn:
        seq = conn.execute(_READ_HEAD).one()[0]
        latest = conn.execute(_LATEST_SEQ).scalar()
        if seq == 0 or (latest is not None and latest >= seq):
            return None
        cp = _issue_on(conn, key, why)
    _append(key, cp, why)
    return cp


def _issue_on(conn: Connection, key: Key, why: str, head: tuple[int, str] | None = None) -> signing.Checkpoint:
    if why not in REASONS:
        raise ValueError(f"a checkpoint's reason is one of {', '.join(REASONS)}, not {why!r}")
    seq, head_hash = head or conn.execute(_READ_HEAD).one()
    cp = signing.make(key, seq, head_hash)
    conn.execute(insert(_TABLE).values(seq=cp.seq, head_hash=cp.head_hash, at=cp.at, key_id=cp.key_id,
                                       signature=cp.signature, why=why))
    return cp


def _append(key: Key, cp: signing.Checkpoint, why: str) -> None:
    log_all(key, [(cp, why)])


def log_all(key: Key, kept: list[tuple[signing.Checkpoint, str]]) -> None:
    """Checkpoints (with why) as JSON lines beside the key, in one append and one fsync (O_APPEND:
    several workers' lines never interleave)."""
    path = log_path(key)
    lines = "".join(json.dumps({**asdict(cp), "why": why}, sort_keys=True) + "\n" for cp, why in kept)
    with _log_lock:
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = memoryview(lines.encode())
            while data:  # a regular file takes it in one write; a short one is carried on, not lost
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:  # the file's name in its folder must survive a crash too
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)


def logged(path: Path) -> list[tuple[int, str]]:
    """The log's lines, numbered from 1 (blank lines skipped); none if there is no log."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


_latest_cache: dict[Path, tuple[tuple[int, int], signing.Checkpoint | None]] = {}


def latest_logged() -> signing.Checkpoint | None:
    """The newest checkpoint in the installed key's log, read from the file's end (cached while the
    file is unchanged): what a PDF footer prints, with no database at hand."""
    key = installed()
    if key is None:
        return None
    path = log_path(key)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    stamp = (stat.st_size, stat.st_mtime_ns)
    cached = _latest_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    with path.open("rb") as f:
        f.seek(max(0, stat.st_size - 4096))
        lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    found = None
    for line in reversed(lines):
        try:
            found = signing.from_json(line)
            break
        except KeyProblem:
            continue
    _latest_cache[path] = (stamp, found)
    return found


# --- after the caller's transaction commits -------------------------------------------------------


def after_commit(session: Session, why: str) -> None:
    """A checkpoint is due once this session's transaction commits; a rollback cancels it (a
    review that failed leaves no checkpoint). Several in one transaction make one checkpoint."""
    session.info.setdefault(_DUE, why)


def after_signature(session: Session, entity_type: str) -> None:
    """signatures.sign's hook: QA reviews and lot decisions (certifications) are checkpointed."""
    if (why := WHY_BY_SIGNED.get(entity_type)) is not None:
        after_commit(session, why)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.get_nested_transaction() is not None:  # a savepoint released: the transaction goes on
        return
    why = session.info.pop(_DUE, None)
    key = installed()
    if why is None or key is None:
        return
    # The caller's transaction is over and committed: a checkpoint that fails here is logged, never
    # turned into a failure of what was already saved. Its own transaction, on the session's engine
    # (on SQLite the caller's thread still holds the process's write lock, which is re-entrant).
    try:
        bind = session.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
        with engine.connect() as conn, conn.begin():
            cp = _issue_on(conn, key, why)
        _append(key, cp, why)
    except Exception:
        log.exception("the %s checkpoint after a commit failed; the next one covers the chain", why)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:
        session.info.pop(_DUE, None)
