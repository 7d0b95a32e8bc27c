"""Micro-benchmark (issue 16): ACL resolutions per second, from the store on every request vs from memory.

Usage: .venv/bin/python bench/acl_resolve.py [--seconds 3] [--database-url postgresql://…]

One process, one event loop, the same database for both: a token with two policies (`peering = "read"` and a
few `service_prefix` rules) is resolved and checked (`Caller.require("peering", read)`, what every ACL-on
peering read does) in a loop, first with an `AclService` that reads the store per resolution (no change
feed: the behaviour before issue 16), then with one that resolves from memory (`acl_cache`, following the
feed as `peering serve` does). Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `peering` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peering.acl import AclService
from peering.acl_input import PolicyRef, TokenSpec
from peering.acl_model import ALLOW_ALL, Level
from peering.notifier import LocalNotifier
from peering.store.open import open_database

RULES = 'service_prefix "" { policy = "read" }\nservice_prefix "web" { policy = "write" }\nnode_prefix "" { policy = "read" }'


async def rate(service: AclService, secret: str, seconds: float) -> float:
    """Checks per second through a fresh caller each time (one per request, as the API makes them)."""
    for _ in range(200):  # warm-up
        await service.caller(secret, "127.0.0.1").require("peering", Level.READ)
    done, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        for _ in range(100):
            await service.caller(secret, "127.0.0.1").require("peering", Level.READ)
        done += 100
    return done / elapsed


async def main(seconds: float, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as data:
        async with open_database(url, Path(data)) as database:
            notifier = LocalNotifier()
            writer = AclService(database.acl, enabled=True, default_policy="deny")
            await writer.start()
            read = await writer.save_policy(ALLOW_ALL, None, f"bench-read-{time.time_ns()}", "", 'peering = "read"')
            named = await writer.save_policy(ALLOW_ALL, None, f"bench-named-{time.time_ns()}", "", RULES)
            spec = TokenSpec(policies=[PolicyRef(id=read.id), PolicyRef(id=named.id)])
            token = await writer.create_token(ALLOW_ALL, spec)
            if token.secret_id is None:
                raise SystemExit("the new token has no secret")
            from_store = AclService(database.acl, enabled=True, default_policy="deny")
            from_memory = AclService(
                database.acl, enabled=True, default_policy="deny", feed=database.store, notifier=notifier
            )
            before = await rate(from_store, token.secret_id, seconds)
            after = await rate(from_memory, token.secret_id, seconds)
            backend = "PostgreSQL" if url else "SQLite"
            print(f"{backend}: from the store {before:,.0f}/s, from memory {after:,.0f}/s ({after / before:.1f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.database_url))
