"""`peering acl …` against a real `peering serve` process with ACLs on, and its flag handling."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from peering.cli import main
from tests.cluster import running_cluster
from tests.test_cli import Cli, body, cli, ok

__all__ = ["cli"]  # the fixture, imported for the tests below

MANAGEMENT = "c0ffee00-0000-4000-8000-000000000001"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_acl_walk_with_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bootstrap refused, policy from a file, a reader token, its limits, then deletion, all through the CLI."""
    rules = tmp_path / "reader.hcl"
    rules.write_text('peering = "read"\n')
    with running_cluster(tmp_path / "data", "--acl-enabled", "--acl-initial-management-token", MANAGEMENT) as cluster:
        api = ["-http-addr", cluster.ready["http_addr"]]
        admin = [*api, "-token", MANAGEMENT]

        code, _, err = run(capsys, "acl", "bootstrap", *api)
        assert (code, err) == (
            1,
            "Failed ACL bootstrapping: Unexpected response code: 403 (ACL bootstrap no longer allowed)\n",
        )

        code, out, _ = run(capsys, "acl", "policy", "create", "-name", "reader", "-rules", f"@{rules}", *admin)
        assert code == 0
        policy_id = out.split()[1]
        assert out == (
            f'ID:           {policy_id}\nName:         reader\nDescription:  \nDatacenters:\nRules:\npeering = "read"\n'
        )

        code, out, _ = run(capsys, "acl", "token", "create", "-description", "ci", "-policy-name", "reader", "-expires-ttl", "1h", "-format", "json", *admin)  # fmt: skip
        assert code == 0
        created = json.loads(out)
        secret, accessor = created["SecretID"], created["AccessorID"]
        assert created["Policies"][0]["Name"] == "reader"

        assert run(capsys, "list", *api, "-token", secret)[:2] == (0, "There are no peering connections.\n")
        code, _, err = run(capsys, "generate-token", "-name", "x", *api, "-token", secret)
        assert code == 1
        assert err == (
            "Error generating peering token for x: Unexpected response code: 403 "
            f"(Permission denied: token with AccessorID '{accessor}' lacks permission 'peering:write')\n"
        )

        code, out, _ = run(capsys, "acl", "token", "read", "-self", *api, "-token", secret)
        assert code == 0
        assert out.startswith(f"AccessorID:       {accessor}\nDescription:      ci\nLocal:            false\n")
        assert "Expiration Time:  " in out
        assert out.endswith(" - reader\n")
        assert secret not in out  # shown once, at creation

        code, out, _ = run(capsys, "acl", "token", "list", *admin)
        assert code == 0
        assert out.count("AccessorID:") == 3  # anonymous, initial management, ci
        assert secret not in out

        code, out, _ = run(capsys, "acl", "policy", "list", *admin)
        assert out.startswith("global-management:\n   ID:           00000000-0000-0000-0000-000000000001\n")
        assert "reader:\n" in out

        assert run(capsys, "acl", "token", "delete", "-id", accessor, *admin)[:2] == (
            0,
            f'Token "{accessor}" deleted successfully\n',
        )
        code, _, err = run(capsys, "list", *api, "-token", secret)
        assert (code, err) == (1, "Error listing peerings: Unexpected response code: 403 (ACL not found)\n")

        code, out, _ = run(capsys, "acl", "policy", "delete", "-name", "reader", *admin)
        assert code == 0
        assert re.fullmatch(r'Policy "[0-9a-f-]{36}" deleted successfully\n', out)
        code, _, err = run(capsys, "acl", "policy", "read", "-name", "reader", *admin)
        assert (code, err) == (
            1,
            "Error reading policy: Unexpected response code: 404 (Requested policy does not exist)\n",
        )
        logs = "".join(cluster.lines)
    assert secret not in logs
    assert MANAGEMENT not in logs


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["acl", "policy", "create"], "Missing the required -name flag"),
        (["acl", "policy", "read"], "Must specify either the -id or -name parameters"),
        (["acl", "policy", "delete"], "Must specify either the -id or -name parameters"),
        (["acl", "token", "read"], "Missing the required -id flag"),
        (["acl", "token", "delete"], "Missing the required -id flag"),
        (["acl", "token", "list", "-format", "yaml"], "Invalid format, valid formats are {json|pretty}"),
        (["acl", "policy", "create", "-name", "x", "-rules", "@/nonexistent/rules.hcl"], "Failed to read rules from"),
    ],
)
def test_bad_acl_flags_exit_1_before_any_request(cli: Cli, argv: list[str], message: str) -> None:
    """Missing or wrong flags are reported without calling the API."""
    call = cli(argv)
    assert call.code == 1
    assert message in call.err
    assert call.requests == []


def test_token_create_sends_every_flag(cli: Cli) -> None:
    """Each `acl token create` flag becomes its Consul body field."""
    answer = {"AccessorID": "a", "SecretID": "s", "Description": "d", "Policies": [], "CreateTime": "t"}
    call = cli(
        ["acl", "token", "create", "-description", "d", "-policy-id", "p1", "-policy-name", "n1", "-expires-ttl",
         "90s", "-allowed-cidr", "10.0.0.0/8", "-allowed-cidr", "::1/128", "-accessor",
         "8f9b7c39-0000-4000-8000-000000000001", "-secret", "8f9b7c39-0000-4000-8000-000000000002", "-local",
         "-token", "mgmt"],
        ok(answer),
    )  # fmt: skip
    assert call.code == 0
    assert call.request.method == "PUT"
    assert call.request.url.path == "/v1/acl/token"
    assert call.request.headers["X-Consul-Token"] == "mgmt"
    assert body(call.request) == {
        "Description": "d",
        "Policies": [{"ID": "p1"}, {"Name": "n1"}],
        "ExpirationTTL": "90s",
        "AllowedCIDRs": ["10.0.0.0/8", "::1/128"],
        "AccessorID": "8f9b7c39-0000-4000-8000-000000000001",
        "SecretID": "8f9b7c39-0000-4000-8000-000000000002",
        "Local": True,
    }
    assert call.out.startswith("AccessorID:       a\nSecretID:         s\n")


def test_policy_rules_from_stdin(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-rules -` reads the rules from standard input."""
    monkeypatch.setattr("sys.stdin", io.StringIO('peering = "write"\n'))
    answer = {"ID": "i", "Name": "w", "Description": "", "Rules": 'peering = "write"\n', "Datacenters": None}
    call = cli(["acl", "policy", "create", "-name", "w", "-rules", "-"], ok(answer))
    assert call.code == 0
    assert body(call.request) == {"Name": "w", "Description": "", "Rules": 'peering = "write"\n'}
