"""How a message leaves: SMTP (smtplib, optionally STARTTLS and a login), or .eml files in a folder
(the demo, or a machine with no mail server, whose files someone forwards or reads). A transport
raises on failure; the sender decides what a failure means (retry later, or dead)."""
from __future__ import annotations

import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from ..clock import utcnow
from ..config import Settings


@dataclass(frozen=True)
class Outgoing:
    """A claimed message, read out of the database before any transport is talked to."""

    id: int
    kind: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    attempts: int  # before this one


class Transport(Protocol):
    name: str

    def send(self, message: EmailMessage) -> None: ...


def email_of(outgoing: Outgoing, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(outgoing.recipients)
    message["Subject"] = outgoing.subject
    message["Date"] = format_datetime(utcnow())
    # One id per queued message, the same on every attempt: a server that took a message before
    # the sender heard its answer sees the same id again.
    domain = sender.rpartition("@")[2] or "cellbench"
    message["Message-ID"] = f"<cellbench-notification-{outgoing.id}@{domain}>"
    message["X-Cellbench-Kind"] = outgoing.kind
    message.set_content(outgoing.body)
    return message


@dataclass
class SmtpTransport:
    host: str
    port: int = 25
    starttls: bool = False
    username: str = ""
    password: str = ""
    timeout: float = 30
    tls_context: ssl.SSLContext | None = None  # None: the system's trusted authorities
    name: str = "smtp"

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.ehlo()
            if self.starttls:
                # A server that does not offer STARTTLS raises here: with the setting on, a
                # message never goes out in clear.
                smtp.starttls(context=self.tls_context or ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


@dataclass
class FileTransport:
    folder: Path
    name: str = "file"

    def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = str(message["Message-ID"] or make_msgid()).strip("<>").split("@")[0]
        target = self.folder / f"{stem}.eml"
        partial = target.with_suffix(".eml.part")
        partial.write_bytes(bytes(message))
        os.replace(partial, target)  # a reader never sees half a message


def transport_from(settings: Settings) -> Transport | None:
    """The transport the settings choose; None when sending is off."""
    chosen = settings.transport_name
    if chosen == "smtp":
        if not settings.smtp_host:
            raise ValueError("CELLBENCH_NOTIFY_TRANSPORT is smtp but CELLBENCH_SMTP_HOST is not set")
        return SmtpTransport(settings.smtp_host, settings.smtp_port, settings.smtp_starttls, settings.smtp_username,
                             settings.smtp_password, settings.smtp_timeout_seconds)
    if chosen == "file":
        return FileTransport(settings.mail_folder)
    return None
