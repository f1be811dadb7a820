"""Backup and restore as one drill (`cellbench backup FILE`, `cellbench restore FILE`).

A backup is written with mode 0600 and a signed `.checkpoint` beside it that records the chain
head the backup itself holds, its SHA-256 and the rows of every table (manifest.py); a restore goes
only into an empty database and proves the restored database against that checkpoint (drill.py).
SQLite is copied with the online backup API (sqlite.py), PostgreSQL with pg_dump in the snapshot
whose head is signed (postgres.py).
"""
from __future__ import annotations

from .drill import Check, Restored, Written, backup, private, restore, signing_key
from .manifest import SUFFIX, BackupProblem, Contents, Manifest, checkpoint_path

__all__ = ["SUFFIX", "BackupProblem", "Check", "Contents", "Manifest", "Restored", "Written", "backup",
           "checkpoint_path", "private", "restore", "signing_key"]
