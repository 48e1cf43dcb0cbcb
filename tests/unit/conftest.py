"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from scapy.config import conf


@pytest.fixture
def no_neighbour_resolution(monkeypatch):
    """An Ether() without dst makes scapy ARP/NDP for the route's gateway on the host network: forbid it."""

    def refuse(*_):
        raise AssertionError("scapy tried to resolve a MAC address: give every Ether() a src and dst")

    monkeypatch.setattr(conf.neighbor, "resolve", refuse)
