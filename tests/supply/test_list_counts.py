"""A sealed list's arm counts are kept beside it when it is made (its lines never change), so that
each page of a long list reads a few rows instead of counting the whole list; they equal a recount
of its lines, every page shows them, and every look at them is still a logged sealed read."""
from __future__ import annotations

from collections import Counter

from cellbench import sealed, studies, users
from cellbench.models import Visibility

from ..custody.test_storage_counts import migrated_from_0031
from ..kitworld import load_studies
from .test_supply_web import STUDY, _events


def _recount(db, kind: str, version: int) -> dict[str, int]:
    """The arms of every line of the list, counted from the lines themselves."""
    with db.write() as s:
        sara = users.actor(s, users.by_username(s, "sara"))
        row = next(r for r in sealed.lists_of(s, sara, studies.by_code(s, STUDY))
                   if (r.kind, r.version) == (kind, version))
        return dict(Counter(line.arm for line in sealed.list_lines(s, sara, row, limit=10_000)))


def test_every_page_of_a_list_shows_its_arm_counts_as_a_recount_of_its_lines_and_logs_the_look(as_, db, people):
    load_studies(db)
    sara = as_("sara")
    for kind, size in (("kit", 30), ("randomisation", 26)):
        made = sara.post(f"/api/v1/supply/studies/{STUDY}/lists", json={"kind": kind, "size": size, "seed": "c",
                                                                        "block_sizes": "2"})
        assert made.status_code == 201, made.text
        url = f"/api/v1/supply/studies/{STUDY}/lists/{kind}/1"
        recounted = _recount(db, kind, 1)
        assert sum(recounted.values()) == size and len(recounted) == 2
        looks = len([e for e in _events(db, "sealed read") if e.field == "list arm counts"])
        first = sara.get(f"{url}?limit=10").json()
        second = sara.get(f"{url}?limit=10&after={first['next']}").json()
        assert first["arm_counts"] == second["arm_counts"] == recounted, "the same counts on every page"
        assert [e["position"] for e in first["entries"] + second["entries"]] == list(range(1, 21))
        reads = [e for e in _events(db, "sealed read") if e.field == "list arm counts"]
        assert len(reads) == looks + 2, "each page's look at the counts is a sealed read of its own"
        assert reads[-1].user_name == "Sara Supply" and reads[-1].visibility == Visibility.unblinded


def test_the_migration_counts_the_arms_of_the_lists_of_an_existing_database(as_, db, people):
    load_studies(db)
    made = as_("sara").post(f"/api/v1/supply/studies/{STUDY}/lists", json={"kind": "kit", "size": 12, "seed": "m",
                                                                           "block_sizes": "4"})
    assert made.status_code == 201, made.text
    url = f"/api/v1/supply/studies/{STUDY}/lists/kit/1"
    before = as_("sara").get(url).json()["arm_counts"]
    assert before == {"active": 6, "placebo": 6}
    migrated_from_0031(db)
    assert as_("sara").get(url).json()["arm_counts"] == before == _recount(db, "kit", 1)
