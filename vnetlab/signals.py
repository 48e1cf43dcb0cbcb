"""Signals held off while something must finish (teardown, putting back what the checks' actions changed)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def shielded() -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored until the block is done: a second Ctrl-C must not leave a
    half-removed lab, nor a link down that an undo was putting back. Off the main thread (a server
    driving labs from worker threads) signals are the main thread's: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
