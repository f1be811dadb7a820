"""Printable records: the executed batch record of a lot, gathered once, shown as a page and a PDF.

The batch record printout is what QA reviews before certification and what an inspector reads, so it
shows everything the lot's record holds (Annex 11 §8.2: "indicating whether any data changed since
original entry"): every value with its unit, limit and verdict, every corrected original beside its
correction with who, when and why, every signature with printed name, time and meaning (invalidated
ones struck through, with their reason), materials, equipment, deviations and vials.

Gathering reads the whole lot with one query per table, whatever the number of steps and entries,
into plain rows with their display text worked out once; the page and the PDF render that and touch
the database no more.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF
from sqlalchemy import String, and_, bindparam, cast, or_, select
from sqlmodel import Session

from .. import steps
from ..errors import NotFound
from ..labels import LabelFonts, find_label_fonts
from ..models import (
    Deviation,
    Donation,
    Donor,
    Equipment,
    EquipmentUse,
    Lot,
    LotDecision,
    MaterialLot,
    MaterialUse,
    Meaning,
    Signature,
    SpecVersion,
    StepEntry,
    StepValue,
    User,
    Vial,
)
from ..specifications import Parameter, Specification, Step
from ..specifications import versions as spec_versions

Row = Any  # a database row read for display (sqlalchemy Row): attributes named as the table's columns

# --- the gathered record ----------------------------------------------------------------------


@dataclass(slots=True)
class SignatureView:
    """What every rendering of a signature shows (DESIGN invariant 2), in the shape of a Signature."""

    id: int
    signer_name: str
    at: datetime
    meaning: Meaning
    entity_type: str
    entity_id: str
    content_hash: str
    invalidated_at: datetime | None
    invalidated_reason: str | None

    def __post_init__(self) -> None:
        self.meaning = Meaning(self.meaning)


@dataclass(slots=True)
class ValueRow:
    """One recorded value (a step_value row) with its display text worked out once."""

    id: int
    parameter_code: str
    value: str | None  # as entered or computed; None when not applicable
    unit: str | None
    within_limits: bool | None
    computed: bool
    comment: str | None
    na_reason: str | None
    by: str  # entered by (printed name)
    at: datetime  # entered at
    superseded_by: int | None
    correction_reason: str | None  # set on a value that corrects an earlier one
    shown: str = ""  # value and unit, or "N/A"
    verdict: str = ""  # within | OUT OF LIMITS | N/A | — (no limits)
    remark: str = ""  # the comment, or "N/A: <reason>"
    superseded: bool = False  # a later value replaced it; it stays readable, struck through
    out_of_limits: bool = False  # standing and outside its limits
    note: str = ""  # "original entry, superseded" | "superseded" | "changed after first entry"

    def __post_init__(self) -> None:
        if self.value is None:
            self.shown = self.verdict = "N/A"
        else:
            self.shown = f"{self.value} {self.unit}" if self.unit else self.value
            self.verdict = "—" if self.within_limits is None else ("within" if self.within_limits else "OUT OF LIMITS")
        self.remark = self.comment or (f"N/A: {self.na_reason}" if self.na_reason else "")
        self.superseded = self.superseded_by is not None
        self.out_of_limits = self.within_limits is False and not self.superseded


@dataclass(slots=True)
class ValueChange:
    """One change to a parameter after its first entry: what it was, what replaced it, who, when, why."""

    before: ValueRow
    after: ValueRow | None  # None: a computed value whose inputs no longer compute
    by: str
    at: datetime | None
    reason: str

    @property
    def after_shown(self) -> str:
        return self.after.shown if self.after is not None else "(no value)"


@dataclass(slots=True)
class ParameterLine:
    code: str
    label: str
    parameter: Parameter | None  # None only for a value whose parameter the specification does not name
    limits: str
    rows: list[ValueRow]  # every value recorded for it on this entry, the original entry first
    changes: list[ValueChange]

    @property
    def current(self) -> ValueRow | None:
        return next((r for r in self.rows if not r.superseded), None)

    @property
    def changed(self) -> bool:
        """Changed after first entry: the parameter holds more than the value first entered."""
        return len(self.rows) > 1

    @property
    def required(self) -> bool:
        return self.parameter is None or self.parameter.required


@dataclass(slots=True)
class EntryRecord:
    entry: Row  # the step_entry row
    title: str  # "Passage 2" for a repeated step, else ""
    lines: list[ParameterLine]
    materials: list[Row]  # entry_id, name, supplier, supplier_lot, expiry
    equipment: list[Row]  # entry_id, name, asset_id, calibration_due
    signatures: list[SignatureView]  # performed and verified, invalidated ones too, oldest first


@dataclass(slots=True)
class StepRecord:
    position: int
    step: Step
    entries: list[EntryRecord]


@dataclass(slots=True)
class Correction:
    """A change after first entry, located for the summary table."""

    where: str  # "3. Seeding and expansion … / Passage 2 / Cells seeded"
    change: ValueChange


@dataclass(slots=True)
class DeviationRecord:
    deviation: Deviation
    raised_by: str | None
    closure: SignatureView | None  # QA's closure signature


@dataclass
class BatchRecord:
    lot: Lot
    spec_row: SpecVersion
    spec: Specification
    spec_signature: SignatureView | None
    donation: Donation | None
    donor_code: str | None
    donation_signature: SignatureView | None
    started_by: str
    steps: list[StepRecord]
    lot_signatures: list[SignatureView]  # decisions on the lot itself (e.g. abort: rejected)
    deviations: list[DeviationRecord]
    vials: list[Row]  # code, seq, storage_position, state
    corrections: list[Correction] = field(default_factory=list)

    @property
    def out_of_limits(self) -> list[ValueRow]:
        return [r for s in self.steps for e in s.entries for line in e.lines for r in line.rows if r.out_of_limits]

    @property
    def invalidated_signatures(self) -> int:
        return sum(1 for s in self.steps for e in s.entries for sig in e.signatures if sig.invalidated_at)

    @property
    def complete(self) -> bool:
        """Every step of the master batch record done (performed, verified where needed, or N/A)."""
        return all(steps.step_complete(s.step, [e.entry for e in s.entries]) for s in self.steps)

    @property
    def completed_at(self) -> datetime | None:
        """When the last step was signed, for a record that is complete."""
        if not self.complete:
            return None
        times = [sig.at for s in self.steps for e in s.entries for sig in e.signatures if not sig.invalidated_at]
        return max(times, default=None)


# --- small shared wording -----------------------------------------------------------------------


def text(value: object) -> str:
    """An enum member or the plain string read back from the database, as words."""
    return str(getattr(value, "value", value) or "").replace("_", " ")


def limits_text(parameter: Parameter | None) -> str:
    if parameter is None:
        return ""
    unit = f" {parameter.unit}" if parameter.unit else ""
    if parameter.expected is not None:
        return f"expected {'yes' if parameter.expected else 'no'}"
    if parameter.min is not None and parameter.max is not None:
        return f"{parameter.min:g}–{parameter.max:g}{unit}"
    if parameter.min is not None:
        return f"≥ {parameter.min:g}{unit}"
    if parameter.max is not None:
        return f"≤ {parameter.max:g}{unit}"
    return ""


# --- gathering ----------------------------------------------------------------------------------

# Built once: a request then only binds the lot and runs them.
_LOT = (select(Lot, SpecVersion, Donation, Donor.code, User.full_name)
        .join(SpecVersion, SpecVersion.id == Lot.spec_version_id)
        .outerjoin(Donation, Donation.id == Lot.donation_id)
        .outerjoin(Donor, Donor.id == Donation.donor_id)
        .outerjoin(User, User.id == Lot.created_by)
        .where(Lot.number == bindparam("number")))
# The rest are plain Core over the tables: rows, not ORM objects. A record is read whole and only
# for display; a few hundred tracked instances would cost more than everything else on the page.
_entry, _value, _sig, _vial = StepEntry.__table__, StepValue.__table__, Signature.__table__, Vial.__table__
_material, _material_use = MaterialLot.__table__, MaterialUse.__table__
_equipment, _equipment_use = Equipment.__table__, EquipmentUse.__table__
_OF_LOT = _entry.c.lot_id == bindparam("lot")
_ENTRIES = select(_entry).where(_OF_LOT).order_by(_entry.c.position, _entry.c.repeat_index, _entry.c.id)
_VALUES = (select(_value.c.entry_id, _value.c.id, _value.c.parameter_code, _value.c.value, _value.c.unit,
                  _value.c.within_limits, _value.c.computed, _value.c.comment, _value.c.na_reason,
                  _value.c.entered_by_name, _value.c.entered_at, _value.c.superseded_by, _value.c.correction_reason)
           .select_from(_value.join(_entry, _entry.c.id == _value.c.entry_id)).where(_OF_LOT).order_by(_value.c.id))
_MATERIALS = (select(_material_use.c.entry_id, _material.c.name, _material.c.supplier, _material.c.supplier_lot,
                     _material.c.expiry)
              .select_from(_material_use.join(_material, _material.c.id == _material_use.c.material_lot_id)
                           .join(_entry, _entry.c.id == _material_use.c.entry_id))
              .where(_OF_LOT).order_by(_material_use.c.id))
_EQUIPMENT = (select(_equipment_use.c.entry_id, _equipment.c.name, _equipment.c.asset_id, _equipment.c.calibration_due)
              .select_from(_equipment_use.join(_equipment, _equipment.c.id == _equipment_use.c.equipment_id)
                           .join(_entry, _entry.c.id == _equipment_use.c.entry_id))
              .where(_OF_LOT).order_by(_equipment_use.c.id))
# Everything a rendering shows of a signature, not the signed content itself: the lot's step
# entries', the lot's own, its deviations' closures, its specification's and donation's approvals.
_SIGNATURES = (select(_sig.c.id, _sig.c.signer_name, _sig.c.at, _sig.c.meaning, _sig.c.entity_type,
                      _sig.c.entity_id, _sig.c.content_hash, _sig.c.invalidated_at, _sig.c.invalidated_reason)
               .where(or_(and_(_sig.c.entity_type == "step_entry",
                               _sig.c.entity_id.in_(bindparam("entries", expanding=True))),
                          and_(_sig.c.entity_type == "lot_decision",
                               _sig.c.entity_id.in_(select(cast(LotDecision.id, String))
                                                    .where(LotDecision.lot_id == bindparam("lot")))),
                          and_(_sig.c.entity_type == "deviation",
                               _sig.c.entity_id.in_(bindparam("deviations", expanding=True))),
                          _sig.c.id.in_(bindparam("ids", expanding=True))))
               .order_by(_sig.c.id))
_VIALS = (select(_vial.c.code, _vial.c.seq, _vial.c.storage_position, _vial.c.state)
          .where(_vial.c.lot_id == bindparam("lot")).order_by(_vial.c.seq))
_DEVIATIONS = (select(Deviation, User.full_name).outerjoin(User, User.id == Deviation.raised_by)
               .where(Deviation.lot_id == bindparam("lot")).order_by(Deviation.raised_at, Deviation.number))


def batch_record(session: Session, number: str) -> BatchRecord:
    """The whole executed batch record of one lot, read with one query per table."""
    number = (number or "").strip()
    row = session.execute(_LOT, {"number": number}).first()
    if row is None:
        raise NotFound(f"No lot '{number}'.", field="lot")
    lot, spec_row, donation, donor_code, started_by = row
    at_lot, run = {"lot": lot.id}, session.connection().execute
    entries = run(_ENTRIES, at_lot).all()
    values = [(entry_id, ValueRow(*rest)) for entry_id, *rest in run(_VALUES, at_lot)]
    materials = run(_MATERIALS, at_lot).all()
    equipment = run(_EQUIPMENT, at_lot).all()
    deviation_rows = session.execute(_DEVIATIONS, at_lot).all()
    approvals = [i for i in (spec_row.signature_id, donation.eligibility_signature_id if donation else None) if i]
    sigs = [SignatureView(*s) for s in run(_SIGNATURES, {
        "entries": [str(e.id) for e in entries], "lot": lot.id,
        "deviations": [d.number for d, _ in deviation_rows], "ids": approvals})]
    vials = run(_VIALS, at_lot).all()

    by_id = {s.id: s for s in sigs}
    record = BatchRecord(
        lot=lot, spec_row=spec_row, spec=spec_versions.parsed(spec_row), spec_signature=by_id.get(spec_row.signature_id),
        donation=donation, donor_code=donor_code,
        donation_signature=by_id.get(donation.eligibility_signature_id) if donation else None,
        started_by=started_by or "", steps=[],
        lot_signatures=[s for s in sigs if s.entity_type == "lot_decision"],
        deviations=[DeviationRecord(d, name, by_id.get(d.closure_signature_id)) for d, name in deviation_rows],
        vials=vials)
    _assemble(record, entries, values, materials, equipment, [s for s in sigs if s.entity_type == "step_entry"])
    return record


def _grouped(rows, key: str) -> dict:
    out: dict = {}
    for row in rows:
        out.setdefault(getattr(row, key), []).append(row)
    return out


def _assemble(record: BatchRecord, entries: list[Row], values: list[tuple[int, ValueRow]], materials: list[Row],
              equipment: list[Row], sigs: list[SignatureView]) -> None:
    values_of: dict[int, list[ValueRow]] = {}
    for entry_id, value in values:
        values_of.setdefault(entry_id, []).append(value)
    value_by_id = {v.id: v for _, v in values}
    materials_of, equipment_of = _grouped(materials, "entry_id"), _grouped(equipment, "entry_id")
    sigs_of, entries_of = _grouped(sigs, "entity_id"), _grouped(entries, "step_code")
    for position, step in enumerate(record.spec.steps, start=1):
        step_record = StepRecord(position, step, [])
        parameters = {p.code: p for p in step.parameters}
        limits = {p.code: limits_text(p) for p in step.parameters}
        for entry in entries_of.get(step.code, []):
            title = f"{step.repeat.label} {entry.repeat_index}" if step.repeat else ""
            lines = _lines(step, parameters, limits, values_of.get(entry.id, []), value_by_id)
            step_record.entries.append(EntryRecord(entry, title, lines, materials_of.get(entry.id, []),
                                                   equipment_of.get(entry.id, []), sigs_of.get(str(entry.id), [])))
            where = " / ".join(filter(None, (f"{position}. {step.title}", title)))
            record.corrections += [Correction(f"{where} / {line.label}", c) for line in lines for c in line.changes]
        record.steps.append(step_record)


def _lines(step: Step, parameters: dict[str, Parameter], limits: dict[str, str], values: list[ValueRow],
           value_by_id: dict[int, ValueRow]) -> list[ParameterLine]:
    """One line per parameter of the step, in the master batch record's order, with its history."""
    rows_of = _grouped(values, "parameter_code")
    codes = [p.code for p in step.parameters] + [c for c in rows_of if c not in parameters]
    lines = []
    for code in codes:
        parameter = parameters.get(code)
        rows = rows_of.get(code, [])
        changes = []
        if len(rows) > 1:
            rows[0].note = "original entry, superseded"
            for row in rows[1:]:
                row.note = "superseded" if row.superseded else "changed after first entry"
            changes = [_change(before, after, value_by_id, parameters) for before, after in zip(rows, rows[1:])]
        if rows and rows[-1].superseded:  # a computed value left without a recomputation
            changes.append(_change(rows[-1], None, value_by_id, parameters))
        lines.append(ParameterLine(code, parameter.label if parameter else code, parameter, limits.get(code, ""),
                                   rows, changes))
    return lines


