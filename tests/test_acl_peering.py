"""Two real clusters with ACLs on and default deny peer end to end with write tokens only (SPEC §8).

The peer port is authenticated by peering secrets, so heartbeats and termination notices pass
without any ACL token; every operator call carries a token that has `peering = "write"` and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_peering import Node, gone, state_is

pytestmark = pytest.mark.anyio

MANAGEMENT = {"a": "a0000000-0000-4000-8000-00000000000a", "b": "b0000000-0000-4000-8000-00000000000b"}


async def _write_token(node: Node) -> str:
    """Create a `peering = "write"` policy and a token linked to it, with the management token."""
    management = {"X-Consul-Token": MANAGEMENT[node.name]}
    policy = await node.api.put(
        "/v1/acl/policy", json={"Name": "peering-write", "Rules": 'peering = "write"'}, headers=management
    )
    assert policy.status_code == 200, policy.text
    token = await node.api.put(
        "/v1/acl/token", json={"Description": "ops", "Policies": [{"Name": "peering-write"}]}, headers=management
    )
    assert token.status_code == 200, token.text
    return str(token.json()["SecretID"])


async def test_peering_with_acls_on_and_default_deny(tmp_path: Path) -> None:
    """Anonymous callers are refused; write tokens generate, check, establish, read and delete; the peer port needs no token."""
    nodes = [
        Node(
            name,
            tmp_path / name,
            datacenter,
            acl_enabled=True,
            acl_default_policy="deny",
            acl_initial_management_token=MANAGEMENT[name],
        )
        for name, datacenter in (("a", "dc1"), ("b", "dc2"))
    ]
    a, b = nodes
    await a.start()
    await b.start()
    try:
        anonymous = await a.api.post("/v1/peering/token", json={"PeerName": "cluster-b"})
        assert anonymous.status_code == 403
        assert anonymous.text == (
            "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' "
            "lacks permission 'peering:write'"
        )
        for node in nodes:
            node.headers["X-Consul-Token"] = node.api.headers["X-Consul-Token"] = await _write_token(node)

        token = (await a.api.post("/v1/peering/token", json={"PeerName": "cluster-b"})).json()["PeeringToken"]
        body = {"PeerName": "cluster-a", "PeeringToken": token}
        check = await b.api.post("/v1/peering/check", json=body)
        assert check.json()["IsValid"] is True, check.text
        established = await b.api.post("/v1/peering/establish", json=body)
        assert (established.status_code, established.content) == (200, b"{}")
        on_a = (await a.wait_for("cluster-b", state_is("ACTIVE"))).json()
        assert on_a["StreamStatus"]["LastHeartbeat"] is not None  # heartbeats got through without ACL tokens
        assert (await b.read("cluster-a"))["State"] == "ACTIVE"
        listing = await a.api.get("/v1/peerings")
        assert listing.headers["X-Consul-Default-ACL-Policy"] == "deny"

        # the termination notice crosses the peer port too
        assert (await a.api.delete("/v1/peering/cluster-b")).status_code == 200
        await b.wait_for("cluster-a", state_is("TERMINATED"))
        await a.wait_for("cluster-b", gone)
    finally:
        for node in nodes:
            if node._stack is not None:
                await node.stop()
