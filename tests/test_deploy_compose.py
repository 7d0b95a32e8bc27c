"""deploy/compose.yaml and deploy/haproxy.cfg, checked as files (README, "Running several replicas").

`deploy/container-test.sh` brings the compose file up for real (CI runs it); these tests pin what it
must keep saying wherever no container runtime runs: official images pinned by full version, three
replicas of the project's image on one PostgreSQL (the URL from the environment, never a literal
password), each advertising its own peering address, and a balancer that does HTTP on the client
port and TCP passthrough on the peering port, over every replica.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REPLICAS = ("replica-1", "replica-2", "replica-3")
PINNED = re.compile(r"^docker\.io/library/(?P<name>[a-z0-9-]+):(?P<version>\d+\.\d+(\.\d+)?)(-[a-z]+)?$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def pinned_version(image: str) -> str:
    found = PINNED.match(image)
    assert found is not None, f"{image} is not an official image pinned by version"
    return found["version"]


def haproxy_sections() -> dict[str, list[str]]:
    """`section name` -> its lines, comments and blank lines left out."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def test_postgres_and_the_balancer_are_official_images_pinned_by_full_version(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for service, name in (("postgres", "postgres"), ("lb", "haproxy")):
        image = services[service]["image"]
        found = PINNED.match(image)
        assert found is not None, f"{service}: {image} is not an official image pinned by version"
        assert found["name"] == name
        assert found["version"].count(".") >= 1, image  # a minor (or patch) release, never a moving major


def test_the_stand_ins_the_container_test_builds_are_the_pinned_majors(compose: dict[str, Any]) -> None:
    """The container test runs Debian's packages under the pinned names: the same major release line."""
    services = compose["services"]
    pg_major = pinned_version(services["postgres"]["image"]).split(".")[0]
    assert f"postgresql-{pg_major}" in (DEPLOY / "standins" / "postgres.Containerfile").read_text()
    lb = pinned_version(services["lb"]["image"])
    assert lb.startswith("2.6."), "Debian 12's HAProxy (the stand-in) is 2.6: keep the pin on that line or move both"
    script = (DEPLOY / "container-test.sh").read_text()
    assert "deploy/compose.yaml" in script
    assert "standins/postgres.Containerfile" in script
    assert "standins/haproxy.Containerfile" in script


def test_three_replicas_of_the_project_image_on_one_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    urls, advertised = set(), []
    for name in REPLICAS:
        replica = services[name]
        assert replica["build"]["context"] == ".."  # the repository's Dockerfile
        assert replica["image"] == "${PEERING_IMAGE:-localhost/peering:latest}"
        env = replica["environment"]
        url = env["PEERING_DATABASE_URL"]  # --database-url, from the environment: not on a command line
        assert url.startswith("postgresql://peering:${PEERING_PG_PASSWORD:?")
        assert url.endswith("@postgres:5432/peering")
        urls.add(url)
        assert env["PEERING_DATACENTER"] == "dc1"
        advertised.append(env["PEERING_ADVERTISE_ADDR"])
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "ports" not in replica  # reached through the balancer only
    assert len(urls) == 1
    assert advertised == [f"{name}:8503" for name in REPLICAS]


def test_the_password_is_required_and_never_written_down(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    postgres = compose["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == "${PEERING_PG_PASSWORD:?set PEERING_PG_PASSWORD}"
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("peering", "peering")
    for line in text.splitlines():
        if "postgresql://" in line and not line.lstrip().startswith("#"):
            assert "${PEERING_PG_PASSWORD:?" in line, line


def test_the_balancer_publishes_both_ports_and_mounts_its_config(compose: dict[str, Any]) -> None:
    lb = compose["services"]["lb"]
    assert lb["ports"] == [
        "127.0.0.1:${PEERING_LB_HTTP_PORT:-8500}:8500",
        "${PEERING_LB_PEERING_BIND:-127.0.0.1}:${PEERING_LB_PEERING_PORT:-8503}:8503",
    ]
    assert lb["volumes"] == ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    assert sorted(lb["depends_on"]) == list(REPLICAS)


def test_haproxy_balances_http_on_the_client_port_and_passes_tls_through_on_the_peering_port() -> None:
    sections = haproxy_sections()
    client, peering = sections["frontend client"], sections["frontend peering"]
    assert {"mode http", "bind :8500", "default_backend client-replicas"} <= set(client)
    assert {"mode tcp", "bind :8503", "default_backend peering-replicas"} <= set(peering)
    http_backend, tcp_backend = sections["backend client-replicas"], sections["backend peering-replicas"]
    assert "mode http" in http_backend
    assert "option httpchk GET /v1/status/leader" in http_backend
    assert "mode tcp" in tcp_backend
    for backend, port in ((http_backend, 8500), (tcp_backend, 8503)):
        servers = [line for line in backend if line.startswith("server ")]
        assert servers == [f"server {name} {name}:{port}" for name in REPLICAS]
    # TLS ends at the replicas: nothing in the file terminates or inspects it
    text = (DEPLOY / "haproxy.cfg").read_text()
    assert " ssl " not in text
    assert "crt " not in text
    # blocking queries wait up to 10 minutes: the balancer must not cut them off sooner
    defaults = sections["defaults"]
    assert "timeout client 11m" in defaults
    assert "timeout server 11m" in defaults
