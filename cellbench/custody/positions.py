"""Storage positions at a site: boxes in the racks of a site's tanks, each with numbered positions,
and the position each kit is put in, by scanning: the box's label, then the kit (the next free
position, or one typed). Used by the one-pass receipt (`receipt.receive_into_box`) and by moves
between positions (`move`).

The blind: a position is chosen by what the pharmacist scans, in the order scanned, and never by
anything about the kit; nothing here reads an arm, and a position reads the same for both arms.

A kit's position row stays where the kit was put; it holds the kit only while the kit is still on
that box's tank (kit.storage_location_id, which every move taking a kit off its shelf clears:
kits.LEAVES_STORAGE). A row left behind by a kit that has gone (dispensed, returned, destroyed) is
cleared, audited, when someone fills its position again. One row per position (a unique
constraint): two people filling one position at the same moment, one gets a conflict.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, inputs, kits, storage_counts, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Kit, KitPosition, KitState, Site, StorageBox, StorageLocation
from .events import claim_kit, fetch, key, record, relocate
from .lifecycle import KEEPERS, RECEIVERS
from .storage import STORABLE_AT_SITE, location_by_code

BOX_PREFIX = "BOX-"
MAX_CAPACITY = 100  # positions in one box: a 10 x 10 cryobox is the largest in use
RACK_LENGTH = 16


@dataclass(frozen=True)
class Position:
    """Where a kit is: the same words for both arms."""

    site: str
    tank: str
    rack: str
    box: str
    position: int

    @property
    def text(self) -> str:
        """'Tank 1 · rack A · box BOX-RH-ENT-001 · position 12' (tank, rack, box, position)."""
        return f"{self.tank} · rack {self.rack} · box {self.box} · position {self.position}"

    @property
    def place(self) -> str:
        """The kit's readable location, with its site first (as storage.place_name writes it)."""
        return f"{self.site} · {self.text}"

    def as_json(self) -> dict:
        return {"site": self.site, "tank": self.tank, "rack": self.rack, "box": self.box, "position": self.position,
                "text": self.text}


# --- boxes -----------------------------------------------------------------------------------------------


def is_box_code(code: str | None) -> bool:
    """A box label's code (or a box code typed), as opposed to a kit's label or number."""
    return (code or "").strip().upper().startswith(BOX_PREFIX)


def box_by_code(session: Session, code: str | None, *, field: str = "box", reader: Actor | None = None) -> StorageBox:
    """The box a scanned or typed box code names; for a `reader` of other sites, as missing as none."""
    text_ = (code or "").strip().upper()
    if not text_:
        raise InvalidInput("Scan the box's label, or type its code.", field=field)
    box = session.scalars(select(StorageBox).where(col(StorageBox.code) == text_)).first()
    if box is None or not box.active or (reader is not None and not users.sees(reader, box.site_id, None)):
        raise NotFound(f"No box '{text_}'.", field=field)
    return box


def target_of(code: str | None, typed_position: object = None, *, field: str = "box") -> tuple[str, str | None]:
    """A scanned target: 'BOX-RH-ENT-001' (the next free position) or 'BOX-RH-ENT-001/12', and a
    position typed beside it. Returns the box code and the position as given (checked later,
    against the box's size)."""
    text_ = (code or "").strip().upper()
    if not is_box_code(text_):
        raise InvalidInput("Scan a box label (its code starts with BOX-).", field=field)
    box_code, _slash, scanned = text_.partition("/")
    typed = ("" if typed_position is None else str(typed_position)).strip()
    if scanned and typed and scanned.strip() != typed:
        raise InvalidInput(f"The label says position {scanned.strip()} and {typed} was typed: give one.",
                           field="position")
    return box_code.strip(), (scanned.strip() or typed or None)


def _box_code(session: Session, site: Site) -> str:
    made = session.scalar(select(func.count()).select_from(StorageBox).where(col(StorageBox.site_id) == site.id)) or 0
    return f"{BOX_PREFIX}{site.code}-{made + 1:03d}"


