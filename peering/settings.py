"""Runtime settings of one cluster: `peering serve` options and their `PEERING_*` variables."""

from __future__ import annotations

import re
import socket
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NODE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d{1,5})$")


def split_host_port(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 hosts in brackets) into its parts.

    Raises:
        ValueError: the value is not `host:port` with a port in 0..65535.
    """
    match = _HOST_PORT.match(value)
    if match is None or int(match["port"]) > 65535:
        raise ValueError(f"{value!r} is not a valid host:port address")
    return match["v6"] or match["host"], int(match["port"])


def host_name() -> str:
    """This machine's host name: the default name of the cluster's own catalog node (`--node-name`)."""
    name = socket.gethostname().split(".")[0]
    return name if re.fullmatch(NODE_NAME_PATTERN, name) else "peering"


class Settings(BaseSettings):
    """Options of `peering serve`; each also reads `PEERING_<OPTION>` from the environment."""

    model_config = SettingsConfigDict(env_prefix="PEERING_", extra="forbid", frozen=True)

    data_dir: Path = Path("./data")
    http_addr: str = "127.0.0.1:8500"
    peering_addr: str = "127.0.0.1:8503"
    advertise_addr: str | None = None
    datacenter: str = Field(default="dc1", pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    # the cluster's own node in the catalog (SPEC §13): agent services register on it
    node_name: str = Field(default_factory=host_name, pattern=NODE_NAME_PATTERN)
    heartbeat_interval: float = Field(default=15.0, gt=0)
    heartbeat_timeout: float = Field(default=120.0, gt=0)
    acl_enabled: bool = False
    acl_default_policy: Literal["allow", "deny"] = "deny"
    acl_initial_management_token: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    ui: bool = True  # the operator console at /ui/ (peering/ui); --no-ui or PEERING_UI=false turns it off
    # postgresql://… or postgres://… makes this process one replica on a shared PostgreSQL (SPEC §15); unset:
    # the SQLite file in the data dir. A secret: it may hold a password, so it is never logged or echoed
    database_url: SecretStr | None = None
    lease_ttl: float = Field(default=10.0, gt=0)  # seconds a replica owns the background work unrenewed
    # a comma-separated CIDR list: connections from these may say who the client is in X-Forwarded-For
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    # connection limits of each listener, in total and per source address (SECURITY.md); no flags, only
    # PEERING_* variables. The client port holds every open blocking query, hence its size.
    http_max_conns: int = Field(default=16384, ge=1)
    http_max_conns_per_client: int = Field(default=4096, ge=1)
    peering_max_conns: int = Field(default=512, ge=1)  # an idle TLS connection holds ~50 KB
    peering_max_conns_per_client: int = Field(default=128, ge=1)
    peering_handshake_timeout: float = Field(default=5.0, gt=0)
    fair_share_load: float = Field(default=0.5, ge=0, le=1)  # the loop's load above which the heaviest sources wait

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        networks: list[IPv4Network | IPv6Network] = []
        for part in value.split(","):
            if part.strip():
                try:
                    networks.append(ip_network(part.strip(), strict=False))
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not a CIDR (like 10.0.0.0/8 or 127.0.0.1/32)") from None
        return tuple(networks)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            scheme = value.get_secret_value().split("://", 1)[0].lower() if "://" in value.get_secret_value() else ""
            if scheme not in ("postgresql", "postgres"):
                raise ValueError("must start with postgresql:// or postgres://")  # the URL itself is not repeated
        return value

    @field_validator("http_addr", "peering_addr", "advertise_addr")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value
