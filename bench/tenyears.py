"""Ten years of a two-site, two-trial manufacturer, for bench/pages.py.

How it is made (and what is not real about it):

1. The demo (`cellbench.demo.seed`), through the service layer: users, specifications, both studies
   at both sites, 16 lots with their batch records, QC and release, 72 kits, shipments, 17
   participants with their visits, a destruction, an unblinding: every kind of row a page shows.
2. Cloned at the row level (NOT through the service layer, which would take hours): the
   manufacturing world (each lot with its steps, values, materials, equipment, vials, QC results,
   decisions, reviews and lot-only deviations) `lot_copies` times, and the supply and trial world
   (blinded lots, kits, their quarantines, packaging and label runs, shipments with their logger
   readings, custody, destructions, reconciliations, participants, visits, preparation,
   administration, unblindings, resupply proposals, the sealed kit arms, draws and the
   allocations of the participants) `trial_copies` times. Each copy has new ids, new public
   numbers (lot, kit, shipment, deviation, blinded lot, participant... in the formats the app
   issues) and its dates moved back, so the copies spread over ten years; rows inside a copy point
   at each other, so a copy's counts agree with its rows (a visit's kit is its copy's kit, a kit
   draw's candidates are its copy's kits, a participant's sealed rows carry its copy's number).
   Shared by every copy: users, sites, studies, specifications, materials, equipment, donors and
   donations, storage, the sealed lists, and the signatures (a copy's signed rows point at the
   template's signatures). A copy's list lines join the template's list in blocks of their own,
   numbered (blocks, positions) after the whole list's and the copies' before, so each block is of
   a template block's size (2 to 8), as permuted blocks are: the randomisation list's blocks that
   hold a randomised participant are copied whole (their open lines too), the kit list whole.
   Left out of copies: sealed kit units (a vial is in one kit only), kit box positions,
   accountability verifications.
3. The audit trail: the demo's own events re-keyed to each copy's codes (a copy's lot has the
   history of its template), appended to the real chain up to `events`, cycling over the copies
   again once each has its history. Hashed with `audit.event_hash` and chained to the demo's head,
   the head signed with the installed checkpoint key: `cellbench verify`'s chain check passes.
   Its replay of records does not (copies' signatures and repeated histories are not real, and
   the copies' unblindings are marked as their impact sent, with no event of it: ten years of QA
   leave none waiting).
4. The hourly checkpoints the served app would have signed over those years: one at the last event
   of each hour (by the events' own times), signed with the key, kept and logged beside it
   (`checkpoint_hours`; on a database built without them: `python bench/tenyears.py checkpoints
   URL KEY`). The copies' times are moved back, not their order, so checkpoint times run back and
   forth along the chain; what a lot's evidence packet needs of them is where they fall.
"""
from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlmodel import SQLModel

from cellbench import audit, checkpoints, identifiers, kit_counts
from cellbench.checkpoints import store as checkpoint_store
from cellbench.config import normalise_url
from cellbench.db import Database
from cellbench.pharmacy import counts as pharmacy_counts

TEMPLATE = {"lots": 16, "kits": 72, "visits": 23}  # what one demo holds (checked when built)
FULL = {"lots": 500, "kits": 100_000, "visits": 20_000, "events": 2_000_000}
YEARS = 10

MANUFACTURING = ("lot", "step_entry", "step_value", "material_use", "equipment_use", "step_draft", "vial",
                 "qc_result", "qc_review_set", "qc_review_set_member", "lot_decision", "lot_review", "pending_test",
                 "storage_excursion", "deviation")
TRIAL = ("blinded_lot", "kit_quarantine", "kit", "kit_quarantine_kit", "packaging_run", "label_run", "label_run_kit",
         "shipment", "shipment_kit", "logger_reading", "custody_event", "destruction", "destruction_kit",
         "reconciliation", "participant", "eligibility_record", "visit", "administration", "bedside_check",
         "preparation", "preparation_syringe", "preparation_unit", "unblinding", "resupply_proposal",
         "resupply_proposal_kit", "sealed_kit_arm", "sealed_kit_draw", "sealed_dose_donor", "sealed_allocation",
         "deviation")
# Which template rows each world copies (the rest of the table belongs to the other world or to none).
_LOT_ONLY = "lot_id IS NOT NULL AND kit_id IS NULL AND visit_id IS NULL AND shipment_id IS NULL"
# The randomisation list's blocks that hold a randomised participant, each whole (its lines not yet
# randomised too): a copy's blocks are of the template's sizes, as real permuted blocks are (2 to 8).
_RANDOMISED_BLOCKS = ("EXISTS (SELECT 1 FROM sealed_allocation m JOIN sealed_list l ON l.id = m.list_id "
                      "JOIN participant p ON p.study_id = l.study_id AND p.randomisation_number = m.participant_number "
                      "WHERE m.list_id = sealed_allocation.list_id AND m.block = sealed_allocation.block)")
