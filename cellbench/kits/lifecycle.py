"""The kit lifecycle: one state machine for both arms (MOVES, MACHINE), the moves themselves, made
one kit or a whole run at a time with optimistic row claims, and the kits' coming into being."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from sqlalchemy import Table, insert, select, tuple_
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from .. import audit, kit_counts, storage_counts, unpackaged_counts
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, Forbidden, InvalidInput
from ..models import Kit, KitState, Role, StockNote, Study, Visit, saved_id
from ..statemachine import Machine, Transition, words

# What a blinded person reads for each state. Quarantine shows one generic wording whatever its
# cause, for both arms.
STATE_LABELS = {
    KitState.planned: "Kit number issued",
    KitState.packaged: "Packaged, awaiting release",
    KitState.released: "Released",
    KitState.awaiting_release: "Awaiting final release",
    KitState.transit_awaiting_release: "In transit, awaiting final release",
    KitState.site_awaiting_release: "At site, awaiting final release",
    KitState.quarantined: "Temporarily unavailable",
    KitState.withdrawn: "Withdrawn from use",
    KitState.in_transit: "In transit",
    KitState.at_site: "Available at site",
    KitState.allocated: "Assigned to a visit",
    KitState.dispensed: "Dispensed",
    KitState.in_preparation: "In preparation",
    KitState.administered: "Administered",
    KitState.not_administered: "Not administered",
    KitState.returned: "Returned",
    KitState.damaged: "Damaged",
    KitState.missing: "Missing",
    KitState.destroyed: "Destroyed",
}
GENERIC_QUARANTINE_REASON = "Temporarily unavailable pending a quality review."


def not_in_a_kit_quarantine(kit: Kit) -> str | None:
    """A kit already held may join a kit quarantine only if it is held on receipt, awaiting QA's
    assessment of its shipment (no kit quarantine of its own): QA accepting the shipment must not
    then put a kit of a quarantined lot back into use."""
    if KitState(kit.state) is KitState.quarantined and kit.quarantine_id is not None:
        return f"Kit {kit.number} is already held by another quarantine."
    return None


def held_in_transit(kit: Kit) -> str | None:
    """A held kit may be received only if it was held while travelling: it arrives still held."""
    if KitState(kit.state) is KitState.quarantined and kit.state_before_quarantine not in _TRAVELLING:
        return f"Kit {kit.number} is {STATE_LABELS[KitState.quarantined].lower()} and not in transit."
    return None


_T = Transition[KitState]
_SUPPLY = frozenset({Role.supply_manager})
_SUPPLY_QA = frozenset({Role.supply_manager, Role.qa})
_PHARMACY = frozenset({Role.pharmacist})
# A kit released for shipment only (two-step release), wherever it is: it goes on to travel and be
# received, each with a move of its own, and is finally released where it is (FINAL_RELEASE).
AWAITING_FINAL_RELEASE = frozenset({KitState.awaiting_release, KitState.transit_awaiting_release,
                                    KitState.site_awaiting_release})
_TRAVELLING = frozenset({KitState.in_transit.value, KitState.transit_awaiting_release.value})
_HELD = (frozenset({KitState.released, KitState.in_transit, KitState.at_site, KitState.allocated})
         | AWAITING_FINAL_RELEASE)
_FINAL = frozenset({Role.supply_manager, Role.qp})  # the sponsor's release, or the QP's final certification

# The kit state machine (reference "Workflow" B), identical for both arms.
MOVES: dict[str, _T] = {
    "package": _T(frozenset({KitState.planned}), KitState.packaged, _SUPPLY),
    "release": _T(frozenset({KitState.packaged}), KitState.released, _FINAL),
    # two-step release: shipped and received under quarantine, released finally where the kit is
    "release_for_shipment": _T(frozenset({KitState.packaged}), KitState.awaiting_release, _FINAL),
    "final_release": _T(frozenset({KitState.awaiting_release}), KitState.released, _FINAL),
    "final_release_in_transit": _T(frozenset({KitState.transit_awaiting_release}), KitState.in_transit, _FINAL),
    "final_release_at_site": _T(frozenset({KitState.site_awaiting_release}), KitState.at_site, _FINAL),
    # QC analysts too: their out-of-specification result after release quarantines kits at once
    "quarantine": _T(frozenset({KitState.packaged, KitState.quarantined}) | _HELD, KitState.quarantined,
                     _SUPPLY_QA | {Role.qc_analyst}, guards=(not_in_a_kit_quarantine,)),
    "lift_quarantine": _T(frozenset({KitState.quarantined}), None, _SUPPLY_QA),
    "withdraw": _T(frozenset({KitState.quarantined}), KitState.withdrawn, _SUPPLY_QA),
    # custody (custody.py): dispatched in a shipment, received at the site pharmacy
    "ship": _T(frozenset({KitState.released}), KitState.in_transit, _SUPPLY),
    "receive": _T(frozenset({KitState.in_transit}), KitState.at_site, _PHARMACY),
    "ship_awaiting_release": _T(frozenset({KitState.awaiting_release}), KitState.transit_awaiting_release, _SUPPLY),
    "receive_awaiting_release": _T(frozenset({KitState.transit_awaiting_release}), KitState.site_awaiting_release,
                                   _PHARMACY),
    # A failed receipt check holds the kit at the site as received, until QA assesses the shipment.
    # A kit already held while in transit (its lot was quarantined) arrives the same way: still
    # held, now at the site, and back to the site's stock when its quarantine is lifted.
    "receive_into_quarantine": _T(frozenset({KitState.in_transit, KitState.transit_awaiting_release,
                                             KitState.quarantined}), KitState.quarantined,
                                  _PHARMACY, guards=(held_in_transit,)),
    # the pharmacy (pharmacy.py): one path for both arms
    "allocate": _T(frozenset({KitState.at_site}), KitState.allocated, _PHARMACY),
    "unallocate": _T(frozenset({KitState.allocated}), KitState.at_site, _PHARMACY),
    "dispense": _T(frozenset({KitState.allocated}), KitState.dispensed, _PHARMACY),
    "start_preparation": _T(frozenset({KitState.dispensed}), KitState.in_preparation, frozenset({Role.preparer})),
    "administer": _T(frozenset({KitState.in_preparation}), KitState.administered, frozenset({Role.investigator})),
    "not_administered": _T(frozenset({KitState.dispensed, KitState.in_preparation}), KitState.not_administered,
                           frozenset({Role.investigator, Role.preparer})),
    "return": _T(frozenset({KitState.at_site, KitState.allocated, KitState.dispensed}), KitState.returned, _PHARMACY),
    # a held kit can still be damaged or go missing (a lost shipment, a kit not in the shipper)
    "damage": _T(_HELD | {KitState.dispensed, KitState.quarantined}, KitState.damaged, _PHARMACY | _SUPPLY),
    "lose": _T(_HELD | {KitState.dispensed, KitState.quarantined}, KitState.missing, _PHARMACY | _SUPPLY),
    "destroy": _T(frozenset({KitState.withdrawn, KitState.returned, KitState.not_administered, KitState.damaged}),
                  KitState.destroyed, _PHARMACY | _SUPPLY),
}
MACHINE: Machine[Kit, KitState] = Machine("kit", lambda kit: KitState(kit.state), MOVES)
# The move a kit awaiting final release makes instead of a finally released kit's, and where each
# such kit goes at final certification: the same for both arms.
AWAITING_TWIN = {"ship": "ship_awaiting_release", "receive": "receive_awaiting_release"}
FINAL_RELEASE = ("final_release", "final_release_in_transit", "final_release_at_site")
# Where a kit held on arrival goes back to when its hold is lifted.
_ARRIVES_AS = {KitState.transit_awaiting_release: KitState.site_awaiting_release}
# The moves with which a kit leaves its tank or freezer (it is no longer on that shelf).
LEAVES_STORAGE = frozenset({"ship", "receive", "receive_into_quarantine", "dispense", "return", "lose", "destroy",
                            "ship_awaiting_release", "receive_awaiting_release"})


# The states whose entry or exit changes a site's stock: such a move notes its site (StockNote) in
# the mover's transaction, and so does a "no kit" answer (sealed.assign_kit). Supply's resupply
# evaluates the noted sites afterwards, in its own transaction (supply/resupply.py): nothing of it
# runs in a blinded mover's request, and the note names no kit and no arm.
SITE_STOCK = frozenset({KitState.at_site, KitState.site_awaiting_release, KitState.quarantined})
_NOTE: Table = StockNote.metadata.tables["stock_note"]


def note_stock(session: Session, places: set[tuple[int, int]], cause: str) -> None:
    """(study id, site id) places whose stock changed, for resupply to evaluate."""
    now = utcnow()
    session.execute(insert(_NOTE), [{"study_id": study_id, "site_id": site_id, "cause": cause, "noted_at": now}
                                    for study_id, site_id in sorted(places)])


def state_label(state: str | KitState) -> str:
    return STATE_LABELS[KitState(state)]


def move_for(kit: Kit, name: str) -> str:
    """The move this kit makes for `name`: its awaiting-final-release twin if that is where it is."""
    twin = AWAITING_TWIN.get(name)
    return twin if twin and KitState(kit.state) in MOVES[twin].sources else name


def by_move(kits_: Sequence[Kit], names: Sequence[str]) -> dict[str, list[Kit]]:
    """The kits grouped by the first of these moves whose sources hold each kit's state (others left out)."""
    grouped: dict[str, list[Kit]] = {}
    for kit in kits_:
        name = next((n for n in names if KitState(kit.state) in MOVES[n].sources), None)
        if name is not None:
            grouped.setdefault(name, []).append(kit)
    return grouped


