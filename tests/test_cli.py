"""The peering subcommands against `httpx.MockTransport`: the exact request sent, output and exit code."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from peering import __version__
from peering.cli import main
from peering.cli.parser import HELP_FLAGS, Parser, build_parser
from peering.identity import load_or_create

PEERING: dict[str, Any] = {
    "ID": "9e3b4d3e-6c1f-4a57-9a35-0f8e7b1f2a11",
    "Name": "cluster-02",
    "Partition": "default",
    "Meta": {"env": "production", "app": "web"},
    "State": "ACTIVE",
    "PeerID": "2c1d9f50-0b8a-4b55-8f0e-5d8c2b7a4e33",
    "PeerCAPems": ["-----BEGIN CERTIFICATE-----\n..."],
    "PeerServerName": "server.dc2.consul",
    "PeerServerAddresses": ["10.0.0.1:8503", "10.0.0.2:8503"],
    "ImportedServiceCount": 0,
    "ExportedServiceCount": 2,
    "StreamStatus": {
        "ImportedServices": [],
        "ExportedServices": [],
        "LastHeartbeat": "2024-05-01T10:00:00Z",
        "LastReceive": "2024-05-01T10:00:01.5Z",
        "LastSend": None,
    },
    "Remote": {"Datacenter": "dc2", "Partition": "default"},
    "CreateIndex": 10,
    "ModifyIndex": 12,
}

READ_PRETTY = """\
Name:         cluster-02
ID:           9e3b4d3e-6c1f-4a57-9a35-0f8e7b1f2a11
Partition:    default
State:        ACTIVE
Meta:
    app=web
    env=production

Peer ID:               2c1d9f50-0b8a-4b55-8f0e-5d8c2b7a4e33
Peer Server Name:      server.dc2.consul
Peer CA Pems:          1
Peer Server Addresses:
    10.0.0.1:8503
    10.0.0.2:8503

Imported Services: 0
Exported Services: 2

Last Heartbeat:    2024-05-01T10:00:00Z
Last Send:         <nil>
Last Receive:      2024-05-01T10:00:01.5Z

Create Index: 10
Modify Index: 12
"""

CHECK_VALID: dict[str, Any] = {
    "IsValid": True,
    "ErrorMessage": None,
    "RemoteServerName": "server.dc2.consul",
    "RemoteDatacenter": "dc2",
    "RemotePeerID": "2c1d9f50-0b8a-4b55-8f0e-5d8c2b7a4e33",
    "RemoteServerVersion": "0.1.0",
    "RemoteServerCompatVersion": "1",
}
CHECK_INVALID: dict[str, Any] = {
    "IsValid": False,
    "ErrorMessage": "peering token signature is invalid",
    "RemoteServerName": None,
    "RemoteDatacenter": None,
    "RemotePeerID": None,
    "RemoteServerVersion": None,
    "RemoteServerCompatVersion": None,
}
BASE = "http://127.0.0.1:8500"


@dataclass
class Call:
    code: int
    out: str
    err: str
    requests: list[httpx.Request] = field(default_factory=list)

    @property
    def request(self) -> httpx.Request:
        assert len(self.requests) == 1
        return self.requests[0]


class Cli:
    """Runs `main(argv)` with a MockTransport answering with `responses` in order (an exception is raised)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, argv: list[str], *responses: httpx.Response | BaseException) -> Call:
        queue = list(responses)
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            item = queue.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item

        code = main(argv, transport=httpx.MockTransport(handler))
        out, err = self.capsys.readouterr()
        assert not queue, "not every prepared response was used"
        return Call(code, out, err, requests)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def ok(payload: Any) -> httpx.Response:
    return httpx.Response(200, json=payload)


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


# generate-token


def test_generate_token_pretty_prints_the_token_alone(cli: Cli) -> None:
    call = cli(["generate-token", "-name", "foo"], ok({"PeeringToken": "dG9rZW4="}))
    assert (call.code, call.out, call.err) == (0, "dG9rZW4=\n", "")
    assert call.request.method == "POST"
    assert str(call.request.url) == f"{BASE}/v1/peering/token"
    assert body(call.request) == {"PeerName": "foo"}
    assert "X-Consul-Token" not in call.request.headers
    assert call.request.headers["User-Agent"] == f"peering-cli/{__version__}"


