"""What a form's redirect says it did ("Lot started.", "Kit … dispensed"), carried in the redirect's
query (`?notice=`) so that a reload or the back button keeps it.

A link from anyone could carry words of its own there and have them shown inside cellbench's page:
"Lot released" on a lot that is not, or at the bedside a green "✓ Matches" with the attacker's text.
So every redirect that carries a notice gets a MAC of it (`nm`), keyed by the app's secret and bound
to the browser's session cookie (SignNotices, one place for every route), and a page shows a notice
only when its MAC holds (shown). A notice's URL copied to another browser shows nothing there.
The sign-in page's notices are chosen by key (web/auth.py) and need none of this."""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import SESSION_COOKIE

NOTICE, MAC = "notice", "nm"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def secret_of(secret_key: str) -> bytes:
    """The notices' own key, derived from the app's secret (not the secret itself)."""
    return hmac.new(secret_key.encode(), b"cellbench notices", hashlib.sha256).digest()


def mac(secret: bytes, session: str, text: str) -> str:
    return hmac.new(secret, f"{session}\0{text}".encode(), hashlib.sha256).hexdigest()[:32]


def shown(request: Request) -> str | None:
    """The page's notice, when cellbench itself redirected this browser's session here with it."""
    text = request.query_params.get(NOTICE)
    if not text:
        return None
    secret: bytes = request.app.state.notice_secret
    expected = mac(secret, request.cookies.get(SESSION_COOKIE, ""), text)
    return text if hmac.compare_digest(request.query_params.get(MAC, ""), expected) else None


class SignNotices:
    """Adds `nm` to a redirect's Location that carries a notice. The session it binds to is the one
    the browser will send next: the cookie this response sets (a renewed session), else the one it sent."""

    def __init__(self, app: ASGIApp, secret: bytes):
        self.app, self.secret = app, secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def signing(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in _REDIRECTS:
                message["headers"] = self._signed(scope, list(message.get("headers") or ()))
            await send(message)

        await self.app(scope, receive, signing)

    def _signed(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        for i, (name, value) in enumerate(headers):
            if name.lower() != b"location":
                continue
            location = value.decode("latin-1")
            texts = parse_qs(urlsplit(location).query).get(NOTICE)
            if not texts:
                return headers
            before, hash_mark, fragment = location.partition("#")
            signature = mac(self.secret, _next_session(scope, headers), texts[0])
            headers[i] = (name, f"{before}&{MAC}={signature}{hash_mark}{fragment}".encode("latin-1"))
        return headers


def _next_session(scope: Scope, headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"set-cookie":
            name_value = value.decode("latin-1").split(";", 1)[0]
            if name_value.partition("=")[0].strip() == SESSION_COOKIE:
                return cookie_parser(name_value).get(SESSION_COOKIE, "")
    for name, value in scope.get("headers") or ():
        if name == b"cookie":
            return cookie_parser(value.decode("latin-1")).get(SESSION_COOKIE, "")
    return ""