def move(session: Session, actor: Actor, kit: Kit, name: str, *, reason: str | None = None,
         seen_version: int | None = None, quarantine_id: int | None = None, also: dict | None = None) -> None:
    """Make one move of the table. `reason` is what everyone, blinded people included, may read."""
    seen = None
    if seen_version is not None:
        try:
            seen = {saved_id(kit): int(seen_version)}
        except (TypeError, ValueError):
            raise InvalidInput("This form is damaged; reload the page.", field="kit_version") from None
    move_many(session, actor, [kit], name, reason=reason, seen_versions=seen, quarantine_id=quarantine_id, also=also)


def maker_id(actor: Actor) -> int:
    """The person a supply record names as its maker (a list, a run, a quarantine): someone signed in."""
    if actor.user_id is None:
        raise Forbidden("Only a signed-in person can make this record.")
    return actor.user_id


def allowed_moves(kit: Kit, actor: Actor) -> list[str]:
    """The moves the table allows this actor on this kit now (guards too): what pages offer."""
    return MACHINE.allowed(kit, actor.roles, guarded=True)


def _rule(actor: Actor, name: str) -> Transition[KitState]:
    rule = MACHINE.transition(name)
    if why := MACHINE.role_refusal(name, actor.roles):
        raise Forbidden(why)
    return rule


