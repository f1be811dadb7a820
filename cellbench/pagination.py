"""Keyset pagination: one page of a list after an opaque cursor, for every list page and API list.

A list names its order (`Order`): one or more columns whose last is unique. A page is read as
`WHERE (k1, ..., id) > (:k1, ..., :id) ORDER BY k1, ..., id LIMIT size + 1` (or `<` and DESC for a
newest-first list), never with an offset: its cost does not grow with the list, and a row inserted
before the cursor neither shifts the next page nor repeats a row.

The cursor holds the last row's key, sealed with the server's secret (deterministic authenticated
encryption, SIV-style: the MAC of the plaintext is the nonce of its keystream). Sealed, because a
key can say more than the row it ends: a blinded reader must not learn the audit trail's sequence
numbers (a gap would betray events it cannot see), and no list's database ids. Deterministic,
because the same page must render the same twice. Padded to one length, so that a cursor's
length says nothing of its key. The list's name is bound into the MAC: another list's cursor, a
tampered one or any text not made here is refused with one 400 naming the field `after`, and
nothing is read.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from sqlalchemy import Select, literal, tuple_

from .errors import DomainError
from .inputs import MAX_DB_ID

FIELD = "after"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_PADDED = 96  # bytes of plaintext every cursor is padded to (a key longer than this is refused)
_TAG = 16
T = TypeVar("T")


class BadCursor(DomainError):
    status = 400

    def __init__(self, message: str = "This page link is not valid here: open the list's first page.") -> None:
        super().__init__(message, field=FIELD)


@dataclass(frozen=True)
class Order:
    """One list's order: its name (bound into its cursors), its key columns (the last unique, none
    nullable) and its direction."""

    name: str
    columns: tuple[Any, ...]  # model columns (as sqlmodel.col gives them) or expressions of them
    newest_first: bool = False

    def key_of(self, row: Any) -> tuple:
        return tuple(getattr(row, c.key) for c in self.columns)


@dataclass(frozen=True)
class Ask:
    """What a request asks of a list: the page after `after` (none: the first), `size` rows, with
    the server's secret to open and seal cursors."""

    after: str | None
    secret: str
    size: int = PAGE_SIZE


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    next: str | None  # the cursor of the page after this one; None on the last page
    first: bool  # this is the list's first page (no cursor was given)


def _keys(secret: str) -> tuple[bytes, bytes]:
    root = secret.encode()
    return (hmac.new(root, b"cellbench list cursor: mac", hashlib.sha256).digest(),
            hmac.new(root, b"cellbench list cursor: stream", hashlib.sha256).digest())


def _stream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (hmac.new(key, nonce + i.to_bytes(4, "big"), hashlib.sha256).digest() for i in range(-(-length // 32)))
    return b"".join(blocks)[:length]


def _plain(value: object) -> object:
    if isinstance(value, bool) or value is None:
        raise ValueError("a cursor key is an integer, a text or a time")
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if isinstance(value, (int, str, float)):
        return value  # a float is sealed as given, and refused when read back: no key is one
    return _plain(getattr(value, "value", None))  # an enum stored as its value


def _typed(value: object) -> object:
    """A key value read back, refused unless it is one a cursor could hold."""
    if isinstance(value, bool) or not isinstance(value, (int, str, dict)):
        raise BadCursor()
    if isinstance(value, int) and not -MAX_DB_ID <= value <= MAX_DB_ID:
        raise BadCursor()
    if isinstance(value, dict):
        try:
            (kind, text), = value.items()
            return datetime.fromisoformat(text) if kind == "t" else date.fromisoformat(text) if kind == "d" else None
        except (ValueError, TypeError):
            raise BadCursor() from None
    return value


def encode(order: Order, key: Sequence[object], secret: str) -> str:
    plain = json.dumps([_plain(v) for v in key], separators=(",", ":")).encode()
    if len(plain) > _PADDED:
        raise ValueError(f"a cursor key of {order.name} is longer than {_PADDED} bytes")
    plain = plain.ljust(_PADDED)
    mac_key, stream_key = _keys(secret)
    tag = hmac.new(mac_key, order.name.encode() + b"\0" + plain, hashlib.sha256).digest()[:_TAG]
    sealed = bytes(a ^ b for a, b in zip(plain, _stream(stream_key, tag, _PADDED), strict=True))
    return base64.urlsafe_b64encode(tag + sealed).decode().rstrip("=")


def decode(order: Order, cursor: str, secret: str) -> tuple:
    """The key a cursor of this list holds; anything else is refused naming the field."""
    if not isinstance(cursor, str) or len(cursor) > 200 or not cursor.isascii():
        raise BadCursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise BadCursor() from None
    if len(raw) != _TAG + _PADDED:
        raise BadCursor()
    tag, sealed = raw[:_TAG], raw[_TAG:]
    mac_key, stream_key = _keys(secret)
    plain = bytes(a ^ b for a, b in zip(sealed, _stream(stream_key, tag, _PADDED), strict=True))
    expected = hmac.new(mac_key, order.name.encode() + b"\0" + plain, hashlib.sha256).digest()[:_TAG]
    if not hmac.compare_digest(tag, expected):
        raise BadCursor()
    try:
        values = json.loads(plain)
    except ValueError:
        raise BadCursor() from None
    if not isinstance(values, list) or len(values) != len(order.columns):
        raise BadCursor()
    return tuple(_typed(v) for v in values)


def page(session: Any, query: Select, order: Order, ask: Ask, *, key: Callable[[Any], tuple] | None = None) -> Page:
    """One page of `query` (a select of ORM rows or of tuples, filters applied) in the order's key
    order, after the cursor `ask.after` (none: the first page). `key` reads a row's key when the
    rows are tuples or the order has a computed column (a rank, say)."""
    after, secret, size = ask.after, ask.secret, ask.size
    columns = order.columns
    whole = tuple_(*columns) if len(columns) > 1 else columns[0]
    if after:
        # each value bound with its column's type: a time is stored as the column stores it (UTC text)
        mark = [literal(v, type_=c.type) for v, c in zip(decode(order, after, secret), columns, strict=True)]
        bound = tuple_(*mark) if len(columns) > 1 else mark[0]
        query = query.where(whole < bound if order.newest_first else whole > bound)
    query = query.order_by(*(c.desc() if order.newest_first else c for c in columns)).limit(size + 1)
    rows = list(session.scalars(query)) if len(query.column_descriptions) == 1 else list(session.execute(query))
    more = len(rows) > size
    rows = rows[:size]
    next_cursor = encode(order, (key or order.key_of)(rows[-1]), secret) if more else None
    return Page(rows=rows, next=next_cursor, first=not after)


def link(path: str, filters: dict[str, str], cursor: str | None) -> str:
    """A page's address with the list's filters kept (empty ones dropped)."""
    params = {k: v for k, v in filters.items() if v}
    if cursor:
        params[FIELD] = cursor
    return f"{path}?{urlencode(params)}" if params else path
