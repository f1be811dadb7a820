"""The bedside check: before a dose goes in, the investigator scans the participant's card, then
the label of each syringe, and cellbench says whether they belong to this visit.

A card passes when its signature holds and its study and randomisation number are the visit's
participant's; a syringe label passes when its signature holds, its kit is the kit dispensed for
this visit, its randomisation number is the participant's, its dose is not yet given, and the
preparer's record shows that dose's syringe drawn up and its label printed. Each
passed scan is a `BedsideCheck` row with its audit event, and recording a dose's administration
needs a passed check of that dose's syringe (`syringe_not_checked`, asked by `administration`).

A refused scan is a `RecordedRefusal`: the use case rolls back, and the refusal is written to the
audit trail afterwards, so a wrong syringe brought to the bed leaves a trace even though nothing
else changes. Its message names only what was scanned and what the visit expects (numbers, a
dose, a gland), never an arm: the investigator is blinded, and a card, a syringe label and every
answer here are the same for both arms except their kit numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, sitecodes
from ..audit import Actor
from ..clock import utcnow
from ..custody import key, person
from ..errors import InvalidInput, RecordedRefusal
from ..models import Administration, BedsideCheck, PreparationSyringe, Visit
from ..qrpayload import PAYLOAD_PREFIX, PayloadRejected
from .lifecycle import authorise
from .records import VisitContext, gland_names, gland_short, lock, participant_number

CARD, SYRINGE = "card", "syringe"
PASSED, REFUSED = "bedside scan passed", "bedside scan refused"  # the audit events' actions
FIELD = "bedside"  # the field an administration without a passed bedside check names


@dataclass(frozen=True)
class ScanResult:
    """One line for the bedside page: what was scanned, and that it matches this visit."""

    kind: str  # CARD or SYRINGE
    message: str
    dose: int | None = None


def scan(session: Session, actor: Actor, visit: Visit, code: str | None, secret_key: str) -> ScanResult:
    """One scan at the bedside, card or syringe label (told apart by their prefixes), checked
    against this visit. A scan that does not match is refused and recorded."""
    text = (code or "").strip()
    if not text:
        raise InvalidInput("Scan the participant's card or a syringe label.", field="code")
    ctx = lock(session, visit, None)
    # The scan is the first step of recording the administration: the same people, visits and states.
    authorise(session, actor, ctx, "administer", field="code")
    prefix = text.upper().split(":", 1)[0]
    if prefix == sitecodes.CARD_PREFIX:
        return _card(session, actor, ctx, text, secret_key)
    if prefix == sitecodes.SYRINGE_PREFIX:
        return _syringe(session, actor, ctx, text, secret_key)
    what = "a kit label" if prefix == PAYLOAD_PREFIX else "not a participant card or syringe label"
    raise _refusal(actor, ctx, "code", {"scanned": text[:60]},
                   f"This is {what}. Scan the participant's card, then each syringe label.")


def _card(session: Session, actor: Actor, ctx: VisitContext, text: str, secret_key: str) -> ScanResult:
    try:
        card = sitecodes.verify_card(text, secret_key)
    except PayloadRejected as bad:
        raise _refusal(actor, ctx, CARD, {"scanned": "participant card"}, _sentence(bad)) from None
    scanned = {"study": card.study, "randomisation_number": card.randomisation_number}
    expected = _number(ctx)
    if (card.study, card.randomisation_number) != (ctx.study.code.upper(), expected):
        raise _refusal(actor, ctx, CARD, scanned,
                       f"This card is for participant {card.randomisation_number} in {card.study}; this visit is "
                       f"participant {participant_number(ctx.participant)} in {ctx.study.code}. Do not go on.")
    _passed(session, actor, ctx, CARD, None, scanned)
    return ScanResult(CARD, f"Card: participant {card.randomisation_number} in {card.study}, as this visit. "
                            "Now scan each syringe label.")


def _syringe(session: Session, actor: Actor, ctx: VisitContext, text: str, secret_key: str) -> ScanResult:
    try:
        label = sitecodes.verify_syringe(text, secret_key)
    except PayloadRejected as bad:
        raise _refusal(actor, ctx, SYRINGE, {"scanned": "syringe label"}, _sentence(bad)) from None
    if not _card_scanned(session, ctx):
        raise InvalidInput("Scan the participant's card first, then each syringe label.", field="code")
    kit, dose = ctx.held_kit, label.dose
    scanned = {"kit": label.kit_number, "dose": dose, "randomisation_number": label.randomisation_number}
    if why := _syringe_mismatch(session, ctx, label):
        raise _refusal(actor, ctx, SYRINGE, scanned, why)
    _passed(session, actor, ctx, SYRINGE, dose, scanned)
    gland, short = gland_names(ctx.study)[dose - 1], gland_short(ctx.study, dose)
    return ScanResult(SYRINGE, f"Syringe label: kit {kit.number}, dose {dose} ({gland}), participant "
                               f"{label.randomisation_number}, as this visit. You may give the {short} dose and "
                               "record it.", dose)


def _syringe_mismatch(session: Session, ctx: VisitContext, label: sitecodes.SyringeLabel) -> str | None:
    """Why this syringe must not go into this participant now, naming only what was scanned."""
    kit, dose = ctx.held_kit, label.dose
    if label.kit_number != kit.number:
        return (f"This syringe label is for kit {label.kit_number}, dose {dose}; this visit's kit is {kit.number}. "
                "Do not give it.")
    if label.randomisation_number != _number(ctx):
        return (f"This syringe label is for participant {label.randomisation_number}; this visit is participant "
                f"{participant_number(ctx.participant)}. Do not give it.")
    if dose > ctx.study.doses_per_treatment:
        return (f"This syringe label is for dose {dose}; a treatment in {ctx.study.code} has "
                f"{ctx.study.doses_per_treatment} doses. Do not give it.")
    given = session.scalar(select(col(Administration.id)).where(col(Administration.visit_id) == ctx.visit.id,
                                                                col(Administration.dose) == dose))
    if given is not None:
        return (f"Dose {dose} ({gland_names(ctx.study)[dose - 1]}) of kit {kit.number} is already recorded as "
                "administered. Do not give it again.")
    return not_drawn_up(session, ctx, dose)


def not_drawn_up(session: Session, ctx: VisitContext, dose: int) -> str | None:
    """Why a syringe label cannot belong to this visit's preparation: the preparer has not recorded
    that dose's syringe, or not printed its label. A label whose signature holds but which no
    preparer's record printed was made outside the preparation (a copy, a test print)."""
    printed = session.scalar(select(col(PreparationSyringe.labels_printed))
                             .where(col(PreparationSyringe.visit_id) == ctx.visit.id,
                                    col(PreparationSyringe.dose) == dose))
    if printed:
        return None
    return (f"The preparer's record has no syringe with a printed label for dose {dose} "
            f"({gland_names(ctx.study)[dose - 1]}) of this visit. Do not give it; ask the preparer.")


