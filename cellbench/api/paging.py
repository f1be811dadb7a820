"""A JSON list's page parameters (`after`, `limit`) as one dependency, documented once."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Query, Request
from pydantic import BaseModel, Field, create_model

from ..pagination import MAX_PAGE_SIZE, Ask

AFTER = ("The `next` cursor of the previous page, as given (opaque; a cursor of another list, altered or "
         "not made by cellbench is refused with 400, field `after`). Leave out for the first page.")
NEXT = "The cursor of the next page (pass it as `after`); null on the last page."


def asking(default: int) -> Callable[..., Ask]:
    """The page parameters of a list whose page is `default` rows unless the caller asks for more
    or fewer (a work list of the day is shorter than a register)."""

    def ask(request: Request, after: str | None = Query(None, description=AFTER),
            limit: int = Query(default, ge=1, le=MAX_PAGE_SIZE, description="Rows per page")) -> Ask:
        return Ask(after=after or None, secret=request.app.state.settings.secret_key, size=limit)

    return ask


ask = asking(100)


def page_model(name: str, field: str, item: type[BaseModel], order: str) -> type[BaseModel]:
    """A list's page in the API: its rows under their own name (`kits`, `lots`, ...), in `order`, and
    the `next` cursor."""
    fields: dict[str, Any] = {field: (list[item], Field(description=order)),  # type: ignore[valid-type]
                              "next": (str | None, Field(description=NEXT))}
    return create_model(name, **fields)
