"""Destruction of kits, in two signed halves (the certificate: certificate.py).

Destruction has two signed halves: the sponsor (supply manager) authorises chosen kits at a place,
which is refused unless the latest count of each of their blinded lots there balanced and was made
after the last change of those kits; then the person at that place records method, date and
witness, the kits move to "destroyed" with a custody event each, and a certificate can be printed.

The authorisation creates the destruction (authorised); recording it is its one move (MACHINE).

Nothing here depends on an arm: kit numbers, blinded lots, states and places only, so the pharmacist
and the monitor read it and it never imports `sealed`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from enum import Enum
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, Select, func, select, update
from sqlmodel import Session, col

from .. import audit, clock, custody, inputs, kits, limits, pagination, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    AuditEvent,
    BlindedLot,
    Destruction,
    DestructionKit,
    Kit,
    KitState,
    Meaning,
    Role,
    Site,
    Study,
    User,
    saved_id,
)
from ..statemachine import Machine, Transition
from .site import (
    expected_of,
    latest_reconciliation,
    place_filter,
    place_key,
    place_name,
    refusal_at,
    require_at,
    study_of,
)

AUTHORISERS = (Role.supply_manager,)
DESTROYABLE = kits.MOVES["destroy"].sources


class DestructionState(str, Enum):
    authorised = "authorised"  # the sponsor signed; the kits wait at the place
    destroyed = "destroyed"  # carried out and signed: the kits are destroyed, the certificate prints


def site_of(session: Session, d: Destruction) -> Site | None:
    """Where the kits are destroyed: a site, or the cell bench (None)."""
    return session.get(Site, d.site_id) if d.site_id else None


def _at_its_place(d: Destruction, session: Session, actor: Actor) -> str | None:
    """The place decides who records it: the site's pharmacist, or the supply manager at the bench."""
    return refusal_at(actor, site_of(session, d), "recording a destruction")


_T = Transition[DestructionState]
MOVES: dict[str, _T] = {
    "record": _T(frozenset({DestructionState.authorised}), DestructionState.destroyed,
                 frozenset({Role.pharmacist, Role.supply_manager}), guards=(_at_its_place,),
                 signature=Meaning.destroyed),
}
MACHINE: Machine[Destruction, DestructionState] = Machine("destruction", lambda d: DestructionState(d.state),
                                             MOVES)
# Who records destructions somewhere (which of them, the place decides): what the pages let in.
RECORDERS = tuple(sorted(MOVES["record"].roles, key=lambda role: role.value))


def allowed_actions(session: Session, d: Destruction, actor: Actor) -> list[str]:
    """The moves this actor may make on the destruction now: pages and the API show only these."""
    return MACHINE.allowed(d, actor.roles, session, actor, guarded=True)


def destroyable_kits(session: Session, study: Study, site: Site | None,
                     blinded_lot: BlindedLot | None = None) -> list[Kit]:
    """Kits at the place that may be destroyed and are in no open authorisation (of one blinded lot:
    its row's page, which would otherwise read the whole place's and keep a few)."""
    open_ids = (select(col(DestructionKit.kit_id))
                .join(Destruction, col(Destruction.id) == col(DestructionKit.destruction_id))
                .where(col(Destruction.state) == DestructionState.authorised.value))
    query = select(Kit).where(col(Kit.study_id) == study.id, place_filter(Kit, site),
                              col(Kit.state).in_([s.value for s in DESTROYABLE]), col(Kit.id).not_in(open_ids))
    if blinded_lot is not None:
        query = query.where(col(Kit.blinded_lot_id) == blinded_lot.id)
    return list(session.scalars(query.order_by(col(Kit.number))))


def _last_change(session: Session, kit_list: list[Kit]) -> datetime | None:
    return session.scalar(select(func.max(col(AuditEvent.at)))
                          .where(col(AuditEvent.entity_type) == "kit", col(AuditEvent.field) == "state",
                                 col(AuditEvent.entity_id).in_([k.number for k in kit_list])))


