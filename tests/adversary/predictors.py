"""The adversary's predictors: one function per channel, registered in PREDICTORS.

Each predictor reads what the blinded roles saw (`Observations`) and makes binary arm guesses; each
guess is a pair (guessed arm, actual arm), the actual arm read from the sealed truth. A channel
that carries no information about arms scores like a coin: `score` applies an exact two-sided
binomial test against 1/2 and the blind holds on a channel when p > ALPHA over at least MIN_N
guesses. A new channel is one function added to PREDICTORS.

Two kinds of predictor:

- rule-based, from what a curious pharmacist would try (assignment order, "no kit" refusals,
  quarantine membership). Their guesses are relative to a participant's arm ("this kit is of the
  other arm than X-014's"), written as an arm so that they can be scored; and blinded lots;
- learned, for channels where nobody knows the rule in advance (custody and audit events,
  response sizes, timings, labels): each kit's observation becomes a feature, and a majority-vote
  table learnt on the other study's kits (their arms as labels) predicts each study's kits (see
  `cross_fitted`). A feature that follows the arm is learnt; one that does not predicts at chance.

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

from .observations import Attempt, KitLine, Observations, Seen, Truth, masked

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
    tail, total, term = min(correct, n - correct), 0, 1
    for k in range(tail + 1):  # term is comb(n, k), kept exact from the previous one
        total += term
        term = term * (n - k) // (k + 1)
    return min(1.0, 2 * total / 2 ** n)


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
    guessed: dict[tuple[str, str], Guess] = {}  # a refused participant coming back: the same guesses again
    for attempt in seen.attempts:
        if attempt.kit is not None:
            continue
        own = truth.participant_arm[attempt.participant]
        for line in attempt.stock + attempt.held:
            guessed[(attempt.participant, line.number)] = (other(own), truth.kit_arm[line.number])
    return list(guessed.values())


def quarantine(seen: Observations, truth: Truth) -> list[Guess]:
    """Lot quarantines start from an ASC lot: right after one opens, every kit the monitor sees held
    ("temporarily unavailable") is guessed active, every other kit of the study placebo."""
    return [("active" if line.state == "quarantined" else "placebo", truth.kit_arm[line.number])
            for _, lines in seen.quarantine_snapshots for line in lines]


# --- learned channels ---------------------------------------------------------------------------


def cross_fitted(features: dict[str, Hashable], truth: Truth, study_of: dict[str, str]) -> list[Guess]:
    """Each kit's arm guessed from the other study's kits with the same feature (majority; a tie
    or an unseen feature guesses 'active'), as an adversary who learnt one study's arms (at its
    database lock, say) would read the other's. Not from the same study's other kits: its lists
    are balanced by design (every blinded lot, every group of kits dispensed), so a kit's own
    group, minus the kit, leans to the other arm, and a learner would score below chance."""
    guesses: list[Guess] = []
    for study in sorted(set(study_of.values())):
        table: dict[Hashable, Counter] = {}
        for kit, feature in features.items():
            if study_of.get(kit) != study and kit in truth.kit_arm:
                table.setdefault(feature, Counter())[truth.kit_arm[kit]] += 1
        for kit, feature in sorted(features.items()):
            if study_of.get(kit) == study and kit in truth.kit_arm:
                votes = table.get(feature, Counter())
                guesses.append(("placebo" if votes["placebo"] > votes["active"] else "active", truth.kit_arm[kit]))
    return guesses


def _studies(seen: Observations) -> dict[str, str]:
    return {kit: views["frida api"].body.get("study", "") for kit, views in seen.kit_views.items()
            if isinstance(views["frida api"].body, dict)}


_KIT_NUMBER_SHAPE = re.compile(r"[A-Z0-9]")


def _kit_numbers(seen: Observations) -> re.Pattern:
    return re.compile("|".join(sorted(map(re.escape, seen.labels), key=len, reverse=True)) or "(?!)")


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _masked(value, numbers: re.Pattern) -> str:
    return masked(numbers.sub("<kit>", _text(value)))


def blinded_lot(seen: Observations, truth: Truth) -> list[Guess]:
    """A blinded lot carries the earliest expiry of the lots in it, and ASC lots expire before
    saline: kits of the study's earliest-expiring blinded lot, and of lots whose kit count or
    state counts stand out (an odd count: one arm topped up), are guessed active."""
    lots = {code: body for code, body in seen.blinded_lots.items() if isinstance(body, dict)}
    earliest: dict[str, str] = {}
    for body in lots.values():
        if body["study"] not in earliest or body["expiry"] < lots[earliest[body["study"]]]["expiry"]:
            earliest[body["study"]] = body["code"]
    guesses: list[Guess] = []
    for kit, views in sorted(seen.kit_views.items()):
        lot = lots.get(views["frida api"].body.get("blinded_lot"))
        if lot is None:
            continue
        odd = lot["kits"] % 2 == 1 or any(count % 2 for count in lot["kits_by_state"].values())
        first = earliest[lot["study"]] == lot["code"]
        guesses.append(("active" if first or odd else "placebo", truth.kit_arm[kit]))
    return guesses


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
    return cross_fitted(features, truth, _studies(seen))


def response_sizes(seen: Observations, truth: Truth) -> list[Guess]:
    """The size of every answer about a kit — each role's API and page views, its audit trail, the
    pharmacist's look-up scan — less the length its numbers and codes take (kit numbers and
    participants have one length; dates, codes and the study do not)."""
    numbers = _kit_numbers(seen)
    features = {}
    for kit, views in seen.kit_views.items():
        features[kit] = tuple((name, view.status, view.size - len(_text(view.body)) + len(_masked(view.body, numbers)))
                              for name, view in sorted(views.items()))
    return cross_fitted(features, truth, _studies(seen))


def timing(seen: Observations, truth: Truth) -> list[Guess]:
    """How long the pharmacist's own scans of a kit took: each above or below the median of its
    kind (a sealed read or extra work for one arm would show as slower answers)."""
    medians = {kind: statistics.median(s.seconds for s in seen.scans if s.kind == kind)
               for kind in {s.kind for s in seen.scans}}
    slow: dict[str, list[tuple[str, bool]]] = {}
    for scan in seen.scans:
        slow.setdefault(scan.kit, []).append((scan.kind, scan.seconds > medians[scan.kind]))
    return cross_fitted({kit: tuple(sorted(found)) for kit, found in slow.items()}, truth, _studies(seen))


def labels(seen: Observations, truth: Truth) -> list[Guess]:
    """The label a blinded person holds: the QR payload's length and shape, the kit number's
    first and last (check) characters."""
    features = {kit: (len(payload), _KIT_NUMBER_SHAPE.sub("x", payload.replace(kit, "<kit>")), kit[:1], kit[-1:])
                for kit, payload in seen.labels.items()}
    return cross_fitted(features, truth, _studies(seen))


PREDICTORS: list[Predictor] = [assignment_order, no_kit, quarantine, blinded_lot, custody_audit, response_sizes,
                               timing, labels]


def run_all(seen: Observations, truth: Truth) -> list[Result]:
    return [score(predictor.__name__, predictor(seen, truth)) for predictor in PREDICTORS]


__all__ = ["ALPHA", "MIN_N", "PREDICTORS", "Result", "Seen", "binomial_p", "run_all", "score"]
