"""The top-level `peering` command, `peering serve` (Settings from flags and env) and `peering openapi`."""

from __future__ import annotations

import sys
import types
from ipaddress import ip_network
from pathlib import Path

import pytest
from pydantic import SecretStr

from peering import __version__
from peering.cli import main, serve
from peering.settings import Settings

LIMITS = (
    "http_max_conns",
    "http_max_conns_per_client",
    "peering_max_conns",
    "peering_max_conns_per_client",
    "peering_handshake_timeout",
)
SUBCOMMANDS = ["serve", "openapi", "generate-token", "establish", "read", "list", "delete", "check"]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replaces the cluster with a recorder of the Settings it would run with."""
    seen: list[Settings] = []

    def fake_run(settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(serve, "run_cluster", fake_run)
    return seen


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr() == (f"peering {__version__}\n", "")


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"]])
def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: peering")
    assert all(f"    {name}" in out for name in SUBCOMMANDS)
    assert err == ""


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help_has_no_tabs(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert main([name, "-h"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"usage: peering {name}")
    assert "\t" not in out
    assert err == ""


def test_peering_flags_show_once_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    main(["read", "-h"])
    out = capsys.readouterr().out
    assert "  -name NAME  " in out
    assert "--name" not in out.replace("--name=", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "peering: error: argument <command>: invalid choice: 'bogus'"),
        (["read", "-name=foo", "-bogus"], "peering read: error: unrecognized arguments: -bogus"),
        (["read", "-name"], "peering read: error: argument -name/--name: expected one argument"),
        (["serve", "--log-level=verbose"], "peering serve: error: argument --log-level: invalid choice: 'verbose'"),
    ],
)
def test_usage_errors_exit_1_with_a_hint(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(message)
    assert err.endswith(f"Run '{message.split(':')[0]} -h' for usage.\n")


def test_serve_without_options_uses_env_then_defaults(started: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERING_DATACENTER", "dc9")
    monkeypatch.setenv("PEERING_HEARTBEAT_INTERVAL", "0.5")
    assert main(["serve"]) == 0
    [settings] = started
    assert settings == Settings(datacenter="dc9", heartbeat_interval=0.5)
    assert (settings.http_addr, settings.acl_enabled) == ("127.0.0.1:8500", False)


def test_serve_options_win_over_env(started: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PEERING_HTTP_ADDR", "127.0.0.1:9999")
    monkeypatch.setenv("PEERING_DATACENTER", "dc9")
    argv = [
        "serve",
        f"--data-dir={tmp_path}",
        "--http-addr",
        "127.0.0.1:0",
        "--peering-addr=0.0.0.0:8503",
        "--advertise-addr=10.0.0.1:8503",
        "--datacenter=east",
        "--node-name=east-1",
        "--heartbeat-interval=0.2",
        "--heartbeat-timeout",
        "1.5",
        "--acl-enabled",
        "--acl-default-policy=allow",
        "--acl-initial-management-token=root-secret",
        "--log-level=debug",
        "--log-format=json",
        "--trusted-proxies=127.0.0.1/32, 10.0.0.0/8",
    ]
    assert main(argv) == 0
    [settings] = started
    assert settings.model_dump(exclude={"acl_initial_management_token", *LIMITS}) == {
        "data_dir": tmp_path,
        "http_addr": "127.0.0.1:0",
        "peering_addr": "0.0.0.0:8503",
        "advertise_addr": "10.0.0.1:8503",
        "datacenter": "east",
        "node_name": "east-1",
        "heartbeat_interval": 0.2,
        "heartbeat_timeout": 1.5,
        "acl_enabled": True,
        "acl_default_policy": "allow",
        "log_level": "debug",
        "log_format": "json",
        "trusted_proxies": (ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8")),
        "ui": True,
        "database_url": None,
        "lease_ttl": 10.0,
        "fair_share_load": 0.5,
    }
    assert settings.acl_initial_management_token == SecretStr("root-secret")


def test_connection_limits_come_from_the_environment(started: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection limits have no flags (SECURITY.md documents them); `PEERING_*` sets them."""
    defaults = Settings()
    assert {name: getattr(defaults, name) for name in LIMITS} == {
        "http_max_conns": 16384,
        "http_max_conns_per_client": 4096,
        "peering_max_conns": 512,
        "peering_max_conns_per_client": 128,
        "peering_handshake_timeout": 5.0,
    }
    assert defaults.trusted_proxies == ()
    for name in LIMITS:
        monkeypatch.setenv(f"PEERING_{name.upper()}", "7")
    monkeypatch.setenv("PEERING_TRUSTED_PROXIES", "::1,192.168.0.0/16")
    assert main(["serve"]) == 0
    [settings] = started
    assert {name: getattr(settings, name) for name in LIMITS} == dict.fromkeys(LIMITS, 7)
    assert settings.trusted_proxies == (ip_network("::1/128"), ip_network("192.168.0.0/16"))


