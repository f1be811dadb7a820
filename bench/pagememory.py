"""Hold a database file in memory for bench/pages.py (--hold-in-memory): mapped and locked, so the
machine cannot page it out while the pass runs.

Why: the virtual machines this project is measured on run the kernel's DAMON "pageout" scheme,
which evicts file pages left idle for a few seconds, so a database's cold B-tree pages may be read
from disk again on a later request. Measured here: a probe of three pages on the ten-year SQLite
file re-read ~60,000 file pages without the lock and 28 with it. But a whole pass with the lock
(2026-12-07) was not faster than one without (274 against 479 of 628 passing) and still re-read
~240,000 file pages (not the database's): the database file's eviction is not what moved the
growth ratios. The option stays to take that factor out when comparing passes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def held(path: Path) -> Iterator[int]:
    """The file mapped read-only and locked in memory (its size in bytes) until the block ends."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
            # the map's address, for mlock; the array is let go at once, or the map could not close
            address = ctypes.c_void_p(np.frombuffer(mapped, dtype=np.uint8).ctypes.data)
            length = ctypes.c_size_t(size)
            if libc.mlock(address, length) != 0:
                raise OSError(ctypes.get_errno(), f"cannot lock {path} in memory (RLIMIT_MEMLOCK?)")
            try:
                yield size
            finally:
                libc.munlock(address, length)
    finally:
        os.close(fd)


@contextmanager
def held_all(paths: list[Path]) -> Iterator[None]:
    with ExitStack() as stack:
        for path in paths:
            size = stack.enter_context(held(path))
            print(f"holding {path} in memory ({size / 2**20:,.0f} MiB, locked)")
        yield
