"""The `cellbench` command line: serve, init, demo, verify, backup and user management."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import typer
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url
from sqlmodel import Session

from . import backups, checkpoints, clock, demo_marker, integrity, notifications, startup, users
from . import demo as demo_data
from .checkpoints import KeyProblem
from .checkpoints import store as checkpoint_store
from .config import Settings
from .db import Database, migrate
from .errors import DomainError
from .evidence import lot as lot_packet
from .evidence import site as site_packet
from .supply import resupply as trigger

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


@app.command()
def init() -> None:
    """Create or upgrade the database to the latest schema."""
    settings = _settings()
    db = _database(settings, require_schema=False)
    migrate(db)
    typer.echo(f"database ready: {_shown(settings.url)}")


def _seed_demo(settings: Settings, db: Database) -> None:
    # The demo accounts' password is printed for everyone: hashing it at full argon2 cost protects
    # nothing and made the ~270 signatures of the demo data take 40 s instead of a few.
    users.configure(settings.password_min_length, settings.max_failed_logins,
                    PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    _install_key(settings, create=True)  # the demo's own key, in its data folder
    migrate(db)
    with db.write() as session:
        # The demo's users have published passwords: never added to a database holding real records.
        if not demo_marker.is_marked(session) and not demo_marker.is_empty(session):
            _fail(f"the database {_shown(settings.url)} holds records the demo did not create: the demo, with its "
                  "published passwords and key, runs only on a new database (set CELLBENCH_DATABASE_URL or "
                  "CELLBENCH_DATA_DIR to a new one)")
        demo_data.seed(session, users.cli_actor())
        demo_marker.mark(session, users.cli_actor())  # after: the demo's story starts before anything on the trail
    users.configure(settings.password_min_length, settings.max_failed_logins, **users.signin_settings(settings))
    # The demo's messages are delivered at once, to files under the data folder (the file transport
    # unless SMTP is set): the notifications page shows them sent.
    transport = notifications.transport_from(settings.model_copy(update={"demo": True}))
    if transport is not None:
        notifications.send_due(db, transport, notifications.Policy.of(settings), limit=1000)


@app.command()
def demo() -> None:
    """Add the demo data (users, specifications, donors, lots in every state) and print the credentials."""
    settings = _settings()
    _seed_demo(settings, _database(settings, require_schema=False))
    typer.echo(demo_data.credentials_text())


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for all)."),
          port: int = typer.Option(8000),
          demo: bool = typer.Option(False, "--demo", help="Create the schema and demo data, allow the demo key."),
          workers: int = typer.Option(1, help="Worker processes (PostgreSQL only; SQLite runs one)."),
          access_log: bool = typer.Option(True, help="Log every request (--no-access-log for benchmarks).")) -> None:
    """Run the web application."""
    import uvicorn

    settings = _settings()
    if settings.demo and not demo:
        _fail("CELLBENCH_DEMO is set in the environment, but demo mode comes only from `cellbench serve --demo`, "
              "which creates its own demo database: unset CELLBENCH_DEMO to serve this database")
    if demo:
        os.environ["CELLBENCH_DEMO"] = "true"  # worker processes read settings from the environment
        settings = settings.model_copy(update={"demo": True})
    if settings.is_sqlite and workers != 1:
        _fail("SQLite serves one worker process (its writers are serialised in-process); "
              "use PostgreSQL (CELLBENCH_DATABASE_URL) for more workers")
    db = _database(settings, require_schema=False)
    if demo:
        _seed_demo(settings, db)
        typer.echo(demo_data.credentials_text())
    try:
        settings.check_for_production(demo_database=demo_marker.is_demo_database(db))
    except ValueError as exc:
        _fail(str(exc))
    if found := startup.schema_problem(db, require_schema=True):
        _fail(found)
    _install_key(settings, required=True)  # its workers load it again (app.create_app)
    db.dispose()
    typer.echo(f"cellbench on http://{host}:{port}/  (database: {_shown(settings.url)})")
    uvicorn.run("cellbench.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", proxy_headers=True, access_log=access_log)


@app.command()
def verify(workers: int = typer.Option(0, help="Processes for the chain check (0: one per core, at most 4)."),
           checkpoint: list[Path] = typer.Option([], "--checkpoint", help="A checkpoint file (JSON) the chain must "
                                                 "agree with, e.g. a backup's; repeat for several."),
           public_key: str = typer.Option("", "--public-key", help="Check with this public key (`cellbench keys "
                                          "public`) instead of the key file's.")) -> None:
    """Recompute the audit chain and every signature, and check the chain head's signature and every
    checkpoint with the checkpoint key; exit non-zero naming what does not hold."""
    settings = _settings()
    _install_key(settings)
    given = []
    for path in checkpoint:
        try:
            given.append(checkpoints.from_json(path.read_text()))
        except (OSError, checkpoints.KeyProblem) as exc:
            _fail(f"{path}: {getattr(exc, 'strerror', None) or exc}")
    log = settings.checkpoint_key_path.parent / checkpoint_store.LOG_NAME
    started = time.perf_counter()
    report = integrity.verify(_database(settings), workers or None, given=given, public_key=public_key or None,
                              logs=[log] if log.exists() else [])
    elapsed = time.perf_counter() - started
    if report.ok:
        typer.echo(f"OK: {report.events} audit events and {report.signatures} signatures verified, "
                   f"{report.replayed} records replayed from their events and {report.custody} custody records "
                   f"matched; chain head {report.head_seq} {report.head_hash} signed by the checkpoint key; "
                   f"checked in {elapsed:.2f} s ({report.events / max(elapsed, 1e-9):,.0f} events/s)")
        return
    for problem in report.problems:
        typer.secho(f"FAILED: {problem}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def backup(path: Path = typer.Argument(..., help="New file to write the backup to (never overwritten).")) -> None:
    """Back up the database (SQLite: online copy; PostgreSQL: pg_dump custom format), mode 0600, with a
    signed checkpoint of the chain head it holds in FILE.checkpoint beside it."""
    settings = _settings()
    db = _database(settings)
    try:
        written = backups.backup(db, path, backups.signing_key(settings))
    except backups.BackupProblem as exc:
        _fail(exc.message, exc.code)
    except KeyProblem as exc:
        _fail(str(exc))
    finally:
        db.dispose()
    held, cp = written.contents, written.manifest.checkpoint
    typer.echo(f"backup written: {path} ({written.manifest.size} bytes, {held.engine}, mode 600)")
    typer.echo(f"checkpoint written: {written.checkpoint_path} (mode 600)")
    typer.echo(f"chain head: event {cp.seq} {cp.head_hash}, signed at {cp.at} by key {cp.key_id}")
    typer.echo(f"rows: {held.rows} in {len(held.tables)} tables")
    for name, count in sorted(held.tables.items()):
        typer.echo(f"  {name:<36} {count:>10}")
    typer.echo("Keep both files together; prove them with `cellbench restore FILE` into an empty database.")


@app.command()
def restore(path: Path = typer.Argument(..., help="The backup file written by `cellbench backup`."),
            checkpoint: Path = typer.Option(None, "--checkpoint", help="Its checkpoint, if not FILE.checkpoint."),
            public_key: str = typer.Option("", "--public-key",
                                           help="Check with this public key (`cellbench keys public`) instead of "
                                                "the checkpoint key file.")) -> None:
    """Restore a backup into the empty database the settings name, verify it against its signed
    checkpoint and compare the rows of every table; exit 0 (OK) or 2 (FAILED)."""
    settings = _settings()
    users.configure(settings.password_min_length, settings.max_failed_logins, **users.signin_settings(settings))
    clock.configure(settings.zone)
    try:
        restored = backups.restore(settings, path, checkpoint, public_key or None)
    except backups.BackupProblem as exc:
        _fail(exc.message, exc.code)
    typer.echo(f"restore of {path} ({restored.engine}) into {restored.target}:")
    recorded = restored.recorded.tables
    for name, count in sorted(restored.tables.items()):
        note = "" if recorded.get(name) == count else f"   (the backup recorded {recorded.get(name, 'none')})"
        typer.echo(f"  {name:<36} {count:>10}{note}")
    for check in restored.checks:
        if check.ok:
            typer.echo(f"OK      {check.name}: {check.detail}")
        for problem in check.problems:
            typer.secho(f"FAILED  {check.name}: {problem}", fg=typer.colors.RED, err=True)
    if not restored.ok:
        _fail(f"FAILED: {restored.target} is not a proven copy of the backup; do not serve it", 2)
    cp = restored.recorded.checkpoint
    typer.echo(f"OK: the restored database is the backup of event {cp.seq} signed at {cp.at}, "
               f"with the same {sum(recorded.values())} rows in {len(recorded)} tables")
    if not restored.schema_current:
        typer.echo(f"The backup's schema is revision {restored.recorded.schema}: run `cellbench init` to upgrade the "
                   "restored database before serving it.")


@app.command()
def evidence(lot: str = typer.Argument(..., help="The lot number; with --blinded, the blinded lot's code."),
             out: Path | None = typer.Option(None, "--out", help="File to write (default: evidence-LOT.zip here)."),
             blinded: bool = typer.Option(False, "--blinded", help="The blinded lot's packet, for the trial site."),
             as_user: str = typer.Option(..., "--as", help="Who asks: a QA or QP user (with --blinded: a pharmacist, "
                                                            "investigator or monitor); the packet is theirs."),
             password: str = typer.Option(..., prompt=True, hide_input=True, envvar="CELLBENCH_PASSWORD",
                                          help="That user's password (asked for, or CELLBENCH_PASSWORD).")) -> None:
    """Build a lot's evidence packet (a ZIP that proves itself offline); its building is audited.

    The command line acts for a named user, signed in again: the packet holds what that person may
    read (unblinded for QA and the QP, the blinded view for the site), and the audit trail names them."""
    settings = _settings()
    db = _database(settings)
    target = out or Path(f"evidence-{lot.strip().upper() if blinded else lot.strip()}.zip")
    if target.exists():  # before building: a refused packet leaves no "built" event behind
        _fail(f"{target} exists; choose a new file (--out) so no packet is overwritten")
    if checkpoints.installed() is None:
        try:
            checkpoints.install(checkpoints.load(settings.checkpoint_key_path))
        except checkpoints.KeyProblem as exc:
            _fail(str(exc))
    try:
        with db.write() as session:
            user = users.by_username(session, as_user)
            users.reauthenticate(session, user, password)
            actor = users.actor(session, user)
        built = (site_packet.build(db, actor, lot) if blinded else
                 lot_packet.build(db, actor, lot, zone=settings.zone,
                                  authorisation=settings.manufacturing_authorisation))
    except DomainError as exc:
        _fail(exc.message + (f" ({exc.field})" if exc.field else ""))
    try:
        with target.open("xb") as file:  # never overwrites: a packet handed out stays as it was
            file.write(built.data)
    except FileExistsError:
        _fail(f"{target} exists; choose a new file (--out) so no packet is overwritten")
    typer.echo(f"evidence packet written to {target} ({len(built.data)} bytes): unzip it and run "
               "`python verify_packet.py` inside to check it")


@app.command("send-notifications")
def send_notifications() -> None:
    """Send the notifications that are due, once (for cron); the server's own sender does the same."""
    settings = _settings()
    try:
        transport = notifications.transport_from(settings)
    except ValueError as exc:
        _fail(str(exc))
    if transport is None:
        _fail("no transport: set CELLBENCH_SMTP_HOST, or CELLBENCH_NOTIFY_TRANSPORT=file")
    _install_key(settings)
    report = notifications.send_due(_database(settings), transport, notifications.Policy.of(settings))
    typer.echo(f"notifications: {report} (by {transport.name})")


