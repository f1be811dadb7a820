"""QA's button on the lot page downloads the lot's packet (audited), refused to every blinded role and
to the lab; the site's blinded roles download their blinded lot's packet from its page; the command
line builds either for a named user who signs in again."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cellbench import checkpoints, cli
from cellbench.evidence import lot as lot_packet
from cellbench.evidence import site

from ..conftest import PASSWORD
from .support import events_named, unzip, verify

LOT = "ASC-2026-0101"  # the kit world's released ASC lot


def test_qa_downloads_the_lots_packet_from_the_lot_pages_button_and_the_download_is_audited(
        db, trial_world, as_, tmp_path):
    anna = as_("anna")
    page = anna.get(f"/lots/{LOT}")
    assert f'href="/lots/{LOT}/evidence.zip"' in page.text and "Evidence packet (ZIP)" in page.text
    response = anna.get(f"/lots/{LOT}/evidence.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f"attachment; filename*=UTF-8''evidence-{LOT}.zip"
    assert events_named(db, lot_packet.BUILT) == 1
    result = verify(unzip(response.content, tmp_path))
    assert result.returncode == 0, result.stdout


def test_the_qp_downloads_it_too_and_the_lab_sees_no_button(db, trial_world, as_):
    assert as_("peter").get(f"/lots/{LOT}/evidence.zip").status_code == 200
    assert "evidence.zip" not in as_("olivia").get(f"/lots/{LOT}").text


@pytest.mark.parametrize("username", ["frida", "ida", "mette", "adam", "olivia", "sara", "jonas"])
def test_the_lots_packet_is_refused_to_blinded_roles_and_to_those_who_do_not_hand_it_out(
        db, trial_world, as_, username):
    response = as_(username).get(f"/lots/{LOT}/evidence.zip")
    assert response.status_code == 403
    assert events_named(db, lot_packet.BUILT) == 0


def test_the_site_downloads_its_blinded_lots_packet_from_the_blinded_lot_page(db, trial_world, as_):
    mette = as_("mette")
    code = trial_world.first_lot
    assert f'href="/blinded-lots/{code}/evidence.zip"' in mette.get(f"/blinded-lots/{code}").text
    response = mette.get(f"/blinded-lots/{code}/evidence.zip")
    assert response.status_code == 200 and response.content.startswith(b"PK")
    assert events_named(db, site.BUILT) == 1
    assert as_("anna").get(f"/blinded-lots/{code}/evidence.zip").status_code == 403


runner = CliRunner()


@pytest.fixture
def cli_env(db, monkeypatch, tmp_path):
    monkeypatch.setenv("CELLBENCH_DATABASE_URL", db.url)
    monkeypatch.setenv("CELLBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CELLBENCH_PASSWORD", PASSWORD)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_command_line_builds_the_packet_for_a_named_qa_user_and_never_overwrites_one(
        db, trial_world, cli_env):
    result = runner.invoke(cli.app, ["evidence", LOT, "--as", "anna"])
    assert result.exit_code == 0, result.output
    written = cli_env / f"evidence-{LOT}.zip"
    assert f"evidence packet written to evidence-{LOT}.zip" in result.output
    assert verify(unzip(written.read_bytes(), cli_env / "x")).returncode == 0
    again = runner.invoke(cli.app, ["evidence", LOT, "--as", "anna"])
    assert again.exit_code == 1 and "exists; choose a new file (--out)" in again.output
    assert events_named(db, lot_packet.BUILT) == 1  # the refused second one built nothing


def test_the_command_line_builds_the_blinded_packet_for_a_site_user(db, trial_world, cli_env):
    out = cli_env / "site.zip"
    result = runner.invoke(cli.app, ["evidence", trial_world.first_lot, "--blinded", "--as", "mette",
                                     "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert verify(unzip(out.read_bytes(), cli_env / "x")).returncode == 0


def test_the_command_line_refuses_a_wrong_password_and_a_blinded_user_asking_for_the_lot(
        db, trial_world, cli_env, monkeypatch):
    blinded = runner.invoke(cli.app, ["evidence", LOT, "--as", "mette"])
    assert blinded.exit_code == 1 and "holds unblinded records" in blinded.output
    monkeypatch.setenv("CELLBENCH_PASSWORD", "not the password")
    wrong = runner.invoke(cli.app, ["evidence", LOT, "--as", "anna"])
    assert wrong.exit_code == 1 and "password" in wrong.output.lower()
    assert events_named(db, lot_packet.BUILT) == 0


def test_without_a_checkpoint_key_no_packet_is_built_and_nothing_is_recorded(db, trial_world, as_, checkpoint_key):
    anna = as_("anna")
    reads = events_named(db, "sealed read")
    checkpoints.install(None)
    try:
        refused = anna.get(f"/lots/{LOT}/evidence.zip")
        unknown = anna.get("/lots/ASC-2099-0999/evidence.zip")
    finally:
        checkpoints.install(checkpoint_key)
    assert refused.status_code == 503 and "No checkpoint key is installed" in refused.text
    assert unknown.status_code == 404 and "No lot" in unknown.text
    assert events_named(db, lot_packet.BUILT) == 0 and events_named(db, "sealed read") == reads
