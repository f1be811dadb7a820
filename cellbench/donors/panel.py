"""The eligibility panel of a donation: test results recorded and corrected (never overwritten
silently), and the small named rules that say why a donation cannot yet be signed eligible."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, clock, inputs, limits, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, Forbidden, InvalidInput
from ..models import Donation, Donor, DonorTest, Eligibility, Role
from .common import REQUIRED_PANEL, RESULTS, SAMPLE_WINDOW_DAYS, PanelRowError
from .donations import donor_of


@dataclass
class TestEntry:
    """One row of the panel as entered: a test code from REQUIRED_PANEL and its result."""

    __test__ = False  # not a pytest test class

    test: str
    result: str | None
    sample_date: date | str | None
    laboratory: str | None


def tests_of(session: Session, donation: Donation) -> dict[str, DonorTest]:
    """The donation's recorded results by test code, in panel order."""
    rows = {t.test: t for t in session.scalars(select(DonorTest).where(col(DonorTest.donation_id) == donation.id))}
    return {code: rows[code] for code in sorted(rows, key=_panel_position)}


def _panel_position(code: str) -> int:
    return list(REQUIRED_PANEL).index(code) if code in REQUIRED_PANEL else len(REQUIRED_PANEL)


def sample_window(donation: Donation) -> tuple[date, date]:
    return donation.donated_on, donation.donated_on + timedelta(days=SAMPLE_WINDOW_DAYS)


def _lock_undecided(session: Session, donation: Donation) -> Donation:
    """Lock the donation row, then make sure no decision froze its results. On PostgreSQL a QA
    decision and a test entry on the same donation therefore run one after the other, so a signature
    never covers results that changed while it was being given."""
    locked = session.scalars(select(Donation).where(col(Donation.id) == donation.id).with_for_update()
                             .execution_options(populate_existing=True)).one()
    if Eligibility(locked.eligibility) is not Eligibility.pending:
        raise Conflict(f"Donation {locked.identifier} was decided {Eligibility(locked.eligibility).value}: its test "
                       "results can no longer change (the signed decision covers them).", field="donation")
    return locked


def _typed(value: str | None) -> str:
    # A row's fields are checked with the row named (PanelRowError), so only trimmed here.
    return (value or "").strip()


def _clean(donation: Donation, entry: TestEntry, today: date) -> tuple[str, date, str]:
    code = entry.test
    name = REQUIRED_PANEL.get(code)
    if name is None:
        raise PanelRowError(f"Unknown test '{code}'. The panel is: {', '.join(REQUIRED_PANEL.values())}.", "test", code)
    result = _typed(entry.result).lower()
    if result not in RESULTS:
        raise PanelRowError(f"{name}: choose the result ({', '.join(RESULTS)}).", "result", code)
    try:
        sampled = inputs.past_day(entry.sample_date, "sample_date", "sample date")
    except InvalidInput as error:
        raise PanelRowError(f"{name}: {error.message}", "sample_date", code) from None
    first, last = sample_window(donation)
    if not first <= sampled <= last:
        when = "before the donation" if sampled < first else f"more than {SAMPLE_WINDOW_DAYS} days after the donation"
        raise PanelRowError(f"{name}: the sample date {sampled.isoformat()} is {when} ({first.isoformat()}). "
                            f"Samples are taken at donation or within {SAMPLE_WINDOW_DAYS} days after it "
                            f"({first.isoformat()} to {last.isoformat()}).", "sample_date", code)
    if sampled > today:
        raise PanelRowError(f"{name}: the sample date {sampled.isoformat()} is in the future.", "sample_date", code)
    laboratory = _typed(entry.laboratory)
    if not laboratory:
        raise PanelRowError(f"{name}: name the laboratory that tested the sample.", "laboratory", code)
    if len(laboratory) > 200:
        raise PanelRowError(f"{name}: the laboratory name is at most 200 characters.", "laboratory", code)
    return result, sampled, laboratory


