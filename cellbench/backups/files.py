"""Files that hold the whole record (backups and their checkpoints): private from the first byte."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

PRIVATE = 0o600
_CHUNK = 1 << 20


def create_private(path: Path) -> int:
    """A new file, mode 0600 before anything is written to it; an existing file is never replaced.
    Returns the open descriptor (write-only)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    os.fchmod(fd, PRIVATE)  # a default ACL on the folder may have widened the mode asked for
    return fd


def write_private(path: Path, data: bytes) -> None:
    fd = create_private(path)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


def digest(path: Path) -> tuple[int, str]:
    """The file's size and SHA-256, read in chunks (a backup may be larger than memory)."""
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def kind_of(path: Path) -> str | None:
    """"sqlite" or "postgresql" from the file's first bytes (SQLite's header, pg_dump's custom
    archive); None for anything else."""
    with path.open("rb") as source:
        start = source.read(16)
    if start.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if start.startswith(b"PGDMP"):
        return "postgresql"
    return None
