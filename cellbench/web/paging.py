"""A list page's request for one page (pagination.Ask): the `after` cursor from its address."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request

from ..pagination import FIELD, PAGE_SIZE, Ask, Page, link


def ask(request: Request, size: int = PAGE_SIZE) -> Ask:
    after = (request.query_params.get(FIELD) or "").strip() or None
    return Ask(after=after, secret=request.app.state.settings.secret_key, size=size)


@dataclass(frozen=True)
class Pager:
    """A list page's links (templates/pager.html): to the first page when this is not it, to the
    next when there is one; both keep the list's filters."""

    first_url: str | None
    next_url: str | None


def pager(path: str, filters: Mapping[str, str], page: Page | None) -> Pager:
    if page is None:
        return Pager(None, None)
    return Pager(None if page.first else link(path, dict(filters), None),
                 link(path, dict(filters), page.next) if page.next else None)
