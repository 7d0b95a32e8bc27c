"""Run a real `peering serve` process for a test, on ports chosen by the OS."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0


@dataclass
class Cluster:
    """A running cluster process and what it told us about itself."""

    process: subprocess.Popen[str]
    ready: dict[str, str]
    lines: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://{self.ready['http_addr']}"

    @property
    def peering_addr(self) -> str:
        return self.ready["peering_addr"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def reap(process: subprocess.Popen[Any]) -> None:
    """Stop `process` for good: kill it if it still runs, wait for it, close its pipes (the end of every
    test process; the pipes closed, no ResourceWarning and no reader thread left blocked)."""
    if process.poll() is None:
        process.kill()
    process.wait(10)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


@contextmanager
def running_cluster(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Start `python -m peering serve` and yield once it logged that it is ready."""
    command = [sys.executable, "-m", "peering", "serve", "--data-dir", str(data_dir), "--log-format", "json"]
    if "--http-addr" not in args:
        command += ["--http-addr", "127.0.0.1:0"]
    if "--peering-addr" not in args:
        command += ["--peering-addr", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=START_TIMEOUT)
            if line is None:
                raise RuntimeError("peering serve exited before it was ready:\n" + "".join(seen))
            seen.append(line)
            entry = json.loads(line)
            if entry.get("message") == "cluster ready":
                break
        cluster = Cluster(process, entry, seen)

        def keep_reading() -> None:
            while (more := lines.get()) is not None:
                seen.append(more)

        threading.Thread(target=keep_reading, daemon=True).start()
        yield cluster
    finally:
        reap(process)