def _refusal(kit: Kit, name: str) -> str | None:
    """Why the table refuses this move of this kit now (its state, then its guards), or None. The
    state is said as blinded people read it, the same for both arms."""
    if MACHINE.state_refusal(kit, name):
        return (f"Kit {kit.number} is {state_label(kit.state).lower()}; it cannot be moved by "
                f"'{words(name)}' now.")
    return next(iter(MACHINE.guard_refusals(kit, name)), None)


def _on_a_visit(session: Session, kit_ids: list[int]) -> set[int]:
    """Which of these kits a visit still holds as its assigned kit."""
    found: set[int] = set()
    for start in range(0, len(kit_ids), _CHUNK):
        chunk = kit_ids[start:start + _CHUNK]
        found.update(i for i in session.scalars(select(col(Visit.kit_id)).where(col(Visit.kit_id).in_(chunk))) if i)
    return found


def _after_quarantine(kit: Kit, on_visit: set[int]) -> KitState:
    """Where a held kit goes back to: the state it was in, unless that state has gone meanwhile.
    An allocated kit whose visit took another kit (pharmacy.replace_kit) is back in the site's
    stock, not allocated to nobody. The same rule for both arms."""
    before = KitState(kit.state_before_quarantine)
    if before is KitState.allocated and saved_id(kit) not in on_visit:
        return KitState.at_site
    return before


