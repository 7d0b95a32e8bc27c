"""Giving freed memory back to the system (issue 11: RSS within 50 MiB of where it started after an attack).

What an attack allocates (TLS buffers of 256 KiB per connection, bodies up to the size cap, h11/httptools
buffers, OpenSSL's objects) is freed when the connection goes, but glibc's allocator keeps freed memory
in its heaps: after a burst the process stays as large as at its peak. Three settings and a timer fix it:

- the mmap threshold is fixed (glibc otherwise raises it to the largest block freed so far, up to 32 MiB),
  above the client body cap: a request body (up to 1 MiB) and what decoding it makes land in the heap,
  where the next one reuses the same pages; only blocks over 4 MiB are mmapped and returned whole on
  free. (At glibc's 128 KiB every body was a fresh mapping, and touching its pages was a fifth of the
  event loop's time under the acceptance attack: 1 MiB establish bodies cost 2.7-3.3 ms each, 1.55 ms
  with the threshold here);
- the heap's top is not trimmed on every free (the trim threshold is 64 MiB): the timer below does it;
- arenas are limited: each thread that mallocs may get its own heap (8 x cores of them), which trims
  only from its top;
- a timer asks glibc to return the free pages of every heap (`malloc_trim(0)`, which also releases
  pages in the middle of a heap) once more than `TRIM_AFTER_FREE_BYTES` are free.

All of it is best effort: off glibc (musl, macOS) the functions are missing and nothing happens.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from contextlib import suppress

log = logging.getLogger("peering.server")

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 4 << 20  # over the 1 MiB body cap; fixing it stops the dynamic raise
TRIM_THRESHOLD_BYTES = 64 << 20
ARENA_MAX = 2
TRIM_EVERY_SECONDS = 0.5
TRIM_AFTER_FREE_BYTES = 4 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]  # fmt: skip


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def tune_allocator() -> bool:
    """Fix the mmap and trim thresholds and limit arenas; True when glibc took the settings.

    Call before threads start: arenas already created stay.
    """
    if _LIBC is None:
        return False
    settings = (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (M_ARENA_MAX, ARENA_MAX),
    )
    return all(_LIBC.mallopt(param, value) == 1 for param, value in settings)


def free_bytes() -> int:
    """Bytes free inside glibc's heaps (kept by the allocator, counted in RSS when touched); 0 off glibc."""
    if _LIBC is None or not hasattr(_LIBC, "mallinfo2"):
        return 0
    _LIBC.mallinfo2.restype = _MallInfo2
    info: _MallInfo2 = _LIBC.mallinfo2()
    return int(info.fordblks)


def trim() -> bool:
    """Return the free pages of every heap to the system; True when some were returned."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


async def trimming(every: float = TRIM_EVERY_SECONDS, after: int = TRIM_AFTER_FREE_BYTES) -> None:
    """Trim whenever more than `after` bytes lie free in the heaps, checking every `every` seconds.

    The check is cheap (a walk of the arenas' counters); a trim costs about a millisecond per 100 MiB of
    heap and happens only after a burst freed memory, so the event loop is not held for long.
    """
    if _LIBC is None:
        return
    while True:
        await asyncio.sleep(every)
        with suppress(OSError):
            if free_bytes() > after:
                trim()
