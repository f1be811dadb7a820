"""User administration pages (admin role)."""
from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session
from starlette.datastructures import FormData

from .. import audit, users
from ..audit import Actor
from ..db import Database
from ..deps import Viewer, form_by, form_data, form_text, form_texts, get_db, read_session, require
from ..errors import DomainError, NotFound
from ..models import Role, User, saved_id
from ..templating import render
from . import paging

router = APIRouter(prefix="/admin/users", include_in_schema=False)
admin = require(Role.admin)


@router.get("")
def user_list(request: Request, viewer: Viewer = Depends(admin), session: Session = Depends(read_session)) -> Response:
    found = users.user_page(session, paging.ask(request))
    # site-role users show their links (none: they act on nothing); the global roles every site and study
    scoped = {user.id for user, roles in found.rows if users.is_scoped(roles)}
    return render(request, "users/list.html", rows=found.rows, links=users.all_links(session), scoped=scoped,
                  pager=paging.pager("/admin/users", {}, found))


@router.get("/new")
def new_user_form(request: Request, viewer: Viewer = Depends(admin)) -> Response:
    return render(request, "users/new.html", form={}, error=None)


@router.post("")
def create_user(request: Request, viewer: Viewer = Depends(form_by(Role.admin)), db: Database = Depends(get_db),
                form: FormData = Depends(form_data)) -> Response:
    values = {k: form_text(form, k) for k in ("username", "full_name", "password", "email")}
    roles = form_texts(form, "roles")
    try:
        with db.write() as session:
            users.create_user(session, viewer.actor, values["username"], values["full_name"], values["password"], roles,
                              email=values["email"])
    except DomainError as error:
        # Keep what was typed (but never echo the password) so nothing has to be entered again.
        kept = {**values, "password": "", "roles": roles}
        return render(request, "users/new.html", status_code=error.status, form=kept, error=error)
    return RedirectResponse(f"/admin/users/{values['username'].strip()}?notice=User+created.", status_code=303)


def _detail(request: Request, session: Session, viewer: Viewer, username: str,
            error: DomainError | None = None) -> Response:
    user = users.by_username(session, username)
    roles = users.roles_of(session, saved_id(user))
    return render(request, "users/detail.html", status_code=error.status if error else 200, user=user,
                  roles=roles, tokens=users.tokens_of(session, user), scoped=users.is_scoped(roles),
                  links=users.links_of(session, saved_id(user)), choices=users.choices(session),
                  history=audit.history(session, viewer.actor, "user", user.username), error=error)


@router.get("/{username}")
def user_detail(request: Request, username: str, viewer: Viewer = Depends(admin),
                session: Session = Depends(read_session)) -> Response:
    return _detail(request, session, viewer, username)


# One form per account action; each names its service function and the fields it reads.
Action = Callable[[Session, Actor, User, FormData], None]
ACTIONS: dict[str, Action] = {
    "roles": lambda s, by, user, form: users.set_roles(s, by, user, form_texts(form, "roles"),
                                                       form_text(form, "reason")),
    "email": lambda s, by, user, form: users.set_email(s, by, user, form_text(form, "email")),
    "deactivate": lambda s, by, user, form: users.deactivate(s, by, user, form_text(form, "reason")),
    "reactivate": lambda s, by, user, form: users.reactivate(s, by, user, form_text(form, "reason")),
    "unlock": lambda s, by, user, form: users.unlock(s, by, user, form_text(form, "reason")),
    "password": lambda s, by, user, form: users.reset_password(s, by, user, form_text(form, "password"),
                                                               form_text(form, "reason")),
    # the sites and studies a site-role user works for (users.scope reads them)
    "link": lambda s, by, user, form: users.link(s, by, user, site=form_text(form, "site"),
                                                 study=form_text(form, "study")),
    "unlink": lambda s, by, user, form: users.unlink(s, by, user, site=form_text(form, "site"),
                                                     study=form_text(form, "study"), reason=form_text(form, "reason")),
}


@router.post("/{username}/{action}")
def user_action(request: Request, username: str, action: str, viewer: Viewer = Depends(form_by(Role.admin)),
                db: Database = Depends(get_db), form: FormData = Depends(form_data)) -> Response:
    if action not in ACTIONS:
        raise NotFound("There is no such action.")
    try:
        with db.write() as session:
            ACTIONS[action](session, viewer.actor, users.by_username(session, username), form)
    except DomainError as error:
        with db.read() as session:
            return _detail(request, session, viewer, username, error)
    return RedirectResponse(f"/admin/users/{username}?notice=Saved.", status_code=303)