_CHUNK = 400  # kits per statement: two bound values each, far below every engine's limit
_KIT: Table = Kit.metadata.tables["kit"]


def move_many(session: Session, actor: Actor, kits_: Sequence[Kit], name: str, *, reason: str | None = None,
              seen_versions: Mapping[int, int] | None = None, quarantine_id: int | None = None,
              also: dict | None = None) -> None:
    """The same move for many kits, as one use case: every kit is checked against the table
    first, then each kit's row changes only if its row_version is still the one read (or the one
    the person saw), else nothing of the caller's transaction stays (Conflict). One audit event
    per kit, as `move` writes. `also`: further columns every kit takes in the same UPDATE (the
    blinded lot at packaging, the site at receipt), written into the kit objects as stored.

    Core statements, not the ORM's bulk update: that one re-evaluates its WHERE clause against
    every object in the session for each statement (20 s for a 500-kit run)."""
    rule = _rule(actor, name)
    kits_ = list({saved_id(kit): kit for kit in kits_}.values())  # each kit once
    if not kits_:
        return
    for kit in kits_:
        if why := _refusal(kit, name):
            raise InvalidInput(why, field="action")
    session.flush()  # anything pending on these kits goes first, in order
    on_visit = _on_a_visit(session, [saved_id(k) for k in kits_]) if rule.target is None else set()
    now = utcnow()
    changes: list[tuple[Kit, KitState, KitState, dict]] = []
    for kit in kits_:
        old = KitState(kit.state)
        values: dict = dict(also or {})
        if rule.target is KitState.quarantined:
            new = KitState.quarantined
            # a kit held on receipt returns to the site's stock, not to "in transit", when released
            if name == "receive_into_quarantine":
                travelled = KitState(kit.state_before_quarantine) if old is KitState.quarantined else old
                before = _ARRIVES_AS.get(travelled, KitState.at_site)
            else:
                before = KitState(kit.state_before_quarantine) if old is KitState.quarantined else old
            values["state_before_quarantine"] = before.value
            # a kit already held by a kit quarantine stays in it; one held on receipt joins this one
            values["quarantine_id"] = (kit.quarantine_id if old is KitState.quarantined and kit.quarantine_id
                                       else quarantine_id)
        elif rule.target is None:
            new = _after_quarantine(kit, on_visit)
            values["state_before_quarantine"], values["quarantine_id"] = None, None
        else:
            new = rule.target
            if old is KitState.quarantined:
                values["state_before_quarantine"] = None  # it left the quarantine some other way
        if new is KitState.packaged:
            values["packaged_at"] = now
        if name in LEAVES_STORAGE:
            values["storage_location_id"] = None
        values["state"] = new.value
        changes.append((kit, old, new, values))

    # one UPDATE per set of new values; each row only at the version read
    groups: dict[tuple, list[tuple[Kit, int]]] = defaultdict(list)
    for kit, _old, _new, values in changes:
        expected = kit.row_version if seen_versions is None else seen_versions.get(saved_id(kit), kit.row_version)
        groups[tuple(sorted(values.items(), key=lambda item: item[0]))].append((kit, int(expected)))
    conn = session.connection()
    for items, members in groups.items():
        for start in range(0, len(members), _CHUNK):
            part = members[start:start + _CHUNK]
            statement = (_KIT.update()
                         .where(tuple_(_KIT.c.id, _KIT.c.row_version).in_([(kit.id, v) for kit, v in part]))
                         .values({**dict(items), "row_version": _KIT.c.row_version + 1}).returning(_KIT.c.id))
            changed = set(conn.execute(statement).scalars())
            if len(changed) != len(part):
                stale = next(kit for kit, _v in part if kit.id not in changed)
                raise Conflict(f"Someone else acted on kit {stale.number} at the same moment. Reload and check it.",
                               field="kit_version")
    counted = [(kit_counts.key_of(kit.study_id, kit.site_id, kit.blinded_lot_id, old),
                kit_counts.key_of(kit.study_id, values.get("site_id", kit.site_id),
                                  values.get("blinded_lot_id", kit.blinded_lot_id), new))
               for kit, old, new, values in changes]
    unpackaged = [(unpackaged_counts.key_of(kit.study_id, kit.site_id, kit.blinded_lot_id, old),
                   unpackaged_counts.key_of(kit.study_id, values.get("site_id", kit.site_id),
                                            values.get("blinded_lot_id", kit.blinded_lot_id), new))
                  for kit, old, new, values in changes]
    shelved = [(storage_counts.key_of(kit.storage_location_id, old),
                storage_counts.key_of(values.get("storage_location_id", kit.storage_location_id), new))
               for kit, old, new, values in changes]
    for kit, _old, _new, values in changes:
        # the kit objects take what the rows now hold, without another read or UPDATE
        version = (seen_versions or {}).get(saved_id(kit), kit.row_version) + 1
        for key, value in values.items():
            set_committed_value(kit, key, value)
        set_committed_value(kit, "row_version", version)
    action = f"kit {words(name)}"
    events: list[audit.Change] = [(actor, action, "kit", kit.number, {"field": "state", "old": state_label(old),
                                                                      "new": state_label(new), "reason": reason})
                                  for kit, old, new, _values in changes]
    if len(events) == 1:  # signs the head once a transaction (checkpoints.head), where record_all signs each call
        audit.record(session, *events[0][:4], **events[0][4])
    else:  # the head locked, moved and signed once, the events inserted in one statement: not three a kit
        audit.record_all(session.connection(), events)
    kit_counts.apply(session, counted)  # written before commit, after the audit events: see kit_counts
    storage_counts.apply(session, shelved)
    unpackaged_counts.apply(session, unpackaged)
    if places := {(kit.study_id, kit.site_id) for kit, old, new, _values in changes
                  if kit.site_id is not None and {old, new} & SITE_STOCK}:
        note_stock(session, places, f"kit {words(name)}")


