"""The demo's preparer's record of every dose: the thaw end, both units checked against the kit,
the masking measure, a syringe per gland and its printed label, made through the service functions
between the clock's start and the first injection (demo.trial's `treat`); then the investigator's
scans at the bed."""
from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from .. import pharmacy, sealed, sitecodes, studies
from ..audit import Actor
from ..models import Visit


def record(session: Session, preparer: Actor, visit: Visit, at: Callable[[str], object], hour: int) -> None:
    """`at("hh:mm")` moves the story's clock on the treatment day."""
    ctx = pharmacy.context(session, visit)
    at(f"{hour:02d}:36")
    pharmacy.record_thaw_end(session, preparer, visit)
    at(f"{hour:02d}:38")
    for code in sealed.unit_codes(session, preparer, ctx.held_kit).values():
        pharmacy.scan_unit(session, preparer, visit, code, sealed.unit_codes)
    pharmacy.choose_masking(session, preparer, visit, studies.definition(ctx.study).presentation.masking_measures[0])
    for dose, minute in ((1, 42), (2, 44)):
        at(f"{hour:02d}:{minute}")
        pharmacy.draw_syringe(session, preparer, visit, dose, "1.0")
        pharmacy.count_label(session, preparer, visit, dose)  # printed: the demo keeps no PDF


def bedside(session: Session, investigator: Actor, visit: Visit, secret_key: str) -> None:
    """The investigator scans the participant's card, then each syringe label, at the bed."""
    ctx = pharmacy.context(session, visit)
    number = ctx.participant.randomisation_number or ""
    codes = [sitecodes.card_payload(ctx.study.code, number, secret_key)]
    codes += [sitecodes.syringe_payload(ctx.held_kit.number, dose, number, secret_key)
              for dose in range(1, ctx.study.doses_per_treatment + 1)]
    for code in codes:
        pharmacy.bedside_scan(session, investigator, visit, code, secret_key)
