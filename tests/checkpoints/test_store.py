"""When checkpoints are made: after a QA review commits (never after one rolled back), every hour
the chain moved, on demand; and every printed record's footer names the latest."""
from __future__ import annotations

import io
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from cellbench import audit_review, checkpoints, clock, users
from cellbench.checkpoints import store
from cellbench.models import AuditCheckpoint
from cellbench.reports import certificate_start

from ..conftest import PASSWORD
from .conftest import record_work


def _whys(db) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(AuditCheckpoint.why).order_by(AuditCheckpoint.id)))


class Refused(Exception):
    pass


def test_a_review_that_rolls_back_leaves_no_checkpoint_and_one_that_commits_leaves_one(db, effective_specs,
                                                                                      checkpoint_key):
    with pytest.raises(Refused), db.write() as s:
        _, end = audit_review.pending_range(s)
        audit_review.sign_review(s, users.by_username(s, "anna"), PASSWORD, end, None)
        raise Refused  # something later in the same use case fails: nothing was reviewed
    assert _whys(db) == [] and store.logged(store.log_path(checkpoint_key)) == []
    with db.write() as s:
        _, end = audit_review.pending_range(s)
        audit_review.sign_review(s, users.by_username(s, "anna"), PASSWORD, end, None)
    assert _whys(db) == ["qa review"]
    [(_, line)] = store.logged(store.log_path(checkpoint_key))
    assert '"why": "qa review"' in line and checkpoints.why_invalid(checkpoint_key.public_text,
                                                                   checkpoints.from_json(line)) is None


def test_a_savepoint_after_the_review_does_not_make_the_checkpoint_early(db, effective_specs):
    with db.write() as s:
        _, end = audit_review.pending_range(s)
        audit_review.sign_review(s, users.by_username(s, "anna"), PASSWORD, end, None)
        with s.begin_nested():  # as packing, storage and dispensing claim their rows
            record_work_in(s, "zed")
        assert _whys(db) == []  # the review is not committed yet
    assert _whys(db) == ["qa review"]


def record_work_in(session, username: str) -> None:
    users.create_user(session, users.cli_actor(), username, f"{username.title()} Worker", PASSWORD, ["operator"])


def test_the_hourly_checkpoint_is_made_only_when_the_chain_moved(db, people):
    first = store.issue_if_moved(db)
    assert first is not None and _whys(db) == ["hourly"]
    assert store.issue_if_moved(db) is None  # nothing written since: no second checkpoint of the same head
    record_work(db, "zed")
    later = store.issue_if_moved(db)
    assert later is not None and later.seq > first.seq and _whys(db) == ["hourly", "hourly"]


def test_the_hourly_task_issues_its_first_checkpoint_at_start_up_not_an_hour_later(db, people):
    # A server restarted more often than hourly must still leave hourly checkpoints behind.
    import asyncio

    from cellbench.app import _hourly_checkpoints

    async def start_up() -> None:
        task = asyncio.create_task(_hourly_checkpoints(db, every=3600))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if _whys(db):
                break
        task.cancel()

    asyncio.run(start_up())
    assert _whys(db) == ["hourly"]


def test_an_empty_chain_gets_no_hourly_checkpoint_and_no_key_means_none(db, checkpoint_key):
    assert store.issue_if_moved(db) is None
    checkpoints.install(None)
    assert store.issue_if_moved(db) is None
    with pytest.raises(checkpoints.KeyProblem, match="no checkpoint key is installed"):
        store.issue(db, "manual")


def test_a_checkpoint_names_a_known_reason(db, people):
    with pytest.raises(ValueError, match="a checkpoint's reason is one of backup, qa review"):
        store.issue(db, "because")
    assert _whys(db) == []


def test_every_printed_record_names_the_latest_checkpoint_in_its_footer(db, people):
    cp = store.issue(db, "manual")
    pdf = certificate_start("Certificate", "Test document", "", zone=ZoneInfo("UTC"), printed_by="Anna QA",
                            printed_at=clock.utcnow())
    pdf.add_page()
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(bytes(pdf.output()))).pages)
    assert text.count(f"checkpoint {cp.seq} {cp.head_hash[:16]}") == 2  # on both pages
    assert f"key {cp.key_id}" in text

