"""A JSON list's page parameters (`after`, `limit`) as one dependency, documented once."""
from __future__ import annotations

from fastapi import Query, Request

from ..pagination import MAX_PAGE_SIZE, Ask

AFTER = ("The `next` cursor of the previous page, as given (opaque; a cursor of another list, altered or "
         "not made by cellbench is refused with 400, field `after`). Leave out for the first page.")
NEXT = "The cursor of the next page (pass it as `after`); null on the last page."


def ask(request: Request, after: str | None = Query(None, description=AFTER),
        limit: int = Query(100, ge=1, le=MAX_PAGE_SIZE, description="Rows per page")) -> Ask:
    return Ask(after=after or None, secret=request.app.state.settings.secret_key, size=limit)
