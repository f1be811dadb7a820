"""Scanning vials out one after another on the lot page (found by the trial walk): the answer to each
fate names the vial and what became of it, and opens the page at the vial form again for the next
scan, not at the current step far below it with a bare "Saved."."""
from __future__ import annotations

from urllib.parse import unquote

from sqlalchemy import select

from cellbench.models import AuditEvent

from .test_vials import lot_at_storage, state_of, text_of


def test_a_vials_fate_is_said_by_its_code_and_the_page_opens_at_the_vial_form_again(db, as_, people, demo_world):
    number = lot_at_storage(db, 31)
    olivia = as_("olivia")

    pulled = olivia.submit(f"/lots/{number}/vial", {"vial_fate_form": "1", "vial": f"{number}-V001", "fate": "qc"})
    assert pulled.status_code == 303
    where = unquote(pulled.headers["location"])
    assert where.endswith("#vials"), where
    assert f"notice=Vial {number}-V001: pulled for QC." in where
    assert state_of(db, f"{number}-V001") == "qc"
    page = text_of(olivia.get(where.split("#")[0]).text)
    assert f"Vial {number}-V001: pulled for QC." in page and f"No fate yet: {number}-V002" in page

    kept = olivia.submit(f"/lots/{number}/vial", {"vial_fate_form": "1", "vial": f"{number}-V002",
                                                  "fate": "retained", "reason": "LN2-A/R9/B01"})
    assert f"Vial {number}-V002: retained sample." in unquote(kept.headers["location"])
    with db.read() as s:
        recorded = s.scalars(select(AuditEvent).where(AuditEvent.entity_id == number,
                                                      AuditEvent.field == f"vial {number}-V002")).one()
        assert (recorded.action, recorded.new_value, recorded.reason) == ("vial retained sample", "retained sample",
                                                                         "LN2-A/R9/B01")


def test_a_refused_vial_scan_still_answers_with_the_page_and_names_the_field(db, as_, people, demo_world):
    number = lot_at_storage(db, 32)
    refused = as_("olivia").submit(f"/lots/{number}/vial", {"vial_fate_form": "1", "vial": f"{number}-V099",
                                                            "fate": "qc"})
    assert refused.status_code == 404 and f"No vial '{number}-V099'" in text_of(refused.text)
