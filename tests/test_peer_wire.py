"""The peer protocol's messages (peer/wire.py): caps and rules, decoded as the acceptor decodes them, and the
replication routes refusing what breaks them with a 4xx and a log line, over real TLS."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from peering.api.body import decode_body
from peering.app import Runtime, create_peer_app
from peering.errors import InvalidRequestError, PeerProtocolError, SecretRejectedError
from peering.identity import client_ssl_context
from peering.outbound import target_of
from peering.peer.wire import (
    MAX_EXPORTED_NAMES,
    MAX_INSTANCES,
    MAX_PAGE_SERVICES,
    MAX_REPLICATION_BODY_BYTES,
    ExportPage,
    PushRequest,
    page_problem,
)
from peering.peer_client import PeerClient
from tests.replication_helpers import B_NAME, peered
from tests.test_peer_endpoint import HOSTILE, _accepted, other_ca

__all__ = ["other_ca"]  # a fixture

pytestmark = pytest.mark.anyio


def instance(node: str = "n1", sid: str = "web-1", service: str = "web", **check: Any) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": "10.0.0.1", "Datacenter": "dc1"},
        "Service": {"ID": sid, "Service": service, "Port": 80},
        "Checks": [{"Node": node, "CheckID": f"{sid}:overall-check", "Status": "passing", "ServiceID": sid, **check}],
    }


def page(**changes: Any) -> dict[str, Any]:
    return {
        "Generation": "g-1",
        "Seq": 2,
        "Head": 2,
        "Full": True,
        "More": False,
        "Services": ["web"],
        "Upserts": [{"Name": "web", "Nodes": [instance()]}],
        **changes,
    }


def decoded(body: dict[str, Any]) -> ExportPage:
    return decode_body(orjson.dumps(body), ExportPage)


def test_a_good_page_decodes_and_unknown_fields_are_ignored() -> None:
    got = decoded(page(New=1))
    assert got.upserts[0].nodes[0].checks[0].check_id == "web-1:overall-check"
    assert page_problem(got) is None


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"Seq": "2"}, 'field "Seq"'),  # strict: a number is never a string
        ({"Seq": -1}, 'field "Seq"'),
        ({"Seq": 2**63}, 'field "Seq"'),
        ({"Generation": "g\n1"}, 'field "Generation"'),
        ({"Full": 1}, 'field "Full"'),
        ({"Services": ["x" * 257]}, 'field "Services[0]"'),
        ({"Services": ["bad\x00name"]}, 'field "Services[0]"'),
        ({"Services": ["s"] * (MAX_EXPORTED_NAMES + 1)}, 'field "Services"'),
        ({"Upserts": [{"Name": "web", "Nodes": [instance()] * (MAX_INSTANCES + 1)}]}, 'field "Upserts[0].Nodes"'),
        ({"Upserts": [{"Name": "w", "Nodes": []}] * (MAX_PAGE_SERVICES + 1)}, 'field "Upserts"'),
        ({"Upserts": [{"Name": "web", "Nodes": [instance(Status="maintenance")]}]}, "Status"),
        ({"Upserts": [{"Name": "web", "Nodes": [{**instance(), "Checks": [instance()["Checks"][0]] * 2}]}]}, "Checks"),
        (
            {
                "Upserts": [
                    {"Name": "web", "Nodes": [{**instance(), "Service": {"ID": "a", "Service": "web", "Port": 70000}}]}
                ]
            },
            "Port",
        ),
        (
            {
                "Upserts": [
                    {
                        "Name": "web",
                        "Nodes": [{**instance(), "Node": {"Node": "n", "Meta": {str(i): "v" for i in range(65)}}}],
                    }
                ]
            },
            "Meta",
        ),
        ({"Upserts": [{"Name": "web", "Nodes": [instance(Output="o" * 4097)]}]}, "Output"),
    ],
)
def test_what_breaks_a_cap_or_a_type_is_a_400_naming_the_field(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        decoded(page(**changes))
    assert refused.value.message.startswith("Body decoding failed: ")
    assert fragment in refused.value.message


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"Seq": 3}, "Seq 3 is past Head 2"),
        ({"Services": ["web", "api"]}, "Services is not sorted and unique"),
        ({"Services": ["web", "web"]}, "Services is not sorted and unique"),
        ({"Upserts": [{"Name": "web", "Nodes": []}] * 2}, "service 'web' is upserted twice"),
        (
            {"Upserts": [{"Name": "web", "Nodes": [instance(service="db")]}]},
            "instance 'web-1' of service 'web' names 'db'",
        ),
        ({"Upserts": [{"Name": "web", "Nodes": [instance()] * 2}]}, "instance 'web-1' on node 'n1' appears twice"),
        (
            {"Upserts": [{"Name": "web", "Nodes": [instance(CheckID="other")]}]},
            "check 'other' is not the overall check",
        ),
        (
            {"Upserts": [{"Name": "web", "Nodes": [instance(Node="n2")]}]},
            "is not the overall check of instance 'web-1'",
        ),
    ],
)
def test_rules_the_types_cannot_say(changes: dict[str, Any], problem: str) -> None:
    found = page_problem(decoded(page(**changes)))
    assert found is not None
    assert problem in found


async def test_the_replication_routes_refuse_bad_messages_with_a_4xx_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over real TLS to A's peer port with B's real stream secret: a wrong secret is a 403, a push over the
    body cap a 413, a page breaking a rule a 400, a pull body over the handshake cap a 413; each is logged
    (never the secret), none is a 5xx; a page that does not continue what A applied is answered, not taken."""
    caplog.set_level(logging.WARNING)
    async with peered(tmp_path) as (a, b):
        on_b = await b.runtime.cluster.store.get("default", B_NAME)
        assert on_b is not None
        secret = (await b.runtime.cluster.store.secrets(on_b.id)).stream_secret
        assert secret is not None
        peers = PeerClient(client_ssl_context, attempt_timeout=10)
        target = target_of(on_b)
        base = {"PeerID": on_b.peer_id, "StreamSecret": secret}
        try:
            with pytest.raises(SecretRejectedError):
                await peers.call(target, "exports/push", {**base, "StreamSecret": "wrong"})
            huge = {**base, "Page": page(Upserts=[{"Name": "web", "Nodes": [instance(Output="o" * 4000)] * 5000}])}
            assert len(orjson.dumps(huge)) > MAX_REPLICATION_BODY_BYTES
            with pytest.raises(PeerProtocolError, match="status 413"):
                await peers.call(target, "exports/push", huge)
            with pytest.raises(InvalidRequestError, match="invalid export page: Seq 3 is past Head 2"):
                await peers.call(target, "exports/push", {**base, "Page": page(Seq=3)})
            with pytest.raises(PeerProtocolError, match="status 413"):
                await peers.call(target, "exports/pull", {**base, "Generation": "", "SinceSeq": 0, "X": "x" * 70_000})
            answer = await peers.call(target, "exports/push", {**base, "BaseSeq": 7, "Page": page(Full=False)})
            assert answer["Accepted"] is False
            names, _ = await a.runtime.cluster.store.catalog.service_names("default", "cluster-b")
            assert names == {}  # nothing refused was applied
        finally:
            await peers.aclose()
        messages = [r.getMessage() for r in caplog.records]
        assert "rejected a replication message" in messages
        assert "rejected a replication page" in messages
        assert "rejected a replication request with a wrong stream secret" in messages
        assert secret not in caplog.text
        request = PushRequest(PeerID="x", StreamSecret="y")  # the dialer builds its requests with the same models
        assert request.model_dump(by_alias=True) == {"PeerID": "x", "StreamSecret": "y", "BaseSeq": 0, "Page": None}


