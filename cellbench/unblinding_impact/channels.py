"""The ways an unblinding lets a reader infer other participants' arms, one function each (`CHANNELS`
in the package): a new way is one more.

Strength is judged for a reader who knows the revealed arm and the randomisation's block structure
(block sizes are sealed but easily guessed, and randomisation numbers run in list order), and who
knows what blinded staff see (kit numbers, blinded lots, shipments): the worst reader the sponsor
must assume.

The kit channels (shared lots and shipments, own kits) name few participants and are gathered in
full. A generated block holds 2 to 8 lines, but an imported list's are as its file says (a file
without a block column is one block), and every open line of a block stands the same way, so the
block channel states that once (`BlockFinding`), counts its lines, and reads only the lines of the
page asked for (paging.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from sqlalchemy import select
from sqlmodel import Session, col

from .. import sealed, unblinding
from ..audit import Actor
from ..models import BlindedLot, Kit, Participant, Shipment, ShipmentKit, Site, Study, Visit

CERTAIN, MORE_PROBABLE = "certain", "more probable"


@dataclass(frozen=True)
class Position:
    """Where a page of findings starts: after this (strength rank, participant), certain ranking 0,
    and, of the block's lines, after `block_line` (None: none was listed yet). Two sorted streams
    merged, each with its own keyset, so that a line added before either key shifts nothing."""

    rank: int
    participant: str
    block_line: str | None


@dataclass
class BlockFinding:
    """What the block says of each of its open lines (the same for all), and the lines read."""

    strength: str | None  # None: the arms known are in the block's ratio, nothing follows
    why: str
    count: int  # open lines, in full
    lines: list[str]  # the open lines read for this page (after its start, in number order)
    more: bool  # open lines beyond those read
    kit_found: list[str]  # participants found by the kit channels who are open lines of the block


@dataclass
class Impact:
    """`kit_findings`: participants found through kits (each with its site and every why), in full;
    `block`: the block channel; `kits`: this participant's own kits; `notes`: what was looked at and
    revealed nothing, said so; `counts`: participants found per channel. `start` and `limit` ask
    for one page (no limit: every finding), which paging.py composes into `findings` and `next`."""

    study: Study
    participant: Participant
    start: Position | None = None
    limit: int | None = None
    kit_findings: dict[str, dict] = field(default_factory=dict)
    block: BlockFinding | None = None
    kits: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"block": 0, "shipment": 0, "blinded_lot": 0,
                                                            "own_kits": 0})
    findings: list[dict] = field(default_factory=list)
    next: Position | None = None
    total: int = 0

    def add(self, number: str, site: str, why: str) -> None:
        """A participant found certain through a kit."""
        entry = self.kit_findings.setdefault(number, {"participant": number, "site": site, "strength": CERTAIN,
                                                      "why": []})
        entry["why"].append(why)


Channel = Callable[[Session, Actor, Impact], None]


def sites_of(session: Session, study: Study, numbers: list[str]) -> dict[str, str]:
    if not numbers:
        return {}
    return dict(session.execute(select(col(Participant.randomisation_number), col(Site.code))
                                .join(Site, col(Site.id) == col(Participant.site_id))
                                .where(col(Participant.study_id) == study.id,
                                       col(Participant.randomisation_number).in_(numbers))).all())


def _share(p: Fraction) -> str:
    return f"{p.numerator} in {p.denominator}"


def block_mates(session: Session, actor: Actor, impact: Impact) -> None:
    """Permuted blocks: each block holds a fixed count of each arm, so every arm known in a block
    shifts the rest; a block of 2 gives its mate away, and each further unblinding in a block
    narrows what is left (or, when it evens the count out, takes a shift back). Runs after the
    kit channels: a participant they found certain is listed once, among theirs, the block's why first."""
    own = impact.participant.randomisation_number or ""
    limit = None if impact.limit is None else impact.limit + 1
    found = list(impact.kit_findings)
    mates = sealed.block_mates(session, actor, impact.study, own, limit=limit, exclude=found, among=found,
                               after=impact.start.block_line if impact.start else None)
    if mates is None or not mates.open_count:
        return
    now, before = mates.same_now, mates.same_before
    named = ", ".join(mates.known) + (f" and {mates.known_count - len(mates.known)} more"
                                      if mates.known_count > len(mates.known) else "")
    known = f"; also known in the block: {named}" if named else ""
    where = f"block of {mates.block_size} in the randomisation list{known}"
    strength: str | None
    if now in (0, 1):
        strength = CERTAIN
        why = f"{'the same arm as' if now == 1 else 'the other arm than'} {own}, certainly ({where})"
    elif now != before:
        strength = MORE_PROBABLE
        relation, p, p0 = (("the same arm as", now, before) if now > before
                           else ("the other arm than", 1 - now, 1 - before))
        why = f"{relation} {own}: {_share(p)} now, {_share(p0)} before ({where})"
    else:
        strength, why = None, ""
    more = limit is not None and len(mates.lines) == limit
    lines = mates.lines[:-1] if more else mates.lines
    impact.block = BlockFinding(strength, why, mates.open_count, lines, more, mates.open_among)
    if strength is None:
        listed = sorted([*lines, *mates.open_among])
        rest = f" and {mates.open_count - len(listed)} more" if mates.open_count > len(listed) else ""
        impact.notes.append(f"Block-mates {', '.join(listed)}{rest}: the arms known in their block are in its "
                            "allocation ratio, so nothing follows for them.")
    else:
        impact.counts["block"] = mates.open_count


