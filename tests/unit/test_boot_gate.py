"""The boot step's gate: once an interrupt closes it, no guest begins booting, and closing waits
for the ones that had begun — even a worker thread the pool itself lost track of (an interrupt
landing inside Thread.start()), whose tap would otherwise appear after teardown read the state."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from types import SimpleNamespace

import pytest

from vnetlab.run import apply
from vnetlab.run.apply import BootGate


def test_closing_waits_for_a_worker_that_began_and_refuses_any_later_one():
    gate = BootGate()
    began, release, finished = threading.Event(), threading.Event(), threading.Event()

    def worker() -> None:
        assert gate.enter()
        began.set()
        release.wait(5)
        finished.set()
        gate.leave()

    t = threading.Thread(target=worker)
    t.start()
    began.wait(5)
    closer = threading.Thread(target=gate.close_and_wait)
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive() and not finished.is_set()  # still waiting for the worker
    release.set()
    closer.join(5)
    assert not closer.is_alive() and finished.is_set()
    assert gate.enter() is False  # a worker that begins after the close does nothing
    t.join(5)


def test_closing_an_idle_gate_returns_at_once():
    gate = BootGate()
    assert gate.enter()
    gate.leave()
    start = time.monotonic()
    gate.close_and_wait()
    assert time.monotonic() - start < 0.5 and gate.enter() is False


class _Progress:
    """Enough of run/progress.Progress for start_guests: its step, stages and details."""

    @contextlib.contextmanager
    def step(self, name: str, label: str):
        yield

    def vm_stage(self, vm: str, stage: str) -> None:
        pass

    def detail(self, text: str) -> None:
        pass


class _LosesItsThread(concurrent.futures.ThreadPoolExecutor):
    """A pool whose first submit is interrupted after its thread began but before the pool tracks
    it: the thread runs on, and the pool's shutdown does not wait for it."""

    def submit(self, fn, /, *args, **kwargs):
        threading.Thread(target=fn, args=args, kwargs=kwargs).start()
        raise KeyboardInterrupt


def test_an_interrupt_inside_a_submit_still_closes_the_gate(monkeypatch):
    """When start_guests raises, no guest may still be creating resources: teardown reads the
    state next, and a tap made after that read is left behind (seen once in make test's
    SIGINT-at-the-network-step case)."""
    booting, booted = [], []

    def slow_boot(plan, state, conn, vm, before_resume=None, starter=None) -> None:
        booting.append(vm.name)
        time.sleep(0.3)  # creating its taps and domain
        booted.append(vm.name)

    monkeypatch.setattr(apply, "boot_vm", slow_boot)
    monkeypatch.setattr(apply, "preload", lambda: None)
    monkeypatch.setattr(apply.concurrent.futures, "ThreadPoolExecutor", _LosesItsThread)
    vm = SimpleNamespace(name="vm1", uri=None, domain="vnl-t-vm1", all_nics=(), host=None)
    plan = SimpleNamespace(vms=(vm,), domain_type="qemu", namespace="vnl-t")
    connections = SimpleNamespace(get=lambda uri=None: None)
    with pytest.raises(KeyboardInterrupt):
        apply.start_guests(plan, None, connections, _Progress())
    finished_then = list(booted)
    time.sleep(0.6)
    assert booted == finished_then and booting == booted  # nothing began or went on after the raise
