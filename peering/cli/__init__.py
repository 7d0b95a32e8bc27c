"""The `peering` command line: `serve`, `openapi` and Consul's `peering …` subcommands.

`main` is the console script and `python -m peering`; it returns the exit code instead of exiting.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import httpx

from peering.cli.commands import CommandError
from peering.cli.parser import ParserExit, parse


def main(argv: Sequence[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Run one command; 0 on success, 1 on usage or command errors, 130 when interrupted.

    `transport` replaces the network for the peering subcommands (tests pass `httpx.MockTransport`).
    """
    try:
        args = parse(argv)
    except ParserExit as exc:
        return exc.status
    if args.handler is None:
        args.parser.print_help()
        return 0
    try:
        code: int = args.handler(args, transport)
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