def test_generate_token_sends_every_option_and_prints_json(cli: Cli) -> None:
    argv = [
        "generate-token",
        "-name=bar",
        "-meta",
        "env=production",
        "--meta=region=us-east-1",
        "-server-external-addresses=1.2.3.4:8503, 5.6.7.8:8503",
        "--server-external-addresses",
        "9.9.9.9:8503,",
        "-partition",
        "team-a",
        "-format=json",
        "-token",
        "s3cret",
    ]
    call = cli(argv, ok({"PeeringToken": "dG9rZW4="}))
    assert (call.code, call.out, call.err) == (0, '{"PeeringToken": "dG9rZW4="}\n', "")
    assert call.request.url.params["partition"] == "team-a"
    assert call.request.headers["X-Consul-Token"] == "s3cret"
    assert body(call.request) == {
        "PeerName": "bar",
        "Partition": "team-a",
        "Meta": {"env": "production", "region": "us-east-1"},
        "ServerExternalAddresses": ["1.2.3.4:8503", "5.6.7.8:8503", "9.9.9.9:8503"],
    }


@pytest.mark.parametrize("flags", [["-name", "foo"], ["-name=foo"], ["--name", "foo"], ["--name=foo"]], ids=" ".join)
def test_every_flag_syntax_is_accepted(cli: Cli, flags: list[str]) -> None:
    call = cli(["generate-token", *flags], ok({"PeeringToken": "t"}))
    assert call.code == 0
    assert body(call.request)["PeerName"] == "foo"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate-token"], "Missing the required -name flag"),
        (["generate-token", "-name="], "Missing the required -name flag"),
        (["generate-token", "-name=foo", "-format=toml"], "Invalid format, valid formats are {json|pretty}"),
        (["generate-token", "-name=foo", "-meta=env"], "Invalid -meta value 'env': expected key=value"),
        (["generate-token", "-name=foo", "-meta", "=x"], "Invalid -meta value '=x': expected key=value"),
        (["establish", "-peering-token=t"], "Missing the required -name flag"),
        (["establish", "-name=foo"], "Missing the required -peering-token flag"),
        (["establish", "-name=foo", "-peering-token=t", "-meta=x"], "Invalid -meta value 'x': expected key=value"),
        (["read"], "Missing the required -name flag"),
        (["read", "-name=foo", "-format", "yaml"], "Invalid format, valid formats are {json|pretty}"),
        (["list", "-format=table"], "Invalid format, valid formats are {json|pretty}"),
        (["delete"], "Missing the required -name flag"),
        (["check", "-peering-token=t"], "Missing the required -name flag"),
        (["check", "-name=foo"], "Missing the required -peering-token flag"),
        (["check", "-name=foo", "-peering-token=t", "-format=xml"], "Invalid format, valid formats are {json|pretty}"),
    ],
)
def test_bad_flags_exit_1_before_any_request(cli: Cli, argv: list[str], message: str) -> None:
    call = cli(argv)
    assert (call.code, call.out, call.err, call.requests) == (1, "", message + "\n", [])


@pytest.mark.parametrize(
    ("argv", "prefix"),
    [
        (["generate-token", "-name=foo"], "Error generating peering token for foo"),
        (["establish", "-name=foo", "-peering-token=t"], "Error establishing peering for foo"),
        (["read", "-name=foo"], "Error reading peering"),
        (["list"], "Error listing peerings"),
        (["delete", "-name=foo"], "Error deleting peering for foo"),
        (["check", "-name=foo", "-peering-token=t"], "Error checking peering token for foo"),
    ],
)
def test_api_errors_are_reported_like_consul(cli: Cli, argv: list[str], prefix: str) -> None:
    call = cli(argv, httpx.Response(400, text="foo is not a valid peer name\n"))
    expected = f"{prefix}: Unexpected response code: 400 (foo is not a valid peer name)\n"
    assert (call.code, call.out, call.err) == (1, "", expected)


