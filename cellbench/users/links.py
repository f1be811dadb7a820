"""The administrator links site-role users to the sites and studies they work for (users.scope
reads the links). Audited like every account change; no GMP data changes."""
from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlmodel import Session, col

from .. import audit
from ..audit import Actor
from ..errors import InvalidInput
from ..models import Role, Site, Study, User, UserSite, UserStudy, saved_id
from .rules import require_role, roles_of
from .scope import is_scoped, links_of


def choices(session: Session) -> tuple[list[str], list[str]]:
    """(site codes, study codes) an administrator may link a user to, in code order."""
    return (list(session.scalars(select(col(Site.code)).order_by(col(Site.code)))),
            list(session.scalars(select(col(Study.code)).order_by(col(Study.code)))))


def _site(session: Session, code: str | None) -> Site:
    text = (code or "").strip().upper()
    site = session.scalars(select(Site).where(col(Site.code) == text)).first() if text else None
    if site is None:
        raise InvalidInput(f"Choose a site by its code{f'; there is no site {text!r}' if text else ''}.", field="site")
    return site


def _study(session: Session, code: str | None) -> Study:
    text = (code or "").strip().upper()
    study = session.scalars(select(Study).where(col(Study.code) == text)).first() if text else None
    if study is None:
        raise InvalidInput(f"Choose a study by its code{f'; there is no study {text!r}' if text else ''}.",
                           field="study")
    return study


def _scoped_user(session: Session, user: User, field: str) -> None:
    if not is_scoped(roles_of(session, saved_id(user))):
        raise InvalidInput(f"{user.username} holds no site role: supply, QA, QP, the lab and the administrator "
                           "work for every site and study.", field=field)


def link(session: Session, by: Actor, user: User, *, site: str | None = None, study: str | None = None) -> None:
    """Link the user to a site or a study (or both). Audited; changes no GMP data."""
    _change(session, by, user, site, study, add=True, reason=None)


def unlink(session: Session, by: Actor, user: User, *, site: str | None = None, study: str | None = None,
           reason: str | None = None) -> None:
    """Take a site or a study (or both) from the user, with a reason. Audited."""
    _change(session, by, user, site, study, add=False, reason=reason)


def _change(session: Session, by: Actor, user: User, site_code: str | None, study_code: str | None, *, add: bool,
            reason: str | None) -> None:
    require_role(by, Role.admin)
    if not (site_code or "").strip() and not (study_code or "").strip():
        raise InvalidInput("Choose a site or a study.", field="site")
    if not add:
        reason = audit.require_reason(reason)
    user_id = saved_id(user)
    before_sites, before_studies = links_of(session, user_id)
    if (site_code or "").strip():
        _scoped_user(session, user, "site")
        site = _site(session, site_code)
        _one(session, by, user, UserSite, col(UserSite.site_id), saved_id(site), site.code, ("site", "sites"),
             before_sites, add, reason)
    if (study_code or "").strip():
        _scoped_user(session, user, "study")
        study = _study(session, study_code)
        _one(session, by, user, UserStudy, col(UserStudy.study_id), saved_id(study), study.code,
             ("study", "studies"), before_studies, add, reason)
    session.flush()


def _one(session: Session, by: Actor, user: User, model: type[UserSite] | type[UserStudy], column: Any, ident: int,
         code: str, noun: tuple[str, str], before: list[str], add: bool, reason: str | None) -> None:
    """One link added or taken away; `noun`: the field's name, singular and plural."""
    if add == (code in before):
        raise InvalidInput(f"{user.username} is {'already' if add else 'not'} linked to {code}.", field=noun[0])
    if add:
        session.add(model(user_id=saved_id(user), **{column.key: ident}))
    else:
        session.execute(delete(model).where(col(model.user_id) == user.id, column == ident))
    after = sorted({*before, code}) if add else [c for c in before if c != code]
    audit.record(session, by, f"{noun[0]} {'linked' if add else 'unlinked'}", "user", user.username, field=noun[1],
                 old=before, new=after, reason=reason)
