"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import pytest
from labtools import lab_name_for, leftovers, vnetlab


@pytest.fixture
def lab_name(request):
    """A lab name for this test (prefix: the module's LAB_PREFIX); brought down after it, and nothing may be left."""
    name = lab_name_for(request, getattr(request.module, "LAB_PREFIX", "t-"))
    yield name
    vnetlab("down", name)
    assert leftovers(name) == []
