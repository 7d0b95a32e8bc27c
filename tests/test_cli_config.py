"""`peering config write|read|list|delete`: reading HCL or JSON, flag checks, and the walk against a real cluster."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from peering.catalog import exports
from peering.cli import main
from peering.cli.commands import CommandError
from peering.cli.config import MAX_ENTRY_BYTES, load_source, parse_entry
from tests.cluster import running_cluster

HCL = """\
Kind = "exported-services"
Name = "default"
Services = [
  { Name = "web", Consumers = [ { Peer = "east" }, { Peer = "west" } ] }
]
"""
BODY = {
    "Kind": "exported-services",
    "Name": "default",
    "Services": [{"Name": "web", "Consumers": [{"Peer": "east"}, {"Peer": "west"}]}],
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# reading an entry


def test_hcl_and_json_give_the_same_body_the_server_accepts() -> None:
    assert parse_entry(HCL) == BODY
    assert parse_entry(json.dumps(BODY)) == BODY
    assert exports.parse(parse_entry(HCL)).services[0].peers == ("east", "west")


def test_blocks_are_lists_and_repeated_blocks_add_to_them() -> None:
    text = """
    Kind = "exported-services"
    Name = "default"
    Services {
      Name = "web"
      Consumers { Peer = "east" }
      Consumers { Peer = "west" }
    }
    Services {
      Name = "db"
      consumers = [{ peer_name = "east" }]
    }
    Meta = { owner = "team-a" }
    """
    entry = parse_entry(text)
    assert entry == {
        "Kind": "exported-services",
        "Name": "default",
        "Services": [
            {"Name": "web", "Consumers": [{"Peer": "east"}, {"Peer": "west"}]},
            {"Name": "db", "consumers": [{"peer_name": "east"}]},
        ],
        "Meta": {"owner": "team-a"},
    }
    decoded = exports.parse(entry)  # the server's decoder takes what the CLI sends
    assert [(s.name, s.peers) for s in decoded.services] == [("web", ("east", "west")), ("db", ("east",))]
    assert decoded.meta == {"owner": "team-a"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('Name = "default"', "Payload does not contain a kind/Kind key at the top level"),
        ('{"Name": "default"}', "Payload does not contain a kind/Kind key at the top level"),
        ("Kind = 3", "Kind value in payload is not a string"),
        ('{"Kind": null}', "Kind value in payload is not a string"),
        (
            'Kind = "exported-services"\nServices = [ { Name = web } ]',
            "invalid HCL: line 2, column 23: expected a value",
        ),
        ('{"Kind": "exported-services",', "invalid JSON: "),
    ],
)
def test_undecodable_entries_say_why(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=r"^Failed to decode config entry input: ") as caught:
        parse_entry(text)
    assert message in str(caught.value)


def test_load_source_reads_files_and_stdin_and_refuses_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "entry.hcl"
    path.write_text(HCL)
    assert load_source(str(path)) == HCL
    assert load_source("-", io.StringIO(HCL)) == HCL
    with pytest.raises(CommandError, match=r"^Failed to load data: must specify a file path or '-' for stdin$"):
        load_source("")
    missing = tmp_path / "nope.hcl"
    with pytest.raises(CommandError, match=r"^Failed to load data: Failed to read file: open .*nope.hcl: no such file"):
        load_source(str(missing))
    (tmp_path / "latin1.hcl").write_bytes(b'Kind = "\xe9"')
    with pytest.raises(CommandError, match=r"is not UTF-8 text$"):
        load_source(str(tmp_path / "latin1.hcl"))
    big = tmp_path / "big.json"
    big.write_text(" " * (MAX_ENTRY_BYTES + 1))
    with pytest.raises(CommandError, match=f"more than {MAX_ENTRY_BYTES} bytes$"):
        load_source(str(big))
    with pytest.raises(CommandError, match=f"Failed to read stdin: more than {MAX_ENTRY_BYTES} bytes$"):
        load_source("-", io.StringIO("x" * (MAX_ENTRY_BYTES + 5)))


def test_a_large_entry_within_the_size_limit_is_read() -> None:
    services = [{"Name": f"svc-{i:04d}", "Consumers": [{"Peer": "east"}]} for i in range(2_000)]
    hcl_text = (
        'Kind = "exported-services"\nName = "default"\nServices = [\n'
        + "".join(f'  {{ Name = "svc-{i:04d}", Consumers = [ {{ Peer = "east" }} ] }},\n' for i in range(2_000))
        + "]\n"
    )
    assert len(hcl_text) < MAX_ENTRY_BYTES
    assert parse_entry(hcl_text)["Services"] == services


# flags checked before any request (no server listens on the address given)

NOWHERE = ["-http-addr", "127.0.0.1:9"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config", "write"], "Must provide exactly one positional argument to specify the config entry to write"),
        (
            ["config", "write", "a", "b"],
            "Must provide exactly one positional argument to specify the config entry to write",
        ),
        (["config", "write", ""], "Failed to load data: must specify a file path or '-' for stdin"),
        (["config", "read", "-name", "default"], "Must specify the -kind parameter"),
        (["config", "read", "-kind", "exported-services"], "Must specify the -name parameter"),
        (["config", "list"], "Must specify the -kind parameter"),
        (["config", "delete", "-name", "default"], "Must specify the -kind parameter"),
        (["config", "delete", "-kind", "exported-services"], "Must specify the -name parameter"),
        (
            ["config", "delete", "-kind", "k", "-name", "n", "-cas"],
            "Must specify a -modify-index greater than 0 with -cas",
        ),
        (
            ["config", "delete", "-kind", "k", "-name", "n", "-modify-index", "3"],
            "Cannot specify -modify-index without -cas",
        ),
    ],
)
def test_flag_errors_exit_1_before_any_request(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(capsys, *argv, *NOWHERE) == (1, "", message + "\n")


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "18446744073709551616", "\u0661"])
def test_a_bad_modify_index_is_a_usage_error(capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, out, err = run(capsys, "config", "write", "-cas", f"-modify-index={value}", "x.hcl", *NOWHERE)
    assert (code, out) == (1, "")
    assert "argument -modify-index/--modify-index: invalid value" in err


def test_write_names_the_entry_in_its_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "entry.hcl"
    path.write_text(HCL)
    code, out, err = run(capsys, "config", "write", str(path), *NOWHERE)
    assert (code, out) == (1, "")
    assert err.startswith('Error writing config entry exported-services/default: Put "http://127.0.0.1:9/v1/config": ')


# against a real cluster


def _index(capsys: pytest.CaptureFixture[str], api: list[str]) -> int:
    code, out, err = run(capsys, "config", "read", "-kind", "exported-services", "-name", "default", *api)
    assert (code, err) == (0, ""), err
    index: int = json.loads(out)["ModifyIndex"]
    return index


def test_the_config_walk_with_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write from HCL and from stdin, read, list, the CAS refusals, Consul's validation as a 400, delete."""
    path = tmp_path / "exported.hcl"
    path.write_text(HCL)
    with running_cluster(tmp_path / "data") as cluster:
        api = ["-http-addr", cluster.ready["http_addr"]]
        kind = ["-kind", "exported-services"]

        assert run(capsys, "config", "list", *kind, *api) == (0, "", "")
        assert run(capsys, "config", "read", *kind, "-name", "default", *api) == (
            1,
            "",
            "Error reading config entry exported-services/default: Unexpected response code: 404 "
            '(Config entry not found for "exported-services" / "default")\n',
        )

        assert run(capsys, "config", "write", str(path), *api) == (
            0,
            "Config entry written: exported-services/default\n",
            "",
        )
        code, out, _ = run(capsys, "config", "read", *kind, "-name", "default", *api)
        entry = json.loads(out)
        assert code == 0
        assert {key: entry[key] for key in ("Kind", "Name", "Services")} == BODY
        assert entry["CreateIndex"] == entry["ModifyIndex"] > 0
        assert out.startswith('{\n    "Kind": "exported-services",\n')  # Consul's 4-space indent
        first = entry["ModifyIndex"]

        # compare-and-set: 0 means only if absent; a stale index loses
        for index in (0, first - 1):
            assert run(capsys, "config", "write", "-cas", f"-modify-index={index}", str(path), *api) == (
                1,
                "",
                "Config entry not updated: exported-services/default\n",
            )
        assert _index(capsys, api) == first

        changed = {**BODY, "Services": [{"Name": "db", "Consumers": [{"Peer": "east"}]}]}
        monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(changed)))
        assert run(capsys, "config", "write", "--cas", "--modify-index", str(first), "-", *api) == (
            0,
            "Config entry written: exported-services/default\n",
            "",
        )
        second = _index(capsys, api)
        assert second > first

        # the server's validation, with Consul's texts (as 400s)
        refused = tmp_path / "refused.hcl"
        refused.write_text('Kind = "exported-services"\nName = "default"\nServices = [ { Name = "web" } ]\n')
        assert run(capsys, "config", "write", str(refused), *api) == (
            1,
            "",
            "Error writing config entry exported-services/default: Unexpected response code: 400 "
            "(Services[0]: must have at least one consumer)\n",
        )
        other = tmp_path / "defaults.hcl"
        other.write_text('Kind = "service-defaults"\nName = "web"\nProtocol = "http"\n')
        code, out, err = run(capsys, "config", "write", str(other), *api)
        assert (code, out) == (1, "")
        assert err.startswith("Error writing config entry service-defaults/web: Unexpected response code: 400 (")
        assert "invalid config entry kind: service-defaults" in err
        assert _index(capsys, api) == second  # nothing refused was written

        assert run(capsys, "config", "list", *kind, *api) == (0, "default\n", "")

        assert run(
            capsys, "config", "delete", *kind, "-name", "default", "-cas", "-modify-index", str(first), *api
        ) == (
            1,
            "",
            "Config entry not deleted: exported-services/default\n",
        )
        assert run(
            capsys, "config", "delete", *kind, "-name", "default", "-cas", "-modify-index", str(second), *api
        ) == (
            0,
            "Config entry deleted: exported-services/default\n",
            "",
        )
        assert run(capsys, "config", "read", *kind, "-name", "default", *api)[0] == 1
        # deleting what is not there is fine, as in Consul
        assert run(capsys, "config", "delete", *kind, "-name", "default", *api) == (
            0,
            "Config entry deleted: exported-services/default\n",
            "",
        )
        assert run(capsys, "config", "list", *kind, *api) == (0, "", "")


MANAGEMENT = "c0ffee00-0000-4000-8000-00000000000e"


def test_config_commands_send_the_token_and_report_a_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ACLs on, the anonymous caller is refused `mesh:write` (Consul's 403 text, named per entry);
    the token from CONSUL_HTTP_TOKEN writes and reads."""
    path = tmp_path / "exported.hcl"
    path.write_text(HCL)
    args = ("--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", MANAGEMENT)
    with running_cluster(tmp_path / "data", *args) as cluster:
        api = ["-http-addr", cluster.ready["http_addr"]]
        code, out, err = run(capsys, "config", "write", str(path), *api)
        assert (code, out) == (1, "")
        assert err.startswith("Error writing config entry exported-services/default: Unexpected response code: 403 (")
        assert "lacks permission 'mesh:write'" in err
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", MANAGEMENT)
        assert run(capsys, "config", "write", str(path), *api) == (
            0,
            "Config entry written: exported-services/default\n",
            "",
        )
        assert run(capsys, "config", "list", "-kind", "exported-services", *api) == (0, "default\n", "")
