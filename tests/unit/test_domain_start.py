"""Starting a domain: a start the kernel refused for the moment (EAGAIN) is tried again; any
other failure, or one that stays, is raised as it was."""

from __future__ import annotations

import libvirt
import pytest

from vnetlab.backends import libvirt_domains as hv

BPF_EAGAIN = "failed to load cgroup BPF prog: Resource temporarily unavailable"  # libvirt 9.0's words, seen in make test


def _error(message: str) -> libvirt.libvirtError:
    error = libvirt.libvirtError(message)
    error.err = (libvirt.VIR_ERR_INTERNAL_ERROR, 0, message, 2, None, None, None, 0, 0)
    return error


class _Domain:
    def __init__(self, *failures: str):
        self.failures = list(failures)
        self.starts: list[int] = []

    def name(self) -> str:
        return "vnl-lab-vm1"

    def createWithFlags(self, flags: int) -> int:
        self.starts.append(flags)
        if self.failures:
            raise _error(self.failures.pop(0))
        return 0


def test_a_start_refused_for_the_moment_is_tried_again():
    dom = _Domain(BPF_EAGAIN)
    hv.start_paused(dom, pause=0)  # type: ignore[arg-type]
    assert dom.starts == [libvirt.VIR_DOMAIN_START_PAUSED] * 2


def test_any_other_failure_is_raised_at_once():
    dom = _Domain("unsupported configuration: the guest's CPU is not usable")
    with pytest.raises(hv.HypervisorError, match="starting vnl-lab-vm1: unsupported configuration"):
        hv.start_paused(dom, pause=0)  # type: ignore[arg-type]
    assert len(dom.starts) == 1


def test_a_refusal_that_stays_is_raised_after_the_last_attempt():
    dom = _Domain(*[BPF_EAGAIN] * hv.START_ATTEMPTS)
    with pytest.raises(hv.HypervisorError, match="Resource temporarily unavailable"):
        hv.start_paused(dom, pause=0)  # type: ignore[arg-type]
    assert len(dom.starts) == hv.START_ATTEMPTS
