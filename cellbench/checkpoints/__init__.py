"""Checkpoints a database owner cannot forge: an Ed25519 key outside the database signs the audit
chain head and periodic checkpoints (keys.py: the key file; signing.py: what is signed)."""
from __future__ import annotations

from .head import head_signature
from .keys import KEY_FILE_NAME, Key, KeyProblem, create, install, installed, key_id_of, load, public_from_text
from .signing import Checkpoint, checkpoint_message, from_json, head_message, make, sign_head, why_invalid

__all__ = ["KEY_FILE_NAME", "Checkpoint", "Key", "KeyProblem", "checkpoint_message", "create", "from_json",
           "head_message", "head_signature", "install", "installed", "key_id_of", "load", "make", "public_from_text",
           "sign_head", "why_invalid"]
