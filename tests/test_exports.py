"""The `exported-services` entry, pure (peering/catalog/exports.py): decoding, validation texts, resolution."""

from __future__ import annotations

from typing import Any

import pytest

from peering.catalog.exports import (
    KIND,
    ExportedService,
    ExportedServices,
    decode,
    from_config,
    names_for_peer,
    parse,
    render,
    render_resolved,
    resolve,
    to_config,
)
from peering.catalog.model import ConfigEntry
from peering.errors import InvalidRequestError


def entry(*services: object, **top: Any) -> dict[str, Any]:
    return {"Kind": KIND, "Name": "default", "Services": list(services), **top}


def web(*peers: str) -> dict[str, Any]:
    return {"Name": "web", "Consumers": [{"Peer": p} for p in peers]}


def refused(data: object) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        parse(data)
    return caught.value.message


# -- decoding ------------------------------------------------------------------------------------------------


def test_a_full_entry_decodes() -> None:
    parsed = parse(entry(web("east", "west"), {"Name": "*", "Consumers": [{"Peer": "mon"}]}, Meta={"owner": "a"}))
    assert parsed == ExportedServices(
        "default", (ExportedService("web", ("east", "west")), ExportedService("*", ("mon",))), {"owner": "a"}
    )


def test_keys_match_case_insensitively_and_by_alias() -> None:
    data = {
        "kind": KIND,
        "NAME": "default",
        "services": [{"name": "web", "CONSUMERS": [{"peer_name": "east"}, {"peer": "west"}, {"PEER": "x"}]}],
        "meta": {"k": "v"},
    }
    assert parse(data) == ExportedServices("default", (ExportedService("web", ("east", "west", "x")),), {"k": "v"})


def test_indexes_kind_hash_and_partition_are_ignored() -> None:
    data = entry(web("east"), CreateIndex=5, modifyindex="x", Hash=7, Partition="whatever")
    assert parse(data) == ExportedServices("default", (ExportedService("web", ("east",)),))


def test_nulls_are_absent_values() -> None:
    assert parse({"Kind": KIND, "Name": "default", "Services": None, "Meta": None}) == ExportedServices("default")
    assert parse(entry({"Name": "web", "Consumers": [{"Peer": "east", "Partition": None}]})).services[0].peers == (
        "east",
    )


def test_an_entry_with_only_meta_is_valid() -> None:
    assert parse({"Kind": KIND, "Name": "default", "Meta": {"a": "b"}}) == ExportedServices("default", (), {"a": "b"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "Request decoding failed: json: cannot unmarshal array into Go value of type map[string]interface {}"),
        ("x", "Request decoding failed: json: cannot unmarshal string into Go value of type map[string]interface {}"),
        (None, "Request decoding failed: json: cannot unmarshal null into Go value of type map[string]interface {}"),
        ({"Name": "default"}, "Request decoding failed: Payload does not contain a kind/Kind key at the top level"),
        ({"Kind": 3}, "Request decoding failed: Kind value in payload is not a string"),
        ({"Kind": None}, "Request decoding failed: Kind value in payload is not a string"),
        ({"Kind": "service-defaults"}, "Request decoding failed: invalid config entry kind: service-defaults"),
        ({"Kind": "Exported-Services"}, "Request decoding failed: invalid config entry kind: Exported-Services"),
        (entry(Foo=1), 'Request decoding failed: invalid config key "Foo"'),
        (entry(KIND="x"), 'Request decoding failed: invalid config key "KIND"'),
        (
            entry(Namespace="ns"),
            'Request decoding failed: invalid config key "Namespace", namespaces are a consul enterprise feature',
        ),
        (entry({"Name": "web", "Tags": []}), 'Request decoding failed: invalid config key "Services[0].Tags"'),
        (
            entry(web("a"), {"Name": "db", "Consumers": [{"Peer": "a"}, {"PeerName": "b"}]}),
            'Request decoding failed: invalid config key "Services[1].Consumers[1].PeerName"',
        ),
        (
            entry({"Name": "web", "Consumers": [{"Peer": "a", "peer_name": "b"}]}),
            'Request decoding failed: invalid config key "Services[0].Consumers[0].peer_name"',
        ),
        (entry(name="x"), 'Request decoding failed: invalid config key "name"'),
        (entry(Name=1), "Request decoding failed: 'Name' expected type 'string', got unconvertible type 'float64'"),
        (
            {"Kind": KIND, "Name": "default", "Services": {}},
            "Request decoding failed: 'Services': source data must be an array or slice, got map",
        ),
        (entry("web"), "Request decoding failed: 'Services[0]' expected a map, got 'string'"),
        (
            entry({"Name": "web", "Consumers": {"Peer": "a"}}),
            "Request decoding failed: 'Services[0].Consumers': source data must be an array or slice, got map",
        ),
        (
            entry({"Name": "web", "Consumers": [{"Peer": True}]}),
            "Request decoding failed: 'Services[0].Consumers[0].Peer' expected type 'string', got unconvertible type 'bool'",
        ),
        (
            entry({"Name": ["web"], "Consumers": [{"Peer": "a"}]}),
            "Request decoding failed: 'Services[0].Name' expected type 'string', got unconvertible type '[]interface {}'",
        ),
        (entry(Meta=[]), "Request decoding failed: 'Meta' expected a map, got 'slice'"),
        (
            entry(Meta={"k": {}}),
            "Request decoding failed: 'Meta[k]' expected type 'string', got unconvertible type 'map[string]interface {}'",
        ),
    ],
)
def test_decoding_failures(data: object, message: str) -> None:
    assert refused(data) == message


