"""bench/tenyears.py's hourly checkpoints: the bulk-built chain gets the signed checkpoints a chain
in service has (one at the last event of each hour it moved), so that a lot's evidence packet
proves its events by their hours, as it does in the running product."""
from __future__ import annotations

import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

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