@pytest.mark.parametrize(
    ("argv", "method", "path"),
    [
        (["generate-token", "-name=foo"], "Post", "/v1/peering/token"),
        (["establish", "-name=foo", "-peering-token=t"], "Post", "/v1/peering/establish"),
        (["read", "-name=foo"], "Get", "/v1/peering/foo"),
        (["list", "-partition=p"], "Get", "/v1/peerings?partition=p"),
        (["delete", "-name=foo"], "Delete", "/v1/peering/foo"),
        (["check", "-name=foo", "-peering-token=t"], "Post", "/v1/peering/check"),
    ],
)
def test_connection_failures_name_the_request(cli: Cli, argv: list[str], method: str, path: str) -> None:
    call = cli(argv, httpx.ConnectError("[Errno 111] Connection refused"))
    assert call.code == 1
    assert call.out == ""
    assert call.err.endswith(f': {method} "{BASE}{path}": connection refused\n')


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectTimeout("timed out"), "connection timed out"),
        (httpx.ReadTimeout("timed out"), "timed out waiting for the response"),
        (httpx.ConnectError("[Errno -2] Name or service not known"), "name or service not known"),
        (
            httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
        ),
        (httpx.ConnectError("TLS handshake failed"), "TLS handshake failed"),
        (httpx.RemoteProtocolError(""), "RemoteProtocolError"),
    ],
)
def test_transport_errors_give_a_short_reason(cli: Cli, error: httpx.HTTPError, reason: str) -> None:
    call = cli(["list"], error)
    assert call.err == f'Error listing peerings: Get "{BASE}/v1/peerings": {reason}\n'


