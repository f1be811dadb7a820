"""Storage locations: the tanks and freezers at the cell bench and at the sites, and kits put
away in them under a readable name. Boxes and positions within a site's tanks are `positions`."""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, inputs, kits, storage_counts, users
from ..audit import Actor
from ..errors import Forbidden, InvalidInput, NotFound
from ..models import Kit, KitPosition, KitState, Role, Site, StorageLocation
from .events import claim_kit, fetch, record, relocate
from .lifecycle import KEEPERS, RECEIVERS

CELL_BENCH = "Cell bench"
LOCATION_KINDS = ("tank", "freezer")
# Where a kit may be put away: states in which it is physically in that place's hands.
STORABLE_AT_BENCH = frozenset({KitState.packaged, KitState.released, KitState.awaiting_release, KitState.quarantined,
                               KitState.withdrawn, KitState.damaged})
STORABLE_AT_SITE = frozenset({KitState.at_site, KitState.site_awaiting_release, KitState.allocated,
                              KitState.quarantined, KitState.withdrawn, KitState.returned, KitState.damaged})


def site_by_code(session: Session, code: str | None, *, field: str = "site") -> Site:
    text_ = (code or "").strip().upper()
    if not text_:
        raise InvalidInput("Choose a site.", field=field)
    site = session.scalars(select(Site).where(col(Site.code) == text_)).first()
    if site is None:
        raise NotFound(f"No site '{text_}'.", field=field)
    return site


def place_name(session: Session, location: StorageLocation) -> str:
    """How a kit's location reads: 'RH-ENT · Freezer 1', 'Cell bench · Tank 2'."""
    where = fetch(session, Site, location.site_id, "site").code if location.site_id else CELL_BENCH
    return f"{where} · {location.name}"[:100]


def stored_counts(session: Session, location_ids: list[int] | None = None) -> dict[int, int]:
    """storage location id -> kits in it now (a dispensed or shipped kit has left its tank), from
    the running counts (storage_counts): a few rows a location, whatever the number of kits."""
    return storage_counts.held(session, STORABLE_AT_BENCH | STORABLE_AT_SITE, location_ids)


def site_pharmacy(site: Site) -> str:
    return f"{site.code} · pharmacy"


def storage_places(session: Session, reader: Actor) -> list[Site | None]:
    """The places whose storage a reader sees (None: the cell bench): every place for a global
    reader; a site role its own sites only. The bench's tanks serve no site flow (a site stores
    into its own tanks only, `store`), so they stay the supply manager's business."""
    sites = session.scalars(users.within(select(Site).order_by(col(Site.code)), reader, site=col(Site.id)))
    return ([None] if reader.sites is None else []) + list(sites)


def locations(session: Session, site: Site | None, *, everywhere: bool = False,
              reader: Actor | None = None) -> list[StorageLocation]:
    """Active storage locations of a site (None: the cell bench), or of every place; with a
    `reader`, only those of the places it sees (storage_places)."""
    query = select(StorageLocation).where(col(StorageLocation.active).is_(True))
    if reader is not None:
        query = users.within(query, reader, site=col(StorageLocation.site_id))
    if not everywhere:
        query = query.where(col(StorageLocation.site_id).is_(None) if site is None
                            else col(StorageLocation.site_id) == site.id)
    # the cell bench first on every engine (SQLite sorts NULL first, PostgreSQL last)
    return list(session.scalars(query.order_by(col(StorageLocation.site_id).is_not(None), col(StorageLocation.site_id),
                                               col(StorageLocation.code))))


def location_by_code(session: Session, code: str | None, *, field: str = "location") -> StorageLocation:
    text_ = (code or "").strip().upper()
    if not text_:
        raise InvalidInput("Choose a storage location.", field=field)
    row = session.scalars(select(StorageLocation).where(col(StorageLocation.code) == text_)).first()
    if row is None or not row.active:
        raise NotFound(f"No storage location '{text_}'.", field=field)
    return row


def add_location(session: Session, actor: Actor, *, site_code: str | None, code: str | None, name: str | None,
                 kind: str | None) -> StorageLocation:
    """A tank or freezer at the cell bench (site_code empty) or at a site."""
    users.require_role(actor, *KEEPERS)
    site = site_by_code(session, site_code) if (site_code or "").strip() else None
    if site is None and Role.supply_manager not in actor.roles:
        raise Forbidden("Only the supply manager adds storage at the cell bench.")
    users.require_scope(actor, site, None)
    code = inputs.text(code, "code", "location code", 64).upper()
    name = inputs.text(name, "name", "location name", 60)
    kind = (kind or "").strip().lower()
    if kind not in LOCATION_KINDS:
        raise InvalidInput(f"Choose a kind: {', '.join(LOCATION_KINDS)}.", field="kind")
    if session.scalars(select(col(StorageLocation.id)).where(col(StorageLocation.code) == code)).first() is not None:
        raise InvalidInput(f"There is already a storage location {code}.", field="code")
    row = StorageLocation(site_id=site.id if site else None, code=code, name=name, kind=kind)
    session.add(row)
    session.flush()
    audit.record(session, actor, "storage location added", "storage_location", code,
                 new={"place": site.code if site else CELL_BENCH, "name": name, "kind": kind})
    return row


def store(session: Session, actor: Actor, kit: Kit, location_code: str | None, *,
          seen_version: int | None = None) -> StorageLocation:
    """Put a kit away in a tank or freezer of the place where it is."""
    location = location_by_code(session, location_code)
    state = KitState(kit.state)
    if location.site_id is None:
        users.require_role(actor, Role.supply_manager)
        if kit.site_id is not None or state not in STORABLE_AT_BENCH:
            raise InvalidInput(f"Kit {kit.number} is not at the cell bench ({kit.location}).", field="code")
    else:
        users.require_role(actor, *RECEIVERS)
        # the pharmacist's own sites' tanks only; the kit must be in stock there (below)
        users.require_scope(actor, location.site_id, kit.study_id, field="location")
        if kit.site_id != location.site_id or state not in STORABLE_AT_SITE:
            site = fetch(session, Site, location.site_id, "site")
            raise InvalidInput(f"Kit {kit.number} is not in stock at {site.code} ({kit.location}; "
                               f"{kits.state_label(state).lower()}).", field="code")
    if kit.storage_location_id == location.id:
        raise InvalidInput(f"Kit {kit.number} is already in {location.name}.", field="location")
    claim_kit(session, kit, seen_version)
    old, shelf = kit.location, kit.storage_location_id
    kit.storage_location_id = location.id
    # out of its box, if it was in one: the move's audit event names the position it left (old)
    if (position := session.get(KitPosition, kit.id)) is not None:
        session.delete(position)
    place = place_name(session, location)
    relocate(session, actor, kit, place)
    record(session, actor, kit, "stored", from_place=old, to_place=place)
    session.flush()
    storage_counts.moved(session, kit, shelf)  # after the audit events: see storage_counts
    return location
