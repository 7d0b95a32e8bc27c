"""Crafted tokens and hostile peers against two real clusters over real TLS (issue 11: 11.5, 11.6, 11.8, 11.10).

- A token re-signed by an attacker's CA cannot reach the acceptor it lists: TLS chains to `CA[0]` only.
- The dialer checks every field of a token before it dials; nothing fails once the secret is consumed,
  and what still can (the store refusing the link) is undone on the acceptor.
- Peer answers are capped while they stream: a 300 MB answer costs the dialer a few kilobytes.
- A dialer whose acceptor removed the peering without reaching it concludes `TERMINATED`.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from peering import tokens
from peering.identity import client_ssl_context, load_or_create
from peering.outbound import Outbound
from peering.peer_client import MAX_ANSWER_BYTES, PeerClient
from tests.fake_peer import Reply, fake_peer
from tests.test_faults import GOOD, assert_refused_at_once
from tests.test_peering import HEARTBEAT_TIMEOUT, clusters, gone, state_is

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HUGE = 300 * 1024 * 1024
UNTRUSTED = "tls: failed to verify certificate (unknown authority or wrong server name)"


def rss() -> int:
    """This process's resident memory in bytes (the dialer and the fake both run in it)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_a_huge_or_compressed_answer_is_refused_while_it_streams(tmp_path: Path) -> None:
    """A fake acceptor answering the exchange with 300 MB, announced or chunked without a length, or with a
    compressed body: establish is a 502 saying so, at once, having read at most the cap (memory grows by
    a few MB, not 300), and stores nothing; check says the same; an answer just under the cap is read; a
    heartbeat answered with 300 MB does not go through."""
    over = f"the peer's answer is over {MAX_ANSWER_BYTES} bytes"
    cases = [
        (replace(GOOD, padding=HUGE), over),
        (replace(GOOD, padding=HUGE, chunked=True), over),
        (replace(GOOD, headers=(("Content-Encoding", "gzip"),)), "the peer answered with a compressed body"),
    ]
    async with clusters(tmp_path) as (a, b):
        before = rss()
        for reply, reason in cases:
            async with fake_peer(a.data, reply) as fake:
                token = await a.token("cluster-b", ServerExternalAddresses=[fake.address])
                await assert_refused_at_once(b, token, fake.address, reason)
                assert fake.sent < 32 * 1024 * 1024  # the dialer hung up long before the end
        assert rss() - before < 40 * 1024 * 1024
        assert (await b.api.get("/v1/peerings")).json() == []
        assert (await a.read("cluster-b"))["State"] == "INITIAL"

        near = replace(GOOD, padding=MAX_ANSWER_BYTES - len(GOOD.body), chunked=True)
        async with fake_peer(a.data, near) as fake:
            token = await a.token("cluster-b", ServerExternalAddresses=[fake.address])
            checked = await b.api.post("/v1/peering/check", json={"PeerName": "cluster-a", "PeeringToken": token})
            assert checked.json()["IsValid"] is True, checked.text

        assert (await b.establish("cluster-a", await a.token("cluster-b"))).status_code == 200
        stored = await b.runtime.cluster.store.get("default", "cluster-a")
        assert stored is not None
        peers = PeerClient(client_ssl_context, attempt_timeout=2.0)
        try:
            async with fake_peer(a.data, replace(GOOD, padding=HUGE)) as fake:
                aimed = replace(stored, peer_server_addresses=(fake.address,))
                assert await Outbound(b.runtime.cluster, peers).heartbeat(aimed) is False
                assert fake.sent < 32 * 1024 * 1024
        finally:
            await peers.aclose()


async def test_a_token_resigned_by_another_ca_cannot_reach_the_acceptor_it_lists(tmp_path: Path) -> None:
    """A's real token re-signed by an attacker's CA, with that CA at `CA[0]` and A's at `CA[1]`: the
    signature verifies (with `CA[0]`), but TLS trusts `CA[0]` alone, so A's certificate is refused before
    the secret is sent: establish is a 502, check IsValid false, B stores nothing, A's token is unused.
    Both certificates in one CA entry is an invalid CA; a bad field anywhere (a lone surrogate or a newline
    in `Remote`, a 5,000-digit port, an oversized PeerID) is a 400 before any dial. The real token still
    establishes afterwards."""
    attacker = load_or_create(tmp_path / "attacker", "dc1")
    async with clusters(tmp_path) as (a, b):
        original = await a.token("cluster-b")
        real = tokens.decode(original)
        crafted = tokens.encode(replace(real, ca=(attacker.ca_pem, real.ca[0])), attacker.sign)
        response = await b.establish("cluster-a", crafted)
        expected = f'failed to exchange peering secret through address "{a.peering_addr}": {UNTRUSTED}'
        assert (response.status_code, response.text) == (502, expected)
        checked = await b.api.post("/v1/peering/check", json={"PeerName": "cluster-a", "PeeringToken": crafted})
        assert checked.json()["IsValid"] is False
        assert UNTRUSTED in checked.json()["ErrorMessage"]

        both = tokens.encode(replace(real, ca=(attacker.ca_pem + real.ca[0],)), attacker.sign)
        response = await b.establish("cluster-a", both)
        assert (response.status_code, response.text) == (
            400,
            "peering token invalid CA: an entry must hold exactly one PEM certificate",
        )
        for change in (
            {"remote": tokens.TokenRemote("dc\ud800", "default")},
            {"remote": tokens.TokenRemote("dc1\n", "default")},
            {"remote": tokens.TokenRemote("dc1", "Default")},
            {"server_addresses": (a.peering_addr, "127.0.0.1:" + "9" * 5000)},
            {"peer_id": real.peer_id * 3},
            {"server_name": "server.dc1.consul\x00"},
        ):
            bad = tokens.encode(replace(real, ca=(attacker.ca_pem,), **change), attacker.sign)
            response = await b.establish("cluster-a", bad)
            assert response.status_code == 400, (change, response.text)
            assert response.text.startswith(("failed to decode token: ", "127.0.0.1:999")), response.text
        assert (await b.api.get("/v1/peerings")).json() == []
        assert (await a.read("cluster-b"))["State"] == "INITIAL"  # no secret was ever presented

        response = await b.establish("cluster-a", original)
        assert (response.status_code, response.text) == (200, "{}")


