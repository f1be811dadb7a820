"""The blinded lot's evidence packet, for the trial site: what blinded roles may read, signed, with
the same verifier, which says what it proves and what it cannot. Blinded lots always hold both arms
(a packaging run must fill every arm), so the blind is tested as DESIGN.md states it: two blinded
lots in the same situation, and an active and a placebo kit in one, come out the same but for their
codes, numbers and times; and no arm, lot, vial or hidden event is in it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from cellbench.errors import Forbidden, NotFound
from cellbench.evidence import site
from cellbench.models import AuditEvent, Lot, Vial

from ..conftest import actor_of
from .support import read_json, unzip, verify

TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z| [+-]\d\d:\d\d)?")
RUN = re.compile(r"PR-\d{4}-\d{4}")  # a packaging run's number
ROWS = ("blinded-lot.json", "audit/events.json", "audit/events.csv", "signatures.json", "README.txt")


def packet(db, username: str, code: str, into: Path) -> Path:
    return unzip(site.build(db, actor_of(db, username), code).data, into)


def normalised(folder: Path, code: str, kits: list[str]) -> dict[str, str]:
    """The packet's files with its code, its kit and packaging-run numbers and times written as placeholders."""
    found = {}
    for name in ROWS:
        text = (folder / name).read_text(encoding="utf-8").replace(code, "<CODE>")
        for number in kits:
            text = text.replace(number, "<KIT>")
        found[name] = RUN.sub("<RUN>", TIME.sub("<TIME>", text))
    return found


def test_the_site_gets_a_signed_blinded_packet_whose_verifier_says_what_it_proves_and_what_not(
        db, trial_world, tmp_path, checkpoint_key):
    folder = packet(db, "mette", trial_world.first_lot, tmp_path)
    result = verify(folder, "--key-id", checkpoint_key.key_id)
    assert result.returncode == 0, result.stdout
    said = result.stdout.splitlines()
    assert said[0] == f"cellbench evidence packet: blinded_lot {trial_world.first_lot}"
    assert [line.split(":")[0] for line in said[1:]] == [
        "OK      manifest", "OK      public key", "OK      packet signature", "OK      signatures",
        "NOT PROVED  that these events are in cellbench's hash chain", "NOT PROVED  that nothing about these kits is "
        "left out", "RESULT  every check held"]
    kits = read_json(folder, "blinded-lot.json")["kits"]
    assert sorted(k["number"] for k in kits) == sorted(trial_world.first_active + trial_world.first_placebo)
    readme = (folder / "README.txt").read_text()
    assert "WHAT IT DOES NOT PROVE, AND WHY" in readme and "so the packet holds none" in readme


def test_the_blinded_packet_holds_no_arm_lot_vial_sequence_number_hash_or_hidden_event(db, trial_world, tmp_path):
    folder = packet(db, "frida", trial_world.first_lot, tmp_path)
    with db.read() as s:
        lot_numbers = list(s.scalars(select(Lot.number)))
        vial_codes = list(s.scalars(select(Vial.code)))
    for name in ("blinded-lot.json", "audit/events.json", "audit/events.csv", "signatures.json", "MANIFEST.json"):
        text = (folder / name).read_text(encoding="utf-8")
        lowered = text.lower()
        assert "active" not in lowered and "placebo" not in lowered and "arm" not in re.findall(r"\w+", lowered), name
        assert not any(n in text for n in lot_numbers) and not any(c in text for c in vial_codes), name
        assert '"seq"' not in text and '"hash"' not in text and '"prev_hash"' not in text, name
    assert (folder / "audit/events.csv").read_text().startswith("time,user_id,user,action,")
    events = read_json(folder, "audit/events.json")
    with db.read() as s:
        hidden = {(e.action, e.entity_id) for e in s.scalars(select(AuditEvent).where(
            AuditEvent.visibility != "all"))}
    assert events and not {(e["action"], e["entity_id"]) for e in events} & hidden
    assert read_json(folder, "MANIFEST.json")["checkpoint"] is None


def test_two_blinded_lots_in_the_same_situation_give_the_same_packet_but_for_codes_numbers_and_times(
        db, trial_world, tmp_path):
    first = normalised(packet(db, "mette", trial_world.first_lot, tmp_path / "1"), trial_world.first_lot,
                       trial_world.first_active + trial_world.first_placebo)
    second = normalised(packet(db, "mette", trial_world.second_lot, tmp_path / "2"), trial_world.second_lot,
                        trial_world.second_active + trial_world.second_placebo)
    for name in ROWS:
        assert first[name] == second[name], name


def test_an_active_and_a_placebo_kit_read_the_same_in_the_packet_but_for_their_numbers_and_times(
        db, trial_world, tmp_path):
    folder = packet(db, "mette", trial_world.first_lot, tmp_path)
    events = read_json(folder, "audit/events.json")
    kits = {k["number"]: k for k in read_json(folder, "blinded-lot.json")["kits"]}

    def story(number: str) -> list[dict]:
        return [{**e, "at": None, "entity_id": None} for e in events if e["entity_id"] == number]

    for active, placebo in zip(trial_world.first_active, trial_world.first_placebo, strict=True):
        assert story(active) == story(placebo) != []
        assert {**kits[active], "number": None} == {**kits[placebo], "number": None}


def test_building_the_blinded_packet_is_on_the_trail_the_site_reads(db, trial_world):
    site.build(db, actor_of(db, "frida"), trial_world.first_lot.lower())
    with db.read() as s:
        last = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert (last.user_name, last.action, last.entity_type, last.entity_id, last.visibility) == (
        "Frida Pharmacist", site.BUILT, "blinded_lot", trial_world.first_lot, "all")


@pytest.mark.parametrize("username", ["anna", "olivia", "adam"])
def test_the_blinded_packet_is_for_the_sites_blinded_roles(db, trial_world, username):
    with pytest.raises(Forbidden):
        site.build(db, actor_of(db, username), trial_world.first_lot)


def test_an_unknown_blinded_lot_is_not_found_and_nothing_is_recorded(db, trial_world):
    with db.read() as s:
        before = s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())).first()
    with pytest.raises(NotFound):
        site.build(db, actor_of(db, "mette"), "XB99-999")
    with db.read() as s:
        assert s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())).first() == before