FILTERS = {("manufacturing", "deviation"): _LOT_ONLY, ("trial", "deviation"): f"NOT ({_LOT_ONLY})",
           ("trial", "sealed_allocation"): _RANDOMISED_BLOCKS}
LISTED = ("sealed_allocation", "sealed_kit_arm")  # a list's lines: each copy's in blocks and positions of its own
NUMBERED = re.compile(r"^([A-Z]+)-(\d{4})-(\d+)$")  # LOT / SH / DEV / DS / PR / RS / KQ-<year>-<n>
BLINDED = re.compile(r"^([A-Z]+)(\d{2})-(\d+)$")  # XB26-001
PARTICIPANT = re.compile(r"^([A-Z]+)-(\d+)$")  # X-001, SCR-101
DATED = ("UTCTimestamp", "Date", "DateTime")


@dataclass
class World:
    """What was built, for the report and the route filler."""

    scale: float
    lot_copies: int
    trial_copies: int
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # per copy: its world, how far back it was moved, old -> new public codes and (table, id) -> id
    copies: list[tuple[str, timedelta, dict[str, str], dict[tuple[str, str], str]]] = field(default_factory=list)


def copies_for(scale: float) -> tuple[int, int, int]:
    """How many copies of each world (the template counts as one) and how many audit events."""
    lots = max(1, math.ceil(FULL["lots"] * scale / TEMPLATE["lots"]))
    trials = max(1, math.ceil(FULL["kits"] * scale / TEMPLATE["kits"]))
    return lots, trials, int(FULL["events"] * scale)


