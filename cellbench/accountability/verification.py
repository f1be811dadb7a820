"""The monitor's source data verification of a site's accountability.

At a monitoring visit the monitor compares the site's accountability in cellbench (per blinded lot,
kits by category: in stock, dispensed, returned, ...) with the site's source records and signs,
with the meaning "verified", that the figures as shown were verified against source. What is
signed is exactly those figures (blinded lots and counts only: no arm, no kit contents) and the
time; they are stored with the verification, with their SHA-256 and their fingerprint.

Whether the site's figures are still those verified is asked on every read of the page, the API and
the monitor's home, and the figures are thousands of blinded lots after some years: it is answered
without reading them, from the site's fingerprint of its figures, kept with every kit move
(place_counts.py), compared with the one the verification stored (`glance`). The figures themselves
are read whole only to sign them and for the site's PDF (`standing`); the API gives them a page of
blinded lots at a time (`figures_page`).

Why "verified" and not a new meaning: the monitor states that a record was checked against its
source by a second person, which is what "verified" means everywhere in cellbench (the verifier's
second check of a step); "reviewed" is QA's review of records by exception, which this is not.

Every visit is a new verification, even of unchanged figures: the monitor re-checks the source at
each visit, and the record of that check is what an inspector asks for. Verifications of a study
and site are numbered; the page's form carries the number it would create and the fingerprint of the
figures it showed, so two submissions of the same visit create one verification (the second gets
a conflict) and a verification of figures that changed after the page was loaded is refused. The
fingerprint, not the hash, is what a reader sends back: the hash needs the figures read whole, the
fingerprint a dozen rows (the hash read from a page loaded before issue 18 is still accepted).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col

from .. import audit, inputs, limits, pagination, place_counts, signatures, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    AccountabilityVerification,
    BlindedLot,
    KitCount,
    KitState,
    Meaning,
    Role,
    Signature,
    Site,
    Study,
    StudySite,
    User,
    saved_id,
)
from .site import balance, category_of, place_of, study_of

VERIFIERS = (Role.monitor,)
NOT_VERIFIED, VERIFIED, CHANGED = "not verified", "verified", "changed since verification"
# verifications read without their figures (thousands of blinded lots each): only the signature reads them
WITHOUT_FIGURES = defer(cast(Any, AccountabilityVerification.figures))
# planned: a kit with nothing in it yet, in no category (a test of one state costs less than of eighteen)
NOT_IN_FIGURES = sorted(state.value for state in KitState if category_of(state) is None)


def _counters(study: Study, site: Site) -> list:
    """The site's running counts (kit_counts.py) that make its figures: not at zero, of a category."""
    return [col(KitCount.study_id) == study.id, col(KitCount.place) == site.id, col(KitCount.kits) != 0,
            col(KitCount.state).not_in(NOT_IN_FIGURES)]


def _by_lot(session: Session, study: Study, site: Site, lot_ids: list[int] | None = None
            ) -> dict[int, tuple[str, dict[str, int]]]:
    """Blinded lot id -> its code and counts by category at the site (of these blinded lots only)."""
    counters = select(col(KitCount.blinded_lot_id), col(KitCount.state), col(KitCount.kits))
    rows: Iterable[Any]
    if lot_ids is None:  # all of them, with their codes, in one read
        rows = session.execute(counters.add_columns(col(BlindedLot.code)).where(*_counters(study, site))
                               .join(BlindedLot, col(BlindedLot.id) == col(KitCount.blinded_lot_id)))
    else:  # a page's: its codes apart (joined, PostgreSQL hashes every blinded lot)
        codes = dict(session.execute(select(col(BlindedLot.id), col(BlindedLot.code))
                                     .where(col(BlindedLot.id).in_(lot_ids))).all())
        rows = ((*row, codes[row[0]]) for row in session.execute(
            counters.where(*_counters(study, site), col(KitCount.blinded_lot_id).in_(lot_ids))))
    found: dict[int, tuple[str, dict[str, int]]] = {}
    for lot_id, state, n, code in rows:  # no row objects
        if (name := category_of(state)) is None:
            continue  # none comes: the query asks for the states of a category only
        counts = found.setdefault(lot_id, (code, {}))[1]
        counts[name] = counts.get(name, 0) + n
    return found


