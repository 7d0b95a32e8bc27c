"""Hostile values for the property tests (issue 11, finding 5): the classes that reached a 500, and their
neighbours, as hypothesis strategies, and a JSON encoder that can send what `json.dumps` cannot.

Classes: lone surrogates (as `\\udXXX` escapes, and as their CESU-8 bytes, which are not UTF-8), huge
digit strings (past Python's 4,300-digit `int` limit, in numbers, ports, durations, indexes), deep
nesting (JSON 100,000 deep, HCL and JSON inside strings), overflowing durations and times, control and
look-alike characters (CR/LF, ANSI, NUL, the Kelvin sign, Arabic-Indic digits), long strings, wrong types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """JSON text sent as it is where a value goes (what `json.dumps` would refuse or crash on)."""

    text: bytes

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}... {len(self.text)} bytes)"


class Long(str):
    """A string whose repr is short: hypothesis prints failing examples, and these are up to 100 KB."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{str(self)[:40]!r}... ({len(self)} characters)" if len(self) > 80 else str.__repr__(self)


def _long(values: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from([Long(value) for value in values])


def encode(value: Any) -> bytes:
    """`value` as JSON with ASCII escapes (so lone surrogates travel as `\\udXXX`), `Raw` parts verbatim."""
    raws: list[bytes] = []

    def swap(item: Any) -> Any:
        if isinstance(item, Raw):
            raws.append(item.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(item, dict):
            return {swap(key) if isinstance(key, Raw) else key: swap(v) for key, v in item.items()}
        if isinstance(item, list):
            return [swap(v) for v in item]
        return item

    text = json.dumps(swap(value)).encode()
    for number, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{number}\\u0000"'.encode(), raw)
    return text


def percent(value: str) -> str:
    """A query value percent-encoded from its bytes (a lone surrogate becomes its CESU-8 bytes: invalid UTF-8)."""
    return quote_from_bytes(value.encode("utf-8", errors="surrogatepass"), safe="")


HUGE = "9" * 5000
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
with_surrogate = st.builds(lambda a, s, b: a + s + b, st.text(max_size=6), SURROGATES, st.text(max_size=6))
huge_digits = _long([HUGE, "1" * 4301, "0" * 4999 + "1", "-" + HUGE, HUGE + "." + HUGE, "1e" + HUGE])
durations = _long(
    [HUGE + "s", "1" + "0" * 30 + "h", "2562048h", "9223372036854775808ns", "9223372036854775807ns", "-1s",
     "1e400s", "0.0000000001ns", "1h" * 2000, "٣s", "3\u200bs", "inf", "nan", "0x10s", "1.s", ".s", "5m5", "1ms1"]
)  # fmt: skip
times = _long(
    ["9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59.999999999Z", "0001-01-01T00:00:00+23:59",
     "+275760-09-13T00:00:00Z", "99999-01-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z",
     "2024-01-01T00:00:00+99:99", "2024-01-01T00:00:00", "2024-01-01", "٢٠٢٤-01-01T00:00:00Z", ""]
)  # fmt: skip
look_alikes = _long(
    ["\x00", "\r\n", "\n", "\x1b[31mred\x1b[0m", "\u2028", "\ufeff", "\u212a", "K", "٣", "x\x85y", "../..", "%00",
     "a" * 100_000, "é" * 300, " ", "", "-", "a-", "null", "default", "DEFAULT", "consul-x"]
)  # fmt: skip
deep_strings = _long(
    ['{"a":' * 20_000 + "1" + "}" * 20_000, "[" * 50_000 + "]" * 50_000, 'key_prefix "" {\n' * 10_000 + "}\n" * 10_000,
     "a {" * 30_000, 'peering = "read"\n' * 5_000]
)  # fmt: skip
hostile_text = st.one_of(with_surrogate, huge_digits, durations, times, look_alikes, deep_strings)
address_text = st.one_of(
    _long([f"127.0.0.1:{HUGE}", f"[::1]:{HUGE}", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:٣",
                     "127.0.0.1:-1", ":8503", "127.0.0.1", "[::1", f"{'a' * 300}:1", "h\udc00:1"]),
    hostile_text.map(lambda text: Long(f"host:{text}")),
)  # fmt: skip
raw_json = st.sampled_from(
    [Raw(b"[" * 100_000 + b"]" * 100_000), Raw(b'{"a":' * 50_000 + b"1" + b"}" * 50_000), Raw(HUGE.encode()),
     Raw(b"1e999"), Raw(b"-0"), Raw(b'"\xed\xa0\x80"'), Raw(b'"\xff\xfe"'), Raw(b'"\\ud800\\ud800"'), Raw(b"NaN")]
)  # fmt: skip
wrong_types: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, 0, -1, 2**64, 10**30, 1.5e308, [], {}, [None], {"a": []}, ["x"] * 100]
)
hostile_value = st.one_of(hostile_text, raw_json, wrong_types, st.lists(hostile_text, min_size=1, max_size=3))
hostile_key = st.one_of(with_surrogate, look_alikes, huge_digits)

# one or two of each class, for the exhaustive sweeps that run before the random examples
REPRESENTATIVES: list[Any] = [
    "\ud800", Long("x\udfffy"), Long(HUGE), Long(f"127.0.0.1:{HUGE}"), Long(f"{HUGE}s"), "2562048h", "1" + "0" * 30 + "h",
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", Long('{"a":' * 20_000 + "1" + "}" * 20_000),
    Long('key_prefix "" {\n' * 10_000 + "}\n" * 10_000), Raw(b"[" * 100_000 + b"]" * 100_000), Raw(HUGE.encode()),
    Raw(b'"\xed\xa0\x80"'), "\x1b[31m", "\r\nforged", "\u212a", "٣", Long("a" * 100_000), None, 10**30, [], {},
]  # fmt: skip
