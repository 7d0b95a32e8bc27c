"""Hostile clients against real processes (issue 11; SPEC §3 common rules, §6): no freeze, no lockout,
no unbounded memory, no 500.

Two real clusters peered over real TLS (`tests.hostile_pair`: A accepted with ACLs on, B dialed;
heartbeats every 0.2 s, `FAILING` after 2 s without one). The attacker speaks from 127.0.0.2-127.0.0.9
(`tests.attack.ATTACKERS`), mostly from `tests.hostile_client`, a process of its own so that its CPU does
not delay the measurements; legitimate reads, and B's heartbeats, come from 127.0.0.1. While it attacks,
a thread reads the peering on both sides every 0.1 s (every answer must be 200 `ACTIVE`) and another
times legitimate reads of A, each on a new connection. What keeps those reads fast is A holding each busy
source to its fair share of the event loop (`peering/server/fairness.py`; `PEERING_FAIR_SHARE_LOAD=0`
in the environment turns it off, for a comparison).

Bounds: a legitimate read within 100 ms at the 95th percentile and none slower than 0.5 s (the machine is
shared by other work, so single reads are noisy; a held event loop, which is what the bounds are for,
moves both: the review saw 9.4 s); A's RSS within 50 MiB of where it was before the attack, measured
2 s after it ended. Figures are printed (run with `-s`) as one `HOSTILE-FIGURES` JSON line per test and
repeated in the assertion messages. The attacks on single inputs are in `test_hostile_inputs.py`.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from tests.attack import (
    ATTACKERS,
    MIB,
    attacker_identity,
    connect,
    cpu_seconds,
    fake_token_fields,
    forge,
    milliseconds,
    open_files_limit,
    peak_rss_mib,
    raise_open_files_limit,
    request,
    rss_mib,
    run_queue_wait,
    server_errors,
)
from tests.cluster import running_cluster
from tests.hostile_client import hcl_rules
from tests.hostile_pair import (
    AUTH,
    HEARTBEATS,
    MANAGEMENT,
    RSS_BOUND,
    Reads,
    Watch,
    attacking,
    both_active,
    open_sockets,
    peered,
    report,
    server_5xx,
    settled_rss,
    warm_up,
)
from tests.hostile_peer import HostilePeer

pytestmark = pytest.mark.slow

HOLD = 2000  # idle connections per port (issue 11 acceptance)
# connects per second while opening them, then to replace those the server closes (per port: the review
# kept the peering FAILING by reconnecting at ~100/s); the peer port's two holders share its rates
RATES = {"ramp_rate": 500.0, "reconnect_rate": 100.0}
HALF_RATES = {"ramp_rate": 250.0, "reconnect_rate": 50.0}


def _holders(a: dict[str, str], tls: int = HOLD) -> list[dict[str, Any]]:
    return [
        {"address": a["http_addr"], "mode": "tcp", "count": HOLD, **RATES},
        {"address": a["peering_addr"], "mode": "tcp", "count": 1000, **HALF_RATES},
        {"address": a["peering_addr"], "mode": "tls", "count": tls, **HALF_RATES},
    ]


def _no_503(stats: dict[str, Any]) -> bool:
    return not any(first.startswith("HTTP/1.1 503") for h in stats["holders"] for first in h["server_first_bytes"])


@pytest.mark.timeout(300)
def test_under_attack_the_peering_stays_active_reads_stay_fast_and_memory_stays_bounded(tmp_path: Path) -> None:
    """The acceptance attack, all at once for 25 s: 2,000 idle connections on A's client port, 1,000 TCP-only
    and 2,000 TLS ones on its peer port; anonymous oversized, deeply nested and huge-number requests on both
    ports; 600 refused establishes with unique 1 MB names; refused peer calls with unique IDs. Throughout,
    the peering stays ACTIVE on both sides and legitimate reads of A stay fast; afterwards A's RSS is within
    50 MiB of where it started; no request got a 5xx and A logged no error."""
    limit = raise_open_files_limit()
    sockets = HOLD + 1000 + HOLD + 200
    assert limit >= sockets + 500, f"RLIMIT_NOFILE {limit} cannot hold the attacker's {sockets} sockets"
    attacker_ca = attacker_identity(tmp_path / "attacker").ca_pem
    with peered(tmp_path) as pair:
        a, pid = pair.a.ready, pair.a.process.pid
        warm_up(pair)
        before, cpu_before, waited_before = rss_mib(pid), cpu_seconds(pid), run_queue_wait(pid)
        sockets_before = open_sockets(pid)
        duration = 25
        config: dict[str, Any] = {
            "duration": duration,
            "hold": _holders(a),
            "bodies": {"client": a["http_addr"], "peer": a["peering_addr"], "ca_pem": attacker_ca, "workers": 4},
            "spray": {"client": a["http_addr"], "count": 600, "name_bytes": 1_000_000, "workers": 3},
            "peer_spray": {"peer": a["peering_addr"], "ca_pem": attacker_ca, "count": 3000, "workers": 2},
        }
        watch, reads = Watch(pair), Reads(pair)
        with attacking(config) as attacker:
            attacker.next("started", timeout=60)
            with watch.running(), reads.running():
                stats = attacker.next("done", timeout=duration + 30)["stats"]
        cpu, waited = cpu_seconds(pid) - cpu_before, run_queue_wait(pid) - waited_before
        after = settled_rss(pid, sockets_before)
        line = report(
            "acceptance",
            {
                "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: how busy it was
                "a_open_files_limit": open_files_limit(pid),
                "test_open_files_limit": limit,
                "attacker_open_after_ramp": attacker.seen.get("holding", {}).get("open"),
                **reads.figures(),
                "b_reads_control": milliseconds(watch.b_seconds),
                "state_polls": watch.polls,
                "not_active": watch.bad[:5],
                "a_cpu_seconds_during_attack": round(cpu, 1),
                "a_loop_waiting_for_a_cpu_seconds": round(waited, 1),
                "rss_before_mib": round(before, 1),
                "rss_peak_mib": round(max(watch.rss, default=before), 1),
                "rss_after_mib": round(after, 1),
                "rss_hwm_mib": round(peak_rss_mib(pid), 1),
                "attacker": stats,
            },
        )
        assert watch.polls >= 50, line
        assert not watch.bad, line
        assert reads.fast(), line
        assert after - before <= RSS_BOUND, line
        assert not server_5xx(stats), line
        assert _no_503(stats), line
        assert all(h["connects"] + h["connect_failures"] >= h["target"] for h in stats["holders"]), line
        sent = {name: sum(case["statuses"].values()) for name, case in stats["requests"].items()}
        assert sent.get("establish-unique-long-name", 0) >= 100, line  # the attack did happen
        assert sum(sent.values()) >= 300, line
        both_active(pair, within=1.0)
        assert not server_errors(pair.a), server_errors(pair.a)[:3]


DEEP_JSON_RULES = '{"peering":' * 100_000 + '"read"' + "}" * 100_000
DEEP_HCL_RULES = 'key_prefix "" {\n' * 40_000 + "}\n" * 40_000
HEAVY_POLICIES = [
    ("HCL 340 KB", hcl_rules(340_000)),
    ("HCL 900 KB", hcl_rules(900_000)),
    ("HCL 60 KB", hcl_rules(60_000)),  # under the rules limit: a valid policy for a caller allowed to write
    ("JSON nested 100,000 deep", DEEP_JSON_RULES),
    ("HCL nested 40,000 deep", DEEP_HCL_RULES),
]


@pytest.mark.timeout(180)
def test_expensive_bodies_never_hold_the_event_loop(tmp_path: Path) -> None:
    """Finding 1: policies with 340 KB and 900 KB of HCL rules, and rules nested 100,000 deep, sent anonymously
    and with the management token, twice each: every one is answered with a documented status within 2 s
    (anonymous ones are refused before their rules are parsed), while reads of A stay fast and the peering
    stays ACTIVE on both sides (watched for a heartbeat timeout after the last one)."""
    with peered(tmp_path) as pair:
        warm_up(pair)
        watch, reads = Watch(pair), Reads(pair, every=0.02)
        answers: list[tuple[str, str, int, float]] = []
        with watch.running(), reads.running():
            for caller, headers in (("anonymous", {}), ("management", AUTH)):
                for label, rules in HEAVY_POLICIES:
                    for n in range(2):
                        body = {"Name": f"heavy-{len(answers)}", "Rules": rules}
                        answer = request(
                            pair.a.ready["http_addr"], "PUT", "/v1/acl/policy", body, headers=headers,
                            source=ATTACKERS[n], timeout=60,
                        )  # fmt: skip
                        answers.append((caller, label, answer.status, round(answer.seconds, 2)))
            time.sleep(2.5)  # a held loop shows as FAILING one heartbeat timeout later
        line = report("finding-1", {"answers": answers, **reads.figures(), "not_active": watch.bad[:5]})
        for caller, label, status, seconds in answers:
            allowed = {400, 403, 413} if caller == "anonymous" else {200, 400, 413}
            assert status in allowed, f"{caller} {label}: {status}; {line}"
            assert seconds <= 2.0, f"{caller} {label} took {seconds} s; {line}"
        assert reads.fast(), line
        assert not watch.bad, line
        assert not server_errors(pair.a), server_errors(pair.a)[:3]


@pytest.mark.timeout(180)
def test_idle_connections_lock_out_neither_the_peer_nor_clients(tmp_path: Path) -> None:
    """Finding 2: 1,000 idle TLS connections on A's peer port (the review's attack) with 1,000 TCP-only ones,
    and 2,000 idle connections on its client port, held for 12 s (six heartbeat timeouts) from eight sources
    and replaced at ~100/s per port as the server closes them: the peering stays ACTIVE on both sides, reads
    stay fast, and no connection is answered 503 (not a status of SPEC §3)."""
    raise_open_files_limit()
    with peered(tmp_path) as pair:
        warm_up(pair)
        watch, reads = Watch(pair), Reads(pair)
        pid = pair.a.process.pid
        cpu, waited = cpu_seconds(pid), run_queue_wait(pid)
        with attacking({"duration": 12, "hold": _holders(pair.a.ready, tls=1000)}) as attacker:
            attacker.next("started", timeout=60)
            with watch.running(), reads.running():
                stats = attacker.next("done", timeout=45)["stats"]
        cpu, waited = cpu_seconds(pid) - cpu, run_queue_wait(pid) - waited
        line = report(
            "finding-2",
            {**reads.figures(), "b_reads_control": milliseconds(watch.b_seconds), "not_active": watch.bad[:5],
             "load_average_1m": round(os.getloadavg()[0], 2), "a_cpu_seconds": round(cpu, 1),
             "a_loop_waiting_for_a_cpu_seconds": round(waited, 1), "attacker": stats},
        )  # fmt: skip
        assert not watch.bad, line
        assert reads.fast(), line
        assert _no_503(stats), line
        assert not server_errors(pair.a), server_errors(pair.a)[:3]


PER_SOURCE = {"PEERING_HTTP_MAX_CONNS_PER_CLIENT": "64", "PEERING_PEERING_MAX_CONNS_PER_CLIENT": "32"}  # lowered
BLOCKING = "/v1/peerings?index=1000000000000&wait=30s"  # an index far ahead: the query waits its whole wait


def _one_more(address: str, tls: bool) -> tuple[int, str]:
    """A request from the attacking source on one more connection: its status and text."""
    method, path, body = ("POST", "/peering/v1/heartbeat", {"PeerID": "x", "StreamSecret": "y"}) if tls else ("GET", "/v1/peerings", None)  # fmt: skip
    try:
        answer = request(address, method, path, body, headers=AUTH, source=ATTACKERS[0], tls=tls)
    except OSError as exc:  # ssl.SSLError is one
        return 0, f"refused: {type(exc).__name__}: {exc}"
    return answer.status, answer.text[:120]


@pytest.mark.timeout(180)
def test_a_source_over_its_connection_limit_gets_429_and_others_do_not_notice(tmp_path: Path) -> None:
    """Finding 2, per source (caps lowered through `PEERING_*`: 64 on the client port, 32 on the peer port):
    a source holding 200 idle connections on each port still gets one more served (its oldest idle one is
    closed for it); a source whose connections all have a request in progress (blocking queries; request
    heads whose body never comes) is answered 429 with SECURITY.md's message (on the TLS port, refusing
    the connection before its handshake also does), never 503. Meanwhile a legitimate client from another
    source is served and the peering stays ACTIVE."""
    raise_open_files_limit()
    with peered(tmp_path, a_env=PER_SOURCE) as pair:
        a = pair.a.ready
        held: list[socket.socket] = []
        answers: dict[str, tuple[int, str]] = {}
        try:
            for address, tls in ((a["http_addr"], False), (a["peering_addr"], True)):
                for _ in range(200):
                    with suppress(OSError):  # refused at once: the cheapest refusal there is
                        held.append(connect(address, source=ATTACKERS[0], tls=tls, timeout=5))
                answers[f"idle {'peer' if tls else 'client'}"] = _one_more(address, tls)
                for sock in held:
                    sock.close()
                held.clear()
                busy = 64 if not tls else 32
                for _ in range(busy):
                    sock = connect(address, source=ATTACKERS[0], tls=tls, timeout=5)
                    held.append(sock)
                    head = (f"GET {BLOCKING} HTTP/1.1\r\nHost: x\r\nX-Consul-Token: {MANAGEMENT}\r\n\r\n" if not tls
                            else "POST /peering/v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")  # fmt: skip
                    sock.sendall(head.encode())
                time.sleep(0.5)  # the server reads the heads (there is no event to wait for from out here)
                answers[f"busy {'peer' if tls else 'client'}"] = _one_more(address, tls)
                legit = pair.read_a()
                assert legit.status == 200, legit.text
                for sock in held:
                    sock.close()
                held.clear()
            both_active(pair, within=1.0)
        finally:
            for sock in held:
                sock.close()
        line = report("finding-2-per-source", {"answers": answers})
        assert answers["idle client"][0] == 200, line
        assert answers["idle peer"][0] == 403, line  # served: the heartbeat's secret is wrong
        too_many = (429, "Your IP is issuing too many concurrent connections, please rate limit your calls")
        assert answers["busy client"] == too_many, line
        # on the TLS port an answer would cost a handshake: refusing the connection before it is as good
        assert answers["busy peer"] == too_many or answers["busy peer"][0] == 0, line
        assert not server_errors(pair.a), server_errors(pair.a)[:3]


@pytest.mark.timeout(240)
def test_rejected_input_does_not_grow_memory(tmp_path: Path) -> None:
    """Finding 3: 600 anonymous establishes with unique 1 MB names (each refused with 400) and 2,000 peer
    calls with unique unknown peering IDs (each refused with 403): A's RSS ends within 50 MiB of where it
    started (the review saw +560 MB, never freed)."""
    attacker_ca = attacker_identity(tmp_path / "attacker").ca_pem
    with peered(tmp_path) as pair:
        a, pid = pair.a.ready, pair.a.process.pid
        warm_up(pair)
        before, sockets_before = rss_mib(pid), open_sockets(pid)
        config: dict[str, Any] = {
            "duration": 120,
            "spray": {"client": a["http_addr"], "count": 600, "name_bytes": 1_000_000, "workers": 4},
            "peer_spray": {"peer": a["peering_addr"], "ca_pem": attacker_ca, "count": 2000, "workers": 2},
        }
        with attacking(config) as attacker:
            stats = attacker.next("done", timeout=150)["stats"]
        after = settled_rss(pid, sockets_before)
        requests = stats["requests"]
        line = report("finding-3", {"rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1), **requests})
        assert requests["establish-unique-long-name"]["statuses"] == {"400": 600}, line
        for name in ("exchange-unknown-peer", "heartbeat-unknown-peer"):
            assert requests[name]["statuses"] == {"403": 1000}, line
        assert after - before <= RSS_BOUND, line
        both_active(pair, within=1.0)
        assert not server_errors(pair.a), server_errors(pair.a)[:3]


@pytest.mark.timeout(120)
def test_a_peer_answering_without_end_costs_the_dialer_a_bounded_amount(tmp_path: Path) -> None:
    """Finding 8: a fake acceptor (the attacker's own CA, which signed the token) answers exchange and probe
    with 300 MB of JSON. Establish is a 502 and check an `IsValid: false` within 5 s each; B stores nothing,
    its peak RSS grows by less than 50 MiB (the review saw +120 MB) and it stopped reading far short of
    300 MB."""
    identity = attacker_identity(tmp_path / "attacker")
    with (
        HostilePeer(identity, size=300 * MIB).running() as peer,
        running_cluster(tmp_path / "b", "--datacenter", "dc2", *HEARTBEATS) as b,
    ):
        token = forge(identity, fake_token_fields(identity, peer.address))
        pid, address = b.process.pid, b.ready["http_addr"]
        for _ in range(3):
            request(address, "GET", "/v1/peerings")
        peak_before = peak_rss_mib(pid)
        body = {"PeerName": "endless", "PeeringToken": token}
        established = request(address, "POST", "/v1/peering/establish", body, timeout=60)
        checked = request(address, "POST", "/v1/peering/check", body, timeout=60)
        deadline = time.monotonic() + 5
        while len(peer.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the fake notices the dialer's close when its next write fails
        growth = peak_rss_mib(pid) - peak_before
        line = report(
            "finding-8",
            {
                "establish": (established.status, established.text[:200], round(established.seconds, 2)),
                "check": (checked.status, checked.text[:300], round(checked.seconds, 2)),
                "peak_rss_growth_mib": round(growth, 1),
                "bytes_sent_by_the_fake": peer.sent,
            },
        )
        assert established.status == 502, line
        assert checked.status == 200, line
        assert checked.json()["IsValid"] is False, line
        assert max(established.seconds, checked.seconds) <= 5.0, line
        assert growth < RSS_BOUND, line
        assert len(peer.sent) >= 2, line
        assert max(peer.sent) < 32 * MIB, line
        assert request(address, "GET", "/v1/peerings").json() == [], line
        assert not server_errors(b), server_errors(b)[:3]
