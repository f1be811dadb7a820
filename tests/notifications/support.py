"""A real SMTP server on this machine for the tests (aiosmtpd, on a free loopback port), which keeps
what it received and can refuse: the first n messages, or all of them, with a 4xx answer."""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import select

from cellbench import users
from cellbench.db import Database
from cellbench.models import Site

from ..conftest import link_site_people

# Who gets mail in these tests: one person per role that messages go to.
EMAILS = {"sara": "sara@bench.example", "anna": "anna@bench.example", "frida": "frida@site.example",
          "ida": "ida@site.example", "mette": "mette@site.example"}


def give_emails(db: Database) -> None:
    with db.read() as s:
        has_site = s.scalars(select(Site.id)).first() is not None
    if has_site:  # the people world has no site yet; the kit and trial worlds do
        link_site_people(db)
    with db.write() as s:
        for username, email in EMAILS.items():
            users.set_email(s, users.cli_actor(), users.by_username(s, username), email)


@dataclass
class Received:
    sender: str
    to: list[str]
    message: EmailMessage


@dataclass
class Recorder:
    """The server's handler: refuses `refuse` messages (then accepts), or every one if `always`."""

    refuse: int = 0
    always: bool = False
    answer: str = "451 4.3.0 Mailbox busy, try again later"
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        if self.always or self.refuse > 0:
            self.refuse -= 1
            return self.answer
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(recorder: Recorder, **options) -> Controller:
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return controller


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (no file shipped, nothing fetched)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def tls_contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(the server's, the client's that trusts only that certificate)."""
    cert_file, key_file = self_signed(folder)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client