PAGE_PATHS = [
    "Generation", "Seq", "Head", "Full", "More", "Services", "Services.0", "Upserts", "Upserts.0", "Upserts.0.Name",
    "Upserts.0.Nodes", "Upserts.0.Nodes.0", "Upserts.0.Nodes.0.Node.Node", "Upserts.0.Nodes.0.Node.ID",
    "Upserts.0.Nodes.0.Node.Address", "Upserts.0.Nodes.0.Node.Datacenter", "Upserts.0.Nodes.0.Node.Meta",
    "Upserts.0.Nodes.0.Node.Meta.k", "Upserts.0.Nodes.0.Node.TaggedAddresses", "Upserts.0.Nodes.0.Service.ID",
    "Upserts.0.Nodes.0.Service.Service", "Upserts.0.Nodes.0.Service.Kind", "Upserts.0.Nodes.0.Service.Tags",
    "Upserts.0.Nodes.0.Service.Tags.0", "Upserts.0.Nodes.0.Service.Port", "Upserts.0.Nodes.0.Service.Weights",
    "Upserts.0.Nodes.0.Service.Weights.Passing", "Upserts.0.Nodes.0.Service.EnableTagOverride",
    "Upserts.0.Nodes.0.Checks", "Upserts.0.Nodes.0.Checks.0.Status", "Upserts.0.Nodes.0.Checks.0.Output",
    "Upserts.0.Nodes.0.Checks.0.Notes", "Upserts.0.Nodes.0.Checks.0.Name", "Upserts.0.Nodes.0.Checks.0.Type",
    "Upserts.0.Nodes.0.Checks.0.ServiceTags.0",
]  # fmt: skip
HOSTILE_WIRE = [*HOSTILE, "a\x00b", "\x00"]