def test_a_refused_connection_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """Real network: a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["read", "-name=foo", f"-http-addr=127.0.0.1:{port}"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        f'Error reading peering: Get "http://127.0.0.1:{port}/v1/peering/foo": connection refused\n',
    )


@pytest.mark.parametrize(
    ("argv", "response", "message"),
    [
        (
            ["generate-token", "-name=foo"],
            httpx.Response(200, text="<html>"),
            "Error generating peering token for foo: response body is not JSON",
        ),
        (
            ["generate-token", "-name=foo"],
            ok({}),
            "Error generating peering token for foo: response has no PeeringToken",
        ),
        (
            ["generate-token", "-name=foo"],
            ok(["x"]),
            "Error generating peering token for foo: response has no PeeringToken",
        ),
        (["read", "-name=foo"], ok([]), "Error reading peering: expected a JSON object"),
        (["list"], ok({}), "Error listing peerings: expected a JSON array"),
        (["list"], ok([1]), "Error listing peerings: expected a JSON object"),
        (
            ["check", "-name=foo", "-peering-token=t"],
            ok({"IsValid": "yes"}),
            "Error checking peering token for foo: response has no IsValid",
        ),
    ],
)
def test_unexpected_success_bodies_are_errors(
    cli: Cli, argv: list[str], response: httpx.Response, message: str
) -> None:
    call = cli(argv, response)
    assert call.code == 1
    assert call.err.startswith(message)


# establish


def test_establish_sends_token_meta_and_partition_from_env(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_PARTITION", "team-b")
    argv = ["establish", "--name", "bar", "--peering-token=dG9rZW4=", "-meta", "env=prod", "-meta", "env=staging"]
    call = cli(argv, ok({}))
    assert (call.code, call.out, call.err) == (0, "Successfully established peering connection with bar\n", "")
    assert (call.request.method, call.request.url.path) == ("POST", "/v1/peering/establish")
    assert call.request.url.params["partition"] == "team-b"
    assert body(call.request) == {
        "PeerName": "bar",
        "PeeringToken": "dG9rZW4=",
        "Partition": "team-b",
        "Meta": {"env": "staging"},
    }


def test_partition_flag_wins_over_env(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_PARTITION", "team-b")
    call = cli(["establish", "-name=bar", "-peering-token=t", "-partition=team-a"], ok({}))
    assert call.request.url.params["partition"] == "team-a"
    assert body(call.request)["Partition"] == "team-a"


def test_establish_refused_secret(cli: Cli) -> None:
    message = "a new peering token must be generated: invalid peering establishment secret"
    call = cli(["establish", "-name=bar", "-peering-token=t"], httpx.Response(403, text=message))
    assert call.err == f"Error establishing peering for bar: Unexpected response code: 403 ({message})\n"


# read


def test_read_pretty(cli: Cli) -> None:
    call = cli(["read", "-name", "cluster-02"], ok(PEERING))
    assert (call.code, call.out, call.err) == (0, READ_PRETTY, "")
    assert (call.request.method, str(call.request.url)) == ("GET", f"{BASE}/v1/peering/cluster-02")


def test_read_json_keeps_the_api_order_with_4_space_indent(cli: Cli) -> None:
    call = cli(["read", "-name=cluster-02", "-format", "json"], ok(PEERING))
    assert call.code == 0
    assert call.out == json.dumps(PEERING, indent=4) + "\n"
    assert list(json.loads(call.out)) == list(PEERING)


def test_read_pretty_of_a_sparse_consul_object(cli: Cli) -> None:
    """Older servers: empty Partition, no counts, null lists, a DeletedAt, no stream status."""
    sparse = {
        "ID": "abc",
        "Name": "foo",
        "Partition": "",
        "DeletedAt": "2024-05-01T10:00:00Z",
        "State": "DELETING",
        "Meta": {},
        "CreateIndex": 3,
        "ModifyIndex": 4,
    }
    call = cli(["read", "-name=foo"], ok(sparse))
    assert call.out == (
        "Name:         foo\n"
        "ID:           abc\n"
        "Partition:    default\n"
        "DeletedAt:    2024-05-01T10:00:00Z\n"
        "State:        DELETING\n"
        "\n"
        "Peer ID:               \n"
        "Peer Server Name:      \n"
        "Peer CA Pems:          0\n"
        "\n"
        "Imported Services: 0\n"
        "Exported Services: 0\n"
        "\n"
        "Last Heartbeat:    <nil>\n"
        "Last Send:         <nil>\n"
        "Last Receive:      <nil>\n"
        "\n"
        "Create Index: 3\n"
        "Modify Index: 4\n"
    )


def test_read_counts_stream_lists_when_the_count_fields_are_missing(cli: Cli) -> None:
    peering = {"Name": "foo", "StreamStatus": {"ImportedServices": ["a", "b"], "ExportedServices": ["c"]}}
    call = cli(["read", "-name=foo"], ok(peering))
    assert "Imported Services: 2\nExported Services: 1\n" in call.out


def test_read_unknown_peering(cli: Cli) -> None:
    call = cli(["read", "-name=foo"], httpx.Response(404, text='Peering not found for "foo"'))
    assert (call.code, call.out, call.err) == (1, "", "No peering with name foo found.\n")


def test_read_quotes_the_name_in_the_path(cli: Cli) -> None:
    call = cli(["read", "-name=a b/c"], httpx.Response(404))
    assert call.request.url.raw_path == b"/v1/peering/a%20b%2Fc"


def test_read_server_error(cli: Cli) -> None:
    call = cli(["read", "-name=foo"], httpx.Response(500, text="boom"))
    assert call.err == "Error reading peering: Unexpected response code: 500 (boom)\n"


# list


def _peering(name: str, state: str, meta: dict[str, str] | None = None, exported: int = 0) -> dict[str, Any]:
    return {
        "Name": name,
        "State": state,
        "Meta": meta or {},
        "ImportedServiceCount": 0,
        "ExportedServiceCount": exported,
    }


LISTED = [
    _peering("cluster-03", "PENDING"),
    _peering("cluster-02", "ACTIVE", {"region": "us-east-1", "env": "production"}, exported=2),
]


def test_list_pretty_table_sorted_by_name(cli: Cli) -> None:
    call = cli(["list"], ok(LISTED))
    assert call.code == 0
    assert call.out == (
        "Name        State    Imported Svcs  Exported Svcs  Meta\n"
        "cluster-02  ACTIVE   0              2              env=production,region=us-east-1\n"
        "cluster-03  PENDING  0              0\n"
    )
    assert (call.request.method, str(call.request.url)) == ("GET", f"{BASE}/v1/peerings")


def test_list_json_sorted_by_name(cli: Cli) -> None:
    call = cli(["list", "-format=json"], ok(LISTED))
    assert call.out == json.dumps([LISTED[1], LISTED[0]], indent=4) + "\n"


@pytest.mark.parametrize(("fmt", "output"), [("pretty", "There are no peering connections.\n"), ("json", "[]\n")])
def test_list_without_peerings(cli: Cli, fmt: str, output: str) -> None:
    call = cli(["list", f"-format={fmt}"], ok([]))
    assert (call.code, call.out, call.err) == (0, output, "")


# delete


def test_delete(cli: Cli) -> None:
    call = cli(["delete", "-name", "foo", "-partition", "team-a"], httpx.Response(200))
    assert (call.code, call.out, call.err) == (0, "Successfully submitted peering connection, foo, for deletion\n", "")
    assert (call.request.method, str(call.request.url)) == ("DELETE", f"{BASE}/v1/peering/foo?partition=team-a")
    assert call.request.content == b""


# check


def test_check_valid_pretty(cli: Cli) -> None:
    call = cli(["check", "-name=bar", "-peering-token=dG9rZW4="], ok(CHECK_VALID))
    assert (call.code, call.err) == (0, "")
    assert call.out == (
        "Peering token for bar is valid.\n"
        "Remote Server Name:    server.dc2.consul\n"
        "Remote Datacenter:     dc2\n"
        "Remote Peer ID:        2c1d9f50-0b8a-4b55-8f0e-5d8c2b7a4e33\n"
        "Remote Server Version: 0.1.0\n"
    )
    assert (call.request.method, call.request.url.path) == ("POST", "/v1/peering/check")
    assert body(call.request) == {"PeerName": "bar", "PeeringToken": "dG9rZW4="}


def test_check_invalid_pretty(cli: Cli) -> None:
    call = cli(["check", "-name=bar", "-peering-token=t"], ok(CHECK_INVALID))
    expected = "Peering token for bar is not valid: peering token signature is invalid\n"
    assert (call.code, call.out, call.err) == (1, "", expected)


def test_check_invalid_without_a_message(cli: Cli) -> None:
    call = cli(["check", "-name=bar", "-peering-token=t"], ok({**CHECK_INVALID, "ErrorMessage": None}))
    assert call.err == "Peering token for bar is not valid: no reason given\n"


@pytest.mark.parametrize(("result", "code"), [(CHECK_VALID, 0), (CHECK_INVALID, 1)])
def test_check_json_exit_code_follows_validity(cli: Cli, result: dict[str, Any], code: int) -> None:
    call = cli(["check", "-name=bar", "-peering-token=t", "-format=json"], ok(result))
    assert (call.code, call.out, call.err) == (code, json.dumps(result, indent=4) + "\n", "")


# API options


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("10.0.0.5:8600", "http://10.0.0.5:8600/v1/peerings"),
        ("http://agent:8500", "http://agent:8500/v1/peerings"),
        ("https://agent:8501/", "https://agent:8501/v1/peerings"),
        ("[::1]:8500", "http://[::1]:8500/v1/peerings"),
    ],
)
def test_http_addr_forms(cli: Cli, address: str, url: str) -> None:
    call = cli(["list", "-http-addr", address], ok([]))
    assert str(call.request.url) == url


def test_http_addr_from_env_and_flag_wins(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "https://env-agent:8501")
    assert str(cli(["list"], ok([])).request.url) == "https://env-agent:8501/v1/peerings"
    assert str(cli(["list", "-http-addr=flag-agent:1"], ok([])).request.url) == "http://flag-agent:1/v1/peerings"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("ftp://agent:21", "Invalid -http-addr 'ftp://agent:21': unknown protocol scheme 'ftp' (use http or https)"),
        ("http://agent:1/v1", "Invalid -http-addr 'http://agent:1/v1': expected host:port or http(s)://host:port"),
        ("agent:1?x=1", "Invalid -http-addr 'agent:1?x=1': expected host:port or http(s)://host:port"),
        ("agent:port", "Invalid -http-addr 'agent:port': Invalid port: 'port'"),
    ],
)
def test_bad_http_addr(cli: Cli, address: str, message: str) -> None:
    call = cli(["list", f"-http-addr={address}"])
    assert (call.code, call.out, call.err) == (1, "", message + "\n")


def test_bad_http_addr_from_env_names_the_variable(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "unix:///tmp/agent.sock")
    call = cli(["list"])
    assert call.err.startswith("Invalid CONSUL_HTTP_ADDR 'unix:///tmp/agent.sock': unknown protocol scheme")


def _token_of(cli: Cli, argv: list[str]) -> str | None:
    token: str | None = cli(["list", *argv], ok([])).request.headers.get("X-Consul-Token")
    return token


def test_token_sources_and_precedence(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    flag_file = tmp_path / "flag-token"
    flag_file.write_text("  from-flag-file\n")
    env_file = tmp_path / "env-token"
    env_file.write_text("from-env-file\n")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    assert _token_of(cli, []) == "from-env"
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(env_file))
    assert _token_of(cli, []) == "from-env-file"
    assert _token_of(cli, ["-token=from-flag"]) == "from-flag"
    assert _token_of(cli, ["-token=from-flag", f"-token-file={flag_file}"]) == "from-flag-file"


def test_a_token_flag_makes_the_env_token_file_irrelevant(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(tmp_path / "missing"))
    assert _token_of(cli, ["-token=from-flag"]) == "from-flag"


def test_an_empty_token_file_falls_through(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    assert _token_of(cli, [f"-token-file={empty}"]) == "from-env"


def test_unreadable_token_files(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    call = cli(["list", f"-token-file={missing}"])
    assert (call.code, call.err) == (1, f"Error loading token file {str(missing)!r}: No such file or directory\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    call = cli(["list", f"-token-file={binary}"])
    assert call.code == 1
    assert call.err.startswith(f"Error loading token file {str(binary)!r}: 'utf-8' codec can't decode")


def test_the_token_is_never_printed(cli: Cli) -> None:
    call = cli(["read", "-name=foo", "-token=s3cret-value"], httpx.Response(403, text="ACL not found"))
    assert call.err == "Error reading peering: Unexpected response code: 403 (ACL not found)\n"
    assert "s3cret-value" not in call.out + call.err


def test_interrupt_exits_130(cli: Cli) -> None:
    assert cli(["list"], KeyboardInterrupt()).code == 130


# help and version, as Consul's CLI


def _command_paths(parser: Parser | None = None, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    parser = parser or build_parser()
    paths = [path]
    for name, child in parser.subcommands().items():
        paths += _command_paths(child, (*path, name))
    return paths


COMMAND_PATHS = _command_paths()


def test_every_command_is_walked() -> None:
    assert len(COMMAND_PATHS) == 35
    assert ("acl", "token", "create") in COMMAND_PATHS


@pytest.mark.parametrize("flag", HELP_FLAGS)
@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda path: " ".join(path) or "peering")
def test_every_help_flag_works_on_every_command(cli: Cli, path: tuple[str, ...], flag: str) -> None:
    """Consul's `-help` (which argparse alone reads as `-h elp`), `-h` and `--help` print the help, exit 0."""
    call = cli([*path, flag])
    assert (call.code, call.err) == (0, "")
    assert call.out.startswith(" ".join(["usage: peering", *path]))
    assert "\t" not in call.out
    assert "-help, -h, --help" in call.out or "<command> -help" in call.out


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda path: " ".join(path) or "peering")
def test_help_command_shows_what_help_flag_shows(cli: Cli, path: tuple[str, ...]) -> None:
    flagged = cli([*path, "-help"])
    shown = cli(["help", *path])
    assert (shown.code, shown.out, shown.err) == (0, flagged.out, "")


