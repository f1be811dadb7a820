"""Donors and donations: pseudonymised donor, consent, donation identification as received,
eligibility tests (Dir. 2006/17/EC Annex II) and QA's signed eligibility decision.

A donation starts a cell lot only once QA has signed it eligible (`donation_may_start_lot`).
Eligibility is a set of small named rules, each returning why it blocks "eligible"; QA may decide
"ineligible" at any time, with a reason. A decision is final, and it freezes the test results it
was made on: the signature covers them, and `cellbench verify` recomputes that content.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, clock, identifiers, inputs, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import AuditEvent, Donation, Donor, DonorTest, Eligibility, Meaning, Role, Signature, User

# The panel every donation needs before it can be eligible: Annex II 1.1-1.4 (anti-HIV-1/2,
# HBsAg, anti-HBc, anti-HCV, syphilis), HTLV-I/II and NAT for HIV, HBV and HCV as the CSCC
# release criteria require them (reference 5.2, 5.4). Because NAT is always part of it, the
# 180-day serology retest does not arise. Code -> the name people read, in report order; the ASC
# specification names the same tests "donor_" + code (specs/asc-cs10, stage "donor").
REQUIRED_PANEL: dict[str, str] = {
    "anti_hiv": "Anti-HIV-1/2",
    "hbsag": "HBsAg",
    "anti_hbc": "Anti-HBc",
    "anti_hcv": "Anti-HCV",
    "syphilis": "Syphilis",
    "anti_htlv": "Anti-HTLV-I/II",
    "nat_hiv": "NAT HIV",
    "nat_hbv": "NAT HBV",
    "nat_hcv": "NAT HCV",
}
RESULTS = ("negative", "positive", "indeterminate")
# Annex II 2.5: living donors are sampled at donation or within 7 days after it.
SAMPLE_WINDOW_DAYS = 7

# Donor codes are pseudonyms that cellbench issues: "D-" and 4 to 8 digits. Digits only, so a
# code cannot carry a name or initials; the tissue establishment keeps the link to the person.
DONOR_CODE = re.compile(r"D-([0-9]{4,8})")
DONOR_CODE_HINT = "'D-' followed by 4 to 8 digits, e.g. D-0042"

ISBT128, SEC = "ISBT128", "SEC"
READERS = (Role.operator, Role.qa, Role.qp)


# --- small input helpers --------------------------------------------------------------------------


def _text(value: str | None) -> str:
    return (value or "").strip()


def _not_future(day: date, today: date, field: str, what: str) -> None:
    if day > today:
        raise InvalidInput(f"The {what} ({day.isoformat()}) is in the future.", field=field)


def _row_error(message: str, field: str, test: str | None) -> InvalidInput:
    """Bad input in one row of the panel: the field is named as usual, and the row is kept so
    that a form entering the whole panel at once can point at it."""
    error = InvalidInput(message, field=field)
    error.test = test  # type: ignore[attr-defined]
    return error


# --- donors -----------------------------------------------------------------------------------------


def parse_donor_code(text: str | None) -> str:
    code = _text(text).upper()
    if not code:
        raise InvalidInput(f"The donor code is required: {DONOR_CODE_HINT}.", field="code")
    if any(ch.isspace() for ch in code):
        raise InvalidInput(f"A donor code has no spaces: {DONOR_CODE_HINT}. Never enter a donor's name.",
                           field="code")
    if not DONOR_CODE.fullmatch(code):
        raise InvalidInput(f"'{_text(text)}' is not a donor code: use {DONOR_CODE_HINT}. Donor codes are "
                           "pseudonyms; names, initials and birth dates are never entered.", field="code")
    return code


def next_donor_code(session: Session) -> str:
    """The code after the highest issued one: what the registration form suggests."""
    numbers = [int(m.group(1)) for c in session.scalars(select(col(Donor.code))) if (m := DONOR_CODE.fullmatch(c))]
    return f"D-{max(numbers, default=0) + 1:04d}"


def register_donor(session: Session, actor: Actor, code: str | None, consent_date: date | str | None,
                   consent_reference: str | None, *, today: date | None = None) -> Donor:
    """Operators register a donor under a pseudonym. No consent, no donor."""
    users.require_role(actor, Role.operator)
    code = parse_donor_code(code)
    consented = inputs.day(consent_date, "consent_date", "consent date")
    _not_future(consented, today or clock.today(), "consent_date", "consent date")
    reference = _text(consent_reference)
    if not reference:
        raise InvalidInput("The consent document reference is required: no consent, no donor.",
                           field="consent_reference")
    if len(reference) > 100:
        raise InvalidInput("The consent document reference is at most 100 characters.", field="consent_reference")
    number = int(DONOR_CODE.fullmatch(code).group(1))
    for existing in session.scalars(select(col(Donor.code))):
        if (m := DONOR_CODE.fullmatch(existing)) and int(m.group(1)) == number:
            # D-0042 and D-00042 would be read as the same donor: one number, one donor.
            raise Conflict(f"Donor {existing} is already registered with this number.", field="code")
    donor = Donor(code=code, consent_date=consented, consent_reference=reference, created_at=utcnow())
    session.add(donor)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"Donor {code} was registered by someone else at the same moment.", field="code") from None
    audit.record(session, actor, "donor registered", "donor", code, field="consent",
                 new={"date": consented.isoformat(), "reference": reference})
    return donor


def donor_by_code(session: Session, code: str | None) -> Donor:
    donor = session.scalars(select(Donor).where(col(Donor.code) == _text(code).upper())).first()
    if donor is None:
        raise NotFound(f"No donor '{_text(code)}'.", field="code")
    return donor


@dataclass
class DonorRow:
    donor: Donor
    donations: list[Donation]


def donors_overview(session: Session, eligibility: str | None = None) -> list[DonorRow]:
    """Every donor with its donations (newest donor first); optionally only donors with a donation
    in one eligibility state."""
    donations: dict[int, list[Donation]] = {}
    for d in session.scalars(select(Donation).order_by(col(Donation.donated_on), col(Donation.id))):
        donations.setdefault(d.donor_id, []).append(d)
    rows = [DonorRow(donor, donations.get(donor.id, []))
            for donor in session.scalars(select(Donor).order_by(col(Donor.id).desc()))]
    if eligibility:
        rows = [r for r in rows if any(Eligibility(d.eligibility).value == eligibility for d in r.donations)]
    return rows


# --- donations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedIdentifier:
    system: str  # ISBT128 | SEC
    keys: frozenset[str]  # what makes two spellings the same donation
    check_character: str | None  # the computed check character of a DIN


def _isbt_keys(din13: str) -> frozenset[str]:
    return frozenset({f"DIN:{din13}"})


def _sec_keys(sec: identifiers.SecDonationSequence) -> frozenset[str]:
    keys = {f"SEC:{sec.sequence}"}
    # Art. 10b(1)(b): the unique donation number may itself be an ISBT 128 DIN, and a DIN is
    # globally unique; a SEC-DI carrying a registered DIN is that same donation.
    try:
        din = identifiers.parse_din(sec.donation_number, require_check=False)
        keys.add(f"DIN:{din.din}")
    except ValueError:
        pass
    return frozenset(keys)


def parse_identifier(text: str, *, field: str = "identifier", require_check: bool = False) -> ParsedIdentifier:
    """Read a donation identifier: 'SEC ...' is a SEC donation sequence, anything else an ISBT 128
    DIN (the same rule as identifiers.parse_donation_id). A check character or flag check value
    inside the DIN is verified; whether it matches is said, never what it should be, so that a
    misread label is re-read rather than 'corrected' to what the screen suggests."""
    if text.strip().upper().startswith("SEC"):
        try:
            sec = identifiers.parse_sec_donation(text)
        except ValueError as error:
            raise InvalidInput(f"Not a SEC donation identification sequence: {error}.", field=field) from None
        return ParsedIdentifier(SEC, _sec_keys(sec), None)
    try:
        din = identifiers.parse_din(text, require_check=require_check)
    except ValueError as error:
        if "should be" in str(error):  # the typed check character or flag check value is wrong
            raise InvalidInput("The check character (or barcode check value) in this DIN does not match it: "
                               "re-read the DIN and the boxed character on the label (do not correct it by hand).",
                               field=field) from None
        raise InvalidInput(f"Not an ISBT 128 donation identification number: {error}.", field=field) from None
    return ParsedIdentifier(ISBT128, _isbt_keys(din.din), din.check_character)


def _stored_keys(donation: Donation) -> frozenset[str]:
    # Stored identifiers were verified when registered; their check characters were entered apart.
    return parse_identifier(donation.identifier, require_check=False).keys


def donation_by_identifier(session: Session, text: str | None, *, field: str = "donation") -> Donation:
    """Find a donation by its identifier in any of its spellings (as stored, or as scanned or typed:
    barcode data with '=' and flags, grouped with spaces, with or without its check character)."""
    wanted = _text(text)
    if not wanted:
        raise InvalidInput("Give the donation identification.", field=field)
    exact = session.scalars(select(Donation).where(col(Donation.identifier) == wanted)).first()
    if exact is not None:
        return exact
    # A hand-typed DIN without its check character is not protected against typing errors, so
    # only a verified one (or barcode data) may find a donation stored in another spelling.
    keys = parse_identifier(wanted, field=field, require_check=True).keys
    for donation in session.scalars(select(Donation)):
        if _stored_keys(donation) & keys:
            return donation
    raise NotFound(f"No donation '{wanted}'.", field=field)


def register_donation(session: Session, actor: Actor, donor: Donor, identifier: str | None,
                      check_character: str | None, donated_on: date | str | None, *,
                      today: date | None = None) -> Donation:
    """Operators register a donation for a donor, its identifier stored exactly as received.

    For an ISBT 128 DIN the operator also types the eye-readable check character from the box on
    the label (ISO/IEC 7064 MOD 37-2); a mismatch is refused. Only surrounding whitespace, which
    a scanner's Enter or Tab suffix adds and which no identifier contains, is not kept.
    """
    users.require_role(actor, Role.operator)
    received = _text(identifier)
    if not received:
        raise InvalidInput("The donation identification is required (scan it or type it as printed).",
                           field="identifier")
    if len(received) > 64:
        raise InvalidInput("A donation identification is at most 64 characters.", field="identifier")
    parsed = parse_identifier(received)
    typed_check = _text(check_character).upper()
    if parsed.system == ISBT128:
        if not typed_check:
            raise InvalidInput("Type the check character printed in the box after the DIN.", field="check_character")
        if len(typed_check) != 1:
            raise InvalidInput("The check character is the single character printed in the box after the DIN.",
                               field="check_character")
        if typed_check != parsed.check_character:
            raise InvalidInput(f"The check character {typed_check} does not match this DIN: re-read the DIN and "
                               "the boxed character on the label. Nothing was saved.", field="check_character")
    elif typed_check:
        raise InvalidInput("A SEC donation sequence has no check character: leave the field empty.",
                           field="check_character")
    donated = inputs.day(donated_on, "donated_on", "donation date")
    _not_future(donated, today or clock.today(), "donated_on", "donation date")
    if donor.consent_date is not None and donated < donor.consent_date:
        raise InvalidInput(f"The donation date is before the donor's consent ({donor.consent_date.isoformat()}): "
                           "consent comes first.", field="donated_on")
    if session.get_bind().dialect.name == "postgresql":
        # The same donation has several spellings (barcode data, grouped, with or without its check
        # character), so the unique identifier column cannot catch two of them registered at the
        # same moment by two workers. Registrations are rare: let them take turns.
        session.execute(text("LOCK TABLE donation IN SHARE ROW EXCLUSIVE MODE"))
    for other in session.scalars(select(Donation)):
        if _stored_keys(other) & parsed.keys:
            owner = session.get(Donor, other.donor_id)
            raise Conflict(f"This donation is already registered as {other.identifier} (donor {owner.code}).",
                           field="identifier")
    donation = Donation(donor_id=donor.id, identifier=received, id_system=parsed.system,
                        check_character=typed_check or None, donated_on=donated, created_at=utcnow())
    session.add(donation)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"Donation {received} was registered by someone else at the same moment.",
                       field="identifier") from None
    audit.record(session, actor, "donation registered", "donation", received, field="donation",
                 new={"donor": donor.code, "id_system": parsed.system, "check_character": donation.check_character,
                      "donated_on": donated.isoformat()})
    audit.record(session, actor, "donation registered", "donor", donor.code, field="donation", new=received)
    return donation


def donations_of(session: Session, donor: Donor) -> list[Donation]:
    return list(session.scalars(select(Donation).where(col(Donation.donor_id) == donor.id)
                                .order_by(col(Donation.donated_on), col(Donation.id))))


def donor_of(session: Session, donation: Donation) -> Donor:
    return session.get(Donor, donation.donor_id)


# --- eligibility tests ----------------------------------------------------------------------------


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


def _clean(donation: Donation, entry: TestEntry, today: date) -> tuple[str, date, str]:
    code = entry.test
    name = REQUIRED_PANEL.get(code)
    if name is None:
        raise _row_error(f"Unknown test '{code}'. The panel is: {', '.join(REQUIRED_PANEL.values())}.", "test", code)
    result = _text(entry.result).lower()
    if result not in RESULTS:
        raise _row_error(f"{name}: choose the result ({', '.join(RESULTS)}).", "result", code)
    try:
        sampled = inputs.day(entry.sample_date, "sample_date", "sample date")
    except InvalidInput as error:
        raise _row_error(f"{name}: {error.message}", "sample_date", code) from None
    first, last = sample_window(donation)
    if not first <= sampled <= last:
        when = "before the donation" if sampled < first else f"more than {SAMPLE_WINDOW_DAYS} days after the donation"
        raise _row_error(f"{name}: the sample date {sampled.isoformat()} is {when} ({first.isoformat()}). Samples are "
                         f"taken at donation or within {SAMPLE_WINDOW_DAYS} days after it "
                         f"({first.isoformat()} to {last.isoformat()}).", "sample_date", code)
    if sampled > today:
        raise _row_error(f"{name}: the sample date {sampled.isoformat()} is in the future.", "sample_date", code)
    laboratory = _text(entry.laboratory)
    if not laboratory:
        raise _row_error(f"{name}: name the laboratory that tested the sample.", "laboratory", code)
    if len(laboratory) > 200:
        raise _row_error(f"{name}: the laboratory name is at most 200 characters.", "laboratory", code)
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
    donation = _lock_undecided(session, donation)
    today = today or clock.today()
    recorded = tests_of(session, donation)
    changed: list[DonorTest] = []
    seen: set[str] = set()
    for entry in entries:
        code = entry.test
        if code in seen:
            raise _row_error(f"{REQUIRED_PANEL.get(code, code)} is entered twice.", "test", code)
        seen.add(code)
        existing = recorded.get(code)
        if not _text(entry.result) and existing is None:
            continue
        if not _text(entry.result):
            raise _row_error(f"{REQUIRED_PANEL[code]}: a recorded result cannot be removed; correct it instead.",
                             "result", code)
        result, sampled, laboratory = _clean(donation, entry, today)
        new = {"result": result, "sample_date": sampled, "laboratory": laboratory}
        if existing is None:
            row = DonorTest(donation_id=donation.id, test=code, result=result, sample_date=sampled,
                            laboratory=laboratory, recorded_by=actor.user_id, recorded_at=utcnow())
            session.add(row)
            _flush(session)  # one row at a time: see _flush
            audit.record(session, actor, "donor test recorded", "donation", donation.identifier, field=f"test:{code}",
                         new={key: _shown(value) for key, value in new.items()})
        else:
            old = {"result": existing.result, "sample_date": existing.sample_date, "laboratory": existing.laboratory}
            differ = [k for k in new if new[k] != old[k]]
            if not differ:
                continue
            why = _text(reason)
            if not why:
                raise _row_error(f"{REQUIRED_PANEL[code]} already has a recorded result: a correction needs a reason.",
                                 "reason", code)
            for key in differ:
                audit.record(session, actor, "donor test corrected", "donation", donation.identifier,
                             field=f"test:{code}.{key}", old=_shown(old[key]), new=_shown(new[key]), reason=why)
                setattr(existing, key, new[key])
            existing.recorded_by, existing.recorded_at = actor.user_id, utcnow()
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


# --- the decision ---------------------------------------------------------------------------------------


@signatures.content_rule("donation")
def _decision_content(session: Session, identifier: str) -> dict:
    """What QA's eligibility signature covers: the donation, its donor's consent, every test
    result with its sample date and laboratory, and the decision."""
    donation = session.scalars(select(Donation).where(col(Donation.identifier) == identifier)).first()
    if donation is None:
        raise NotFound(f"No donation '{identifier}'.")
    donor = donor_of(session, donation)
    return {
        "donation": donation.identifier,
        "id_system": donation.id_system,
        "check_character": donation.check_character,
        "donated_on": donation.donated_on.isoformat(),
        "donor": donor.code,
        "consent_date": donor.consent_date.isoformat() if donor.consent_date else None,
        "consent_reference": donor.consent_reference,
        "tests": [{"test": t.test, "result": t.result, "sample_date": t.sample_date.isoformat(),
                   "laboratory": t.laboratory} for t in tests_of(session, donation).values()],
        "decision": Eligibility(donation.eligibility).value,
    }


DECISION_MEANING = {Eligibility.eligible: Meaning.approved, Eligibility.ineligible: Meaning.rejected}


def decide_eligibility(session: Session, qa: User, password: str, donation: Donation,
                       decision: Eligibility | str | None, reason: str | None = None) -> Signature:
    """QA signs the eligibility decision (approved = eligible, rejected = ineligible).

    "Eligible" needs every rule to pass. "Ineligible" may be decided at any time and needs a
    reason. Either is final: a second decision is refused.
    """
    actor = users.actor(session, qa)
    users.require_role(actor, Role.qa)
    try:
        choice = Eligibility(_text(getattr(decision, "value", decision)).lower())
    except ValueError:
        choice = None
    if choice not in DECISION_MEANING:
        raise InvalidInput("Choose the decision: eligible or ineligible.", field="decision")
    if choice is Eligibility.ineligible:
        reason = audit.require_reason(reason)
    else:
        reason = _text(reason) or None
    # Only the pending row changes, and it stays locked to the end: a second QA deciding at the same
    # moment waits on it (PostgreSQL) and then matches nothing, and a test entry waits too, so the
    # rules below and the signature read the same results.
    moved = session.execute(update(Donation).where(col(Donation.id) == donation.id,
                                                   col(Donation.eligibility) == Eligibility.pending.value)
                            .values(eligibility=choice.value))
    session.refresh(donation)
    if moved.rowcount != 1:
        raise Conflict(_already_decided(session, donation, Eligibility(donation.eligibility)), field="decision")
    if choice is Eligibility.eligible and (blockers := eligibility_blockers(session, donation)):
        raise InvalidInput("The donation cannot be signed eligible: " + " ".join(blockers), field="decision")
    sig = signatures.sign(session, qa, password, DECISION_MEANING[choice], "donation", donation.identifier,
                          reason=reason)
    donation.eligibility_signature_id = sig.id
    audit.record(session, actor, "eligibility decided", "donation", donation.identifier, field="eligibility",
                 old=Eligibility.pending, new=choice, reason=reason)
    session.flush()
    return sig


def _already_decided(session: Session, donation: Donation, state: Eligibility) -> str:
    sig = decision_signature(session, donation)
    by = f" by {sig.signer_name} on {sig.at:%Y-%m-%d}" if sig else ""
    return (f"Donation {donation.identifier} was already decided {state.value}{by}. An eligibility decision is "
            "final; if new information questions it, raise a deviation.")


def decision_signature(session: Session, donation: Donation) -> Signature | None:
    return session.get(Signature, donation.eligibility_signature_id) if donation.eligibility_signature_id else None


def decision_reason(session: Session, sig: Signature | None) -> str | None:
    """The reason QA gave with the decision (kept on the signature's audit event)."""
    event = session.get(AuditEvent, sig.audit_seq) if sig and sig.audit_seq else None
    return event.reason if event else None


def donation_may_start_lot(session: Session, donation: Donation) -> str | None:
    """Why a lot cannot be started from this donation, or None when QA has signed it eligible.
    An ineligible or undecided donor cannot start a lot."""
    state = Eligibility(donation.eligibility)
    if state is Eligibility.ineligible:
        return f"Donation {donation.identifier} was decided ineligible: an ineligible donor cannot start a lot."
    if state is Eligibility.pending:
        return (f"Donation {donation.identifier} has no eligibility decision yet: an undecided donor cannot start a "
                "lot. QA signs the eligibility first.")
    sig = decision_signature(session, donation)
    if sig is None or sig.invalidated_at is not None or Meaning(sig.meaning) is not Meaning.approved:
        return f"Donation {donation.identifier} has no valid signed eligibility decision: it cannot start a lot."
    return None


def pending_counts(session: Session) -> tuple[int, int]:
    """(pending donations whose panel is complete: QA can decide; pending donations missing results)."""
    ready = missing = 0
    recorded: dict[int, set[str]] = {}
    for donation_id, code in session.execute(select(col(DonorTest.donation_id), col(DonorTest.test))):
        recorded.setdefault(donation_id, set()).add(code)
    for donation_id in session.scalars(select(col(Donation.id)).where(col(Donation.eligibility) == Eligibility.pending.value)):
        if set(REQUIRED_PANEL) <= recorded.get(donation_id, set()):
            ready += 1
        else:
            missing += 1
    return ready, missing
