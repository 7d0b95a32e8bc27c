"""Parsing policy rules written in HCL (with a real HCL parser) or JSON, as Consul accepts them."""

from __future__ import annotations

import json
from typing import Any

import hcl2
import lark

from peering.acl_model import Level
from peering.errors import InvalidRequestError

# resources Consul knows; only peering, operator and acl mean something here, the rest are kept
_KNOWN = {
    "acl", "agent", "agent_prefix", "event", "event_prefix", "identity", "identity_prefix", "key", "key_prefix",
    "keyring", "mesh", "node", "node_prefix", "operator", "peering", "query", "query_prefix", "service",
    "service_prefix", "session", "session_prefix", "partition", "partition_prefix", "namespace", "namespace_prefix",
}  # fmt: skip
_SIMPLE = ("acl", "keyring", "mesh", "operator", "peering")


def _fail(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"Failed to parse ACL rules: {detail}")


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_rules(text: str) -> dict[str, Level]:
    """The levels granted to `peering`, `operator` and `acl` (and other simple resources) by `text`.

    Raises:
        InvalidRequestError: the text is neither valid HCL nor JSON, or grants an unknown level.
    """
    if not text.strip():
        return {}
    document: Any
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise _fail(f"invalid JSON: {exc}") from None
    else:
        try:
            document = hcl2.loads(text)
        except (lark.exceptions.LarkError, ValueError, TypeError) as exc:
            raise _fail(f"invalid HCL: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(document, dict):
        raise _fail("rules must be an object")
    grants: dict[str, Level] = {}
    for resource, raw in document.items():
        if resource not in _KNOWN:
            raise _fail(f"unknown resource {resource!r}")
        if resource not in _SIMPLE:
            continue  # a block resource (key_prefix "" { … }): valid, but nothing here uses it
        value = _unquote(raw)
        try:
            grants[resource] = Level(value)
        except ValueError:
            raise _fail(f"invalid {resource} policy {str(value)[:64]!r}: must be read, write or deny") from None
    return grants
