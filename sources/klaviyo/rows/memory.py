"""Memory a finished walk gives back to the operating system before the load step.

The walk decodes every page into many small Python objects and converts batches of them to
arrow. Freed, that memory stays with the process: arrow's allocator keeps its pages, and
glibc's malloc keeps the heap of every thread that decoded pages. The load step comes next
(DuckDB's merge is the run's memory peak), so the walk hands it back when it ends, and the
DuckDB destination again when a load begins (after dlt's extract and normalize steps).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import pyarrow as pa


def give_back_memory() -> None:
    """Returns the memory freed by a walk to the operating system, where the platform allows.

    Costs a few milliseconds: call it once a walk has ended, not per batch.
    """
    pa.default_memory_pool().release_unused()
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


def one_malloc_arena() -> None:
    """Makes glibc's malloc serve every thread from one arena, where the C library allows.

    Each worker thread that decodes pages otherwise gets a heap of its own, which stays
    fragmented after the walk (`give_back_memory` cannot return it) and adds to the load
    step's peak. Call it before the first walk starts its threads; it is the same as
    running with `MALLOC_ARENA_MAX=1`, for the whole process.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, 1)


_M_ARENA_MAX = -8
"""glibc's `mallopt` parameter for the most arenas (malloc.h)."""


@functools.cache
def _libc_function(name: str) -> Callable[..., int] | None:
    """A function of glibc, or None on other C libraries (musl, macOS)."""
    library = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):
        return None
