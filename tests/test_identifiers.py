"""ISBT 128 donation numbers and blinded kit numbers: what is accepted, and what is refused."""
from __future__ import annotations

import itertools
import random
import string
from collections import Counter

import pytest

from cellbench.identifiers import (
    KIT_ALPHABET,
    MOD37_ALPHABET,
    DonationIdentificationNumber,
    SecDonationSequence,
    format_kit_number,
    is_valid_kit_number,
    isbt128_check_character,
    isbt128_check_value,
    kit_check_character,
    new_kit_number,
    new_kit_numbers,
    parse_din,
    parse_donation_id,
    parse_kit_number,
    random_kit_number,
)

# (DIN, checksum, eye-readable check character, barcode flag value), from the reference:
# JPAC Red Book Annex 2 worked example and the go-iso7064 test file.
DIN_VECTORS = [
    ("G123498654321", 17, "H", "77"),
    ("G123489654321", 34, "Y", "94"),
    ("A999915000001", 22, "M", "82"),
]


def weighted_sum_check(din: str) -> int:
    """The check value by the standard's weighted-sum description (weights 2^n from the right)."""
    total = sum(MOD37_ALPHABET.index(c) * 2 ** (len(din) - i) for i, c in enumerate(din))
    return (38 - total % 37) % 37


# --- ISBT 128 DIN ------------------------------------------------------------------------------

@pytest.mark.parametrize("din, checksum, character, flags", DIN_VECTORS)
def test_din_check_character_matches_every_published_vector(din, checksum, character, flags):
    assert isbt128_check_value(din) == checksum
    assert isbt128_check_character(din) == character
    assert str(60 + isbt128_check_value(din)) == flags


def test_the_worked_example_weighted_sum_is_148354():
    weighted = sum(MOD37_ALPHABET.index(c) * 2 ** (13 - i) for i, c in enumerate("G123498654321"))
    assert weighted == 148354 and weighted % 37 == 21


def test_iterative_and_weighted_sum_forms_agree_on_random_dins():
    rng = random.Random(7)
    for _ in range(500):
        din = rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ123456789") + "".join(rng.choices(string.digits, k=12))
        assert isbt128_check_value(din) == weighted_sum_check(din)


@pytest.mark.parametrize("din", ["G123498654321", "A999915000001", "W000025123456"])
def test_din_check_catches_every_single_substitution_and_adjacent_transposition(din):
    good = isbt128_check_value(din)
    for position in range(13):
        for replacement in MOD37_ALPHABET[:36]:
            if replacement != din[position]:
                changed = din[:position] + replacement + din[position + 1:]
                assert isbt128_check_value(changed) != good, changed
    for position in range(12):
        if din[position] != din[position + 1]:
            swapped = din[:position] + din[position + 1] + din[position] + din[position + 2:]
            assert isbt128_check_value(swapped) != good, swapped


def test_a_typed_din_with_its_boxed_check_character_is_accepted_and_split():
    parsed = parse_din("G123498654321H")
    assert parsed == DonationIdentificationNumber(
        facility_code="G1234", year="98", sequence="654321", flags=None, check_character="H",
        as_received="G123498654321H",
    )
    assert parsed.din == "G123498654321"


def test_the_din_is_read_as_printed_with_spaces_flags_and_lower_case_but_kept_as_received():
    typed = "g1234 98 654321 00 h"
    parsed = parse_din(typed)
    assert (parsed.facility_code, parsed.flags, parsed.check_character) == ("G1234", "00", "H")
    assert parsed.as_received == typed
    assert parsed.eye_readable == "G1234 98 654321 00 [H]"


def test_barcode_data_with_process_flags_needs_no_check_character():
    parsed = parse_din("=G12349865432100")
    assert parsed.din == "G123498654321" and parsed.flags == "00" and parsed.check_character == "H"


def test_barcode_flags_carrying_the_check_value_are_verified():
    assert parse_din("=A99991500000182").check_character == "M"
    with pytest.raises(ValueError, match="flag check value should be 82, got 83"):
        parse_din("=A99991500000183")


def test_a_wrong_check_character_is_refused_with_the_expected_one_named():
    with pytest.raises(ValueError, match="check character should be H, got X"):
        parse_din("G123498654321X")
    # The transposed DIN with the original's check character: a typing error caught.
    with pytest.raises(ValueError, match="check character should be Y, got H"):
        parse_din("G123489654321H")


def test_a_typed_din_without_its_check_character_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="type the check character"):
        parse_din("G123498654321")
    assert parse_din("G123498654321", require_check=False).check_character == "H"


@pytest.mark.parametrize("bad", [
    "", "G12349865432", "O123498654321H", "01234986543210", "G12A498654321H", "G123498654321HXY",
])
def test_malformed_dins_are_refused(bad):
    with pytest.raises(ValueError):
        parse_din(bad)


