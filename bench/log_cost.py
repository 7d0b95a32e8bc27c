"""Micro-benchmark (issue 16 item 3): what one request's log line costs, against what serving the request costs.

Usage: .venv/bin/python bench/log_cost.py [--requests 20000] [--repetitions 5] [--acl]

One process, one event loop, the app as `create_app` builds it (SQLite, one peering): `GET /v1/peering/<name>`
called straight through ASGI (no sockets, no HTTP parsing: only what the service does per request), with
the request log line written (`peering.logs.configure`, JSON and text, to a file) and without it, and with
the request log middleware taken out altogether (no line, no metrics sample). Repetitions are interleaved;
the figures are medians of this process's CPU time per request, in microseconds. `--acl`: ACLs on and a `peering = "read"` token.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `peering` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peering import logs
from peering.acl_input import PolicyRef, TokenSpec
from peering.acl_model import ALLOW_ALL
from peering.api.access_log import RequestLog
from peering.app import create_app, open_runtime
from peering.service import TokenRequest
from peering.settings import Settings

NAME = "bench-read"
Call = Callable[[], Awaitable[None]]


def _caller(app: Any, headers: list[tuple[bytes, bytes]]) -> Call:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/v1/peering/{NAME}",
        "raw_path": f"/v1/peering/{NAME}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8500),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def call() -> None:
        await app(dict(scope), receive, send)
        if statuses.pop() != 200:
            raise SystemExit("the read did not answer 200")

    return call


async def _per_request(call: Call, requests: int) -> float:
    """CPU microseconds per request (this process's CPU time: other processes on the machine do not count)."""
    began = time.process_time()
    for _ in range(requests):
        await call()
    return (time.process_time() - began) / requests * 1e6


async def main(requests: int, repetitions: int, acl: bool) -> None:
    with tempfile.TemporaryDirectory() as data:
        extra: dict[str, Any] = {"acl_enabled": True, "acl_default_policy": "deny"} if acl else {}
        settings = Settings(data_dir=Path(data), http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0", **extra)
        async with open_runtime(settings, advertise_addresses=["127.0.0.1:8503"], background=False) as runtime:
            await runtime.service.generate_token(TokenRequest(name=NAME, partition=None, meta={"env": "bench"}))
            headers: list[tuple[bytes, bytes]] = []
            if acl:
                policy = await runtime.acl.save_policy(ALLOW_ALL, None, "bench-read", "", 'peering = "read"')
                token = await runtime.acl.create_token(ALLOW_ALL, TokenSpec(policies=[PolicyRef(id=policy.id)]))
                headers = [(b"x-consul-token", (token.secret_id or "").encode())]
            app = create_app(runtime)
            bare = create_app(runtime)
            bare.user_middleware = [m for m in bare.user_middleware if getattr(m, "cls", None) is not RequestLog]
            variants = {
                "no request log middleware": ("warning", "json", _caller(bare, headers)),
                "request log, no line": ("warning", "json", _caller(app, headers)),
                "request log, JSON line": ("debug", "json", _caller(app, headers)),
                "request log, text line": ("debug", "text", _caller(app, headers)),
            }
            figures: dict[str, list[float]] = {label: [] for label in variants}
            log_path = Path(data) / "requests.log"
            for _ in range(repetitions + 1):  # the first round warms up
                for label, (level, fmt, call) in variants.items():
                    logs.configure(level, fmt)
                    with log_path.open("w") as stream:
                        handler = logging.getLogger().handlers[0]
                        assert isinstance(handler, logging.StreamHandler)  # noqa: S101 -- configure() made it
                        handler.setStream(stream)
                        figures[label].append(await _per_request(call, requests))
            logs.configure("warning", "json")
            base = statistics.median(figures["request log, no line"][1:])
            print(
                f"GET /v1/peering/{NAME} in process, ACLs {'on' if acl else 'off'}, {requests:,} requests x {repetitions}"
            )
            for label, values in figures.items():
                median = statistics.median(values[1:])
                print(f"  {label:28} {median:6.1f} us/request  ({median - base:+.1f} us vs no line)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--acl", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.repetitions, args.acl))