@app.command()
def resupply() -> None:
    """Evaluate every site's stock by arm and propose the shipments needed (run it daily, from cron)."""
    found: list = []
    _run(lambda s: found.extend(trigger.evaluate_all(s)))
    typer.echo(f"resupply: {len(found)} open proposal{'s' if len(found) != 1 else ''}"
               + (f" ({', '.join(p.number for p in found)})" if found else ""))


# --- users ----------------------------------------------------------------------------------


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


@users_app.command("create")
def users_create(username: str, name: str = typer.Option(..., "--name", help="Printed name for signatures."),
                 role: list[str] = typer.Option(..., "--role", help="Repeat for several roles."),
                 email: str = typer.Option("", "--email", help="Where the notifications for the user's roles go."),
                 password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                              envvar="CELLBENCH_NEW_PASSWORD")) -> None:
    """Create a user (the password is prompted for, or read from CELLBENCH_NEW_PASSWORD)."""
    _run(lambda s: users.create_user(s, users.cli_actor(), username, name, password, role, email=email))
    typer.echo(f"user {username} created with roles {', '.join(role)}")


@users_app.command("roles")
def users_roles(username: str, role: list[str] = typer.Option(..., "--role"),
                reason: str = typer.Option(..., "--reason")) -> None:
    """Replace a user's roles."""
    _run(lambda s: users.set_roles(s, users.cli_actor(), users.by_username(s, username), role, reason))
    typer.echo(f"roles of {username}: {', '.join(role)}")