def _holders(session: Session, study: Study, kit_ids: list[int], exclude: int | None) -> list[tuple[str, str, int]]:
    """(participant, site, kit id) for other participants whose visit holds one of these kits."""
    if not kit_ids:
        return []
    return [tuple(row) for row in session.execute(
        select(col(Participant.randomisation_number), col(Site.code), col(Visit.kit_id))
        .join(Visit, col(Visit.participant_id) == col(Participant.id))
        .join(Site, col(Site.id) == col(Participant.site_id))
        .where(col(Participant.study_id) == study.id, col(Participant.id) != exclude,
               col(Visit.kit_id).in_(kit_ids)))]


def shared_lots_and_shipments(session: Session, actor: Actor, impact: Impact) -> None:
    """A blinded lot or a shipment holding kits of both arms reveals nothing certain: its other
    kits' odds of this arm move by one kit in its count, and only for a reader who knows the sealed
    counts. One holding a single arm gives every other recipient away."""
    own = unblinding.kits_of_participant(session, impact.participant)
    own_ids = [kit.id for kit in own if kit.id is not None]
    if not own_ids:
        return
    groups: dict[str, list[int]] = {}
    for lot_id, code in session.execute(select(col(BlindedLot.id), col(BlindedLot.code))
                                        .where(col(BlindedLot.id).in_({k.blinded_lot_id for k in own}))):
        groups[f"blinded lot {code}"] = list(session.scalars(select(col(Kit.id))
                                                             .where(col(Kit.blinded_lot_id) == lot_id)))
    for shipment_id, number in session.execute(select(col(Shipment.id), col(Shipment.number))
                                               .join(ShipmentKit, col(ShipmentKit.shipment_id) == col(Shipment.id))
                                               .where(col(ShipmentKit.kit_id).in_(own_ids)).distinct()):
        groups[f"shipment {number}"] = list(session.scalars(select(col(ShipmentKit.kit_id))
                                                            .where(col(ShipmentKit.shipment_id) == shipment_id)))
    arms = sealed.arms_of_kits(session, actor, {i for ids in groups.values() for i in ids} | set(own_ids),
                               why="unblinding impact")
    arm = arms.get(own_ids[0])
    numbers = dict(session.execute(select(col(Kit.id), col(Kit.number))
                                   .where(col(Kit.id).in_({i for ids in groups.values() for i in ids}))).all())
    for name, ids in sorted(groups.items()):
        others = _holders(session, impact.study, ids, impact.participant.id)
        same = sum(1 for i in ids if arms.get(i) == arm)
        if same == len(ids):
            found = {number for number, _site, _kit in others}
            counted = "shipment" if name.startswith("shipment") else "blinded_lot"
            impact.counts[counted] += len(found)
            for number, site, kit_id in others:
                impact.add(number, site, f"the same arm as {impact.participant.randomisation_number}, certainly: "
                           f"kit {numbers[kit_id]} is from {name}, which holds kits of one arm only")
        elif others:
            impact.notes.append(
                f"{name[0].upper()}{name[1:]} holds kits of both arms: nothing certain follows for the "
                f"{len(others)} other participant(s) given its kits; to a reader who knew its sealed counts, each "
                f"other kit's chance of this arm would fall from {same} in {len(ids)} to {same - 1} in {len(ids) - 1}.")


def own_kits(session: Session, actor: Actor, impact: Impact) -> None:
    """This participant's kits (every treatment, replaced ones included) are of the revealed arm;
    anyone else who was later given one of them is too."""
    own = unblinding.kits_of_participant(session, impact.participant)
    by_id = {kit.id: kit.number for kit in own if kit.id is not None}
    current = dict(session.execute(select(col(Visit.kit_id), col(Visit.treatment))
                                   .where(col(Visit.participant_id) == impact.participant.id)).all())
    for kit in own:
        when = f"treatment {current[kit.id]}" if kit.id in current else "replaced at one of its visits"
        impact.kits.append({"kit": kit.number, "strength": CERTAIN, "why": f"this participant's own kit ({when})"})
    holders = _holders(session, impact.study, list(by_id), impact.participant.id)
    impact.counts["own_kits"] = len({number for number, _site, _kit in holders})
    for number, site, kit_id in holders:
        impact.add(number, site, f"the same arm as {impact.participant.randomisation_number}, certainly: "
                   f"given kit {by_id[kit_id]}, which was first this participant's")


def assignment_order(session: Session, actor: Actor, impact: Impact) -> None:
    """Nothing: the kit for a visit is drawn uniformly at random among the eligible kits of the arm
    (sealed.assign_kit, issue 12), so which kits were passed over says nothing about their arms.
    While kits were handed out in a fixed order (earliest expiry, then kit number) every kit at the
    site ordered before this participant's was of the other arm; if an order ever comes back, its
    channel is counted here."""
    return None
