"""Who reads which message on the notifications page, how an emergency unblinding is told (the arm to
the sponsor and unblinded staff, the fact to the site), the resupply message the lead wires in, the
transport settings and the command line's once-only sender."""
from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cellbench import cli, notifications, studies
from cellbench.config import Settings
from cellbench.models import AuditEvent, Notification, Site

from ..conftest import PASSWORD, actor_of
from ..test_unblinding import EMAIL
from ..trialworld import STUDY, enrol
from .support import EMAILS, give_emails


def unblind(as_, participant: str):
    response = as_("ida").post("/api/v1/unblindings", json={
        "study": STUDY, "participant": participant, "reason_code": "serious_adverse_event",
        "reason": "Anaphylaxis after the injection", "password": PASSWORD})
    assert response.status_code == 201, response.text


def of_participant(db, participant: str) -> list[Notification]:
    with db.read() as s:
        return list(s.scalars(select(Notification).where(Notification.subject.endswith(f" participant {participant}"))
                              .order_by(Notification.audience)))


def test_an_emergency_unblinding_tells_the_sponsor_the_arm_and_the_site_only_that_it_happened(db, trial_world, as_):
    give_emails(db)
    a, b = trial_world.participant("active"), trial_world.participant("placebo")
    enrol(db, a, "S-001")
    enrol(db, b, "S-002")
    notices = {}
    for participant in (a, b):
        unblind(as_, participant)
        blinded, full = of_participant(db, participant)
        assert (full.audience, full.recipients) == ("unblinded", f"{EMAIL}, {EMAILS['anna']}, {EMAILS['sara']}")
        assert "Arm: " in full.body and "Anaphylaxis" in full.body
        assert blinded.audience == "blinded" and blinded.recipients == f"{EMAILS['ida']}, {EMAILS['mette']}"
        assert "Reason category: Serious adverse event" in blinded.body and "Anaphylaxis" not in blinded.body
        notices[participant] = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} [+-]\d{2}:\d{2}", "<time>",
                                      blinded.body.replace(participant, "<P>"))
    assert notices[a] == notices[b], "the site's notice reads the same for both arms"

    mette = as_("mette").get("/notifications")
    assert mette.status_code == 200 and "Reason category: Serious adverse event" in mette.text
    assert "Arm:" not in mette.text and "Retry now" not in mette.text
    ida = as_("ida").get("/notifications")
    assert ida.text.count(f"Emergency unblinding: {STUDY} participant {a}") == 2, "her own message is listed too"
    assert "Arm:" not in ida.text, "listed without its text"
    sara = as_("sara").get("/notifications")
    assert "Arm: active" in sara.text and "Arm: placebo" in sara.text
    assert as_("adam").get("/notifications").status_code == 403
    assert as_("sara").get("/outbox", follow_redirects=False).headers["location"] == "/notifications"


def test_a_reader_of_the_blinded_messages_sees_no_message_numbers_whose_gaps_would_date_the_others(db, trial_world,
                                                                                                   as_):
    give_emails(db)
    participant = trial_world.participant("active")
    enrol(db, participant, "S-001")
    unblind(as_, participant)  # a message to the sponsor (unblinded) and one to the site (blinded)
    blinded, full = of_participant(db, participant)
    for name in ("mette", "ida"):
        page = as_(name).get("/notifications").text
        assert "Emergency unblinding" in page and "<th>#</th>" not in page
        assert f'<td class="num">{blinded.id}</td>' not in page and f'<td class="num">{full.id}</td>' not in page
    listed = as_("ida").get("/api/v1/outbox", params={"state": "all"}).json()["messages"]
    assert listed and all(m["id"] is None for m in listed), "the investigator's API list carries no numbers either"
    sara = as_("sara").get("/notifications").text
    assert f'<td class="num">{full.id}</td>' in sara and f'<td class="num">{blinded.id}</td>' in sara
    assert {m["id"] for m in as_("sara").get("/api/v1/outbox", params={"state": "all"}).json()["messages"]} >= {
        blinded.id, full.id}


def test_the_demo_way_delivered_messages_show_as_sent(db, trial_world, as_, tmp_path):
    give_emails(db)
    a = trial_world.participant("active")
    enrol(db, a, "S-001")
    unblind(as_, a)
    report = notifications.send_due(db, notifications.FileTransport(tmp_path))
    assert len(report.sent) == 2 and len(list(tmp_path.glob("*.eml"))) == 2
    page = as_("anna").get("/notifications?state=sent")
    assert page.text.count('data-state="sent"') == 2


