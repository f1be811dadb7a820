"""The lot's evidence packet, built from the demo for its QA user: the verifier shipped inside, run
as an inspector runs it, proves the packet and says what it proved; a packet tampered with in any
of the ways an owner of the data might try fails, naming what was changed."""
from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cellbench import audit, checkpoints, users
from cellbench.checkpoints import signing
from cellbench.checkpoints import store as checkpoint_store
from cellbench.evidence import lot as lot_packet
from cellbench.evidence import verify_packet
from cellbench.models import AuditEvent, Lot, LotState, Meaning, Signature, parse_utc_text
from cellbench.pdf import Budget, RenderStopped, run_with_budget
from cellbench.signatures import _record_hash

from ..conftest import FAST_HASHER, actor_of, chain_for
from .support import events_named, read_json, rewrite_manifest, unzip, verify, write_json

ZONE = ZoneInfo("Europe/Copenhagen")


@dataclass(frozen=True)
class DemoPacket:
    number: str
    data: bytes
    built_by: str
    built_events: list[tuple[str, str, str, str]]  # user, action, entity type, entity id: the building's trail


@pytest.fixture(scope="module")
def demo(worlds, tmp_path_factory) -> DemoPacket:
    """The packet of the demo's first released ASC lot, built once for the module by the demo's QA."""
    users.configure(12, 5, FAST_HASHER)
    db = worlds.restore(chain_for({"demo_trial_world"}), tmp_path_factory.mktemp("demo") / "cellbench.db")
    try:
        with db.read() as s:
            number = s.scalars(select(Lot.number).where(Lot.number.startswith("ASC-"), Lot.state == LotState.released)
                               .order_by(Lot.number)).first()
            before = s.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
        qa = actor_of(db, "qa")
        assert events_named(db, lot_packet.BUILT) == 0
        built = lot_packet.build(db, qa, number, zone=ZONE)
        with db.read() as s:
            trail = [(e.user_name, e.action, e.entity_type, e.entity_id)
                     for e in s.scalars(select(AuditEvent).where(AuditEvent.seq > before).order_by(AuditEvent.seq))]
        return DemoPacket(number, built.data, qa.name, trail)
    finally:
        worlds.release(db)


@pytest.fixture
def folder(demo, tmp_path) -> Path:
    return unzip(demo.data, tmp_path)


def test_the_verifier_inside_proves_a_demo_lots_packet_and_says_what_it_proved(demo, folder, checkpoint_key):
    result = verify(folder, "--key-id", checkpoint_key.key_id)
    assert result.returncode == 0, result.stdout + result.stderr
    said = result.stdout.splitlines()
    assert said[0] == f"cellbench evidence packet: lot {demo.number}"
    cp = read_json(folder, "checkpoints.json")[-1]
    segment = read_json(folder, "chain/segment.json")
    expected = [f"OK      manifest: all {len(read_json(folder, 'MANIFEST.json')['files'])} files are present",
                f"OK      public key: {checkpoint_key.key_id}, the key you gave",
                "OK      packet signature: MANIFEST.json (and so every file it lists) is as cellbench issued it",
                f"OK      checkpoint: signed by the key: at {cp['at']} the audit chain ended at event {cp['seq']}",
                f"OK      chain: events {segment[0]['seq']} to {cp['seq']} ({len(segment)}, ending at the checkpoint): "
                "every hash recomputed from its content and the hash before it, every link holds",
                f"OK      {demo.number}: its {len(read_json(folder, 'audit/events.json'))} audit events",
                f"OK      signatures: {len(read_json(folder, 'signatures.json'))} (",
                "NOT PROVED  that the PDFs and CSV files say what the JSON records say",
                "NOT PROVED  that the chain was not rewritten before the checkpoint was signed",
                "RESULT  every check held"]
    assert len(said) == len(expected) + 1
    for line, start in zip(said[1:], expected, strict=True):
        assert line.startswith(start), (line, start)


