"""The adversary's predictors: one function per channel, registered in PREDICTORS.

Each predictor reads what the blinded roles saw (`Observations`) and makes binary arm guesses; each
guess is a pair (guessed arm, actual arm), the actual arm read from the sealed truth. A channel
that carries no information about arms scores like a coin: `score` applies an exact two-sided
binomial test against 1/2 and the blind holds on a channel when p > ALPHA over at least MIN_N
guesses. A new channel is one function added to PREDICTORS.

Two kinds of predictor:

- rule-based, from what a curious pharmacist would try (assignment order, "no kit" refusals,
  quarantine membership). Their guesses are relative to a participant's arm ("this kit is of the
  other arm than X-014's"), written as an arm so that they can be scored;
- learned, for channels where nobody knows the rule in advance (blinded lots, custody and audit
  events, response sizes, timings, labels): each kit's observation becomes a feature, and a
  majority-vote table learnt on one half of the kits (their arms as labels, as an adversary could
  gather them from unblindings) predicts the other half, and the other way round. A feature that
  follows the arm is learnt; one that does not predicts at chance.

The guesses are built so that a channel without information scores 1/2 in expectation, not only
"about 1/2": e.g. the assignment-order predictor guesses the kit just before the assigned one (in
the order the old rule used) to be of the other arm and the kit just after it to be of the same
arm, so that the slight excess of other-arm kits left beside an assigned kit cancels out.
"""
from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from math import comb

from .observations import Attempt, KitLine, Observations, Seen, Truth

ALPHA = 0.01
MIN_N = 200
ARMS = ("active", "placebo")

Guess = tuple[str, str]  # (guessed arm, actual arm)
Predictor = Callable[[Observations, Truth], list[Guess]]


def other(arm: str) -> str:
    return ARMS[1] if arm == ARMS[0] else ARMS[0]


def binomial_p(correct: int, n: int) -> float:
    """Exact two-sided binomial test against 1/2: the probability of a count at least as far from
    n/2 as `correct`, in exact integers (the distribution is symmetric, so twice one tail)."""
    if n == 0:
        return 1.0
    tail = min(correct, n - correct)
    return min(1.0, 2 * sum(comb(n, k) for k in range(tail + 1)) / 2 ** n)


@dataclass(frozen=True)
class Result:
    channel: str
    n: int
    correct: int
    p: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def holds(self) -> bool:
        return self.n >= MIN_N and self.p > ALPHA

    def line(self) -> str:
        verdict = "ok" if self.holds else ("TOO FEW" if self.n < MIN_N else "LEAKS")
        return (f"{self.channel:<18} accuracy {self.accuracy:6.3f}  n {self.n:5d}  p {self.p:8.2g}  "
                f"(target p > {ALPHA}, n >= {MIN_N})  {verdict}")


def score(channel: str, guesses: list[Guess]) -> Result:
    correct = sum(1 for guessed, actual in guesses if guessed == actual)
    return Result(channel, len(guesses), correct, binomial_p(correct, len(guesses)))


# --- rule-based channels ------------------------------------------------------------------------


def _usable_in_order(attempt: Attempt) -> list[KitLine]:
    """The stock as the old rule ranked it: usable on the day, earliest blinded expiry, kit number."""
    usable = [line for line in attempt.stock if line.expiry is not None and line.expiry >= attempt.day]
    return sorted(usable, key=lambda line: (line.expiry, line.number))


def assignment_order(seen: Observations, truth: Truth) -> list[Guess]:
    """Before each assignment the pharmacist lists the site's stock (/api/v1/kits?state=at_site);
    then a kit is assigned. The kit ranked just before it is guessed to be of the other arm, the kit
    just after it of the same arm (the old rule took the first kit of the arm)."""
    guesses: list[Guess] = []
    for attempt in seen.attempts:
        if attempt.kit is None:
            continue
        ranked = [line.number for line in _usable_in_order(attempt)]
        if attempt.kit not in ranked:
            continue
        at, own = ranked.index(attempt.kit), truth.participant_arm[attempt.participant]
        if at > 0:
            guesses.append((other(own), truth.kit_arm[ranked[at - 1]]))
        if at + 1 < len(ranked):
            guesses.append((own, truth.kit_arm[ranked[at + 1]]))
    return guesses


def no_kit(seen: Observations, truth: Truth) -> list[Guess]:
    """"No kit is available" while kits are at the site (or held): they are guessed to be of the
    other arm than the refused participant's."""
    guesses: list[Guess] = []
    for attempt in seen.attempts:
        if attempt.kit is not None:
            continue
        own = truth.participant_arm[attempt.participant]
        guesses += [(other(own), truth.kit_arm[line.number]) for line in attempt.stock + attempt.held]
    return guesses


def quarantine(seen: Observations, truth: Truth) -> list[Guess]:
    """Lot quarantines start from an ASC lot: right after one opens, every kit the monitor sees held
    ("temporarily unavailable") is guessed active, every other kit of the study placebo."""
    return [("active" if line.state == "quarantined" else "placebo", truth.kit_arm[line.number])
            for _, lines in seen.quarantine_snapshots for line in lines]