class Renumber:
    """New public numbers for one copy, in the app's own formats, dated in the copy's year."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, int], int] = {}
        self.kits: Iterator[str] = iter(())

    def _next(self, prefix: str, year: int) -> int:
        n = self.counters.get((prefix, year), 100)  # the demo's own numbers are below 100
        self.counters[prefix, year] = n + 1
        return n + 1

    def number(self, value: str, year: int) -> str:
        if m := NUMBERED.match(value):
            return f"{m[1]}-{year}-{self._next(m[1], year):04d}"
        if m := BLINDED.match(value):
            return f"{m[1]}{year % 100:02d}-{self._next(m[1], year):03d}"
        raise ValueError(f"no renumbering for {value!r}")


def participant_number(value: str | None, copy: int) -> str | None:
    m = PARTICIPANT.match(value or "")
    return f"{m[1]}-{copy:04d}{m[2]}" if m else value


def _shift(value: Any, delta: timedelta) -> Any:
    if value is None or not delta:
        return value
    if isinstance(value, str):
        if len(value) == 10:
            return (date.fromisoformat(value) - delta).isoformat()
        moved = datetime.fromisoformat(value.replace("Z", "+00:00")) - delta
        return moved.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value - delta  # PostgreSQL's date columns


class Copier:
    """Copies one world's template rows `copies - 1` times, raw (driver values, no ORM)."""

    def __init__(self, db: Database, conn: Any, world: str, tables: tuple[str, ...]) -> None:
        self.db, self.conn, self.world = db, conn, world
        self.base = 0  # copy i's ids are moved by (base + i) spans: two worlds copy the deviations
        meta = SQLModel.metadata.tables
        order = [t.name for t in SQLModel.metadata.sorted_tables]
        self.tables = sorted(tables, key=order.index)
        self.columns = {t: [c.name for c in meta[t].columns] for t in self.tables}
        self.fks = {t: {c.name: next(iter(c.foreign_keys)).column.table.name for c in meta[t].columns
                        if c.foreign_keys} for t in self.tables}
        self.dates = {t: [c.name for c in meta[t].columns if type(c.type).__name__ in DATED] for t in self.tables}
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.ids: dict[str, set[int]] = {}
        self.span: dict[str, int] = {}
        self.lists: dict[tuple[str, int], tuple[int, int]] = {}  # (table, list) -> its last (block, position)

    def load(self) -> None:
        cur = self.conn.cursor()
        for t in self.tables:
            where = FILTERS.get((self.world, t))
            keyed = "id" in self.columns[t]  # link tables are keyed by their foreign keys
            cur.execute(f"SELECT {', '.join(self.columns[t])} FROM {t}" + (f" WHERE {where}" if where else "")
                        + (" ORDER BY id" if keyed else ""))
            self.rows[t] = [dict(zip(self.columns[t], row, strict=True)) for row in cur.fetchall()]
            self.ids[t] = {r["id"] for r in self.rows[t]} if keyed else set()
            cur.execute(f"SELECT coalesce(max(id), 0) FROM {t}" if keyed else "SELECT 0")
            self.span[t] = cur.fetchone()[0] + 1
            if t in LISTED:  # the whole list's, copied lines or not: a copy's blocks come after all of them
                cur.execute(f"SELECT list_id, max(block), max(position) FROM {t} GROUP BY list_id")
                self.lists.update({(t, list_id): (block, position) for list_id, block, position in cur.fetchall()})

    def copy(self, index: int, delta: timedelta, year: int, renumber: Renumber, public: dict[str, str],
             ids: dict[tuple[str, str], str]) -> dict[str, list[tuple]]:
        """Copy number `index` (ids moved by index * the table's span); `public` gets old -> new public
        codes, `ids` (table, old id) -> new id."""
        out: dict[str, list[tuple]] = {}
        for t in self.tables:
            step = self.base + index
            offset = step * self.span[t]
            cols, fks, dates = self.columns[t], self.fks[t], self.dates[t]
            rows = []
            for template in self.rows[t]:
                row = dict(template)
                if "id" in row:
                    row["id"] += offset
                    ids[t, str(template["id"])] = str(row["id"])
                for col, target in fks.items():
                    ref = row[col]
                    if ref is not None and target in self.rows and ref in self.ids[target]:
                        row[col] = ref + step * self.span[target]
                for col in dates:
                    row[col] = _shift(row[col], delta)
                self._recode(t, row, template, index, year, renumber, public)
                rows.append(tuple(row[c] for c in cols))
            out[t] = rows
        return out

    def keyed(self) -> list[str]:
        return [t for t in self.tables if "id" in self.columns[t]]

    def _recode(self, t: str, row: dict, template: dict, index: int, year: int, renumber: Renumber,
                public: dict[str, str]) -> None:
        if t in LISTED:  # copy i's blocks and positions follow the list's, after copy i - 1's
            blocks, positions = self.lists[t, template["list_id"]]
            row["block"] += index * blocks
            row["position"] += index * positions
        if t in ("sealed_allocation", "sealed_kit_draw", "sealed_dose_donor"):
            name = "participant_number" if t == "sealed_allocation" else "randomisation_number"
            row[name] = participant_number(template[name], index)
        if t == "sealed_kit_arm":
            row["kit_number"] = public.get(template["kit_number"], template["kit_number"])
        elif t == "sealed_kit_draw":  # the copy's own kits, in kit-number order, the same kit drawn
            drawn = template["candidates"].split(",")[template["index_drawn"]]
            candidates = sorted(public.get(number, number) for number in template["candidates"].split(","))
            row["candidates"] = ",".join(candidates)
            row["index_drawn"] = candidates.index(public.get(drawn, drawn))
        if t == "kit":
            row["number"] = next(renumber.kits)
        elif t == "blinded_lot":
            row["code"] = public[template["code"]] = renumber.number(template["code"], year)
        elif t == "vial":
            lot = template["code"].rsplit("-", 1)[0]  # ASC-2026-0001-V001
            row["code"] = f"{public[lot]}-{template['code'].rsplit('-', 1)[1]}"
            if row["storage_position"] is not None:
                row["storage_position"] = f"{template['storage_position']} #{index}"
        elif t == "participant":
            row["randomisation_number"] = participant_number(template["randomisation_number"], index)
            row["screening_number"] = public[template["screening_number"]] = participant_number(
                template["screening_number"], index)
        if t == "unblinding":  # decided history too: its impact went to the sponsor (no event says so: verify names it)
            row["impact_sent_at"] = row["at"]
        if t == "resupply_proposal":  # one open proposal per study and site: the copies are decided history
            row["open_slot"] = None
            if row["state"] == "proposed":  # a copy of the demo's open one lapsed long ago, as the trigger lapses them
                row.update(state="lapsed", decided_at=row["evaluated_at"], reason="nothing short any more")
        if t != "kit" and isinstance(row.get("number"), str):
            row["number"] = renumber.number(template["number"], year)
        if isinstance(row.get("number"), str):
            public[template["number"]] = row["number"]


def insert(db: Database, conn: Any, table: str, columns: list[str], rows: list[tuple]) -> None:
    if not rows:
        return
    if db.is_sqlite:
        conn.cursor().executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                  f"({', '.join('?' for _ in columns)})", rows)
    else:
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as out:
            for row in rows:
                out.write_row(row)


