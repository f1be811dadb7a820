"""The record's integrity: verify, backup and restore, evidence packets, the checkpoint key."""
from __future__ import annotations

import time
from pathlib import Path

import typer

from .. import backups, checkpoints, clock, integrity, users
from ..checkpoints import KeyProblem
from ..checkpoints import store as checkpoint_store
from ..errors import DomainError
from ..evidence import lot as lot_packet
from ..evidence import site as site_packet
from .base import _database, _fail, _install_key, _settings, app, keys_app


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
        _install_key(settings, required=True)
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

