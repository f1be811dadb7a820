"""Resupply that keeps both arms stocked (unblinded): the trigger, evaluated after every move that
changes a site's stock, after a "no kit" answer and once a day, that proposes a shipment to the
supply manager with the kits picked; and the proposal's one transition table.

The rule, per study, site and arm (its ResupplySetting): an arm is short when its usable kits at
the site plus those on their way are below its minimum, or fewer than the visits of its
participants due within the next window (the study's transit days plus its longest visit window:
treatment 2 of NCT07290946 falls 120 days after treatment 1, its window ± 14 days, from the
visits schedule). When any arm is short, every arm below its maximum is filled up to it (or to
its due visits, if more), so that shipments mostly carry both arms. Kits are picked at the cell
bench earliest expiry first, never one whose blinded expiry falls within the arm's do-not-ship
days of arrival, nor before the last day of the visit it would cover plus the use window, nor one
the product's own do-not-ship rule refuses at packing (custody.kit_in_date_to_ship).

Debounce: one open proposal per study and site (a unique slot). A later evaluation updates it,
and closes it as lapsed when nothing is short any more; the supply manager accepts it (a shipment
being packed, holding the picked kits, which then count as on their way) or dismisses it.

Where it runs: a kit move into or out of a site's stock, and a "no kit" answer, only leave a note
(kits.note_stock, in the mover's transaction: no kit, no arm); the server evaluates noted sites
every few seconds (process_noted), in a transaction of its own, acting as supply (TRIGGER). So
nothing of resupply runs in a blinded pharmacist's request, nothing of it can fail her move, and
her pages, answers and messages are the same whatever the arms.
"""
from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, clock, custody, notifications, sealed, studies
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict
from ..models import (
    Kit,
    Participant,
    ResupplyProposal,
    ResupplyProposalKit,
    ResupplySetting,
    Role,
    Site,
    StockNote,
    Study,
    Visibility,
    Visit,
    saved_id,
)
from ..sealed import ArmStock, BenchKit
from ..statemachine import Machine, Transition

log = logging.getLogger("cellbench")
DAILY_HOUR = 5  # the server's daily evaluation, cell-bench time (`cellbench resupply` for cron does the same)
PLANNERS = frozenset({Role.supply_manager})  # settings, proposals: per-arm figures, unblinded
# Who the trigger acts as, whoever's move set it off: supply's rules, nobody's name.
TRIGGER = Actor(None, "cellbench resupply trigger", PLANNERS)


class ProposalState(str, enum.Enum):
    proposed = "proposed"
    accepted = "accepted"  # a shipment is being packed with its kits
    dismissed = "dismissed"
    lapsed = "lapsed"  # the trigger found nothing short any more


_T = Transition[ProposalState]
_OPEN = frozenset({ProposalState.proposed})
MOVES: dict[str, _T] = {
    "accept": _T(_OPEN, ProposalState.accepted, PLANNERS),
    "dismiss": _T(_OPEN, ProposalState.dismissed, PLANNERS, needs_reason=True),
    "lapse": _T(_OPEN, ProposalState.lapsed, PLANNERS),  # the trigger, acting as supply
}
MACHINE: Machine[ResupplyProposal, ProposalState] = Machine(
    "resupply proposal", lambda row: ProposalState(row.state), MOVES)


@dataclass
class ArmFigures:
    """One arm's line of a proposal, as stored (JSON) and shown to the supply manager only."""

    at_site: int
    on_the_way: int
    due: int  # visits of the arm's participants due within the window, without a kit yet
    minimum: int
    maximum: int
    short: bool
    wanted: int  # kits to send: up to the maximum (or the due visits), when any arm is short
    picked: int
    unmet: int  # wanted but no kit at the bench fits


# --- the notes, evaluated ------------------------------------------------------------------------
#
# A move into or out of a site's stock, and a "no kit" answer, leave a StockNote in the mover's
# transaction (kits.note_stock: no kit, no arm). The server evaluates the noted sites every few
# seconds, `cellbench resupply` and the daily run too, each in a transaction of its own.

NO_KIT = "no kit"
POLL_SECONDS = 5  # how soon the server evaluates a noted site ("at once", for a "no kit")


