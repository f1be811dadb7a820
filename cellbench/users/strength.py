"""The password policy beyond length: nothing a guesser tries first.

Refused: a common password or dictionary word (the shipped list, `common_passwords.txt`: the
10,000 most common passwords and 5,000 most frequent English words, from zxcvbn's MIT-licensed
frequency lists), also when it is dressed up with capitals, digits and symbols around it
("Password1234", "!Dragon2024"); one character or a short pattern repeated ("aaaaaaaaaaaa",
"abcabcabcabc"); a run up or down the alphabet, the digits or a keyboard row ("123456789012",
"qwertyuiopas"); and too few different characters.
"""
from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from itertools import pairwise

_KEYBOARD = ("1234567890", "qwertyuiopasdfghjklzxcvbnm", "abcdefghijklmnopqrstuvwxyz")
_DRESSING = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_LEET = str.maketrans("@43106$!7", "aaeiogsit")


@cache
def common() -> frozenset[str]:
    text = files(__package__).joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _is_sequence(text: str) -> bool:
    """Every character follows the one before it on a keyboard row, the alphabet or the digits
    (either direction, wrapping round), as in 123456789012 or qwertyuiop."""
    steps = list(pairwise(text))
    return bool(steps) and any(
        all((a in row and b in row and (row.index(b) - row.index(a)) % len(row) == direction)
            for a, b in steps)
        for row in _KEYBOARD for direction in (1, len(row) - 1))


def _is_repetition(text: str) -> bool:
    """A unit of up to a third of the length repeated: aaaa…, abab…, abcabc…"""
    return any(len(text) % size == 0 and text == text[:size] * (len(text) // size)
               for size in range(1, len(text) // 3 + 1))


def weakness(password: str) -> str | None:
    """Why a password is too easy to guess, or None."""
    lowered = password.lower()
    if len(set(lowered)) < 5:
        return "The password has too few different characters."
    if _is_repetition(lowered):
        return "The password must not be a repeated pattern."
    if _is_sequence(lowered):
        return "The password must not be a run of keys, letters or digits."
    words = common()
    core = _DRESSING.sub("", lowered)  # "Password1234" and "!Dragon2024" are their words
    if {lowered, core, core.translate(_LEET)} & words:
        return "The password is a common password or dictionary word; choose a less guessable one."
    return None