def test_the_packet_holds_the_record_the_lots_and_kits_events_their_signatures_and_the_whole_segment(demo, folder):
    number = demo.number
    for pdf in (f"batch-record-{number}.pdf", f"certificate-of-analysis-{number}.pdf",
                f"release-certificate-{number}.pdf"):
        assert (folder / pdf).read_bytes().startswith(b"%PDF"), pdf
    assert read_json(folder, "qc-results.json") and (folder / "qc-results.csv").read_text().startswith("id,")
    lot = read_json(folder, "lot.json")
    assert lot["lot"]["number"] == number and lot["vials"] and lot["kits"]
    events = read_json(folder, "audit/events.json")
    segment = read_json(folder, "chain/segment.json")
    (cp,) = read_json(folder, "checkpoints.json")  # one today: the one signed for this packet
    # From the lot's (or its first kit's) first event to the checkpoint, every event, whole.
    assert [e["seq"] for e in segment] == list(range(events[0]["seq"], cp["seq"] + 1))
    by_seq = {e["seq"]: e for e in segment}
    assert all(by_seq[e["seq"]] == e for e in events)
    kinds = {e["entity_type"] for e in events}
    assert {"lot", "step_entry", "qc_result", "lot_review", "lot_decision", "kit", "sealed"} <= kinds
    assert {e["entity_id"] for e in events if e["entity_type"] == "kit"} == {k["number"] for k in lot["kits"]}
    signed = {e["new_value"] for e in events if e["action"] == "signed"}
    assert signed == {f"#{s['id']} {s['record_hash']}" for s in read_json(folder, "signatures.json")}
    csv_lines = (folder / "audit/events.csv").read_text().splitlines()
    assert csv_lines[0].startswith("seq,hash,time,") and len(csv_lines) == len(events) + 1
    public = (folder / "public_key.txt").read_text()
    assert checkpoints.why_invalid(public, checkpoints.from_json(json.dumps(cp))) is None
    readme = (folder / "README.txt").read_text()
    assert f"chain/segment.json               the audit chain from event {events[0]['seq']}" in readme
    assert "so the segment holds all of\n  them, with their full content" in readme
    assert "WHAT IT DOES NOT PROVE" in readme


def test_building_the_packet_is_on_the_audit_trail_with_the_sealed_read_of_the_lots_kits(demo):
    assert demo.built_events == [(demo.built_by, "sealed read", "sealed", demo.number),
                                 (demo.built_by, lot_packet.BUILT, "lot", demo.number)]


def test_the_packet_in_the_archive_carries_the_verifier_module_as_it_is(demo):
    with zipfile.ZipFile(io.BytesIO(demo.data)) as archive:
        shipped = archive.read(f"evidence-{demo.number}/verify_packet.py")
    assert shipped == Path(verify_packet.__file__).read_bytes()


def test_the_verifier_hashes_as_cellbench_does():
    assert verify_packet.HASHED_COLUMNS == audit.HASHED_COLUMNS
    assert verify_packet.CHECKPOINT_PREFIX == signing.CHECKPOINT_PREFIX
    cp = {"seq": 12, "head_hash": "ab" * 32, "at": "2026-01-02T03:04:05.000006Z"}
    assert verify_packet.checkpoint_message(cp) == signing.checkpoint_message(12, "ab" * 32, cp["at"])
    values = dict.fromkeys(audit.HASHED_COLUMNS) | {"seq": 7, "user_name": "Åse Ørsted", "new_value": "≤ −150 °C"}
    assert verify_packet.event_hash("f" * 64, values) == audit.event_hash("f" * 64, [values[c] for c in
                                                                                       audit.HASHED_COLUMNS])
    sig = Signature(id=5, signer_id=3, signer_name="Anna Berg", at=parse_utc_text("2026-05-06T07:08:09.123456Z"),
                    meaning=Meaning.reviewed, entity_type="lot_review", entity_id="ASC-2026-0001:audit_trail:40",
                    content="{}", content_hash="c" * 64, record_hash="")
    as_packet = {"id": 5, "signer_id": 3, "signer_name": "Anna Berg", "at": "2026-05-06T07:08:09.123456Z",
                 "meaning": "reviewed", "entity_type": "lot_review", "entity_id": "ASC-2026-0001:audit_trail:40",
                 "content_hash": "c" * 64}
    assert verify_packet.record_hash(as_packet) == _record_hash(sig)


# --- tampering ----------------------------------------------------------------------------------------------


