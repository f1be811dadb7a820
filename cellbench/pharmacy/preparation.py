"""The preparer's record: what the one unblinded site person does between starting the clock
(administration.start_preparation) and handing the syringes over. One use case per function: the
thaw (ASC) or preparation (saline) ended, each unit of the kit scanned and found to be the kit's
own, one syringe per gland drawn up with its volume, the masking measure used (one of the study
file's), and a label printed for each syringe.

Blinding: the preparer is unblinded, yet every field, step, message and label here has the same
shape for both arms, so that nothing handed over (a syringe, its label, a page left open) tells
anyone the arm. Which units a kit holds is the sealed compartment's alone: this package never reads
it (its doors aside), so the check of a scanned unit is handed in by the caller (`UnitReader`:
sealed.unit_codes, a logged read, from the preparer's unblinded-only routes), and no unit code is
stored outside the compartment's log.

Concurrency: each use case locks the visit row first (records.lock), then checks; the unique
constraints (one scan per unit, one syringe per gland) are the backstop: the loser gets a Conflict.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, inputs, studies, users
from ..audit import Actor
from ..clock import utcnow, zone
from ..custody import key, person
from ..errors import Conflict, InvalidInput
from ..labels.syringe import SyringeLabelText, render_syringe_labels_pdf
from ..models import Kit, Preparation, PreparationSyringe, PreparationUnit, Visibility, Visit
from ..sitecodes import syringe_payload
from .administration import CLOCK_SKEW, parse_gland
from .lifecycle import FINAL, PREPARERS, VisitState, study_locked, visit_label, visit_state
from .records import VisitContext, context, gland_names, gland_short, hhmm, lock, participant_number

# The compartment's read of a kit's unit codes by position (sealed.unit_codes), handed in by the caller.
UnitReader = Callable[[Session, Actor, Kit], dict[int, str]]
RECORDING = frozenset({VisitState.in_preparation, VisitState.administering})


# --- the rules: each says why it blocks -----------------------------------------------------------------


def _recordable(session: Session, actor: Actor, ctx: VisitContext, field: str) -> Preparation:
    """The visit's preparation record, if this person may add to it now (after the visit is locked)."""
    users.require_role(actor, *PREPARERS)
    users.require_scope(actor, ctx.site, ctx.study)
    if why := study_locked(session, ctx.study):
        raise InvalidInput(why, field="study")
    state = visit_state(ctx.visit)
    if state in FINAL:  # someone closed the visit in the meantime
        raise Conflict(f"{_who(ctx)} is {visit_label(ctx.visit).lower()}: the preparation record is closed.",
                       field=field)
    if state not in RECORDING:
        raise InvalidInput(f"{_who(ctx)} is {visit_label(ctx.visit).lower()}: scan the kit at the preparation "
                           "station to start its clock first.", field=field)
    record = session.get(Preparation, key(ctx.visit))
    if record is None:  # begun with the first entry after the clock started
        record = Preparation(visit_id=key(ctx.visit), kit_id=key(ctx.held_kit))
        session.add(record)
        session.flush()
    return record


def _who(ctx: VisitContext) -> str:
    return f"{ctx.who[0].upper()}{ctx.who[1:]}"


def units_expected(ctx: VisitContext) -> int:
    """How many units a kit holds: the study's presentation, the same for both arms."""
    return studies.definition(ctx.study).presentation.vials_per_kit


