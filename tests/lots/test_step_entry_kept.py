"""What a transaction keeps while recording a batch record (issue 18: the demo build and the tablet
page) gives the answers a fresh read would: the entry started in it, a claim that brings the lot as
it now stands, and nothing of an entry whose start was rolled back."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from cellbench import lots, steps
from cellbench.errors import NotFound

from ..conftest import actor_of
from .test_lots import placebo_spec, start_placebo_lot


def test_the_entry_started_in_a_transaction_is_the_one_its_next_calls_record_on(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    with db.write() as s:
        lot = lots.by_number(s, number)
        started = steps.start_entry(s, actor_of(db, "olivia"), lot, step.code, None)
        assert steps.entry_of(s, lot, step.code, 1) is started
    with db.read() as s:
        assert steps.entry_of(s, lots.by_number(s, number), step.code, 1).id == started.id


def test_an_entry_whose_start_was_rolled_back_is_not_found_afterwards(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    with db.write() as s:
        lot = lots.by_number(s, number)
        with s.begin_nested() as savepoint:
            steps.start_entry(s, actor_of(db, "olivia"), lot, step.code, None)
            steps.entry_of(s, lot, step.code, 1)
            savepoint.rollback()
        with pytest.raises(NotFound) as missing:
            steps.entry_of(s, lot, step.code, 1)
    assert missing.value.field == "step" and "has not been started" in missing.value.message


def test_a_claim_brings_the_lot_as_the_database_now_holds_it(db, effective_specs):
    number = start_placebo_lot(db)
    step = placebo_spec(db).steps[0]
    with db.write() as s:
        lot = lots.by_number(s, number)
        version = lot.row_version
        # changed behind the object's back (as a concurrent writer's committed row would be)
        s.connection().execute(text("UPDATE lot SET hold_reason = 'seen by the claim' WHERE id = :id"), {"id": lot.id})
        steps.start_entry(s, actor_of(db, "olivia"), lot, step.code, version)
        assert lot.row_version == version + 1 and lot.hold_reason == "seen by the claim"