def _set(body: Any, path: str, value: object) -> Any:
    """`body` with the value at the dotted `path` (list indexes as numbers) replaced by `value`."""
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return body


async def test_hostile_values_anywhere_in_a_push_are_a_4xx_or_taken_never_a_5xx(
    runtime: Runtime, client: httpx.AsyncClient, other_ca: str
) -> None:
    """Every field of a push page (nested ones too), set to surrogates, NULs, 5,000 digits, control characters,
    oversized strings or another JSON type, with the link's real stream secret: a 4xx with a text body, or a
    200 when the value is a valid one; never a 5xx, and nothing with a NUL is stored."""
    transport = httpx.ASGITransport(app=create_peer_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="https://peer") as peer:
        peer_id, secret = await _accepted(client, peer, other_ca)
        statuses: set[int] = set()
        full = {
            "Node": {"ID": "", "Node": "n1", "Address": "a", "Datacenter": "dc1", "Meta": {"k": "v"}, "TaggedAddresses": {"lan": "a"}},
            "Service": {"ID": "web-1", "Service": "web", "Kind": "", "Tags": ["t"], "Port": 80, "Weights": {"Passing": 1}, "EnableTagOverride": False},
            "Checks": [{"Node": "n1", "CheckID": "web-1:overall-check", "Status": "passing", "ServiceID": "web-1", "Name": "o",
                        "Notes": "", "Output": "", "Type": "", "ServiceTags": ["t"]}],
        }  # fmt: skip
        values: list[object] = [*HOSTILE_WIRE, 1, -1, 2**70, 1.5, True, None, [], {}]
        for path in PAGE_PATHS:
            for value in values:
                base = page(Upserts=[{"Name": "web", "Nodes": [json.loads(json.dumps(full))]}])
                body = {"PeerID": peer_id, "StreamSecret": secret, "Page": _set(base, path, value)}
                response = await peer.post("/peering/v1/exports/push", content=json.dumps(body).encode())
                assert response.status_code < 500, (path, repr(value)[:40], response.text[:200])
                if response.status_code != 200:
                    assert response.headers["content-type"].startswith("text/plain")
                statuses.add(response.status_code)
        assert statuses == {200, 400}
        checks, _ = await runtime.cluster.store.catalog.checks("default", "cluster-02")
        nodes, _ = await runtime.cluster.store.catalog.nodes("default", "cluster-02")
        assert "\x00" not in repr(checks) + repr(nodes)
