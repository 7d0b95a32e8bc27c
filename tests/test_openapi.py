"""The committed spec equals the code's, and documents every route, body and error status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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
