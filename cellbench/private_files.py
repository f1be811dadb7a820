"""Files that hold the whole record (the SQLite database, backups and their checkpoints): private
from the first byte. The database file holds the sealed lists and the password hashes, so it is no
more world-readable than a backup of it; SQLite gives its -wal and -shm the database file's mode."""
from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600


def create_private(path: Path | str) -> int:
    """A new file, mode 0600 before anything is written to it; an existing file is never replaced.
    Returns the open descriptor (write-only)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    os.fchmod(fd, PRIVATE)  # a default ACL on the folder may have widened the mode asked for
    return fd


def create_private_if_missing(path: Path | str) -> None:
    """An empty private file where none is (SQLite takes an empty file for a new database)."""
    try:
        os.close(create_private(path))
    except FileExistsError:
        pass  # the database is there already: its mode is its owner's choice
    except OSError:
        pass  # a folder we may not write: startup.file_problem names it, with its fix
