"""Every PDF a route serves is rendered here: in a worker thread, off the event loop, within a time
limit (CELLBENCH_PDF_TIME_LIMIT_SECONDS), and stopped when its client leaves.

A thread cannot be killed, so the renderer stops itself: the line breaker and the page loop call
`checkpoint()`, which raises `RenderStopped` once the deadline has passed or the cancel flag is set.
Past the deadline the client is answered 503 naming the document at once; the worker stops at its
next checkpoint instead of running on after nobody waits for it.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..errors import DomainError

T = TypeVar("T")
POLL_SECONDS = 0.05  # how often the waiting route looks at the clock and the connection


class PDFTimeout(DomainError):
    """The document could not be rendered within the time limit."""

    status = 503


class RenderStopped(Exception):
    """Raised inside a renderer at a checkpoint: its deadline passed or its client left."""


@dataclass
class Budget:
    """One rendering's deadline (time.monotonic) and the flag the route sets to stop it."""

    deadline: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)  # the renderer saw the flag and gave up

    def check(self) -> None:
        if self.cancelled.is_set() or time.monotonic() > self.deadline:
            self.cancelled.set()
            raise RenderStopped("the rendering was stopped")


_budget: ContextVar[Budget | None] = ContextVar("pdf_budget", default=None)


def checkpoint() -> None:
    """Raise RenderStopped if the rendering running in this thread is past its deadline or cancelled;
    nothing when there is no budget (a PDF made by the CLI, a test or a bench)."""
    budget = _budget.get()
    if budget is not None:
        budget.check()


def run_with_budget(budget: Budget, make: Callable[[], T]) -> T:
    """`make()` with `budget` in force for every checkpoint it reaches (called in the worker thread)."""
    token = _budget.set(budget)
    try:
        return make()
    except RenderStopped:
        budget.stopped.set()
        raise
    finally:
        _budget.reset(token)


class Client(Protocol):
    async def is_disconnected(self) -> bool: ...


async def render_in_time(client: Client, document: str, make: Callable[[], T], limit_seconds: float,
                         *, budget: Budget | None = None) -> T:
    """`make()` run in a worker thread within `limit_seconds`. Past the limit: PDFTimeout (503) naming
    `document`, and the worker told to stop. When the client leaves first the worker is told to
    stop as well (and the answer, which nobody reads, is the same 503)."""
    budget = budget or Budget(deadline=time.monotonic() + limit_seconds)
    work: Awaitable[T] = asyncio.get_running_loop().run_in_executor(None, run_with_budget, budget, make)
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
        if done:
            try:
                return task.result()
            except RenderStopped:
                break
        if time.monotonic() > budget.deadline or await client.is_disconnected():
            budget.cancelled.set()
            task.add_done_callback(_forget)  # the worker ends with RenderStopped at its next checkpoint
            break
    raise PDFTimeout(f"The {document} could not be rendered within {limit_seconds:g} s and was stopped. "
                     "Try again later; if it happens again, report it with the document's name.")


async def render_for(request: Any, document: str, make: Callable[[], T]) -> T:
    """What a route calls: `make()` within the app's CELLBENCH_PDF_TIME_LIMIT_SECONDS, stopped when
    `request`'s client leaves."""
    return await render_in_time(request, document, make, request.app.state.settings.pdf_time_limit_seconds)


def _forget(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log a never-read RenderStopped
