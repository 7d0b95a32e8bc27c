"""The token codec: golden wire format, round trip, every documented error, and totality."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from peering import tokens
from peering.errors import InvalidTokenError
from peering.identity import ClusterIdentity, client_ssl_context, load_or_create

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_FIELDS = {
    "ServerAddresses": ["10.0.0.1:8503", "[2001:db8::1]:8503"],
    "ServerName": "server.dc1.consul",
    "PeerID": "462c45e8-018e-f19d-85eb-1fc1bcc2ef12",
    "EstablishmentSecret": "b5c3a0de-6d4f-4c9e-8f2a-2a0f3c6f7e21",
    "Remote": {"Datacenter": "dc1", "Partition": "default"},
}


@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> ClusterIdentity:
    return load_or_create(tmp_path_factory.mktemp("id"), "dc1")


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> ClusterIdentity:
    return load_or_create(tmp_path_factory.mktemp("other"), "dc2")


def make(ident: ClusterIdentity, **changes: object) -> str:
    token = tokens.PeeringToken(
        ca=(ident.ca_pem,),
        server_addresses=("127.0.0.1:8503",),
        server_name="server.dc1.consul",
        peer_id="p-1",
        establishment_secret="s3cr3t-value",
        remote=tokens.TokenRemote("dc1", "default"),
    )
    fields = {**token.__dict__, **changes}
    return tokens.encode(tokens.PeeringToken(**fields), ident.sign)


def rewrite(token: str, **changes: object) -> str:
    """Change JSON fields of a token without re-signing it."""
    fields = json.loads(base64.b64decode(token))
    fields.update(changes)
    return base64.b64encode(json.dumps(fields).encode()).decode()


def test_golden_token_pins_the_wire_format() -> None:
    golden = (GOLDEN / "token.txt").read_text().strip()
    ca = (GOLDEN / "ca.pem").read_text()
    raw = json.loads(base64.b64decode(golden))
    assert list(raw) == ["CA", "ServerAddresses", "ServerName", "PeerID", "EstablishmentSecret", "Remote", "Signature"]
    assert raw["CA"] == [ca]
    assert {k: raw[k] for k in GOLDEN_FIELDS} == GOLDEN_FIELDS
    decoded = tokens.decode(golden)
    assert decoded == tokens.PeeringToken(
        ca=(ca,),
        server_addresses=tuple(GOLDEN_FIELDS["ServerAddresses"]),
        server_name="server.dc1.consul",
        peer_id=GOLDEN_FIELDS["PeerID"],  # type: ignore[arg-type]
        establishment_secret=GOLDEN_FIELDS["EstablishmentSecret"],  # type: ignore[arg-type]
        remote=tokens.TokenRemote("dc1", "default"),
    )
    # encoding the same fields gives the same bytes, apart from the (randomised) ECDSA signature
    again = json.loads(base64.b64decode(tokens.encode(decoded, lambda payload: b"sig")))
    assert {k: v for k, v in again.items() if k != "Signature"} == {k: v for k, v in raw.items() if k != "Signature"}
    assert base64.b64decode(golden).startswith(b'{"CA":["-----BEGIN CERTIFICATE-----\\n')  # compact JSON


def test_round_trip_and_plain_readers(ident: ClusterIdentity) -> None:
    token = make(ident)
    plain = json.loads(base64.b64decode(token, validate=True))
    assert set(plain) == {"CA", "ServerAddresses", "ServerName", "PeerID", "EstablishmentSecret", "Remote", "Signature"}
    decoded = tokens.decode(token)
    assert decoded.peer_id == "p-1"
    assert decoded.establishment_secret == "s3cr3t-value"
    assert tokens.decode(token[:40] + "\r\n" + token[40:]) == decoded  # line breaks are skipped, like Go


def test_repr_hides_the_secret(ident: ClusterIdentity) -> None:
    assert "s3cr3t-value" not in repr(tokens.decode(make(ident)))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("+++/+++", "failed to decode token: illegal base64 data at input byte 4"),
        ("abc", "failed to decode token: illegal base64 data at input byte 0"),
        ("ab-_", "failed to decode token: illegal base64 data at input byte 2"),
        ("é", "failed to decode token: illegal base64 data at input byte 0"),
        ("", "failed to decode token: unexpected end of JSON input"),
        ("Cg==", "failed to decode token: unexpected end of JSON input"),
        (b64("{"), "failed to decode token: "),
        (b64("[]"), "failed to decode token: json: cannot unmarshal array into Go value of type PeeringToken"),
        (b64("null"), "failed to decode token: json: cannot unmarshal null into Go value of type PeeringToken"),
        (b64('"x"'), "failed to decode token: json: cannot unmarshal string into Go value of type PeeringToken"),
        (b64("[" * 100_000), "failed to decode token: "),
        (base64.b64encode(b"\xff\xfe").decode(), "failed to decode token: invalid UTF-8 in JSON input"),
        (b64("{}"), "peering token server addresses value is empty"),
        (
            b64('{"ServerName": 1}'),
            "failed to decode token: json: cannot unmarshal number into Go struct field PeeringToken.ServerName of type string",
        ),
        (
            b64('{"CA": "x"}'),
            "failed to decode token: json: cannot unmarshal string into Go struct field PeeringToken.CA of type []string",
        ),
        (
            b64('{"CA": [1]}'),
            "failed to decode token: json: cannot unmarshal number into Go struct field PeeringToken.CA of type string",
        ),
        (
            b64('{"Remote": []}'),
            "failed to decode token: json: cannot unmarshal array into Go struct field PeeringToken.Remote of type PeeringTokenRemote",
        ),
        (
            b64('{"Remote": {"Datacenter": true}}'),
            "failed to decode token: json: cannot unmarshal bool into Go struct field PeeringToken.Remote.Datacenter of type string",
        ),
        (b64('{"CA": ["junk"]}'), "peering token invalid CA: no PEM-encoded data found"),
        (
            b64('{"CA": ["-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n"]}'),
            "peering token invalid CA: malformed certificate",
        ),
        (b64('{"ServerAddresses": ["1.2.3.4"]}'), "1.2.3.4 is not a valid peering server address"),
        (b64('{"ServerAddresses": ["2001:db8::1"]}'), "2001:db8::1 is not a valid peering server address"),
        (b64('{"ServerAddresses": ["h:0"]}'), "h:0 is not a valid peering server address"),
        (b64('{"ServerAddresses": ["h:99999"]}'), "h:99999 is not a valid peering server address"),
        (b64('{"ServerAddresses": [":80"]}'), ":80 is not a valid peering server address"),
        (b64('{"ServerAddresses": ["h:1"]}'), "peering token server name value is empty"),
        (b64('{"ServerAddresses": ["h:1"], "ServerName": "s"}'), "peering token peer ID value is empty"),
        (
            b64('{"ServerAddresses": ["h:1"], "ServerName": "s", "PeerID": "p"}'),
            "peering token invalid CA: no CA certificate in token",
        ),
    ],
)
def test_documented_errors(raw: str, message: str) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        tokens.decode(raw)
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize(
    "change",
    [
        {"ServerAddresses": ["127.0.0.2:8503"]},
        {"PeerID": "p-2"},
        {"EstablishmentSecret": "guessed"},
        {"Remote": {"Datacenter": "dc9", "Partition": "default"}},
        {"Extra": "field"},
        {"Signature": "not base64!"},
        {"Signature": base64.b64encode(b"not DER").decode()},
        {"Signature": None},
    ],
)
def test_tampering_breaks_the_signature(ident: ClusterIdentity, change: dict[str, object]) -> None:
    with pytest.raises(InvalidTokenError, match=r"^peering token signature is invalid$"):
        tokens.decode(rewrite(make(ident), **change))


def test_a_signature_by_another_ca_is_invalid(ident: ClusterIdentity, other: ClusterIdentity) -> None:
    forged = tokens.encode(tokens.decode(make(ident)), other.sign)  # CA says ident, signature is other's
    with pytest.raises(InvalidTokenError, match="signature is invalid"):
        tokens.decode(forged)


def test_a_ca_that_is_not_p256_cannot_sign(ident: ClusterIdentity) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p384")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    token = tokens.encode(
        tokens.PeeringToken((pem,), ("h:1",), "s", "p", "x", tokens.TokenRemote("", "")),
        lambda payload: key.sign(payload, ec.ECDSA(hashes.SHA256())),
    )
    with pytest.raises(InvalidTokenError, match="signature is invalid"):
        tokens.decode(token)


def content(text: str) -> object:
    """What a token says, independently of how it is spelled: its JSON fields with the signature as bytes,
    or None if it does not decode. Base64 has slack bits before `=` padding, in the token and in its
    `Signature` alike: two spellings may say the very same thing (and then both verify)."""
    try:
        fields = json.loads(base64.b64decode(text, validate=True))
        fields["Signature"] = base64.b64decode(fields["Signature"], validate=True)
    except (ValueError, TypeError, KeyError):
        return None
    return fields


def test_decode_is_total_on_random_and_mutated_input(ident: ClusterIdentity) -> None:
    """Arbitrary text and single-character mutations of a valid token give a token or InvalidTokenError."""
    rng = random.Random(1234)
    valid = make(ident)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\x00é"
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 64))) for _ in range(1500)]
    for _ in range(1500):
        i = rng.randrange(len(valid))
        mutated = valid[:i] + rng.choice(alphabet) + valid[i + 1 :]
        # a "mutation" of slack bits (of the token or of its signature) spells the very same token
        if content(mutated) != content(valid):
            samples.append(mutated)
    raw = json.loads(base64.b64decode(valid))
    for key in raw:
        for value in (None, 0, 1.5, True, "", [], {}, ["x"], [None], {"a": 1}):
            samples.append(rewrite(valid, **{key: value}))
    accepted = 0
    for sample in samples:
        try:
            tokens.decode(sample)
            accepted += 1
        except InvalidTokenError:
            pass
    assert accepted == 0


def resigned(ident: ClusterIdentity, **changes: object) -> str:
    """A token whose JSON fields are changed and then signed again by `ident` (so that only the change is
    wrong): values no encoder of ours would write, as an attacker with a CA of its own writes them. A
    changed `Signature` is kept as given."""
    fields = json.loads(base64.b64decode(make(ident)))
    fields.update(changes)
    if "Signature" not in changes:
        fields["Signature"] = base64.b64encode(ident.sign(tokens.signed_payload(fields))).decode()
    return base64.b64encode(json.dumps(fields).encode()).decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ServerAddresses": ["h:" + "9" * 5000]}, "h:99999"),  # the address, cut short, is "not a valid …"
        ({"ServerAddresses": ["\ud800:1"]}, "failed to decode token: "),
        ({"ServerAddresses": ["h:1"] * 65}, "failed to decode token: PeeringToken.ServerAddresses has more than 64"),
        ({"ServerAddresses": ["h" * 300 + ":1"]}, "h" * 256 + "... is not a valid peering server address"),
        ({"ServerName": "\udc00"}, "failed to decode token: "),
        ({"ServerName": "s" * 254}, "failed to decode token: PeeringToken.ServerName is over 253 characters"),
        ({"ServerName": "server dc1"}, "failed to decode token: PeeringToken.ServerName is not valid"),
        ({"PeerID": "p\ud800"}, "failed to decode token: "),
        ({"PeerID": "p" * 65}, "failed to decode token: PeeringToken.PeerID is over 64 characters"),
        ({"PeerID": "p-1\n"}, "failed to decode token: PeeringToken.PeerID is not valid"),
        ({"EstablishmentSecret": "s\udfff"}, "failed to decode token: "),
        ({"EstablishmentSecret": "s" * 129}, "failed to decode token: PeeringToken.EstablishmentSecret is over 128"),
        ({"EstablishmentSecret": "s e"}, "failed to decode token: PeeringToken.EstablishmentSecret is not valid"),
        ({"Remote": {"Datacenter": "dc\ud800", "Partition": "default"}}, "failed to decode token: "),
        ({"Remote": {"Datacenter": "d" * 65}}, "failed to decode token: PeeringToken.Remote.Datacenter is over 64"),
        ({"Remote": {"Datacenter": "dc1\r\n"}}, "failed to decode token: PeeringToken.Remote.Datacenter is not valid"),
        ({"Remote": {"Partition": "Default"}}, "failed to decode token: PeeringToken.Remote.Partition is not valid"),
        ({"Remote": {"Partition": "\u212a"}}, "failed to decode token: PeeringToken.Remote.Partition is not valid"),
        ({"Signature": "A" * 300}, "failed to decode token: PeeringToken.Signature is over 256 characters"),
        ({"CA": ["x" * 16385]}, "failed to decode token: PeeringToken.CA has an entry over 16384 characters"),
        ({"CA": ["-----BEGIN\ud800"]}, "failed to decode token: "),
        ({"Extra": [[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]}, "failed to decode token: exceeded max depth"),
    ],
)
def test_hostile_fields_are_refused_before_anything_uses_them(
    ident: ClusterIdentity, changes: dict[str, object], message: str
) -> None:
    """Lone surrogates, 5,000-digit ports, oversized and malformed values in a correctly signed token are
    documented 400s (SPEC §4), found before the token is dialed, stored or logged."""
    with pytest.raises(InvalidTokenError) as caught:
        tokens.decode(resigned(ident, **changes))
    assert caught.value.message.startswith(message)
    assert len(caught.value.message) < 400


def test_ca_entries_that_openssl_would_refuse_or_read_twice(ident: ClusterIdentity, other: ClusterIdentity) -> None:
    """A CA entry missing its final newline is one certificate (loaded by its DER, never concatenated with
    the next); two certificates in one entry, a non-ASCII one, or a body that does not parse are
    `peering token invalid CA: …`, never an `ssl.SSLError`. TLS then trusts exactly `CA[0]`."""
    no_newline = ident.ca_pem.rstrip("\n")
    token = tokens.decode(resigned(ident, CA=[no_newline, other.ca_pem.rstrip("\n")]))
    assert token.ca[0] == no_newline
    context = client_ssl_context(token.ca[:1])
    assert len(context.get_ca_certs()) == 1
    for entry, reason in (
        (ident.ca_pem + other.ca_pem, "an entry must hold exactly one PEM certificate"),
        (ident.ca_pem.replace("-----END", "é-----END"), "an entry must hold exactly one PEM certificate"),
        (ident.ca_pem[:40] + "!!!!" + ident.ca_pem[44:], "malformed certificate"),
        ("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "malformed certificate"),
    ):
        with pytest.raises(InvalidTokenError) as caught:
            tokens.decode(resigned(ident, CA=[ident.ca_pem, entry]))
        assert caught.value.message == f"peering token invalid CA: {reason}"
    with pytest.raises(ValueError, match="exactly one PEM certificate"):
        client_ssl_context([ident.ca_pem + other.ca_pem])


def test_an_oversized_token_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(InvalidTokenError, match=r"^failed to decode token: the token is over 262144 characters$"):
        tokens.decode("A" * (tokens.MAX_TOKEN_CHARS + 4))
