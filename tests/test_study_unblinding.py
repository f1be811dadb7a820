"""Study unblinding at database lock: Sara (supply manager, acting for the sponsor) signs the database
lock, then the study unblinding with a reason; only then does Stella (statistician) export the
randomisation list and the kit arms, and every export is a logged read of the sealed compartment.
Before that nobody gets them, and blinded roles never do."""
from __future__ import annotations

import csv
import io
import threading

import pytest
from sqlalchemy import select

from cellbench import audit, integrity, sealed, spreadsheet, studies, study_data, users
from cellbench.errors import Conflict, Forbidden, InvalidInput
from cellbench.models import (
    AuditEvent,
    BlindedLot,
    Kit,
    SealedAllocation,
    SealedList,
    Signature,
    StudyLock,
    Visibility,
)

from .blinding_support import BLINDED_USERS
from .conftest import PASSWORD, actor_of
from .kitworld import arms as kit_arms
from .trialworld import STUDY, enrol

EXPORTS = ("randomisation.csv", "kits.csv")


def lock_form(client, study=STUDY, password=PASSWORD):
    return client.submit(f"/study-data/{study}/lock", {"password": password})


def unblind_form(client, study=STUDY, password=PASSWORD, reason="Statistical analysis plan v2.0, final analysis"):
    return client.submit(f"/study-data/{study}/unblind", {"password": password, "reason": reason})


def lock_row(db) -> StudyLock | None:
    with db.read() as s:
        return s.scalars(select(StudyLock)).first()


def events(db, action: str) -> list[AuditEvent]:
    with db.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def export_reads(db) -> list[AuditEvent]:
    return [e for e in events(db, "sealed read") if (e.field or "").endswith(" export")]


@pytest.fixture
def unblinded(db, trial_world, as_):
    """The trial world's study, locked and unblinded by Sara through the pages."""
    sara = as_("sara")
    assert lock_form(sara).status_code == 303
    assert unblind_form(sara).status_code == 303
    return trial_world


def rows_of(response) -> list[dict]:
    assert response.headers["content-type"].startswith("text/csv"), response.text[:200]
    return list(csv.DictReader(io.StringIO(response.text)))


# --- before the lock -------------------------------------------------------------------------------


def test_before_the_lock_nobody_gets_the_arms_not_even_the_statistician(db, trial_world, as_):
    for username in ("stella", "sara", "anna", *BLINDED_USERS):
        client = as_(username)
        for name in EXPORTS:
            for url in (f"/study-data/{STUDY}/{name}", f"/api/v1/study-data/{STUDY}/{name}"):
                response = client.get(url)
                assert response.status_code == 403, (username, url, response.status_code)
                assert "active" not in response.text and "placebo" not in response.text
    refusal = as_("stella").get(f"/api/v1/study-data/{STUDY}/kits.csv").json()
    assert refusal["error"] == f"{STUDY} is open: the arms are exported only after the sponsor has signed its " \
                               "database lock."
    with db.write() as s, pytest.raises(Forbidden):
        sealed.export_lists(s, actor_of(db, "stella"), studies.by_code(s, STUDY), "randomisation")
    assert export_reads(db) == [], "a refused export reads nothing and logs no read"


def test_blinded_roles_cannot_see_or_sign_the_lock(db, trial_world, as_):
    for username in BLINDED_USERS:
        client = as_(username)
        assert client.get("/study-data").status_code == 403
        assert lock_form(client).status_code == 403
        assert client.post(f"/api/v1/study-data/{STUDY}/lock", json={"password": PASSWORD}).status_code == 403
        assert 'href="/study-data"' not in client.get("/").text, "no nav link to a page that refuses them"
    assert lock_row(db) is None


# --- the lock -------------------------------------------------------------------------------------