def noted(session: Session) -> bool:
    return session.scalars(select(col(StockNote.id)).limit(1)).first() is not None


def process_noted(session: Session) -> list[ResupplyProposal]:
    """Evaluate every noted site once (a "no kit" named as the cause when one is among its notes),
    each in a savepoint, and drop its notes; a site whose evaluation fails keeps its notes for the
    next run. The open proposals of the sites evaluated."""
    return _process(session)[1]


def _process(session: Session) -> tuple[set[tuple[int, int]], list[ResupplyProposal]]:
    notes = session.scalars(select(StockNote).order_by(col(StockNote.id))).all()
    places: dict[tuple[int, int], tuple[str, int]] = {}
    for note in notes:
        cause, _last = places.get((note.study_id, note.site_id), (note.cause, 0))
        places[(note.study_id, note.site_id)] = (NO_KIT if NO_KIT in (cause, note.cause) else note.cause,
                                                 saved_id(note))
    found, done = [], set()
    for (study_id, site_id), (cause, last) in sorted(places.items()):
        try:
            with session.begin_nested():
                proposal = evaluate(session, study_id, site_id, cause)
                session.execute(delete(StockNote).where(col(StockNote.study_id) == study_id,
                                                        col(StockNote.site_id) == site_id,
                                                        col(StockNote.id) <= last))
        except Exception:  # logged; the notes stay, and the next run tries again
            log.exception("resupply evaluation of study #%s site #%s failed", study_id, site_id)
            continue
        done.add((study_id, site_id))
        if proposal is not None:
            found.append(proposal)
    return done, found


def seconds_to_next_run(hour: int = DAILY_HOUR) -> float:
    """From now to the next daily run (the cell bench's morning)."""
    now = utcnow().astimezone(clock.zone())
    run = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return ((run if run > now else run + timedelta(days=1)) - now).total_seconds()


def evaluate_all(session: Session, cause: str = "daily evaluation") -> list[ResupplyProposal]:
    """Every study and site with settings (the daily run, `cellbench resupply`), the notes taken
    with them: the open proposals."""
    done, found = _process(session)
    places = session.execute(select(col(ResupplySetting.study_id), col(ResupplySetting.site_id)).distinct()
                             .order_by(col(ResupplySetting.study_id), col(ResupplySetting.site_id))).all()
    for study_id, site_id in places:
        if (study_id, site_id) not in done and (proposal := evaluate(session, study_id, site_id, cause)):
            found.append(proposal)
    return sorted(found, key=lambda proposal: proposal.number)


# --- the evaluation ------------------------------------------------------------------------------


def settings_of(session: Session, study_id: int, site_id: int) -> dict[str, ResupplySetting]:
    rows = session.scalars(select(ResupplySetting).where(col(ResupplySetting.study_id) == study_id,
                                                         col(ResupplySetting.site_id) == site_id))
    return {row.arm: row for row in rows}


def open_proposal(session: Session, study_id: int, site_id: int) -> ResupplyProposal | None:
    return session.scalars(select(ResupplyProposal).where(
        col(ResupplyProposal.study_id) == study_id, col(ResupplyProposal.site_id) == site_id,
        col(ResupplyProposal.state) == ProposalState.proposed.value)).first()


def window_days(study: Study) -> int:
    """How far ahead visits count as due: a shipment's transit, then the longest visit window."""
    return studies.definition(study).supply.transit_days + studies.longest_visit_window_days(study)


def _due_visits(session: Session, study: Study, site_id: int, today: date) -> list[tuple[str, date]]:
    """(randomisation number, window end) of the visits at the site still waiting for a kit whose
    window is open within the next window_days."""
    horizon = today + timedelta(days=window_days(study))
    rows = session.execute(select(col(Participant.randomisation_number), col(Visit.window_end))
                           .join(Participant, col(Participant.id) == col(Visit.participant_id))
                           .where(col(Participant.study_id) == study.id, col(Participant.site_id) == site_id,
                                  col(Participant.randomisation_number).is_not(None),
                                  col(Visit.state) == "planned", col(Visit.kit_id).is_(None),
                                  col(Visit.window_end) >= today, col(Visit.window_start) <= horizon))
    return [(number, end) for number, end in rows if number]