def destruction_blocked(session: Session, study: Study, site: Site | None, kit_list: list[Kit]) -> str | None:
    """Why these kits may not be authorised for destruction yet, or None: each blinded lot they come
    from needs a balanced count at this place, made after the last change of its kits here."""
    by_lot: dict[int | None, list[Kit]] = defaultdict(list)
    for kit in kit_list:
        by_lot[kit.blinded_lot_id].append(kit)
    blinded_lots = {b.id: b for b in session.scalars(select(BlindedLot).where(
        col(BlindedLot.id).in_([i for i in by_lot if i is not None])))}
    where = place_name(site)
    for lot_id in sorted(by_lot, key=lambda i: blinded_lots[i].code if i in blinded_lots else ""):
        blinded = blinded_lots.get(lot_id)
        if blinded is None:
            return "A kit without a blinded lot cannot be reconciled, so it cannot be destroyed."
        rec = latest_reconciliation(session, study, site, blinded)
        if rec is None:
            return f"Blinded lot {blinded.code} has not been counted at {where}: reconcile it first."
        if not rec.balanced:
            return (f"The latest count of blinded lot {blinded.code} at {where} found {rec.counted_in_stock} kits "
                    f"where cellbench expected {expected_of(rec).get('on_hand')}: record a balanced count first.")
        changed = _last_change(session, by_lot[lot_id])
        if changed is not None and changed >= rec.at:
            return (f"Kits of blinded lot {blinded.code} changed at {where} after the last count "
                    f"({rec.at:%Y-%m-%d %H:%M} UTC): count again.")
    return None


