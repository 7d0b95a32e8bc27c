"""Log lines cannot be forged (issue 11.7): every control character, format character and lone surrogate
in a logged value is escaped, in text and JSON lines, and a text field cannot pose as another field."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from peering.logs import JsonFormatter, TextFormatter, escape
from tests.cluster import running_cluster

FAKE = "2000-01-01T00:00:00.000Z [ERROR] peering.api: forged"
HOSTILE = ["a\r\nb", "\x1b[31mred\x1b[0m", "c1\x85", "ls\u2028ps\u2029", "bidi\u202e", "lone\ud800", "nul\x00", "tab\t"]
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(DEBUG|INFO|WARNING|ERROR)\] [\w.]+: ")


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("peering.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def _raw_controls(text: str) -> set[str]:
    """Characters a terminal or a line-based reader would act on."""
    return {char for char in text if not char.isprintable() and char != " "}


@pytest.mark.parametrize("value", HOSTILE)
def test_both_formats_write_one_line_with_the_value_escaped(value: str) -> None:
    record = _record("got %s", value, path=value, peer_id=value)
    text = TextFormatter().format(record)
    line = JsonFormatter().format(record)
    for formatted in (text, line):
        assert "\n" not in formatted
        assert "\r" not in formatted
        assert not _raw_controls(formatted), formatted
        formatted.encode("utf-8")  # no lone surrogate left: the line can be written anywhere
    entry = json.loads(line)
    assert entry["message"] == "got " + escape(value)
    assert entry["path"] == entry["peer_id"] == escape(value)
    assert f' path="{escape(value)}" ' in text  # quoted: every escape holds a backslash


def test_escapes_are_readable_and_unambiguous() -> None:
    assert escape("plain /v1/peerings é") == "plain /v1/peerings é"
    assert escape("a\r\nb\tc") == "a\\r\\nb\\tc"
    assert escape("\x1b[0m\x85\u2028\ud800") == "\\x1b[0m\\x85\\u2028\\ud800"
    assert escape("sent \\n literally") == "sent \\\\n literally"  # not the same as an escaped line feed


def test_a_text_field_cannot_pose_as_another() -> None:
    text = TextFormatter().format(_record("request", path="/x status=200 client=10.0.0.1", status=404))
    assert text.endswith(' path="/x status=200 client=10.0.0.1" status=404')
    quoted = TextFormatter().format(_record("m", peer_name='say "hi"'))
    assert quoted.endswith(' peer_name="say \\"hi\\""')


def test_a_traceback_stays_inside_its_record() -> None:
    try:
        raise ValueError(f"bad input\n{FAKE}\x1b[2J")
    except ValueError:
        record = logging.LogRecord("peering.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = TextFormatter().format(record)
    first, *rest = text.split("\n")
    assert _RECORD_START.match(first)
    assert rest
    assert all(line.startswith("  ") for line in rest), rest  # never mistaken for a record
    assert "\x1b" not in text
    assert "\x1b" not in json.loads(JsonFormatter().format(record))["exception"]


def _hostile_requests(http_addr: str, peering_addr: str, ca_pem: str) -> None:
    """Paths with CR LF and a fake record, and with ANSI escapes, on both ports (answers do not matter)."""
    paths = [f"/v1/peering/x{quote(chr(13) + chr(10) + FAKE)}", "/v1/peering/%1b%5b31mred%1b%5b0m", "/%0a%0d%e2%80%a8"]
    host, port = http_addr.rsplit(":", 1)
    for path in paths:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            while sock.recv(65536):
                pass
    host, port = peering_addr.rsplit(":", 1)
    context = ssl.create_default_context(cadata=ca_pem)
    context.check_hostname = False
    for path in paths:
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(f"POST /peering/v1{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            tls.recv(65536)


def test_json_lines_of_a_real_process_stay_one_record_each(tmp_path: Path) -> None:
    """Over real sockets, paths carrying CR LF, a fake record and ANSI escapes, on the client port and (logged
    at debug) the peer port: every stderr line is one JSON object without a raw control character, and the
    paths are there, escaped."""
    with running_cluster(tmp_path / "data", "--log-level", "debug") as cluster:
        _hostile_requests(cluster.ready["http_addr"], cluster.peering_addr, (tmp_path / "data" / "ca.pem").read_text())
        assert cluster.stop() == 0
    paths = []
    for line in cluster.lines:
        assert line.endswith("\n")
        assert line.count("\n") == 1
        assert not _raw_controls(line.rstrip("\n")), line
        entry = json.loads(line)
        if entry["message"] == "request":
            paths.append(entry["path"])
    assert f"/v1/peering/x\\r\\n{FAKE}" in paths
    assert f"/peering/v1/v1/peering/x\\r\\n{FAKE}" in paths  # the peer port's request line, at debug
    assert "/v1/peering/\\x1b[31mred\\x1b[0m" in paths


@contextmanager
def _text_cluster(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], list[bytes]]]:
    """`peering serve --log-format text --log-level debug`; its stderr as raw lines (split at LF only)."""
    command = [sys.executable, "-m", "peering", "serve", "--data-dir", str(data_dir), "--log-format", "text",
               "--log-level", "debug", "--http-addr", "127.0.0.1:0", "--peering-addr", "127.0.0.1:0"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    lines: list[bytes] = []
    ready: dict[str, str] = {}
    started = threading.Event()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if b"cluster ready" in line and not started.is_set():
                ready.update(re.findall(r"(\w+)=(\S+)", line.decode()))
                started.set()
        started.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert started.wait(30), b"".join(lines)
        yield process, ready, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def test_text_lines_of_a_real_process_stay_one_record_each(tmp_path: Path) -> None:
    """The same requests against `--log-format text`: every line starts as a record of the service does (the
    fake one never starts a line) and holds no raw control character."""
    with _text_cluster(tmp_path / "data") as (process, ready, lines):
        _hostile_requests(ready["http_addr"], ready["peering_addr"], (tmp_path / "data" / "ca.pem").read_text())
        process.terminate()
        assert process.wait(10) == 0
    text = [line.decode("utf-8").removesuffix("\n") for line in lines]
    for line in text:
        assert _RECORD_START.match(line), line
        assert not _raw_controls(line), line
    assert any(f'path="/v1/peering/x\\r\\n{FAKE}"' in line for line in text), text