def issue(session: Session, actor: Actor, study: Study, numbers: Sequence[str], *, reason: str) -> None:
    """Kits come into being when their kit list is sealed: every one planned, in number order
    (random, so it says nothing), one audit event each. Core statements: a list holds up to 10,000
    kits, and one ORM flush per kit took seconds."""
    now = utcnow()
    location = Kit.model_fields["location"].default
    session.execute(insert(Kit), [{"number": number, "study_id": study.id, "state": KitState.planned.value,
                                   "location": location, "created_at": now, "row_version": 1} for number in numbers])
    unpackaged_counts.issued(session, saved_id(study), len(numbers), KitState.planned)
    planned = state_label(KitState.planned)
    for number in numbers:
        audit.record(session, actor, "kit number issued", "kit", number, field="state", new=planned, reason=reason)


def release_finally(session: Session, actor: Actor, kits_: Sequence[Kit], *, reason: str) -> int:
    """The last lot of these kits is finally certified (two-step release): each kit awaiting final
    release is released where it is, in the caller's transaction; a kit held meanwhile (its
    shipment held on receipt) goes back to the released state of where it was. Returns how many."""
    moved = 0
    for name, group in by_move(sorted(kits_, key=lambda kit: kit.number), FINAL_RELEASE).items():
        move_many(session, actor, group, name, reason=reason)
        moved += len(group)
    released_as = {source: MOVES[name].target for name in FINAL_RELEASE for source in MOVES[name].sources}
    for kit in kits_:
        before = KitState(kit.state_before_quarantine) if kit.state_before_quarantine else None
        if KitState(kit.state) is KitState.quarantined and before in released_as:
            after = released_as[before]
            assert after is not None, "a final release names its target"
            kit.state_before_quarantine = after.value
            kit.row_version += 1
            session.flush()
            audit.record(session, actor, "kit finally released while held", "kit", kit.number,
                         field="state_before_quarantine", old=state_label(before), new=state_label(after),
                         reason=reason)
            moved += 1
    return moved
