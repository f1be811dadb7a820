"""Randomisation and kit lists: permuted blocks from a seed, CSV imports, sealing."""
from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from cellbench import sealed, studies, users
from cellbench.errors import AuthenticationFailed, Conflict, Forbidden, InvalidInput
from cellbench.models import AuditEvent, Kit, KitState, Meaning, SealedList
from cellbench.sealing import LIST_MOVES, ListState
from cellbench.supply import lists, randomisation

from ..conftest import PASSWORD, actor_of
from ..kitworld import load_studies

ARMS = [("active", 1), ("placebo", 1)]


def test_every_block_holds_the_arms_in_the_exact_ratio():
    slots = randomisation.permuted_blocks("seed-1", 500, ARMS, (2, 4, 6))
    blocks: dict[int, list[str]] = {}
    for block, arm in slots:
        blocks.setdefault(block, []).append(arm)
    assert len(slots) >= 500
    for arms in blocks.values():
        assert len(arms) in (2, 4, 6)
        assert Counter(arms)["active"] == Counter(arms)["placebo"]
    assert len({len(arms) for arms in blocks.values()}) == 3, "block sizes vary at random"


def test_an_unequal_ratio_is_kept_block_by_block():
    slots = randomisation.permuted_blocks("seed-2", 300, [("active", 2), ("placebo", 1)], (3, 6))
    blocks: dict[int, Counter] = {}
    for block, arm in slots:
        blocks.setdefault(block, Counter())[arm] += 1
    assert all(c["active"] == 2 * c["placebo"] for c in blocks.values())


def test_the_same_seed_gives_the_same_list_and_another_seed_does_not():
    first = randomisation.randomisation_lines("abc", 100, ARMS, (2, 4, 6), "X")
    again = randomisation.randomisation_lines("abc", 100, ARMS, (2, 4, 6), "X")
    other = randomisation.randomisation_lines("abd", 100, ARMS, (2, 4, 6), "X")
    assert first == again
    assert [line.arm for line in first] != [line.arm for line in other]
    assert first[0].key == "X-001"


def test_block_sizes_must_be_multiples_of_the_ratio():
    with pytest.raises(InvalidInput) as refused:
        randomisation.permuted_blocks("s", 10, ARMS, (3,))
    assert refused.value.field == "block_sizes"


def test_a_csv_import_names_the_line_and_what_is_wrong():
    good = "participant_number,arm\nX-001,active\nX-002,placebo\n"
    assert [line.arm for line in randomisation.parse_csv(good, "randomisation", ("active", "placebo"))] == [
        "active", "placebo"]
    cases = {
        "participant,arm\nX-001,active\n": "missing: participant_number",
        "participant_number,arm\nX-001,activ\n": "Line 2: arm 'activ'",
        "participant_number,arm\nX-001,active\nX-001,placebo\n": "Line 3: X-001 already appears on line 2",
        "participant_number,arm\n": "no entries",
    }
    for text, message in cases.items():
        with pytest.raises(InvalidInput) as refused:
            randomisation.parse_csv(text, "randomisation", ("active", "placebo"))
        assert message in refused.value.message and refused.value.field == "file"
    with pytest.raises(InvalidInput, match="Line 2: kit number"):
        randomisation.parse_csv("kit_number,arm\n3HJY-7F7J-A,active\n", "kit", ("active", "placebo"))


def test_a_generated_list_is_stored_sealed_and_reproducible_from_its_recorded_seed(db, people):
    load_studies(db)
    with db.write() as s:
        study = studies.by_code(s, "NCT07290946")
        row = lists.generate(s, actor_of(db, "sara"), study, "randomisation", 100)
        list_id, seed = row.id, row.seed
    with pytest.raises(AuthenticationFailed), db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(SealedList, list_id), "wrong password")
    with db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)
    with db.write() as s:
        row = s.get(SealedList, list_id)
        stored = sealed.list_lines(s, actor_of(db, "sara"), row, limit=1000)
        assert row.state == "sealed" and row.signature_id
    regenerated = randomisation.randomisation_lines(seed, 100, ARMS, (2, 4, 6), "X")
    assert [(line.key, line.arm, line.block) for line in stored] == \
        [(line.key, line.arm, line.block) for line in regenerated]
    with db.read() as s:
        created = s.scalars(select(AuditEvent).where(AuditEvent.entity_type == "sealed_list")).all()
        assert created and all(e.visibility == "unblinded" for e in created)


def test_a_list_is_sealed_or_discarded_once_as_its_one_table_says(db, people):
    assert {name: (move.target, move.signature, move.needs_reason) for name, move in LIST_MOVES.items()} == {
        "seal": (ListState.sealed, Meaning.approved, False), "discard": (ListState.discarded, None, True)}
    load_studies(db)
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, "NCT07290946"), "randomisation", 4)
        list_id = row.id
    with db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)
    with pytest.raises(InvalidInput, match="only a draft can be sealed"), db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)
    with pytest.raises(InvalidInput, match="A sealed list is never discarded"), db.write() as s:
        sealed.discard_list(s, actor_of(db, "sara"), s.get(SealedList, list_id), "changed my mind")
    with db.read() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.entity_type == "sealed_list",
                                                    AuditEvent.field == "state")).all()
    assert [(e.action, e.old_value, e.new_value) for e in events] == [("randomisation list sealed", "draft", "sealed")]


