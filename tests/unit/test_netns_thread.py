"""A signal while a namespace helper thread runs: the helper finishes before the interruption goes on.

Otherwise the helper (a netlink call) would run on beside the teardown the interruption starts,
or die half-way when the interpreter exits and print a traceback (seen once in the e2e signal tests).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from vnetlab.backends import netns


class Interrupted(Exception):
    pass


def test_an_interruption_waits_for_the_helper_thread_to_finish() -> None:
    finished = threading.Event()

    def slow_netlink_call() -> str:
        time.sleep(0.5)
        finished.set()
        return "done"

    def on_signal(_signum, _frame):
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, on_signal)
    try:
        threading.Timer(0.1, os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
        with pytest.raises(Interrupted):
            netns._in_thread(slow_netlink_call)
        assert finished.is_set()
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_results_and_errors_come_back_to_the_caller() -> None:
    assert netns._in_thread(lambda: 42) == 42

    def fails():
        raise ValueError("no such device")

    with pytest.raises(ValueError, match="no such device"):
        netns._in_thread(fails)
