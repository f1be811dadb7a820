"""Delivery against a real SMTP server on this machine: a message queued in one transaction is sent
by the sender with no transaction open, retried after a refusal with backoff, dead after its last
attempt and listed so, sent once however many senders race for it, and over STARTTLS when set."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from cellbench import clock, notifications
from cellbench.db import Database
from cellbench.models import AuditEvent, Notification, Role

from ..conftest import actor_of
from .support import EMAILS, Recorder, give_emails, start, tls_contexts


@pytest.fixture
def server():
    recorder = Recorder()
    controller = start(recorder)
    yield recorder, controller
    controller.stop()


def smtp(controller, **options) -> notifications.SmtpTransport:
    return notifications.SmtpTransport(controller.hostname, controller.port, timeout=10, **options)


def queued(db: Database, subject: str = "Shipment SH-2026-0001 dispatched to RH-ENT", body: str = "On its way.",
           roles=(Role.supply_manager, Role.qa)) -> int:
    with db.write() as s:
        sara = actor_of(db, "sara")
        note = notifications.queue(s, sara, kind="shipment_dispatched", audience=notifications.BLINDED,
                                   subject=subject, body=body, to=notifications.addresses(s, roles))
        return note.id


def row(db: Database, note_id: int) -> Notification:
    with db.read() as s:
        return s.get(Notification, note_id)


def events(db: Database, note_id: int) -> list[tuple[str, str, str | None]]:
    with db.read() as s:
        return [(e.action, e.user_name, e.reason) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.entity_type == "notification", AuditEvent.entity_id == str(note_id))
            .order_by(AuditEvent.seq))]


def test_a_queued_message_is_delivered_to_its_recipients_and_the_delivery_is_audited(db, people, server):
    recorder, controller = server
    give_emails(db)
    note_id = queued(db, body="Shipment SH-2026-0001 is on its way.\nKits: 4")
    assert row(db, note_id).state == "pending"

    report = notifications.send_due(db, smtp(controller), notifications.Policy(sender_address="cb@bench.example"))

    assert report.sent == [note_id]
    [got] = recorder.received
    assert sorted(got.to) == sorted([EMAILS["anna"], EMAILS["sara"]]) and got.sender == "cb@bench.example"
    assert got.message["Subject"] == "Shipment SH-2026-0001 dispatched to RH-ENT"
    assert got.message["To"] == f"{EMAILS['anna']}, {EMAILS['sara']}"
    assert got.message["Message-ID"] == f"<cellbench-notification-{note_id}@bench.example>"
    assert got.message.get_content().replace("\r\n", "\n").strip() == "Shipment SH-2026-0001 is on its way.\nKits: 4"
    sent = row(db, note_id)
    assert (sent.state, sent.attempts, sent.last_error, sent.claimed_by) == ("sent", 1, None, None)
    assert sent.sent_at is not None
    assert [(a, who) for a, who, _ in events(db, note_id)] == [("notification queued", "Sara Supply"),
                                                               ("notification sent", "notification sender")]
    assert notifications.send_due(db, smtp(controller)).sent == [], "sent once"


def test_a_server_that_refuses_once_gets_the_message_after_the_backoff(db, people, server):
    recorder, controller = server
    give_emails(db)
    recorder.refuse = 1
    note_id = queued(db)
    policy = notifications.Policy(backoff_seconds=60)

    first = notifications.send_due(db, smtp(controller), policy)
    deferred = row(db, note_id)
    assert first.deferred == [note_id] and recorder.received == []
    assert (deferred.state, deferred.attempts) == ("pending", 1)
    assert "451" in deferred.last_error and "Mailbox busy" in deferred.last_error
    waited = deferred.next_attempt_at - clock.utcnow()
    assert timedelta(seconds=55) < waited <= timedelta(seconds=60), "one backoff unit after the first failure"
    assert notifications.send_due(db, smtp(controller), policy).sent == [], "not before its time"

    later = deferred.next_attempt_at + timedelta(seconds=1)
    with clock.held(lambda: later):
        second = notifications.send_due(db, smtp(controller), policy)
    assert second.sent == [note_id] and len(recorder.received) == 1
    delivered = row(db, note_id)
    assert (delivered.state, delivered.attempts, delivered.last_error) == ("sent", 2, None)
    assert [a for a, _, _ in events(db, note_id)] == ["notification queued", "notification attempt failed",
                                                      "notification sent"]


def test_the_backoff_doubles_and_is_capped():
    policy = notifications.Policy(backoff_seconds=60, cap_seconds=600)
    assert [policy.wait_after(n).total_seconds() for n in range(1, 7)] == [60, 120, 240, 480, 600, 600]


def test_a_server_that_always_refuses_makes_the_message_dead_after_its_last_attempt(db, people, server, as_):
    recorder, controller = server
    give_emails(db)
    recorder.always = True
    note_id = queued(db)
    policy = notifications.Policy(backoff_seconds=60, max_attempts=3)
    waits = []
    for _attempt in range(3):
        due = row(db, note_id).next_attempt_at
        with clock.held(lambda due=due: due + timedelta(seconds=1)):
            notifications.send_due(db, smtp(controller), policy)
        after = row(db, note_id)
        if after.state == "pending":
            waits.append(round((after.next_attempt_at - due).total_seconds()))
    dead = row(db, note_id)
    assert (dead.state, dead.attempts) == ("dead", 3) and "451" in dead.last_error
    assert waits == [61, 121], "1 then 2 backoff units (from the moment of the attempt)"
    assert events(db, note_id)[-1][0] == "notification dead"
    assert "attempt 3 of 3" in events(db, note_id)[-1][2]

    page = as_("sara").get("/notifications?state=dead")
    assert page.status_code == 200 and "Mailbox busy" in page.text and "Retry now" in page.text
    assert as_("sara").get("/").text.count("message could not be delivered") == 1, "the supply manager's queue"

    recorder.always = False
    assert as_("frida").submit(f"/notifications/{note_id}/retry").status_code == 403, "a pharmacist may not"
    retried = as_("sara").submit(f"/notifications/{note_id}/retry")
    assert retried.status_code == 303
    assert row(db, note_id).state == "pending"
    assert events(db, note_id)[-1][:2] == ("notification retried", "Sara Supply")
    assert as_("sara").submit(f"/notifications/{note_id}/retry").status_code == 422, "not dead any more"
    assert notifications.send_due(db, smtp(controller), policy).sent == [note_id]
    assert row(db, note_id).state == "sent" and len(recorder.received) == 1


def test_a_message_nobody_can_receive_is_dead_at_once_and_says_why(db, people):
    note_id = queued(db, roles=(Role.qp,))  # nobody has an address in the people world
    dead = row(db, note_id)
    assert (dead.state, dead.recipients) == ("dead", "") and "no user of the roles" in dead.last_error
    assert [a for a, _, _ in events(db, note_id)] == ["notification queued", "notification dead"]


class Slow:
    """A transport that hands over to the real one after a pause, so that two senders overlap."""

    def __init__(self, inner, pause: float):
        self.inner, self.pause, self.name = inner, pause, "smtp"

    def send(self, message):
        threading.Event().wait(self.pause)
        self.inner.send(message)


def test_two_senders_racing_deliver_each_message_once(db, people, server):
    recorder, controller = server
    give_emails(db)
    ids = [queued(db, subject=f"Message {n}") for n in range(6)]
    workers = [Database(db.url), Database(db.url)]  # two server processes: two engines on one database
    start_line = threading.Barrier(2)
    reports = []

    def run(worker: Database) -> None:
        start_line.wait()
        reports.append(notifications.send_due(worker, Slow(smtp(controller), 0.05)))

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.dispose()
    assert sorted(m.message["Subject"] for m in recorder.received) == sorted(f"Message {n}" for n in range(6))
    assert sorted(i for r in reports for i in r.sent) == sorted(ids), "each sent by exactly one sender"
    with db.read() as s:
        sent_events = s.scalars(select(AuditEvent).where(AuditEvent.action == "notification sent")).all()
    assert len(sent_events) == 6


def test_a_lapsed_claim_is_taken_over_and_the_first_sender_records_nothing(db, people, server):
    recorder, controller = server
    give_emails(db)
    note_id = queued(db)
    policy = notifications.Policy(lease_seconds=60)
    [held] = notifications.claim(db, "crashed", policy)
    assert notifications.claim(db, "other", policy) == [], "claimed: nobody else takes it"
    with clock.held(lambda: clock.wall_now() + timedelta(seconds=61)):
        assert notifications.send_due(db, smtp(controller), policy).sent == [note_id]
    report = notifications.Report()
    notifications.record_outcome(db, "crashed", held, None, policy, report, "smtp")
    assert report.lost_claims == [note_id] and len(recorder.received) == 1


def test_starttls_is_used_when_set_and_a_server_requiring_it_refuses_plain_text(db, people, tmp_path):
    give_emails(db)
    server_tls, client_tls = tls_contexts(tmp_path)
    recorder = Recorder()
    controller = start(recorder, tls_context=server_tls, require_starttls=True)
    try:
        note_id = queued(db)
        plain = notifications.send_due(db, smtp(controller))
        assert plain.deferred == [note_id] and recorder.received == []
        assert "STARTTLS" in row(db, note_id).last_error
        with clock.held(lambda: clock.wall_now() + timedelta(minutes=2)):
            secure = notifications.send_due(db, smtp(controller, starttls=True, tls_context=client_tls))
        assert secure.sent == [note_id] and len(recorder.received) == 1
    finally:
        controller.stop()


def test_the_file_transport_writes_one_eml_file_per_message(db, people, tmp_path):
    give_emails(db)
    note_id = queued(db, body="Seal intact.")
    report = notifications.send_due(db, notifications.FileTransport(tmp_path / "mail"))
    assert report.sent == [note_id]
    [written] = (tmp_path / "mail").glob("*.eml")
    text = written.read_text()
    assert written.name == f"cellbench-notification-{note_id}.eml"
    assert "Subject: Shipment SH-2026-0001 dispatched to RH-ENT" in text and "Seal intact." in text
    assert row(db, note_id).state == "sent"