def _change(before: ValueRow, after: ValueRow | None, value_by_id: dict[int, ValueRow],
            parameters: dict[str, Parameter]) -> ValueChange:
    if after is not None and after.correction_reason:
        return ValueChange(before, after, after.by, after.at, after.correction_reason)
    # A computed value is replaced when one of its inputs is corrected: name that correction.
    cause = value_by_id.get(before.superseded_by)
    if cause is not None and cause.parameter_code != before.parameter_code:
        label = parameters[cause.parameter_code].label if cause.parameter_code in parameters else cause.parameter_code
        reason = f"recomputed by cellbench after '{label}' was corrected: {cause.correction_reason or ''}".rstrip(": ")
        return ValueChange(before, after, cause.by, cause.at, reason)
    return ValueChange(before, after, after.by if after else "", after.at if after else None,
                       "replaced" if after is not None else "superseded")


# --- the PDF --------------------------------------------------------------------------------------


def local_time(moment: datetime | None, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC time in the site's zone with its offset, as the pages show it."""
    if moment is None:
        return ""
    here = moment.astimezone(zone)
    offset = here.strftime("%z")
    return f"{here.strftime(fmt)} {offset[:3]}:{offset[3:]}"


def signature_text(sig: SignatureView, zone: ZoneInfo) -> tuple[str, str]:
    """(what was signed, why it no longer stands): name, meaning and time; the second part is empty
    for a signature that stands."""
    signed = f"{sig.signer_name} · {text(sig.meaning)} · {local_time(sig.at, zone, '%Y-%m-%d %H:%M:%S')}"
    if not sig.invalidated_at:
        return signed, ""
    return signed, f"INVALIDATED {local_time(sig.invalidated_at, zone)}: {sig.invalidated_reason or ''}"


GREY, DARK, BROWN = (95, 95, 95), (25, 25, 25), (150, 60, 0)


@dataclass(frozen=True)
class Look:
    """How a table cell is printed: font style ("", "B", "S" struck through, "BS"), colour, fill."""

    style: str = ""
    color: tuple[int, int, int] = DARK
    fill: tuple[int, int, int] | None = None


PLAIN, BOLD, HEAD = Look(), Look("B"), Look("B", fill=(232, 237, 244))
STRUCK = Look("S", GREY)  # superseded: struck through, still readable
OOS = Look("", fill=(253, 226, 221))  # red ground; not bold, so a long word still fits its column
MARK = Look("B", BROWN)
NOTE = Look("", GREY)
VALUE_COLUMNS = ("Parameter", "Value", "Limits", "Verdict", "Comment / N/A reason", "Entered by, at")
VALUE_WIDTHS = (40, 32, 22, 20, 36, 36)
CELL_SIZE, LINE, PAD = 7.5, 3.3, 0.8  # pt, mm, mm


class _RecordPDF(FPDF):
    """A4 pages whose footer names the lot, the page of pages, and when and by whom it was printed."""

    def __init__(self, fonts: LabelFonts, footer: str):
        super().__init__(orientation="P", unit="mm", format="A4")
        self._footer = footer
        self.set_margins(12, 12, 12)
        self.set_auto_page_break(True, margin=15)
        self.add_font("Doc", "", str(fonts.regular))
        self.add_font("Doc", "B", str(fonts.bold))
        self.set_stretching(fonts.stretch_percent)
        self.set_font("Doc", "", 8)
        self._cmap = self.current_font.cmap
        self.set_creator("cellbench")

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font("Doc", "", 7)
        self.set_text_color(*GREY)
        self.cell(0, 4, self.clean(self._footer.replace("{page}", str(self.page_no()))), align="C")
        self.set_text_color(*DARK)

    def clean(self, value: object) -> str:
        """Text as stored, made printable: a character the font lacks is written as its code point
        rather than silently dropped, so the printout never hides part of a value."""
        out = str(value if value is not None else "").replace("\r\n", "\n").replace("\t", " ")
        if all(ord(ch) in self._cmap or ch == "\n" for ch in out):
            return out
        return "".join(ch if ord(ch) in self._cmap or ch == "\n" else f"[U+{ord(ch):04X}]" for ch in out)

    def heading(self, title: str, size: float = 11, keep: float = 30) -> None:
        if self.get_y() > self.h - self.b_margin - keep:
            self.add_page()
        self.ln(2)
        self.set_font("Doc", "B", size)
        self.multi_cell(0, size * 0.48, self.clean(title), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Doc", "", 8)
        self.ln(1)

    def line_of(self, parts: list[tuple[str, str]], height: float = 4) -> None:
        """One paragraph of runs, each with its own style ("", "B", "S", "BS")."""
        parts = [(style, self.clean(part)) for style, part in parts if part]
        widths = []
        for style, part in parts:
            self.set_font("Doc", style, 8)
            widths.append(self.get_string_width(part))
        if sum(widths) <= self.epw and not any("\n" in part for _, part in parts):
            # the common case, one line: placed as it is, without fpdf2's (slow) line breaking
            for (style, part), width in zip(parts, widths):
                self.set_font("Doc", style, 8)
                self.cell(width, height, part)
            self.set_font("Doc", "", 8)
            self.ln(height)
            return
        for style, part in parts:
            self.set_font("Doc", style, 8)
            self.write(height, part)
        self.set_font("Doc", "", 8)
        self.ln(height)

    def pairs(self, rows: list[tuple[str, str]]) -> None:
        self.grid(None, (48, 138), [[{"text": name, "style": BOLD}, value] for name, value in rows])

    def grid(self, columns: tuple[str, ...] | None, widths: tuple[float, ...], rows: list[list]) -> None:
        """A ruled table across the page whose heading repeats on every page. A cell is text or
        {"text", "style": a Look, "colspan"}; widths are proportions of the page width.

        Drawn here rather than with fpdf2's table(): that breaks lines one character at a time and
        took two thirds of a batch record's rendering time; cells here are wrapped by words."""
        scale = self.epw / sum(widths)
        widths = [w * scale for w in widths]
        heading = [{"text": c, "style": HEAD} for c in columns] if columns else None
        if heading:
            if self.get_y() + 3 * LINE + 4 * PAD > self.page_break_trigger:  # no heading alone at a page foot
                self.add_page()
            self._row(heading, widths, None)
        for cells in rows:
            self._row(cells, widths, heading)
        self.set_x(self.l_margin)

    def _row(self, cells: list, widths: list[float], heading: list | None) -> None:
        laid, x, column = [], self.l_margin, 0
        for cell in cells:
            cell = cell if isinstance(cell, dict) else {"text": cell}
            look, span = cell.get("style", PLAIN), cell.get("colspan", 1)
            width = sum(widths[column:column + span])
            laid.append((x, width, self._wrap(self.clean(cell.get("text", "")), width - 2 * PAD, look.style), look))
            x, column = x + width, column + span
        row_lines = max(len(lines) for *_, lines, _ in laid)
        first = 0
        while first < row_lines:
            room = int((self.page_break_trigger - self.get_y() - 2 * PAD) // LINE)
            fresh = int((self.page_break_trigger - self.t_margin - 2 * PAD) // LINE) - (2 if heading else 0)
            if room < row_lines - first and (room < 1 or row_lines - first <= fresh):  # move the row to the next page
                self.add_page()
                if heading:
                    self._row(heading, widths, None)
                continue
            count = min(room, row_lines - first)  # a row taller than a page continues on the next
            y, height = self.get_y(), count * LINE + 2 * PAD
            for x, width, lines, look in laid:
                if look.fill:
                    self.set_fill_color(*look.fill)
                self.rect(x, y, width, height, style="DF" if look.fill else "D")
                self.set_font("Doc", look.style, CELL_SIZE)
                self.set_text_color(*look.color)
                for index, line in enumerate(lines[first:first + count]):
                    self.set_xy(x + PAD, y + PAD + index * LINE)
                    self.cell(width - 2 * PAD, LINE, line)
            self.set_text_color(*DARK)
            self.set_xy(self.l_margin, y + height)
            first += count

    def _wrap(self, text: str, width: float, style: str) -> list[str]:
        self.set_font("Doc", style.replace("S", ""), CELL_SIZE)
        measure, space, lines = self.get_string_width, self.get_string_width(" "), []
        for paragraph in text.split("\n"):
            line, used = "", 0.0
            for word in paragraph.split(" "):
                size = measure(word)
                if line and used + space + size <= width:
                    line, used = f"{line} {word}", used + space + size
                    continue
                if line:
                    lines.append(line)
                while size > width and len(word) > 1:  # a word wider than its column breaks where it must
                    cut = next(n for n in range(len(word) - 1, 0, -1) if measure(word[:n]) <= width or n == 1)
                    lines.append(word[:cut])
                    word = word[cut:]
                    size = measure(word)
                line, used = word, size
            lines.append(line)
        return lines


def _value_rows(line: ParameterLine, zone: ZoneInfo) -> list[list]:
    if not line.rows:
        return [[line.label, {"text": "not recorded", "style": NOTE}, line.limits,
                 "not recorded" if line.required else "optional", "", ""]]
    rows = []
    for value in line.rows:
        label = line.label + ("\n(computed by cellbench)" if value.computed else "")
        label += f"\n{value.note.upper() if value.note.startswith('changed') else value.note}" if value.note else ""
        value_cell: dict = {"text": value.shown}
        verdict_cell: dict = {"text": value.verdict}
        if value.superseded:
            value_cell["style"] = verdict_cell["style"] = STRUCK
        elif value.out_of_limits:
            value_cell["style"] = verdict_cell["style"] = OOS
        rows.append([label, value_cell, line.limits, verdict_cell, value.remark,
                     f"{value.by}\n{local_time(value.at, zone)}"])
    for change in line.changes:
        rows.append([{"text": f"CHANGED AFTER FIRST ENTRY — {line.label}: {change.before.shown} → "
                              f"{change.after_shown}; by {change.by or 'cellbench'} at {local_time(change.at, zone)}. "
                              f"Reason: {change.reason}",
                      "colspan": 6, "style": MARK}])
    return rows


def _signature_line(pdf: _RecordPDF, label: str, sig: SignatureView | None, zone: ZoneInfo) -> None:
    if sig is None:
        pdf.line_of([("B", f"{label}: "), ("", "not signed")])
        return
    signed, void = signature_text(sig, zone)
    if void:
        pdf.line_of([("B", f"{label}: "), ("S", signed), ("B", f"  {void}")])
    else:
        pdf.line_of([("B", f"{label}: "), ("", signed)])


def batch_record_pdf(record: BatchRecord, *, zone: ZoneInfo, printed_by: str, printed_at: datetime,
                     fonts: LabelFonts | None = None) -> bytes:
    """The executed batch record as A4 pages, times in the site's zone; every page's footer names the
    lot, the page of pages, and when and by whom it was printed."""
    lot, spec, spec_row = record.lot, record.spec, record.spec_row
    footer = (f"Lot {lot.number} · executed batch record · page {{page}} of {{nb}} · printed "
              f"{local_time(printed_at, zone, '%Y-%m-%d %H:%M:%S')} by {printed_by}")
    pdf = _RecordPDF(fonts or find_label_fonts(), footer)
    pdf.set_title(f"Executed batch record, lot {lot.number}")
    pdf.set_author(printed_by)
    pdf.add_page()
    pdf.set_font("Doc", "B", 15)
    pdf.cell(0, 8, pdf.clean(f"Executed batch record — lot {lot.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Doc", "", 8)
    pdf.multi_cell(0, 4, pdf.clean("Printout of the electronic batch record held in cellbench. Times are shown in "
                                   f"{zone.key} with their UTC offset."), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    corrections = len(record.corrections)
    facts = [
        ("Lot number", lot.number),
        ("Product", spec.product.name),
        ("Specification", f"{spec_row.product_code} version {spec_row.version} ({text(spec_row.status)})"),
        ("State", text(lot.state) + (f" — on hold: {lot.hold_reason}" if lot.hold_reason else "")),
        ("Started", f"{local_time(lot.created_at, zone)} by {record.started_by}"),
        ("Completed", local_time(record.completed_at, zone) or "not complete"),
        ("Expiry", lot.expiry.isoformat() if lot.expiry else "not set"),
    ]
    if record.donation:
        d = record.donation
        facts.append(("Donation", f"{d.identifier} ({d.id_system}), donated {d.donated_on.isoformat()}, donor "
                                  f"{record.donor_code or ''}, eligibility: {text(d.eligibility)}"))
    facts += [
        ("Data changed after first entry", f"YES — {corrections} change{'s' if corrections != 1 else ''} (listed "
                                           "below each value and under 'Changes after first entry')"
                                           if corrections else "NO — every value stands as first entered"),
        ("Values out of limits", str(len(record.out_of_limits))),
        ("Invalidated signatures", str(record.invalidated_signatures)),
        ("Deviations", ", ".join(f"{r.deviation.number} ({text(r.deviation.state)})" for r in record.deviations)
         or "none"),
    ]
    pdf.pairs(facts)
    pdf.ln(1)
    _signature_line(pdf, "Specification approved", record.spec_signature, zone)
    if record.donation:
        _signature_line(pdf, "Donation eligibility", record.donation_signature, zone)

    for step_record in record.steps:
        step = step_record.step
        pdf.heading(f"{step_record.position}. {step.title}" + ("  [second-person verification]" if step.verify else ""))
        if not step_record.entries:
            pdf.line_of([("", "Not started.")])
        for er in step_record.entries:
            entry, title = er.entry, er.title
            pdf.line_of([("B", f"{title} · " if title else ""), ("", f"started {local_time(entry.started_at, zone)} · "
                                                                     f"state: {text(entry.state)}")])
            if entry.na_reason:
                pdf.line_of([("B", "Not applicable: "), ("", entry.na_reason)])
            rows = [r for line in er.lines for r in _value_rows(line, zone)]
            if rows:
                pdf.grid(VALUE_COLUMNS, VALUE_WIDTHS, rows)
            for m in er.materials:
                pdf.line_of([("B", "Material: "), ("", f"{m.name} ({m.supplier}) · supplier lot {m.supplier_lot} · "
                                                       f"expiry {m.expiry.isoformat()}")])
            for e in er.equipment:
                pdf.line_of([("B", "Equipment: "), ("", f"{e.name} · asset {e.asset_id} · calibration due "
                                                        f"{e.calibration_due.isoformat()}")])
            for sig in er.signatures:
                _signature_line(pdf, "Signature", sig, zone)
            if not er.signatures:
                pdf.line_of([("B", "Signature: "), ("", "not signed")])
            pdf.ln(1)

    pdf.heading("Changes after first entry")
    if record.corrections:
        pdf.grid(("Where", "Original", "New", "By", "At", "Reason"), (50, 24, 24, 24, 24, 40),
                 [[c.where, {"text": c.change.before.shown, "style": STRUCK}, c.change.after_shown, c.change.by,
                   local_time(c.change.at, zone), c.change.reason] for c in record.corrections])
    else:
        pdf.line_of([("", "None: every value stands as first entered.")])

    pdf.heading("Deviations")
    if record.deviations:
        pdf.grid(("Number", "State", "Origin", "Severity", "Step", "Description", "Raised; closed"),
                 (22, 16, 18, 14, 22, 56, 38),
                 [[r.deviation.number, text(r.deviation.state), text(r.deviation.origin), r.deviation.severity,
                   r.deviation.step_code or "", r.deviation.description,
                   f"{r.raised_by or ''} {local_time(r.deviation.raised_at, zone)}"
                   + (f"\nclosed: {signature_text(r.closure, zone)[0]}" if r.closure else "")]
                  for r in record.deviations])
    else:
        pdf.line_of([("", "None.")])

    pdf.heading("Vials and storage positions")
    if record.vials:
        pdf.grid(("Vial", "Storage position", "State"), (60, 80, 46),
                 [[v.code, v.storage_position or "not placed", text(v.state)] for v in record.vials])
    else:
        pdf.line_of([("", "None.")])

    if record.lot_signatures:
        pdf.heading("Signatures on the lot")
        for sig in record.lot_signatures:
            _signature_line(pdf, "Signature", sig, zone)
    return bytes(pdf.output())



def certificate_start(heading: str, footer_label: str, intro: str, *, zone: ZoneInfo, printed_by: str,
                      printed_at: datetime) -> _RecordPDF:
    """The opening every certificate shares (CoA, release, destruction): fonts, a footer naming the
    document, page and who printed it when, the heading and an intro that says where times are."""
    from ..labels import find_label_fonts

    footer = (f"{footer_label} · page {{page}} of {{nb}} · printed "
              f"{local_time(printed_at, zone, '%Y-%m-%d %H:%M:%S')} by {printed_by}")
    pdf = _RecordPDF(find_label_fonts(), footer)
    pdf.set_title(heading.replace(" — ", ", "))
    pdf.set_author(printed_by)
    pdf.add_page()
    pdf.set_font("Doc", "B", 15)
    pdf.cell(0, 8, pdf.clean(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Doc", "", 8)
    pdf.multi_cell(0, 4, pdf.clean(f"{intro}Issued from cellbench. Times are shown in {zone.key} with their UTC offset."),
                   new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    return pdf
