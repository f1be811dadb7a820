"""`verify` names every way a database owner can change the end of the chain without the key: a cut
tail with the head moved back, an appended event, a rewrite after the last review, a full forgery,
an unsigned head, and a checkpoint from elsewhere that the chain contradicts. Each of them passes the
chain and signature checks alone (passes_the_old_checks); the checkpoint key is what names them."""
from __future__ import annotations

from sqlalchemy import select

from cellbench import checkpoints, integrity
from cellbench.checkpoints import store
from cellbench.models import AuditCheckpoint

from . import tamper
from .conftest import passes_the_old_checks, record_work


def test_an_untampered_world_verifies_clean_with_its_checkpoints(db, reviewed, checkpoint_key):
    report = integrity.verify(db)
    assert report.ok, report.problems
    with db.read() as s:
        rows = list(s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))
    assert [(r.why, r.seq) for r in rows] == [("qa review", reviewed.review_seq), ("manual", reviewed.manual_seq)]
    assert [checkpoints.from_json(line).seq for _, line in store.logged(store.log_path(checkpoint_key))] == [
        reviewed.review_seq, reviewed.manual_seq]


def test_a_cut_tail_with_the_head_moved_back_is_named_by_the_log_beside_the_key(db, reviewed):
    tamper.truncate_to(db, reviewed.review_seq, reviewed.head_at_review)  # rows and checkpoints gone
    assert passes_the_old_checks(db)
    assert integrity.verify(db, logs=[]).ok  # the database alone is consistent: the old head's signature is genuine
    assert integrity.verify(db).problems == [
        f"checkpoints.jsonl line 2 (event {reviewed.manual_seq} at {_at(db, reviewed.manual_seq)}): the chain ends "
        f"at event {reviewed.review_seq}, before this checkpoint: its tail was cut off"]


def test_an_appended_event_correctly_hashed_is_named_by_the_head_signature(db, reviewed):
    seq = tamper.append_event(db)
    assert passes_the_old_checks(db)
    assert integrity.verify(db).problems == [
        f"the chain head (event {seq}) does not carry the checkpoint key's signature: the head was moved outside "
        "cellbench (events appended, rewritten or cut off)"]


def test_a_rewrite_after_the_last_review_is_named(db, reviewed):
    tamper.rewrite_from(db, reviewed.review_seq + 1, {"user_name": "Someone Else"})
    assert passes_the_old_checks(db)
    problems = integrity.verify(db).problems
    assert problems[0].startswith(f"the chain head (event {tamper.head(db)[0]}) does not carry the checkpoint key's")
    rewritten = f"the chain's hash at event {reviewed.manual_seq} is not the one signed"
    # named once, where it is found first (the same checkpoint is in the log too)
    assert [p.split(" (")[0] for p in problems[1:] if rewritten in p] == ["checkpoint row 2"]
    assert not any(f"event {reviewed.review_seq} at" in p for p in problems)  # the review's checkpoint still holds


def test_a_full_forgery_with_the_reviews_signed_again_is_named(db, reviewed):
    tamper.rewrite_from(db, 1, {"user_name": "Forged Founder"})
    assert passes_the_old_checks(db)  # every event re-hashed, the audit review's signature made again
    problems = integrity.verify(db).problems
    assert "does not carry the checkpoint key's signature" in problems[0]
    assert [p.split(" (")[0] for p in problems if "is not the one signed" in p] == ["checkpoint row 1",
                                                                                    "checkpoint row 2"]


def test_an_unsigned_head_is_named(db, reviewed, checkpoint_key):
    checkpoints.install(None)  # a write by a process without the key
    record_work(db, "xia")
    checkpoints.install(checkpoint_key)
    seq = tamper.head(db)[0]
    assert integrity.verify(db).problems == [
        f"the chain head (event {seq}) is not signed by the checkpoint key: it was written without the key, "
        "or set by hand"]


def test_a_checkpoint_given_that_the_chain_contradicts_is_named(db, reviewed, checkpoint_key):
    other_chain = checkpoints.make(checkpoint_key, 3, "f" * 64)
    later = checkpoints.make(checkpoint_key, reviewed.manual_seq + 100, "e" * 64)
    stranger = checkpoints.make(checkpoints.create(checkpoint_key.path.parent / "other.key"), 3, "f" * 64)
    problems = integrity.verify(db, given=[other_chain, later, stranger]).problems
    assert problems == [
        f"the checkpoint given (event 3 at {other_chain.at}): the chain's hash at event 3 is not the one signed: "
        "events up to 3 were rewritten",
        f"the checkpoint given (event {later.seq} at {later.at}): the chain ends at event {tamper.head(db)[0]}, "
        "before this checkpoint: its tail was cut off",
        f"the checkpoint given (event 3 at {stranger.at}): its signature does not hold for the checkpoint key "
        f"{checkpoint_key.key_id}: cellbench did not make it with this key"]


def test_verify_checks_with_the_public_key_alone(db, reviewed, checkpoint_key):
    checkpoints.install(None)
    try:
        assert integrity.verify(db).problems[0].startswith("no checkpoint key to check")
        assert integrity.verify(db, public_key=checkpoint_key.public_text).ok
        other = checkpoints.create(checkpoint_key.path.parent / "other.key")
        assert "does not carry the checkpoint key's signature" in integrity.verify(db, public_key=other.public_text
                                                                                   ).problems[0]
    finally:
        checkpoints.install(checkpoint_key)



def _at(db, seq: int) -> str:
    """When the checkpoint at `seq` was made, as its log line says (its row may be gone)."""
    return next(cp.at for cp in (checkpoints.from_json(line) for _, line in
                                 store.logged(store.log_path(checkpoints.installed()))) if cp.seq == seq)
