"""Before teardown the guests power themselves off; best effort, never trusted."""

from __future__ import annotations

from types import SimpleNamespace

from vnetlab.backends.ssh import SSHError
from vnetlab.run import configure


class _Session:
    def __init__(self, fails: bool = False):
        self.started: list[str] = []
        self.fails = fails

    def start(self, command: str, *, timeout: float) -> None:
        if self.fails:
            raise SSHError("the guest's root stopped its sshd")
        self.started.append(command)


def _plan(*names: str, remote: str | None = None):
    return SimpleNamespace(vms=[SimpleNamespace(name=n, domain=f"vnl-lab-{n}", host=remote if n == "vm3" else None) for n in names])


def test_each_guest_is_asked_and_the_local_ones_are_waited_for_until_their_qemu_is_gone(monkeypatch):
    alive = {"vnl-lab-vm1": 3, "vnl-lab-vm2": 1}  # polls until libvirt counts each domain as off

    def running(vm) -> bool:
        assert vm.host is None  # a remote guest is not waited for
        if alive[vm.domain] > 0:
            alive[vm.domain] -= 1
            return True
        return False

    sessions = {"vm1": _Session(), "vm2": _Session(), "vm3": _Session()}
    configure.power_off(_plan("vm1", "vm2", "vm3", remote="hv2"), sessions, running)
    assert all(s.started == [configure.POWER_OFF] for s in sessions.values())
    assert alive == {"vnl-lab-vm1": 0, "vnl-lab-vm2": 0}


def test_a_guest_that_refuses_is_not_waited_for(monkeypatch):
    polled: list[str] = []
    configure.power_off(_plan("vm1"), {"vm1": _Session(fails=True)}, lambda vm: polled.append(vm.name) or True)
    assert polled == []  # teardown destroys it as before


def test_a_qemu_that_stays_is_left_to_teardown_after_the_bound(monkeypatch):
    monkeypatch.setattr(configure, "POWER_OFF_WAIT", 0.05)
    configure.power_off(_plan("vm1"), {"vm1": _Session()}, lambda vm: True)  # returns after the bound; teardown destroys it
