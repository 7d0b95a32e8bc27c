"""The cluster's identity: its ID, its CA (ECDSA P-256) and server certificate, and TLS contexts.

The only module that creates keys and certificates. Files in the data dir: `cluster-id`,
`ca.pem`, `ca-key.pem` (0600), `server.pem`, `server-key.pem` (0600); the dir itself is 0700.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = timedelta(days=3650)
SERVER_LIFETIME = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class ClusterIdentity:
    """Who this cluster is, and the key material that proves it."""

    cluster_id: str
    datacenter: str
    server_name: str
    ca_pem: str
    ca_fingerprint: str
    cert_path: Path
    key_path: Path
    _ca_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def sign(self, payload: bytes) -> bytes:
        """A DER ECDSA P-256 / SHA-256 signature of `payload` by the cluster's CA key."""
        return self._ca_key.sign(payload, ec.ECDSA(hashes.SHA256()))

    def server_ssl_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the cluster's server certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def server_name_for(datacenter: str) -> str:
    """The TLS name of a datacenter's servers."""
    return f"server.{datacenter}.consul"


def _ca_certificate(ca_pem: str) -> x509.Certificate:
    """The one certificate of a PEM CA entry (an entry with several would let one fingerprint stand for
    another certificate that TLS would trust too).

    Raises:
        ValueError: not exactly one PEM certificate, or not ASCII.
    """
    if not ca_pem.isascii() or ca_pem.count("-----BEGIN") != 1:
        raise ValueError("a CA entry must hold exactly one PEM certificate")
    return x509.load_pem_x509_certificate(ca_pem.encode("ascii"))


def fingerprint(ca_pem: str) -> str:
    """Hex SHA-256 of a PEM certificate's DER: how one cluster recognises another (SPEC §5.6).

    Raises:
        ValueError: not exactly one PEM certificate.
    """
    cert = _ca_certificate(ca_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def client_ssl_context(ca_pems: Sequence[str]) -> ssl.SSLContext:
    """A TLS client context that trusts only these CA certificates and checks the server's name.

    Each certificate is loaded from its parsed DER, so that exactly the certificate that was checked
    (the one that signed a token) is trusted, whatever else its PEM text holds.

    Raises:
        ValueError: a CA entry is not one certificate OpenSSL accepts.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        for pem in ca_pems:
            context.load_verify_locations(cadata=_ca_certificate(pem).public_bytes(serialization.Encoding.DER))
    except ssl.SSLError:
        raise ValueError("a CA certificate that OpenSSL does not accept") from None
    return context


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically, with the mode set before any byte lands."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_ca(cluster_id: str, now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"peering CA {cluster_id[:8]}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, server_name: str, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName(server_name),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + SERVER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _server_cert_usable(path: Path, server_name: str, now: datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return server_name in sans.get_values_for_type(x509.DNSName) and cert.not_valid_after_utc - now > RENEW_BEFORE


def load_or_create(data_dir: Path, datacenter: str, *, now: datetime | None = None) -> ClusterIdentity:
    """Load the identity from `data_dir`, creating what is missing (first start) or stale.

    Raises:
        RuntimeError: the files exist but cannot be read as an identity.
    """
    moment = now or datetime.now(UTC)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    paths = {name: data_dir / name for name in ("cluster-id", "ca.pem", "ca-key.pem", "server.pem", "server-key.pem")}
    try:
        if not paths["ca-key.pem"].exists():
            cluster_id = str(uuid.uuid4())
            ca_key, ca_cert = _new_ca(cluster_id, moment)
            _write(paths["ca-key.pem"], _pem_key(ca_key), 0o600)
            _write(paths["ca.pem"], ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
            _write(paths["cluster-id"], cluster_id.encode() + b"\n", 0o644)
        cluster_id = paths["cluster-id"].read_text().strip()
        loaded = serialization.load_pem_private_key(paths["ca-key.pem"].read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise TypeError("the CA key is not an EC key")
        ca_pem = paths["ca.pem"].read_text()
        ca_cert = x509.load_pem_x509_certificate(ca_pem.encode())
        server_name = server_name_for(datacenter)
        if not _server_cert_usable(paths["server.pem"], server_name, moment):
            key, cert = _new_server_cert(loaded, ca_cert, server_name, moment)
            _write(paths["server-key.pem"], _pem_key(key), 0o600)
            _write(paths["server.pem"], cert.public_bytes(serialization.Encoding.PEM), 0o644)
        for key_file in ("ca-key.pem", "server-key.pem"):  # on every start: a restored copy may have lost the mode
            os.chmod(paths[key_file], 0o600)
        uuid.UUID(cluster_id)
    except (OSError, ValueError, TypeError) as exc:
        raise RuntimeError(f"cannot load the cluster identity from {data_dir}: {type(exc).__name__}") from exc
    return ClusterIdentity(
        cluster_id=cluster_id,
        datacenter=datacenter,
        server_name=server_name,
        ca_pem=ca_pem,
        ca_fingerprint=fingerprint(ca_pem),
        cert_path=paths["server.pem"],
        key_path=paths["server-key.pem"],
        _ca_key=loaded,
    )


def shared_parts(data_dir: Path) -> tuple[str, str, str]:
    """The cluster ID, CA certificate and CA key PEM of an identity `load_or_create` made in `data_dir`:
    what several replicas of one cluster share (through the database, SPEC §15)."""
    return (
        (data_dir / "cluster-id").read_text().strip(),
        (data_dir / "ca.pem").read_text(),
        (data_dir / "ca-key.pem").read_text(),
    )


def install_shared(data_dir: Path, cluster_id: str, ca_pem: str, ca_key_pem: str) -> bool:
    """Make `data_dir` hold this cluster ID and CA (the database's, on a replica); False if it already did.

    The server certificate is dropped when the CA changes, so the next `load_or_create` signs a new one
    with the shared CA (each replica keeps its own server key).
    """
    if shared_parts(data_dir) == (cluster_id, ca_pem, ca_key_pem):
        return False
    uuid.UUID(cluster_id)
    _write(data_dir / "ca-key.pem", ca_key_pem.encode(), 0o600)
    _write(data_dir / "ca.pem", ca_pem.encode(), 0o644)
    _write(data_dir / "cluster-id", cluster_id.encode() + b"\n", 0o644)
    (data_dir / "server.pem").unlink(missing_ok=True)
    return True
