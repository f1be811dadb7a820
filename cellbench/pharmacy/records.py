"""What every use case of the site reads around a visit: the participant's ids, the visit with
its participant, study, site and kit (`VisitContext`), the visit row locked for a change, the
study's glands, the use window, and the kit in hand (scanned, relocated, checked in date).

Nothing here knows an arm: the same reads and words for an active and a placebo participant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session, col

from .. import clock, kits, studies
from ..clock import utcnow
from ..custody import fetch
from ..errors import Conflict, InvalidInput
from ..models import Kit, Participant, Site, Study, Visit


def use_window(study: Study) -> timedelta:
    """Thaw start to the last administration: the study's presentation, one window for both arms
    (never one arm's specification, whose window the study's load and kit-list seal check)."""
    return timedelta(minutes=studies.definition(study).presentation.use_window_minutes)


def gland_names(study: Study) -> list[str]:
    """Dose 1, 2, ... as the study names them (left, right submandibular gland)."""
    return list(studies.definition(study).schedule.dose_sites)


def gland_short(study: Study, dose: int) -> str:
    return gland_names(study)[dose - 1].split(" ")[0]


def participant_ref(study: Study, participant: Participant) -> str:
    """A participant's one entity id in the audit trail: "<study code>/<screening number>".

    The screening number is known from enrolment on and never changes; the randomisation number
    comes only at randomisation, so events before it (enrolment) and after it would otherwise
    sit under two ids. Every module writes participant events under this id (unblinding
    through `unblinding.participant_key`, the sealed compartment's log of its doors too), and
    visits under "<this>/T<treatment>", so one participant's history is one list."""
    return f"{study.code}/{participant.screening_number}"


def participant_number(participant: Participant) -> str:
    """How people call the participant: the randomisation number once there is one."""
    return participant.randomisation_number or participant.screening_number


@dataclass(frozen=True)
class Earlier:
    """The previous treatment's visit as its guard reads it (its treatment and state): for a page
    of visits, read as plain values, not a visit row each."""

    treatment: int
    state: str


@dataclass
class ReadAhead:
    """What the visit's guards would otherwise read, read once for a page of visits (reading.views):
    the study's lock (why it is locked, or None) and the previous treatment's visit (None for the
    first). The same reads for both arms: none touches a kit's contents."""

    study_locked: str | None
    previous: Visit | Earlier | None


@dataclass
class VisitContext:
    """A visit with what every rule and page needs around it, read once."""

    visit: Visit
    participant: Participant
    study: Study
    site: Site
    kit: Kit | None = None
    ahead: ReadAhead | None = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{participant_ref(self.study, self.participant)}/T{self.visit.treatment}"

    @property
    def who(self) -> str:
        return f"participant {participant_number(self.participant)}, treatment {self.visit.treatment}"

    @property
    def held_kit(self) -> Kit:
        """The visit's kit, for an action the table allows only once a kit is assigned."""
        if self.kit is None:
            raise InvalidInput(f"{self.who[0].upper()}{self.who[1:]} has no kit assigned.", field="kit")
        return self.kit


def context(session: Session, visit: Visit) -> VisitContext:
    participant = fetch(session, Participant, visit.participant_id, "participant")
    return VisitContext(visit, participant, fetch(session, Study, participant.study_id, "study"),
                        fetch(session, Site, participant.site_id, "site"),
                        fetch(session, Kit, visit.kit_id, "kit") if visit.kit_id else None)


def lock(session: Session, visit: Visit, seen_version: int | None) -> VisitContext:
    """The visit row, locked and fresh, for a use case that changes it."""
    locked = session.scalars(select(Visit).where(col(Visit.id) == visit.id).with_for_update()
                             .execution_options(populate_existing=True)).one()
    if seen_version is not None and int(seen_version) != locked.row_version:
        raise Conflict("Someone else acted on this visit since you opened it. Reload the page and check it.",
                       field="visit_version")
    return context(session, locked)


def touch(visit: Visit) -> None:
    visit.row_version += 1


def replaced_kits(visit: Visit) -> list[int]:
    return [int(part) for part in (visit.replaced_kit_ids or "").split(",") if part]


def detach_kit(visit: Visit) -> None:
    """The visit lets go of its kit (replaced, returned, put back) and remembers it."""
    visit.replaced_kit_ids = ",".join(str(i) for i in [*replaced_kits(visit), visit.kit_id])
    visit.kit_id = None


def in_date_on(site: Site, window: timedelta) -> date:
    """The kit must still be in date at the end of the use window, at the site."""
    return clock.today(site, utcnow() + window)


def kit_expired(session: Session, kit: Kit, on: date) -> str | None:
    blinded = kits.blinded_lot_of(session, kit)
    if blinded is None or blinded.expiry < on:
        return f"Kit {kit.number} expires {blinded.expiry if blinded else '(no expiry)'}: do not use it."
    return None


def scan_kit(session: Session, code: str | None, secret_key: str, *, manual: object = False,
             reason: str | None = None) -> tuple[Kit, kits.KitCode]:
    """A scanned label, or a kit number marked as typed by hand with its reason (kits.read_code): the
    kit and how it was read. An unknown kit is bad input to the scan field, not a missing page."""
    return kits.scanned(session, code, secret_key, manual=manual, reason=reason)


def visit_of_kit(session: Session, kit: Kit) -> Visit | None:
    return session.scalars(select(Visit).where(col(Visit.kit_id) == kit.id)).first()


def hhmm(moment: datetime | None, site: Site) -> str:
    """A time as the site reads it, to the minute, with its offset."""
    return clock.local_text(moment, clock.zone(site), clock.MINUTES)
