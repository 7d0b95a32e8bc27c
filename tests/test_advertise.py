"""The address put into tokens when `--advertise-addr` is not set."""

from __future__ import annotations

import pytest

from peering.server import _reachable


@pytest.mark.parametrize("bound", ["127.0.0.1:8503", "10.1.2.3:9", "[::1]:8503", "peer.example:8503"])
def test_a_specific_bound_address_is_advertised_as_is(bound: str) -> None:
    """A peer can dial a specific address, so it goes into tokens unchanged."""
    assert _reachable(bound) == bound


@pytest.mark.parametrize("bound", ["0.0.0.0:8503", "[::]:8503"])
def test_a_wildcard_is_replaced_by_a_dialable_address(bound: str, caplog: pytest.LogCaptureFixture) -> None:
    """`0.0.0.0` and `::` mean every interface, not an address: this host's outward one is advertised, with a warning."""
    advertised = _reachable(bound)
    assert advertised.endswith(":8503")
    assert not advertised.startswith(("0.0.0.0:", "[::]:"))
    assert "set --advertise-addr" in caplog.text
