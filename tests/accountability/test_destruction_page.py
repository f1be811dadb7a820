"""A destruction is read in a fixed number of statements whatever its size or the study's, and its
kits are listed a page at a time beside the count of them all (issue 18: the page read every
blinded lot of the study and every user, and grew with the years)."""
from __future__ import annotations

from sqlalchemy import event

from cellbench import accountability

from .test_accountability import _authorise, _count, _move, site_stock  # noqa: F401  (site_stock: a fixture)


def _three_returned(db, w, as_) -> tuple[str, str]:
    """Three returned kits, counted, then authorised for destruction: one alone, two together."""
    kits = w.at_site[:3]
    for number in kits:
        _move(db, "frida", number, "return")
    assert _count(as_("frida"), 6, world=w).json()["balanced"]
    one = _authorise(as_("sara"), kits[:1]).json()["number"]
    two = _authorise(as_("sara"), kits[1:]).json()["number"]
    return one, two


def test_a_destructions_kits_are_listed_a_page_at_a_time_with_the_count_of_them_all(db, site_stock, as_):  # noqa: F811
    w = site_stock
    _one, two = _three_returned(db, w, as_)
    frida = as_("frida")
    first = frida.get(f"/api/v1/destructions/{two}?limit=1").json()
    assert first["kit_count"] == 2 and [k["kit_number"] for k in first["kits"]] == [w.at_site[1]]
    assert first["signatures"] and first["kits_next"], "a page of the kits, the rest of the record whole"
    rest = frida.get(f"/api/v1/destructions/{two}?limit=1&after={first['kits_next']}").json()
    assert [k["kit_number"] for k in rest["kits"]] == [w.at_site[2]] and rest["kits_next"] is None
    assert frida.get(f"/api/v1/destructions/{two}?after=not-a-cursor").json()["field"] == "after"
    page = frida.get(f"/destructions/{two}").text
    assert "Kits (2)" in page and w.at_site[1] in page and w.at_site[2] in page


def test_a_destruction_is_read_in_the_same_statements_whatever_its_number_of_kits(db, site_stock, as_):  # noqa: F811
    one, two = _three_returned(db, site_stock, as_)
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    read = {}
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        for number in (one, two):
            with db.read() as s:  # a session each: nothing the first read is held for the second
                seen.clear()
                data = accountability.gather(s, accountability.destruction.by_number(s, number))
                read[number] = (len(seen), data)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert read[one][0] == read[two][0]
    assert [len(read[n][1].kits) for n in (one, two)] == [1, 2]
    for number in (one, two):  # the count it stood on, signed, and the sponsor's authorisation
        data = read[number][1]
        assert [code for code, _rec, _by in data.counts] == [site_stock.blinded_lot]
        assert [s.label for s in data.signatures] == [f"Reconciliation of blinded lot {site_stock.blinded_lot}",
                                                      "Destruction authorised (sponsor)"]
        assert data.authorised_by == "Sara Supply" and data.counts[0][2] == "Frida Pharmacist"
