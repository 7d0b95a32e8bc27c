"""Property-based tests of the token decoder (hypothesis): only documented errors, on any input."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peering import tokens
from peering.errors import InvalidTokenError
from peering.identity import ClusterIdentity, load_or_create
from tests.test_token_codec import content, resigned

DOCUMENTED = (
    "failed to decode token: ",
    "peering token invalid CA: ",
    "peering token server addresses value is empty",
    " is not a valid peering server address",
    "peering token server name value is empty",
    "peering token peer ID value is empty",
    "peering token signature is invalid",
)
FAST = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> ClusterIdentity:
    return load_or_create(tmp_path_factory.mktemp("props"), "dc1")


@pytest.fixture(scope="module")
def valid(ident: ClusterIdentity) -> str:
    token = tokens.PeeringToken(
        ca=(ident.ca_pem,),
        server_addresses=("127.0.0.1:8503", "[::1]:8503"),
        server_name="server.dc1.consul",
        peer_id="4e2b0c7a-0000-4000-8000-000000000001",
        establishment_secret="4e2b0c7a-0000-4000-8000-000000000002",
        remote=tokens.TokenRemote("dc1", "default"),
    )
    return tokens.encode(token, ident.sign)


def _outcome(raw: str) -> tokens.PeeringToken | str:
    """The decoded token, or the message of the documented error (any other exception fails the test)."""
    try:
        return tokens.decode(raw)
    except InvalidTokenError as exc:
        message = str(exc)
        assert any(part in message for part in DOCUMENTED), message
        assert len(message) < 2000
        return message


@FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_documented_error(data: bytes) -> None:
    """Any byte string, as text or as base64 of itself, is refused with one of SPEC §4's messages."""
    for raw in (data.decode("utf-8", errors="surrogateescape"), base64.b64encode(data).decode()):
        assert isinstance(_outcome(raw), str)


@FAST
@given(st.text(max_size=256))
def test_arbitrary_text_gives_a_documented_error(text: str) -> None:
    """Any text (including lone surrogates and control characters) is refused with a documented message."""
    assert isinstance(_outcome(text), str)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_tokens_never_verify_and_fail_cleanly(valid: str, data: st.DataObject) -> None:
    """Changing, removing or adding any field of a valid token gives a documented error, never a token."""
    fields: dict[str, Any] = json.loads(base64.b64decode(valid))
    key = data.draw(st.sampled_from([*fields, "Extra"]), label="field")
    action = data.draw(st.sampled_from(["replace", "remove"]), label="action")
    if action == "remove" and key in fields:
        del fields[key]
    else:
        replacement = data.draw(JSON_VALUES, label="value")
        if fields.get(key) == replacement:
            return
        fields[key] = replacement
    raw = base64.b64encode(json.dumps(fields).encode()).decode()
    outcome = _outcome(raw)
    if key == "Extra" and action == "replace":
        # a field nobody signed is outside the signature: the rest still verifies (Consul ignores it too)
        assert isinstance(outcome, tokens.PeeringToken | str)
    else:
        assert isinstance(outcome, str), f"a changed {key} still verified"


@FAST
@given(position=st.integers(min_value=0), char=st.characters())
def test_single_character_edits_fail_cleanly(valid: str, position: int, char: str) -> None:
    """Replacing one character of the encoded token never crashes the decoder."""
    i = position % len(valid)
    mutated = valid[:i] + char + valid[i + 1 :]
    outcome = _outcome(mutated)
    if isinstance(outcome, tokens.PeeringToken):
        # base64 has slack bits before its padding (in the token and in its Signature): only an edit of
        # those, which says the very same thing, may still verify
        assert content(mutated) == content(valid)


_DEEP: object = "bottom"
for _ in range(900):  # deeper than any token, shallower than the test's own JSON encoder can write
    _DEEP = [_DEEP]

HOSTILE_TEXT = st.sampled_from(
    ["\ud800", "a\udfffb", "9" * 5000, "h:" + "9" * 5000, "[::1]:" + "9" * 5000, "x" * 20000, "\r\n", "\x1b[0m", ""]
) | st.text(max_size=64)
HOSTILE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats() | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HOSTILE_TEXT, inner, max_size=3),
    max_leaves=10,
)
FIELDS = ("CA", "ServerAddresses", "ServerName", "PeerID", "EstablishmentSecret", "Remote", "Signature", "Extra")


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from([*FIELDS, "Remote.Datacenter", "Remote.Partition"]),
    value=HOSTILE_JSON | st.lists(HOSTILE_TEXT, min_size=1, max_size=3) | st.just(_DEEP),
)
def test_hostile_values_in_a_resigned_token_give_a_documented_error(
    ident: ClusterIdentity, field: str, value: object
) -> None:
    """Surrogates, 5,000-digit strings, huge numbers, oversized strings and deep nesting in any field of a
    token signed again by its CA (so the signature does not hide what the decoder does with them): a token
    or one of SPEC §4's messages, never another exception."""
    if field.startswith("Remote."):
        changes: dict[str, object] = {"Remote": {"Datacenter": "dc1", "Partition": "default", field[7:]: value}}
    else:
        changes = {field: value}
    _outcome(resigned(ident, **changes))
