"""The `cellbench` command line: serve, init, demo, verify, backup and restore, evidence, keys and
user management. Each part registers its commands on the one Typer app (`base.app`)."""
from __future__ import annotations

import sys

from . import people, records, server
from .base import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