def figures(session: Session, study: Study, site: Site) -> dict[str, dict[str, int]]:
    """The site's accountability as the page shows it: blinded lot -> counts by category (with
    released and on hand). Read from kit states and blinded lots, the same for both arms."""
    return {code: balance(counts) for code, counts in _by_lot(session, study, site).values()}


def figures_hash(found: dict[str, dict[str, int]]) -> str:
    return hashlib.sha256(signatures.canonical(found).encode()).hexdigest()


def fingerprint_text(fingerprint: int) -> str:
    """The fingerprint as a reader sends it back: text (JSON numbers lose digits past 2**53)."""
    return f"{fingerprint:016x}"


def _of(session: Session, study: Study, site: Site) -> list[AccountabilityVerification]:
    return list(session.scalars(select(AccountabilityVerification).where(
        col(AccountabilityVerification.study_id) == study.id, col(AccountabilityVerification.site_id) == site.id)
        .options(WITHOUT_FIGURES).order_by(col(AccountabilityVerification.sequence).desc())))


@dataclass
class Glance:
    """Where a site's verification stands, without its figures: their fingerprint now (read before
    any figure, so that a figure read after it is never older than it), the verifications and
    their signatures. `hash_now` is the figures' hash when they were read (see `glance`)."""

    study: Study
    site: Site
    fingerprint: int
    history: list[tuple[AccountabilityVerification, Signature | None]]  # newest first
    hash_now: str | None = None

    @property
    def latest(self) -> AccountabilityVerification | None:
        return self.history[0][0] if self.history else None

    @property
    def next_sequence(self) -> int:
        return self.latest.sequence + 1 if self.latest else 1

    @property
    def figures_fingerprint(self) -> str:
        """What a reader sends back to sign the figures it read."""
        return fingerprint_text(self.fingerprint)

    @property
    def status(self) -> str:
        if self.latest is None:
            return NOT_VERIFIED
        return VERIFIED if self.matches(self.latest) else CHANGED

    def matches(self, verification: AccountabilityVerification) -> bool:
        """Whether the figures now are those this verification signed: the same fingerprint (a
        change of figures keeps it with odds about 2**-61), or for a verification signed before
        fingerprints were kept, the same hash."""
        if verification.fingerprint is None:
            return verification.figures_hash == self.hash_now
        return verification.fingerprint == self.fingerprint


@dataclass
class Standing(Glance):
    """A glance with the figures now, read whole: to sign them, and for the site's PDF."""

    figures: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def figures_hash(self) -> str:
        return self.hash_now or figures_hash(self.figures)


def _history(session: Session, study: Study, site: Site) -> list[tuple[AccountabilityVerification, Signature | None]]:
    rows = _of(session, study, site)
    sigs = {s.id: s for s in session.scalars(select(Signature).where(
        col(Signature.id).in_([v.signature_id for v in rows if v.signature_id])))}
    return [(v, sigs.get(v.signature_id) if v.signature_id else None) for v in rows]


def glance(session: Session, study: Study, site: Site) -> Glance:
    """The standing in a few rows, whatever the number of blinded lots. Only a verification signed
    before fingerprints were kept (0033 gave every earlier one its fingerprint) makes it read the
    figures, to compare their hash."""
    fingerprint = place_counts.fingerprint(session, saved_id(study), saved_id(site))[1]
    history = _history(session, study, site)
    unprinted = any(v.fingerprint is None for v, _ in history)
    return Glance(study, site, fingerprint, history,
                  figures_hash(figures(session, study, site)) if unprinted else None)


def _read_whole(session: Session, study: Study, site: Site) -> tuple[Standing, dict[str, int]]:
    """The standing with the figures now, and their blinded lots' ids by code."""
    now = glance(session, study, site)
    by_lot = _by_lot(session, study, site)
    found = {code: balance(counts) for code, counts in by_lot.values()}
    return (Standing(now.study, now.site, now.fingerprint, now.history, figures_hash(found), found),
            {code: lot_id for lot_id, (code, _) in by_lot.items()})


def standing(session: Session, study: Study, site: Site) -> Standing:
    """The standing with the figures now, read whole (signing, the PDF; pages read `glance`)."""
    return _read_whole(session, study, site)[0]


@dataclass
class FiguresPage:
    """A page of a site's figures, newest blinded lot first, with the number of blinded lots in them."""

    figures: dict[str, dict[str, int]]
    next: str | None
    blinded_lots: int


