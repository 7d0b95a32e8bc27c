"""A small reader for the HCL subset Consul's policies and config entries are written in, and for JSON.

Both give the same plain tree: an `Object` is an ordered list of `(key, value)` pairs (duplicates kept,
as HCL allows `service "a" {…}` twice); a value is a string, number, bool, list or `Object`.
`service "web" { policy = "read" }` reads as `service = { "web" = { policy = "read" } }`, which is also
the shape of its JSON form.

Supported: `key = value`, blocks with labels (`key "label" { … }`), strings with their escapes,
numbers, bools, lists, `#`, `//` and `/* */` comments. Not supported (refused, never guessed):
heredocs; `${…}` is kept as text, not interpolated.

The reader is total and bounded, because what it reads comes from clients: one left-to-right pass (every
regular expression here is possessive, so it matches in linear time and never re-scans), a nesting-depth
and a token-count limit checked as it goes, number lengths capped before conversion, and every error a
`HclError` (a `ValueError`) that says where. JSON goes through the standard library only after a linear
scan has checked its depth and size, so deep input can never reach the decoder's recursion. Stdlib only.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TypeAlias

MAX_DEPTH = 16
MAX_TOKENS = 12_288  # 64 KiB of `service "s0001" { policy = "read" }` blocks (1,700 of them) has 12,000
_MAX_LABELS = 4  # `partition "p" { … }` has one; Consul's rules never need more
_MAX_NUMBER = 32  # characters: far beyond any real value, far below int()'s digit limit

Value: TypeAlias = "str | int | float | bool | list[Value] | Object"


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to build, and there can be thousands
class Object:
    """An HCL block or JSON object: its pairs in order, duplicate keys kept."""

    items: list[tuple[str, Value]] = field(default_factory=list)


class HclError(ValueError):
    """The text is not valid HCL (or JSON) of the supported subset, or breaks a limit."""


_SURROGATE = re.compile("[\ud800-\udfff]")
# one match per token, after any whitespace and comments (possessive, so nothing is ever re-scanned);
# groups: 1 string, 2 number, 3 identifier, 4 punctuation, 5 an error; none at the end of the text
_TOKEN = re.compile(
    r"""(?:[ \t\r\n\f\v]++|\#[^\n]*+|//[^\n]*+|/\*.*?\*/)*+
    (?: ("(?:[^"\\\n]++|\\[^\n])*+")
      | (-?(?:0[xX][0-9a-fA-F]++|[0-9]++(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?))
      | ([A-Za-z_][A-Za-z0-9_.\-]*+)
      | ([{}\[\]=,])
      | (/\*|"|<<|.)
      | \Z )""",
    re.VERBOSE | re.DOTALL,
)
_STRING, _NUMBER_TOKEN, _IDENT, _ERROR, _END = 1, 2, 3, 5, 0
_ERRORS = {"/*": "unterminated /* comment", '"': "unterminated string", "<<": "heredoc strings are not supported"}
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
# a JSON string runs to its closing quote or to the end of the text (never fails, so never re-scans)
_JSON_PIECE = re.compile(r'"(?:[^"\\]++|\\.?)*+("?)|[\[{]|[\]}]', re.DOTALL)


def loads(text: str, *, max_depth: int = MAX_DEPTH, max_tokens: int = MAX_TOKENS) -> Object:
    """The tree of an HCL body, or of a JSON object when the text starts with `{` (as HCL itself decides).

    Raises:
        HclError: not valid, nested deeper than `max_depth`, or more than `max_tokens` tokens (values, for JSON).
    """
    if _SURROGATE.search(text):
        raise HclError("the text contains a lone surrogate, which is not a character")
    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith("{"):
        return loads_json(text, max_depth=max_depth, max_tokens=max_tokens)
    return _Parser(text, max_depth, max_tokens).document()


def loads_json(text: str, *, max_depth: int = MAX_DEPTH, max_tokens: int = MAX_TOKENS) -> Object:
    """The tree of a JSON object, its depth checked before it is decoded.

    Raises:
        HclError: not a JSON object, nested deeper than `max_depth`, more than `max_tokens` strings and
            brackets or values.
    """
    depth = 0
    for count, piece in enumerate(_JSON_PIECE.finditer(text)):
        if count == max_tokens:
            raise HclError(f"invalid JSON: more than {max_tokens} strings and brackets")
        first = piece[0][0]
        if first == '"':
            if not piece[1]:
                raise HclError(f"invalid JSON: unterminated string at {_where(text, piece.start())}")
        elif first in "[{":
            depth += 1
            if depth > max_depth:
                raise HclError(f"invalid JSON: nested more than {max_depth} levels at {_where(text, piece.start())}")
        else:
            depth -= 1
    try:
        # numbers are converted in C (its int() refuses more than 4,300 digits); _check_tree refuses inf
        data = json.loads(text, object_pairs_hook=Object, parse_constant=_json_constant)
    except RecursionError:  # pragma: no cover -- the scan above bounds the depth far below the limit
        raise HclError("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise HclError(f"invalid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, Object):
        raise HclError("invalid JSON: the rules must be an object")
    _check_tree(data, max_tokens)
    return data


def _json_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def _check_tree(root: Object, max_values: int) -> None:
    """Count the values and refuse lone surrogates (the JSON decoder lets `\\ud800` through)."""
    count = 0
    pending: list[Value] = [root]
    while pending:
        value = pending.pop()
        count += 1
        if count > max_values:
            raise HclError(f"invalid JSON: more than {max_values} values")
        if isinstance(value, Object):
            for key, inner in value.items:
                if _SURROGATE.search(key):
                    raise HclError("a key contains a lone surrogate, which is not a character")
                pending.append(inner)
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise HclError("a string contains a lone surrogate, which is not a character")
        elif isinstance(value, float) and not math.isfinite(value):
            raise HclError("invalid JSON: a number is out of range")


def _where(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return f"line {line}, column {column}"


class _Parser:
    """Recursive descent over tokens read one at a time; the depth limit bounds the recursion."""

    def __init__(self, text: str, max_depth: int, max_tokens: int) -> None:
        self._text = text
        self._max_depth = max_depth
        self._tokens_left = max_tokens
        self._matches = _TOKEN.finditer(text)
        self._match: re.Match[str] | None = None
        self._kind = _END
        self._lexeme = ""  # punctuation is recognised by its text alone: no other token can equal it
        self._advance()

    def _fail(self, what: str) -> HclError:
        match = self._match
        start = 0 if match is None else match.start(self._kind) if self._kind else match.end()
        return HclError(f"invalid HCL: {_where(self._text, start)}: {what}")

    def _found(self) -> str:
        return "the end of the text" if self._kind == _END else repr(self._lexeme[:40])

    def _advance(self) -> None:
        self._tokens_left -= 1
        if self._tokens_left < 0:
            raise self._fail("too many tokens")
        # the pattern matches at every position (an error group catches the rest), ending with an empty match
        match = self._match = next(self._matches)
        kind = self._kind = match.lastindex or _END
        self._lexeme = match[kind] if kind else ""
        if kind == _ERROR:
            raise self._fail(_ERRORS.get(self._lexeme, f"unexpected character {self._lexeme!r}"))

    def _nest(self, depth: int) -> int:
        if depth >= self._max_depth:
            raise self._fail(f"nested more than {self._max_depth} levels")
        return depth + 1

    def document(self) -> Object:
        return self._body(0, closing=False)

    def _body(self, depth: int, *, closing: bool) -> Object:
        items: list[tuple[str, Value]] = []
        while not (closing and self._lexeme == "}"):
            if self._kind == _END:
                if closing:
                    raise self._fail("expected '}', found the end of the text")
                return Object(items)
            items.append(self._item(depth))
            if self._lexeme == ",":
                self._advance()
        self._advance()
        return Object(items)

    def _item(self, depth: int) -> tuple[str, Value]:
        keys: list[str] = []
        while self._kind in (_IDENT, _STRING):
            if len(keys) == _MAX_LABELS:
                raise self._fail(f"more than {_MAX_LABELS - 1} labels on a block")
            keys.append(self._string() if self._kind == _STRING else self._lexeme)
            self._advance()
        if not keys:
            raise self._fail(f"expected a key, found {self._found()}")
        value: Value
        if self._lexeme == "=":
            if len(keys) > 1:
                raise self._fail(f"expected '{{' after the labels of {keys[0][:40]!r}, found '='")
            self._advance()
            value = self._value(depth)
        elif self._lexeme == "{":
            inner = self._nest(depth + len(keys) - 1)
            self._advance()
            value = self._body(inner, closing=True)
        else:
            raise self._fail(f"expected '=' or '{{' after {keys[0][:40]!r}, found {self._found()}")
        for label in reversed(keys[1:]):
            value = Object([(label, value)])
        return keys[0], value

    def _value(self, depth: int) -> Value:
        kind, lexeme = self._kind, self._lexeme
        if self._lexeme == "{":
            inner = self._nest(depth)
            self._advance()
            return self._body(inner, closing=True)
        if self._lexeme == "[":
            return self._list(self._nest(depth))
        value: Value
        if kind == _STRING:
            value = self._string()
        elif kind == _NUMBER_TOKEN:
            value = self._number()
        elif kind == _IDENT and lexeme in ("true", "false"):
            value = lexeme == "true"
        elif kind == _IDENT:
            raise self._fail(f"expected a value, found {self._found()} (strings need double quotes)")
        else:
            raise self._fail(f"expected a value, found {self._found()}")
        self._advance()
        return value

    def _list(self, depth: int) -> list[Value]:
        self._advance()
        values: list[Value] = []
        while self._lexeme != "]":
            values.append(self._value(depth))
            if self._lexeme == ",":
                self._advance()
            elif self._lexeme != "]":
                raise self._fail(f"expected ',' or ']', found {self._found()}")
        self._advance()
        return values

    def _number(self) -> int | float:
        number = self._lexeme
        if len(number) > _MAX_NUMBER:
            raise self._fail(f"number {number[:16]!r}... is too long")
        if "x" in number or "X" in number:
            return int(number, 16)
        try:
            return int(number)
        except ValueError:  # a fraction or an exponent (the token pattern admits only numbers)
            return float(number)

    def _string(self) -> str:
        body = self._lexeme[1:-1]
        escapes = body.count("\\")
        if not escapes:
            return body
        self._tokens_left -= escapes  # each escape costs a call below: they share the budget of tokens
        if self._tokens_left < 0:
            raise self._fail("too many tokens")
        return _ESCAPE.sub(self._unescape, body)

    def _unescape(self, match: re.Match[str]) -> str:
        code = match[1] or match[2]
        if code is None:
            simple = _SIMPLE_ESCAPES.get(match[3])
            if simple is None:
                raise self._fail(f"unsupported escape \\{match[3]} in a string")
            return simple
        point = int(code, 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            raise self._fail(f"escape \\u{code} is not a character")
        return chr(point)