def clone(db: Database, world: World) -> None:
    """Step 2: the copies of both worlds, in one transaction with foreign keys checked at the end."""
    t0 = time.perf_counter()
    with db.write() as s:
        conn = s.connection().connection.driver_connection
        if db.is_sqlite:
            conn.execute("PRAGMA defer_foreign_keys=ON")
        manufacturing = Copier(db, conn, "manufacturing", MANUFACTURING)
        trial = Copier(db, conn, "trial", TRIAL)
        manufacturing.load()
        trial.load()
        trial.base = world.lot_copies
        kits_needed = (world.trial_copies - 1) * len(trial.rows["kit"])
        taken = {r["number"] for r in trial.rows["kit"]}
        renumber = Renumber()
        renumber.kits = iter(identifiers.new_kit_numbers(kits_needed, taken))
        today = date.today()
        for copier, copies in ((manufacturing, world.lot_copies), (trial, world.trial_copies)):
            for index in range(1, copies):
                # copy 1 is ten years ago, the last copy just before the demo's own story
                delta = timedelta(days=YEARS * 365 * (copies - index) // copies)
                public: dict[str, str] = {}
                ids: dict[tuple[str, str], str] = {}
                out = copier.copy(index, delta, (today - delta).year, renumber, public, ids)
                for t, rows in out.items():
                    insert(db, conn, t, copier.columns[t], rows)
                world.copies.append((copier.world, delta, public, ids))
        if not db.is_sqlite:  # explicit ids: the sequences move past them
            for t in {*manufacturing.keyed(), *trial.keyed()}:
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), "
                               f"(SELECT coalesce(max(id), 1) FROM {t}))"))
    world.timings["clone"] = time.perf_counter() - t0


_HASHED = audit.HASHED_COLUMNS
_PARTS = re.compile(r"([/:])")


def _rekey(entity_type: str, entity_id: str, public: dict[str, str], ids: dict[tuple[str, str], str]) -> str | None:
    """The copy's entity for a template event's entity; None when the entity is not the copy's (a
    user, a specification, a study: shared by every copy, so its events are not repeated)."""
    if entity_id.isdigit():
        return ids.get((entity_type, entity_id))
    parts = _PARTS.split(entity_id)  # NCT06805448/SCR-201/T1, ASC-2026-0001:audit_trail:1772
    moved = [public.get(part, part) for part in parts]
    return "".join(moved) if moved != parts else None