def figures_page(session: Session, now: Glance, ask: pagination.Ask) -> FiguresPage:
    """A page of the figures `now` glanced at: blinded lots walked newest first along the counters'
    own index (ids, the same for both arms), as the accountability list walks them. A page's cursor
    is bound to the figures' fingerprint: one taken before the figures changed is refused (400,
    field `after`), so every page of one walk is of the figures whose fingerprint it carries."""
    lots = (select(col(KitCount.blinded_lot_id)).where(*_counters(now.study, now.site))
            .group_by(col(KitCount.blinded_lot_id)))
    order = pagination.Order(f"verification figures {now.figures_fingerprint}", (col(KitCount.blinded_lot_id),),
                             newest_first=True)
    try:
        keys = pagination.page(session, lots, order, ask, key=lambda lot_id: (lot_id,))
    except pagination.BadCursor:
        raise pagination.BadCursor(f"The figures of {now.site.code} changed since their first page was read (or "
                                   "this is not a page of them): read them again from the first page.") from None
    found = _by_lot(session, now.study, now.site, keys.rows)
    # how many blinded lots the figures hold: their running count by place (place_counts.py), one row
    # (counting the distinct blinded lots of the site's counters grew with the years)
    count = place_counts.blinded_lots(session, saved_id(now.study), saved_id(now.site))
    return FiguresPage({found[i][0]: balance(found[i][1]) for i in keys.rows}, keys.next, count)


def latest_by_site(session: Session, study: Study, sites: list[Site]) -> list[tuple[Site, datetime | None]]:
    """Each of these sites with the time of its latest verification (one read; whether the figures
    still match is on the site's own page)."""
    site_id, at_column = col(AccountabilityVerification.site_id), col(AccountabilityVerification.at)
    at = dict(session.execute(select(site_id, func.max(at_column))
                              .where(col(AccountabilityVerification.study_id) == study.id).group_by(site_id)).all())
    return [(site, at.get(site.id)) for site in sites]


def site_of(session: Session, study: Study, key: str | None, reader: Actor | None = None) -> Site:
    """A site of the study by its code (the reader's own sites only); the cell bench is no site."""
    site = place_of(session, study, key, field="site", reader=reader)
    if site is None:
        raise InvalidInput("The cell bench's stock is not verified by a monitor: choose a site.", field="site")
    return site


@signatures.content_rule("accountability_verification")  # a literal: tests read the registered types from the source
def _verification_content(session: Session, verification_id: str) -> dict:
    row = session.get(AccountabilityVerification, int(verification_id))
    if row is None:
        raise NotFound("No such verification.")
    study, site = study_of(session, row.study_id), session.get(Site, row.site_id)
    return {"study": study.code, "site": site.code if site else None, "sequence": row.sequence,
            "figures": json.loads(row.figures), "figures_hash": row.figures_hash, "verified_at": row.at,
            "comment": row.comment}


def _check_seen(now: Standing, fingerprint: int, site_code: str, seen_fingerprint: str | None,
                seen_hash: str | None) -> None:
    """The figures the reader saw (their fingerprint, or their hash as read before issue 18) are those now."""
    seen = {"figures_fingerprint": (seen_fingerprint or "").strip().lower(), "figures_hash": (seen_hash or "").strip()}
    if not any(seen.values()):
        raise InvalidInput("Send back the figures' fingerprint as you read it (figures_fingerprint).",
                           field="figures_fingerprint")
    now_of = {"figures_fingerprint": fingerprint_text(fingerprint), "figures_hash": now.figures_hash}
    for name, value in seen.items():
        if value and value != now_of[name]:
            raise Conflict(f"The accountability of {site_code} changed after the page was loaded: read the figures "
                           "again before you verify them.", field=name)


