"""The supply manager's side of resupply (unblinded): the per site and arm settings (minimum,
maximum, do-not-ship days), audited; the open and past proposals with their per-arm figures and
picked kits; and the decisions: accept (a shipment being packed, holding the picked kits, made by
the shipment service's own rules) or dismiss with a reason. The trigger and the proposal's
transition table are in resupply.py."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session, col

from .. import audit, custody, inputs, pagination, sealed, studies, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import (
    Kit,
    ResupplyProposal,
    ResupplyProposalKit,
    ResupplySetting,
    Shipment,
    Site,
    StudySite,
    User,
    Visibility,
    saved_id,
)
from ..statemachine import claim
from .resupply import MACHINE, PLANNERS, ProposalState, _close, evaluate
from .views import arm_names

SETTING_FIELDS = {"min_stock": "minimum stock", "max_stock": "maximum stock", "do_not_ship_days": "do-not-ship days"}
MAX_STOCK = 10_000


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingLine:
    """One study, site and arm: its settings (None where not set yet)."""

    study: str
    site: str
    site_name: str
    arm: str  # code
    arm_name: str
    min_stock: int | None
    max_stock: int | None
    do_not_ship_days: int | None
    version: int | None


def settings(session: Session, actor: Actor) -> list[SettingLine]:
    """Every site and arm of every study, set or not."""
    users.require_role(actor, *PLANNERS)
    stored = {(row.study_id, row.site_id, row.arm): row for row in session.scalars(select(ResupplySetting))}
    lines = []
    for study in studies.all_studies(session):
        names = arm_names(study)
        for site, _link in studies.sites_of(session, study):
            for arm in studies.arm_codes(study):
                row = stored.get((saved_id(study), saved_id(site), arm))
                lines.append(SettingLine(study.code, site.code, site.name, arm, names.get(arm, arm),
                                         *((row.min_stock, row.max_stock, row.do_not_ship_days, row.row_version)
                                           if row else (None, None, None, None))))
    return lines


def set_setting(session: Session, actor: Actor, *, study_code: str | None, site_code: str | None,
                arm: str | None, min_stock: object, max_stock: object, do_not_ship_days: object,
                seen_version: object = None) -> ResupplySetting:
    """The supply manager sets one site's and arm's minimum, maximum and do-not-ship days
    (audited, unblinded); the site is evaluated again at once with them."""
    users.require_role(actor, *PLANNERS)
    study = studies.by_code(session, study_code)
    site = custody.site_by_code(session, site_code)
    if session.get(StudySite, (study.id, site.id)) is None:
        raise InvalidInput(f"{site.code} is not a site of {study.code}.", field="site")
    arm = (arm or "").strip()
    if arm not in studies.arm_codes(study):
        raise InvalidInput(f"Choose an arm of {study.code}: {', '.join(studies.arm_codes(study))}.", field="arm")
    values = {name: inputs.whole(value, name, what, minimum=0, maximum=MAX_STOCK)
              for (name, what), value in zip(SETTING_FIELDS.items(), (min_stock, max_stock, do_not_ship_days),
                                             strict=True)}
    if values["min_stock"] > values["max_stock"]:
        raise InvalidInput(f"The maximum stock ({values['max_stock']}) must be at least the minimum stock "
                           f"({values['min_stock']}).", field="max_stock")
    row = session.scalars(select(ResupplySetting).where(
        col(ResupplySetting.study_id) == study.id, col(ResupplySetting.site_id) == site.id,
        col(ResupplySetting.arm) == arm).with_for_update()).first()
    old = None
    if row is None:
        row = ResupplySetting(study_id=saved_id(study), site_id=saved_id(site), arm=arm,
                              min_stock=values["min_stock"], max_stock=values["max_stock"],
                              do_not_ship_days=values["do_not_ship_days"], updated_at=utcnow())
        session.add(row)
    else:
        seen = inputs.whole(seen_version, "setting_version", "version") if seen_version not in (None, "") else None
        if seen is not None and seen != row.row_version:
            raise Conflict(f"The settings of {site.code} · {arm} were changed a moment ago. Reload and check.",
                           field="setting_version")
        old = {name: getattr(row, name) for name in SETTING_FIELDS}
        for name, value in values.items():
            setattr(row, name, value)
        row.row_version += 1
    row.updated_by, row.updated_at = actor.user_id, utcnow()
    session.flush()
    audit.record(session, actor, "resupply setting changed", "resupply_setting", f"{study.code}/{site.code}/{arm}",
                 old=old, new=values, visibility=Visibility.unblinded)
    evaluate(session, saved_id(study), saved_id(site), "settings changed")
    return row


# --- proposals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmLine:
    arm: str
    name: str
    figures: dict
    kits: list[str]  # picked kit numbers of this arm


@dataclass(frozen=True)
class ProposalView:
    number: str
    study: str
    site: str
    site_name: str
    state: str
    cause: str
    created_at: datetime
    evaluated_at: datetime
    decided_by: str
    decided_at: datetime | None
    reason: str | None
    shipment: str | None
    version: int
    arms: list[ArmLine]
    kit_count: int
    actions: list[str]


def open_count(session: Session, actor: Actor) -> int:
    """How many proposals wait: a number naming no arm, for the home queue (not a sealed read)."""
    if not actor.roles & PLANNERS:
        return 0
    # open_slot is 1 exactly while proposed: its index holds the open few, not the decided years
    return session.scalar(select(func.count()).select_from(ResupplyProposal)
                          .where(col(ResupplyProposal.open_slot) == 1,
                                 col(ResupplyProposal.state) == ProposalState.proposed.value)) or 0


def by_number(session: Session, number: str | None) -> ResupplyProposal:
    wanted = (number or "").strip()
    row = session.scalars(select(ResupplyProposal).where(col(ResupplyProposal.number) == wanted)).first()
    if row is None:
        raise NotFound(f"No resupply proposal {number}.", field="proposal")
    return row


# Newest first (ids are made in order); a proposal's order says nothing of the arms it picks.
PROPOSAL_ORDER = pagination.Order("resupply proposals", (col(ResupplyProposal.id),), newest_first=True)


def proposals(session: Session, actor: Actor, *, open_only: bool = True, number: str | None = None,
              limit: int = 100) -> list[ProposalView]:
    """Open ones (or all, newest first), with their picked kits by arm: a logged read of the arms."""
    users.require_role(actor, *PLANNERS)
    query = select(ResupplyProposal)
    if number is not None:
        query = query.where(col(ResupplyProposal.number) == number)
    elif open_only:
        query = query.where(col(ResupplyProposal.state) == ProposalState.proposed.value)
    rows = list(session.scalars(query.order_by(col(ResupplyProposal.id).desc()).limit(limit)))
    if number is not None and not rows:
        raise NotFound(f"No resupply proposal {number}.", field="proposal")
    return _views(session, actor, rows)


def proposal_page(session: Session, actor: Actor, ask: pagination.Ask, *,
                  open_only: bool = True) -> pagination.Page[ProposalView]:
    """A page of the proposals (open ones, or all), newest first, as `proposals` shows them."""
    users.require_role(actor, *PLANNERS)
    query = select(ResupplyProposal)
    if open_only:
        query = query.where(col(ResupplyProposal.state) == ProposalState.proposed.value)
    found = pagination.page(session, query, PROPOSAL_ORDER, ask)
    return pagination.Page(_views(session, actor, found.rows), found.next, found.first)


def _views(session: Session, actor: Actor, rows: list[ResupplyProposal]) -> list[ProposalView]:
    if not rows:
        return []
    links = session.execute(select(col(ResupplyProposalKit.proposal_id), col(Kit.id), col(Kit.number))
                            .join(Kit, col(Kit.id) == col(ResupplyProposalKit.kit_id))
                            .where(col(ResupplyProposalKit.proposal_id).in_([saved_id(r) for r in rows]))).all()
    arms = sealed.arms_of_kits(session, actor, [kit_id for _p, kit_id, _n in links], why="resupply proposals") \
        if links else {}
    picked: dict[tuple[int, str], list[str]] = defaultdict(list)
    for proposal_id, kit_id, kit_number in links:
        picked[(proposal_id, arms.get(kit_id, "?"))].append(kit_number)
    sites = {saved_id(site): site for site in session.scalars(select(Site))}
    people = {saved_id(user): user.full_name for user in session.scalars(select(User))}
    views = []
    for row in rows:
        study = studies.by_id(session, row.study_id)
        names = arm_names(study)
        figures = json.loads(row.figures)
        shipment = session.get(Shipment, row.shipment_id) if row.shipment_id else None
        lines = [ArmLine(arm, names.get(arm, arm), figures[arm], sorted(picked.get((saved_id(row), arm), [])))
                 for arm in sorted(figures)]
        views.append(ProposalView(row.number, study.code, sites[row.site_id].code, sites[row.site_id].name,
                                  row.state, row.cause, row.created_at, row.evaluated_at,
                                  people.get(row.decided_by or 0, "cellbench" if row.decided_at else ""),
                                  row.decided_at, row.reason, shipment.number if shipment else None,
                                  row.row_version, lines, sum(len(line.kits) for line in lines),
                                  MACHINE.allowed(row, actor.roles)))
    return views


def accept(session: Session, actor: Actor, number: str | None, seen_version: object = None) -> Shipment:
    """A shipment to the site, being packed, holding the picked kits (each checked as a scan would
    be); the supply manager then dispatches it as any other."""
    proposal = by_number(session, number)
    claim(session, proposal)  # before the kits are packed: a second accept finds it accepted
    MACHINE.check(proposal, "accept", actor.roles)
    version = inputs.whole(seen_version, "proposal_version", "version") if seen_version not in (None, "") else None
    picks = list(session.scalars(select(Kit).join(ResupplyProposalKit, col(ResupplyProposalKit.kit_id) == col(Kit.id))
                                 .where(col(ResupplyProposalKit.proposal_id) == proposal.id)
                                 .order_by(col(Kit.number))))
    if not picks:
        raise InvalidInput(f"Resupply proposal {proposal.number} has no kits to send: the cell bench has none "
                           "that fit. Dismiss it, or package and release kits first.", field="proposal")
    study = studies.by_id(session, proposal.study_id)
    site = session.get(Site, proposal.site_id)
    assert site is not None, "a proposal names a stored site"
    shipment = custody.create(session, actor, study.code, site.code)
    for kit in picks:
        custody.pack_kit(session, actor, shipment, kit, field="proposal")
    _close(session, proposal, "accept", f"shipment {shipment.number}", actor=actor, seen_version=version,
           shipment_id=saved_id(shipment))
    return shipment


def dismiss(session: Session, actor: Actor, number: str | None, reason: str | None,
            seen_version: object = None) -> ResupplyProposal:
    proposal = by_number(session, number)
    claim(session, proposal)
    MACHINE.check(proposal, "dismiss", actor.roles)
    reason = audit.require_reason(reason)
    version = inputs.whole(seen_version, "proposal_version", "version") if seen_version not in (None, "") else None
    _close(session, proposal, "dismiss", reason, actor=actor, seen_version=version)
    return proposal
