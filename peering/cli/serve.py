"""`peering serve` and `peering openapi`: build `Settings` from flags and `PEERING_*`, then run or print.

The server stack (FastAPI, uvicorn) is imported only when one of these commands runs, so the
peering commands start quickly; tests replace `run_cluster` and `openapi_text`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from peering.cli.commands import CommandError
from peering.settings import Settings

SECRET_FIELDS = frozenset({"acl_initial_management_token", "database_url"})  # may hold a password


def run_cluster(settings: Settings) -> int:
    """Run the cluster until SIGTERM or SIGINT; the exit code of `peering serve`."""
    from peering.server import run  # here, not at the top: keeps uvicorn out of the other commands

    return run(settings)


def openapi_text() -> str:
    """The client API's OpenAPI document, ending with a newline."""
    from peering.app import openapi_json  # here, not at the top: keeps FastAPI out of the other commands

    return openapi_json()


def serve(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering serve`: options given on the command line win, `PEERING_*` variables fill the rest."""
    given = {name: getattr(args, name) for name in Settings.model_fields if hasattr(args, name)}
    return run_cluster(build_settings(given))


def openapi(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering openapi`: print the OpenAPI document."""
    sys.stdout.write(openapi_text())
    return 0


def build_settings(given: Mapping[str, Any]) -> Settings:
    """`Settings` from the options given; the environment supplies the others.

    Raises:
        CommandError: an option or variable has a bad value, one line per bad field.
    """
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise CommandError("\n".join(_describe(error, given) for error in exc.errors())) from exc


def _describe(error: ErrorDetails, given: Mapping[str, Any]) -> str:
    """`Invalid --heartbeat-interval 'abc': Input should be a valid number…` (the variable if it came from there)."""
    field = str(next(iter(error["loc"]), ""))
    source = "--" + field.replace("_", "-") if field in given else "PEERING_" + field.upper()
    value = error.get("input")
    shown = f" {value!r}" if isinstance(value, str) and field not in SECRET_FIELDS else ""
    return f"Invalid {source}{shown}: {error['msg']}"
