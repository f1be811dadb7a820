"""Kits as blinded people read them: by number or label scan, one kit's view and history, pages
of kits, counts by state and the blinded lots. The same for an active and a placebo kit in the
same situation: nothing here reads an arm."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlmodel import Session, col

from .. import audit, kit_counts, pagination, users
from ..audit import Actor
from ..errors import InvalidInput, NotFound
from ..identifiers import parse_kit_number, shown
from ..models import BlindedLot, Kit, KitCount, KitState, PlaceCount, Role, Study, UnpackagedCount
from .codes import KitCode, read_code
from .lifecycle import state_label

# Who may look at kits at all (blinded views): supply and QA at the bench, the site roles.
READERS = frozenset({Role.supply_manager, Role.qa, Role.qp, Role.pharmacist, Role.preparer, Role.investigator,
                     Role.monitor})


def kit_number_refusal(text: str | None, error: ValueError) -> str:
    """identifiers.parse_kit_number's reason as one sentence. Its reasons already begin with the
    kit number as typed ("kit number 'X' has 4 characters; ..."): it is said once, not twice."""
    typed = (text or "").strip()
    if not typed:
        return "Enter or scan a kit number."
    message = str(error).strip().rstrip(".")
    if not message.lower().startswith("kit number"):
        message = f"kit number {shown(typed)!r}: {message}"
    return f"{message[0].upper()}{message[1:]}."


def by_number(session: Session, text: str | None, *, field: str = "kit_number", reader: Actor | None = None) -> Kit:
    """The kit; for a `reader` of other sites or studies (a site role), a kit at another site or
    of another study is as missing as a number never issued (users.sees_kit)."""
    try:
        number = parse_kit_number(text or "")
    except ValueError as error:
        raise InvalidInput(kit_number_refusal(text, error), field=field) from None
    kit = session.scalars(select(Kit).where(col(Kit.number) == number)).first()
    if kit is None or (reader is not None and not users.sees_kit(reader, kit.site_id, kit.study_id)):
        raise NotFound(f"No kit {number} in cellbench.", field=field)
    return kit


def scan(session: Session, code: str | None, secret_key: str, *, reader: Actor | None = None,
         manual: object = False, reason: str | None = None, manual_allowed: bool = True) -> Kit:
    """A scanned label code, or a kit number marked as typed by hand with its reason (codes.read_code):
    the kit, or a refusal that says why."""
    return scanned(session, code, secret_key, reader=reader, manual=manual, reason=reason,
                   manual_allowed=manual_allowed)[0]


def scanned(session: Session, code: str | None, secret_key: str, *, reader: Actor | None = None,
            manual: object = False, reason: str | None = None, manual_allowed: bool = True) -> tuple[Kit, KitCode]:
    """The kit and how it was read (a door records a typed entry as such). An unknown kit is bad
    input to the scan field (422, field `code`) like a forged label, not a missing page."""
    entry = read_code(code, secret_key, manual=manual, reason=reason, manual_allowed=manual_allowed)
    try:
        return by_number(session, entry.number, field="code", reader=reader), entry
    except NotFound as missing:
        raise InvalidInput(missing.message, field="code") from None


def scan_code(session: Session, code: str | None, secret_key: str, *, reader: Actor | None = None,
              manual: object = False, reason: str | None = None, manual_allowed: bool = True) -> Kit:
    """The kit a scan field's input stands for, for pages and API alike (kits.scan)."""
    return scan(session, code, secret_key, reader=reader, manual=manual, reason=reason, manual_allowed=manual_allowed)


def blinded_lot_of(session: Session, kit: Kit) -> BlindedLot | None:
    return session.get(BlindedLot, kit.blinded_lot_id) if kit.blinded_lot_id else None


