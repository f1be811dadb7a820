"""What `verify` adds with the checkpoint key: the chain head was signed by the key, and every
checkpoint (the database's rows, the log beside the key, the files given) was signed by it and
agrees with the chain.

A database owner can re-hash every event and move the head; they cannot sign. So a rewrite, an
appended event or a truncated tail leaves a head whose signature does not hold, or checkpoints
whose hash is not the chain's at their event, or checkpoints past the chain's end. Only the
public key is needed: `verify --public-key` checks a copy with nothing secret at hand.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import SQLModel

from ..models import AuditCheckpoint, AuditEvent, AuditHead
from . import signing, store
from .keys import KeyProblem, installed, key_id_of, public_from_text, signature_holds

if TYPE_CHECKING:
    from ..db import Database

GENESIS_HASH = "0" * 64  # audit.GENESIS_HASH (not imported: audit imports this package)
_HEAD = SQLModel.metadata.tables[AuditHead.__tablename__]
_ROWS = SQLModel.metadata.tables[AuditCheckpoint.__tablename__]
_EVENTS = SQLModel.metadata.tables[AuditEvent.__tablename__]
_CHUNK = 500  # sequence numbers per look-up of their events' hashes


def problems(db: Database, head_seq: int, head_hash: str, given: Iterable[signing.Checkpoint] = (), *,
             public_key: str | None = None, logs: Sequence[Path] | None = None) -> list[str]:
    """What does not hold, in words. `public_key` (base64, `cellbench keys public`) defaults to the
    installed key's; `logs` to the installed key's log file. `head_seq`/`head_hash`: the chain's
    end as the chain check read it (a checkpoint past it means the tail was cut)."""
    key = installed()
    text = public_key or (key.public_text if key is not None else None)
    if text is None:
        return ["no checkpoint key to check the chain head and the checkpoints against: install it "
                "(CELLBENCH_CHECKPOINT_KEY) or give its public key (--public-key)"]
    try:
        public = public_from_text(text)
    except KeyProblem as exc:
        return [str(exc)]
    key_id = key_id_of(public.public_bytes_raw())
    if logs is None:
        logs = [store.log_path(key)] if key is not None and not public_key else []

    found: list[str] = []
    with db.engine.connect() as conn:
        seq, hashed, signature = conn.execute(select(_HEAD.c.seq, _HEAD.c.hash, _HEAD.c.signature)
                                              .where(_HEAD.c.id == 1)).one()
        if signature is None and seq > 0:
            found.append(f"the chain head (event {seq}) is not signed by the checkpoint key: it was written "
                         "without the key, or set by hand")
        elif signature is not None and not signature_holds(public, signing.head_message(seq, hashed), signature):
            found.append(f"the chain head (event {seq}) does not carry the checkpoint key's signature: the head "
                         "was moved outside cellbench (events appended, rewritten or cut off)")
        checkpoints: dict[signing.Checkpoint, str] = {}  # each distinct checkpoint, with where it was found
        for row in conn.execute(select(_ROWS).order_by(_ROWS.c.id)):
            cp = signing.Checkpoint(row.seq, row.head_hash, row.at, row.key_id, row.signature)
            checkpoints.setdefault(cp, f"checkpoint row {row.id}")
        for path in logs:
            for number, line in store.logged(path):
                try:
                    checkpoints.setdefault(signing.from_json(line), f"{path.name} line {number}")
                except KeyProblem:
                    found.append(f"{path} line {number} is not a checkpoint: the log was altered")
        for cp in given:
            checkpoints.setdefault(cp, "the checkpoint given")
        hashes = _hashes(conn, sorted({cp.seq for cp in checkpoints}))

    for cp, where in checkpoints.items():
        said = f"{where} (event {cp.seq} at {cp.at})"
        if cp.key_id != key_id or not signature_holds(public, cp.message, cp.signature):
            found.append(f"{said}: its signature does not hold for the checkpoint key {key_id}: "
                         "cellbench did not make it with this key")
        elif cp.seq == 0 or cp.seq in hashes:
            if cp.head_hash != (hashes[cp.seq] if cp.seq else GENESIS_HASH):
                found.append(f"{said}: the chain's hash at event {cp.seq} is not the one signed: "
                             f"events up to {cp.seq} were rewritten")
        elif cp.seq > head_seq:
            found.append(f"{said}: the chain ends at event {head_seq}, before this checkpoint: "
                         "its tail was cut off")
        else:
            found.append(f"{said}: event {cp.seq} is missing")
    return found


def _hashes(conn, seqs: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for start in range(0, len(seqs), _CHUNK):
        wanted = seqs[start:start + _CHUNK]
        found.update((seq, hashed) for seq, hashed in conn.execute(
            select(_EVENTS.c.seq, _EVENTS.c.hash).where(_EVENTS.c.seq.in_(wanted))))
    return found
