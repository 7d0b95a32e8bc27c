"""The cluster identity: files and modes, reuse across restarts, renewal, real TLS handshakes."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from peering.identity import client_ssl_context, fingerprint, load_or_create


def test_first_start_creates_files_with_safe_modes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ident = load_or_create(data, "dc1")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600
    assert ident.server_name == "server.dc1.consul"
    assert ident.ca_fingerprint == fingerprint(ident.ca_pem)
    assert "PRIVATE" not in repr(ident)


def test_restart_reuses_the_identity(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, "dc1")
    server_pem = (tmp_path / "server.pem").read_bytes()
    second = load_or_create(tmp_path, "dc1")
    assert (second.cluster_id, second.ca_pem) == (first.cluster_id, first.ca_pem)
    assert (tmp_path / "server.pem").read_bytes() == server_pem


def test_a_new_datacenter_or_an_expiring_cert_reissues_only_the_server_cert(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, "dc1")
    renamed = load_or_create(tmp_path, "east")
    assert renamed.ca_pem == first.ca_pem
    assert renamed.server_name == "server.east.consul"
    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    assert "server.east.consul" in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    before = (tmp_path / "server.pem").read_bytes()
    load_or_create(tmp_path, "east", now=datetime.now(UTC) + timedelta(days=340))
    assert (tmp_path / "server.pem").read_bytes() != before


def test_damaged_files_are_reported_without_key_material(tmp_path: Path) -> None:
    load_or_create(tmp_path, "dc1")
    (tmp_path / "ca-key.pem").write_text("garbage")
    with pytest.raises(RuntimeError, match="cannot load the cluster identity") as caught:
        load_or_create(tmp_path, "dc1")
    assert "garbage" not in str(caught.value)


def test_signatures_verify_with_the_ca_public_key(tmp_path: Path) -> None:
    ident = load_or_create(tmp_path, "dc1")
    ca = x509.load_pem_x509_certificate(ident.ca_pem.encode())
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(ident.sign(b"payload"), b"payload", ec.ECDSA(hashes.SHA256()))


async def _handshake(server_dir: Path, trusted_pem: str, name: str) -> None:
    ident = load_or_create(server_dir, "dc1")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=ident.server_ssl_context())
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_ssl_context([trusted_pem]), server_hostname=name), 5
        )
        assert await reader.read() == b"ok"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
async def test_tls_trusts_only_the_pinned_ca_and_name(tmp_path: Path) -> None:
    server_dir = tmp_path / "server"
    ca_pem = load_or_create(server_dir, "dc1").ca_pem
    await _handshake(server_dir, ca_pem, "server.dc1.consul")
    stranger = load_or_create(tmp_path / "stranger", "dc1").ca_pem
    import ssl

    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server_dir, stranger, "server.dc1.consul")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server_dir, ca_pem, "server.dc2.consul")