def _next_number(session: Session) -> str:
    prefix = f"DS-{utcnow():%Y}-"
    last = session.scalar(select(func.max(col(Destruction.number))).where(col(Destruction.number).like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


def _kits_query(destruction: Destruction) -> Select:
    return (select(Kit).join(DestructionKit, col(DestructionKit.kit_id) == col(Kit.id))
            .where(col(DestructionKit.destruction_id) == destruction.id))


def kits_of(session: Session, destruction: Destruction) -> list[Kit]:
    return list(session.scalars(_kits_query(destruction).order_by(col(Kit.number))))


# A destruction's kits by number: the same order for both arms (numbers are random).
KIT_ORDER = pagination.Order("destruction kits", (col(Kit.number),))


def destruction_kits(session: Session, destruction: Destruction,
                     ask: pagination.Ask | None = None) -> pagination.Page[Kit]:
    """One page of the destruction's kits by number (`ask`), or all of them (None)."""
    if ask is None:
        return pagination.Page(rows=kits_of(session, destruction), next=None, first=True)
    return pagination.page(session, _kits_query(destruction), KIT_ORDER, ask)


def _by_id(session: Session, destruction_id: str) -> Destruction:
    d = session.get(Destruction, int(destruction_id))
    if d is None:
        raise NotFound("No such destruction.")
    return d


@signatures.content_rule("destruction_authorisation")
def _authorisation_content(session: Session, destruction_id: str) -> dict:
    d = _by_id(session, destruction_id)
    return {"number": d.number, "study": study_of(session, d.study_id).code, "place": place_key(site_of(session, d)),
            "kits": [k.number for k in kits_of(session, d)], "authorised_by": d.authorised_by,
            "authorised_at": d.authorised_at}


@signatures.content_rule("destruction")
def _destruction_content(session: Session, destruction_id: str) -> dict:
    d = _by_id(session, destruction_id)
    return {"number": d.number, "kits": [k.number for k in kits_of(session, d)], "method": d.method,
            "destroyed_on": d.destroyed_on, "witness": d.witness, "destroyed_by": d.destroyed_by}


def _kit_numbers(values: object) -> list[str]:
    """Kit numbers as chosen on the form (a list) or typed (separated by commas or spaces)."""
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    given: Iterable[object] = values if isinstance(values, Iterable) else []
    numbers = [str(v).strip() for v in given if str(v).strip()]
    if not numbers:
        raise InvalidInput("Choose the kits to destroy.", field="kits")
    return numbers


def authorise(session: Session, user: User, password: str | None, study: Study, site: Site | None,
              kit_numbers: object) -> Destruction:
    """The sponsor's signed authorisation to destroy these kits at this place."""
    actor = users.actor(session, user)
    users.require_role(actor, *AUTHORISERS)
    chosen: dict[int, Kit] = {}
    for number in _kit_numbers(kit_numbers):
        kit = kits.by_number(session, number, field="kits")
        if kit.study_id != study.id:
            raise InvalidInput(f"Kit {kit.number} is not of {study.code}.", field="kits")
        if kit.site_id != (site.id if site else None):
            raise InvalidInput(f"Kit {kit.number} is not at {place_name(site)}.", field="kits")
        if KitState(kit.state) not in DESTROYABLE:
            raise InvalidInput(f"Kit {kit.number} is {kits.state_label(kit.state).lower()}: only withdrawn, returned, "
                               "not administered or damaged kits are destroyed.", field="kits")
        chosen[saved_id(kit)] = kit
    kit_list = sorted(chosen.values(), key=lambda k: k.number)
    # Two authorisations of one kit at the same moment: the second waits here, then finds the first.
    session.execute(select(col(Kit.id)).where(col(Kit.id).in_(list(chosen))).order_by(col(Kit.id)).with_for_update())
    taken = session.scalars(select(col(Kit.number)).join(DestructionKit, col(DestructionKit.kit_id) == col(Kit.id))
                            .join(Destruction, col(Destruction.id) == col(DestructionKit.destruction_id))
                            .where(col(Destruction.state) == DestructionState.authorised.value,
                                   col(Kit.id).in_(list(chosen)))
                            .order_by(col(Kit.number))).first()
    if taken is not None:
        raise InvalidInput(f"Kit {taken} is already authorised for destruction.", field="kits")
    if why := destruction_blocked(session, study, site, kit_list):
        raise InvalidInput(f"Destruction cannot be authorised yet. {why}", field="kits")
    d = Destruction(number=_next_number(session), study_id=saved_id(study), site_id=site.id if site else None,
                    state=DestructionState.authorised.value, kit_count=len(kit_list), authorised_by=saved_id(user),
                    authorised_at=utcnow())
    session.add(d)
    session.flush()
    session.add_all(DestructionKit(destruction_id=saved_id(d), kit_id=saved_id(kit)) for kit in kit_list)
    session.flush()
    d.authorisation_signature_id = signatures.sign(session, user, password or "", Meaning.approved,
                                                   "destruction_authorisation", str(d.id)).id
    audit.record(session, actor, "destruction authorised", "destruction", d.number, field="kits",
                 new=[k.number for k in kit_list], reason=f"{study.code}, {place_name(site)}")
    for kit in kit_list:
        audit.record(session, actor, "kit destruction authorised", "kit", kit.number, field="destruction",
                     new=d.number)
    session.flush()
    return d


def local_zone(session: Session, d: Destruction) -> ZoneInfo:
    """Where the kits were destroyed: the site's zone, or the cell bench's (the app's) zone."""
    return clock.zone(site_of(session, d))


def local_today(session: Session, d: Destruction) -> date:
    """Today as the people destroying the kits write the date, not the UTC date (which is
    yesterday's for an hour or two after midnight in Copenhagen)."""
    return clock.today(site_of(session, d))


def _destroyed_on(value: date | str | None, authorised: datetime, site: Site | None) -> date:
    day = inputs.past_day(value, "destroyed_on", "date of destruction")
    authorised_day = clock.today(site, now=authorised)
    if day > clock.today(site):
        raise InvalidInput("The date of destruction cannot be in the future.", field="destroyed_on")
    if day < authorised_day:
        raise InvalidInput(f"The kits were authorised for destruction on {authorised_day:%Y-%m-%d}; they cannot "
                           "have been destroyed before.", field="destroyed_on")
    return day


def record_destruction(session: Session, user: User, password: str | None, d: Destruction, *, method: str | None,
                       destroyed_on: date | str | None, witness: str | None) -> Destruction:
    """The destruction carried out: method, date and witness, signed; the kits are destroyed."""
    actor = users.actor(session, user)
    site = site_of(session, d)
    require_at(actor, site, "recording a destruction")  # the wrong person here is refused, not mistaken
    if MACHINE.state_refusal(d, "record"):
        raise InvalidInput(f"{d.number} is already {d.state}.", field="destruction")
    move = MACHINE.check(d, "record", actor.roles, session, actor)
    method = limits.text(method, "method", "method of destruction", "label", required=True) or ""
    witness = limits.text(witness, "witness", "witness's name", "name", required=True) or ""
    if witness.casefold() == user.full_name.casefold():
        raise InvalidInput("The witness is a second person, not the one who destroys the kits.", field="witness")
    day = _destroyed_on(destroyed_on, d.authorised_at, site)
    old, new = DestructionState(d.state), MACHINE.target(d, "record")
    # Two people recording it at once: only the first finds it still authorised.
    changed = cast(CursorResult, session.execute(
        update(Destruction).where(col(Destruction.id) == d.id, col(Destruction.state) == old.value)
        .values(state=new.value, method=method, destroyed_on=day, witness=witness, destroyed_by=user.id)))
    if changed.rowcount != 1:
        raise Conflict(f"Someone else recorded {d.number} at the same moment. Reload and check it.",
                       field="destruction")
    session.refresh(d)
    where = place_name(site)
    for kit in kits_of(session, d):
        kits.move(session, actor, kit, "destroy", reason=f"destroyed under {d.number} ({method}), witness {witness}")
        custody.record(session, actor, kit, "destroyed", from_place=where, to_place=None,
                       condition=f"{method}; witness {witness}; {day.isoformat()}")
    meaning = move.signature or Meaning.destroyed
    d.signature_id = signatures.sign(session, user, password or "", meaning, "destruction", str(d.id)).id
    audit.record(session, actor, "destruction recorded", "destruction", d.number, field="state", old=old.value,
                 new=new.value, reason=f"{method}, {day.isoformat()}, witness {witness}")
    session.flush()
    return d


def by_number(session: Session, number: str | None, *, reader: Actor | None = None) -> Destruction:
    """A destruction by its number; one outside a `reader`'s sites and studies answers as a missing one."""
    d = session.scalars(select(Destruction).where(col(Destruction.number) == (number or "").strip().upper())).first()
    missing = f"No destruction '{(number or '').strip()}'."
    if d is None:
        raise NotFound(missing, field="destruction")
    if reader is not None:
        users.require_visible(reader, d.site_id, d.study_id, missing, field="destruction")
    return d


def _destruction_query(study: Study | None, state: str | None, reader: Actor | None) -> Select:
    query = select(Destruction)
    if reader is not None:
        query = users.within(query, reader, site=col(Destruction.site_id), study=col(Destruction.study_id))
    if study is not None:
        query = query.where(col(Destruction.study_id) == study.id)
    if state:
        query = query.where(col(Destruction.state) == state)
    return query


def destructions(session: Session, study: Study | None = None, state: str | None = None,
                 limit: int = 200, *, reader: Actor | None = None) -> list[Destruction]:
    """The destructions, newest first; with a `reader`, those at its sites in its studies (a
    destruction at the cell bench is no site's)."""
    query = _destruction_query(study, state, reader)
    return list(session.scalars(query.order_by(col(Destruction.id).desc()).limit(limit)))


# Newest first: ids follow authorisation, which is the same act for both arms (kits are chosen by number).
DESTRUCTION_ORDER = pagination.Order("destructions", (col(Destruction.id),), newest_first=True)


def destruction_page(session: Session, ask: pagination.Ask, study: Study | None = None, state: str | None = None,
                     *, reader: Actor | None = None) -> pagination.Page[Destruction]:
    """A page of destructions, newest first (the rows only: a certificate is gathered for one)."""
    return pagination.page(session, _destruction_query(study, state, reader), DESTRUCTION_ORDER, ask)
