"""The committed spec equals the code's, and documents every route, body and error status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peering.app import openapi_json

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def test_committed_spec_matches_the_code() -> None:
    """Regenerate with `make openapi` (or `peering openapi > openapi/openapi.json`)."""
    assert COMMITTED.read_text() == openapi_json()


def test_spec_documents_bodies_and_errors() -> None:
    spec = json.loads(openapi_json())
    token = spec["paths"]["/v1/peering/token"]["post"]
    assert "PeerName" in token["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"200", "400", "413"} <= set(token["responses"])
    read = spec["paths"]["/v1/peering/{name}"]["get"]
    assert {"200", "400", "404"} <= set(read["responses"])
    assert {p["name"] for p in read["parameters"]} >= {"name", "partition", "index", "wait", "pretty"}
    assert read["responses"]["404"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert not any(path.startswith("/peering/") for path in spec["paths"])  # peer protocol stays out


def test_spec_documents_acl_tokens_and_denials() -> None:
    """Every peering and ACL operation names the three token carriers (or none) and documents its 403."""
    spec = json.loads(openapi_json())
    schemes = spec["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "description": "ACL token (second choice).",
        "in": "header",
        "name": "X-Consul-Token",
        "type": "apiKey",
    }
    assert schemes["APIKeyQuery"]["name"] == "token"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)  # bad input is a 400 here
            if path.startswith(("/v1/peering", "/v1/acl/")) and path != "/v1/acl/bootstrap":
                assert "403" in operation["responses"], (method, path)
                assert operation["security"] == [{"APIKeyQuery": []}, {"APIKeyHeader": []}, {"HTTPBearer": []}, {}]


def test_every_reference_resolves() -> None:
    """Each `$ref` names a part of the document (a body model's `$defs` left in place would dangle)."""
    spec = json.loads(openapi_json())

    def refs(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(spec):
        target = spec
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, ref
            target = target[part]


NEW_READS = [
    "/v1/catalog/services",
    "/v1/catalog/service/{name}",
    "/v1/catalog/nodes",
    "/v1/catalog/node/{node}",
    "/v1/health/service/{name}",
    "/v1/health/checks/{service}",
    "/v1/health/state/{state}",
]
NEW_OPERATIONS = [
    *[("get", path) for path in NEW_READS],
    ("put", "/v1/catalog/register"),
    ("put", "/v1/catalog/deregister"),
    ("put", "/v1/agent/service/register"),
    ("put", "/v1/agent/service/deregister/{service_id}"),
    ("put", "/v1/agent/service/maintenance/{service_id}"),
    *[("put", f"/v1/agent/check/{verb}/{{check_id}}") for verb in ("pass", "warn", "fail", "update")],
    ("get", "/v1/agent/services"),
    ("get", "/v1/agent/checks"),
    ("put", "/v1/config"),
    ("get", "/v1/config/{kind}"),
    ("get", "/v1/config/{kind}/{name}"),
    ("delete", "/v1/config/{kind}/{name}"),
    ("get", "/v1/exported-services"),
    ("get", "/v1/imported-services"),
]


def _parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(p["name"]): p for p in operation.get("parameters", [])}


def test_the_catalog_and_config_routes_are_documented() -> None:
    """SPEC §13/§14: every new route has a summary and a description, its 400 and 403 (and the 404 and 413
    where they happen), `?partition=`, blocking-query parameters on the reads, `?peer=` on the catalog and
    health reads, `?tag=` (repeatable) and `?passing`, `?cas=`, and a named response shape for its JSON."""
    spec = json.loads(openapi_json())
    paths = spec["paths"]
    for method, path in NEW_OPERATIONS:
        operation = paths[path][method]
        assert operation["summary"], (method, path)
        assert operation["description"], (method, path)
        assert {"200", "400", "403"} <= set(operation["responses"]), (method, path)
        assert "partition" in _parameters(operation), (method, path)
        if "requestBody" in operation:
            assert "413" in operation["responses"], (method, path)
            assert operation["requestBody"]["content"]["application/json"]["schema"]["properties"], (method, path)
        for name, parameter in _parameters(operation).items():
            assert parameter["in"] == "path" or parameter.get("description"), (method, path, name)
    for path in NEW_READS:
        assert {"peer", "index", "wait", "consistent", "stale"} <= set(_parameters(paths[path]["get"])), path
    for path in ("/v1/catalog/service/{name}", "/v1/health/service/{name}"):
        tag = _parameters(paths[path]["get"])["tag"]
        assert tag["schema"]["anyOf"][0] == {"items": {"type": "string"}, "type": "array"}, path
    assert "passing" in _parameters(paths["/v1/health/service/{name}"]["get"])
    assert "description" in _parameters(paths["/v1/health/state/{state}"]["get"])["state"]
    assert "cas" in _parameters(paths["/v1/config"]["put"])
    assert "cas" in _parameters(paths["/v1/config/{kind}/{name}"]["delete"])
    for method, path in [("get", "/v1/config/{kind}/{name}"), ("delete", "/v1/config/{kind}/{name}")]:
        assert "404" in paths[path][method]["responses"]
    for verb in ("pass", "warn", "fail", "update"):
        assert "404" in paths[f"/v1/agent/check/{verb}/{{check_id}}"]["put"]["responses"]
    for name in ("index", "wait"):  # the blocking-query pair is on every new read
        assert name in _parameters(paths["/v1/exported-services"]["get"])
        assert name in _parameters(paths["/v1/config/{kind}"]["get"])
    shapes = {
        "/v1/catalog/service/{name}": "ServiceNodeShape",
        "/v1/catalog/nodes": "NodeShape",
        "/v1/health/service/{name}": "HealthEntryShape",
        "/v1/health/checks/{service}": "CheckShape",
        "/v1/health/state/{state}": "CheckShape",
        "/v1/config/{kind}": "ConfigEntryShape",
        "/v1/exported-services": "ResolvedExportShape",
        "/v1/imported-services": "ImportedServiceShape",
    }
    for path, shape in shapes.items():
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["items"] == {"$ref": f"#/components/schemas/{shape}"}, path
    entry = paths["/v1/config/{kind}/{name}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert entry == {"$ref": "#/components/schemas/ConfigEntryShape"}
    assert set(spec["components"]["schemas"]["HealthEntryShape"]["required"]) == {"Node", "Service", "Checks"}
    assert spec["components"]["schemas"]["ConfigEntryShape"]["properties"]["Services"]["items"] == {
        "$ref": "#/components/schemas/EntryServiceShape"
    }
