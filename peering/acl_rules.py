"""Policy rules as Consul writes them (HCL or JSON) read into `acl_model.Rules`.

`peering = "read"`, `operator = "write"`, `service "web" { policy = "read" intentions = "read" }`,
`key_prefix "" { policy = "list" }`, Enterprise-shaped `namespace`/`partition` blocks, comments; or the
same as JSON. The text is first checked for what is cheap to check (its size, its characters), so a
caller can do that before anything costly (the permission check, then the parse, SPEC §3); the parse
itself (`hcl.loads`) is linear and bounded. Every failure is `Failed to parse ACL rules: …`.
"""

from __future__ import annotations

from peering.acl_model import Level, NamedRule, Rules, ScopeRule
from peering.errors import InvalidRequestError
from peering.hcl import HclError, Object, Value, loads

MAX_RULES_BYTES = 64 * 1024

SIMPLE = ("acl", "keyring", "mesh", "operator", "peering")
_NAMED = frozenset(
    {
        kind + suffix
        for kind in ("agent", "event", "identity", "key", "node", "query", "service", "session")
        for suffix in ("", "_prefix")
    }
)
_WITH_INTENTIONS = frozenset({"service", "service_prefix", "identity", "identity_prefix"})
_WITH_LIST = frozenset({"key", "key_prefix"})
_SCOPES = {  # Enterprise blocks, and the blocks each may contain
    "partition": ("namespace", "namespace_prefix"),
    "partition_prefix": ("namespace", "namespace_prefix"),
    "namespace": (),
    "namespace_prefix": (),
}
_LEVELS = "must be read, write or deny"
_LEVELS_WITH_LIST = "must be read, write, list or deny"


def _fail(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"Failed to parse ACL rules: {detail}")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:64] + "...")


def check_rules_text(text: str) -> None:
    """The cheap checks, done before any permission check or parse: size and characters.

    Raises:
        InvalidRequestError: over `MAX_RULES_BYTES` bytes of UTF-8, or not text (a lone surrogate).
    """
    too_long = f"Invalid Policy: Rules are over the limit of {MAX_RULES_BYTES} bytes"
    if len(text) > MAX_RULES_BYTES:  # each character is at least one byte: no need to encode a megabyte
        raise InvalidRequestError(too_long)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequestError("Invalid Policy: Rules contain a lone surrogate, which is not a character") from None
    if size > MAX_RULES_BYTES:
        raise InvalidRequestError(too_long)


def parse_rules(text: str) -> Rules:
    """The rules `text` grants. Empty or comments only grants nothing.

    Raises:
        InvalidRequestError: too large, not valid HCL or JSON, an unknown resource or field, a bad level.
    """
    check_rules_text(text)
    try:
        document = loads(text)
    except HclError as exc:
        raise _fail(str(exc)) from None
    return _rules(document, scope=None)


def _rules(document: Object, scope: str | None) -> Rules:
    levels: dict[str, Level] = {}
    named: list[NamedRule] = []
    scopes: list[ScopeRule] = []
    allowed_scopes = _SCOPES.get(scope, ()) if scope else tuple(_SCOPES)
    for resource, value in document.items:
        if resource in SIMPLE:
            levels[resource] = _level(f"{resource} policy", value, with_list=False)
        elif resource in _NAMED:
            named.extend(_named(resource, value))
        elif resource in allowed_scopes:
            scopes.extend(_scoped(resource, value))
        elif scope is not None and resource in ("policy", "intentions"):
            continue  # a scope's own levels, read by _scoped
        elif resource in _SCOPES:
            raise _fail(f"a {resource} block cannot be inside a {scope} block")
        else:
            raise _fail(f"unknown resource {_shown(resource)}")
    return Rules(levels, tuple(named), tuple(scopes))


def _level(what: str, value: Value, *, with_list: bool) -> Level:
    if not isinstance(value, str):
        raise _fail(f'{what} must be a string such as "read", not a {_kind(value)}')
    try:
        level = Level(value)
    except ValueError:
        level = None
    if level is None or (level is Level.LIST and not with_list):
        raise _fail(f"invalid {what} {_shown(value)}: {_LEVELS_WITH_LIST if with_list else _LEVELS}")
    return level


def _kind(value: Value) -> str:
    if isinstance(value, Object):
        return "block"
    if isinstance(value, list):
        return "list"
    return "bool" if isinstance(value, bool) else "number"


def _blocks(resource: str, value: Value) -> list[tuple[str, Object]]:
    """`resource "name" { … }` blocks, whether written as blocks, as an object of names, or as a list of those."""
    groups = value if isinstance(value, list) else [value]
    found: list[tuple[str, Object]] = []
    for group in groups:
        if not isinstance(group, Object):
            raise _fail(f'{resource} rules are blocks: {resource} "<name>" {{ policy = "read" }}')
        for name, body in group.items:
            if not isinstance(body, Object):
                raise _fail(f'{resource} {_shown(name)} must be a block: {resource} "<name>" {{ policy = "read" }}')
            found.append((name, body))
    return found


def _named(resource: str, value: Value) -> list[NamedRule]:
    rules = []
    for name, body in _blocks(resource, value):
        fields: dict[str, Level] = {}
        for key, inner in body.items:
            if key == "policy" or (key == "intentions" and resource in _WITH_INTENTIONS):
                with_list = key == "policy" and resource in _WITH_LIST
                fields[key] = _level(f"{resource} {_shown(name)} {key}", inner, with_list=with_list)
            else:
                raise _fail(f"unknown field {_shown(key)} in {resource} {_shown(name)}")
        if "policy" not in fields:
            raise _fail(f"{resource} {_shown(name)} has no policy")
        rules.append(NamedRule(resource, name, fields["policy"], fields.get("intentions")))
    return rules


def _scoped(resource: str, value: Value) -> list[ScopeRule]:
    scopes = []
    for name, body in _blocks(resource, value):
        own = {
            key: _level(f"{resource} {_shown(name)} {key}", inner, with_list=False)
            for key, inner in body.items
            if key in ("policy", "intentions")
        }
        scopes.append(ScopeRule(resource, name, _rules(body, resource), own.get("policy"), own.get("intentions")))
    return scopes
