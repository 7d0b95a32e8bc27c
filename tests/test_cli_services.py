"""`peering services …`, `peering exported-services` and `peering catalog services`.

The merge of `services export` and the layouts are checked on their own (layouts with an
`httpx.MockTransport` answering what the routes answer); the commands themselves run against
real clusters at the end of the file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from peering.cli import main
from peering.cli.catalog import NO_MATCH, format_services, node_service_tags
from peering.cli.commands import CommandError
from peering.cli.services import add_consumers, split_names
from tests.cluster import running_cluster
from tests.test_cli import Cli, cli, ok

__all__ = ["cli"]  # the fixture, imported for the tests below

# services export: the merge


def test_a_new_entry_is_named_after_the_partition() -> None:
    assert add_consumers(None, "default", "web", ["east", "west"], []) == {
        "Kind": "exported-services",
        "Name": "default",
        "Services": [{"Name": "web", "Consumers": [{"Peer": "east"}, {"Peer": "west"}]}],
    }


def test_missing_consumers_are_added_once_and_everything_else_is_kept() -> None:
    entry: dict[str, Any] = {
        "Kind": "exported-services",
        "Name": "default",
        "Services": [
            {"Name": "db", "Consumers": [{"Peer": "east"}]},
            {"Name": "web", "Consumers": [{"Peer": "east"}]},
        ],
        "Meta": {"owner": "team-a"},
        "CreateIndex": 12,
        "ModifyIndex": 15,
    }
    body = add_consumers(entry, "default", "web", ["east", "west"], [])
    assert body == {
        "Kind": "exported-services",
        "Name": "default",
        "Services": [
            {"Name": "db", "Consumers": [{"Peer": "east"}]},
            {"Name": "web", "Consumers": [{"Peer": "east"}, {"Peer": "west"}]},
        ],
        "Meta": {"owner": "team-a"},
    }
    assert entry["Services"][1] == {"Name": "web", "Consumers": [{"Peer": "east"}]}  # the answer is not changed
    assert add_consumers(body, "default", "web", ["west", "east"], []) == body  # nothing to add
    assert add_consumers(body, "default", "api", ["east"], [])["Services"][-1] == {
        "Name": "api",
        "Consumers": [{"Peer": "east"}],
    }


def test_split_names_keeps_the_order_and_refuses_empty_names() -> None:
    assert split_names("east,west,east", "peer") == ["east", "west"]
    assert split_names(None, "peer") == []
    for value in ("east,", ",east", "east,,west"):
        with pytest.raises(CommandError, match=r'^Invalid peer ""$'):
            split_names(value, "peer")


# layouts

EXPORTED = [
    {"Service": "db", "Consumers": {"Peers": ["east"]}},
    {"Service": "web", "Consumers": {"Peers": ["east", "west"]}},
]
IMPORTED = [{"Service": "api", "SourcePeer": "cluster-01"}, {"Service": "web", "SourcePeer": "east"}]


def test_exported_services_pretty_table(cli: Cli) -> None:
    call = cli(["services", "exported-services"], ok(EXPORTED))
    assert (call.code, call.err) == (0, "")
    assert call.out == "Service  Consumer Peers\ndb       east\nweb      east, west\n"
    assert call.request.url.path == "/v1/exported-services"


def test_exported_services_json_keeps_the_answer(cli: Cli) -> None:
    call = cli(["services", "exported-services", "-format", "json"], ok(EXPORTED))
    assert (call.code, json.loads(call.out)) == (0, EXPORTED)
    assert call.out.startswith('[\n    {\n        "Service": "db",')


@pytest.mark.parametrize("fmt", ["pretty", "json"])
def test_nothing_exported_or_imported_says_so(cli: Cli, fmt: str) -> None:
    assert cli(["services", "exported-services", "-format", fmt], ok([])).out == "No exported services found\n"
    assert cli(["services", "imported-services", "-format", fmt], ok([])).out == "No imported services found\n"


@pytest.mark.parametrize("command", ["exported-services", "imported-services"])
def test_a_bad_format_is_refused_before_any_request(cli: Cli, command: str) -> None:
    call = cli(["services", command, "-format", "yaml"])
    assert (call.code, call.out, call.err) == (1, "", "Invalid format, valid formats are {pretty|json}\n")


def test_imported_services_pretty_table(cli: Cli) -> None:
    call = cli(["services", "imported-services"], ok(IMPORTED))
    assert call.out == "Service  Source Peer\napi      cluster-01\nweb      east\n"
    assert call.request.url.path == "/v1/imported-services"


@pytest.mark.parametrize(
    ("answer", "prefix"),
    [
        ({"not": "a list"}, "Error reading exported services: expected a JSON array of objects"),
        (["web"], "Error reading exported services: expected a JSON array of objects"),
    ],
)
def test_a_wrong_answer_is_an_error(cli: Cli, answer: Any, prefix: str) -> None:
    call = cli(["services", "exported-services"], ok(answer))
    assert (call.code, call.out, call.err) == (1, "", prefix + "\n")


def _peering(exported: list[str] | None) -> dict[str, Any]:
    return {"Name": "cluster-02", "State": "ACTIVE", "StreamStatus": {"ExportedServices": exported}}


def test_peering_exported_services_one_a_line_or_consul_json(cli: Cli) -> None:
    call = cli(["exported-services", "-name", "cluster-02"], ok(_peering(["db", "web"])))
    assert (call.code, call.out, call.err) == (0, "db\nweb\n", "")
    assert call.request.url.path == "/v1/peering/cluster-02"
    call = cli(["exported-services", "-name", "cluster-02", "-format", "json"], ok(_peering(["db", "web"])))
    assert call.out == '[{"ID":"db"},{"ID":"web"}]\n'
    assert cli(["exported-services", "-name", "cluster-02"], ok(_peering([]))).out == "\n"
    assert cli(["exported-services", "-name", "x", "-format=json"], ok(_peering(None))).out == "[]\n"


def test_peering_exported_services_errors(cli: Cli) -> None:
    assert cli(["exported-services"]).err == "Missing the required -name flag\n"
    assert cli(["exported-services", "-name", "x", "-format", "xml"]).err == (
        "Invalid format, valid formats are {pretty|json}\n"
    )
    call = cli(["exported-services", "-name", "nope"], httpx.Response(404, text='Peering not found for "nope"'))
    assert (call.code, call.out, call.err) == (1, "", "No peering with name nope found.\n")


def test_catalog_services_layouts() -> None:
    services = {"web": ["v2", "prod"], "db": [], "consul-long-name": ["a"]}
    assert format_services(services, tags=False) == "consul-long-name\ndb\nweb"
    assert format_services(services, tags=True) == ("consul-long-name      a\ndb\nweb                   prod,v2")


def test_catalog_node_services_merge_tags_by_name() -> None:
    answer = {
        "Node": {"Node": "n1"},
        "Services": {
            "web-1": {"ID": "web-1", "Service": "web", "Tags": ["a"]},
            "web-2": {"ID": "web-2", "Service": "web", "Tags": ["b"]},
            "db": {"ID": "db", "Service": "db", "Tags": None},
        },
    }
    assert node_service_tags(answer) == {"web": ["a", "b"], "db": []}
    assert node_service_tags(None) == {}


# against real clusters


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, transport: httpx.BaseTransport | None = None
) -> tuple[int, str, str]:
    code = main(list(argv), transport=transport)
    out, err = capsys.readouterr()
    return code, out, err


def _consumers(capsys: pytest.CaptureFixture[str], api: list[str]) -> dict[str, list[str]]:
    code, out, err = run(capsys, "config", "read", "-kind", "exported-services", "-name", "default", *api)
    assert (code, err) == (0, ""), err
    return {svc["Name"]: [c["Peer"] for c in svc["Consumers"]] for svc in json.loads(out)["Services"]}


class Interloper(httpx.BaseTransport):
    """The real network, with someone else changing the entry just before the first write goes out."""

    def __init__(self, base_url: str, change: dict[str, Any]) -> None:
        self.inner = httpx.HTTPTransport()
        self.base_url = base_url
        self.change = change
        self.interfered = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not self.interfered:
            self.interfered = True
            assert httpx.put(f"{self.base_url}/v1/config", json=self.change).json() is True
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_the_export_walk_with_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Export creates the entry, adds only missing consumers, lists as Consul; errors and a lost race."""
    with running_cluster(tmp_path / "data") as cluster:
        api = ["-http-addr", cluster.ready["http_addr"]]
        assert run(capsys, "services", "exported-services", *api) == (0, "No exported services found\n", "")

        assert run(capsys, "services", "export", "-name", "web", "-consumer-peers", "east,west", *api) == (
            0,
            'Successfully exported service "web" to cluster peers "east,west"\n',
            "",
        )
        assert run(capsys, "services", "export", "-name=web", "-consumer-peers=west,north,north", *api)[:2] == (
            0,
            'Successfully exported service "web" to cluster peers "west,north,north"\n',
        )
        assert run(capsys, "services", "export", "--name", "db", "--consumer-peers", "east", *api)[0] == 0
        assert _consumers(capsys, api) == {"web": ["east", "west", "north"], "db": ["east"]}

        assert run(capsys, "services", "exported-services", *api) == (
            0,
            "Service  Consumer Peers\ndb       east\nweb      east, north, west\n",
            "",
        )
        code, out, _ = run(capsys, "services", "exported-services", "-format", "json", *api)
        assert (code, json.loads(out)) == (
            0,
            [
                {"Service": "db", "Consumers": {"Peers": ["east"]}},
                {"Service": "web", "Consumers": {"Peers": ["east", "north", "west"]}},
            ],
        )

        for argv, message in [
            (["-consumer-peers", "east"], "Missing the required -name flag"),
            (["-name", "web"], "Missing the required -consumer-peers or -consumer-partitions flag"),
            (["-name", "web", "-consumer-peers", "east,"], 'Invalid peer ""'),
            (["-name", "web", "-consumer-partitions", ",x"], 'Invalid partition ""'),
            (
                ["-name", "web", "-consumer-partitions", "team"],
                "Error writing config entry: Unexpected response code: 400 "
                "(Services[0].Consumers[3]: partitions are not supported)",
            ),
            (
                ["-name", "web", "-consumer-peers", "Not_A_Peer"],
                "Error writing config entry: Unexpected response code: 400 (Services[0].Consumers[3]: ",
            ),
        ]:
            code, out, err = run(capsys, "services", "export", *argv, *api)
            assert (code, out) == (1, ""), argv
            assert err.startswith(message), err

        # someone changes the entry between the read and the write: refused, their change kept
        theirs = {"Kind": "exported-services", "Name": "default", "Services": [{"Name": "api", "Consumers": [{"Peer": "east"}]}]}  # fmt: skip
        interloper = Interloper(cluster.http_url, theirs)
        argv = ["services", "export", "-name", "web", "-consumer-peers", "south", *api]
        assert run(capsys, *argv, transport=interloper) == (
            1,
            "",
            "Config entry was changed during update. Please try again\n",
        )
        assert interloper.interfered
        assert _consumers(capsys, api) == {"api": ["east"]}
        assert run(capsys, *argv)[0] == 0  # tried again, it works
        assert _consumers(capsys, api) == {"api": ["east"], "web": ["south"]}


