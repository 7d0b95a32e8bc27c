"""`peering config write|read|list|delete`: Consul's `consul config …` for config entries, with its texts.

`config write` takes HCL or JSON (a file, or `-` for standard input), turns it into the JSON body
`PUT /v1/config` takes and names the entry `<Kind>/<Name>` in its messages as Consul does. The server
validates the entry (kind, fields, consumers); the CLI only reads the text and finds Kind and Name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from peering import hcl
from peering.cli.client import InvalidResponseError
from peering.cli.commands import CommandError, client_for, failing_as
from peering.cli.formatting import to_json

# the server refuses bodies over 1 MiB, so a larger entry can never be written
MAX_ENTRY_BYTES = 1 << 20
# hcl's default budget fits ~870 exported services; one token is at least 2 bytes of a 1 MiB text
MAX_TOKENS = MAX_ENTRY_BYTES // 2
# keys whose value is a list of blocks: one HCL block (`Services { … }`) is a list of one, and a
# repeated one adds to the list, as Consul's HCL decoding does
LIST_KEYS = frozenset({"services", "consumers"})


# -- reading an entry


def load_source(source: str, stdin: TextIO | None = None) -> str:
    """The text of `source`: a file path, or `-` for standard input (Consul's `LoadDataSourceNoRaw`).

    Raises:
        CommandError: nothing named, the file cannot be read, is not UTF-8 or is over `MAX_ENTRY_BYTES`.
    """
    if not source:
        raise CommandError("Failed to load data: must specify a file path or '-' for stdin")
    if source == "-":
        text = (stdin or sys.stdin).read(MAX_ENTRY_BYTES + 1)
        where = "stdin"
    else:
        try:
            with Path(source).open("rb") as handle:
                raw = handle.read(MAX_ENTRY_BYTES + 1)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise CommandError(f"Failed to load data: Failed to read file: open {source}: {reason.lower()}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(f"Failed to load data: Failed to read file: {source} is not UTF-8 text") from exc
        where = "file"
    if len(text) > MAX_ENTRY_BYTES:
        raise CommandError(f"Failed to load data: Failed to read {where}: more than {MAX_ENTRY_BYTES} bytes")
    return text


def parse_entry(text: str) -> dict[str, Any]:
    """The JSON body of a config entry written in HCL or JSON.

    Raises:
        CommandError: the text is not HCL or JSON, or it has no string `Kind` (`kind`) at the top.
    """
    try:
        tree = hcl.loads(text, max_tokens=MAX_TOKENS)
    except hcl.HclError as exc:
        raise CommandError(f"Failed to decode config entry input: {exc}") from exc
    entry = _plain(tree)
    if "Kind" not in entry and "kind" not in entry:
        raise CommandError(
            "Failed to decode config entry input: Payload does not contain a kind/Kind key at the top level"
        )
    if not isinstance(entry.get("Kind", entry.get("kind")), str):
        raise CommandError("Failed to decode config entry input: Kind value in payload is not a string")
    return entry


def _plain(tree: hcl.Object) -> dict[str, Any]:
    """An HCL/JSON object as plain JSON values (the tree is at most `hcl.MAX_DEPTH` deep)."""
    result: dict[str, Any] = {}
    for key, value in tree.items:
        item = _value(value)
        if key.replace("_", "").lower() in LIST_KEYS:
            items = item if isinstance(item, list) else [item]
            previous = result.get(key)
            result[key] = [*previous, *items] if isinstance(previous, list) else items
        else:
            result[key] = item  # a repeated key: the last one wins, as in JSON
    return result


def _value(value: hcl.Value) -> Any:
    if isinstance(value, hcl.Object):
        return _plain(value)
    if isinstance(value, list):
        return [_value(item) for item in value]
    return value


def entry_label(entry: Mapping[str, Any]) -> str:
    """`<Kind>/<Name>` as Consul's messages name an entry (`Name` is matched case-insensitively)."""
    kind = entry.get("Kind", entry.get("kind"))
    name = next((value for key, value in entry.items() if key.lower() == "name"), "")
    return f"{kind}/{'' if name is None else name}"


# -- handlers


def write(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering config write [-cas -modify-index=N] <file or ->`."""
    if len(args.source) != 1:
        raise CommandError("Must provide exactly one positional argument to specify the config entry to write")
    entry = parse_entry(load_source(args.source[0]))
    label = entry_label(entry)
    query = {"cas": str(args.modify_index)} if args.cas else None
    with client_for(args, transport) as api, failing_as(f"Error writing config entry {label}"):
        written = _boolean(api.request("PUT", "/v1/config", entry, query=query))
    if not written:
        raise CommandError(f"Config entry not updated: {label}")
    print(f"Config entry written: {label}")
    return 0


def read(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering config read -kind K -name N`: the entry as JSON."""
    kind, name = _kind(args), _name(args)
    with client_for(args, transport) as api, failing_as(f"Error reading config entry {kind}/{name}"):
        entry = api.request("GET", _path(kind, name))
        if not isinstance(entry, dict):
            raise InvalidResponseError("expected a JSON object")
    print(to_json(entry))
    return 0


def list_entries(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering config list -kind K`: the name of each entry, one a line."""
    kind = _kind(args)
    with client_for(args, transport) as api, failing_as(f"Error listing config entries for kind {_quoted(kind)}"):
        entries = api.request("GET", f"/v1/config/{quote(kind, safe='')}")
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise InvalidResponseError("expected a JSON array of objects")
    for entry in entries:
        print(entry.get("Name", ""))
    return 0


def delete(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering config delete -kind K -name N [-cas -modify-index=N]`."""
    kind, name = _kind(args), _name(args)
    if args.cas and args.modify_index == 0:
        raise CommandError("Must specify a -modify-index greater than 0 with -cas")
    if args.modify_index != 0 and not args.cas:
        raise CommandError("Cannot specify -modify-index without -cas")
    with client_for(args, transport) as api, failing_as(f"Error deleting config entry {kind}/{name}"):
        if args.cas:
            deleted = _boolean(api.request("DELETE", _path(kind, name), query={"cas": str(args.modify_index)}))
        else:
            api.request("DELETE", _path(kind, name), parse=False)
            deleted = True
    if not deleted:
        raise CommandError(f"Config entry not deleted: {kind}/{name}")
    print(f"Config entry deleted: {kind}/{name}")
    return 0


def _kind(args: argparse.Namespace) -> str:
    if not args.kind:
        raise CommandError("Must specify the -kind parameter")
    return str(args.kind)


def _name(args: argparse.Namespace) -> str:
    if not args.name:
        raise CommandError("Must specify the -name parameter")
    return str(args.name)


def _path(kind: str, name: str) -> str:
    return f"/v1/config/{quote(kind, safe='')}/{quote(name, safe='')}"


def _boolean(answer: Any) -> bool:
    if not isinstance(answer, bool):
        raise InvalidResponseError("expected true or false")
    return answer


def _quoted(text: str) -> str:
    """Go's `%q` for the printable text of names."""
    return json.dumps(text, ensure_ascii=False)


def modify_index(text: str) -> int:
    """`-modify-index` as Go's Uint64Var reads it."""
    if not text.isdigit() or not text.isascii() or len(text) > 20 or int(text) >= 1 << 64:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: not an unsigned 64-bit integer")
    return int(text)
