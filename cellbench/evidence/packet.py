"""What every evidence packet is made of and how it is sealed: named files, a manifest of their
SHA-256, and the manifest signed with the checkpoint key, so that replacing any file, even with the
manifest updated, is caught by the verifier shipped inside (verify_packet.py).

Blind-safe: nothing here reads the sealed compartment, so the blinded packet (site.py) uses it too.
"""
from __future__ import annotations

import enum
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlmodel import Session, SQLModel, col

from .. import checkpoints
from ..audit import HASHED_COLUMNS, Actor
from ..checkpoints import store as checkpoint_store
from ..clock import utcnow
from ..db import Database
from ..errors import DomainError
from ..models import AuditEvent, Signature, utc_text
from . import verify_packet

VERIFIER_SOURCE = Path(verify_packet.__file__)
# Built from the constant column names; the range is bound.
_SEGMENT = text(f"SELECT {', '.join(HASHED_COLUMNS)}, prev_hash, hash FROM audit_event "  # noqa: S608 - constants
                "WHERE seq BETWEEN :lo AND :hi ORDER BY seq")
# A fixed time inside the archive: the same packet content gives the same bytes (the build time is
# in the manifest, signed).
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class NoCheckpointKey(DomainError):
    status = 503


@dataclass
class Built:
    """A packet as the caller hands it out: its file name and its bytes."""

    name: str
    data: bytes


def _checkpoint_now(db: Database) -> checkpoints.Checkpoint:
    """A signed checkpoint of the chain's head now, kept in the database and the log like every one."""
    return checkpoint_store.issue(db, "evidence", signing_key())


def signing_key() -> checkpoints.Key:
    key = checkpoints.installed()
    if key is None:
        raise NoCheckpointKey("No checkpoint key is installed, so the packet cannot be signed: create one with "
                              "`cellbench keys init` (CELLBENCH_CHECKPOINT_KEY names its file).")
    return key


def plain(value: Any) -> Any:
    """A stored value as the packet's JSON writes it: times as cellbench stores them (UTC text)."""
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def row_dict(row: SQLModel, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    return {name: plain(getattr(row, name)) for name in type(row).model_fields if name not in leave_out}


def raw_events(session: Session, lo: int, hi: int) -> list[dict[str, Any]]:
    """The events lo..hi exactly as stored and hashed (no type processing), with their links."""
    names = (*HASHED_COLUMNS, "prev_hash", "hash")
    return [dict(zip(names, row, strict=True)) for row in session.execute(_SEGMENT, {"lo": lo, "hi": hi})]


def signature_dict(sig: Signature, *, blinded: bool = False) -> dict[str, Any]:
    """A signature with everything needed to recompute its hashes (the verifier's record_hash).
    Blinded: without its event's sequence number or the reason it was voided."""
    found = row_dict(sig, leave_out=("audit_seq", "invalidated_reason") if blinded else ())
    found["meaning"] = plain(sig.meaning)
    return found


def signatures_named_by(session: Session, events: list[AuditEvent], *, same_records: bool = True) -> list[Signature]:
    """The signatures the "signed" events name ("#<id> <record hash>"); with `same_records`, any
    other signature on the same records too (one with no event of its own is shown up by the
    verifier)."""
    ids = {int(e.new_value.split()[0][1:]) for e in events
           if e.action == "signed" and e.new_value and e.new_value.startswith("#") and e.new_value[1:2].isdigit()}
    found = {s.id: s for s in session.scalars(select(Signature).where(col(Signature.id).in_(sorted(ids) or [0])))}
    subjects = {(e.entity_type, e.entity_id) for e in events if e.action == "signed"} if same_records else set()
    for entity_type in sorted({t for t, _ in subjects}):
        entity_ids = sorted(i for t, i in subjects if t == entity_type)
        found.update((s.id, s) for s in session.scalars(select(Signature).where(
            col(Signature.entity_type) == entity_type, col(Signature.entity_id).in_(entity_ids))))
    return [found[i] for i in sorted(found, key=lambda i: i or 0)]


def to_json(value: Any) -> str:
    """Readable JSON; a list of records one record to a line (the chain segment is thousands)."""
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        lines = [json.dumps(v, ensure_ascii=False, sort_keys=True, default=plain) for v in value]
        return "[\n" + ",\n".join(lines) + "\n]\n"
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True, default=plain) + "\n"


@dataclass
class Packet:
    """The files of one packet, in the order they are listed; sealed into a ZIP by `seal`."""

    folder: str
    files: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, data: bytes | str) -> None:
        self.files[name] = data.encode("utf-8") if isinstance(data, str) else data

    def add_json(self, name: str, value: Any) -> None:
        self.add(name, to_json(value))

    def seal(self, key: checkpoints.Key, actor: Actor, kind: str, subject: str,
             checkpoint: checkpoints.Checkpoint | None = None) -> bytes:
        """The ZIP: every file, the verifier, the public key, the manifest and its signature."""
        self.add("verify_packet.py", VERIFIER_SOURCE.read_bytes())
        self.add(verify_packet.KEY_FILE, key.public_text + "\n")
        manifest = {
            "format": verify_packet.PACKET_PREFIX, "kind": kind, "subject": subject,
            "built_at": utc_text(utcnow()), "built_by": actor.name, "key_id": key.key_id,
            "checkpoint": ({"seq": checkpoint.seq, "head_hash": checkpoint.head_hash, "at": checkpoint.at}
                           if checkpoint else None),
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())},
        }
        manifest_bytes = to_json(manifest).encode("utf-8")
        signature = key.sign(verify_packet.packet_message(manifest_bytes))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in [*self.files.items(), (verify_packet.MANIFEST, manifest_bytes),
                               (verify_packet.PACKET_SIGNATURE, (signature + "\n").encode())]:
                info = zipfile.ZipInfo(f"{self.folder}/{name}", date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
        return out.getvalue()
