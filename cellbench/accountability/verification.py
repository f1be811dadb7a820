"""The monitor's source data verification of a site's accountability.

At a monitoring visit the monitor compares the site's accountability in cellbench (per blinded lot,
kits by category: in stock, dispensed, returned, ...) with the site's source records and signs,
with the meaning "verified", that the figures as shown were verified against source. What is
signed is exactly those figures (blinded lots and counts only: no arm, no kit contents) and the
time; they are stored with the verification, so the page and its PDF can say whether the site's
figures have changed since (their hash compared with the hash of the figures now). The monitor's
home asks the same of every site without reading the figures (thousands of blinded lots after some
years): it compares the site's fingerprint of its figures, kept with every kit move
(place_counts.py), with the one the verification stored when it was signed.

Why "verified" and not a new meaning: the monitor states that a record was checked against its
source by a second person, which is what "verified" means everywhere in cellbench (the verifier's
second check of a step); "reviewed" is QA's review of records by exception, which this is not.

Every visit is a new verification, even of unchanged figures: the monitor re-checks the source at
each visit, and the record of that check is what an inspector asks for. Verifications of a study
and site are numbered; the page's form carries the number it would create and the hash of the
figures it showed, so two submissions of the same visit create one verification (the second gets
a conflict) and a verification of figures that changed after the page was loaded is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from .. import audit, inputs, limits, place_counts, signatures, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    AccountabilityVerification,
    BlindedLot,
    KitCount,
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


def figures(session: Session, study: Study, site: Site) -> dict[str, dict[str, int]]:
    """The site's accountability as the page shows it: blinded lot -> counts by category (with
    released and on hand). Read from kit states and blinded lots, the same for both arms."""
    by_code: dict[str, dict[str, int]] = {}
    # one read of the site's running counts with their blinded lots' codes (no row objects)
    for code, state, n in session.execute(
            select(col(BlindedLot.code), col(KitCount.state), col(KitCount.kits))
            .join(BlindedLot, col(BlindedLot.id) == col(KitCount.blinded_lot_id))
            .where(col(KitCount.study_id) == study.id, col(KitCount.place) == site.id, col(KitCount.kits) != 0)):
        if (name := category_of(state)) is not None:
            by_code.setdefault(code, {})[name] = by_code.get(code, {}).get(name, 0) + n
    return {code: balance(counts) for code, counts in by_code.items()}


def figures_hash(found: dict[str, dict[str, int]]) -> str:
    return hashlib.sha256(signatures.canonical(found).encode()).hexdigest()


def _of(session: Session, study: Study, site: Site) -> list[AccountabilityVerification]:
    return list(session.scalars(select(AccountabilityVerification).where(
        col(AccountabilityVerification.study_id) == study.id, col(AccountabilityVerification.site_id) == site.id)
        .order_by(col(AccountabilityVerification.sequence).desc())))


@dataclass
class Standing:
    """Where a site's verification stands: its figures now, the latest verification and its signature."""

    study: Study
    site: Site
    figures: dict[str, dict[str, int]]
    figures_hash: str
    history: list[tuple[AccountabilityVerification, Signature | None]]  # newest first

    @property
    def latest(self) -> AccountabilityVerification | None:
        return self.history[0][0] if self.history else None

    @property
    def next_sequence(self) -> int:
        return self.latest.sequence + 1 if self.latest else 1

    @property
    def status(self) -> str:
        if self.latest is None:
            return NOT_VERIFIED
        return VERIFIED if self.latest.figures_hash == self.figures_hash else CHANGED

    def matches(self, verification: AccountabilityVerification) -> bool:
        """Whether the figures now are those this verification signed."""
        return verification.figures_hash == self.figures_hash


def standing(session: Session, study: Study, site: Site) -> Standing:
    found = figures(session, study, site)
    history = _of(session, study, site)
    sigs = {s.id: s for s in session.scalars(select(Signature).where(
        col(Signature.id).in_([v.signature_id for v in history if v.signature_id])))}
    return Standing(study, site, found, figures_hash(found),
                    [(v, sigs.get(v.signature_id) if v.signature_id else None) for v in history])


def latest_by_site(session: Session, study: Study, sites: list[Site]) -> list[tuple[Site, datetime | None]]:
    """Each of these sites with the time of its latest verification (one read; whether the figures
    still match is on the site's own page, which reads its figures)."""
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


def verify(session: Session, user: User, password: str, study: Study, site_key: str | None, *,
           seen_hash: str | None, sequence: object, comment: str | None = None) -> AccountabilityVerification:
    """The monitor signs that the site's figures as shown (`seen_hash`) were verified against source."""
    actor = users.actor(session, user)
    users.require_role(actor, *VERIFIERS)
    site = site_of(session, study, site_key, reader=actor)
    users.require_scope(actor, site, study)
    number = inputs.whole(sequence, "sequence", "verification number", minimum=1)
    comment = limits.text(comment, "comment", "comment", "comment")
    now = standing(session, study, site)
    if (seen_hash or "").strip() != now.figures_hash:
        raise Conflict(f"The accountability of {site.code} changed after the page was loaded: read the figures "
                       "again before you verify them.", field="figures_hash")
    if number != now.next_sequence:
        raise Conflict(f"Someone else recorded verification {now.next_sequence - 1} of {site.code} since the page "
                       "was loaded: reload it.", field="sequence")
    row = AccountabilityVerification(study_id=saved_id(study), site_id=saved_id(site), sequence=number,
                                     figures=signatures.canonical(now.figures), figures_hash=now.figures_hash,
                                     fingerprint=place_counts.fingerprint(session, saved_id(study), saved_id(site))[1],
                                     comment=comment, by_user=saved_id(user), at=utcnow())
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
                   seen_hash: str | None, sequence: object, comment: str | None = None) -> AccountabilityVerification:
    """The page's and the API's one entry, by public codes."""
    return verify(session, user, password, studies.by_code(session, study_code), site_key, seen_hash=seen_hash,
                  sequence=sequence, comment=comment)


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
            if standing(session, study, site).status != VERIFIED:
                waiting.append(Awaiting(study, site, last.at))
        elif last.fingerprint != fingerprint:
            waiting.append(Awaiting(study, site, last.at))
    return waiting
