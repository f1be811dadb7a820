"""Setting up and running: init, demo, serve, and the jobs cron runs (notifications, resupply)."""
from __future__ import annotations

import os

import typer
from argon2 import PasswordHasher

from .. import demo as demo_data
from .. import demo_marker, notifications, startup, users
from ..config import Settings
from ..db import Database, migrate
from ..supply import resupply as trigger
from .base import _database, _fail, _install_key, _run, _settings, _shown, app


@app.command()
def init() -> None:
    """Create or upgrade the database to the latest schema."""
    settings = _settings()
    db = _database(settings, require_schema=False)
    migrate(db)
    typer.echo(f"database ready: {_shown(settings.url)}")


def _seed_demo(settings: Settings, db: Database) -> None:
    # The demo accounts' password is printed for everyone: hashing it at full argon2 cost protects
    # nothing and made the ~900 signatures of the demo data take 40 s instead of a few. argon2's
    # least cost (8 KiB, as the tests' hasher): 1 MiB still cost 0.5 s of the build (issue 18).
    users.configure(settings.password_min_length, settings.max_failed_logins,
                    PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
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
    # A worker must answer uvicorn's health check within timeout_worker_healthcheck, and a spawned
    # worker first imports this command line again (its __main__) and then the app: several seconds
    # on a busy machine, where the default 5 s had every worker killed and restarted without end.
    uvicorn.run("cellbench.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", proxy_headers=True, access_log=access_log, timeout_worker_healthcheck=60)


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