# --- learned channels ---------------------------------------------------------------------------


def cross_fitted(features: dict[str, Hashable], truth: Truth) -> list[Guess]:
    """Each kit's arm guessed from the kits of the other half with the same feature (majority; a
    tie or an unseen feature guesses 'active'). Halves by kit-number order, which is random."""
    kits = sorted(k for k in features if k in truth.kit_arm)
    halves = (kits[0::2], kits[1::2])
    guesses: list[Guess] = []
    for learn, test in (halves, halves[::-1]):
        table: dict[Hashable, Counter] = {}
        for kit in learn:
            table.setdefault(features[kit], Counter())[truth.kit_arm[kit]] += 1
        for kit in test:
            votes = table.get(features[kit], Counter())
            guess = "placebo" if votes["placebo"] > votes["active"] else "active"
            guesses.append((guess, truth.kit_arm[kit]))
    return guesses


_KIT_NUMBER_SHAPE = re.compile(r"[A-Z0-9]")


def _kit_numbers(seen: Observations) -> re.Pattern:
    return re.compile("|".join(sorted(map(re.escape, seen.labels), key=len, reverse=True)) or "(?!)")


def _masked(value, numbers: re.Pattern) -> str:
    from .observations import masked

    return masked(numbers.sub("<kit>", value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                                        default=str)))


def blinded_lot(seen: Observations, truth: Truth) -> list[Guess]:
    """A kit's blinded lot as blinded roles see it: code, expiry, size and kits by state."""
    lots = {code: json.dumps(body, sort_keys=True) for code, body in seen.blinded_lots.items()}
    features = {}
    for kit, views in seen.kit_views.items():
        body = views["frida api"].body
        features[kit] = (body.get("blinded_lot"), body.get("expiry"), lots.get(body.get("blinded_lot")))
    return cross_fitted(features, truth)


def custody_audit(seen: Observations, truth: Truth) -> list[Guess]:
    """Everything a blinded role reads about a kit — its history in the API and its page, the
    audit trail of it (monitor, admin), its lines in the audit-trail export — with numbers and
    times masked: the path the kit took, as words."""
    numbers = _kit_numbers(seen)
    export_lines: dict[str, list[str]] = {}
    for who, text in seen.exports.items():
        for row in text.splitlines():
            for kit in set(numbers.findall(row)):
                export_lines.setdefault(kit, []).append(f"{who}:{_masked(row, numbers)}")
    features = {}
    for kit, views in seen.kit_views.items():
        read = tuple(f"{name}:{view.status}:{_masked(view.body, numbers)}" for name, view in sorted(views.items()))
        features[kit] = (read, tuple(sorted(export_lines.get(kit, []))))
    return cross_fitted(features, truth)


def response_sizes(seen: Observations, truth: Truth) -> list[Guess]:
    """The size of every answer about a kit: each role's API and page views, its audit trail, the
    pharmacist's scans of it (receipt, dispensing, look-up)."""
    sizes: dict[str, list[tuple[str, int]]] = {}
    for kit, views in seen.kit_views.items():
        sizes[kit] = [(name, view.size) for name, view in sorted(views.items())]
    for scan in seen.scans:
        sizes.setdefault(scan.kit, []).append((scan.kind, scan.size))
    return cross_fitted({kit: tuple(sorted(found)) for kit, found in sizes.items()}, truth)


def timing(seen: Observations, truth: Truth) -> list[Guess]:
    """How long the pharmacist's own scans of a kit took: each above or below the median of its
    kind (a sealed read or extra work for one arm would show as slower answers)."""
    medians = {kind: statistics.median(s.seconds for s in seen.scans if s.kind == kind)
               for kind in {s.kind for s in seen.scans}}
    slow: dict[str, list[tuple[str, bool]]] = {}
    for scan in seen.scans:
        slow.setdefault(scan.kit, []).append((scan.kind, scan.seconds > medians[scan.kind]))
    return cross_fitted({kit: tuple(sorted(found)) for kit, found in slow.items()}, truth)


def labels(seen: Observations, truth: Truth) -> list[Guess]:
    """The label a blinded person holds: the QR payload's length and shape, the kit number's
    first and last (check) characters."""
    features = {kit: (len(payload), _KIT_NUMBER_SHAPE.sub("x", payload.replace(kit, "<kit>")), kit[:1], kit[-1:])
                for kit, payload in seen.labels.items()}
    return cross_fitted(features, truth)


PREDICTORS: list[Predictor] = [assignment_order, no_kit, quarantine, blinded_lot, custody_audit, response_sizes,
                               timing, labels]


def run_all(seen: Observations, truth: Truth) -> list[Result]:
    return [score(predictor.__name__, predictor(seen, truth)) for predictor in PREDICTORS]


__all__ = ["ALPHA", "MIN_N", "PREDICTORS", "Result", "Seen", "binomial_p", "run_all", "score"]
