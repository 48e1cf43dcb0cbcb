"""Test namespaces for the root tests: unique names, removed with anything left running inside."""

from __future__ import annotations

import os
import secrets
import signal
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest

from vnetlab.backends import netns


def remove_namespace(ns: str) -> None:
    """Every process in a test namespace was started by the tests: end them by PID, then delete it."""
    if netns.namespace_exists(ns):
        for pid in netns.processes_in(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    netns.delete_namespace(ns)


@contextmanager
def namespace_factory() -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        name = f"vnltest-{secrets.token_hex(4)}"
        netns.create_namespace(name)
        created.append(name)
        return name

    try:
        yield make
    finally:
        for name in created:
            remove_namespace(name)
    assert not set(created) & set(netns.list_namespaces())


@pytest.fixture
def make_ns():
    with namespace_factory() as make:
        yield make


@pytest.fixture(scope="module")
def namespaces():
    with namespace_factory() as make:
        yield make
