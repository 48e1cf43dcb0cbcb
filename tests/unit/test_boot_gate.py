"""The boot step's gate: once an interrupt closes it, no guest begins booting, and closing waits
for the ones that had begun — even a worker thread the pool itself lost track of (an interrupt
landing inside Thread.start()), whose tap would otherwise appear after teardown read the state."""

from __future__ import annotations

import threading
import time

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