@pytest.mark.parametrize(
    "argv",
    [
        ["read", "-name", "-help"],
        ["read", "-bogus", "-help"],
        ["acl", "token", "create", "-expires-ttl", "1h", "-h"],
        ["establish", "--help", "-name", "x"],
    ],
    ids=" ".join,
)
def test_help_anywhere_wins_over_flag_errors_and_sends_nothing(cli: Cli, argv: list[str]) -> None:
    call = cli(argv)  # no prepared response: a request would fail the test
    assert (call.code, call.err) == (0, "")
    prefix = " ".join(word for word in argv if not word.startswith("-") and word not in ("1h", "x"))
    assert call.out.startswith(f"usage: peering {prefix} ")
    assert call.requests == []


def test_leaf_help_is_laid_out_like_consul(cli: Cli) -> None:
    out = cli(["read", "-help"]).out
    assert out.startswith("usage: peering read [options] -name <peer name>\n\n  Show the peering connection")
    assert "  Example:\n\n    $ peering read -name cluster-02\n" in out
    assert "\nCommand Options:\n" in out
    assert "\nHTTP API Options:\n  -http-addr ADDRESS" in out


def test_root_help_lists_every_command_sorted_with_its_summary(cli: Cli) -> None:
    out = cli(["help"]).out
    assert out.startswith("usage: peering [--version] [-help] <command> [<args>]\n")
    rows = out.split("Available commands are:\n")[1].split("\n\n")[0].splitlines()
    names = [row.split()[0] for row in rows]
    assert names == sorted(path[0] for path in COMMAND_PATHS if len(path) == 1)
    assert "    version              Print the peering version." in rows