def _taken_elsewhere(session: Session, proposal_id: int | None) -> list[int]:
    """Kits other open proposals picked: two sites are never promised one kit."""
    query = (select(col(ResupplyProposalKit.kit_id))
             .join(ResupplyProposal, col(ResupplyProposal.id) == col(ResupplyProposalKit.proposal_id))
             .where(col(ResupplyProposal.state) == ProposalState.proposed.value))
    if proposal_id is not None:
        query = query.where(col(ResupplyProposal.id) != proposal_id)
    return list(session.scalars(query))


def _pick(session: Session, candidates: Sequence[BenchKit], needs: Sequence[date], today: date,
          taken: set[int]) -> list[int]:
    """For each need (the last day a kit must be in date), earliest need first, the candidate with
    the earliest expiry that covers it (which leaves the longest-dated kits to the needs that want
    them); a kit the product's do-not-ship rule refuses at packing is passed over."""
    picked: list[int] = []
    for need in sorted(needs):
        for kit in candidates:
            if kit.id in taken or kit.expiry < need:
                continue
            row = session.get(Kit, kit.id)
            taken.add(kit.id)
            if row is not None and custody.kit_in_date_to_ship(session, row, today) is None:
                picked.append(kit.id)
                break
    return picked


def evaluate(session: Session, study_id: int, site_id: int, cause: str) -> ResupplyProposal | None:
    """The site's open proposal after this evaluation (created, updated or none: lapsed)."""
    settings = settings_of(session, study_id, site_id)
    if not settings:
        return None
    study, site = studies.by_id(session, study_id), session.get(Site, site_id)
    assert site is not None, "settings name a stored site"
    today = clock.today(site)
    transit = studies.definition(study).supply.transit_days
    use_days = math.ceil(timedelta(minutes=studies.definition(study).presentation.use_window_minutes)
                         / timedelta(days=1))
    due = _due_visits(session, study, site_id, today)
    current = open_proposal(session, study_id, site_id)
    soonest = today + timedelta(days=transit + min(s.do_not_ship_days for s in settings.values()))
    stock = sealed.site_stock(session, TRIGGER, study, site_id, usable_through=today, ship_through=soonest,
                              due=[number for number, _end in due],
                              exclude=_taken_elsewhere(session, current.id if current else None))
    ends = dict(due)
    figures: dict[str, ArmFigures] = {}
    for arm, setting in sorted(settings.items()):
        arm_stock = stock.get(arm, ArmStock())
        have, wanting = arm_stock.at_site + arm_stock.on_the_way, len(arm_stock.due)
        figures[arm] = ArmFigures(arm_stock.at_site, arm_stock.on_the_way, wanting, setting.min_stock,
                                  setting.max_stock, have < max(setting.min_stock, wanting), 0, 0, 0)
    if not any(f.short for f in figures.values()):
        if current is not None:
            _close(session, current, "lapse", f"nothing short any more ({cause})")
        return None
    taken: set[int] = set()
    picks: list[int] = []
    for arm, f in figures.items():
        have = f.at_site + f.on_the_way
        f.wanted = max(0, max(f.maximum, f.due) - have)
        setting, arm_stock = settings[arm], stock.get(arm, ArmStock())
        # the due visits stock does not cover, latest first, each needs a kit through its window
        uncovered = sorted((ends[n] for n in arm_stock.due), reverse=True)[:max(0, f.due - have)]
        floor = today + timedelta(days=transit + setting.do_not_ship_days)
        needs = [max(floor, end + timedelta(days=use_days)) for end in uncovered]
        needs += [floor] * (f.wanted - len(needs))
        chosen = _pick(session, arm_stock.candidates, needs, today, taken)
        f.picked, f.unmet = len(chosen), f.wanted - len(chosen)
        picks += chosen
    text = json.dumps({arm: vars(f) for arm, f in figures.items()}, sort_keys=True)
    if current is None:
        return _create(session, study, site, cause, text, picks)
    _update(session, current, cause, text, picks)
    return current


