"""Sign-in, sign-out and the signed-in user's own account (password, API tokens)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlmodel import Session

from .. import users
from ..db import Database
from ..deps import (
    IDLE_MESSAGE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Viewer,
    check_login_csrf,
    current_viewer,
    form_data,
    form_text,
    form_viewer,
    get_db,
    new_login_csrf,
    read_session,
    secure_cookie,
)
from ..errors import DomainError, InvalidInput
from ..models import WebSession
from ..templating import render

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only local paths: an attacker's link must not bounce a user to another site after sign-in.
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


# The sign-in page's notices, chosen by key: a link cannot put its own words on the sign-in page
# (a "call this number" under the cellbench logo). The app's redirect to sign in names its reason
# by its words; those words are shown only when they are one of these.
NOTICES = {"signed-out": "You are signed out.",
           "password-changed": "Your password was changed; sign in with the new one.",
           "idle": IDLE_MESSAGE,
           "sign-in": "Please sign in.",
           "ended": "This session was ended; please sign in again.",
           "again": "Please sign in again.",
           "cannot": "This account can no longer sign in."}


def _notice(value: str | None) -> str | None:
    if not value:
        return None
    return NOTICES.get(value) or (value if value in NOTICES.values() else None)


def _login_page(request: Request, status: int = 200, error: DomainError | None = None, username: str = "") -> Response:
    token = new_login_csrf()
    response = render(request, "auth/login.html", status_code=status, csrf_token=token, error=error,
                      username=username, next=_safe_next(request.query_params.get("next")),
                      notice=_notice(request.query_params.get("notice")), viewer=None)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie(request))
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login", dependencies=[Depends(check_login_csrf)])
def login(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/"),
          db: Database = Depends(get_db)) -> Response:
    try:
        with db.write() as session:
            user = users.login(session, username, password, request.client.host if request.client else None)
            token = users.start_session(session, user)
    except DomainError as error:
        return _login_page(request, error.status, error, username)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=secure_cookie(request))
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/session/renew")
def renew_session(request: Request, db: Database = Depends(get_db), form=Depends(form_data)) -> Response:
    """The step page's password dialog after an idle timeout: the same person, the same page, a new
    session; the page then sends its pending save again with the new form token (JSON answers)."""
    try:
        with db.write() as session:
            token, csrf_token = users.renew_session(session, request.cookies.get(SESSION_COOKIE),
                                                    form_text(form, "csrf_token"), form_text(form, "password"))
    except DomainError as error:
        return JSONResponse(error.as_json(), status_code=error.status)
    response = JSONResponse({"csrf_token": csrf_token})
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=secure_cookie(request))
    return response


@router.post("/logout")
def logout(viewer: Viewer = Depends(form_viewer), db: Database = Depends(get_db)) -> Response:
    if viewer.web_session is None:  # an API token: there is no page session to end
        raise InvalidInput("Signing out ends a page session; revoke an API token on the account page.")
    with db.write() as session:
        live = session.get(WebSession, viewer.web_session.id)
        if live is not None:
            users.end_session(session, live, "signed out")
    response = RedirectResponse("/login?notice=signed-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/account")  # a small read (gate.SMALL_READS): on SQLite it runs in the event loop
def account(request: Request, viewer: Viewer = Depends(current_viewer),
            session: Session = Depends(read_session)) -> Response:
    return render(request, "auth/account.html", tokens=users.tokens_of(session, viewer.user),
                  new_token=None, error=None)


def _account_error(request: Request, viewer: Viewer, db: Database, error: DomainError) -> Response:
    with db.read() as session:
        return render(request, "auth/account.html", status_code=error.status,
                      tokens=users.tokens_of(session, viewer.user), new_token=None, error=error)


@router.post("/account/password")
def change_password(request: Request, current_password: str = Form(""), new_password: str = Form(""),
                    repeat_password: str = Form(""), viewer: Viewer = Depends(form_viewer),
                    db: Database = Depends(get_db)) -> Response:
    try:
        with db.write() as session:
            users.change_own_password(session, session.merge(viewer.user), current_password, new_password,
                                      repeat_password, viewer.web_session.id if viewer.web_session else None)
    except DomainError as error:
        return _account_error(request, viewer, db, error)
    return RedirectResponse("/account?notice=Password+changed.", status_code=303)


@router.post("/account/tokens")
def create_token(request: Request, name: str = Form(""), viewer: Viewer = Depends(form_viewer),
                 db: Database = Depends(get_db)) -> Response:
    try:
        with db.write() as session:
            token = users.create_token(session, viewer.actor, session.merge(viewer.user), name)
    except DomainError as error:
        return _account_error(request, viewer, db, error)
    with db.read() as session:
        # Shown once, on this response only; it is not stored.
        return render(request, "auth/account.html", tokens=users.tokens_of(session, viewer.user),
                      new_token=token, error=None)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(token_id: int, viewer: Viewer = Depends(form_viewer), db: Database = Depends(get_db)) -> Response:
    with db.write() as session:
        users.revoke_token(session, viewer.actor, token_id)
    return RedirectResponse("/account?notice=Token+revoked.", status_code=303)
