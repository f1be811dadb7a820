"""A form's redirect says what it did (`?notice=`). Only cellbench's own redirect, for this browser's
session, puts words on a page: a link crafted by anyone else, or a notice's URL opened in another
browser, shows nothing (a spoofed "Lot released", or a green "✓ Matches" at the bedside)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from sqlmodel import select

from cellbench import users
from cellbench.models import ApiToken
from tests.conftest import PASSWORD, actor_of, sign_in

NOTICE = '<div class="notice" role="status">'


def _revoke_a_token(db, client, username: str):
    with db.write() as session:
        users.create_token(session, actor_of(db, username), users.by_username(session, username), "reader")
    with db.read() as session:
        token_id = session.exec(select(ApiToken.id).order_by(ApiToken.id.desc())).first()
    return client.submit(f"/account/tokens/{token_id}/revoke")


def test_a_notice_from_cellbenchs_own_redirect_is_shown_once_followed(db, as_, people):
    anna = as_("anna")
    redirect = _revoke_a_token(db, anna, "anna")
    location = redirect.headers["location"]
    assert location.startswith("/account?notice=Token+revoked.&nm=")
    page = anna.get(location)
    assert f"{NOTICE}Token revoked.</div>" in page.text


def test_a_notice_written_into_a_link_by_someone_else_is_not_shown(as_, people):
    anna = as_("anna")
    for crafted in ("/account?notice=Lot+L-1+released.", "/account?notice=Lot+released.&nm=" + "0" * 32):
        page = anna.get(crafted)
        assert page.status_code == 200
        assert NOTICE not in page.text and "released" not in page.text


def test_a_notices_url_opened_in_another_browser_shows_nothing_even_to_the_same_person(db, app, as_, people):
    redirect = _revoke_a_token(db, as_("anna"), "anna")
    text = parse_qs(urlsplit(redirect.headers["location"]).query)["notice"][0]
    for other in (as_("peter"), sign_in(app, "anna")):
        page = other.get(redirect.headers["location"])
        assert page.status_code == 200 and text not in page.text


def test_a_renewed_sessions_redirect_binds_its_notice_to_the_new_cookie(db, as_, people):
    """A password change keeps the browser signed in on a renewed session: its notice still shows."""
    anna = as_("anna")
    changed = anna.submit("/account/password", {"current_password": PASSWORD, "new_password": "a much longer pass 42!",
                                                "repeat_password": "a much longer pass 42!"})
    assert changed.status_code == 303, changed.text
    assert f"{NOTICE}Password changed.</div>" in anna.get(changed.headers["location"]).text