def _number(session: Session) -> str:
    prefix = f"RS-{utcnow():%Y}-"
    last = session.scalar(select(func.max(col(ResupplyProposal.number)))
                          .where(col(ResupplyProposal.number).like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


def _set_kits(session: Session, proposal: ResupplyProposal, picks: Sequence[int]) -> None:
    session.execute(delete(ResupplyProposalKit).where(col(ResupplyProposalKit.proposal_id) == proposal.id))
    session.add_all(ResupplyProposalKit(proposal_id=saved_id(proposal), kit_id=kit_id) for kit_id in picks)
    session.flush()


def _kit_numbers(session: Session, picks: Sequence[int]) -> list[str]:
    return sorted(session.scalars(select(col(Kit.number)).where(col(Kit.id).in_(list(picks))))) if picks else []


def _create(session: Session, study: Study, site: Site, cause: str, figures: str,
            picks: Sequence[int]) -> ResupplyProposal:
    """THE place a resupply proposal comes into being, and where the supply manager is told of it."""
    now = utcnow()
    proposal = ResupplyProposal(number=_number(session), study_id=saved_id(study), site_id=saved_id(site),
                                cause=cause[:200], figures=figures, created_at=now, evaluated_at=now)
    try:
        with session.begin_nested():  # another evaluation of this site at the same moment: one wins
            session.add(proposal)
            session.flush()
    except IntegrityError:
        raise Conflict(f"A resupply proposal for {site.code} was made at the same moment.", field="proposal") from None
    _set_kits(session, proposal, picks)
    audit.record(session, TRIGGER, "resupply proposed", "resupply_proposal", proposal.number,
                 new={"study": study.code, "site": site.code, "cause": cause, "figures": json.loads(figures),
                      "kits": _kit_numbers(session, picks)}, visibility=Visibility.unblinded)
    notifications.resupply_proposed(session, TRIGGER, study=study, site=site, proposal=proposal.number,
                                    kits_by_arm={arm: line["picked"] for arm, line in json.loads(figures).items()},
                                    reasons=[cause], url=f"/supply/resupply/{proposal.number}")
    return proposal


def _update(session: Session, proposal: ResupplyProposal, cause: str, figures: str, picks: Sequence[int]) -> None:
    """The open proposal takes the new figures and picks; recorded only when they changed."""
    before = set(session.scalars(select(col(ResupplyProposalKit.kit_id))
                                 .where(col(ResupplyProposalKit.proposal_id) == proposal.id)))
    changed = figures != proposal.figures or before != set(picks)
    claim(session, proposal, proposal.row_version, evaluated_at=utcnow(),
          **({"figures": figures, "cause": cause[:200]} if changed else {}))
    if changed:
        _set_kits(session, proposal, picks)
        audit.record(session, TRIGGER, "resupply proposal updated", "resupply_proposal", proposal.number,
                     field="figures", new={"cause": cause, "figures": json.loads(figures),
                                           "kits": _kit_numbers(session, picks)}, visibility=Visibility.unblinded)


def claim(session: Session, proposal: ResupplyProposal, seen_version: int, **values: object) -> None:
    """Take the open proposal for this transaction at the version read, else Conflict."""
    changed = session.execute(update(ResupplyProposal)
                              .where(col(ResupplyProposal.id) == proposal.id,
                                     col(ResupplyProposal.row_version) == seen_version,
                                     col(ResupplyProposal.state) == ProposalState.proposed.value)
                              .values(row_version=ResupplyProposal.row_version + 1, **values)
                              .execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"Resupply proposal {proposal.number} was changed a moment ago. Reload it and check.",
                       field="proposal_version")
    session.refresh(proposal)


def _close(session: Session, proposal: ResupplyProposal, action: str, reason: str, *,
           actor: Actor = TRIGGER, seen_version: int | None = None, shipment_id: int | None = None) -> None:
    MACHINE.check(proposal, action, actor.roles)
    target = MACHINE.target(proposal, action)
    old = proposal.state
    claim(session, proposal, proposal.row_version if seen_version is None else seen_version,
          state=target.value, open_slot=None, decided_by=actor.user_id, decided_at=utcnow(), reason=reason,
          shipment_id=shipment_id)
    audit.record(session, actor, f"resupply proposal {target.value}", "resupply_proposal", proposal.number,
                 field="state", old=old, new=target.value, reason=reason, visibility=Visibility.unblinded)
