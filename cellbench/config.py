"""Settings, read from the environment with the CELLBENCH_ prefix."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import clock
from .models import Role

# A key anyone can read in this file protects nothing; it is only acceptable for demo data.
DEMO_SECRET_KEY = "cellbench-demo-secret-do-not-use-in-production"  # noqa: S105 - public on purpose, see above
DEFAULT_DATA_DIR = Path("data")


def shipped(folder: str) -> Path:
    """A folder shipped beside the package: the checkout's own (edits show without reinstalling),
    else the wheel's copy inside the package (pyproject's force-include names it `_<folder>`)."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / folder
    in_checkout = checkout.is_dir() and (package.parent / "pyproject.toml").is_file()  # not site-packages/<folder>
    return checkout if in_checkout else package / f"_{folder}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CELLBENCH_", extra="ignore")

    database_url: str = ""
    data_dir: Path = DEFAULT_DATA_DIR
    secret_key: str = DEMO_SECRET_KEY
    # The Ed25519 checkpoint key (cellbench/checkpoints): a file outside the database, created by
    # `cellbench keys init`; default <data_dir>/checkpoint.key. Keep a copy apart from the backups.
    checkpoint_key: Path | None = None
    site_timezone: str = clock.DEFAULT_ZONE
    # A page session unused this long ends (a tablet left signed in at the bench). A role whose work
    # needs longer gets longer: an operator's page must outlast a 45-minute digestion. With several
    # roles, the longest applies; a role's minutes below the default change nothing.
    # CELLBENCH_SESSION_IDLE_MINUTES_BY_ROLE='{"operator": 90, "verifier": 60}' (JSON) replaces the defaults.
    session_idle_minutes: int = 15
    session_idle_minutes_by_role: dict[str, int] = {"operator": 60}
    password_min_length: int = 12
    max_failed_logins: int = 5
    # A lock from failed passwords lifts itself after this long (an administrator may lift it sooner).
    lockout_minutes: int = 15
    # Sign-in rate limits: failed attempts allowed per typed username and per client address within
    # a sliding window; beyond them every attempt is refused unchecked, with the usual words.
    signin_window_minutes: int = 15
    signin_max_per_username: int = 10
    signin_max_per_address: int = 30
    # Demo mode (the published demo key and passwords) only on a database `cellbench demo` or
    # `serve --demo` created and marked; `cellbench serve` sets it for --demo only (cli.py).
    demo: bool = False
    # Behind a TLS-terminating proxy: trust its X-Forwarded-Proto, so that HSTS is sent and cookies
    # are Secure. Off, only a request that reached this server over TLS counts as one.
    trust_proxy: bool = False
    # Session cookies always Secure (sent over HTTPS only), whatever the request's scheme: for a
    # proxy that does not say it terminated TLS. Without it they are Secure on requests over TLS.
    secure_cookies: bool = False
    # The cell bench's manufacturing authorisation (EU GMP), printed on kit labels, certificates of
    # analysis and release certificates beside the manufacturer. Empty: not printed, and the
    # certificates say that it is not set.
    manufacturing_authorisation: str = ""
    # Notifications (cellbench.notifications). The transport: "smtp" (the settings below), "file"
    # (.eml files in mail_dir: the demo, or a machine with no mail server) or "off" (messages wait
    # in the queue). Empty: smtp when a host is set, else file for the demo, else off.
    notify_transport: str = ""
    mail_dir: Path | None = None  # the file transport's folder; default <data_dir>/mail
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "cellbench@localhost"
    smtp_timeout_seconds: float = 30
    # The server's background sender: how often it looks for due messages; retries wait
    # backoff * 2^(attempt-1) seconds, at most the cap; after max attempts a message is dead.
    notify_interval_seconds: float = 30
    notify_backoff_seconds: int = 60
    notify_backoff_cap_seconds: int = 3600
    notify_max_attempts: int = 8
    # A PDF a route serves that takes longer than this is stopped and answered 503 (reports.rendering).
    pdf_time_limit_seconds: float = 20
    # Developers editing templates: each page checks its template files' times and reloads a changed
    # one. Off (served), templates are compiled once and never looked at on disk again.
    template_reload: bool = False
    # SQLite: the WAL file's size limit in MB. The server truncates the WAL when it passes it (a brief
    # pause of writes, see wal.Checkpointer), and SQLite cuts a WAL it resets back to it.
    sqlite_wal_limit_mb: float = 16
    # FastAPI's own OpenTelemetry hooks (traces, metrics, logs to the process's global providers),
    # for a site that runs a collector. Off, the app does not ask on every request whether any
    # provider is configured: that question was a twentieth of a signed-in page's floor.
    telemetry: bool = False

    @field_validator("site_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone, before the app starts
        return value

    @field_validator("sqlite_wal_limit_mb")
    @classmethod
    def _positive_wal_limit(cls, value: float) -> float:
        if not value >= 1:
            raise ValueError("the SQLite WAL limit must be at least 1 MB")
        return value

    @field_validator("session_idle_minutes")
    @classmethod
    def _positive_timeout(cls, value: int) -> int:
        if value < 1:
            raise ValueError("session idle timeout must be at least 1 minute")
        return value

    @field_validator("session_idle_minutes_by_role")
    @classmethod
    def _known_roles(cls, value: dict[str, int]) -> dict[str, int]:
        roles = {role.value for role in Role}
        for role, minutes in value.items():
            if role not in roles:
                known = ", ".join(sorted(roles))
                raise ValueError(f"unknown role {role!r} in the session idle minutes (roles: {known})")
            if minutes < 1:
                raise ValueError(f"the session idle timeout of {role} must be at least 1 minute")
        return value

    @cached_property
    def url(self) -> str:
        """The database URL; the embedded SQLite file in the data folder unless one is set."""
        if self.database_url:
            return normalise_url(self.database_url)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'cellbench.db').resolve()}"

    @property
    def transport_name(self) -> str:
        chosen = self.notify_transport.strip().lower()
        if chosen:
            if chosen not in ("smtp", "file", "off"):
                raise ValueError(f"CELLBENCH_NOTIFY_TRANSPORT is {chosen!r}: choose smtp, file or off")
            return chosen
        return "smtp" if self.smtp_host else "file" if self.demo else "off"

    @property
    def checkpoint_key_path(self) -> Path:
        return self.checkpoint_key or self.data_dir / "checkpoint.key"

    @property
    def mail_folder(self) -> Path:
        return self.mail_dir or self.data_dir / "mail"

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.site_timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def check_for_production(self, demo_database: bool = False) -> None:
        """Refuse demo mode on a database the demo did not create, and the published demo key on
        anything but a demo database: with it anyone could sign a label cellbench accepts."""
        if self.demo and not demo_database:
            raise ValueError(
                "demo mode runs only on a database that `cellbench demo` or `cellbench serve --demo` created; "
                "this one was not, so it is not started with the published demo key and passwords. "
                "Unset CELLBENCH_DEMO, or point CELLBENCH_DATABASE_URL at a new database for the demo."
            )
        if not demo_database and self.secret_key == DEMO_SECRET_KEY:
            raise ValueError(
                "CELLBENCH_SECRET_KEY is not set: a production server needs its own secret key "
                "(for example: export CELLBENCH_SECRET_KEY="
                "$(python -c 'import secrets; print(secrets.token_urlsafe(48))')). "
                "Use `cellbench serve --demo` to try cellbench with demo data."
            )
        if len(self.secret_key) < 32:
            raise ValueError("CELLBENCH_SECRET_KEY must be at least 32 characters long")


def normalise_url(url: str) -> str:
    """Accept the common PostgreSQL URL spellings and route them to psycopg 3."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