def verify(session: Session, user: User, password: str, study: Study, site_key: str | None, *,
           seen_fingerprint: str | None = None, seen_hash: str | None = None, sequence: object,
           comment: str | None = None) -> AccountabilityVerification:
    """The monitor signs that the site's figures as shown (`seen_fingerprint`, or `seen_hash`)
    were verified against source."""
    actor = users.actor(session, user)
    users.require_role(actor, *VERIFIERS)
    site = site_of(session, study, site_key, reader=actor)
    users.require_scope(actor, site, study)
    number = inputs.whole(sequence, "sequence", "verification number", minimum=1)
    comment = limits.text(comment, "comment", "comment", "comment")
    now, lot_ids = _read_whole(session, study, site)
    # the fingerprint of the very figures signed, which the reader's is compared with (the place's
    # running fingerprint, read in another statement, may be a commit apart from them)
    fingerprint = place_counts.of_figures(now.figures, lot_ids)
    _check_seen(now, fingerprint, site.code, seen_fingerprint, seen_hash)
    if number != now.next_sequence:
        raise Conflict(f"Someone else recorded verification {now.next_sequence - 1} of {site.code} since the page "
                       "was loaded: reload it.", field="sequence")
    row = AccountabilityVerification(study_id=saved_id(study), site_id=saved_id(site), sequence=number,
                                     figures=signatures.canonical(now.figures), figures_hash=now.figures_hash,
                                     fingerprint=fingerprint, comment=comment, by_user=saved_id(user), at=utcnow())
    code = site.code  # a failed flush expires the site
    session.add(row)
    try:
        session.flush()  # the number is unique per study and site: the same visit twice stops here
    except IntegrityError:
        raise Conflict(f"This verification of {code} was recorded at the same moment by another submission.",
                       field="sequence") from None
    row.signature_id = signatures.sign(session, user, password or "", Meaning.verified,
                                       "accountability_verification", str(row.id), reason=comment).id
    audit.record(session, actor, "accountability verified", "site", f"{study.code}/{site.code}",
                 field="accountability", new=f"verification {number}: {now.figures_hash}", reason=comment)
    session.flush()
    return row


def verify_by_code(session: Session, user: User, password: str, study_code: str, site_key: str | None, *,
                   seen_fingerprint: str | None = None, seen_hash: str | None = None, sequence: object,
                   comment: str | None = None) -> AccountabilityVerification:
    """The page's and the API's one entry, by public codes."""
    return verify(session, user, password, studies.by_code(session, study_code), site_key,
                  seen_fingerprint=seen_fingerprint, seen_hash=seen_hash, sequence=sequence, comment=comment)


@dataclass
class Awaiting:
    """A site of the monitor's whose figures are not verified as they stand: since when, if ever."""

    study: Study
    site: Site
    verified_at: datetime | None


def awaiting(session: Session, actor: Actor) -> list[Awaiting]:
    """The monitor's sites whose accountability is not verified as it stands now (never verified,
    or changed since the latest verification), with the time of that verification. Each site's
    figures are compared by their fingerprint (place_counts.py): a few rows per site, whatever
    the number of blinded lots; the figures themselves are read on the site's page."""
    latest = (select(col(AccountabilityVerification.study_id), col(AccountabilityVerification.site_id),
                     func.max(col(AccountabilityVerification.sequence)).label("sequence"))
              .group_by(col(AccountabilityVerification.study_id), col(AccountabilityVerification.site_id)).subquery())
    found = session.execute(
        select(Study, Site, AccountabilityVerification)
        .join(StudySite, col(StudySite.study_id) == col(Study.id)).join(Site, col(Site.id) == col(StudySite.site_id))
        .outerjoin(latest, (latest.c.study_id == col(Study.id)) & (latest.c.site_id == col(Site.id)))
        .outerjoin(AccountabilityVerification,
                   (col(AccountabilityVerification.study_id) == col(Study.id))
                   & (col(AccountabilityVerification.site_id) == col(Site.id))
                   & (col(AccountabilityVerification.sequence) == latest.c.sequence))
        .options(WITHOUT_FIGURES)
        .order_by(col(Study.code), col(Site.code))).all()
    waiting = []
    for study, site, last in found:
        if not users.sees(actor, site, study):
            continue
        kits, fingerprint = place_counts.fingerprint(session, saved_id(study), saved_id(site))
        if last is None:
            if kits:  # no kits there yet: nothing to verify
                waiting.append(Awaiting(study, site, None))
        elif last.fingerprint is None:  # signed before fingerprints were kept: the figures decide
            if glance(session, study, site).status != VERIFIED:
                waiting.append(Awaiting(study, site, last.at))
        elif last.fingerprint != fingerprint:
            waiting.append(Awaiting(study, site, last.at))
    return waiting
