"""The `.checkpoint` file written beside every backup.

It holds two signatures by the checkpoint key. The first is an ordinary checkpoint of the chain
head the backup contains (`checkpoints.make`), written flat at the top level so that anything that
reads a checkpoint (`checkpoints.from_json`, `verify --checkpoint`) reads this file as one. The
second covers what the backup is: its engine, size, SHA-256, schema revision and the rows of every
table, bound to that checkpoint. Without the key nobody can edit the backup, its counts or its head
and write a matching file; with only the public key anybody can check it.
"""
from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..checkpoints import Checkpoint, Key, KeyProblem, from_json, key_id_of, why_invalid
from ..checkpoints.keys import public_from_text, signature_holds
from .files import write_private

SUFFIX = ".checkpoint"
BACKUP_PREFIX = "cellbench backup v1"


class BackupProblem(Exception):
    """One line that says what is wrong and what to do; `code` is the command line's exit code
    (1: refused, nothing done; 2: a check failed)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class Contents:
    """What a backup holds, read from the backup itself (or from a restored database)."""

    engine: str
    head_seq: int
    head_hash: str
    last_event: tuple[int, str] | None  # (seq, hash) of the newest audit event, None if there is none
    tables: dict[str, int]
    schema: str | None  # the alembic revision

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def head_problem(self) -> str | None:
        """The head row must name the newest event: otherwise the chain was cut or added to by hand."""
        newest = self.last_event or (0, self.head_hash if self.head_seq == 0 else "")
        if newest != (self.head_seq, self.head_hash):
            return (f"the chain head records event {self.head_seq} but the newest event is {newest[0]}: "
                    "run `cellbench verify` on the database")
        return None


@dataclass(frozen=True)
class Manifest:
    checkpoint: Checkpoint
    engine: str
    size: int
    sha256: str
    tables: dict[str, int]
    schema: str | None
    file: str  # the name the backup was written under (not signed: a backup may be renamed)
    signature: str

    def to_json(self) -> str:
        data = {**asdict(self.checkpoint),
                "backup": {"file": self.file, "engine": self.engine, "bytes": self.size, "sha256": self.sha256,
                           "schema": self.schema, "tables": self.tables},
                "backup_signature": self.signature}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def backup_message(cp: Checkpoint, engine: str, size: int, sha256: str, schema: str | None,
                   tables: dict[str, int]) -> bytes:
    lines = [BACKUP_PREFIX, engine, str(size), sha256, schema or "", str(cp.seq), cp.head_hash, cp.at,
             *(f"{name}={count}" for name, count in sorted(tables.items()))]
    return "\n".join(lines).encode()


def make(key: Key, cp: Checkpoint, contents: Contents, size: int, sha256: str, file: str) -> Manifest:
    signature = key.sign(backup_message(cp, contents.engine, size, sha256, contents.schema, contents.tables))
    return Manifest(cp, contents.engine, size, sha256, dict(contents.tables), contents.schema, file, signature)


def checkpoint_path(backup: Path) -> Path:
    return backup.with_name(backup.name + SUFFIX)


def write(path: Path, manifest: Manifest) -> None:
    write_private(path, manifest.to_json().encode())


def read(path: Path) -> Manifest:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BackupProblem(f"{path} is missing: a backup is restored and proven only with the signed checkpoint "
                            "written beside it (give it with --checkpoint if it is kept elsewhere)", 2) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupProblem(f"{path} cannot be read ({exc})", 2) from None
    try:
        cp = from_json(text)
        data = json.loads(text)
        backup = data["backup"]
        tables = {str(name): int(count) for name, count in backup["tables"].items()}
        return Manifest(cp, str(backup["engine"]), int(backup["bytes"]), str(backup["sha256"]), tables,
                        None if backup.get("schema") is None else str(backup["schema"]), str(backup.get("file", "")),
                        str(data["backup_signature"]))
    except (KeyProblem, ValueError, KeyError, TypeError, AttributeError):
        raise BackupProblem(f"{path} is not a backup's checkpoint as `cellbench backup` writes it "
                            "(edited, truncated or another file)", 2) from None


def signature_problems(manifest: Manifest, public_text: str) -> list[str]:
    """Why the checkpoint file was not written by the holder of this key for this backup, if it was not."""
    cp = manifest.checkpoint
    public = public_from_text(public_text)
    problems: list[str] = []
    key_id = key_id_of(base64.b64decode(public_text.strip()))
    if cp.key_id != key_id:
        problems.append(f"the checkpoint names key {cp.key_id}, but the key it is checked with is {key_id}")
    why = why_invalid(public_text, cp)
    if why:
        problems.append(why)
    message = backup_message(cp, manifest.engine, manifest.size, manifest.sha256, manifest.schema, manifest.tables)
    if not signature_holds(public, message, manifest.signature):
        problems.append("the backup's record in the checkpoint file (size, SHA-256, rows per table) does not hold "
                        "its signature: the checkpoint file was edited")
    return problems
