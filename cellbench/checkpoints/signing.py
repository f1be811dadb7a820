"""What is signed: the chain head at every write, and checkpoints of (sequence, head hash, time).

The messages are plain, versioned text so that a verifier written in a few lines of any language
(the evidence packet's verifier, a monitor's own script) can rebuild them exactly.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from ..clock import utcnow
from ..models import utc_text
from .keys import Key, KeyProblem, public_from_text, signature_holds

HEAD_PREFIX = "cellbench head v1"
CHECKPOINT_PREFIX = "cellbench checkpoint v1"


def head_message(seq: int, head_hash: str) -> bytes:
    return f"{HEAD_PREFIX}\n{seq}\n{head_hash}".encode()


def checkpoint_message(seq: int, head_hash: str, at: str) -> bytes:
    return f"{CHECKPOINT_PREFIX}\n{seq}\n{head_hash}\n{at}".encode()


def sign_head(key: Key, seq: int, head_hash: str) -> str:
    return key.sign(head_message(seq, head_hash))


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: at `at` (UTC text), the audit chain ended at event `seq` with `head_hash`."""

    seq: int
    head_hash: str
    at: str
    key_id: str
    signature: str

    @property
    def message(self) -> bytes:
        return checkpoint_message(self.seq, self.head_hash, self.at)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def short(self) -> str:
        """One line for a PDF footer or a terminal: enough to check against the chain by hand."""
        return f"checkpoint {self.seq} {self.head_hash[:16]}… {self.at} key {self.key_id}"


def make(key: Key, seq: int, head_hash: str, at: datetime | None = None) -> Checkpoint:
    moment = utc_text(at or utcnow())
    return Checkpoint(seq, head_hash, moment, key.key_id, key.sign(checkpoint_message(seq, head_hash, moment)))


def from_json(text: str) -> Checkpoint:
    """A checkpoint as written by `to_json` (a backup's `.checkpoint` file, `verify --checkpoint`)."""
    try:
        data = json.loads(text)
        cp = Checkpoint(int(data["seq"]), str(data["head_hash"]), str(data["at"]), str(data["key_id"]),
                        str(data["signature"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyProblem(f"not a cellbench checkpoint ({exc}): give the JSON that cellbench wrote") from None
    return cp


def why_invalid(public_text: str, cp: Checkpoint) -> str | None:
    """Why this checkpoint was not signed by this public key's owner, or None."""
    public = public_from_text(public_text)
    if not signature_holds(public, cp.message, cp.signature):
        return f"checkpoint at event {cp.seq} ({cp.at}): its signature does not hold for this key"
    return None
