"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from scapy.config import conf
import scapy.layers.l2  # noqa: F401 — sets conf.neighbor, which the fixtures below replace


@pytest.fixture
def no_neighbour_resolution(monkeypatch):
    """An Ether() without dst makes scapy ARP/NDP for the route's gateway on the host network: forbid it."""

    def refuse(*_):
        raise AssertionError("scapy tried to resolve a MAC address: give every Ether() a src and dst")

    monkeypatch.setattr(conf.neighbor, "resolve", refuse)


@pytest.fixture(autouse=True)
def no_host_network(monkeypatch):
    """Every unit test: scapy never resolves a MAC address on the host's network (network safety rule:
    no traffic outside a lab's namespace). An Ether() without dst gets broadcast instead of an ARP
    or NDP for the route's gateway from the root namespace; tests that pin every MAC use the
    stricter no_neighbour_resolution, which fails the test instead."""
    monkeypatch.setattr(conf.neighbor, "resolve", lambda *_: None)