@dataclass(frozen=True)
class KitView:
    """Everything a blinded role may know about a kit; the same shape for both arms."""

    number: str
    study: str
    blinded_lot: str | None
    expiry: date | None
    state: str
    state_label: str
    location: str
    row_version: int

    def as_json(self) -> dict:
        return {"kit_number": self.number, "study": self.study, "blinded_lot": self.blinded_lot,
                "expiry": self.expiry.isoformat() if self.expiry else None, "state": self.state,
                "state_label": self.state_label, "location": self.location, "kit_version": self.row_version}


def view(session: Session, kit: Kit) -> KitView:
    return views(session, [kit])[0]


def views(session: Session, rows: list[Kit]) -> list[KitView]:
    """The views of a page of kits: their studies and blinded lots read once for the page, not once a kit."""
    study_ids = {kit.study_id for kit in rows}
    lot_ids = {kit.blinded_lot_id for kit in rows if kit.blinded_lot_id}
    found = {s.id: s for s in session.scalars(select(Study).where(col(Study.id).in_(study_ids)))} if rows else {}
    lots = {b.id: b for b in session.scalars(select(BlindedLot).where(col(BlindedLot.id).in_(lot_ids)))} \
        if lot_ids else {}
    shown = []
    for kit in rows:
        study, blinded = found.get(kit.study_id), lots.get(kit.blinded_lot_id) if kit.blinded_lot_id else None
        if study is None:
            raise NotFound(f"Kit {kit.number} names no study.", field="study")
        shown.append(KitView(kit.number, study.code, blinded.code if blinded else None,
                             blinded.expiry if blinded else None, KitState(kit.state).value, state_label(kit.state),
                             kit.location, kit.row_version))
    return shown


def history(session: Session, actor: Actor, kit: Kit) -> list:
    """The kit's own audit events this viewer may see (blinded viewers: never an unblinded one)."""
    return audit.history(session, actor, "kit", kit.number)


# Kit-number order: numbers are random, so the order says nothing of arms. Not the id: ids follow the
# order kits were issued in (number order today, kits.issue), which is the issuer's choice, not a rule
# of the blind; the number is arm-independent by construction, and it is unique.
KIT_ORDER = pagination.Order("kits", (col(Kit.number),))


def kits(session: Session, ask: pagination.Ask, *, study: Study | None = None, state: str | None = None,
         blinded_lot: BlindedLot | None = None, reader: Actor | None = None) -> pagination.Page[Kit]:
    """A page of kits in kit-number order; a `reader`'s sites and studies only, when one is given."""
    query = select(Kit)
    if reader is not None:
        query = users.within(query, reader, site=col(Kit.site_id), study=col(Kit.study_id), bench_too=True)
    if study is not None:
        query = query.where(col(Kit.study_id) == study.id)
    if state:
        if state not in {s.value for s in KitState}:
            raise InvalidInput(f"Unknown kit state '{state}'.", field="state")
        query = query.where(col(Kit.state) == state)
    if blinded_lot is not None:
        query = query.where(col(Kit.blinded_lot_id) == blinded_lot.id)
    return pagination.page(session, query, KIT_ORDER, ask)


def counts_by_state(session: Session, *, study: Study | None = None, blinded_lot: BlindedLot | None = None,
                    reader: Actor | None = None) -> dict[str, int]:
    """Kits by state, read from the running counts (kit_counts: a few rows a blinded lot and place,
    whatever the number of kits), plus the kits not yet in a blinded lot, from their own running
    counts (unpackaged_counts: a few rows a study). Neither holds an arm: the counts of a blinded
    lot, or of a kit list, are those of both arms together."""
    # over every blinded lot, their sums by place and state (place_counts.py): a dozen rows a place
    tables: list[type[KitCount] | type[PlaceCount] | type[UnpackagedCount]] = (
        [KitCount] if blinded_lot is not None else [PlaceCount, UnpackagedCount])
    found: Counter[str] = Counter()
    for table in tables:
        kept = select(col(table.state), func.sum(col(table.kits))).group_by(col(table.state))
        if reader is not None:
            kept = kept.where(*kit_counts.within(reader, col(table.place), col(table.study_id)))
        if study is not None:
            kept = kept.where(col(table.study_id) == study.id)
        if blinded_lot is not None:
            kept = kept.where(col(KitCount.blinded_lot_id) == blinded_lot.id)
        found.update({str(state): int(n) for state, n in session.execute(kept) if n})
    return {KitState(state).value: n for state, n in sorted(found.items()) if n}


