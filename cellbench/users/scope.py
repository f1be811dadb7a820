"""Users tied to sites and studies.

Pharmacists, preparers, investigators and monitors (the site roles) work for the sites and studies
they are linked to, and act on nothing else; a site-role user with no link acts on nothing. Supply,
QA, QP, the lab and the administrator are global. The links travel on the `Actor` (`sites`,
`studies`: ids, None for global), so every rule here answers without a query.

How a refusal reads, everywhere:
- a service handed something outside the actor's sites or studies refuses with Forbidden (403)
  naming the field (`site`, `study`, or the field the person typed into), in words that depend on
  the place only, never on a kit's arm;
- a look-up by public reference (kit number, shipment number, participant) for a scoped reader
  answers as if the thing did not exist (404, the same words as a missing one), so another site's
  kits, shipments and participants are neither shown nor confirmed.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, or_, select
from sqlmodel import Session, col

from ..audit import Actor
from ..errors import Forbidden, NotFound
from ..models import Role, Site, Study, UserSite, UserStudy

SITE_ROLES = frozenset({Role.pharmacist, Role.preparer, Role.investigator, Role.monitor})
Q = TypeVar("Q", bound=Select)


def is_scoped(roles: Iterable[Role]) -> bool:
    """Whether a user with these roles works for linked sites and studies only."""
    return bool(SITE_ROLES & set(roles))


def scope_of(session: Session, user_id: int | None,
             roles: frozenset[Role]) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """(site ids, study ids) the user works for; (None, None) for a global user."""
    if user_id is None or not is_scoped(roles):
        return None, None
    sites = session.scalars(select(col(UserSite.site_id)).where(col(UserSite.user_id) == user_id))
    studies = session.scalars(select(col(UserStudy.study_id)).where(col(UserStudy.user_id) == user_id))
    return frozenset(sites), frozenset(studies)


def _ident(row: Site | Study | int | None) -> int | None:
    return row if row is None or isinstance(row, int) else row.id


# --- the rules: each says why it blocks, or None ------------------------------------------------------


def site_refusal(actor: Actor, site: Site | int | None) -> str | None:
    """Why this person may not act at this site (None: the cell bench), or None."""
    if actor.sites is None:
        return None
    ident = _ident(site)
    if ident is None:
        return "This is at the cell bench, not at a site you work for."
    if ident in actor.sites:
        return None
    name = f"site {site.code}" if isinstance(site, Site) else "this site"
    return f"You do not work for {name}: ask the administrator to link you to it."


def study_refusal(actor: Actor, study: Study | int | None) -> str | None:
    """Why this person may not act in this study (None: no study is concerned), or None."""
    if actor.studies is None or study is None:
        return None
    if _ident(study) in actor.studies:
        return None
    name = f"study {study.code}" if isinstance(study, Study) else "this study"
    return f"You do not work on {name}: ask the administrator to link you to it."


def scope_refusal(actor: Actor, site: Site | int | None, study: Study | int | None) -> tuple[str, str] | None:
    """(the field, why) if the place or the study is outside the person's scope."""
    if why := study_refusal(actor, study):
        return "study", why
    if why := site_refusal(actor, site):
        return "site", why
    return None


def require_scope(actor: Actor, site: Site | int | None, study: Study | int | None, *,
                  field: str | None = None) -> None:
    """Refuse an act outside the person's sites and studies (403, naming `field` or site/study)."""
    if found := scope_refusal(actor, site, study):
        raise Forbidden(found[1], field=field or found[0])


def sees(actor: Actor, site: Site | int | None, study: Study | int | None) -> bool:
    """Whether the person may read what is at this place in this study."""
    return scope_refusal(actor, site, study) is None


def require_visible(actor: Actor, site: Site | int | None, study: Study | int | None, missing: str,
                    field: str | None = None) -> None:
    """A read outside the scope answers like a missing thing: `missing` is that answer's words."""
    if not sees(actor, site, study):
        raise NotFound(missing, field=field)


def sees_kit(actor: Actor, site: Site | int | None, study: Study | int | None) -> bool:
    """Kits are the study's stock: a site role reads those of its studies at the cell bench or on
    their way (no site yet) and at its own sites, never those at another site."""
    return sees(actor, site, study) or (_ident(site) is None and study_refusal(actor, study) is None)


def scope_conditions(actor: Actor, *, site: Any = None, study: Any = None,
                     bench_too: bool = False) -> list[ColumnElement[bool]]:
    """The conditions that keep rows to the person's sites and studies (`site`, `study`: the
    columns to test; none for a global person). Rows at the cell bench (site NULL) are outside
    every site's scope, unless `bench_too` (kits: see sees_kit)."""
    found = []
    if site is not None and actor.sites is not None:
        found.append(or_(site.in_(sorted(actor.sites)), site.is_(None)) if bench_too else site.in_(sorted(actor.sites)))
    if study is not None and actor.studies is not None:
        found.append(study.in_(sorted(actor.studies)))
    return found


def within(query: Q, actor: Actor, *, site: Any = None, study: Any = None, bench_too: bool = False) -> Q:
    """The query narrowed to the person's sites and studies (see scope_conditions)."""
    conditions = scope_conditions(actor, site=site, study=study, bench_too=bench_too)
    return query.where(*conditions) if conditions else query


# --- the links, as the administrator changes and reads them ---------------------------------------------


def links_of(session: Session, user_id: int) -> tuple[list[str], list[str]]:
    """(site codes, study codes) the user is linked to, in code order."""
    sites = session.scalars(select(col(Site.code)).join(UserSite, col(UserSite.site_id) == col(Site.id))
                            .where(col(UserSite.user_id) == user_id).order_by(col(Site.code)))
    studies = session.scalars(select(col(Study.code)).join(UserStudy, col(UserStudy.study_id) == col(Study.id))
                              .where(col(UserStudy.user_id) == user_id).order_by(col(Study.code)))
    return list(sites), list(studies)


def all_links(session: Session) -> dict[int, tuple[list[str], list[str]]]:
    """user id -> (site codes, study codes), for the administrator's list of users."""
    found: dict[int, tuple[list[str], list[str]]] = {}
    for user_id, code in session.execute(select(col(UserSite.user_id), col(Site.code))
                                         .join(Site, col(Site.id) == col(UserSite.site_id)).order_by(col(Site.code))):
        found.setdefault(user_id, ([], []))[0].append(code)
    for user_id, code in session.execute(select(col(UserStudy.user_id), col(Study.code))
                                         .join(Study, col(Study.id) == col(UserStudy.study_id))
                                         .order_by(col(Study.code))):
        found.setdefault(user_id, ([], []))[1].append(code)
    return found
