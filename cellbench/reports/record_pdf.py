"""The executed batch record as A4 pages: every value with its limits and verdict, every change
after first entry beside the original, every signature, deviations and vials (record.BatchRecord)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ..labels import LabelFonts, find_label_fonts
from ..specifications import Parameter, unit_text
from .document import MARK, NOTE, OOS, PLAIN, STRUCK, RecordPDF, signature_text, text, when
from .record import BatchRecord, LotSignature, ParameterLine, SignatureView, ValueRow

VALUE_COLUMNS = ("Parameter", "Value", "Limits", "Verdict", "Comment / N/A reason", "Entered by, at")
VALUE_WIDTHS = (40, 32, 22, 20, 36, 36)


def shown(value: ValueRow | None, parameter: Parameter | None, zone: ZoneInfo) -> str:
    """A recorded value as a person reads it: a time in site time with its offset (stored as ISO
    text with its own offset), a unit as written ('5.2 × 10⁶ cells/mL')."""
    if value is None:
        return "(no value)"
    if value.value is not None and parameter is not None and parameter.type == "datetime":
        try:
            return when(datetime.fromisoformat(value.value), zone)
        except ValueError:
            return value.shown  # as stored: never hide what the record holds
    return unit_text(value.shown)


def _value_rows(line: ParameterLine, zone: ZoneInfo) -> list[list]:
    limits = unit_text(line.limits)
    if not line.rows:
        return [[line.label, {"text": "not recorded", "style": NOTE}, limits,
                 "not recorded" if line.required else "optional", "", ""]]
    rows = []
    for value in line.rows:
        label = line.label + ("\n(computed by cellbench)" if value.computed else "")
        label += f"\n{value.note.upper() if value.note.startswith('changed') else value.note}" if value.note else ""
        value_cell: dict = {"text": shown(value, line.parameter, zone)}
        verdict_cell: dict = {"text": value.verdict}
        if value.superseded:
            value_cell["style"] = verdict_cell["style"] = STRUCK
        elif value.out_of_limits:
            value_cell["style"] = verdict_cell["style"] = OOS
        rows.append([label, value_cell, limits, verdict_cell, value.remark, f"{value.by}\n{when(value.at, zone)}"])
    for change in line.changes:
        at = when(change.at, zone)
        before, after = shown(change.before, line.parameter, zone), shown(change.after, line.parameter, zone)
        rows.append([{"text": f"CHANGED AFTER FIRST ENTRY — {line.label}: {before} → "
                              f"{after}; by {change.by or 'cellbench'} at {at}. Reason: {change.reason}",
                      "colspan": 6, "style": MARK}])
    return rows


def _signature_line(pdf: RecordPDF, label: str, sig: SignatureView | None, zone: ZoneInfo) -> None:
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
              f"{when(printed_at, zone)} by {printed_by}")
    pdf = RecordPDF(fonts or find_label_fonts(), footer)
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
        ("Manufacturer", spec.product.manufacturer or "not named in this specification version"),
        ("Specification", f"{spec_row.product_code} version {spec_row.version} ({text(spec_row.status)})"),
        ("State", text(lot.state) + (f" — on hold: {lot.hold_reason}" if lot.hold_reason else "")),
        ("Started", f"{when(lot.created_at, zone)} by {record.started_by}"),
        ("Completed", when(record.completed_at, zone) or "not complete"),
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
            started = when(entry.started_at, zone)
            pdf.line_of([("B", f"{title} · " if title else ""),
                         ("", f"started {started} · state: {text(entry.state)}")])
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
        parameter_of = {id(c): line.parameter for s in record.steps for e in s.entries for line in e.lines
                        for c in line.changes}
        pdf.grid(("Where", "Original", "New", "By", "At", "Reason"), (50, 24, 24, 24, 24, 40),
                 [[c.where, {"text": shown(c.change.before, parameter_of.get(id(c.change)), zone), "style": STRUCK},
                   shown(c.change.after, parameter_of.get(id(c.change)), zone), c.change.by,
                   when(c.change.at, zone), c.change.reason] for c in record.corrections])
    else:
        pdf.line_of([("", "None: every value stands as first entered.")])

    pdf.heading("Deviations")
    if record.deviations:
        pdf.grid(("Number", "State", "Origin", "Severity", "Step", "Description", "Raised; closed"),
                 (22, 16, 18, 14, 22, 56, 38),
                 [[r.deviation.number, text(r.deviation.state), text(r.deviation.origin), r.deviation.severity,
                   r.deviation.step_code or "", r.deviation.description,
                   f"{r.raised_by or ''} {when(r.deviation.raised_at, zone)}"
                   + (f"\nclosed: {signature_text(r.closure, zone)[0]}" if r.closure else "")]
                  for r in record.deviations])
    else:
        pdf.line_of([("", "None.")])

    pdf.heading("Vials and their fates")
    if record.vials:
        pdf.line_of([("", "   ".join(f"{name[:1].upper()}{name[1:]}: {n}" for name, n in record.vial_counts.items()
                                     if name == "filled" or n))])
        pdf.grid(("Vial", "Storage position", "Fate", "Note", "Recorded"), (46, 40, 34, 36, 30),
                 [[v.code, v.storage_position or "", v.fate, v.fate_note or "",
                   when(v.fate_at, zone) if v.fate_at else ""] for v in record.vials])
    else:
        pdf.line_of([("", "None.")])

    pdf.heading("Signatures on the lot")
    _lot_signatures(pdf, record.lot_signatures, zone)
    return bytes(pdf.output())


def _lot_signatures(pdf: RecordPDF, lines: list[LotSignature], zone: ZoneInfo) -> None:
    """QA's reviews, the QP's certifications, the sponsor release and every other decision signed on
    the lot as a whole, oldest first; a voided one struck through with why."""
    if not lines:
        pdf.line_of([("", "None yet: no review, certification, release or other decision is signed on the lot.")])
    else:
        rows = []
        for line in lines:
            sig = line.signature
            look = {"style": STRUCK} if sig.invalidated_at else {}
            void = signature_text(sig, zone)[1]
            rows.append([{"text": line.label + (f"\n{void}" if void else ""), "style": MARK if void else PLAIN},
                         {"text": sig.signer_name, **look}, {"text": text(sig.meaning), **look},
                         {"text": when(sig.at, zone), **look}, line.note])
        pdf.grid(("Signed for", "Printed name", "Meaning", "Time", "Note"), (52, 30, 18, 36, 50), rows)
        pdf.ln(1)
    pdf.line_of([("", "The QC results and their review signatures are on the lot's certificate of analysis.")])