def record_tests(session: Session, actor: Actor, donation: Donation, entries: Iterable[TestEntry],
                 reason: str | None = None, *, today: date | None = None) -> list[DonorTest]:
    """Record eligibility test results, one or the whole panel at once; returns the rows changed.

    A row the same as the recorded one changes nothing. A recorded result is never silently
    overwritten: a different value is a correction, which needs a reason and is audited with the
    old and the new value of each field (the audit trail keeps every earlier value). A row with
    no result is skipped unless a result was recorded for it: results are never removed.
    """
    users.require_role(actor, Role.operator)
    if actor.user_id is None:
        raise Forbidden("Test results are recorded by a person.")
    recorder = actor.user_id
    limits.text(reason, "reason", "reason for the correction", "reason")
    donation = _lock_undecided(session, donation)
    assert donation.id is not None  # locked above: a stored row
    today = today or clock.today()
    recorded = tests_of(session, donation)
    changed: list[DonorTest] = []
    seen: set[str] = set()
    for entry in entries:
        code = entry.test
        if code in seen:
            raise PanelRowError(f"{REQUIRED_PANEL.get(code, code)} is entered twice.", "test", code)
        seen.add(code)
        existing = recorded.get(code)
        if not _typed(entry.result) and existing is None:
            continue
        if not _typed(entry.result):
            raise PanelRowError(f"{REQUIRED_PANEL[code]}: a recorded result cannot be removed; correct it instead.",
                                "result", code)
        result, sampled, laboratory = _clean(donation, entry, today)
        new = {"result": result, "sample_date": sampled, "laboratory": laboratory}
        if existing is None:
            row = DonorTest(donation_id=donation.id, test=code, result=result, sample_date=sampled,
                            laboratory=laboratory, recorded_by=recorder, recorded_at=utcnow())
            session.add(row)
            _flush(session)  # one row at a time: see _flush
            audit.record(session, actor, "donor test recorded", "donation", donation.identifier, field=f"test:{code}",
                         new={key: _shown(value) for key, value in new.items()})
        else:
            old = {"result": existing.result, "sample_date": existing.sample_date, "laboratory": existing.laboratory}
            differ = [k for k in new if new[k] != old[k]]
            if not differ:
                continue
            why = _typed(reason)
            if not why:
                raise PanelRowError(f"{REQUIRED_PANEL[code]} already has a recorded result: a correction needs a "
                                    "reason.", "reason", code)
            for key in differ:
                audit.record(session, actor, "donor test corrected", "donation", donation.identifier,
                             field=f"test:{code}.{key}", old=_shown(old[key]), new=_shown(new[key]), reason=why)
                setattr(existing, key, new[key])
            existing.recorded_by, existing.recorded_at = recorder, utcnow()
            row = existing
        changed.append(row)
    if not changed:
        raise InvalidInput("Nothing new to record: choose a result for at least one test, or change a recorded one.",
                           field="result")
    _flush(session)
    return changed


def _flush(session: Session) -> None:
    # Flushed row by row: SQLAlchemy batches several new rows of one table into one multi-row
    # INSERT, which db.py's NUL-character check cannot read yet on SQLite (it expects one row of
    # parameters per executemany row).
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("Someone else recorded results for this donation at the same moment. Reload to see them.",
                       field="donation") from None


def _shown(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def corrections_of(session: Session, viewer: Actor, donation: Donation) -> dict[str, list]:
    """The audited corrections of each test, for pages that show a result was changed and why."""
    found: dict[str, list] = {}
    for event in audit.history(session, viewer, "donation", donation.identifier):
        if event.action == "donor test corrected" and event.field:
            found.setdefault(event.field.split(":", 1)[1].split(".", 1)[0], []).append(event)
    return found


# --- eligibility rules: each returns why it blocks "eligible", or None --------------------------------


def consent_recorded(donor: Donor, donation: Donation, tests: dict[str, DonorTest]) -> str | None:
    if donor.consent_date is None or not donor.consent_reference:
        return f"Donor {donor.code} has no recorded consent (date and document reference)."
    if donor.consent_date > donation.donated_on:
        return f"Donor {donor.code}'s consent ({donor.consent_date.isoformat()}) is dated after the donation."
    return None


def every_panel_test_present(donor: Donor, donation: Donation, tests: dict[str, DonorTest]) -> str | None:
    missing = [name for code, name in REQUIRED_PANEL.items() if code not in tests]
    return f"Missing test results: {', '.join(missing)}." if missing else None


def every_result_negative(donor: Donor, donation: Donation, tests: dict[str, DonorTest]) -> str | None:
    reactive = [f"{REQUIRED_PANEL.get(code, code)} is {t.result}"
                for code, t in tests.items() if t.result != "negative"]
    return f"Not every result is negative: {'; '.join(reactive)}." if reactive else None


def every_sample_in_window(donor: Donor, donation: Donation, tests: dict[str, DonorTest]) -> str | None:
    first, last = sample_window(donation)
    outside = [f"{REQUIRED_PANEL.get(code, code)} ({t.sample_date.isoformat()})"
               for code, t in tests.items() if not first <= t.sample_date <= last]
    if outside:
        return (f"Samples outside the window {first.isoformat()} to {last.isoformat()} "
                f"(at donation or within {SAMPLE_WINDOW_DAYS} days after): {', '.join(outside)}.")
    return None


EligibilityRule = Callable[[Donor, Donation, dict[str, DonorTest]], "str | None"]
ELIGIBILITY_RULES: tuple[EligibilityRule, ...] = (
    consent_recorded, every_panel_test_present, every_result_negative, every_sample_in_window,
)


def eligibility_blockers(session: Session, donation: Donation) -> list[str]:
    """Why this donation cannot (yet) be signed eligible; empty when every rule passes."""
    donor, tests = donor_of(session, donation), tests_of(session, donation)
    return [why for rule in ELIGIBILITY_RULES if (why := rule(donor, donation, tests))]