def max_volume_ml(ctx: VisitContext) -> float:
    """A gland's syringe holds at most what its units were filled with."""
    presentation = studies.definition(ctx.study).presentation
    return presentation.fill_volume_ml * (presentation.vials_per_kit // ctx.study.doses_per_treatment)


def _scanned(session: Session, visit: Visit) -> list[PreparationUnit]:
    return list(session.scalars(select(PreparationUnit).where(col(PreparationUnit.visit_id) == visit.id)
                                .order_by(col(PreparationUnit.position))))


def _syringes(session: Session, visit: Visit) -> list[PreparationSyringe]:
    return list(session.scalars(select(PreparationSyringe).where(col(PreparationSyringe.visit_id) == visit.id)
                                .order_by(col(PreparationSyringe.dose))))


def _added(session: Session, row: PreparationUnit | PreparationSyringe, taken: str, field: str) -> None:
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(taken, field=field) from None


# --- the use cases ----------------------------------------------------------------------------------------


def record_thaw_end(session: Session, actor: Actor, visit: Visit, ended_at: object = None) -> Preparation:
    """The thaw (ASC) or preparation (saline) ended: now, or the time typed. Once."""
    ctx = lock(session, visit, None)
    record = _recordable(session, actor, ctx, "thaw_ended_at")
    if record.thaw_ended_at is not None:
        raise Conflict(f"The thaw or preparation end is already recorded ({hhmm(record.thaw_ended_at, ctx.site)}).",
                       field="thaw_ended_at")
    now = utcnow()
    typed: datetime | str = ended_at if isinstance(ended_at, datetime) else str(ended_at or "").strip() or now
    at = inputs.moment(typed, "thaw_ended_at", "end of the thaw or preparation", zone(ctx.site))
    started = ctx.visit.preparation_started_at
    assert started is not None, "a visit in preparation has its start"
    if at > now + CLOCK_SKEW:
        raise InvalidInput("The end of the thaw or preparation is in the future.", field="thaw_ended_at")
    if at < started.replace(second=0, microsecond=0):
        raise InvalidInput(f"The end of the thaw or preparation is before it started ({hhmm(started, ctx.site)}).",
                           field="thaw_ended_at")
    record.thaw_ended_at, record.thaw_ended_by = at, person(actor)
    session.flush()
    audit.record(session, actor, "thaw or preparation ended", "visit", ctx.ref, field="thaw_ended_at", new=at)
    return record


def scan_unit(session: Session, actor: Actor, visit: Visit, code: str | None, units: UnitReader) -> PreparationUnit:
    """A unit of the kit scanned: it must be one of the kit's own (checked in the compartment) and
    not scanned before. A stranger is refused, naming the field, and nothing is written."""
    ctx = lock(session, visit, None)
    _recordable(session, actor, ctx, "unit_code")
    scanned = (code or "").strip().upper()
    if not scanned:
        raise InvalidInput("Scan or type the code on the unit (vial).", field="unit_code")
    if len(scanned) > 40:
        raise InvalidInput("A unit's code is at most 40 characters: scan it again.", field="unit_code")
    kit = ctx.held_kit
    position = next((p for p, own in units(session, actor, kit).items() if own == scanned), None)
    if position is None:
        raise InvalidInput(f"Unit {scanned} is not one of kit {kit.number}'s units: set it aside and scan the "
                           "units that came in this kit.", field="unit_code")
    row = PreparationUnit(visit_id=key(ctx.visit), position=position, scanned_at=utcnow(), by_user=person(actor))
    _added(session, row, f"Unit {position} of kit {kit.number} is already scanned.", "unit_code")
    audit.record(session, actor, "unit checked", "visit", ctx.ref, field=f"unit {position}",
                 new=f"one of kit {kit.number}'s units")
    # which unit it was is kept where blinded people never look (its code names its lot)
    audit.record(session, actor, "unit scanned", "visit", ctx.ref, field=f"unit {position}", new=scanned,
                 visibility=Visibility.unblinded)
    return row


def draw_syringe(session: Session, actor: Actor, visit: Visit, gland: object, volume_ml: object) -> PreparationSyringe:
    """One gland's syringe drawn up, with its volume: after the thaw and every unit checked. Once."""
    ctx = lock(session, visit, None)
    record = _recordable(session, actor, ctx, "gland")
    dose = parse_gland(ctx.study, gland)
    most = max_volume_ml(ctx)
    volume = inputs.number(volume_ml, "volume_ml", "volume drawn up in mL", maximum=most)
    if volume <= 0:
        raise InvalidInput(f"The volume drawn up is more than 0 and at most {most:g} mL.", field="volume_ml")
    if record.thaw_ended_at is None:
        raise InvalidInput("Record the end of the thaw or preparation first.", field="thaw_ended_at")
    if len(_scanned(session, ctx.visit)) < units_expected(ctx):
        raise InvalidInput(f"Scan every unit of kit {ctx.held_kit.number} first "
                           f"({len(_scanned(session, ctx.visit))} of {units_expected(ctx)}).", field="unit_code")
    name = gland_names(ctx.study)[dose - 1]
    row = PreparationSyringe(visit_id=key(ctx.visit), dose=dose, volume_ml=volume, drawn_at=utcnow(),
                             by_user=person(actor))
    _added(session, row, f"The syringe for the {name} is already drawn up.", "gland")
    audit.record(session, actor, "syringe drawn up", "visit", ctx.ref, field=gland_short(ctx.study, dose),
                 new={"volume_ml": volume})
    return row


def choose_masking(session: Session, actor: Actor, visit: Visit, measure: str | None) -> Preparation:
    """The masking measure used, one of the study file's [presentation] masking_measures. Once."""
    ctx = lock(session, visit, None)
    record = _recordable(session, actor, ctx, "masking_measure")
    listed = studies.definition(ctx.study).presentation.masking_measures
    typed = (measure or "").strip()
    chosen = next((m for m in listed if m.lower() == typed.lower()), None)
    if chosen is None:
        raise InvalidInput(f"Choose a masking measure the study lists: {'; '.join(listed) or 'it lists none'}.",
                           field="masking_measure")
    if record.masking_measure is not None:
        raise Conflict(f"The masking measure is already recorded: {record.masking_measure}.", field="masking_measure")
    record.masking_measure, record.masking_by, record.masking_at = chosen, person(actor), utcnow()
    session.flush()
    audit.record(session, actor, "masking measure recorded", "visit", ctx.ref, field="masking_measure", new=chosen)
    return record


def print_label(session: Session, actor: Actor, visit: Visit, gland: object, secret_key: str) -> bytes:
    """The label of one gland's syringe as a PDF at its exact size, counted and audited (a reprint
    is a second copy on the record). The same for both arms but for the kit number."""
    ctx, dose, now = count_label(session, actor, visit, gland)
    return render_syringe_labels_pdf(syringe_label(ctx, dose, secret_key), creation_date=now)


def count_label(session: Session, actor: Actor, visit: Visit, gland: object) -> tuple[VisitContext, int, datetime]:
    """One printed copy of a gland's syringe label on the record, audited: what print_label does
    before it renders (the demo's story prints labels it never shows, and rendering them was a tenth
    of its build). Returns the visit, the dose and the time printed."""
    ctx = lock(session, visit, None)
    _recordable(session, actor, ctx, "gland")
    dose = parse_gland(ctx.study, gland)
    syringe = session.scalars(select(PreparationSyringe).where(col(PreparationSyringe.visit_id) == ctx.visit.id,
                                                               col(PreparationSyringe.dose) == dose)).first()
    if syringe is None:
        raise InvalidInput(f"Draw up the syringe for the {gland_names(ctx.study)[dose - 1]} first.", field="gland")
    now = utcnow()
    syringe.labels_printed += 1
    syringe.label_printed_at = now
    session.flush()
    audit.record(session, actor, "syringe label printed", "visit", ctx.ref, field=gland_short(ctx.study, dose),
                 new={"copy": syringe.labels_printed})
    return ctx, dose, now


def syringe_label(ctx: VisitContext, dose: int, secret_key: str) -> SyringeLabelText:
    number = participant_number(ctx.participant)
    assert ctx.visit.use_by is not None, "a syringe is drawn after the clock started"
    return SyringeLabelText(study_code=ctx.study.code, participant=number, gland=gland_names(ctx.study)[dose - 1],
                            kit_number=ctx.held_kit.number, use_by=hhmm(ctx.visit.use_by, ctx.site),
                            qr_payload=syringe_payload(ctx.held_kit.number, dose, number, secret_key))


# --- what the preparer's pages show ------------------------------------------------------------------------


@dataclass(frozen=True)
class SyringeView:
    dose: int
    gland: str
    short: str
    volume_ml: float | None
    drawn_at: datetime | None
    labels_printed: int


@dataclass(frozen=True)
class PreparationView:
    """The preparation record of a visit as the preparer's pages show it: the same shape for both arms."""

    started_at: datetime | None
    use_by: datetime | None
    clock_running: bool  # stopped once the visit is closed: every gland recorded, or not administered
    thaw_ended_at: datetime | None
    units_scanned: list[tuple[int, datetime]]
    units_expected: int
    syringes: list[SyringeView]
    masking_measure: str | None
    masking_measures: tuple[str, ...]
    max_volume_ml: float
    open: bool  # the preparer may still add to it
    state: str  # the visit's, for the stopped clock's words
    state_label: str

    @property
    def complete(self) -> bool:
        return (self.thaw_ended_at is not None and len(self.units_scanned) == self.units_expected
                and all(s.volume_ml is not None and s.labels_printed for s in self.syringes)
                and self.masking_measure is not None)


def record_view(session: Session, visit: Visit) -> PreparationView:
    ctx = context(session, visit)
    record = session.get(Preparation, visit.id)
    drawn = {s.dose: s for s in _syringes(session, visit)}
    syringes = [SyringeView(dose, name, name.split(" ")[0], drawn[dose].volume_ml if dose in drawn else None,
                            drawn[dose].drawn_at if dose in drawn else None,
                            drawn[dose].labels_printed if dose in drawn else 0)
                for dose, name in enumerate(gland_names(ctx.study), 1)]
    state = visit_state(visit)
    return PreparationView(
        started_at=visit.preparation_started_at, use_by=visit.use_by,
        clock_running=visit.use_by is not None and state not in FINAL,
        thaw_ended_at=record.thaw_ended_at if record else None,
        units_scanned=[(u.position, u.scanned_at) for u in _scanned(session, visit)],
        units_expected=units_expected(ctx), syringes=syringes,
        masking_measure=record.masking_measure if record else None,
        masking_measures=studies.definition(ctx.study).presentation.masking_measures,
        max_volume_ml=max_volume_ml(ctx), open=state in RECORDING, state=state.value, state_label=visit_label(visit))
