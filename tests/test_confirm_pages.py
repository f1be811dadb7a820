"""Irreversible actions carry their summary for the confirmation dialog (templates/static/confirm.js,
included on every page), and the release page keeps the rejection apart from and after every
positive decision. Without JavaScript the forms post as before: the server requires what it did."""
from __future__ import annotations

import html
import re

from cellbench import demo
from cellbench.clock import utcnow

from .conftest import sign_in

ASC = f"ASC-{utcnow():%Y}-0001"


def confirm_summaries(page_text: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r'data-confirm="([^"]+)"', page_text)]


def test_every_page_loads_the_confirmation_script(kit_world, as_):
    for who, url in (("frida", "/"), ("sara", "/supply/quarantines/new"), ("anna", "/deviations")):
        assert '<script src="/static/confirm.js" defer></script>' in as_(who).get(url).text
    script = as_("frida").get("/static/confirm.js")
    assert script.status_code == 200 and "showModal" in script.text and "Go back" in script.text


def test_the_rejection_comes_last_on_the_release_page_in_its_own_section_with_a_summary(demo_world, app):
    qa = sign_in(app, "qa", demo.DEMO_PASSWORD)
    page = qa.get(f"/lots/{ASC}/release").text
    reject = page.index('<section class="card irreversible" id="reject"')
    for positive in ('id="reviews"', 'id="excursions"'):
        assert page.index(positive) < reject, f"rejection before {positive}"
    assert '<section class="card irreversible" id="reject"' in page
    assert f"Reject lot {ASC}? It can never be certified or released. This cannot be undone." in confirm_summaries(page)


def test_randomising_unblinding_and_quarantining_carry_their_summaries(trial_world, as_, db):
    from cellbench import pharmacy, studies, users

    with db.write() as s:
        ida = users.actor(s, users.by_username(s, "ida"))
        pharmacy.enrol(s, ida, studies.by_code(s, "NCT07290946"), site_code="RH-ENT", screening_number="SCR-077")
    assert ("Randomise participant SCR-077 in NCT07290946? This takes the next number of the sealed randomisation "
            "list and plans the treatment visits. It cannot be undone."
            in confirm_summaries(as_("ida").get("/participants/NCT07290946/SCR-077").text))
    assert any(s.startswith("Unblind this participant?") for s in confirm_summaries(as_("ida").get("/unblinding").text))
    assert any(s.startswith("Quarantine the kits of this lot?")
               for s in confirm_summaries(as_("sara").get("/supply/quarantines/new").text))
