"""The peering subcommands: check flags as Consul does, make one API call, print the result.

Each handler takes the parsed arguments and an optional httpx transport (tests inject
`httpx.MockTransport`) and returns the exit code; a `CommandError` carries a message for stderr
and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import httpx

from peering import __version__
from peering.cli.client import ApiConfig, ApiError, ConfigError, PeeringClient
from peering.cli.formatting import format_check, format_peering, format_peering_table, sort_by_name, to_json

Handler = Callable[[argparse.Namespace, httpx.BaseTransport | None], int]
FORMATS = ("pretty", "json")


class CommandError(Exception):
    """A failure to report on stderr; the command exits 1."""


def generate_token(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering generate-token`: print a new token for the peer `-name`."""
    name = required(args.name, "-name")
    output = output_format(args.format)
    meta = parse_meta(args.meta)
    addresses = split_addresses(args.server_external_addresses)
    with client_for(args, transport) as api, failing_as(f"Error generating peering token for {name}"):
        token = api.generate_token(name, meta=meta, server_external_addresses=addresses)
    # one line, so scripts can `jq -r .PeeringToken` or grep it
    print(token if output == "pretty" else json.dumps({"PeeringToken": token}))
    return 0


def establish(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering establish`: dial the cluster that issued `-peering-token`."""
    name = required(args.name, "-name")
    token = required(args.peering_token, "-peering-token")
    meta = parse_meta(args.meta)
    with client_for(args, transport) as api, failing_as(f"Error establishing peering for {name}"):
        api.establish(name, token, meta=meta)
    print(f"Successfully established peering connection with {name}")
    return 0


def read(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering read`: show one peering."""
    name = required(args.name, "-name")
    output = output_format(args.format)
    with client_for(args, transport) as api, failing_as("Error reading peering"):
        peering = api.read(name)
    if peering is None:
        raise CommandError(f"No peering with name {name} found.")
    print(format_peering(peering) if output == "pretty" else to_json(peering))
    return 0


def list_peerings(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering list`: every peering of the partition, sorted by name."""
    output = output_format(args.format)
    with client_for(args, transport) as api, failing_as("Error listing peerings"):
        peerings = sort_by_name(api.list_peerings())
    if output == "json":
        print(to_json(peerings))
    elif not peerings:
        print("There are no peering connections.")
    else:
        print(format_peering_table(peerings))
    return 0


def delete(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering delete`: start deleting the peering `-name`."""
    name = required(args.name, "-name")
    with client_for(args, transport) as api, failing_as(f"Error deleting peering for {name}"):
        api.delete(name)
    print(f"Successfully submitted peering connection, {name}, for deletion")
    return 0


def check(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering check`: would `establish` succeed with this token? Exit 0 if so, 1 if not."""
    name = required(args.name, "-name")
    token = required(args.peering_token, "-peering-token")
    output = output_format(args.format)
    with client_for(args, transport) as api, failing_as(f"Error checking peering token for {name}"):
        result = api.check(name, token)
    valid: bool = result["IsValid"]
    if output == "json":
        print(to_json(result))
        return 0 if valid else 1
    if not valid:
        reason = result.get("ErrorMessage") or "no reason given"
        raise CommandError(f"Peering token for {name} is not valid: {reason}")
    print(format_check(name, result))
    return 0


def version_text() -> str:
    """What `peering version` and `peering --version` print."""
    return f"peering {__version__}"


def version(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering version`, as `consul version`: the version, also shown by `--version`."""
    print(version_text())
    return 0


def parse_meta(values: Sequence[str] | None) -> dict[str, str]:
    """`-meta key=value` flags as a dict; a later key wins, as with Go's map flag.

    Raises:
        CommandError: a value has no `=` or an empty key.
    """
    meta: dict[str, str] = {}
    for value in values or ():
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise CommandError(f"Invalid -meta value {value!r}: expected key=value")
        meta[key] = item
    return meta


def split_addresses(values: Sequence[str] | None) -> list[str]:
    """`-server-external-addresses a,b` (repeatable) as one list, blanks dropped."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def required(value: str | None, flag: str) -> str:
    if not value:
        raise CommandError(f"Missing the required {flag} flag")
    return value


def output_format(value: str) -> str:
    if value not in FORMATS:
        raise CommandError("Invalid format, valid formats are {json|pretty}")
    return value


def client_for(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> PeeringClient:
    try:
        config = ApiConfig.resolve(
            os.environ,
            http_addr=args.http_addr,
            token=args.token,
            token_file=args.token_file,
            partition=args.partition,
        )
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    return PeeringClient(config, transport=transport)


@contextmanager
def failing_as(prefix: str) -> Iterator[None]:
    """Turn an API failure into `<prefix>: <error>`, Consul's wording."""
    try:
        yield
    except ApiError as exc:
        raise CommandError(f"{prefix}: {exc}") from exc
