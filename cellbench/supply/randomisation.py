"""Randomisation and kit lists as data: permuted blocks from a seed, and CSV imports. Pure
functions with no database; sealed.py stores what they produce.

Reproducibility: a list is regenerated exactly from its seed, its arms and ratio and its block
sizes, with Python's Mersenne Twister seeded from a string (random.Random(str) hashes it with
SHA-512, stable across Python versions since 3.2). The seed is recorded in the sealed list, so it is
as secret as the list itself.
"""
from __future__ import annotations

import csv
import hashlib
import io
import random
import secrets
from collections.abc import Sequence

from ..errors import InvalidInput
from ..identifiers import parse_kit_number
from ..sealing import Line  # the line shape the compartment stores

ALGORITHM = "cellbench-permuted-blocks-v1"
MAX_LIST_SIZE = 10_000


def new_seed() -> str:
    return secrets.token_hex(16)


def permuted_blocks(seed: str, size: int, arms: Sequence[tuple[str, int]],
                    block_sizes: Sequence[int]) -> list[tuple[int, str]]:
    """(block, arm) for at least `size` slots, in whole blocks: each block holds the arms in the
    exact ratio, its size drawn at random from block_sizes, its order shuffled. The last block is
    never cut short, so the list is balanced block by block and may be a little longer than asked."""
    cycle = sum(ratio for _, ratio in arms)
    if not block_sizes or any(b <= 0 or b % cycle for b in block_sizes):
        raise InvalidInput(f"Block sizes must be positive multiples of {cycle}, the ratio's sum.", field="block_sizes")
    if not 1 <= size <= MAX_LIST_SIZE:
        raise InvalidInput(f"A list holds 1 to {MAX_LIST_SIZE} entries.", field="size")
    rng = random.Random(f"{ALGORITHM}:{seed}")
    slots: list[tuple[int, str]] = []
    block = 0
    while len(slots) < size:
        block += 1
        repeat = rng.choice(list(block_sizes)) // cycle
        cell = [code for code, ratio in arms for _ in range(ratio * repeat)]
        rng.shuffle(cell)
        slots.extend((block, arm) for arm in cell)
    return slots


def participant_numbers(prefix: str, count: int, start: int = 1) -> list[str]:
    width = max(3, len(str(start + count - 1)))
    return [f"{prefix}-{n:0{width}d}" for n in range(start, start + count)]


def randomisation_lines(seed: str, size: int, arms: Sequence[tuple[str, int]], block_sizes: Sequence[int],
                        prefix: str, start: int = 1) -> list[Line]:
    slots = permuted_blocks(seed, size, arms, block_sizes)
    numbers = participant_numbers(prefix, len(slots), start)
    return [Line(i, block, number, arm) for i, ((block, arm), number) in enumerate(zip(slots, numbers, strict=True), 1)]


def whole_blocks(seed: str, size: int, arms: Sequence[tuple[str, int]], block_sizes: Sequence[int]) -> int:
    """How many entries a list asked for `size` holds: its blocks are never cut short, so the
    last one may reach a little past `size` (by less than the largest block)."""
    return len(permuted_blocks(seed, size, arms, block_sizes))


def kit_lines(seed: str, kit_numbers: Sequence[str], arms: Sequence[tuple[str, int]],
              block_sizes: Sequence[int]) -> list[Line]:
    """Arms for a kit list. Kit numbers are random (identifiers.new_kit_numbers), so no numbering
    pattern follows the arm; the arms follow permuted blocks so packaging in list order is balanced.

    Like a randomisation list, a kit list is whole blocks: cutting the last one short would leave
    the arms uneven. Give as many kit numbers as `whole_blocks` says (lists.generate does)."""
    slots = permuted_blocks(seed, len(kit_numbers), arms, block_sizes)
    if len(slots) != len(kit_numbers):
        last = slots[-1][0]
        shorter = sum(1 for block, _arm in slots if block < last)
        sizes = f"{shorter} or {len(slots)}" if shorter else f"{len(slots)}"
        raise InvalidInput(f"{len(kit_numbers)} kits would cut the last permuted block short and leave the arms "
                           f"uneven; with this seed and these block sizes a kit list holds {sizes} kits.", field="size")
    pairs = zip(slots, kit_numbers, strict=True)
    return [Line(i, block, number, arm) for i, ((block, arm), number) in enumerate(pairs, 1)]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_csv(text: str, kind: str, arm_codes: Sequence[str]) -> list[Line]:
    """An imported list: header `participant_number,arm` (or `kit_number,arm`), optional `block`.
    Every refusal names the line and the column; nothing is stored unless the whole file is good."""
    key_column = "participant_number" if kind == "randomisation" else "kit_number"
    if "\x00" in text:
        raise InvalidInput("The file is not a text CSV file.", field="file")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [col for col in (key_column, "arm") if col not in header]
    if missing:
        raise InvalidInput(f"The header must name the columns {key_column} and arm (and optionally block); "
                           f"missing: {', '.join(missing)}.", field="file")
    lines: list[Line] = []
    seen: dict[str, int] = {}
    for row in reader:
        number = reader.line_num
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(row.values()):
            continue
        key, arm = row.get(key_column, ""), row.get("arm", "")
        if not key:
            raise InvalidInput(f"Line {number}: {key_column} is empty.", field="file")
        if kind == "kit":
            try:
                key = parse_kit_number(key)
            except ValueError as error:
                # the reason already names the kit number as written: "kit number 'X' has 4 characters; ..."
                raise InvalidInput(f"Line {number}: {str(error).rstrip('.')}.", field="file") from None
        if arm not in arm_codes:
            raise InvalidInput(f"Line {number}: arm {arm!r} is not an arm of this study ({', '.join(arm_codes)}).",
                               field="file")
        if key in seen:
            raise InvalidInput(f"Line {number}: {key} already appears on line {seen[key]}.", field="file")
        seen[key] = number
        block_text = row.get("block", "")
        try:
            block = int(block_text) if block_text else 0
        except ValueError:
            raise InvalidInput(f"Line {number}: block {block_text!r} is not a whole number.", field="file") from None
        lines.append(Line(len(lines) + 1, block, key, arm))
        if len(lines) > MAX_LIST_SIZE:
            raise InvalidInput(f"A list holds at most {MAX_LIST_SIZE} entries.", field="file")
    if not lines:
        raise InvalidInput("The file has no entries.", field="file")
    return lines


def arm_counts(lines: Sequence[Line]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        counts[line.arm] = counts.get(line.arm, 0) + 1
    return counts
