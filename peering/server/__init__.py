"""`peering serve`: the client API (plain HTTP) and the peering endpoint (TLS) in one process.

`listeners` serves both ports (`listening`, also used in-process by tests), `protocol` and `tls` are
the per-connection protocols, `admission` the connection limits, `lock` the one-process-per-data-dir
rule, and `process` the command itself (signals, exit codes).
"""

from __future__ import annotations

from peering.server.listeners import Bound, _reachable, listening
from peering.server.lock import StartupError
from peering.server.process import run, serve
from peering.server.protocol import MAX_HEAD_BYTES, REQUEST_TIMEOUT

__all__ = ["MAX_HEAD_BYTES", "REQUEST_TIMEOUT", "Bound", "StartupError", "_reachable", "listening", "run", "serve"]
