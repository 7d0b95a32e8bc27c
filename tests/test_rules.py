"""Input rules: names, partitions, meta and server addresses."""

from __future__ import annotations

import pytest

from peering.errors import InvalidRequestError
from peering.rules import check_meta, check_peer_name, check_server_address, normalize_partition


@pytest.mark.parametrize("name", ["a", "0", "cluster-02", "a" * 63, "9-z", "a--b"])
def test_valid_peer_names(name: str) -> None:
    assert check_peer_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a_b", "a.b", "a" * 64, "é", "a b", "a\n"])
def test_invalid_peer_names(name: str) -> None:
    with pytest.raises(InvalidRequestError, match="is not a valid peer name"):
        check_peer_name(name)


def test_long_input_is_not_echoed_whole() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_peer_name("X" * 100_000)
    assert len(caught.value.message) < 500


@pytest.mark.parametrize(("given", "expected"), [(None, "default"), ("", "default"), ("Team-A", "team-a")])
def test_partitions_normalise(given: str | None, expected: str) -> None:
    assert normalize_partition(given) == expected


@pytest.mark.parametrize("given", ["a_b", "-a", "a" * 64, " "])
def test_invalid_partitions(given: str) -> None:
    with pytest.raises(InvalidRequestError, match="is not a valid partition name"):
        normalize_partition(given)


def test_meta_rules() -> None:
    assert check_meta(None) == {}
    assert check_meta({"k": "v", "A_b-1": "x" * 512}) == {"k": "v", "A_b-1": "x" * 512}
    with pytest.raises(InvalidRequestError, match="more than 64"):
        check_meta({str(i): "" for i in range(65)})


@pytest.mark.parametrize(
    "address", ["1.2.3.4:8503", "localhost:1", "my.lb.example:65535", "[::1]:8503", "[2001:db8::1]:443", "host_x:9"]
)
def test_valid_server_addresses(address: str) -> None:
    assert check_server_address(address) == address


@pytest.mark.parametrize(
    "address",
    ["1.2.3.4", "2001:db8::1", "2001:db8::1:80", "h:0", "h:65536", ":80", "h:", "h:8a", "[nothex]:80", "a b:80", "h:٣"],
)
def test_invalid_server_addresses(address: str) -> None:
    with pytest.raises(InvalidRequestError, match="is not a valid peering server address"):
        check_server_address(address)