@users_app.command("deactivate")
def users_deactivate(username: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Deactivate a user (users are never deleted)."""
    _run(lambda s: users.deactivate(s, users.cli_actor(), users.by_username(s, username), reason))
    typer.echo(f"{username} deactivated")


@users_app.command("unlock")
def users_unlock(username: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Unlock an account locked after failed passwords."""
    _run(lambda s: users.unlock(s, users.cli_actor(), users.by_username(s, username), reason))
    typer.echo(f"{username} unlocked")


@users_app.command("link")
def users_link(username: str, site: str = typer.Option("", "--site", help="Site code, e.g. RH-ENT."),
               study: str = typer.Option("", "--study", help="Study code, e.g. NCT07290946.")) -> None:
    """Link a site-role user (pharmacist, preparer, investigator, monitor) to a site or a study."""
    _run(lambda s: users.link(s, users.cli_actor(), users.by_username(s, username), site=site, study=study))
    typer.echo(f"{username} linked to {' and '.join(c for c in (site, study) if c)}")


@users_app.command("unlink")
def users_unlink(username: str, site: str = typer.Option("", "--site"), study: str = typer.Option("", "--study"),
                 reason: str = typer.Option(..., "--reason")) -> None:
    """Take a site or a study from a user."""
    _run(lambda s: users.unlink(s, users.cli_actor(), users.by_username(s, username), site=site, study=study,
                                reason=reason))
    typer.echo(f"{username} unlinked from {' and '.join(c for c in (site, study) if c)}")


@users_app.command("list")
def users_list() -> None:
    """List users with their roles, state, and the sites and studies of site roles."""
    db = _database(_settings())
    with db.read() as session:
        links = users.all_links(session)
        for user, roles in users.all_users(session):
            state = "deactivated" if not user.active else "locked" if user.locked else "active"
            names = ", ".join(sorted(r.value for r in roles))
            where = " ".join(" ".join(codes) for codes in links.get(user.id or 0, ([], [])))
            typer.echo(f"{user.username:<16} {user.full_name:<24} {state:<11} {names}" + (f"  [{where}]" if where
                                                                                          else ""))


@users_app.command("token")
def users_token(username: str, name: str = typer.Argument(..., help="What the token is for.")) -> None:
    """Create an API token for a user and print it once."""
    holder: list[str] = []
    _run(lambda s: holder.append(users.create_token(s, users.cli_actor(), users.by_username(s, username), name)))
    typer.echo(holder[0])


# --- the checkpoint key ----------------------------------------------------------------------


@keys_app.command("init")
def keys_init() -> None:
    """Create the checkpoint key (CELLBENCH_CHECKPOINT_KEY, default <data dir>/checkpoint.key); never overwrites."""
    settings = _settings()
    try:
        key = checkpoints.create(settings.checkpoint_key_path)
    except checkpoints.KeyProblem as exc:
        _fail(str(exc))
    typer.echo(f"checkpoint key created: {key.path}\npublic key: {key.public_text}  (key id {key.key_id})\n"
               "Keep a copy of the key file apart from the backups, and the public key on paper.")


@keys_app.command("public")
def keys_public() -> None:
    """Print the public key and key id, for checking checkpoints offline (`verify --public-key`)."""
    try:
        key = checkpoints.load(_settings().checkpoint_key_path)
    except checkpoints.KeyProblem as exc:
        _fail(str(exc))
    typer.echo(f"{key.public_text}  (key id {key.key_id})")


@app.command("checkpoint")
def checkpoint_now() -> None:
    """Sign a checkpoint of the audit chain's head now and print it (JSON, for `verify --checkpoint`)."""
    settings = _settings()
    _install_key(settings, required=True)
    typer.echo(checkpoint_store.issue(_database(settings), "manual").to_json())


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
