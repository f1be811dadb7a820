"""Electronic signatures: re-authentication, what they bind, how they show, how verify checks them."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event, select, text

import cellbench
from cellbench import audit_review, integrity, signatures, users
from cellbench.errors import AuthenticationFailed, Forbidden
from cellbench.models import AuditEvent, AuditReview, Meaning, Signature

from .conftest import PASSWORD
from .demo_pages import visible_text


def sign_review(db, username: str, password: str = PASSWORD) -> AuditReview:
    with db.write() as s:
        end = audit_review.pending_range(s)[1]
        return audit_review.sign_review(s, users.by_username(s, username), password, end, "weekly review")


def test_a_signature_records_signer_printed_name_utc_time_meaning_and_content_hash(db, people):
    review = sign_review(db, "anna")
    with db.read() as s:
        sig = s.get(Signature, review.signature_id)
        assert (sig.signer_name, Meaning(sig.meaning), sig.entity_type) == ("Anna QA", Meaning.reviewed, "audit_review")
        assert sig.at.utcoffset().total_seconds() == 0
        assert len(sig.content_hash) == 64 and f'"to_seq":{review.to_seq}' in sig.content
        event = s.get(AuditEvent, sig.audit_seq)
        assert event.action == "signed" and event.new_value == f"#{sig.id} {sig.record_hash}"
    assert integrity.verify(db).signatures == 1


def test_a_wrong_password_is_refused_audited_counted_and_nothing_else_is_saved(db, people):
    with pytest.raises(AuthenticationFailed) as refused:
        sign_review(db, "anna", "not my password")
    assert refused.value.field == "password"
    with db.read() as s:
        assert s.scalars(select(AuditReview)).first() is None
        assert s.scalars(select(Signature)).first() is None
        assert users.by_username(s, "anna").failed_logins == 1
        failed = s.scalars(select(AuditEvent).where(AuditEvent.action == "password check failed")).all()
        assert [e.entity_id for e in failed] == ["anna"]


def test_five_wrong_signing_passwords_lock_the_account(db, people):
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            sign_review(db, "anna", "not my password")
    with db.read() as s:
        assert users.by_username(s, "anna").locked


def test_administrators_cannot_sign(db, people):
    with pytest.raises(Forbidden) as refused, db.write() as s:
        signatures.sign(s, users.by_username(s, "adam"), PASSWORD, Meaning.reviewed, "audit_review", "1")
    assert "Administrators cannot sign" in refused.value.message


def test_only_qa_signs_the_audit_trail_review(db, people):
    with pytest.raises(Forbidden):
        sign_review(db, "peter")


def test_verify_names_a_signature_whose_record_was_altered(db, people):
    review = sign_review(db, "anna")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE signature SET signer_name = 'Peter QP' WHERE id = :id"), {"id": review.signature_id})
    report = integrity.verify(db)
    assert report.problems == [f"signature {review.signature_id} (reviewed by Peter QP on audit_review {review.id}): "
                               "the signature record was changed after signing"]


def test_verify_names_a_signature_whose_signed_record_changed(db, people):
    review = sign_review(db, "anna")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_review SET comment = 'nothing to see' WHERE id = :id"), {"id": review.id})
    problem = integrity.verify(db).problems[0]
    assert problem.endswith("the signed record has changed since it was signed")
    assert problem.startswith(f"signature {review.signature_id} (reviewed by Anna QA")


def test_verify_names_a_signature_whose_content_was_swapped(db, people):
    review = sign_review(db, "anna")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE signature SET content = '{}' WHERE id = :id"), {"id": review.signature_id})
    assert integrity.verify(db).problems[0].endswith("the stored content does not match its hash")


def test_an_invalidated_signature_needs_a_reason_and_stays_visible(db, people):
    review = sign_review(db, "anna")
    with db.write() as s:
        sig = s.get(Signature, review.signature_id)
        signatures.invalidate(s, users.actor(s, users.by_username(s, "anna")), sig, "signed the wrong range")
    with db.read() as s:
        sig = s.get(Signature, review.signature_id)
        assert sig.invalidated_reason == "signed the wrong range"
    assert integrity.verify(db).ok


def test_standing_ids_are_the_signatures_that_exist_and_are_not_invalidated_read_in_one_statement(db, people):
    first, second = sign_review(db, "anna"), sign_review(db, "anna")
    with db.write() as s:
        voided = s.get(Signature, first.signature_id)
        signatures.invalidate(s, users.actor(s, users.by_username(s, "anna")), voided, "signed the wrong range")
        sent: list[str] = []
        listen = lambda *args: sent.append(args[2])  # noqa: E731
        event.listen(s.connection(), "before_cursor_execute", listen)  # the invalidation is flushed first
        try:
            stands = signatures.standing_ids(s, [first.signature_id, second.signature_id, None, 10_000])
        finally:
            event.remove(s.connection(), "before_cursor_execute", listen)
    assert stands == {second.signature_id}
    assert len(sent) == 1
    with db.read() as s:
        assert signatures.standing_ids(s, [None]) == set()


def test_the_review_page_signs_and_shows_name_time_and_meaning(as_, db):
    anna = as_("anna")
    page = anna.get("/audit/review")
    assert "have not been reviewed" in page.text
    end = re.search(r'name="to_seq" value="(\d+)"', page.text).group(1)
    wrong = anna.submit("/audit/review", {"to_seq": "999999", "password": PASSWORD})
    assert wrong.status_code == 422 and "must end between" in wrong.text
    bad = anna.submit("/audit/review", {"to_seq": end, "password": "nope nope nope"})
    assert bad.status_code == 401 and "Wrong password" in bad.text
    done = anna.submit("/audit/review", {"to_seq": end, "password": PASSWORD, "comment": "all routine"})
    assert done.status_code == 303
    shown = anna.get("/audit/review").text
    assert "Anna QA" in shown and "reviewed" in shown
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d", visible_text(shown))  # the one format


def test_cellbench_verify_imports_every_module_that_says_what_a_signature_covers():
    """`cellbench verify` imports integrity.SIGNING_MODULES, nothing else, before checking signatures:
    a content rule registered anywhere else would leave its signatures unverifiable."""
    package = Path(cellbench.__file__).parent
    in_source = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("content_rule")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                in_source.add(node.args[0].value)
    # A fresh interpreter, as the command line is: the test session has imported everything already.
    script = ("import importlib\nfrom cellbench import integrity, signatures\n"
              "for name in integrity.SIGNING_MODULES:\n    importlib.import_module('cellbench.' + name)\n"
              "print(' '.join(sorted(signatures.signable_types())))")
    known = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           cwd=package.parent).stdout.split()
    assert in_source and set(known) == in_source
