"""Memory a finished walk gives back to the operating system before the load step.

The walk decodes every page into many small Python objects and converts batches of them to
arrow. Freed, that memory stays with the process: arrow's allocator keeps its pages, and
glibc's malloc keeps the heap of every thread that decoded pages. The load step comes next
(DuckDB's merge is the run's memory peak), so the walk hands it back when it ends.
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
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None on other C libraries (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