# Newest blinded lot first (by id): a blinded lot holds both arms, so the order follows no arm.
BLINDED_LOT_ORDER = pagination.Order("blinded lots", (col(BlindedLot.id),), newest_first=True)


@dataclass(frozen=True)
class BlindedLotListing:
    """A page of a study's blinded lots (blinded_lot_rows' rows) with what holds over all of them."""

    page: pagination.Page[tuple[BlindedLot, int, list[tuple]]]
    blinded_lots: int  # how many the study has
    kits_by_state: dict[str, int]  # the study's kits by state, every blinded lot's


def _rows_of_lots(session: Session, lots: list[BlindedLot], *, every_lot_of: Study | None = None,
                  every_lot: bool = False) -> list[tuple[BlindedLot, int, list[tuple]]]:
    """Each of these blinded lots with its kit count and its kits by state, from one read of their
    running counts: by the counters' blinded-lot index for a page, by study when `lots` are all of
    `every_lot_of`'s (all there are when `every_lot`)."""
    by_lot: dict[int, dict[str, int]] = {}
    kept = select(col(KitCount.blinded_lot_id), col(KitCount.state), func.sum(col(KitCount.kits)))
    if every_lot_of is not None:
        kept = kept.where(col(KitCount.study_id) == every_lot_of.id)
    elif not every_lot:
        kept = kept.where(col(KitCount.blinded_lot_id).in_([b.id for b in lots]))
    if lots:
        for lot_id, state, n in session.execute(kept.group_by(col(KitCount.blinded_lot_id), col(KitCount.state))):
            if n:
                by_lot.setdefault(lot_id, {})[KitState(state).value] = int(n)
    rows = []
    for blinded in lots:
        counts = by_lot.get(blinded.id or 0, {})
        rows.append((blinded, sum(counts.values()),
                     [(state.value, state_label(state), counts[state.value]) for state in KitState
                      if counts.get(state.value)]))
    return rows


def blinded_lot_page(session: Session, ask: pagination.Ask, study: Study) -> BlindedLotListing:
    """A page of the study's blinded lots, newest first, with their kits by state; the number of
    blinded lots and the study's kits by state over all of them (aggregates, not rows)."""
    found = pagination.page(session, select(BlindedLot).where(col(BlindedLot.study_id) == study.id),
                            BLINDED_LOT_ORDER, ask)
    number = session.scalar(select(func.count()).select_from(BlindedLot).where(col(BlindedLot.study_id) == study.id))
    return BlindedLotListing(pagination.Page(_rows_of_lots(session, found.rows), found.next, found.first),
                             number or 0, counts_by_state(session, study=study))


def blinded_lot_rows(session: Session, study: Study | None) -> list[tuple[BlindedLot, int, list[tuple]]]:
    """Each blinded lot of the study with its kit count and its kits by state (value, blinded label,
    count), in code order."""
    return _rows_of_lots(session, blinded_lots(session, study), every_lot_of=study, every_lot=study is None)


def blinded_lot_by_code(session: Session, code: str | None, *, field: str = "blinded_lot") -> BlindedLot:
    row = session.scalars(select(BlindedLot).where(col(BlindedLot.code) == (code or "").strip().upper())).first()
    if row is None:
        raise NotFound(f"No blinded lot '{(code or '').strip()}'.", field=field)
    return row


def blinded_lots(session: Session, study: Study | None = None) -> list[BlindedLot]:
    query = select(BlindedLot).order_by(col(BlindedLot.code))
    if study is not None:
        query = query.where(col(BlindedLot.study_id) == study.id)
    return list(session.scalars(query))


def require_reader(actor: Actor) -> None:
    users.require_role(actor, *READERS)
