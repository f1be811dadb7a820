"""Reading the trail fast keeps its rows: a blinded reader's newest events, a kind's events and the
filter's kinds, each read by its fast path (audit_scope.kind_rules, the scope asked per event), are
those her whole filtered trail gives, and never an event outside her scope."""
from __future__ import annotations

import pytest

from cellbench import audit
from cellbench.models import Visibility

from .conftest import actor_of
from .test_audit import _trial_records_at

KINDS = ["kit", "shipment", "participant", "site", "notification", "deviation", "user", "lot"]


def _her_own_events(db, trial_world, username: str) -> tuple[dict[str, str], dict[str, str]]:
    """Records at her site and at the other site, and events she wrote on each (the other site's
    newest), plus an arm-revealing one on her site's kit: what a seq-first pick would get wrong."""
    home = _trial_records_at(db, "RH-ENT", trial_world.first_active[0], "SH-RH-9", "RH-900")
    away = _trial_records_at(db, "AUH-ENT", trial_world.first_placebo[0], "SH-AUH-9", "AUH-900")
    reader = actor_of(db, username)
    with db.write() as s:
        for kind in home:
            audit.record(s, reader, f"{kind} handled at RH-ENT", kind, home[kind])
            audit.record(s, reader, f"{kind} handled at AUH-ENT", kind, away[kind])
        audit.record(s, reader, "kit arm noted", "kit", home["kit"], field="arm", new="active",
                     visibility=Visibility.unblinded)
        for kind in away:
            audit.record(s, reader, f"{kind} handled again at AUH-ENT", kind, away[kind])
    return home, away


def _whole_trail(s, viewer, **filters) -> list[int]:
    """The reference: the viewer's filtered trail with the planner free to read it as it likes
    (audit.trail_query, the export's), newest first."""
    return [e.seq for e in s.scalars(audit.trail_query(viewer, audit.TrailFilter(**filters)))][::-1]


@pytest.mark.parametrize("reader", ["frida", "ida", "mette"])
def test_a_blinded_readers_newest_events_are_those_her_whole_filtered_trail_gives(trial_world, db, reader):
    _her_own_events(db, trial_world, reader)
    viewer = actor_of(db, reader)
    mine = str(viewer.user_id)
    with db.read() as s:
        every = [e for e in audit.trail(s, viewer, audit.TrailFilter(), limit=None) if e.user_id == viewer.user_id]
        assert len(every) >= 5, "her own events at her site are in her trail"
        for limit in (1, 3, 10):
            lately = audit.trail(s, viewer, audit.TrailFilter(user=mine), limit=limit)
            whole = _whole_trail(s, viewer, user=mine)[:limit]
            assert [e.seq for e in lately] == [e.seq for e in every][:limit] == whole
        for kind in KINDS:
            picked = audit.trail(s, viewer, audit.TrailFilter(user=mine, entity_type=kind), limit=3)
            plain = [e.seq for e in every if e.entity_type == kind][:3]
            assert [e.seq for e in picked] == plain == _whole_trail(s, viewer, user=mine, entity_type=kind)[:3], kind


@pytest.mark.parametrize("reader", ["frida", "ida", "mette"])
def test_what_a_blinded_reader_did_lately_holds_nothing_of_the_other_site_even_when_it_is_her_newest(
        trial_world, db, reader):
    home, _ = _her_own_events(db, trial_world, reader)
    viewer = actor_of(db, reader)
    with db.read() as s:
        lately = audit.trail(s, viewer, audit.TrailFilter(user=str(viewer.user_id)), limit=10)
    assert {e.action for e in lately} == {f"{kind} handled at RH-ENT" for kind in home}
    assert all(e.visibility == Visibility.everyone.value for e in lately)


@pytest.mark.parametrize("reader", ["mette", "adam", "anna"])
def test_a_kind_read_under_its_own_rule_holds_the_events_of_that_kind_in_the_whole_scope(trial_world, db, reader):
    _her_own_events(db, trial_world, "mette")
    viewer = actor_of(db, reader)
    with db.read() as s:
        whole = audit.trail(s, viewer, audit.TrailFilter(), limit=None)
        for kind in KINDS:
            of_kind = audit.trail(s, viewer, audit.TrailFilter(entity_type=kind), limit=None)
            assert [e.seq for e in of_kind] == [e.seq for e in whole if e.entity_type == kind], kind
        assert audit.entity_types(s, viewer) == sorted({e.entity_type for e in whole})


def test_the_monitors_kinds_are_those_of_her_sites_records_only(trial_world, db):
    _trial_records_at(db, "AUH-ENT", trial_world.first_placebo[0], "SH-AUH-9", "AUH-900")
    monitor = actor_of(db, "mette")
    with db.read() as s:
        kinds = audit.entity_types(s, monitor)
        assert "notification" not in kinds, "the only unblinding notified is the other site's"
        assert "lot" not in kinds and "user" not in kinds
        assert audit.trail(s, monitor, audit.TrailFilter(entity_type="notification"), limit=None) == []


@pytest.mark.parametrize("reader", ["anna", "mette"])
def test_a_trail_filtered_by_name_holds_every_visible_event_whose_printed_name_holds_it(trial_world, db, reader):
    """Read along the named users' events (and those of no user), it is the name test over every event."""
    _her_own_events(db, trial_world, "frida")
    viewer = actor_of(db, reader)
    with db.read() as s:
        whole = audit.trail(s, viewer, audit.TrailFilter(), limit=None)
        for name in ("frida", "Supply", "command line", "a", "nobody at all"):
            named = [e for e in whole if name.lower() in e.user_name.lower()]
            assert [e.seq for e in audit.trail(s, viewer, audit.TrailFilter(user=name), limit=None)] \
                == [e.seq for e in named] == _whole_trail(s, viewer, user=name), name
            kits = audit.trail(s, viewer, audit.TrailFilter(user=name, entity_type="kit"), limit=None)
            assert [e.seq for e in kits] == [e.seq for e in named if e.entity_type == "kit"], name
        assert [e for e in whole if "Frida" in e.user_name], "her events are in both readers' trails"