def test_resupply_proposed_goes_to_supply_with_the_kits_per_arm(db, trial_world, as_):
    give_emails(db)
    with db.write() as s:
        study = studies.by_code(s, STUDY)
        site = s.scalars(select(Site).where(Site.code == "RH-ENT")).one()
        note = notifications.resupply_proposed(s, actor_of(db, "sara"), study=study, site=site, proposal="RS-0001",
                                               kits_by_arm={"active": 4, "placebo": 2},
                                               reasons=["placebo stock 1 is below its minimum of 3"],
                                               url="/supply/resupply/RS-0001")
        note_id, body = note.id, note.body
    assert "Total: 6" in body and "placebo stock 1 is below its minimum of 3" in body
    assert re.search(r"- .+: 4\n- .+: 2", body), body
    with db.read() as s:
        row = s.get(Notification, note_id)
        queued = s.scalars(select(AuditEvent).where(AuditEvent.entity_type == "notification",
                                                    AuditEvent.entity_id == str(note_id))).one()
    assert (row.audience, row.recipients, row.kind) == ("unblinded", EMAILS["sara"], "resupply_proposed")
    assert queued.visibility == "unblinded", "its subject stays off blinded trails"
    assert "Resupply proposed" not in as_("frida").get("/notifications").text


@pytest.mark.parametrize(("values", "expected"), [
    ({}, None), ({"demo": True}, "file"), ({"smtp_host": "mail.example"}, "smtp"),
    ({"smtp_host": "mail.example", "notify_transport": "off"}, None), ({"notify_transport": "file"}, "file"),
])
def test_the_transport_is_chosen_by_the_settings(values, expected, tmp_path):
    settings = Settings(data_dir=tmp_path, **values)
    transport = notifications.transport_from(settings)
    assert (transport.name if transport else None) == expected
    if expected == "file":
        assert transport.folder == tmp_path / "mail"


def test_an_unknown_transport_is_refused():
    with pytest.raises(ValueError, match="smtp, file or off"):
        notifications.transport_from(Settings(notify_transport="carrier-pigeon"))


def test_the_command_line_sends_what_is_due_once(db, people, tmp_path, monkeypatch):
    give_emails(db)
    with db.write() as s:
        notifications.queue(s, actor_of(db, "sara"), kind="shipment_dispatched", audience=notifications.BLINDED,
                            subject="Shipment SH-2026-0009 dispatched", body="On its way.",
                            to=notifications.addresses(s, notifications.READERS_IN_FULL))
    monkeypatch.setenv("CELLBENCH_DATABASE_URL", db.url)
    monkeypatch.setenv("CELLBENCH_NOTIFY_TRANSPORT", "file")
    monkeypatch.setenv("CELLBENCH_MAIL_DIR", str(tmp_path))
    result = CliRunner().invoke(cli.app, ["send-notifications"])
    assert result.exit_code == 0, result.output
    assert "1 sent, 0 to retry, 0 dead (by file)" in result.output
    assert len(list(tmp_path.glob("*.eml"))) == 1
    monkeypatch.setenv("CELLBENCH_NOTIFY_TRANSPORT", "off")
    refused = CliRunner().invoke(cli.app, ["send-notifications"])
    assert refused.exit_code == 1 and "no transport" in refused.output


def test_an_admin_gives_a_user_an_email_and_a_bad_one_is_refused_naming_the_field(db, people, as_):
    adam = as_("adam")
    bad = adam.submit("/admin/users/frida/email", {"email": "frida at site"})
    assert bad.status_code == 422 and "is not an email address" in bad.text
    assert adam.submit("/admin/users/frida/email", {"email": "frida@site.example"}).status_code == 303
    with db.read() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "email set")).one()
    assert (event.entity_id, event.new_value, event.user_name) == ("frida", "frida@site.example", "Adam Admin")
    made = adam.submit("/admin/users", {"username": "pia", "full_name": "Pia Pharmacist", "password": PASSWORD,
                                        "roles": "pharmacist", "email": "pia@site.example"})
    assert made.status_code == 303
    with db.read() as s:
        from cellbench import users
        assert users.by_username(s, "pia").email == "pia@site.example"


def test_the_server_sends_in_the_background_while_it_runs(db, people, tmp_path):
    from fastapi.testclient import TestClient

    from cellbench.app import create_app

    from ..conftest import FAST_HASHER, SECRET

    give_emails(db)
    settings = Settings(database_url=db.url, secret_key=SECRET, notify_transport="file", mail_dir=tmp_path,
                        notify_interval_seconds=0.05)
    with TestClient(create_app(settings, password_hasher=FAST_HASHER, database=db)):  # the lifespan runs
        with db.write() as s:
            note_id = notifications.queue(s, actor_of(db, "sara"), kind="shipment_received",
                                          audience=notifications.BLINDED, subject="Shipment received", body="In stock.",
                                          to=notifications.addresses(s, notifications.READERS_IN_FULL)).id
        for _ in range(200):
            with db.read() as s:
                if s.get(Notification, note_id).state == "sent":
                    break
            threading.Event().wait(0.05)
    with db.read() as s:
        assert s.get(Notification, note_id).state == "sent"
    assert [p.name for p in tmp_path.glob("*.eml")] == [f"cellbench-notification-{note_id}.eml"]
