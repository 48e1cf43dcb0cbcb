"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import pytest
from labtools import lab_name_for, leftovers, module_lab_name_for, vnetlab


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