def add_box(session: Session, actor: Actor, *, location_code: str | None, rack: str | None,
            capacity: object) -> StorageBox:
    """A new box in a rack of a site's tank; its code is made here and printed on its label."""
    users.require_role(actor, *KEEPERS)
    tank = location_by_code(session, location_code)
    if tank.site_id is None:
        raise InvalidInput("Boxes with positions are for a site's tanks; the cell bench keeps its kits by tank.",
                           field="location")
    users.require_scope(actor, tank.site_id, None, field="location")
    rack = inputs.text(rack, "rack", "rack", RACK_LENGTH)
    size = inputs.whole(capacity, "capacity", "number of positions in the box", minimum=1, maximum=MAX_CAPACITY)
    site = fetch(session, Site, tank.site_id, "site")
    box = StorageBox(code=_box_code(session, site), site_id=key(site), storage_location_id=key(tank), rack=rack,
                     capacity=size, created_by=actor.user_id, created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(box)
            session.flush()
    except IntegrityError:
        raise Conflict("Someone else added a box at this site at the same moment. Add it again.",
                       field="location") from None
    # the box belongs to its tank: its record is on the tank's trail, which the site's people read
    audit.record(session, actor, "storage box added", "storage_location", tank.code, field="box",
                 new={"box": box.code, "rack": rack, "positions": size})
    return box


def boxes(session: Session, reader: Actor) -> list[tuple[StorageBox, StorageLocation]]:
    """The active boxes of the sites the reader sees, with their tanks, by code."""
    query = (select(StorageBox, StorageLocation).join(StorageLocation,
                                                      col(StorageLocation.id) == col(StorageBox.storage_location_id))
             .where(col(StorageBox.active).is_(True)))
    query = users.within(query, reader, site=col(StorageBox.site_id))
    return [(box, tank) for box, tank in session.execute(query.order_by(col(StorageBox.code)))]


def position(session: Session, box: StorageBox, number: int) -> Position:
    tank = fetch(session, StorageLocation, box.storage_location_id, "storage location")
    site = fetch(session, Site, box.site_id, "site")
    return Position(site.code, tank.name, box.rack, box.code, number)


# --- who is where ----------------------------------------------------------------------------------------


_HELD = (select(col(KitPosition.position), col(Kit.number))
         .join(Kit, col(Kit.id) == col(KitPosition.kit_id))
         .join(StorageBox, col(StorageBox.id) == col(KitPosition.box_id))
         .where(col(Kit.storage_location_id) == col(StorageBox.storage_location_id)))


def occupants(session: Session, box: StorageBox) -> dict[int, str]:
    """position -> the kit number in it now."""
    return dict(session.execute(_HELD.where(col(KitPosition.box_id) == box.id)).all())


def filled(session: Session, box_ids: list[int]) -> dict[int, int]:
    """box id -> positions filled now."""
    if not box_ids:
        return {}
    rows = session.execute(_HELD.with_only_columns(col(KitPosition.box_id), func.count())
                           .where(col(KitPosition.box_id).in_(box_ids)).group_by(col(KitPosition.box_id)))
    return dict(rows.all())


def position_of(session: Session, kit: Kit) -> Position | None:
    """Where the kit is now, or None (not in a box: in transit, not yet put away, or handed out).
    A kit scanned into a box at receipt is there from that scan on."""
    row = session.execute(select(StorageBox, col(KitPosition.position))
                          .join(KitPosition, col(KitPosition.box_id) == col(StorageBox.id))
                          .where(col(KitPosition.kit_id) == kit.id)).first()
    if row is None or kit.storage_location_id != row[0].storage_location_id:
        return None
    return position(session, row[0], row[1])


def position_of_number(session: Session, kit_number: str | None) -> Position | None:
    """position_of for a kit number (a visit's assigned kit): None for no kit."""
    kit = session.scalars(select(Kit).where(col(Kit.number) == kit_number)).first() if kit_number else None
    return position_of(session, kit) if kit else None


def not_put_away(session: Session, reader: Actor) -> list[Kit]:
    """Kits in a site's stock that are in no tank: received without a position, or back from a
    visit. The storage page lists them as "not yet put away"."""
    held = sorted(state.value for state in STORABLE_AT_SITE)
    # Found along the (storage location, state) index: a few probes of (NULL, state), as many rows
    # as there are kits to put away. Ordered by the index's columns, because SQLite's statistics
    # see three location values among 100,000 kits and would otherwise read every kit (160 ms at
    # ten years, for none found); the kits are then read by id, in number order.
    found = (select(col(Kit.id)).where(col(Kit.storage_location_id).is_(None), col(Kit.state).in_(held),
                                       col(Kit.site_id).is_not(None))
             .order_by(col(Kit.storage_location_id), col(Kit.state)))
    ids = list(session.scalars(users.within(found, reader, site=col(Kit.site_id), study=col(Kit.study_id))))
    if not ids:
        return []
    return list(session.scalars(select(Kit).where(col(Kit.id).in_(ids)).order_by(col(Kit.number))))


# --- putting a kit in a position ----------------------------------------------------------------------------


def _number(box: StorageBox, wanted: str | None, taken: dict[int, str]) -> int:
    if wanted is None:
        free = next((n for n in range(1, box.capacity + 1) if n not in taken), None)
        if free is None:
            raise InvalidInput(f"Box {box.code} is full ({box.capacity} positions): scan another box's label.",
                               field="box")
        return free
    return inputs.whole(wanted, "position", f"position in box {box.code}", minimum=1, maximum=box.capacity)


def place(session: Session, actor: Actor, kit: Kit, box: StorageBox, wanted: str | None, *, action: str,
          shipment_id: int | None = None) -> Position:
    """Put the kit into the box: in the position wanted, or the box's first free one. One custody
    event naming the position, the kit's new place (audited) and the position's own audit event,
    in the caller's transaction. The caller has checked that the kit may be put there."""
    users.require_role(actor, *RECEIVERS)
    users.require_scope(actor, box.site_id, kit.study_id, field="box")
    taken = occupants(session, box)
    number = _number(box, wanted, taken)
    holder = taken.get(number)
    if holder == kit.number:
        raise InvalidInput(f"Kit {kit.number} is already in position {number} of box {box.code}.", field="position")
    if holder is not None:
        raise Conflict(f"Position {number} of box {box.code} holds kit {holder}: choose another position.",
                       field="position")
    where = position(session, box, number)
    _clear_left_behind(session, actor, box, number)
    row = session.get(KitPosition, kit.id)
    was = _words(session, row) if row else None
    try:
        with session.begin_nested():
            if row is None:
                session.add(KitPosition(kit_id=key(kit), box_id=key(box), position=number, placed_by=actor.user_id,
                                        placed_at=utcnow()))
            else:
                row.box_id, row.position, row.placed_by, row.placed_at = key(box), number, actor.user_id, utcnow()
            session.flush()
    except IntegrityError:
        raise Conflict(f"Someone else filled position {number} of box {box.code} at the same moment. Scan the kit "
                       "again.", field="position") from None
    came_from, shelf = kit.location, kit.storage_location_id
    kit.storage_location_id = box.storage_location_id
    relocate(session, actor, kit, where.place)
    record(session, actor, kit, action, from_place=came_from, to_place=where.place[:200], shipment_id=shipment_id)
    audit.record(session, actor, f"kit {action}", "kit", kit.number, field="position",
                 old=was, new=where.text)
    session.flush()
    storage_counts.moved(session, kit, shelf)  # after the audit events: see storage_counts
    return where


def _words(session: Session, row: KitPosition) -> str:
    return position(session, fetch(session, StorageBox, row.box_id, "box"), row.position).text


def _clear_left_behind(session: Session, actor: Actor, box: StorageBox, number: int) -> None:
    """The position's row of a kit that has left the tank since (not an occupant): cleared, audited."""
    stale = session.execute(select(KitPosition, col(Kit.number)).join(Kit, col(Kit.id) == col(KitPosition.kit_id))
                            .where(col(KitPosition.box_id) == box.id, col(KitPosition.position) == number,
                                   or_(col(Kit.storage_location_id).is_(None),
                                       col(Kit.storage_location_id) != box.storage_location_id))).first()
    if stale is None:
        return
    row, number_ = stale
    audit.record(session, actor, "kit position cleared", "kit", number_, field="position",
                 old=_words(session, row), reason="the kit had left the tank; its position is filled again")
    session.delete(row)
    session.flush()


# --- moves between positions --------------------------------------------------------------------------------


def move(session: Session, actor: Actor, code: str | None, target: str | None, secret_key: str, *,
         typed_position: object = None, seen_version: int | None = None) -> tuple[Kit, Position]:
    """Move a kit of a site's stock by scan: the kit's label, then the target box's label (the next
    free position) or a position typed beside it. Also how a kit not yet put away is put away."""
    users.require_role(actor, *RECEIVERS)
    box_code, wanted = target_of(target, typed_position)
    kit = kits.scan_code(session, code, secret_key, reader=actor, manual_allowed=False)
    box = box_by_code(session, box_code, reader=actor)
    if kit.site_id != box.site_id or KitState(kit.state) not in STORABLE_AT_SITE:
        site = fetch(session, Site, box.site_id, "site")
        raise InvalidInput(f"Kit {kit.number} is not in stock at {site.code} ({kit.location}; "
                           f"{kits.state_label(kit.state).lower()}).", field="code")
    claim_kit(session, kit, seen_version)
    action = "moved" if position_of(session, kit) else "put away"
    return kit, place(session, actor, kit, box, wanted, action=action)