def test_decoding_does_not_validate() -> None:
    decoded = decode({"Kind": KIND, "Name": "", "Services": [{"Name": ""}]})
    assert decoded.name == ""
    assert decoded.services[0].name == ""


def test_echoed_input_is_capped_and_escaped() -> None:
    assert len(refused({"Kind": "k" * 100_000})) < 400
    assert refused(entry(**{"a\nb": 1})) == 'Request decoding failed: invalid config key "a\\u000ab"'
    assert refused(entry(**{'a"b': 1})) == 'Request decoding failed: invalid config key "a\\"b"'


# -- validation, in Consul's order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (entry(Name=""), 'exported-services Name must be the partition to export from, such as "default"'),
        (
            entry(Name="a_b"),
            "exported-services Name: a_b is not a valid partition name: a valid partition name must consist of "
            "alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ),
        (entry(Meta={str(i): "" for i in range(65)}), "Meta exceeds maximum element count 64"),
        (entry(Meta={"k" * 129: ""}), f'Meta key "{"k" * 129}" exceeds maximum length 128'),
        (entry(Meta={"k": "v" * 513}), 'Meta value for key "k" exceeds maximum length 512'),
        (entry(Meta={"k": "é" * 257}), 'Meta value for key "k" exceeds maximum length 512'),  # bytes, as Go
        (
            entry(web("a"), {"Name": "db", "Consumers": [{"Peer": "a"}, {"Partition": "default"}]}),
            "Services[1].Consumers[1]: partitions are not supported",
        ),
        (
            entry({"Name": "db", "Consumers": [{"sameness_group": "g"}]}),
            "Services[0].Consumers[0]: sameness-groups are not supported",
        ),
        (entry({"Name": "", "Consumers": [{"Peer": "a"}]}), "Services[0]: service name cannot be empty"),
        (entry({"Consumers": [{"Peer": "a"}]}), "Services[0]: service name cannot be empty"),
        (
            entry({"Name": "web", "Namespace": "*", "Consumers": [{"Peer": "a"}]}),
            "Services[0]: service name must be wildcard if namespace is wildcard",
        ),
        (
            entry({"Name": "web", "Namespace": "team", "Consumers": [{"Peer": "a"}]}),
            "Services[0]: namespaces are not supported",
        ),
        (entry(web("a"), {"Name": "db"}), "Services[1]: must have at least one consumer"),
        (entry({"Name": "db", "Consumers": []}), "Services[0]: must have at least one consumer"),
        (
            entry({"Name": "db", "Consumers": [{"Peer": "a"}, {}]}),
            "Services[0].Consumers[1]: must define at least one of Peer, Partition, or SamenessGroup",
        ),
        (
            entry({"Name": "db", "Consumers": [{"Peer": "*"}]}),
            "Services[0].Consumers[0]: exporting to all peers (wildcard) is not supported",
        ),
        (
            entry({"Name": "db", "Consumers": [{"Peer": "East"}]}),
            "Services[0].Consumers[0]: East is not a valid peer name: a valid peering name must consist of lower "
            "case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ),
    ],
)
def test_validation_failures(data: object, message: str) -> None:
    assert refused(data) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # the name before the meta
        (entry(Name="", Meta={str(i): "" for i in range(65)}), "exported-services Name must be the partition"),
        # the meta before any service
        (entry({"Name": ""}, Meta={"k": "v" * 513}), "Meta value"),
        # every consumer's unsupported fields before the services' own checks
        (
            entry({"Name": ""}, {"Name": "db", "Consumers": [{"Partition": "p"}]}),
            "Services[1].Consumers[0]: partitions",
        ),
        # a service's name and consumers before the next service
        (entry({"Name": "a"}, {"Name": ""}), "Services[0]: must have at least one consumer"),
        # the name before the consumers
        (entry({"Name": "", "Consumers": [{"Peer": "*"}]}), "Services[0]: service name cannot be empty"),
    ],
)
def test_the_first_problem_in_consuls_order_wins(data: object, message: str) -> None:
    assert refused(data).startswith(message)