def test_a_further_randomisation_list_continues_the_numbering(db, people):
    load_studies(db)
    with db.write() as s:
        study = studies.by_code(s, "NCT06805448")
        sara = actor_of(db, "sara")
        first = lists.generate(s, sara, study, "randomisation", 4, block_sizes="4")
        second = lists.generate(s, sara, study, "randomisation", 4, block_sizes="4")
        keys = [line.key for line in sealed.list_lines(s, sara, second)]
    assert first.version == 1 and second.version == 2
    assert keys == ["S-005", "S-006", "S-007", "S-008"]


def test_sealing_a_kit_list_creates_its_kits_all_alike(db, people):
    load_studies(db)
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, "NCT07290946"), "kit", 12, block_sizes="4")
        list_id = row.id
    with db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)
    with db.read() as s:
        created = s.scalars(select(Kit)).all()
        events = s.scalars(select(AuditEvent).where(AuditEvent.entity_type == "kit")).all()
    assert len(created) == 12 and {k.state for k in created} == {KitState.planned}
    assert {(e.action, e.new_value, e.reason, e.visibility) for e in events} == {
        ("kit number issued", "Kit number issued", "NCT07290946 kit list", "all")}


def test_an_imported_kit_list_with_a_number_already_in_use_is_refused(db, people):
    load_studies(db)
    with db.write() as s:
        study = studies.by_code(s, "NCT07290946")
        row = lists.generate(s, actor_of(db, "sara"), study, "kit", 2)
        taken = sealed.list_lines(s, actor_of(db, "sara"), row)[0].key
    with db.write() as s, pytest.raises(Conflict) as refused:
        lists.import_csv(s, actor_of(db, "sara"), studies.by_code(s, "NCT07290946"), "kit",
                         f"kit_number,arm\n{taken},active\n")
    assert taken in refused.value.message


def test_blinded_and_other_roles_cannot_make_or_read_lists(db, people):
    load_studies(db)
    for who in ("frida", "ida", "mette", "adam", "olivia"):
        with db.write() as s, pytest.raises(Forbidden):
            lists.generate(s, actor_of(db, who), studies.by_code(s, "NCT07290946"), "randomisation", 10)
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, "NCT07290946"), "randomisation", 10)
        list_id = row.id
    for who in ("frida", "ida", "mette", "adam"):
        with db.write() as s, pytest.raises(Forbidden, match="sealed"):
            sealed.list_lines(s, actor_of(db, who), s.get(SealedList, list_id))


def test_a_kit_list_is_never_cut_inside_a_block_and_the_refusal_names_the_whole_block_sizes():
    slots = randomisation.permuted_blocks("cut", 9, ARMS, (2, 4, 6))
    whole = len(slots)
    last = slots[-1][0]
    shorter = sum(1 for block, _ in slots if block < last)
    assert shorter < 9 < whole, "blocks are even: a list of 9 always cuts one"
    numbers = [f"K{n}" for n in range(9)]  # the refusal comes before any number is read
    with pytest.raises(InvalidInput) as refused:
        randomisation.kit_lines("cut", numbers, ARMS, (2, 4, 6))
    assert refused.value.field == "size"
    assert f"holds {shorter} or {whole} kits" in refused.value.message and "uneven" in refused.value.message
    assert randomisation.whole_blocks("cut", 9, ARMS, (2, 4, 6)) == whole


@pytest.mark.parametrize("kind", ["kit", "randomisation"])
def test_a_generated_list_is_rounded_up_to_whole_blocks_and_says_so(db, people, kind):
    load_studies(db)
    with db.write() as s:
        study = studies.by_code(s, "NCT07290946")
        row = lists.generate(s, actor_of(db, "sara"), study, kind, 25, seed="round-up")
        lines = sealed.list_lines(s, actor_of(db, "sara"), row, limit=100)
        notice = lists.generated_notice(row, "25")
        size = row.size
    assert size == randomisation.whole_blocks("round-up", 25, ARMS, (2, 4, 6)) and 25 < size <= 25 + 5
    assert len(lines) == size and Counter(line.arm for line in lines) == {"active": size // 2, "placebo": size // 2}
    blocks: dict[int, Counter] = {}
    for line in lines:
        blocks.setdefault(line.block, Counter())[line.arm] += 1
    assert all(c["active"] == c["placebo"] for c in blocks.values()), "every block whole, the last one too"
    assert f"with {size} entries, not 25" in notice and "whole blocks" in notice
    assert lists.generated_notice(row, str(size)) == \
        f"Draft {sealed.LIST_KINDS[kind]} version 1 generated: check it, then seal it."
    created = [e for e in _created_events(db) if e.entity_id == str(row.id)]
    assert '"asked": 25' in created[0].new_value and f'"size": {size}' in created[0].new_value


def _created_events(db) -> list[AuditEvent]:
    with db.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action.like("% list created"))))


def test_the_page_says_when_a_list_was_rounded_up(as_, db, people):
    import urllib.parse

    load_studies(db)
    response = as_("sara").submit("/supply/studies/NCT07290946/lists",
                                  {"kind": "kit", "size": "25", "seed": "round-up"})
    assert response.status_code == 303
    notice = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers["location"]).query)["notice"][0]
    assert "not 25" in notice and "rounded up to whole blocks" in notice