def fill_audit(db: Database, world: World, events: int) -> None:
    """Step 3: the template's events re-keyed per copy, chained after the head, up to `events`."""
    t0 = time.perf_counter()
    columns = [*_HASHED, "prev_hash", "hash"]
    with db.write() as s:
        conn = s.connection().connection.driver_connection
        cur = conn.cursor()
        cur.execute(f"SELECT {', '.join(_HASHED)} FROM audit_event ORDER BY seq")
        template = [list(r) for r in cur.fetchall()]
        moments = [datetime.fromisoformat(event[1].replace("Z", "+00:00")) for event in template]  # parsed once
        cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
        seq, prev = cur.fetchone()
        wanted = max(0, events - seq)
        rows: list[tuple] = []
        written = 0
        while written < wanted and world.copies:
            for _kind, delta, public, ids in world.copies:
                for event, moment in zip(template, moments, strict=True):
                    entity = _rekey(event[5], event[6], public, ids)
                    if entity is None:
                        continue
                    seq += 1
                    at = (moment - delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    content = [seq, at, *event[2:6], entity, *event[7:]]
                    digest = audit.event_hash(prev, content)
                    rows.append((*content, prev, digest))
                    prev = digest
                    written += 1
                    if len(rows) == 50_000:
                        insert(db, conn, "audit_event", columns, rows)
                        rows.clear()
                    if written >= wanted:
                        break
                if written >= wanted:
                    break
        insert(db, conn, "audit_event", columns, rows)
        key = checkpoints.installed()
        signature = key.sign(checkpoints.head_message(seq, prev)) if key is not None else None
        s.execute(text("UPDATE audit_head SET seq = :seq, hash = :hash, signature = :signature WHERE id = 1"),
                  {"seq": seq, "hash": prev, "signature": signature})
    world.timings["audit"] = time.perf_counter() - t0


def _hour(at: Any) -> str:
    """The clock hour an event's time falls in, "YYYY-MM-DDTHH" (UTC text on SQLite, as stored: not
    parsed, two million times; a timestamp on PostgreSQL)."""
    return (at if isinstance(at, str) else at.astimezone(UTC).isoformat())[:13]


def hour_ends(db: Database) -> Iterator[tuple[int, str, datetime]]:
    """(seq, hash, the end of its hour) of each event the chain moved on from into another hour,
    and of the head: where the served app's hourly task would have left a checkpoint."""
    with db.engine.connect() as conn:
        rows = conn.execution_options(yield_per=50_000).exec_driver_sql(
            "SELECT seq, hash, at FROM audit_event ORDER BY seq")
        last: tuple[int, str, str] | None = None
        for seq, digest, at in rows:
            hour = _hour(at)
            if last is not None and hour != last[2]:
                yield _ended(last)
            last = (seq, digest, hour)
        if last is not None:
            yield _ended(last)


def _ended(last: tuple[int, str, str]) -> tuple[int, str, datetime]:
    seq, digest, hour = last
    return seq, digest, datetime.fromisoformat(f"{hour}:00:00+00:00") + timedelta(hours=1)


def checkpoint_hours(db: Database, key: checkpoints.Key | None = None) -> int:
    """Step 4: the hourly checkpoints a chain ten years in service has, as the served app's hourly
    task leaves them (checkpoints.store.issue_if_moved, every hour the chain moved): one at the last
    event of each hour, signed with the key, dated the end of that hour (now at the latest), kept
    in the database and appended to the log beside the key. Without them a lot's evidence packet
    proves its events with the whole chain from its first event to now.

    Also for a database built before this step (run once: `python bench/tenyears.py checkpoints
    URL KEY`): an event that has a checkpoint already gets none, so running it again adds only the
    hours since. It writes checkpoint rows and log lines only, never an event. Returns how many."""
    t0 = time.perf_counter()
    key = key or checkpoints.installed()
    if key is None:  # as the served app without a key: nothing is signed
        return 0
    now = datetime.now(UTC)
    with db.engine.connect() as conn:
        kept = set(conn.exec_driver_sql("SELECT DISTINCT seq FROM checkpoint").scalars())
    made = [(checkpoints.make(key, seq, digest, min(hour, now)), "hourly")
            for seq, digest, hour in hour_ends(db) if seq not in kept]
    table = SQLModel.metadata.tables["checkpoint"]
    with db.write_connection() as conn:
        for start in range(0, len(made), 10_000):
            conn.execute(table.insert(), [{**asdict(cp), "why": why} for cp, why in made[start:start + 10_000]])
    checkpoint_store.log_all(key, made)
    print(f"{len(made)} hourly checkpoints signed and kept in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return len(made)


def settle(db: Database) -> None:
    """As a database in use for years would be: statistics gathered, the WAL checkpointed."""
    if db.is_sqlite:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


COUNTED = ("lot", "step_value", "vial", "qc_result", "blinded_lot", "kit", "shipment", "custody_event", "participant",
           "visit", "deviation", "signature", "audit_event")


def count(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in COUNTED}


def grow(db: Database, scale: float, events: int | None = None) -> World:
    """Steps 2 and 3 on a database that holds the demo (step 1), then statistics; `events`
    overrides the scale's number of audit events."""
    lots, trials, scaled_events = copies_for(scale)
    events = scaled_events if events is None else events
    world = World(scale, lots, trials)
    clone(db, world)
    with db.write() as s:
        kit_counts.refill(s)  # the copied kits' running counts (accountability reads them), from the rows
        pharmacy_counts.refill(s)  # the copied visits' running counts (the site's work lines), from the rows
        # the copied lines join their lists: each list's arm counts (its pages read them) from the rows
        s.execute(text("DELETE FROM sealed_list_arm"))
        for lines in ("sealed_allocation", "sealed_kit_arm"):
            s.execute(text(f"INSERT INTO sealed_list_arm (list_id, arm, lines) "
                           f"SELECT list_id, arm, COUNT(*) FROM {lines} GROUP BY list_id, arm"))
    fill_audit(db, world, events)
    t0 = time.perf_counter()
    checkpoint_hours(db)
    world.timings["checkpoints"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    settle(db)
    world.timings["analyze"] = time.perf_counter() - t0
    world.counts = count(db)
    return world


def main(argv: list[str] | None = None) -> int:
    """`checkpoints URL KEY`: step 4 on a database built without it (e.g. the PostgreSQL one, which
    takes ten minutes to build): the hourly checkpoints added, nothing else touched."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("step", choices=["checkpoints"])
    parser.add_argument("url", help="the database (sqlite:///... or postgresql://...)")
    parser.add_argument("key", type=Path, help="its checkpoint key (the log checkpoints.jsonl is beside it)")
    args = parser.parse_args(argv)
    db = Database(normalise_url(args.url))
    try:
        checkpoint_hours(db, checkpoints.load(args.key))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE checkpoint")  # the planner learns the new rows
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