def test_serve_returns_the_exit_code_of_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "run_cluster", lambda settings: 3)
    assert main(["serve"]) == 3


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            ["--heartbeat-interval", "abc"],
            {},
            "Invalid --heartbeat-interval 'abc': Input should be a valid number, unable to parse string as a number",
        ),
        (["--heartbeat-timeout=0"], {}, "Invalid --heartbeat-timeout '0': Input should be greater than 0"),
        (
            [],
            {"PEERING_HEARTBEAT_TIMEOUT": "-1"},
            "Invalid PEERING_HEARTBEAT_TIMEOUT '-1': Input should be greater than 0",
        ),
        (
            ["--http-addr=nowhere", "--datacenter=a b"],
            {},
            "Invalid --http-addr 'nowhere': Value error, 'nowhere' is not a valid host:port address\n"
            "Invalid --datacenter 'a b': String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
        ),
        (
            ["--trusted-proxies=10.0.0.0/8,proxy.example"],
            {},
            "Invalid --trusted-proxies '10.0.0.0/8,proxy.example': Value error, "
            "'proxy.example' is not a CIDR (like 10.0.0.0/8 or 127.0.0.1/32)",
        ),
        (
            [],
            {"PEERING_HTTP_MAX_CONNS": "0"},
            "Invalid PEERING_HTTP_MAX_CONNS '0': Input should be greater than or equal to 1",
        ),
    ],
)
def test_serve_rejects_bad_values_one_line_each(
    started: list[Settings],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["serve", *argv]) == 1
    assert capsys.readouterr() == ("", message + "\n")
    assert started == []


def test_a_bad_secret_is_not_echoed() -> None:
    error = {
        "type": "string_type",
        "loc": ("acl_initial_management_token",),
        "msg": "Input should be a valid string",
        "input": "s3cret",
    }
    line = serve._describe(error, {"acl_initial_management_token": "s3cret"})  # type: ignore[arg-type]
    assert line == "Invalid --acl-initial-management-token: Input should be a valid string"


def test_run_cluster_imports_the_server_only_when_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[Settings] = []

    def fake_run(settings: Settings) -> int:
        received.append(settings)
        return 0

    fake = types.ModuleType("peering.server")
    monkeypatch.setattr(fake, "run", fake_run, raising=False)
    monkeypatch.setitem(sys.modules, "peering.server", fake)
    assert main(["serve", "--datacenter=dc7"]) == 0
    assert [s.datacenter for s in received] == ["dc7"]


def test_openapi_prints_the_document_as_is(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("peering.app")
    monkeypatch.setattr(fake, "openapi_json", lambda: '{\n  "openapi": "3.1.0"\n}\n', raising=False)
    monkeypatch.setitem(sys.modules, "peering.app", fake)
    assert main(["openapi"]) == 0
    assert capsys.readouterr() == ('{\n  "openapi": "3.1.0"\n}\n', "")
