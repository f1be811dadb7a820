"""The checkpoint key and log of each database bench/pages.py builds or reuses.

One key and its log (checkpoints.jsonl beside the key) serve one database (cellbench/checkpoints/
store.py): a log shared by two databases holds lines the other's chain never had, which `verify`
reports. So each database has a folder of its own in the --keep folder, named after it:
`<keep>/pages-1/` and `<keep>/pages-0.1/` beside `pages-1.db` and `pages-0.1.db` (on PostgreSQL the
database's name), each with its key and its log.

A folder kept before (one checkpoint.key and one checkpoints.jsonl beside both databases) is split on
a database's first reuse: its folder gets a copy of that key (its checkpoints are signed with it)
and the log's lines of the checkpoints the database keeps. The shared files are left as they were.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import make_url

from cellbench import checkpoints
from cellbench.checkpoints import store
from cellbench.db import Database


def folder_of(keep: Path, url: str) -> Path:
    """The database's own folder: the SQLite file's name without `.db`, or the PostgreSQL database's name."""
    name = make_url(url).database or "database"
    return keep / (Path(name).stem if url.startswith("sqlite") else name)


def install(keep: Path, db: Database, *, built: bool) -> checkpoints.Key:
    """Install the database's own key (created if it has none; split from an old shared one if the
    database was built with it) and return it: its checkpoints are logged beside it."""
    own = folder_of(keep, db.url)
    path = own / checkpoints.KEY_FILE_NAME
    shared = keep / checkpoints.KEY_FILE_NAME
    if not path.exists() and built and shared.exists():
        split(shared, own, db)
    key = checkpoints.load(path) if path.exists() else checkpoints.create(path)
    checkpoints.install(key)
    return key


def _write(path: Path, data: bytes) -> None:
    """The file whole or not at all (written aside, then renamed), readable by its owner only."""
    aside = path.with_name(path.name + ".new")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(aside, path)


def split(shared_key: Path, own: Path, db: Database) -> int:
    """The shared key copied into the database's folder, with the lines of the shared log whose
    checkpoint (event and head hash) the database keeps; returns how many lines."""
    with db.engine.connect() as conn:
        kept = {(seq, digest) for seq, digest in conn.exec_driver_sql("SELECT seq, head_hash FROM checkpoint")}
    lines = []
    for _number, line in store.logged(shared_key.parent / store.LOG_NAME):
        try:
            logged = json.loads(line)
        except ValueError:
            continue
        if (logged.get("seq"), logged.get("head_hash")) in kept:
            lines.append(line + "\n")
    own.mkdir(parents=True, exist_ok=True)
    _write(own / store.LOG_NAME, "".join(lines).encode())
    _write(own / checkpoints.KEY_FILE_NAME, shared_key.read_bytes())  # last: a key is never without its log
    return len(lines)
