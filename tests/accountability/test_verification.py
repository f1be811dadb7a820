"""The monitor's signed source data verification of a site's accountability: signed on the
accountability page with the password, shown there and in the site's PDF with name, time and
meaning, flagged when the figures change afterwards, and checked by `cellbench verify`."""
from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader
from sqlalchemy import select, text

from cellbench import accountability, integrity, kits, studies, users
from cellbench.errors import Conflict, Forbidden
from cellbench.models import AccountabilityVerification, AuditEvent, KitState, Signature

from ..conftest import PASSWORD, actor_of
from ..trialworld import SITE, STUDY, to_site

PAGE = f"/accountability?study={STUDY}&site={SITE}"


@pytest.fixture
def site_stock(db, kit_world):
    """Six of the eight kits received at the site (three of each arm)."""
    at_site = sorted(kit_world.active[:3] + kit_world.placebo[:3])
    to_site(db, at_site)
    kit_world.at_site = at_site
    return kit_world


def _form(page_text: str) -> dict[str, str]:
    """The hidden fields of the verification form as the monitor's page carries them."""
    return {name: re.search(rf'name="{name}" value="([^"]*)"', page_text).group(1)
            for name in ("study", "site", "figures_fingerprint", "sequence")}


def _sign(client, password=PASSWORD, **changes):
    page = client.get(PAGE)
    assert page.status_code == 200, page.text
    return client.submit("/accountability/verifications", {**_form(page.text), "password": password, **changes})


def _verifications(db) -> list[AccountabilityVerification]:
    with db.read() as s:
        return list(s.scalars(select(AccountabilityVerification).order_by(AccountabilityVerification.id)))


def _pdf_text(client) -> str:
    pdf = client.get(f"/accountability/report.pdf?study={STUDY}&site={SITE}")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)


def test_the_monitor_signs_the_site_figures_as_shown_and_the_page_and_pdf_show_name_time_and_meaning(db, site_stock,
                                                                                                       as_):
    mette = as_("mette")
    signed = _sign(mette, comment="pharmacy log and shipment receipts checked")
    assert signed.status_code == 303, signed.text
    [row] = _verifications(db)
    with db.read() as s:
        sig = s.get(Signature, row.signature_id)
        study = studies.by_code(s, STUDY)
        site = accountability.verification.site_of(s, study, SITE)
        now = accountability.figures(s, study, site)
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "accountability verified")))
    assert (sig.signer_name, sig.meaning, sig.entity_type) == \
        ("Mette Monitor", "verified", "accountability_verification")
    assert row.sequence == 1 and row.figures_hash == accountability.figures_hash(now)
    assert '"in_stock":6' in sig.content and "active" not in sig.content and "placebo" not in sig.content, \
        "the signed content is the blinded figures: counts per blinded lot, no arm"
    assert [(e.entity_id, e.user_name) for e in events] == [(f"{STUDY}/{SITE}", "Mette Monitor")]

    page = mette.get(PAGE)
    assert "Mette Monitor" in page.text and "verified" in page.text and "Verified on" in page.text
    shown = _pdf_text(mette)
    for expected in ("Mette Monitor", "verified", "as now", "Verified on", SITE):
        assert expected in shown, expected
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d", shown), "the time, to the second, with its offset"
    assert integrity.verify(db).ok


def test_a_figure_that_changes_after_the_verification_is_flagged_on_the_page_the_pdf_and_the_queue(db, site_stock,
                                                                                                      as_):
    mette = as_("mette")
    assert _sign(mette).status_code == 303
    assert "accountability not verified" not in mette.get("/").text, "verified as it stands: nothing waits"
    with db.write() as s:
        kits.move(s, actor_of(db, "frida"), kits.by_number(s, site_stock.at_site[0]), "damage", reason="dropped")
    page = mette.get(PAGE)
    assert "changed since verification on" in page.text
    assert "Changed since verification on" in _pdf_text(mette)
    home = mette.get("/")
    assert f"site {SITE} ({STUDY}): accountability not verified since" in home.text
    assert integrity.verify(db).ok, "a kit moving after a verification is ordinary work, not tampering"

    again = _sign(mette)
    assert again.status_code == 303, "each monitoring visit is a new verification"
    assert [v.sequence for v in _verifications(db)] == [1, 2]
    assert "Verified on" in mette.get(PAGE).text and "not verified since" not in mette.get("/").text


def test_verify_catches_a_changed_figure_and_a_tampered_signature_content(db, site_stock, as_):
    assert _sign(as_("mette")).status_code == 303
    [row] = _verifications(db)
    six, five, seven = '"in_stock":6', '"in_stock":5', '"in_stock":7'
    swap = "UPDATE {} SET {} = replace({}, :old, :new) WHERE id = :id"
    with db.engine.begin() as conn:
        conn.execute(text(swap.format("accountability_verification", "figures", "figures")),
                     {"old": six, "new": five, "id": row.id})
    problem = integrity.verify(db).problems[0]
    assert problem.startswith(f"signature {row.signature_id} (verified by Mette Monitor on accountability_verification")
    assert problem.endswith("the signed record has changed since it was signed")
    with db.engine.begin() as conn:
        conn.execute(text(swap.format("accountability_verification", "figures", "figures")),
                     {"old": five, "new": six, "id": row.id})
        conn.execute(text(swap.format("signature", "content", "content")),
                     {"old": six, "new": seven, "id": row.signature_id})
    assert integrity.verify(db).problems[0].endswith("the stored content does not match its hash")


