"""Files that hold the whole record (backups and their checkpoints): private from the first byte."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..private_files import PRIVATE, create_private

_CHUNK = 1 << 20
__all__ = ["PRIVATE", "create_private"]  # and this module's own, below


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
