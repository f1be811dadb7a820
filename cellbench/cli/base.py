"""What every command shares: the Typer apps, settings, the checked database, the key, one-line failures."""
from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import typer
from sqlalchemy.engine import make_url
from sqlmodel import Session

from .. import checkpoints, clock, startup, users
from ..checkpoints import store as checkpoint_store
from ..config import Settings
from ..db import Database
from ..errors import DomainError

app = typer.Typer(help="cellbench: batch record, release and blinded supply.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
users_app = typer.Typer(help="Create and manage user accounts.", no_args_is_help=True)
app.add_typer(users_app, name="users")
keys_app = typer.Typer(help="The checkpoint key that signs the audit chain (kept outside the database).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:
        _fail(f"bad setting: {exc}")


def _database(settings: Settings, *, require_schema: bool = True) -> Database:
    """The database, once startup.problem finds nothing wrong with it (else one line and exit 1):
    before anything reads or writes it, so a damaged or newer database is never changed. Every
    command reads every page for damage first (quick_check: about 0.8 s for a 380 MB file)."""
    users.configure(settings.password_min_length, settings.max_failed_logins, **users.signin_settings(settings))
    clock.configure(settings.zone)
    db = Database(settings.url, wal_limit_mb=settings.sqlite_wal_limit_mb)
    if found := startup.problem(db, require_schema=require_schema):
        db.dispose()
        _fail(found)
    return db


def _install_key(settings: Settings, *, required: bool = False, create: bool = False) -> None:
    """Sign with the checkpoint key from here on: the demo creates it if missing; a command that
    writes uses it if the file exists (without it, the head it leaves is unsigned and verify says so);
    the server requires it."""
    path = settings.checkpoint_key_path
    if not (create or required or path.exists()):
        return
    try:
        checkpoint_store.install_key(path, create_missing=create)
    except checkpoints.KeyProblem as exc:
        _fail(str(exc))


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"cellbench: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _run(fn: Callable[[Session], object]) -> None:
    """Run one use case in one transaction; print a domain error as a clear message."""
    settings = _settings()
    _install_key(settings)
    db = _database(settings)
    try:
        with db.write() as session:
            fn(session)
    except DomainError as exc:
        where = f" ({exc.field})" if exc.field else ""
        _fail(f"{exc.message}{where}")