HEARTBEATS = ("--heartbeat-interval", "0.2", "--heartbeat-timeout", "2")


def wait_for(base_url: str, path: str, check: Callable[[Any], bool], timeout: float = 15.0) -> Any:
    """The JSON answer of `path` once `check` accepts it, waited for with blocking queries (bounded)."""
    deadline = time.monotonic() + timeout
    index = "0"
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        while True:
            response = client.get(path, params={"index": index, "wait": "2s"})
            assert response.status_code == 200, response.text
            if check(response.json()):
                return response.json()
            assert time.monotonic() < deadline, f"{path} never satisfied the check: {response.text}"
            index = response.headers.get("X-Consul-Index", index)


def _exported_to(peering: Any) -> Any:
    return (peering.get("StreamStatus") or {}).get("ExportedServices")


def test_sharing_a_service_with_a_peer_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README walkthrough: peer A and B, register web and db on A, export web to B, see it on B
    (imported services, the catalog under -peer, the counts of `read`), un-export it, see it go."""
    with (
        running_cluster(tmp_path / "a", "--datacenter", "dc1", "--node-name", "node-a", *HEARTBEATS) as a,
        running_cluster(tmp_path / "b", "--datacenter", "dc2", *HEARTBEATS) as b,
    ):
        on_a, on_b = ["-http-addr", a.ready["http_addr"]], ["-http-addr", b.ready["http_addr"]]
        code, token, _ = run(capsys, "generate-token", "-name", "cluster-b", *on_a)
        assert code == 0
        assert run(capsys, "establish", "-name", "cluster-a", "-peering-token", token.strip(), *on_b) == (
            0,
            "Successfully established peering connection with cluster-a\n",
            "",
        )
        for name, tag in (("web", "v1"), ("db", "primary")):
            registration = {
                "Name": name,
                "ID": f"{name}-1",
                "Port": 8080,
                "Tags": [tag],
                "Check": {"CheckID": f"{name}-ttl", "TTL": "60s", "Status": "passing"},
            }
            answer = httpx.put(f"{a.http_url}/v1/agent/service/register", json=registration)
            assert answer.status_code == 200, answer.text
        code, out, _ = run(capsys, "catalog", "services", "-tags", *on_a)
        assert code == 0
        assert "db       primary\n" in out
        assert "web      v1\n" in out or out.endswith("web      v1\n")
        assert run(capsys, "catalog", "services", "-node", "node-a", *on_a) == (0, "db\nweb\n", "")
        assert run(capsys, "catalog", "services", "-node", "elsewhere", *on_a) == (0, "", f"{NO_MATCH}\n")

        assert run(capsys, "services", "export", "-name", "web", "-consumer-peers", "cluster-b", *on_a) == (
            0,
            'Successfully exported service "web" to cluster peers "cluster-b"\n',
            "",
        )
        assert run(capsys, "services", "exported-services", *on_a) == (
            0,
            "Service  Consumer Peers\nweb      cluster-b\n",
            "",
        )

        wait_for(
            b.http_url, "/v1/imported-services", lambda got: got == [{"Service": "web", "SourcePeer": "cluster-a"}]
        )
        assert run(capsys, "services", "imported-services", *on_b) == (
            0,
            "Service  Source Peer\nweb      cluster-a\n",
            "",
        )
        assert run(capsys, "catalog", "services", "-peer", "cluster-a", *on_b) == (0, "web\n", "")
        assert run(capsys, "catalog", "services", "-peer", "cluster-a", "-tags", *on_b) == (0, "web      v1\n", "")
        assert run(capsys, "catalog", "services", "-peer", "cluster-a", "-node", "node-a", *on_b) == (0, "web\n", "")
        local = run(capsys, "catalog", "services", *on_b)
        assert "web" not in local[1].split()  # B's own catalog is not touched

        wait_for(a.http_url, "/v1/peering/cluster-b", lambda got: _exported_to(got) == ["web"])
        assert run(capsys, "exported-services", "-name", "cluster-b", *on_a) == (0, "web\n", "")
        assert run(capsys, "exported-services", "-name", "cluster-b", "-format", "json", *on_a)[1] == '[{"ID":"web"}]\n'
        assert "\nExported Services: 1\n" in run(capsys, "read", "-name", "cluster-b", *on_a)[1]
        wait_for(b.http_url, "/v1/peering/cluster-a", lambda got: got["StreamStatus"]["ImportedServices"] == ["web"])
        assert "\nImported Services: 1\n" in run(capsys, "read", "-name", "cluster-a", *on_b)[1]
        assert run(capsys, "exported-services", "-name", "nope", *on_a) == (1, "", "No peering with name nope found.\n")

        # un-export: the entry deleted, B drops what it imported
        assert run(capsys, "config", "delete", "-kind", "exported-services", "-name", "default", *on_a)[0] == 0
        wait_for(b.http_url, "/v1/imported-services", lambda got: got == [])
        assert run(capsys, "services", "imported-services", *on_b) == (0, "No imported services found\n", "")
        assert run(capsys, "catalog", "services", "-peer", "cluster-a", *on_b) == (
            0,
            "",
            "No services match the given query - try expanding your search.\n",
        )
        wait_for(a.http_url, "/v1/peering/cluster-b", lambda got: not _exported_to(got))
        assert run(capsys, "exported-services", "-name", "cluster-b", *on_a) == (0, "\n", "")