async def test_an_exchange_the_dialer_cannot_keep_is_undone_on_the_acceptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two establishes on B with tokens from two partitions of A (one cluster, so B may keep one) are held
    until both passed B's one-peering-per-cluster check; A accepts both exchanges (its partitions are
    separate), and B's store refuses the second link: that establish is a 400, and its exchange is undone
    on A, whose side turns TERMINATED at once instead of staying an ACTIVE orphan; B stores only the first."""
    async with clusters(tmp_path) as (a, b):
        tokens_by_name = {
            "first": await a.token("cluster-b", Partition="p1"),
            "second": await a.token("cluster-b", Partition="p2"),
        }
        outbound = b.runtime.service._outbound
        exchange = outbound.exchange
        both_planned = asyncio.Event()
        arrived: list[str] = []

        async def held_exchange(*args: Any) -> dict[str, str]:
            arrived.append("x")
            if len(arrived) == 2:
                both_planned.set()
            with anyio.fail_after(10):
                await both_planned.wait()
            return await exchange(*args)

        monkeypatch.setattr(outbound, "exchange", held_exchange)
        results: dict[str, httpx.Response] = {}

        async def establish(name: str) -> None:
            results[name] = await b.establish(name, tokens_by_name[name])

        async with anyio.create_task_group() as group:
            for name in tokens_by_name:
                group.start_soon(establish, name)
        (kept,) = [name for name, response in results.items() if response.status_code == 200]
        (refused,) = [name for name in results if name != kept]
        assert (results[refused].status_code, results[refused].text) == (
            400,
            f'a peering with this cluster already exists: "{kept}"',
        )
        assert [p["Name"] for p in (await b.api.get("/v1/peerings")).json()] == [kept]
        states = {}
        for name, partition in (("first", "p1"), ("second", "p2")):
            read = await a.api.get(f"/v1/peering/cluster-b?partition={partition}")
            states[name] = read.json()["State"]
        assert states == {kept: "ACTIVE", refused: "TERMINATED"}
        assert len(b.runtime.service._name_locks) == 0


async def test_an_answer_the_dialer_cannot_use_after_the_exchange_is_undone(tmp_path: Path) -> None:
    """An acceptor that answers the exchange with a valid stream secret but an invalid Datacenter: establish
    is a 502, and the dialer sends a termination with that stream secret, so the acceptor can drop what the
    exchange created."""
    bad = Reply(body=b'{"StreamSecret": "s3cret", "Datacenter": "dc\\n1", "ServerName": "s", "Version": "1"}')
    async with clusters(tmp_path) as (a, b), fake_peer(a.data, bad) as fake:
        token = await a.token("cluster-b", ServerExternalAddresses=[fake.address])
        response = await b.establish("cluster-a", token)
        assert (response.status_code, response.text) == (
            502,
            f'failed to exchange peering secret through address "{fake.address}": '
            "the peer's answer has no valid Datacenter",
        )
        assert fake.paths == ["/peering/v1/exchange", "/peering/v1/terminate"]
        assert b'"StreamSecret":"s3cret"' in fake.bodies[1].replace(b" ", b"")
        assert (await b.api.get("/v1/peerings")).json() == []


async def test_a_dialer_whose_acceptor_removed_the_peering_unseen_turns_terminated(tmp_path: Path) -> None:
    """The acceptor deletes the peering while the dialer is down; it cannot tell it, and removes the record
    after the grace period. The dialer, back, is refused like any stranger (an unknown ID and a wrong secret
    look alike) and, once the refusals have lasted the heartbeat timeout, turns TERMINATED (without
    DeletedAt) instead of retrying for ever."""
    async with clusters(tmp_path) as (a, b):
        assert (await b.establish("cluster-a", await a.token("cluster-b"))).status_code == 200
        await a.wait_for("cluster-b", state_is("ACTIVE"))
        await b.stop()
        assert (await a.api.delete("/v1/peering/cluster-b")).status_code == 200
        await a.wait_for("cluster-b", gone, timeout=HEARTBEAT_TIMEOUT + 10)
        await b.start()
        terminated = (await b.wait_for("cluster-a", state_is("TERMINATED"), timeout=HEARTBEAT_TIMEOUT + 10)).json()
        assert "DeletedAt" not in terminated
        # and the dialer may establish again with a fresh token (SPEC §5.4)
        assert (await b.establish("cluster-a", await a.token("cluster-b"))).status_code == 200
        await a.wait_for("cluster-b", state_is("ACTIVE"))
