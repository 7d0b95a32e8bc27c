"""`peering acl …`: Consul's `consul acl bootstrap|policy|token` subset, with its flags and layouts.

Each handler checks its flags, makes one API call and prints Consul's pretty block (or JSON).
A token's SecretID is printed only by the commands that create it; the server never sends it again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from peering.cli.commands import CommandError, client_for, failing_as, output_format, required
from peering.cli.formatting import to_json

Handler = Callable[[argparse.Namespace, httpx.BaseTransport | None], int]


# -- output


def format_policy(policy: Mapping[str, Any]) -> str:
    """`consul acl policy read`'s layout."""
    return "\n".join(
        [
            f"ID:           {_text(policy.get('ID'))}",
            f"Name:         {_text(policy.get('Name'))}",
            f"Description:  {_text(policy.get('Description'))}",
            f"Datacenters:  {', '.join(policy.get('Datacenters') or [])}".rstrip(),
            "Rules:",
            _text(policy.get("Rules")).rstrip("\n"),
        ]
    )


def format_policy_list(policies: Sequence[Mapping[str, Any]]) -> str:
    """`consul acl policy list`'s layout: one block per policy."""
    blocks = [
        "\n".join(
            [
                f"{_text(p.get('Name'))}:",
                f"   ID:           {_text(p.get('ID'))}",
                f"   Description:  {_text(p.get('Description'))}",
                f"   Datacenters:  {', '.join(p.get('Datacenters') or [])}".rstrip(),
            ]
        )
        for p in policies
    ]
    return "\n".join(blocks)


def format_token(token: Mapping[str, Any]) -> str:
    """`consul acl token read`'s layout; `SecretID` only when the answer carries it (at creation)."""
    lines = [f"AccessorID:       {_text(token.get('AccessorID'))}"]
    if token.get("SecretID"):
        lines.append(f"SecretID:         {token['SecretID']}")
    lines += [
        f"Description:      {_text(token.get('Description'))}",
        f"Local:            {str(bool(token.get('Local'))).lower()}",
        f"Create Time:      {_text(token.get('CreateTime'))}",
    ]
    if token.get("ExpirationTime"):
        lines.append(f"Expiration Time:  {token['ExpirationTime']}")
    cidrs = token.get("AllowedCIDRs") or []
    if cidrs:
        lines.append(f"Allowed CIDRs:    {', '.join(cidrs)}")
    lines.append("Policies:")
    lines.extend(f"   {_text(p.get('ID'))} - {_text(p.get('Name'))}" for p in token.get("Policies") or [])
    return "\n".join(lines)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# -- handlers


def _show(args: argparse.Namespace, value: Any, pretty: Callable[[Any], str]) -> int:
    print(to_json(value) if args.format == "json" else pretty(value))
    return 0


def _call(args: argparse.Namespace, transport: httpx.BaseTransport | None, prefix: str, *request: Any) -> Any:
    output_format(args.format)
    with client_for(args, transport) as api, failing_as(prefix):
        return api.request(*request)


def bootstrap(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl bootstrap`: create the first management token and show its secret (once)."""
    token = _call(args, transport, "Failed ACL bootstrapping", "PUT", "/v1/acl/bootstrap")
    return _show(args, token, format_token)


def _rules(value: str | None) -> str:
    """`-rules` as Consul reads it: text, `@file`, or `-` for standard input."""
    if not value:
        return ""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Failed to read rules from {value[1:]!r}: {exc}") from exc
    return value


def policy_create(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl policy create -name N [-description D] [-rules R|@file|-]`."""
    name = required(args.name, "-name")
    body = {"Name": name, "Description": args.description or "", "Rules": _rules(args.rules)}
    policy = _call(args, transport, "Failed to create new policy", "PUT", "/v1/acl/policy", body)
    return _show(args, policy, format_policy)


def _policy_path(args: argparse.Namespace) -> str:
    if args.id:
        return f"/v1/acl/policy/{quote(args.id, safe='')}"
    if args.name:
        return f"/v1/acl/policy/name/{quote(args.name, safe='')}"
    raise CommandError("Must specify either the -id or -name parameters")


def policy_read(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl policy read -id ID | -name NAME`."""
    policy = _call(args, transport, "Error reading policy", "GET", _policy_path(args))
    return _show(args, policy, format_policy)


def policy_list(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl policy list`."""
    policies = _call(args, transport, "Failed to retrieve the policy list", "GET", "/v1/acl/policies")
    return _show(args, policies, format_policy_list)


def policy_delete(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl policy delete -id ID | -name NAME` (a name is looked up first, as Consul does)."""
    output_format(args.format)
    with client_for(args, transport) as api, failing_as("Error deleting policy"):
        policy_id = args.id or api.request("GET", _policy_path(args))["ID"]
        api.request("DELETE", f"/v1/acl/policy/{quote(policy_id, safe='')}")
    print(f'Policy "{policy_id}" deleted successfully')
    return 0


def token_create(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl token create [-description D] [-policy-id ID]… [-policy-name N]… [-expires-ttl 1h] …`."""
    body: dict[str, Any] = {"Description": args.description or ""}
    links = [{"ID": pid} for pid in args.policy_id or []] + [{"Name": name} for name in args.policy_name or []]
    if links:
        body["Policies"] = links
    if args.expires_ttl:
        body["ExpirationTTL"] = args.expires_ttl
    if args.allowed_cidr:
        body["AllowedCIDRs"] = args.allowed_cidr
    if args.accessor:
        body["AccessorID"] = args.accessor
    if args.secret:
        body["SecretID"] = args.secret
    if args.local:
        body["Local"] = True
    token = _call(args, transport, "Failed to create new token", "PUT", "/v1/acl/token", body)
    return _show(args, token, format_token)


def token_read(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl token read -id ACCESSOR | -self`."""
    path = "/v1/acl/token/self" if args.self else f"/v1/acl/token/{quote(required(args.id, '-id'), safe='')}"
    token = _call(args, transport, "Error reading token", "GET", path)
    return _show(args, token, format_token)


def token_list(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl token list` (never with secrets)."""
    tokens = _call(args, transport, "Failed to retrieve the token list", "GET", "/v1/acl/tokens")
    return _show(args, tokens, lambda items: "\n\n".join(format_token(t) for t in items))


def token_delete(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering acl token delete -id ACCESSOR`: the token stops working at once."""
    accessor = required(args.id, "-id")
    with client_for(args, transport) as api, failing_as(f"Error deleting token {accessor!r}"):
        api.request("DELETE", f"/v1/acl/token/{quote(accessor, safe='')}")
    print(f'Token "{accessor}" deleted successfully')
    return 0
