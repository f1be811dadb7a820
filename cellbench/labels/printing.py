"""Label runs: printing the labels of real kits, and reconciling every label printed.

A label run takes kits (those of a blinded lot, or a list of kit numbers), prints their outer
(kit carton) or vial labels as an A4 sheet, single-label pages or ZPL, and records what was
printed. Afterwards the supply manager accounts for every label: printed = applied + spoiled +
destroyed. Printing the same kits again is a new run, so each run still balances on its own.

No arm anywhere. Labels are handled by blinded pharmacists, so an active and a placebo kit's
labels must differ only in kit number and QR code. This module therefore never imports the
sealed compartment or anything built on it (sealed, packaging, quarantine, lists) and reads only
what a blinded person may read: kits, their blinded lots and the study (tests/test_labelling.py
checks both the imports and the SQL it runs).

Reading runs (finding, listing, viewing them) is `runs`; its names are re-exported here, where
the pages and the API look for them (labelling.by_number, labelling.views, ...).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import CursorResult, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, inputs, kits, limits, qrpayload, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, DomainError, InvalidInput
from ..models import AuditEvent, BlindedLot, Kit, KitState, LabelRun, LabelRunKit, Role, Study, saved_id
from .fonts import LabelFontMissing
from .particulars import KitLabel, LabelKind, LabelStudy
from .runs import DEFAULT_STATES as DEFAULT_STATES
from .runs import RunView as RunView
from .runs import by_number as by_number
from .runs import kits_of as kits_of
from .runs import open_count as open_count
from .runs import runs as runs
from .runs import study_code_of_blinded_lot as study_code_of_blinded_lot
from .runs import view as view
from .runs import views as views
from .sheets import render_label_sheet_pdf, render_single_label_pdf
from .zpl import render_zpl

PRINTERS = (Role.supply_manager,)
READERS = (Role.supply_manager, Role.qa)
MAX_KITS_PER_RUN = 1000
OUTPUTS = {
    "sheet": "A4 sheet PDF",
    "single": "single-label PDF pages (label printer)",
    "zpl": "ZPL II (Zebra thermal printer)",
}
KINDS = {
    LabelKind.OUTER.value: "outer label (kit carton, full particulars)",
    LabelKind.VIAL.value: "vial labels (reduced set, one per dose)",
}
MEDIA_TYPES = {"sheet": "application/pdf", "single": "application/pdf", "zpl": "text/plain; charset=utf-8"}
EXTENSIONS = {"sheet": "pdf", "single": "pdf", "zpl": "zpl"}
# Kits that are gone or on their way to destruction get no new labels (the same for both arms).
# A planned kit is refused too, for having no blinded lot to print (kit_labels).
NO_LABELS = frozenset({KitState.withdrawn, KitState.administered, KitState.not_administered,
                       KitState.returned, KitState.damaged, KitState.missing, KitState.destroyed})
PRINTED_ACTION = "label run printed"


class LabelsUnavailable(DomainError):
    """The server cannot print labels (no usable label font): a set-up problem, not bad input."""

    status = 503


# --- labels of kits -----------------------------------------------------------------------------


def label_study(study: Study) -> LabelStudy:
    """What every label of the study prints, from the study as loaded: quantity, storage and
    manufacturer from its presentation, which both arms share (never from one arm's specification)."""
    definition = studies.definition(study)
    shared = definition.presentation
    return LabelStudy(
        trial_code=study.code, eu_ct_number=study.eu_ct_number, sponsor_name=study.sponsor_name,
        sponsor_address=study.sponsor_address, sponsor_phone=study.sponsor_phone,
        emergency_phone=study.emergency_phone, cells_per_vial=definition.label.cells_per_vial,
        volume_per_vial_ml=str(shared.fill_volume_ml), vials_per_kit=shared.vials_per_kit,
        languages=tuple(definition.study.label_languages), storage_max_c=shared.storage_max_c,
        manufacturer=shared.manufacturer,
    )


def kit_labels(session: Session, kit_rows: Iterable[Kit], secret_key: str, *,
               field: str = "kit_numbers") -> list[KitLabel]:
    """One label per kit, in the order given: its blinded lot code and that lot's expiry.

    A kit still planned has no blinded lot and so nothing to print as lot and expiry."""
    study_labels: dict[int, LabelStudy] = {}
    labels = []
    for kit in kit_rows:
        blinded = kits.blinded_lot_of(session, kit)
        if blinded is None:
            raise InvalidInput(f"Kit {kit.number} has no blinded lot yet (it is not packaged): it cannot be "
                               "labelled.", field=field)
        if kit.study_id not in study_labels:
            study_labels[kit.study_id] = label_study(studies.by_id(session, kit.study_id))
        labels.append(KitLabel(study_labels[kit.study_id], kit.number, qrpayload.make_payload(kit.number, secret_key),
                               blinded.code, blinded.expiry))
    return labels


# --- rendering ------------------------------------------------------------------------------------

def _render(labels: Sequence[KitLabel], kind: LabelKind, output: str, created_at: datetime) -> bytes:
    try:
        if output == "zpl":
            return render_zpl(labels, kind).encode("utf-8")
        # stamped with the run's own time, not the time of rendering: a second download of the
        # run gives the very same bytes (labels.py derives nothing else from the clock)
        render = render_label_sheet_pdf if output == "sheet" else render_single_label_pdf
        return render(labels, kind, creation_date=created_at)
    except LabelFontMissing as missing:
        raise LabelsUnavailable(f"Labels cannot be printed on this server: {missing}.") from None
    except ValueError as error:  # the study's particulars do not fit this label
        raise InvalidInput(f"The {kind.value} label cannot be printed: {error}.", field="kind") from None


def _vials_per_kit(study: Study) -> int:
    return studies.definition(study).presentation.vials_per_kit


def _labels_for_run(labels: list[KitLabel], kind: LabelKind, vials: int) -> list[KitLabel]:
    """Outer labels: one per kit. Vial labels: one per vial, each kit's together."""
    return labels if kind is LabelKind.OUTER else [label for label in labels for _ in range(vials)]


# --- input ----------------------------------------------------------------------------------------


def _choice(value: object, options: Iterable[str], field: str, what: str) -> str:
    text = str(getattr(value, "value", value) or "").strip().lower()
    options = list(options)
    if text not in options:
        raise InvalidInput(f"Choose the {what}: {', '.join(options)}.", field=field)
    return text


def _count(value: object, field: str) -> int:
    """A whole number of labels, 0 or more, as typed or as a number (True is not a number)."""
    number = inputs.whole(None if isinstance(value, bool) else value, field, f"number of {field} labels")
    if number < 0:
        raise InvalidInput(f"The number of {field} labels cannot be negative.", field=field)
    return number


def kit_number_list(text: str | Iterable[str] | None) -> list[str]:
    """Kit numbers as typed in a form (one a line, or separated by spaces or commas) or as a list."""
    if text is None:
        return []
    parts = re.split(r"[\s,;]+", text) if isinstance(text, str) else list(text)
    return [part.strip() for part in parts if part and part.strip()]


def _kits_of_list(session: Session, study: Study, numbers: list[str], blinded: BlindedLot | None) -> list[Kit]:
    found: dict[str, Kit] = {}
    for number in numbers:
        kit = kits.by_number(session, number, field="kit_numbers")
        if kit.study_id != study.id:
            raise InvalidInput(f"Kit {kit.number} belongs to another study.", field="kit_numbers")
        if blinded is not None and kit.blinded_lot_id != blinded.id:
            raise InvalidInput(f"Kit {kit.number} is not in blinded lot {blinded.code}.", field="kit_numbers")
        if KitState(kit.state) in NO_LABELS:
            raise InvalidInput(f"Kit {kit.number} is {kits.state_label(kit.state).lower()}: labels are printed "
                               "only for kits that are packaged or in use.", field="kit_numbers")
        found[kit.number] = kit
    return [found[number] for number in sorted(found)]


def _kits_of_lot(session: Session, blinded: BlindedLot) -> list[Kit]:
    rows = list(session.scalars(select(Kit).where(col(Kit.blinded_lot_id) == blinded.id,
                                                  col(Kit.state).in_([s.value for s in DEFAULT_STATES]))
                                .order_by(col(Kit.number))))
    if not rows:
        raise InvalidInput(f"Blinded lot {blinded.code} has no packaged or released kits to label; list the "
                           "kit numbers to relabel kits already shipped.", field="blinded_lot")
    return rows


def _run_number(session: Session) -> str:
    prefix = f"LR-{utcnow():%Y}-"
    last = session.scalar(select(func.max(col(LabelRun.number))).where(col(LabelRun.number).like(prefix + "%")))
    return f"{prefix}{(int(last.rsplit('-', 1)[1]) if last else 0) + 1:04d}"


# --- the run --------------------------------------------------------------------------------------


def print_run(session: Session, actor: Actor, study: Study, *, blinded_lot_code: str | None = None,
              kit_numbers: str | Iterable[str] | None = None, kind: object, output: object,
              secret_key: str) -> tuple[LabelRun, bytes, str]:
    """Print the labels of a blinded lot's packaged and released kits, or of the kits listed, and
    record the run. Returns the run, the output and its media type."""
    users.require_role(actor, *PRINTERS)
    label_kind = LabelKind(_choice(kind, KINDS, "kind", "label kind"))
    output = _choice(output, OUTPUTS, "output", "output")
    blinded = None
    if (blinded_lot_code or "").strip():
        blinded = kits.blinded_lot_by_code(session, blinded_lot_code)
        if blinded.study_id != study.id:
            raise InvalidInput(f"Blinded lot {blinded.code} belongs to another study.", field="blinded_lot")
    numbers = kit_number_list(kit_numbers)
    if len(set(numbers)) > MAX_KITS_PER_RUN:
        raise InvalidInput(f"A run labels at most {MAX_KITS_PER_RUN} kits.", field="kit_numbers")
    if numbers:
        chosen = _kits_of_list(session, study, numbers, blinded)
    elif blinded is not None:
        chosen = _kits_of_lot(session, blinded)
    else:
        raise InvalidInput("Choose a blinded lot, or list the kit numbers to label.", field="blinded_lot")
    if len(chosen) > MAX_KITS_PER_RUN:
        raise InvalidInput(f"A run labels at most {MAX_KITS_PER_RUN} kits; this would be {len(chosen)}.",
                           field="kit_numbers" if numbers else "blinded_lot")
    labels = _labels_for_run(kit_labels(session, chosen, secret_key), label_kind, _vials_per_kit(study))
    lot_ids = {kit.blinded_lot_id for kit in chosen}
    if blinded is None and len(lot_ids) == 1:
        blinded = kits.blinded_lot_of(session, chosen[0])
    created_at = utcnow().replace(microsecond=0)
    data = _render(labels, label_kind, output, created_at)

    run = LabelRun(number=_run_number(session), study_id=saved_id(study),
                   blinded_lot_id=blinded.id if blinded else None, kind=label_kind.value, output=output,
                   printed=len(labels), created_by=kits.maker_id(actor), created_at=created_at)
    session.add(run)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("Another label run was started at the same moment; try again.", field="number") from None
    # One executemany: 500 ORM objects cost ten times as much and nothing reads them back here.
    session.execute(insert(LabelRunKit), [{"run_id": run.id, "kit_id": kit.id} for kit in chosen])
    audit.record(session, actor, PRINTED_ACTION, "label_run", run.number, new={
        "study": study.code, "blinded_lot": blinded.code if blinded else None, "kind": run.kind,
        "output": run.output, "kits": len(chosen), "labels": run.printed,
        "output_sha256": hashlib.sha256(data).hexdigest()})
    # The kits, in the chain too (the run's kit links are not), as plain words that wrap on a page.
    audit.record(session, actor, "label run kits", "label_run", run.number, field="kits",
                 new=" ".join(kit.number for kit in chosen))
    return run, data, MEDIA_TYPES[output]


def _recorded_sha256(session: Session, run: LabelRun) -> str | None:
    event = session.scalars(select(AuditEvent).where(col(AuditEvent.entity_type) == "label_run",
                                                     col(AuditEvent.entity_id) == run.number,
                                                     col(AuditEvent.action) == PRINTED_ACTION)
                            .order_by(col(AuditEvent.seq))).first()
    return json.loads(event.new_value).get("output_sha256") if event and event.new_value else None


def rendered(session: Session, actor: Actor, run: LabelRun, secret_key: str) -> tuple[bytes, str]:
    """The run's output again, byte for byte, for a second download (logged). Not a reprint: the
    labels are the same run's and are reconciled with it. If they could no longer come out the
    same (the study's label text, a blinded lot's expiry or the signing key changed since), the
    download is refused and a new run is the way to print them."""
    users.require_role(actor, *READERS)
    kind = LabelKind(run.kind)
    labels = _labels_for_run(kit_labels(session, kits_of(session, run), secret_key), kind,
                             _vials_per_kit(studies.by_id(session, run.study_id)))
    data = _render(labels, kind, run.output, run.created_at.replace(microsecond=0))
    digest = hashlib.sha256(data).hexdigest()
    if digest != _recorded_sha256(session, run) or len(labels) != run.printed:
        raise Conflict(f"The labels of run {run.number} would not come out as they were printed: the study's "
                       "label particulars, a blinded lot's expiry or the label-signing key has changed since. "
                       "Print a new run instead.", field="number")
    audit.record(session, actor, "label run downloaded", "label_run", run.number, field="output",
                 new={"output": run.output, "output_sha256": digest})
    return data, MEDIA_TYPES[run.output]


def filename(run: LabelRun) -> str:
    return f"{run.number}-{run.kind}.{EXTENSIONS[run.output]}"


def reconcile(session: Session, actor: Actor, run: LabelRun, applied: object, spoiled: object, destroyed: object,
              reason: str | None = None) -> LabelRun:
    """Account for every label of the run: printed = applied + spoiled + destroyed. Once only.

    Spoiled labels (misprinted, damaged, stuck wrongly) need a reason; surplus labels destroyed
    unused do not."""
    users.require_role(actor, *PRINTERS)
    if run.reconciled_at is not None:
        raise InvalidInput(f"Label run {run.number} was reconciled on {run.reconciled_at:%Y-%m-%d}; it cannot be "
                           "reconciled again.", field="number")
    counts = {"applied": _count(applied, "applied"), "spoiled": _count(spoiled, "spoiled"),
              "destroyed": _count(destroyed, "destroyed")}
    total = sum(counts.values())
    if total != run.printed:
        difference = run.printed - total
        gap = (f"{difference} label{'s are' if difference != 1 else ' is'} not accounted for" if difference > 0
               else f"that is {-difference} more than were printed")
        raise InvalidInput(f"{run.printed} labels were printed, but applied + spoiled + destroyed = "
                           f"{counts['applied']} + {counts['spoiled']} + {counts['destroyed']} = {total}: {gap}.",
                           field="applied")
    why = limits.text(reason, "reason", "reason", "reason")
    if counts["spoiled"] and why is None:
        raise InvalidInput("Say why labels were spoiled.", field="reason")
    now = utcnow()
    changed = session.execute(update(LabelRun).where(col(LabelRun.id) == run.id, col(LabelRun.reconciled_at).is_(None))
                              .values(reconciled_at=now, reconciled_by=kits.maker_id(actor), **counts))
    if cast(CursorResult, changed).rowcount != 1:
        raise Conflict(f"Someone else reconciled label run {run.number} at the same moment. Reload to see it.",
                       field="number")
    session.refresh(run)
    audit.record(session, actor, "label run reconciled", "label_run", run.number, field="counts",
                 new={"printed": run.printed, **counts}, reason=why)
    return run