def test_group_help_lists_its_subcommands(cli: Cli) -> None:
    call = cli(["acl", "policy"])
    assert call.code == 0
    assert call.out.startswith("usage: peering acl policy <command> [options] [args]\n")
    assert [row.split()[0] for row in call.out.split("Subcommands:\n")[1].split("\n\n")[0].splitlines()] == [
        "create",
        "delete",
        "list",
        "read",
    ]
    assert "Run 'peering acl policy <command> -help' or 'peering help acl policy <command>'" in call.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["help", "bogus"], "peering: unknown command 'bogus'. Run 'peering -help' for the list.\n"),
        (
            ["help", "acl", "nope", "x"],
            "peering acl: unknown command 'nope x'. Run 'peering acl -help' for the list.\n",
        ),
        (["help", "read", "extra"], "peering read: unknown command 'extra'. Run 'peering read -help' for the list.\n"),
    ],
)
def test_help_of_an_unknown_command_exits_1(cli: Cli, argv: list[str], message: str) -> None:
    call = cli(argv)
    assert (call.code, call.out, call.err) == (1, "", message)


def test_help_flags_after_a_double_dash_are_arguments(cli: Cli) -> None:
    call = cli(["read", "-name", "x", "--", "-help"])
    assert (call.code, call.out) == (1, "")
    assert call.err.startswith("peering read: error: unrecognized arguments: -- -help\n")


