"""Helpers of the evidence tests: a checkpoint key for the module, a packet unzipped into a folder, the
verifier run as an inspector runs it (a separate Python process, on the unzipped folder), and the
tamperer who edits a file and writes the manifest again."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from cellbench.db import Database
from cellbench.models import AuditEvent


def unzip(data: bytes, into: Path) -> Path:
    """The packet's folder (the archive holds one)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(into)
        (top,) = {name.split("/", 1)[0] for name in archive.namelist()}
    return into / top


def verify(folder: Path, *args: str, packet: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The packet's own verifier, run by this venv's Python in isolated mode (nothing of cellbench on
    its path), on the folder or on `packet` (a .zip)."""
    argv = [sys.executable, "-I", str(folder / "verify_packet.py"), str(packet or folder), *args]
    return subprocess.run(argv,
                          capture_output=True, text=True, timeout=120, check=False, cwd=folder)


def read_json(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def write_json(folder: Path, name: str, value: Any) -> None:
    (folder / name).write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")


def rewrite_manifest(folder: Path) -> None:
    """What a careful tamperer does next: every file's SHA-256 written into the manifest again."""
    manifest = read_json(folder, "MANIFEST.json")
    manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in manifest["files"]}
    write_json(folder, "MANIFEST.json", manifest)


def events_named(db: Database, action: str) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)) or 0