def test_a_sec_donation_sequence_is_accepted_only_when_marked():
    parsed = parse_donation_id("SEC DK000123G123498654321")
    assert parsed == SecDonationSequence("DK", "000123", "G123498654321", "SEC DK000123G123498654321")
    assert parsed.sequence == "DK000123G123498654321"
    # The same characters without the SEC marker are read as a DIN, and refused as one.
    with pytest.raises(ValueError, match="not an ISBT 128 DIN"):
        parse_donation_id("DK000123G123498654321")
    with pytest.raises(ValueError, match="21 characters"):
        parse_donation_id("SEC DK000123G12349865432")


def test_parse_donation_id_reads_an_unmarked_identifier_as_a_din():
    assert isinstance(parse_donation_id("G123498654321H"), DonationIdentificationNumber)


# --- kit numbers -----------------------------------------------------------------------------

SAMPLE_KITS = ["3HJY-7F7J-W", "RMTC-6J34-7", "MXXH-KWCK-P", "AAAA-AAAA-" + kit_check_character("AAAAAAAA")]


def test_the_kit_alphabet_has_a_prime_size_and_no_look_alike_characters():
    assert len(KIT_ALPHABET) == 19 and len(set(KIT_ALPHABET)) == 19
    assert not set(KIT_ALPHABET) & set("0O Q D 1 I L 2 Z 5 S 8 B G U V N".replace(" ", ""))


@pytest.mark.parametrize("kit", SAMPLE_KITS)
def test_kit_check_catches_every_single_substitution(kit):
    compact = kit.replace("-", "")
    assert is_valid_kit_number(compact)
    for position in range(len(compact)):
        for replacement in KIT_ALPHABET:
            if replacement != compact[position]:
                changed = compact[:position] + replacement + compact[position + 1:]
                assert not is_valid_kit_number(changed), changed


@pytest.mark.parametrize("index", range(len(SAMPLE_KITS) + 20))
def test_kit_check_catches_every_transposition_adjacent_or_not(index):
    # fresh random kit numbers are drawn at run time, so that parallel workers collect the same tests
    kit = SAMPLE_KITS[index] if index < len(SAMPLE_KITS) else random_kit_number()
    compact = kit.replace("-", "")
    for i in range(len(compact)):
        for j in range(i + 1, len(compact)):
            if compact[i] != compact[j]:
                chars = list(compact)
                chars[i], chars[j] = chars[j], chars[i]
                assert not is_valid_kit_number("".join(chars)), (kit, i, j)


def test_kit_numbers_are_read_leniently_and_returned_in_printed_form():
    assert parse_kit_number("3hjy7f7jw") == "3HJY-7F7J-W"
    assert parse_kit_number(" 3HJY 7F7J W\n") == "3HJY-7F7J-W"
    assert parse_kit_number("3HJY--7F7J-W") == "3HJY-7F7J-W"


def test_a_mistyped_kit_number_is_refused_without_naming_the_right_check_character():
    with pytest.raises(ValueError, match="the check character does not match") as refused:
        parse_kit_number("3HJY-7F7J-X")
    assert "W" not in str(refused.value).replace("3HJY-7F7J-X", ""), "the right character would help a forger"


def test_a_look_alike_character_is_named_not_guessed():
    with pytest.raises(ValueError, match="character '0' is not valid"):
        parse_kit_number("3HJY-7F0J-W")
    with pytest.raises(ValueError, match="has 8 characters"):
        parse_kit_number("3HJY-7F7J")


def test_generated_kit_numbers_are_valid_unique_and_fixed_length():
    numbers = new_kit_numbers(5000)
    assert len(set(numbers)) == 5000
    assert all(len(n) == 11 and parse_kit_number(n) == n for n in numbers)


def test_generated_kit_numbers_follow_no_sequence():
    numbers = [n.replace("-", "") for n in new_kit_numbers(4000)]
    # Consecutive numbers are as often larger as smaller, as for random draws.
    rising = sum(a < b for a, b in itertools.pairwise(numbers)) / (len(numbers) - 1)
    assert 0.45 < rising < 0.55
    # Consecutive numbers share a first character about 1 time in 19, not systematically.
    shared_first = sum(a[0] == b[0] for a, b in itertools.pairwise(numbers)) / (len(numbers) - 1)
    assert shared_first < 0.1
    # Every body position uses the whole alphabet about evenly.
    for position in range(8):
        counts = Counter(n[position] for n in numbers)
        assert set(counts) == set(KIT_ALPHABET)
        assert max(counts.values()) < 2 * min(counts.values())


def test_new_kit_number_skips_numbers_already_taken():
    taken_first: list[str] = []

    def is_taken(candidate: str) -> bool:
        if len(taken_first) < 3:
            taken_first.append(candidate)
            return True
        return False

    number = new_kit_number(is_taken)
    assert number not in taken_first and is_valid_kit_number(number)
    existing = set(new_kit_numbers(50))
    assert not set(new_kit_numbers(50, existing)) & existing


def test_new_kit_number_gives_up_clearly_when_everything_is_taken():
    with pytest.raises(RuntimeError, match="no free kit number"):
        new_kit_number(lambda _: True, max_attempts=5)


def test_format_kit_number_groups_for_people():
    assert format_kit_number("3HJY7F7JW") == "3HJY-7F7J-W"