@pytest.mark.parametrize(("name", "partition"), [("default", "default"), ("team-a", "team-a"), ("Team-A", "team-a")])
def test_name_is_any_partition(name: str, partition: str) -> None:
    assert parse(entry(web("east"), Name=name)).partition == partition


def test_meta_at_the_limits_is_valid() -> None:
    meta = {f"{i:0128d}": "v" * 512 for i in range(64)}
    assert parse(entry(Meta=meta)).meta == meta


def test_namespaces_default_and_wildcard_are_dropped() -> None:
    data = entry(
        {"Name": "web", "Namespace": "default", "Consumers": [{"Peer": "a"}]},
        {"Name": "*", "Namespace": "*", "Consumers": [{"Peer": "b"}]},
    )
    assert parse(data).services == (ExportedService("web", ("a",)), ExportedService("*", ("b",)))


# -- storage and rendering -----------------------------------------------------------------------------------


def test_stored_form_round_trips_and_renders_in_consuls_order() -> None:
    parsed = parse(entry(web("east"), Meta={"k": "v"}, Name="Team-A"))
    config = to_config(parsed)
    assert config.kind == KIND
    assert config.name == "team-a"
    assert config.body == {"Services": [{"Name": "web", "Consumers": [{"Peer": "east"}]}], "Meta": {"k": "v"}}
    assert from_config(config) == parsed
    stored = ConfigEntry(config.kind, config.name, config.body, create_index=3, modify_index=9)
    shown = render(stored)
    assert list(shown) == ["Kind", "Name", "Services", "Meta", "CreateIndex", "ModifyIndex"]
    assert shown["CreateIndex"] == 3
    assert shown["ModifyIndex"] == 9
    assert parse(shown) == parsed  # what a GET shows can be PUT back


def test_empty_fields_are_omitted() -> None:
    config = to_config(parse({"Kind": KIND, "Name": "default"}))
    assert config.body == {}
    assert render(config) == {"Kind": KIND, "Name": "default", "CreateIndex": 0, "ModifyIndex": 0}


# -- what the entry exports ----------------------------------------------------------------------------------


def exports(*services: tuple[str, tuple[str, ...]]) -> ExportedServices:
    return ExportedServices("default", tuple(ExportedService(name, peers) for name, peers in services))


def test_resolve_sorts_merges_and_keeps_services_without_instances() -> None:
    given = exports(("web", ("west", "east")), ("db", ("east",)), ("web", ("east", "north")))
    assert resolve(given, []) == [("db", ["east"]), ("web", ["east", "north", "west"])]


def test_wildcard_expands_to_services_with_instances_and_merges() -> None:
    given = exports(("*", ("mon",)), ("web", ("east",)))
    assert resolve(given, ["web", "api", "web", "consul"]) == [("api", ["mon"]), ("web", ["east", "mon"])]


def test_consul_is_never_exported() -> None:
    given = exports(("consul", ("east",)), ("*", ("west",)))
    assert resolve(given, ["consul"]) == []
    assert names_for_peer(given, ["consul", "web"], "east") == []


def test_sidecar_proxies_are_never_exported() -> None:
    given = exports(("web-sidecar-proxy", ("east",)), ("*", ("west",)))
    assert resolve(given, ["web", "web-sidecar-proxy"]) == [("web", ["west"])]
    assert names_for_peer(given, ["web-sidecar-proxy"], "east") == []
    assert names_for_peer(given, ["consul", "web"], "west") == ["web"]


def test_no_entry_exports_nothing() -> None:
    assert resolve(None, ["web"]) == []
    assert names_for_peer(None, ["web"], "east") == []


def test_names_for_peer() -> None:
    given = exports(("web", ("east",)), ("zeta", ("east", "west")), ("*", ("west",)), ("db", ("east",)))
    local = ["api", "web"]
    assert names_for_peer(given, local, "east") == ["db", "web", "zeta"]  # named: even with no instances
    assert names_for_peer(given, local, "west") == ["api", "web", "zeta"]
    assert names_for_peer(given, local, "Ea") == []  # exact match only
    assert names_for_peer(given, local, "nobody") == []


def test_resolution_takes_a_stored_entry() -> None:
    stored = to_config(parse(entry(web("east"), {"Name": "*", "Consumers": [{"Peer": "west"}]})))
    assert names_for_peer(stored, ["api"], "west") == ["api"]
    assert names_for_peer(stored, ["api", "web"], "west") == ["api", "web"]
    assert render_resolved(resolve(stored, ["web"])) == [{"Service": "web", "Consumers": {"Peers": ["east", "west"]}}]
    assert render_resolved(resolve(stored, ["api"])) == [
        {"Service": "api", "Consumers": {"Peers": ["west"]}},
        {"Service": "web", "Consumers": {"Peers": ["east"]}},
    ]
