"""The SQLite database holds the sealed lists and the password hashes: a new one is private to its
owner from its first byte, as a backup of it is, and so are its -wal and -shm."""
from __future__ import annotations

import os
import stat

from cellbench.db import Database, migrate


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_sqlite_database_and_its_journals_are_readable_by_their_owner_only(tmp_path):
    old = os.umask(0o022)  # the usual umask, which would give 0644
    try:
        db = Database(f"sqlite:///{tmp_path / 'cellbench.db'}")
        migrate(db)
        db.dispose()
    finally:
        os.umask(old)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert "cellbench.db" in made
    assert {name: _mode(tmp_path / name) for name in made} == dict.fromkeys(made, 0o600)


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path):
    path = tmp_path / "shared.db"
    Database(f"sqlite:///{path}").dispose()
    os.chmod(path, 0o640)  # e.g. a group that runs the backups
    migrate(db := Database(f"sqlite:///{path}"))
    db.dispose()
    assert _mode(path) == 0o640