def _lot_event(folder: Path, action: str = "value recorded") -> dict:
    events = read_json(folder, "audit/events.json")
    return [e for e in events if e["action"] == action][len(events) // 20]


def _edit_events(folder: Path, change: Callable[[list[dict]], list[dict]]) -> None:
    for name in ("chain/segment.json", "audit/events.json"):
        write_json(folder, name, change(read_json(folder, name)))


def edit_an_events_value(folder: Path) -> str:
    target = _lot_event(folder)
    _edit_events(folder, lambda events: [e | {"new_value": "37.1"} if e["seq"] == target["seq"] else e
                                         for e in events])
    return f"FAILED  event {target['seq']}: its hash does not match its content (the event was changed)"


def remove_an_event(folder: Path) -> str:
    seq = _lot_event(folder)["seq"]
    _edit_events(folder, lambda events: [e for e in events if e["seq"] != seq])
    return f"FAILED  event {seq + 1} follows event {seq - 1}: event {seq} missing from the segment"


def cut_the_segments_tail(folder: Path) -> str:
    segment = read_json(folder, "chain/segment.json")
    write_json(folder, "chain/segment.json", segment[:-3])
    return (f"FAILED  chain/segment.json: it ends at event {segment[-4]['seq']} (hash {segment[-4]['hash'][:16]}…), "
            f"not at the checkpoint's event {segment[-1]['seq']}")


def edit_a_signatures_content(folder: Path) -> str:
    sigs = read_json(folder, "signatures.json")
    sig = next(s for s in sigs if s["entity_type"] == "step_entry")
    sig["content"] = sig["content"].replace('"', "'", 2)
    write_json(folder, "signatures.json", sigs)
    return (f"FAILED  signature #{sig['id']} ({sig['meaning']} by {sig['signer_name']} on step_entry "
            f"{sig['entity_id']}): its content does not match its content hash")


def delete_a_signature(folder: Path) -> str:
    sigs = read_json(folder, "signatures.json")
    gone = sigs.pop(len(sigs) // 2)
    write_json(folder, "signatures.json", sigs)
    return f"({'#' + str(gone['id'])}) has no signature in the packet"


def _edit_checkpoint(folder: Path, field: str, value: object) -> str:
    found = read_json(folder, "checkpoints.json")
    seq = found[-1]["seq"]
    found[-1][field] = value
    write_json(folder, "checkpoints.json", found)
    manifest = read_json(folder, "MANIFEST.json")
    manifest["checkpoint"][field] = value
    write_json(folder, "MANIFEST.json", manifest)
    return f"FAILED  checkpoints.json: the signature of checkpoint {found[-1]['seq'] if field == 'seq' else seq} " \
           "does not hold"


def edit_the_checkpoints_seq(folder: Path) -> str:
    return _edit_checkpoint(folder, "seq", read_json(folder, "checkpoints.json")[-1]["seq"] + 40)


def edit_the_checkpoints_hash(folder: Path) -> str:
    return _edit_checkpoint(folder, "head_hash", "0" * 64)


def replace_the_batch_record(folder: Path) -> str:
    (pdf,) = folder.glob("batch-record-*.pdf")
    pdf.write_bytes(b"%PDF-1.4 a batch record printed elsewhere")
    return "FAILED  MANIFEST.json: the packet's signature does not hold"


@pytest.mark.parametrize("tamper", [edit_an_events_value, remove_an_event, cut_the_segments_tail,
                                    edit_a_signatures_content, delete_a_signature, edit_the_checkpoints_seq,
                                    edit_the_checkpoints_hash, replace_the_batch_record])
def test_a_tampered_packet_fails_naming_what_was_changed_even_with_its_manifest_written_again(folder, tamper):
    named = tamper(folder)
    rewrite_manifest(folder)
    result = verify(folder)
    assert result.returncode == 1
    assert named in result.stdout, result.stdout
    assert "FAILED  MANIFEST.json: the packet's signature does not hold" in result.stdout  # the manifest changed
    assert result.stdout.splitlines()[-1].startswith("RESULT  ") and "FAILED: do not rely" in result.stdout


def test_a_file_replaced_without_touching_the_manifest_is_named_by_its_hash(demo, folder):
    replace_the_batch_record(folder)
    result = verify(folder)
    assert result.returncode == 1
    assert (f"FAILED  batch-record-{demo.number}.pdf: its SHA-256 does not match the manifest (the file was changed "
            "or replaced)") in result.stdout


def test_a_file_added_to_the_packet_is_named(folder):
    (folder / "audit" / "late-entries.csv").write_text("seq,hash\n")
    result = verify(folder)
    assert result.returncode == 1 and "FAILED  audit/late-entries.csv: in the packet but not in the manifest" \
        in result.stdout


def test_a_packet_checked_against_another_key_fails_naming_both_keys(folder, checkpoint_key):
    result = verify(folder, "--key-id", "0123456789abcdef")
    assert result.returncode == 1
    assert f"the packet carries key {checkpoint_key.key_id}, not the key 0123456789abcdef you gave" in result.stdout


def test_the_verifier_reads_the_zip_itself(demo, tmp_path, folder):
    archive = tmp_path / "packet.zip"
    archive.write_bytes(demo.data)
    result = verify(folder, packet=archive)  # the folder's verifier, given the archive instead
    assert result.returncode == 0 and "RESULT  every check held" in result.stdout


# --- a segment in pieces, where cellbench kept signed checkpoints in between --------------------------------


def test_the_stretches_run_from_the_first_event_and_then_from_just_after_a_checkpoint_to_the_next():
    assert lot_packet.pieces([5, 6, 40, 41, 90], [10, 30, 50, 100]) == [(5, 10), (31, 100)]
    assert lot_packet.pieces([5, 40, 120], [10, 30, 50, 100, 130]) == [(5, 10), (31, 50), (101, 130)]
    assert lot_packet.pieces([7], [7]) == [(7, 7)]


def _pieced_packet(db, key, tmp_path) -> tuple[Path, int]:
    """The kit world lot's packet where cellbench kept a checkpoint at every tenth event that is not
    the lot's (as the hourly ones fall): the segment comes in pieces."""
    whole = unzip(lot_packet.build(db, actor_of(db, "anna"), "ASC-2026-0101", zone=ZONE).data, tmp_path / "whole")
    ours = {e["seq"] for e in read_json(whole, "audit/events.json")}
    with db.read() as s:
        hashes = dict(s.execute(select(AuditEvent.seq, AuditEvent.hash)).all())
    for seq in sorted(hashes)[::10]:
        if seq not in ours:
            checkpoint_store.issue_for(db, seq, hashes[seq], "hourly", key)
    folder = unzip(lot_packet.build(db, actor_of(db, "anna"), "ASC-2026-0101", zone=ZONE).data, tmp_path / "pieces")
    return folder, len(read_json(whole, "chain/segment.json"))


def test_a_segment_in_pieces_between_kept_checkpoints_is_proved_and_smaller(
        db, trial_world, checkpoint_key, tmp_path):
    folder, whole = _pieced_packet(db, checkpoint_key, tmp_path)
    segment = read_json(folder, "chain/segment.json")
    result = verify(folder)
    assert result.returncode == 0, result.stdout
    assert re.search(r"OK      chain: events \d+ to \d+ \(\d+, in \d+ pieces, each ending at a checkpoint\)",
                     result.stdout)
    assert len(segment) < whole and len(read_json(folder, "checkpoints.json")) > 1
    assert "the segment may come in pieces" in (folder / "README.txt").read_text()


def test_a_piece_cut_at_its_start_fails_naming_the_event_that_does_not_link_to_a_checkpoint(
        db, trial_world, checkpoint_key, tmp_path):
    folder, _ = _pieced_packet(db, checkpoint_key, tmp_path)
    segment = read_json(folder, "chain/segment.json")
    at = next(i for i in range(1, len(segment)) if segment[i]["seq"] != segment[i - 1]["seq"] + 1)
    write_json(folder, "chain/segment.json", segment[:at] + segment[at + 1:])
    result = verify(folder)
    assert result.returncode == 1
    assert (f"FAILED  event {segment[at + 1]['seq']}: a piece of the segment starts here without linking to a "
            f"checkpoint at event {segment[at + 1]['seq'] - 1}") in result.stdout


def test_the_pieces_found_per_event_are_those_every_kept_checkpoint_gives(db, trial_world, checkpoint_key, tmp_path):
    folder, _ = _pieced_packet(db, checkpoint_key, tmp_path)
    own = read_json(folder, "checkpoints.json")[-1]["seq"]
    every = sorted({cp.seq for cp in checkpoint_store.stored(db) if cp.seq < own} | {own})
    events = [e["seq"] for e in read_json(folder, "audit/events.json")]
    segment = [e["seq"] for e in read_json(folder, "chain/segment.json")]
    found: list[tuple[int, int]] = []  # the segment's runs of consecutive events
    for seq in segment:
        found[-1:] = [(found[-1][0], seq)] if found and seq == found[-1][1] + 1 else [*found[-1:], (seq, seq)]
    assert found == lot_packet.pieces(events, every)


def test_a_build_its_route_gave_up_on_stops_before_reading_the_chain(db, trial_world):
    budget = Budget(deadline=time.monotonic() + 60)
    budget.cancelled.set()  # the client left, or the time limit passed
    with pytest.raises(RenderStopped):
        run_with_budget(budget, lambda: lot_packet.build(db, actor_of(db, "anna"), "ASC-2026-0101", zone=ZONE))
    assert budget.stopped.is_set()
