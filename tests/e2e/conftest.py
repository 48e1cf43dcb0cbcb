"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import pytest
from labtools import lab_name_for, leftovers, module_lab_name_for, vnetlab

from vnetlab.run.lab import COLD_ENV, cold_by_environment


def pytest_collection_modifyitems(config, items):
    """With $VNETLAB_COLD set (`make test-cold`) every lab boots its guests: the tests about restored
    guests (marker `warm`) cannot hold and are skipped, saying why; every other test runs cold."""
    if not cold_by_environment():
        return
    skip = pytest.mark.skip(reason=f"{COLD_ENV} is set: every guest boots, and this test is about guests restored from warm images")
    for item in items:
        if item.get_closest_marker("warm") is not None:
            item.add_marker(skip)


@pytest.fixture
def lab_name(request):
    """A lab name for this test (prefix: the module's LAB_PREFIX); brought down after it, and nothing may be left."""
    name = lab_name_for(request, getattr(request.module, "LAB_PREFIX", "t-"))
    yield name
    vnetlab("down", name)
    assert leftovers(name) == []


@pytest.fixture(scope="module")
def module_lab_name(request):
    """A lab name for a lab the module's tests share (prefix: the module's LAB_PREFIX); brought down
    after the module, and nothing may be left."""
    name = module_lab_name_for(request, getattr(request.module, "LAB_PREFIX", "t-"))
    yield name
    vnetlab("down", name)
    assert leftovers(name) == []