@pytest.mark.parametrize("argv", [["version"], ["--version"]])
def test_version_command_and_flag_agree(cli: Cli, argv: list[str]) -> None:
    call = cli(argv)
    assert (call.code, call.out, call.err) == (0, f"peering {__version__}\n", "")


# TLS mismatches against real listeners


class _Quiet(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 `[]`; logs nothing (the test reads stderr)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _listener(context: ssl.SSLContext | None = None) -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 (TLS with `context`) on a port the OS picks; stopped on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_https_against_a_plain_http_port_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with _listener() as port:
        assert main(["list", "-http-addr", f"http://127.0.0.1:{port}"]) == 0  # the listener is fine over http
        assert capsys.readouterr().out == "There are no peering connections.\n"
        code = main(["list", "-http-addr", f"https://127.0.0.1:{port}"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        f'Error listing peerings: Get "https://127.0.0.1:{port}/v1/peerings": '
        f"the server does not speak TLS here (is it http://127.0.0.1:{port}?)\n"
    )


def test_an_untrusted_tls_certificate_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    context = load_or_create(tmp_path, "dc1").server_ssl_context()  # signed by a CA nobody trusts
    with _listener(context) as port:
        code = main(["read", "-name", "x", "-http-addr", f"https://127.0.0.1:{port}"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    prefix = f'Error reading peering: Get "https://127.0.0.1:{port}/v1/peering/x": TLS handshake failed: '
    assert err.startswith(prefix + "certificate verify failed: ")
    assert err.count("\n") == 1
    assert "_ssl.c" not in err


def test_a_reader_that_went_away_ends_the_command_quietly() -> None:
    """`peering … | head -1`: the reader closes the pipe; the command stops with 141 and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "peering", "openapi"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, b"")