def test_only_the_sponsors_representative_locks_and_only_with_her_password(db, trial_world, as_):
    for username in ("stella", "anna", "peter"):  # the statistician, QA, the QP: not the sponsor's
        response = as_(username).post(f"/api/v1/study-data/{STUDY}/lock", json={"password": PASSWORD})
        assert response.status_code == 403, username
    wrong = lock_form(as_("sara"), password="not her password")
    assert wrong.status_code == 401 and "Wrong password" in wrong.text
    assert lock_row(db) is None and events(db, "database locked") == []
    with db.read() as s:
        assert users.by_username(s, "sara").failed_logins == 1, "a wrong signing password counts toward lock-out"

    enrol(db, sorted(trial_world.arms)[0], "S-001")
    response = as_("sara").post(f"/api/v1/study-data/{STUDY}/lock", json={"password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "locked" and body["locked"]["signer_name"] == "Sara Supply"
    assert body["locked"]["meaning"] == "locked" and body["unblinded"] is None
    row = lock_row(db)
    assert (row.state, row.participants, row.randomised) == ("locked", 1, 1)
    with db.read() as s:
        sig = s.get(Signature, row.lock_signature_id)
    assert (sig.meaning, sig.entity_type, sig.entity_id) == ("locked", "study_lock", STUDY)
    assert '"participants":1' in sig.content and '"randomised":1' in sig.content
    [event] = events(db, "database locked")
    assert (event.entity_id, event.old_value, event.new_value) == (STUDY, "open", "locked")
    assert event.user_name == "Sara Supply"
    assert event.visibility == Visibility.everyone.value, "the lock reveals no arm"
    again = lock_form(as_("sara"))
    assert again.status_code == 422 and "is locked" in again.text
    assert integrity.verify(db).ok


def test_an_enrolment_after_the_lock_shows_at_verify_as_a_changed_lock(db, trial_world, as_):
    assert lock_form(as_("sara")).status_code == 303
    assert integrity.verify(db).ok
    enrol(db, sorted(trial_world.arms)[0], "S-LATE")
    report = integrity.verify(db)
    assert not report.ok and "locked by Sara Supply on study_lock" in report.problems[0]
    assert "changed since it was signed" in report.problems[0]


def race(db, move) -> list[str]:
    """Sara's two sessions make the same move at the same moment: what each one got."""
    start, outcomes = threading.Barrier(2), []

    def worker() -> None:
        start.wait()
        try:
            with db.write() as s:
                move(s, users.by_username(s, "sara"), studies.by_code(s, STUDY))
            outcomes.append("done")
        except (Conflict, InvalidInput) as error:
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return sorted(outcomes)


def test_two_locks_at_once_make_one_lock(db, trial_world):
    outcomes = race(db, lambda s, sara, study: study_data.lock(s, sara, study, PASSWORD))
    # on PostgreSQL the second insert of the study's lock row conflicts; on SQLite, whose writers
    # take turns, the second finds the study locked
    assert outcomes in (["Conflict", "done"], ["InvalidInput", "done"]), outcomes
    with db.read() as s:
        assert len(list(s.scalars(select(StudyLock)))) == 1
        assert len(list(s.scalars(select(Signature).where(Signature.meaning == "locked")))) == 1
    assert len(events(db, "database locked")) == 1
    assert integrity.verify(db).ok


def test_two_unblindings_at_once_make_one(db, trial_world, as_):
    assert lock_form(as_("sara")).status_code == 303
    outcomes = race(db, lambda s, sara, study: study_data.unblind(s, sara, study, PASSWORD, "final analysis"))
    assert outcomes in (["Conflict", "done"], ["InvalidInput", "done"]), outcomes
    with db.read() as s:
        assert len(list(s.scalars(select(Signature).where(Signature.meaning == "unblinded")))) == 1
    assert len(events(db, "study unblinded")) == 1 and lock_row(db).state == "unblinded"
    assert integrity.verify(db).ok


# --- the unblinding -------------------------------------------------------------------------------


def test_the_study_unblinding_needs_the_lock_a_reason_and_a_signature(db, trial_world, as_):
    sara = as_("sara")
    early = unblind_form(sara)
    assert early.status_code == 422 and "is open" in early.text and lock_row(db) is None
    assert lock_form(sara).status_code == 303
    assert as_("stella").post(f"/api/v1/study-data/{STUDY}/unblind",
                              json={"password": PASSWORD, "reason": "I would like to"}).status_code == 403
    no_reason = sara.post(f"/api/v1/study-data/{STUDY}/unblind", json={"password": PASSWORD, "reason": " "})
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    assert lock_row(db).state == "locked"

    response = unblind_form(sara, reason="Final analysis per SAP v2.0")
    assert response.status_code == 303 and "unblinded" in response.headers["location"]
    row = lock_row(db)
    assert (row.state, row.unblinding_reason) == ("unblinded", "Final analysis per SAP v2.0")
    with db.read() as s:
        lock_sig, sig = s.get(Signature, row.lock_signature_id), s.get(Signature, row.unblinding_signature_id)
    assert (sig.meaning, sig.entity_type, sig.signer_name) == ("unblinded", "study_unblinding", "Sara Supply")
    assert lock_sig.record_hash in sig.content, "the unblinding signs the lock it follows"
    [event] = events(db, "study unblinded")
    assert (event.old_value, event.new_value, event.reason) == ("locked", "unblinded", "Final analysis per SAP v2.0")
    section = sara.get("/study-data").text.split(f'id="{STUDY}"')[1].split("</section>")[0]
    assert "Sara Supply" in section and "· locked ·" in section and "· unblinded ·" in section
    assert "Final analysis per SAP v2.0" in section and "Sign the" not in section, "nothing more to sign"
    assert integrity.verify(db).ok


# --- the export -----------------------------------------------------------------------------------


def test_after_the_unblinding_the_statistician_exports_the_sealed_lists_and_each_export_is_logged(db, unblinded,
                                                                                                  as_):
    stella = as_("stella")
    page = stella.get("/study-data")
    assert f'href="/study-data/{STUDY}/randomisation.csv"' in page.text

    randomisation = rows_of(stella.get(f"/study-data/{STUDY}/randomisation.csv"))
    with db.write() as s:
        row = s.scalars(select(SealedList).where(SealedList.kind == "randomisation")).one()
        lines = sealed.list_lines(s, actor_of(db, "sara"), row, limit=1000)
    assert [(r["participant_number"], r["arm"], r["block"], r["position"], r["list_version"]) for r in randomisation] \
        == [(line.key, line.arm, str(line.block), str(line.position), str(row.version)) for line in lines]
    assert {r["participant_number"]: r["arm"] for r in randomisation} == unblinded.arms

    kit_rows = rows_of(stella.get(f"/api/v1/study-data/{STUDY}/kits.csv"))
    arms = kit_arms(db)
    with db.read() as s:
        kits = {k.number: k for k in s.scalars(select(Kit))}
        lots = {b.id: b.code for b in s.scalars(select(BlindedLot))}
    assert {r["kit_number"] for r in kit_rows} == set(arms) == set(kits)
    for r in kit_rows:
        kit = kits[r["kit_number"]]
        assert (r["arm"], r["blinded_lot"], r["state"]) == (arms[kit.number], lots.get(kit.blinded_lot_id, ""),
                                                           kit.state), r
    assert list(kit_rows[0]) == ["kit_number", "arm", "blinded_lot", "state"]

    reads = export_reads(db)
    assert [(e.field, e.entity_id, e.user_name, e.visibility) for e in reads] == [
        ("randomisation list export", STUDY, "Stella Statistician", Visibility.unblinded.value),
        ("kit list export", STUDY, "Stella Statistician", Visibility.unblinded.value)]


def test_after_the_unblinding_blinded_roles_and_the_sponsor_are_still_refused(db, unblinded, as_):
    for username in ("sara", "anna", *BLINDED_USERS):
        client = as_(username)
        for name in EXPORTS:
            for url in (f"/study-data/{STUDY}/{name}", f"/api/v1/study-data/{STUDY}/{name}"):
                response = client.get(url)
                assert response.status_code == 403 and "kit_number" not in response.text, (username, url)
    assert export_reads(db) == []
    for username in BLINDED_USERS:  # and the blinded trail never shows the compartment's reads
        with db.read() as s:
            assert audit.trail(s, actor_of(db, username), audit.TrailFilter(action="sealed read"), limit=None) == []


def test_the_statisticians_home_page_queues_the_studies_ready_to_export(db, trial_world, as_):
    stella = as_("stella")
    home = stella.get("/")
    assert "Export the randomisation and kit arms" in home.text and 'href="/study-data"' in home.text
    assert "ready for you to export" not in home.text
    sara = as_("sara")
    assert lock_form(sara).status_code == 303
    assert "<strong>1</strong> study is locked and awaits the study unblinding" in sara.get("/").text
    assert unblind_form(sara).status_code == 303
    assert "<strong>1</strong> study is unblinded, ready for you to export" in stella.get("/").text
    for username in BLINDED_USERS:
        assert "ready for you to export" not in as_(username).get("/").text


def test_the_statistician_is_unblinded_and_never_also_blinded(db, people):
    assert not actor_of(db, "stella").is_blinded
    for blinded in ("pharmacist", "investigator", "monitor", "admin"):
        with db.write() as s, pytest.raises(InvalidInput, match="cannot hold a blinded role"):
            users.create_user(s, users.cli_actor(), f"stat-{blinded}", "Two Hats", PASSWORD, ["statistician", blinded])


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_written_as_text():
    text = spreadsheet.csv_text(("participant_number", "arm"),
                                [("=HYPERLINK(\"http://x\")", "+1"), ("-2", "@SUM(A1)"), ("X-001", "active")])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1:] == [["'=HYPERLINK(\"http://x\")", "'+1"], ["'-2", "'@SUM(A1)"], ["X-001", "active"]]
    assert spreadsheet.cell("\tcmd") == "'\tcmd" and spreadsheet.cell(None) == ""


def test_an_imported_participant_number_that_looks_like_a_formula_exports_as_text(db, unblinded, as_):
    with db.write() as s:  # as if an imported list had carried it (the list's own checks aside)
        row = s.scalars(select(SealedList).where(SealedList.kind == "randomisation")).one()
        s.add(SealedAllocation(list_id=row.id, position=999, block=99, participant_number="=1+1", arm="active"))
    rows = rows_of(as_("stella").get(f"/study-data/{STUDY}/randomisation.csv"))
    assert rows[-1]["participant_number"] == "'=1+1"
