"""`cellbench verify` names what a database owner changed behind cellbench's back: a signature
deleted or voided by hand, and a lot's, kit's, shipment's, visit's or deviation's state or key date
that its audit events do not lead to, by the record's public id. Each tampering is plain SQL on the
whole demo (batch records, release, kits, shipments, visits, deviations)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from cellbench import integrity, signatures, users
from cellbench.db import Database
from cellbench.models import Signature, utc_text


@pytest.fixture
def world(demo_trial_world) -> Database:
    return demo_trial_world


def tamper(db: Database, *statements: tuple[str, dict]) -> None:
    with db.engine.begin() as conn:
        for sql, values in statements:
            conn.execute(text(sql), values)


def one(db: Database, sql: str, **values) -> tuple:
    with db.engine.connect() as conn:
        row = conn.execute(text(sql), values).first()
    assert row is not None, sql
    return tuple(row)


def problems(db: Database) -> list[str]:
    report = integrity.verify(db)
    assert report.events > 0 and report.replayed > 0
    return report.problems


RUNNING_COUNTS = ("kit count of", "kits by place of", "storage count of")


def kit_moved_by_hand(db: Database) -> list[str]:
    """What verify names of a kit whose state was changed in the database: the replay's lines. The
    running counts the kit left and entered disagree with the rows too, one line each: its blinded
    lot's and its place's (kit_counts, place_counts), and its tank's when it is in one
    (storage_counts); checked here."""
    named = problems(db)
    counts = {kind: [p for p in named if p.startswith(kind)] for kind in RUNNING_COUNTS}
    assert len(counts["kit count of"]) == 2 and len(counts["kits by place of"]) == 2, named
    assert len(counts["storage count of"]) in (0, 2), named
    return [p for p in named if not p.startswith(RUNNING_COUNTS)]


def test_the_untampered_demo_verifies_clean_with_every_record_replayed(world):
    report = integrity.verify(world)
    assert report.problems == []
    assert report.signatures > 100 and report.replayed > 100 and report.custody > 100
    assert set(report.timings) >= {"signed", "replay", "custody", "contents", "total"}


def test_a_deleted_performed_signature_is_named_by_its_signed_event(world):
    sig_id, seq, entity = one(world, "SELECT id, audit_seq, entity_id FROM signature WHERE meaning = 'performed' "
                                     "AND entity_type = 'step_entry' ORDER BY id")
    tamper(world, ("UPDATE step_entry SET performed_signature_id = NULL WHERE performed_signature_id = :id",
                   {"id": sig_id}),
           ("DELETE FROM signature WHERE id = :id", {"id": sig_id}))
    assert problems(world) == [f"audit event {seq} (performed signature on step_entry {entity}): "
                               f"signature {sig_id} is missing: its row was deleted"]


def test_a_signature_voided_by_hand_and_its_record_then_edited_is_named(world):
    sig_id, decision, name = one(world, "SELECT id, entity_id, signer_name FROM signature "
                                        "WHERE entity_type = 'lot_decision' AND meaning = 'released' ORDER BY id")
    tamper(world, ("UPDATE signature SET invalidated_at = :at, invalidated_reason = 'entered in error' WHERE id = :id",
                   {"at": utc_text(datetime.now(UTC)), "id": sig_id}),
           ("UPDATE lot_decision SET reason = 'released without QC' WHERE id = :id", {"id": int(decision)}))
    assert problems(world) == [f"signature {sig_id} (released by {name} on lot_decision {decision}): it is marked "
                               "void, but no audit event records its voiding: it was voided outside cellbench"]


def test_a_voiding_made_by_cellbench_verifies_and_its_reason_changed_afterwards_is_named(world):
    sig_id, = one(world, "SELECT id FROM signature WHERE entity_type = 'lot_decision' ORDER BY id")
    with world.write() as s:
        sig = s.get(Signature, sig_id)
        signatures.invalidate(s, users.cli_actor(), sig, "Wrong lot decision signed: corrected")
        where = f"signature {sig_id} ({sig.meaning} by {sig.signer_name} on lot_decision {sig.entity_id})"
    assert problems(world) == []
    seq, = one(world, "SELECT max(seq) FROM audit_event WHERE action = 'signature invalidated'")
    tamper(world, ("UPDATE signature SET invalidated_reason = 'nothing wrong' WHERE id = :id", {"id": sig_id}))
    assert problems(world) == [f"{where}: its voiding reason is not the one audit event {seq} recorded"]


def test_a_voiding_undone_by_hand_is_named(world):
    sig_id, = one(world, "SELECT id FROM signature WHERE entity_type = 'lot_decision' ORDER BY id")
    with world.write() as s:
        signatures.invalidate(s, users.cli_actor(), s.get(Signature, sig_id), "Wrong lot decision signed: corrected")
    tamper(world, ("UPDATE signature SET invalidated_at = NULL, invalidated_reason = NULL WHERE id = :id",
                   {"id": sig_id}))
    seq, = one(world, "SELECT max(seq) FROM audit_event WHERE action = 'signature invalidated'")
    named = problems(world)
    assert named[-1].startswith(f"audit event {seq} (") and f"it voided signature {sig_id}, which is missing or " \
        "stands again: a signature row was deleted or its voiding undone outside cellbench" in named[-1]


def test_a_lot_moved_from_qc_pending_to_released_is_named_by_its_number(world):
    number, = one(world, "SELECT number FROM lot WHERE state = 'qc_pending' ORDER BY number")
    tamper(world, ("UPDATE lot SET state = 'released' WHERE number = :n", {"n": number}))
    assert problems(world) == [f"lot {number}: the row says released, its audit events end at qc pending"]


def test_a_released_lots_expiry_moved_to_2031_is_named(world):
    number, expiry = one(world, "SELECT number, expiry FROM lot WHERE state = 'released' ORDER BY number")
    tamper(world, ("UPDATE lot SET expiry = '2031-06-30' WHERE number = :n", {"n": number}))
    assert problems(world) == [f"lot {number}: the row's expiry is 2031-06-30, its audit events say {str(expiry)[:10]}"]


def test_a_destroyed_kit_put_back_at_site_is_named_by_its_number(world):
    number, = one(world, "SELECT number FROM kit WHERE state = 'destroyed' ORDER BY number")
    tamper(world, ("UPDATE kit SET state = 'at_site' WHERE number = :n", {"n": number}))
    assert kit_moved_by_hand(world) == [f"kit {number}: the row says at site, its audit events end at destroyed"]


def test_a_held_kit_freed_by_hand_is_named(world):
    number, before = one(world, "SELECT number, state_before_quarantine FROM kit WHERE state = 'quarantined' "
                                "ORDER BY number")
    tamper(world, ("UPDATE kit SET state = state_before_quarantine, state_before_quarantine = NULL, "
                   "quarantine_id = NULL WHERE number = :n", {"n": number}))
    assert kit_moved_by_hand(world) == [
        f"kit {number}: the row says {before.replace('_', ' ')}, its audit events end at quarantined",
        f"kit {number}: the row's state before quarantine is nothing, its audit events say {before.replace('_', ' ')}"]


def test_a_kit_held_by_hand_is_named(world):
    number, = one(world, "SELECT number FROM kit WHERE state = 'at_site' ORDER BY number")
    tamper(world, ("UPDATE kit SET state = 'quarantined', state_before_quarantine = 'at_site' WHERE number = :n",
                   {"n": number}))
    assert kit_moved_by_hand(world) == [
        f"kit {number}: the row says quarantined, its audit events end at at site",
        f"kit {number}: the row's state before quarantine is at site, its audit events say nothing"]


def test_a_deleted_custody_event_is_named_by_its_kit(world):
    custody_id, number = one(world, "SELECT c.id, k.number FROM custody_event c JOIN kit k ON k.id = c.kit_id "
                                    "WHERE c.action = 'dispatched' ORDER BY c.id")
    tamper(world, ("DELETE FROM custody_event WHERE id = :id", {"id": custody_id}))
    [problem] = problems(world)
    assert problem.startswith(f"kit {number}: 0 'dispatched' custody events but 1 'kit ship'")
    assert problem.endswith("audit events: a custody event was deleted")


def test_a_custody_event_added_by_hand_is_named_by_its_kit(world):
    kit_id, number, by = one(world, "SELECT k.id, k.number, c.by_name FROM kit k JOIN custody_event c "
                                    "ON c.kit_id = k.id WHERE k.state = 'at_site' ORDER BY k.number")
    tamper(world, ("INSERT INTO custody_event (kit_id, action, by_name, at) VALUES (:k, 'returned', :by, :at)",
                   {"k": kit_id, "by": by, "at": utc_text(datetime.now(UTC))}))
    assert problems(world) == [f"kit {number}: 1 'returned' custody events but 0 'kit return' audit events: "
                               "a custody event was added outside cellbench"]


def test_a_shipment_moved_by_hand_is_named_by_its_number(world):
    number, = one(world, "SELECT number FROM shipment WHERE state = 'in_transit' ORDER BY number")
    tamper(world, ("UPDATE shipment SET state = 'received' WHERE number = :n", {"n": number}))
    assert problems(world) == [f"shipment {number}: the row says received, its audit events end at in transit"]


def test_a_visit_moved_by_hand_is_named_by_its_reference(world):
    ref, visit_id, study, site = one(
        world, "SELECT s.code || '/' || p.screening_number || '/T' || CAST(v.treatment AS VARCHAR(8)), "
               "v.id, s.code, site.code FROM visit v JOIN participant p ON p.id = v.participant_id "
               "JOIN study s ON s.id = p.study_id JOIN site ON site.id = p.site_id "
               "WHERE v.state = 'kit_assigned' ORDER BY v.id")
    tamper(world, ("UPDATE visit SET state = 'administered' WHERE id = :id", {"id": visit_id}))
    found = problems(world)
    assert f"visit {ref}: the row says administered, its audit events end at kit assigned" in found
    # the pharmacy's running visit counts no longer match the rows either, and verify says so
    assert sorted(p.split(":")[0] for p in found if p.startswith("visit count of")) == [
        f"visit count of {study}, {site}, administered", f"visit count of {study}, {site}, kit assigned"]
    assert len(found) == 3


def test_a_deviation_closed_by_hand_is_named_by_its_number(world):
    number, = one(world, "SELECT number FROM deviation WHERE state = 'open' ORDER BY number")
    tamper(world, ("UPDATE deviation SET state = 'closed' WHERE number = :n", {"n": number}))
    assert problems(world) == [f"deviation {number}: the row says closed, its audit events end at open"]


def test_a_deleted_deviation_is_named_by_its_number(world):
    number, = one(world, "SELECT number FROM deviation WHERE state = 'open' ORDER BY number")
    tamper(world, ("DELETE FROM deviation WHERE number = :n", {"n": number}))
    assert problems(world) == [f"deviation {number}: its audit events record it, but its row is missing: "
                               "it was deleted"]


def test_an_unblinding_marked_as_sent_to_the_sponsor_by_hand_is_named(world):
    # the mark takes the unblinding off QA's queue: set by hand, it would hide an unsent impact
    uid, number = one(world, "SELECT u.id, p.randomisation_number FROM unblinding u "
                             "JOIN participant p ON p.id = u.participant_id WHERE u.impact_sent_at IS NULL")
    tamper(world, ("UPDATE unblinding SET impact_sent_at = :at WHERE id = :id",
                   {"at": "2026-01-01T00:00:00.000000Z", "id": uid}))
    assert problems(world) == [f"unblinding {uid} of participant {number}: the row says its impact was sent at "
                               "2026-01-01T00:00:00.000000Z, its audit events say never sent"]


def test_every_tampering_is_named_not_only_the_first(world):
    lot, = one(world, "SELECT number FROM lot WHERE state = 'qc_pending' ORDER BY number")
    kit, = one(world, "SELECT number FROM kit WHERE state = 'destroyed' ORDER BY number")
    deviation, = one(world, "SELECT number FROM deviation WHERE state = 'open' ORDER BY number")
    tamper(world, ("UPDATE lot SET state = 'released' WHERE number = :n", {"n": lot}),
           ("UPDATE kit SET state = 'at_site' WHERE number = :n", {"n": kit}),
           ("UPDATE deviation SET state = 'closed' WHERE number = :n", {"n": deviation}))
    named = kit_moved_by_hand(world)
    assert len(named) == 3
    assert [p.split(":")[0] for p in named] == [f"lot {lot}", f"kit {kit}", f"deviation {deviation}"]


def test_a_signature_pointed_at_another_signatures_event_is_named_both_ways(world):
    """The signature rows are read once for both matches: the row that names the wrong event, and
    the event that no row names any more."""
    (mine, my_seq, entity, name), (_, other_seq, _, _) = (
        one(world, "SELECT id, audit_seq, entity_id, signer_name FROM signature WHERE entity_type = 'lot_decision' "
                   "ORDER BY id"),
        one(world, "SELECT id, audit_seq, entity_id, signer_name FROM signature WHERE entity_type = 'step_entry' "
                   "ORDER BY id"))
    meaning, = one(world, "SELECT meaning FROM signature WHERE id = :id", id=mine)
    tamper(world, ("UPDATE signature SET audit_seq = :seq WHERE id = :id", {"seq": other_seq, "id": mine}))
    assert problems(world) == [
        f"audit event {my_seq} ({meaning} signature on lot_decision {entity}): signature {mine} no longer names "
        "this event",
        f"signature {mine} ({meaning} by {name} on lot_decision {entity}): it does not match its audit event"]


def test_a_signatures_meaning_rewritten_by_hand_is_named_not_a_crash(world):
    """A meaning cellbench does not know is read as stored: the record hash, made of the signed
    meaning, no longer matches."""
    sig_id, entity, name = one(world, "SELECT id, entity_id, signer_name FROM signature "
                                      "WHERE entity_type = 'lot_decision' ORDER BY id")
    tamper(world, ("UPDATE signature SET meaning = 'approved' WHERE id = :id", {"id": sig_id}))
    assert problems(world) == [f"signature {sig_id} (approved by {name} on lot_decision {entity}): the signature "
                               "record was changed after signing"]
