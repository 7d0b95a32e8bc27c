"""One process per data dir: an exclusive `flock` on the data dir itself, held while the cluster runs.

The in-memory view of the peerings assumes it is the only writer of its database, and two processes on
one data dir would also share a cluster ID. The kernel drops the lock when the process ends, however it
ends (kill -9 included), so nothing stale is left to block a restart; locking the directory rather than
a file in it leaves no file behind either.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StartupError(RuntimeError):
    """The cluster cannot start; the message is the whole reason, shown as one log line."""


@contextmanager
def locked_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the data dir's lock (creating the dir, mode 0700, if need be) for the block.

    Raises:
        StartupError: another process holds it, or the dir cannot be created or opened.
    """
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StartupError(f"cannot use data dir {data_dir.resolve()}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(f"data dir {data_dir.resolve()} is in use by another peering process") from None
        yield
    finally:
        os.close(fd)  # releases the lock
