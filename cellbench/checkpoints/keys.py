"""The checkpoint key: an Ed25519 key pair kept in a file outside the database.

Whoever owns the database can rewrite every row and re-hash the whole audit chain; what they
cannot do without this file is sign. So the server signs the chain head at every write and signs
checkpoints of (sequence, head hash, time) at backups, reviews, certificates and every hour, and
`verify` checks them with the public key alone. The private key never enters the database, a log
or a page; the public key can be printed and kept on paper for offline checking.

The file is PEM (PKCS #8, unencrypted), mode 0600, created by `cellbench keys init`.
"""
from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE_NAME = "checkpoint.key"


class KeyProblem(ValueError):
    """The key file is missing, unreadable or not an Ed25519 key: one line that says which and the fix."""


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(raw_public: bytes) -> str:
    """A short, stable name for a public key (the first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True)
class Key:
    private: Ed25519PrivateKey
    path: Path

    @property
    def raw_public(self) -> bytes:
        return _raw_public(self.private.public_key())

    @property
    def public_text(self) -> str:
        """The public key as base64 of its 32 raw bytes: what `cellbench keys public` prints."""
        return base64.b64encode(self.raw_public).decode()

    @property
    def key_id(self) -> str:
        return key_id_of(self.raw_public)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode()


def public_from_text(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise KeyProblem("the public key is not 44 characters of base64 (32 bytes): "
                         "copy it again from `cellbench keys public`") from None


def signature_holds(public: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def create(path: Path) -> Key:
    """A new key pair in a new file (mode 0600 from the start: never readable by others, even briefly)."""
    if path.exists():
        raise KeyProblem(f"{path} exists: a checkpoint key is never overwritten (the old checkpoints need it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    return Key(private, path)


def load(path: Path) -> Key:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyProblem(f"the checkpoint key {path} does not exist: create it with `cellbench keys init` "
                         "(or set CELLBENCH_CHECKPOINT_KEY to where it is)") from None
    except OSError as exc:
        raise KeyProblem(f"the checkpoint key {path} cannot be read ({exc.strerror}): "
                         "give the server's user read access to it, and nobody else") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyProblem(f"{path} is not a checkpoint key (an unencrypted PEM Ed25519 key): "
                         "restore it from where you keep its copy") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyProblem(f"{path} holds a key of another kind: a checkpoint key is Ed25519")
    return Key(private, path)


# The key this process signs with (installed at start by the server and the command line, by the
# tests' conftest); None: nothing is signed, and `verify` reports an unsigned head as a problem.
_installed: Key | None = None
_lock = threading.Lock()


def install(key: Key | None) -> None:
    global _installed
    with _lock:
        _installed = key


def installed() -> Key | None:
    return _installed
