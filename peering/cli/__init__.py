"""The `peering` command line: `serve`, `openapi` and Consul's `peering …` subcommands.

`main` is the console script and `python -m peering`; it returns the exit code instead of exiting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import httpx

from peering.cli.commands import CommandError
from peering.cli.parser import ParserExit, parse

BROKEN_PIPE = 141  # what a shell reports for a command killed by SIGPIPE (as `consul … | head` is)


def main(argv: Sequence[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Run one command; 0 on success, 1 on usage or command errors, 130 when interrupted, 141 when the
    reader of its output went away (`peering list | head -1`: no traceback, the rest is not written).

    `transport` replaces the network for the peering subcommands (tests pass `httpx.MockTransport`).
    """
    try:
        return _run(argv, transport)
    except BrokenPipeError:
        # what is still buffered would fail again at exit: it goes nowhere instead
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE


def _run(argv: Sequence[str] | None, transport: httpx.BaseTransport | None) -> int:
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