def syringe_not_checked(session: Session, ctx: VisitContext, dose: int) -> str | None:
    """Why a dose's administration may not be recorded yet: its syringe label has not passed the
    bedside check for this visit and its kit."""
    checked = select(col(BedsideCheck.id)).where(col(BedsideCheck.visit_id) == ctx.visit.id,
                                                 col(BedsideCheck.kind) == SYRINGE,
                                                 col(BedsideCheck.kit_id) == key(ctx.held_kit),
                                                 col(BedsideCheck.dose) == dose)
    if session.scalar(checked.limit(1)) is not None:
        return None
    gland = gland_short(ctx.study, dose)
    return (f"The {gland} dose has not passed the bedside check: scan the participant's card and the {gland} "
            "syringe label at the bedside first.")


def checks(session: Session, visit: Visit) -> list[BedsideCheck]:
    """The passed scans of a visit, first first (the bedside page lists them)."""
    return list(session.scalars(select(BedsideCheck).where(col(BedsideCheck.visit_id) == visit.id)
                                .order_by(col(BedsideCheck.id))))


def _card_scanned(session: Session, ctx: VisitContext) -> bool:
    return session.scalar(select(col(BedsideCheck.id)).where(col(BedsideCheck.visit_id) == ctx.visit.id,
                                                             col(BedsideCheck.kind) == CARD).limit(1)) is not None


def _number(ctx: VisitContext) -> str:
    # the signed codes carry numbers in capitals (sitecodes): compare like with like
    return (ctx.participant.randomisation_number or "").upper()


def _sentence(bad: PayloadRejected) -> str:
    text = str(bad)
    return f"{text[:1].upper()}{text[1:]}."


def _passed(session: Session, actor: Actor, ctx: VisitContext, kind: str, dose: int | None,
            scanned: dict[str, Any]) -> None:
    session.add(BedsideCheck(visit_id=key(ctx.visit), kind=kind, kit_id=key(ctx.held_kit) if dose else None,
                             dose=dose, by_user=person(actor), at=utcnow()))
    session.flush()
    field = CARD if dose is None else f"syringe {gland_short(ctx.study, dose)}"
    audit.record(session, actor, PASSED, "visit", ctx.ref, field=field, new=scanned)


def _refusal(actor: Actor, ctx: VisitContext, field: str, scanned: dict[str, Any], message: str) -> RecordedRefusal:
    """The refusal, and what it leaves once the scan's transaction has rolled back: an audit event
    under the visit with what was scanned and why it was refused."""
    ref = ctx.ref

    def record(session: Session) -> None:
        audit.record(session, actor, REFUSED, "visit", ref, field=field, new=scanned, reason=message)

    return RecordedRefusal(message, "code", record)

