"""The command-line grammar: `peering serve|openapi` and Consul's `peering <subcommand> -flag value`.

Peering flags are registered as `-name` and `--name`, so Go-style `-name x`, `-name=x` and the
GNU forms all parse. Usage errors exit 1 like Consul's CLI, not argparse's 2. As in Consul,
`-help`, `-h` or `--help` anywhere on the line shows the help of the command named before it
(argparse alone would read `-help` as `-h elp`); `peering help <command>` shows the same text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import httpx

from peering.cli import acl, commands, helptext, serve, sharing

FLAG_FORMS = "Every flag may be written -flag value, -flag=value, --flag value or --flag=value."
HELP_FLAGS = ("-help", "-h", "--help")


class ParserExit(Exception):  # noqa: N818 - mirrors argparse's own exit, it is not an error
    """argparse finished early (help, version or a usage error); `status` is the exit code."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises `ParserExit` instead of exiting, with status 1 for usage errors.

    It takes Consul's `-help` besides `-h` and `--help`, knows its subcommands (`subcommand`) and
    lists them the way `consul` does.
    """

    def __init__(self, *args: Any, summary: str = "", **kwargs: Any) -> None:
        kwargs["add_help"] = False
        super().__init__(*args, **kwargs)
        self.summary = summary
        self._commands: argparse._SubParsersAction[Parser] | None = None
        self._optionals.title = "Command Options"
        self.add_argument(*HELP_FLAGS, action="help", help="Show this help and exit.")

    def add_commands(self) -> argparse._SubParsersAction[Parser]:
        """The subcommands' registry; each is added with `_child`."""
        # prog given, or argparse would build the children's names from this parser's usage line
        self._commands = self.add_subparsers(title="commands", metavar="<command>", prog=self.prog)
        return self._commands

    def subcommands(self) -> dict[str, Parser]:
        """The commands under this one by name (none for a command that takes flags)."""
        return dict(self._commands.choices) if self._commands is not None else {}

    def resolve(self, words: Sequence[str]) -> tuple[Parser, list[str]]:
        """The deepest command that `words` name (flags are skipped) and the words after it."""
        parser, rest = self, list(words)
        while rest and rest[0] != "--":
            if not rest[0].startswith("-"):
                child = parser.subcommands().get(rest[0])
                if child is None:
                    break
                parser = child
            rest.pop(0)
        return parser, rest

    def format_help(self) -> str:
        """A command's flags as argparse lays them out; a group's commands as `consul` lists them."""
        children = self.subcommands()
        if not children:
            return super().format_help()
        width = max(map(len, children)) + 4
        path = self.prog.removeprefix("peering").strip()
        title = "Subcommands" if path else "Available commands are"
        rows = [f"    {name.ljust(width)}{children[name].summary}" for name in sorted(children)]
        return "\n".join(
            [
                f"usage: {self.format_usage().removeprefix('usage: ').strip()}",
                "",
                self.description or "",
                "",
                f"{title}:",
                *rows,
                "",
                f"Run '{self.prog} <command> -help' or 'peering help {path}{' ' if path else ''}<command>' for its options.",
                "",
            ]
        )

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise ParserExit(status)

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message}\nRun '{self.prog} -h' for usage.\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows `-name NAME` once instead of `-name NAME, --name NAME`."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        strings = action.option_strings
        if len(strings) == 2 and strings[1] == "-" + strings[0]:
            action = argparse.Action([strings[0]], action.dest, nargs=action.nargs, metavar=action.metavar)
        return super()._format_action_invocation(action)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line; `handler` is None when no subcommand was given, `parser` the one used.

    Raises:
        ParserExit: help or version was printed, or the command line is wrong (status 1).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    root = build_parser()
    if any(word in HELP_FLAGS for word in words[: words.index("--") if "--" in words else None]):
        root.resolve(words)[0].print_help()
        raise ParserExit(0)
    args, extra = root.parse_known_args(words)
    if extra:  # reported by the subcommand's parser, so the message and hint name it
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser() -> Parser:
    """The `peering` parser; each subcommand sets `handler` (a `commands.Handler`) and `parser` (itself)."""
    parser = Parser(
        prog="peering",
        usage=helptext.ROOT_USAGE,
        description="Cluster peering with Consul's peering HTTP API: run a cluster or manage its peerings.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=commands.version_text())
    parser.set_defaults(handler=None, parser=parser)
    sub = parser.add_commands()

    def command(name: str, summary: str, handler: commands.Handler | None, epilog: str | None = FLAG_FORMS) -> Parser:
        return _child(sub, name, summary, handler, epilog)

    _serve_options(command("serve", "Run a cluster: the client HTTP API and the peering endpoint.", serve.serve, None))
    command("openapi", "Print the client API's OpenAPI document.", serve.openapi, None)

    generate = command(
        "generate-token", "Generate a peering token for a peer to establish with.", commands.generate_token
    )
    _flag(generate, "name", "Name of the peer the token is for (required).")
    _meta(generate)
    _flag(
        generate,
        "server-external-addresses",
        "Comma-separated host:port addresses to put in the token instead of the advertised one; repeatable.",
        metavar="ADDRESSES",
        append=True,
    )
    _format(generate)
    _api_options(generate)

    est = command("establish", "Establish a peering with the cluster that generated a token.", commands.establish)
    _flag(est, "name", "Local name for the peering (required).")
    _flag(est, "peering-token", "Token generated by the other cluster (required).", metavar="TOKEN")
    _meta(est)
    _api_options(est)

    read = command("read", "Show one peering.", commands.read)
    _flag(read, "name", "Name of the peering to read (required).")
    _format(read)
    _api_options(read)

    listing = command("list", "List the peerings of a partition, sorted by name.", commands.list_peerings)
    _format(listing)
    _api_options(listing)

    delete = command("delete", "Delete a peering; the peer is told.", commands.delete)
    _flag(delete, "name", "Name of the peering to delete (required).")
    _api_options(delete)

    check = command("check", "Check a peering token without establishing (exit 1 if not valid).", commands.check)
    _flag(check, "name", "Local name the peering would get (required).")
    _flag(check, "peering-token", "Token generated by the other cluster (required).", metavar="TOKEN")
    _format(check)
    _api_options(check)

    _acl_commands(command("acl", "Manage ACL policies and tokens, like `consul acl`.", None, None))
    # config …, services …, exported-services, catalog …: sharing services with peers
    sharing.add_commands(sharing.Grammar(command, _child, _flag, _format, _api_options))

    shown = command("help", "Show the help of a command, or the list of commands.", _help, None)
    shown.add_argument("command", nargs="*", metavar="<command>", help="A command, e.g. read or acl token create.")
    command("version", "Print the peering version.", commands.version, None)
    return parser


def _help(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering help [<command> ...]`: the text `-help` shows for that command."""
    target, rest = build_parser().resolve(args.command)
    if rest:
        raise commands.CommandError(
            f"{target.prog}: unknown command {' '.join(rest)!r}. Run '{target.prog} -help' for the list."
        )
    target.print_help()
    return 0


def _child(
    sub: argparse._SubParsersAction[Parser],
    name: str,
    summary: str,
    handler: commands.Handler | None,
    epilog: str | None = FLAG_FORMS,
) -> Parser:
    """A subcommand parser; it sets `handler` (None: a group that prints its help) and `parser` (itself).

    Its usage line and description come from `helptext` when that has them (keyed by the path).
    """
    path = f"{sub._prog_prefix} {name}".removeprefix("peering ")
    usage = helptext.USAGE.get(path)
    if handler is None:
        usage = helptext.GROUP_USAGE
    child: Parser = sub.add_parser(
        name,
        help=summary,
        summary=summary,
        usage=None if usage is None else f"%(prog)s {usage}".rstrip(),
        description=helptext.DESCRIPTIONS.get(path, summary),
        epilog=epilog,
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    child.set_defaults(handler=handler, parser=child)
    return child


def _acl_commands(group: Parser) -> None:
    """`peering acl bootstrap|policy …|token …`."""
    sub = group.add_commands()
    bootstrap = _child(sub, "bootstrap", "Create the first management token (works once).", acl.bootstrap)
    _format(bootstrap)
    _api_options(bootstrap)

    policies = _child(sub, "policy", "Create, read, list and delete ACL policies.", None, None)
    policy = policies.add_commands()
    create = _child(policy, "create", "Create a policy.", acl.policy_create)
    _flag(create, "name", "Name of the policy (required).")
    _flag(create, "description", "Description of the policy.")
    _flag(create, "rules", "Rules in HCL or JSON, @file to read a file, - for standard input.", metavar="RULES")
    read = _child(policy, "read", "Show a policy.", acl.policy_read)
    delete = _child(policy, "delete", "Delete a policy.", acl.policy_delete)
    for child in (read, delete):
        _flag(child, "id", "ID of the policy.")
        _flag(child, "name", "Name of the policy.")
    listing = _child(policy, "list", "List every policy.", acl.policy_list)
    for child in (create, read, listing, delete):
        _format(child)
        _api_options(child)

    tokens = _child(sub, "token", "Create, read, list and delete ACL tokens.", None, None)
    token = tokens.add_commands()
    create = _child(token, "create", "Create a token; its SecretID is shown this once.", acl.token_create)
    _flag(create, "description", "Description of the token.")
    _flag(create, "policy-id", "ID of a policy to link; repeatable.", metavar="ID", append=True)
    _flag(create, "policy-name", "Name of a policy to link; repeatable.", metavar="NAME", append=True)
    _flag(create, "expires-ttl", "Lifetime of the token, e.g. 1h or 90s (default: no expiry).", metavar="DURATION")
    _flag(
        create,
        "allowed-cidr",
        "Source addresses allowed to use it, e.g. 10.0.0.0/8; repeatable.",
        metavar="CIDR",
        append=True,
    )
    _flag(create, "accessor", "AccessorID to use instead of a random one (a UUID).", metavar="ID")
    _flag(create, "secret", "SecretID to use instead of a random one (a UUID).", metavar="ID")
    create.add_argument("-local", "--local", action="store_true", help="Mark the token local (kept for Consul).")
    read = _child(token, "read", "Show a token (never its secret).", acl.token_read)
    _flag(read, "id", "AccessorID of the token.")
    read.add_argument("-self", "--self", action="store_true", help="Show the token this command is run with.")
    listing = _child(token, "list", "List every token (never their secrets).", acl.token_list)
    delete = _child(token, "delete", "Delete a token; it stops working at once.", acl.token_delete)
    _flag(delete, "id", "AccessorID of the token (required).")
    for child in (create, read, listing):
        _format(child)
    for child in (create, read, listing, delete):
        _api_options(child)


def _flag(
    parser: argparse._ActionsContainer, name: str, help_text: str, *, metavar: str | None = None, append: bool = False
) -> None:
    """A Consul flag `-name`, also accepted as `--name`."""
    parser.add_argument(
        f"-{name}",
        f"--{name}",
        dest=name.replace("-", "_"),
        help=help_text,
        metavar=metavar or name.upper().replace("-", "_"),
        action="append" if append else "store",
    )


def _meta(parser: argparse.ArgumentParser) -> None:
    _flag(parser, "meta", "Metadata for the peering as key=value; repeatable.", metavar="KEY=VALUE", append=True)


def _format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-format",
        "--format",
        default="pretty",
        metavar="FORMAT",
        help="Output format: pretty or json (default pretty).",
    )


def _api_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTP API Options")
    _flag(
        group,
        "http-addr",
        "Agent address: host:port or http(s)://host:port (env CONSUL_HTTP_ADDR, default 127.0.0.1:8500).",
        metavar="ADDRESS",
    )
    _flag(group, "token", "ACL token sent as X-Consul-Token (env CONSUL_HTTP_TOKEN).")
    _flag(
        group,
        "token-file",
        "File holding the ACL token; wins over -token (env CONSUL_HTTP_TOKEN_FILE).",
        metavar="PATH",
    )
    _flag(group, "partition", "Admin partition (env CONSUL_PARTITION; the server's default one when unset).")


def _serve_options(parser: argparse.ArgumentParser) -> None:
    """Options of `peering serve`; omitted ones stay unset so `PEERING_*` variables apply."""
    parser.epilog = "Every option also reads PEERING_<OPTION> (upper case, - as _); an option given here wins."
    unset = argparse.SUPPRESS
    options: list[tuple[str, str, str]] = [
        ("--data-dir", "DIR", "SQLite database and the cluster's CA (default ./data)."),
        ("--http-addr", "HOST:PORT", "Client HTTP API address (default 127.0.0.1:8500; port 0 picks one)."),
        ("--peering-addr", "HOST:PORT", "Peering endpoint address, TLS (default 127.0.0.1:8503)."),
        ("--advertise-addr", "HOST:PORT", "Address put into tokens (default the peering address)."),
        ("--datacenter", "NAME", "Datacenter name (default dc1)."),
        ("--node-name", "NAME", "Name of this cluster's own catalog node (default the host name)."),
        ("--heartbeat-interval", "SECONDS", "Seconds between heartbeats to an acceptor (default 15)."),
        ("--heartbeat-timeout", "SECONDS", "Seconds without a heartbeat before FAILING (default 120)."),
        ("--acl-initial-management-token", "TOKEN", "Secret of the initial management token (default none)."),
        ("--database-url", "URL", "postgresql://… makes this a replica on a shared PostgreSQL (default SQLite)."),
        ("--lease-ttl", "SECONDS", "PostgreSQL: seconds a replica owns background work unrenewed (default 10)."),
        ("--trusted-proxies", "CIDRS", "Comma-separated CIDRs whose X-Forwarded-For is believed (default none)."),
    ]
    for flag, metavar, help_text in options:
        parser.add_argument(flag, metavar=metavar, default=unset, help=help_text)
    parser.add_argument("--acl-enabled", action="store_true", default=unset, help="Enforce ACLs (default off).")
    parser.add_argument(
        "--ui", action=argparse.BooleanOptionalAction, default=unset, help="Serve the web console at /ui/ (default on)."
    )
    parser.add_argument(
        "--acl-default-policy",
        choices=("allow", "deny"),
        default=unset,
        help="Decision when no ACL rule matches (default deny).",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=unset, help="Log level (default info)."
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=unset, help="text, or json: one object a line (default text)."
    )
