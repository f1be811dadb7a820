"""bench/tenyears.py's hourly checkpoints: the bulk-built chain gets the signed checkpoints a chain
in service has (one at the last event of each hour it moved), so that a lot's evidence packet
proves its events by their hours, as it does in the running product. And its copies of the trial
world: each copy's list lines in blocks of their own, of the template's sizes."""
from __future__ import annotations

import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, text

from cellbench.checkpoints import store, verification
from cellbench.evidence import lot as lot_packet
from cellbench.models import AuditCheckpoint, AuditEvent, AuditHead, Lot, LotState

from .conftest import actor_of
from .evidence.support import read_json, unzip, verify

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _tenyears():
    spec = importlib.util.spec_from_file_location("bench_tenyears", BENCH / "tenyears.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _hourly(db) -> list[int]:
    with db.read() as s:
        return list(s.scalars(select(AuditCheckpoint.seq).where(AuditCheckpoint.why == "hourly")
                              .order_by(AuditCheckpoint.seq)))


def test_the_builder_signs_a_checkpoint_at_the_last_event_of_each_hour_and_verify_accepts_them(
        demo_trial_world, checkpoint_key):
    db = demo_trial_world
    with db.read() as s:
        events = s.execute(select(AuditEvent.seq, AuditEvent.at).order_by(AuditEvent.seq)).all()
        already = set(s.scalars(select(AuditCheckpoint.seq)))
    last_of_hour = [seq for (seq, at), (_, then) in zip(events, [*events[1:], (None, None)], strict=True)
                    if then is None or _hour(then) != _hour(at)]

    log = store.log_path(checkpoint_key)
    lines_before = len(store.logged(log))

    made = _tenyears().checkpoint_hours(db, checkpoint_key)

    assert _hourly(db) == [seq for seq in last_of_hour if seq not in already]
    assert made == len(_hourly(db)) > 10  # the demo's story runs over months
    logged = [line for _, line in store.logged(log)[lines_before:]]
    assert len(logged) == made and all('"why": "hourly"' in line for line in logged)
    with db.read() as s:
        head = s.get(AuditHead, 1)
        assert verification.problems(db, head.seq, head.hash) == []


def test_run_again_it_signs_only_the_hours_the_chain_moved_since(demo_trial_world, checkpoint_key):
    tenyears = _tenyears()
    tenyears.checkpoint_hours(db := demo_trial_world, checkpoint_key)
    assert tenyears.checkpoint_hours(db, checkpoint_key) == 0
    with db.read() as s:
        qa = actor_of(db, "qa")
        number = s.scalars(select(Lot.number).where(Lot.state == LotState.released)).first()
    lot_packet.build(db, qa, number, zone=ZoneInfo("Europe/Copenhagen"))  # events now, and a checkpoint of them
    with db.read() as s:
        head = s.get(AuditHead, 1).seq
    assert tenyears.checkpoint_hours(db, checkpoint_key) == 0  # the packet's own checkpoint ends this hour's run
    assert _hourly(db)[-1] < head


def test_a_lots_packet_over_the_hourly_checkpoints_is_proved_and_holds_its_hours_not_the_chain_since(
        demo_trial_world, checkpoint_key, tmp_path):
    db = demo_trial_world
    with db.read() as s:
        number = s.scalars(select(Lot.number).where(Lot.number.startswith("ASC-"), Lot.state == LotState.released)
                           .order_by(Lot.number)).first()
    qa, zone = actor_of(db, "qa"), ZoneInfo("Europe/Copenhagen")
    whole = unzip(lot_packet.build(db, qa, number, zone=zone).data, tmp_path / "whole")

    _tenyears().checkpoint_hours(db, checkpoint_key)
    hourly = unzip(lot_packet.build(db, qa, number, zone=zone).data, tmp_path / "hourly")

    result = verify(hourly)
    assert result.returncode == 0, result.stdout
    assert "pieces, each ending at a checkpoint" in result.stdout
    # Fewer events than the whole chain since the lot's first. How many fewer depends on when in the
    # hour the demo world was built, which moves the hour boundaries among its events: "under half"
    # held when the suite ran at some minutes and failed at others (seen 5,333 of 6,483).
    assert len(read_json(hourly, "chain/segment.json")) < len(read_json(whole, "chain/segment.json"))
    kept = {cp["seq"] for cp in read_json(hourly, "checkpoints.json")}
    assert len(kept) > 2 and kept <= {cp.seq for cp in store.stored(db)}  # the pieces start after and end at kept ones


def _blocks(db, table: str) -> dict[tuple[int, int], list[str]]:
    """(list, block) -> the block's lines (participant or kit numbers), from the sealed rows."""
    number = "participant_number" if table == "sealed_allocation" else "kit_number"
    with db.read() as s:
        rows = s.execute(text(f"SELECT list_id, block, {number} FROM {table} ORDER BY position")).all()
    blocks: dict[tuple[int, int], list[str]] = {}
    for list_id, block, line in rows:
        blocks.setdefault((list_id, block), []).append(line)
    return blocks


def test_a_cloned_studys_blocks_are_its_own_and_of_the_template_blocks_sizes(demo_trial_world):
    """Each copy's participants and kits are in blocks of their own, of the sizes the template's
    are (permuted blocks of 2 to 8), not thousands of copies' lines joined to the template's blocks."""
    db = demo_trial_world
    with db.read() as s:
        randomised = set(s.scalars(text("SELECT randomisation_number FROM participant "
                                        "WHERE randomisation_number IS NOT NULL")))
    template = {table: _blocks(db, table) for table in ("sealed_allocation", "sealed_kit_arm")}
    copied = {"sealed_allocation": {key: lines for key, lines in template["sealed_allocation"].items()
                                    if randomised & set(lines)},  # blocks with a randomised participant
              "sealed_kit_arm": template["sealed_kit_arm"]}  # the kit list whole
    assert copied["sealed_allocation"] and copied["sealed_kit_arm"]

    _tenyears().clone(db, _tenyears().World(0.0, 1, 3))  # two copies of the trial world

    for table, blocks in template.items():
        after = _blocks(db, table)
        assert {key: after[key] for key in blocks} == blocks  # the template's blocks are as they were
        new = {key: lines for key, lines in after.items() if key not in blocks}
        for list_id in {list_id for list_id, _block in copied[table]}:
            sizes = sorted(len(lines) for (of, _block), lines in copied[table].items() if of == list_id)
            assert sorted(len(lines) for (of, _block), lines in new.items() if of == list_id) == sorted(sizes * 2)
    with db.read() as s:
        copies_of_participants = dict(s.execute(text(
            "SELECT participant_number, block FROM sealed_allocation WHERE participant_number IN "
            "(SELECT randomisation_number FROM participant)")).all())
        kit_lines = s.execute(text("SELECT a.kit_number, k.number FROM sealed_kit_arm a "
                                   "JOIN kit k ON k.id = a.kit_id")).all()
        draws = s.execute(text("SELECT d.candidates, d.index_drawn, k.number FROM sealed_kit_draw d "
                               "JOIN kit k ON k.id = d.kit_id")).all()
    assert len(copies_of_participants) == 3 * len(randomised)  # every participant, copies too, has a line
    assert all(line == kit for line, kit in kit_lines)  # a copy's kit list names its own kits
    assert all(candidates.split(",")[index] == kit and candidates.split(",") == sorted(candidates.split(","))
               for candidates, index, kit in draws)  # a copy's draws replay among its own kits
