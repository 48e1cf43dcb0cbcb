"""Which checks run at once: consecutive pings from different sources with no timing bounds."""

from __future__ import annotations

from types import SimpleNamespace

from vnetlab.checks.runner import check_batches


def _ping(source: str, **bounds: int) -> SimpleNamespace:
    spec = SimpleNamespace(source=source, **{"loss_max": None, "rtt_min_ms": None, "rtt_max_ms": None, **bounds})
    return SimpleNamespace(kind="ping", spec=spec)


def _other(kind: str) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, spec=SimpleNamespace(source="vm1"))


def test_pings_from_different_sources_run_together():
    assert check_batches([_ping("vm1"), _ping("vm2"), _other("capture")]) == [[0, 1]]


def test_a_second_ping_from_the_same_source_waits():
    assert check_batches([_ping("vm1"), _ping("vm1"), _ping("vm2")]) == [[0], [1, 2]]


def test_pings_with_timing_bounds_and_other_checks_run_alone_in_order():
    checks = [_ping("vm1"), _ping("vm2", rtt_max_ms=50), _ping("vm3"), _other("command"), _ping("vm4"), _ping("vm1", loss_max=10)]
    assert check_batches(checks) == [[0], [1], [2], [3], [4], [5]]


def test_a_check_between_pings_splits_them():
    assert check_batches([_ping("vm1"), _other("command"), _ping("vm2"), _ping("vm3")]) == [[0], [1], [2, 3]]
