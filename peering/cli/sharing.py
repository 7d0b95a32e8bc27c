"""The grammar of the service-sharing commands: `config …`, `services …`, `exported-services`, `catalog …`.

`parser.build_parser` calls `add_commands` with its own builders (`Grammar`), so these commands get the
same flag forms, help layout and API options as the peering ones.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from peering.cli import catalog, config, services

if TYPE_CHECKING:
    from peering.cli.parser import Parser

CAS_HELP = "Perform a Check-And-Set operation; needs -modify-index (default false)."
INDEX_HELP = "The ModifyIndex the entry must still have, with -cas (0: only if there is no entry yet)."


@dataclass(frozen=True)
class Grammar:
    """The builders of `parser`: `command(name, summary, handler, epilog=…)` adds a top-level command,
    `child(sub, name, summary, handler, epilog=…)` one under a group, `flag(parser, name, help, …)` a
    `-name`/`--name` flag, `format` the `-format` flag and `api_options` the HTTP API options."""

    command: Callable[..., Parser]
    child: Callable[..., Parser]
    flag: Callable[..., None]
    format: Callable[[argparse.ArgumentParser], None]
    api_options: Callable[[argparse.ArgumentParser], None]


def _switch(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), action="store_true", help=help_text)


def _cas(parser: argparse.ArgumentParser, *, index_help: str = INDEX_HELP) -> None:
    _switch(parser, "cas", CAS_HELP)
    parser.add_argument(
        "-modify-index",
        "--modify-index",
        dest="modify_index",
        type=config.modify_index,
        default=0,
        metavar="INDEX",
        help=index_help,
    )


def add_commands(grammar: Grammar) -> None:
    """Register every service-sharing command under the root parser."""
    _config_commands(grammar, grammar.command("config", "Write, read, list and delete config entries.", None, None))
    _services_commands(
        grammar, grammar.command("services", "Export services to peers; list exported and imported ones.", None, None)
    )
    exported = grammar.command(
        "exported-services", "List the services exported to a peer.", services.peering_exported_services
    )
    grammar.flag(exported, "name", "The local name of the peering (required).")
    grammar.format(exported)
    grammar.api_options(exported)
    _catalog_commands(grammar, grammar.command("catalog", "List the services of the catalog.", None, None))


def _config_commands(grammar: Grammar, group: Parser) -> None:
    sub = group.add_commands()
    child = grammar.child
    write = child(sub, "write", "Create or update a config entry from HCL or JSON.", config.write)
    write.add_argument("source", nargs="*", metavar="<file or ->", help="File with the entry, or - for stdin.")
    _cas(write)
    read = child(sub, "read", "Show a config entry as JSON.", config.read)
    listing = child(sub, "list", "List the names of the config entries of a kind.", config.list_entries)
    delete = child(sub, "delete", "Delete a config entry.", config.delete)
    for leaf in (read, listing, delete):
        grammar.flag(leaf, "kind", "The kind of config entry (exported-services).")
    for leaf in (read, delete):
        grammar.flag(leaf, "name", "The name of the config entry (the partition for exported-services).")
    _cas(delete, index_help="The ModifyIndex the entry must still have, with -cas (greater than 0).")
    for leaf in (write, read, listing, delete):
        grammar.api_options(leaf)


def _services_commands(grammar: Grammar, group: Parser) -> None:
    sub = group.add_commands()
    child = grammar.child
    export = child(sub, "export", "Export a service to cluster peers.", services.export)
    grammar.flag(export, "name", "The name of the service to export (required).")
    grammar.flag(export, "consumer-peers", "Comma-separated local names of the peerings to export to.", metavar="PEERS")
    grammar.flag(
        export,
        "consumer-partitions",
        "Comma-separated admin partitions to export to (Consul Enterprise; the server refuses them).",
        metavar="PARTITIONS",
    )
    exported = child(sub, "exported-services", "List the exported services and their consumers.", services.exported_services)  # fmt: skip
    imported = child(sub, "imported-services", "List the imported services and their peers.", services.imported_services)  # fmt: skip
    for leaf in (exported, imported):
        grammar.format(leaf)
    for leaf in (export, exported, imported):
        grammar.api_options(leaf)


def _catalog_commands(grammar: Grammar, group: Parser) -> None:
    sub = group.add_commands()
    listing = grammar.child(sub, "services", "List the services of the catalog, local or imported.", catalog.services)
    grammar.flag(listing, "peer", "List the services imported over this peering instead of the local ones.")
    grammar.flag(listing, "node", "List only the services of this node (its name).")
    _switch(listing, "tags", "Show each service's tags, comma-separated, beside its name.")
    grammar.api_options(listing)
