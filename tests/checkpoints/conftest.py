"""A world a QA reviewer has reviewed, with work recorded after the review and a checkpoint between."""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import pytest

from cellbench import audit_review, integrity, signatures, users
from cellbench.checkpoints import store
from cellbench.db import Database

from ..conftest import PASSWORD
from . import tamper


@dataclass(frozen=True)
class Reviewed:
    review_seq: int  # the chain's end when the review's checkpoint was made
    head_at_review: tuple[int, str, str | None]  # the head then, with its genuine signature
    manual_seq: int  # a later checkpoint, after more work


def record_work(db: Database, username: str) -> None:
    with db.write() as s:
        users.create_user(s, users.cli_actor(), username, f"{username.title()} Worker", PASSWORD, ["operator"])


@pytest.fixture
def reviewed(db, effective_specs) -> Reviewed:
    """QA signs the audit-trail review (a "qa review" checkpoint follows the commit); an operator
    account is created; a manual checkpoint; another account."""
    with db.write() as s:
        _, end = audit_review.pending_range(s)
        audit_review.sign_review(s, users.by_username(s, "anna"), PASSWORD, end, "Read in full.")
    at_review = tamper.head(db)
    record_work(db, "zed")
    manual = store.issue(db, "manual")
    record_work(db, "yan")
    return Reviewed(at_review[0], at_review, manual.seq)


def passes_the_old_checks(db: Database) -> bool:
    """What `verify` checked before the checkpoints: the chain against its head, every signature."""
    for name in integrity.SIGNING_MODULES:
        importlib.import_module(f"cellbench.{name}")
    with db.read() as s:
        _, problems = signatures.verify_all(s)
    return integrity.verify_chain(db).ok and not problems