@pytest.mark.parametrize("who", ["frida", "sara", "ida", "anna"])
def test_only_a_monitor_may_sign_a_verification(db, site_stock, as_, who):
    reference = _form(as_("mette").get(PAGE).text)
    refused = as_(who).submit("/accountability/verifications", {**reference, "password": PASSWORD})
    assert refused.status_code == 403
    assert _verifications(db) == []
    page = as_(who).get(PAGE) if who != "ida" else None
    assert page is None or "Sign the verification" not in page.text
    with pytest.raises(Forbidden), db.write() as s:
        study = studies.by_code(s, STUDY)
        accountability.verify(s, users.by_username(s, who), PASSWORD, study, SITE,
                              seen_fingerprint=reference["figures_fingerprint"], sequence=1)


def test_a_wrong_password_is_refused_and_nothing_is_written(db, site_stock, as_):
    refused = _sign(as_("mette"), password="not my password")
    assert refused.status_code == 401
    assert "Wrong password" in refused.text
    assert _verifications(db) == []
    with db.read() as s:
        assert not list(s.scalars(select(Signature).where(Signature.entity_type == "accountability_verification")))
        assert not list(s.scalars(select(AuditEvent).where(AuditEvent.action == "accountability verified")))


def test_two_submissions_of_the_same_visit_make_one_verification(db, site_stock, as_):
    mette = as_("mette")
    form = _form(mette.get(PAGE).text)
    first = mette.submit("/accountability/verifications", {**form, "password": PASSWORD})
    second = mette.submit("/accountability/verifications", {**form, "password": PASSWORD})
    assert (first.status_code, second.status_code) == (303, 409)
    assert "since the page was loaded" in second.text
    assert len(_verifications(db)) == 1


def test_the_same_number_claimed_at_the_same_moment_conflicts_at_the_unique_row(db, site_stock):
    """Two transactions both past the check of the next number: the row's uniqueness decides."""
    with db.read() as s:
        study = studies.by_code(s, STUDY)
        site = accountability.verification.site_of(s, study, SITE)
        seen = accountability.standing(s, study, site).figures_hash
    with db.write() as s:
        s.add(AccountabilityVerification(study_id=study.id, site_id=site.id, sequence=1, figures="{}",
                                         figures_hash="0" * 64, by_user=users.by_username(s, "mette").id,
                                         at=accountability.verification.utcnow()))
    with pytest.raises(Conflict), db.write() as s:
        accountability.verify(s, users.by_username(s, "mette"), PASSWORD, studies.by_code(s, STUDY), SITE,
                              seen_hash=seen, sequence=1)


def test_figures_that_changed_after_the_page_was_loaded_are_not_signed(db, site_stock, as_):
    mette = as_("mette")
    form = _form(mette.get(PAGE).text)
    to_site(db, [site_stock.at_site[0]], KitState.administered)
    refused = mette.submit("/accountability/verifications", {**form, "password": PASSWORD})
    assert refused.status_code == 409 and "read the figures again" in refused.text
    assert _verifications(db) == []


def test_the_api_reads_the_standing_and_signs_with_the_figures_it_read(db, site_stock, as_):
    mette = as_("mette")
    read = mette.get(f"/api/v1/accountability/verifications?study={STUDY}&site={SITE}")
    assert read.status_code == 200, read.text
    now = read.json()
    assert (now["status"], now["next_sequence"], now["verifications"]) == ("not verified", 1, [])
    body = {"study": STUDY, "site": SITE, "figures_fingerprint": now["figures_fingerprint"], "sequence": 1,
            "password": PASSWORD}
    signed = mette.post("/api/v1/accountability/verifications", json=body)
    assert signed.status_code == 201, signed.text
    [v] = signed.json()["verifications"]
    assert (signed.json()["status"], v["signer_name"], v["meaning"], v["as_now"]) == \
        ("verified", "Mette Monitor", "verified", True)
    again = mette.post("/api/v1/accountability/verifications", json=body)
    assert (again.status_code, again.json()["field"]) == (409, "sequence")
    bench = mette.get(f"/api/v1/accountability/verifications?study={STUDY}&site=bench")
    assert (bench.status_code, bench.json()["field"]) == (422, "site")


def _queued(client) -> bool:
    return f"site {SITE} ({STUDY}): accountability not verified since" in client.get("/").text


def test_the_home_queue_judges_a_site_by_its_figures_fingerprint_as_the_page_judges_it_by_the_figures(db, site_stock,
                                                                                                       as_):
    mette, kit = as_("mette"), site_stock.at_site[0]
    assert _sign(mette).status_code == 303
    to_site(db, [kit], KitState.allocated)
    assert not _queued(mette) and "Verified on" in mette.get(PAGE).text, \
        "allocated is in stock as at site was: the figures, and so the verification, stand"
    to_site(db, [kit], KitState.quarantined)
    assert _queued(mette) and "changed since verification on" in mette.get(PAGE).text
    to_site(db, [kit], KitState.at_site)
    assert not _queued(mette) and "Verified on" in mette.get(PAGE).text, "the figures are again those verified"
    to_site(db, [kit], KitState.dispensed)
    assert _queued(mette) and "changed since verification on" in mette.get(PAGE).text


def test_a_verification_signed_before_fingerprints_were_kept_is_judged_by_its_figures(db, site_stock, as_):
    mette = as_("mette")
    assert _sign(mette).status_code == 303
    with db.write() as s:
        [row] = s.scalars(select(AccountabilityVerification))
        assert row.fingerprint is not None, "a verification keeps the fingerprint of the figures it signed"
        row.fingerprint = None
    assert not _queued(mette)
    to_site(db, [site_stock.at_site[0]], KitState.dispensed)
    assert _queued(mette)
