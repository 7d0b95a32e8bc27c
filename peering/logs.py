"""Log set-up: text lines or one JSON object per line, with the structured fields callers pass in `extra`.

Logged values carry client input (paths, peer IDs, names), so every control character in them (CR, LF,
ANSI escapes, other C0/C1 and format characters) and every lone surrogate is written as an escape
(`\\n`, `\\x1b`, `\\udc80`): one record is always one line, and a terminal shows what was sent. In text
lines a value with a space, a quote, `=` or a backslash is quoted, so it cannot pose as another field.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# attributes every LogRecord has; anything else came from `extra=` and is a structured field
# (uvicorn's `color_message` is its message again, with terminal colour codes)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_char(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """`text` with every character that is not printable (except the space) written as an escape, and
    backslashes doubled (so that a sent `\\n` and an escaped line feed differ)."""
    if text.isprintable() and "\\" not in text:  # nearly always: two passes in C
        return text
    return "".join(_escape_char(char) if char in _NAMED or not char.isprintable() else char for char in text)


def _quoted(text: str) -> str:
    """A text-line field value: escaped, and in quotes if it could be read as more than one value."""
    text = escape(text)
    if text and " " not in text and '"' not in text and "=" not in text and "\\" not in text:
        return text
    return '"' + text.replace('"', '\\"') + '"'


_PLAIN = frozenset({int, float, bool, type(None)})  # written as they are


def _clean(value: object) -> object:
    """A JSON field value: strings escaped; numbers, booleans and None as they are; the rest as text."""
    if isinstance(value, str):
        return escape(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return escape(str(value))


def _traceback(text: str) -> str:
    """A formatted exception: its own line breaks kept, the rest escaped (its message may hold input)."""
    return "\n".join(escape(part) for part in text.split("\n"))


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD}


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`2026-11-24T20:00:00.000Z [INFO] peering.service: message key=value …`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={_quoted(str(value))}" for key, value in _fields(record).items())
        line = f"{_time(record)} [{record.levelname}] {record.name}: {escape(record.getMessage())}"
        line = f"{line} {fields}" if fields else line
        if record.exc_info:
            # indented: a line in the traceback can never pass for a record of its own
            line += "\n" + "\n".join(
                "  " + part for part in _traceback(self.formatException(record.exc_info)).split("\n")
            )
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": escape(record.getMessage()),
        }
        for key, value in record.__dict__.items():  # keys are the code's own (`extra=` names); values may hold input
            if key not in _STANDARD:
                entry[key] = value if type(value) in _PLAIN else _clean(value)
        if record.exc_info:
            entry["exception"] = _traceback(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure(level: str, fmt: str) -> None:
    """Send every log record at `level` or above to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would print query strings (which may carry ?token=); ours does not
    logging.getLogger("uvicorn.access").disabled = True
    # drivers that log request details (and bound SQL values) at DEBUG stay quiet below WARNING
    for name in ("aiosqlite", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
