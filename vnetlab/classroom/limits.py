"""What one student can make the server do, bounded: a student is root in their guests and may
type, paste or click anything, and must not starve the other seats.

Measured by the tests (tests/e2e/test_classroom.py): a 100 MB paste into one terminal and 20
Check presses at once on one seat leave the other seat's Check answering.
"""

from __future__ import annotations

import threading
import time

MAX_BODY = 16 * 1024  # bytes of a request body (JSON: a task name, an answer)
MAX_ANSWER = 2000  # characters of an answer
MAX_TOKEN = 128  # characters of a bearer token looked at
WS_MAX_FRAME = 64 * 1024  # bytes of one WebSocket message (uvicorn closes the connection above it: 1009)
WS_QUEUE = 8  # WebSocket messages the server buffers per connection before it stops reading the socket
TERMINAL_IN_RATE = 32 * 1024  # bytes a second from the browser into a guest's terminal (typing is ~10)
TERMINAL_OUT_RATE = 256 * 1024  # bytes a second from a guest's terminal to the browser (`yes` is throttled)
TERMINAL_CHUNK = 16 * 1024
IDLE_TIMEOUT = 30 * 60.0  # seconds a terminal stays open without a key pressed (`classroom start --idle-timeout`)
MAX_TERMINALS = 200  # terminals open at once on the server
CHECKS_AT_ONCE = 2  # Check runs at the same time, class-wide (each runs captures and SSH; 2 cores)
LONG_POLL = 25.0  # seconds a page's "anything new?" request waits before it is answered unchanged
MAX_CONNECTIONS = 400  # HTTP connections and WebSockets the server holds at once (uvicorn's limit_concurrency)


class TokenBucket:
    """`rate` bytes a second, bursts up to `burst`; take() sleeps the caller until its bytes are due.
    Thread-safe: a terminal's pump threads share one."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._level = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def delay(self, amount: int) -> float:
        """Seconds the caller must wait before `amount` bytes go (0: now); the bytes are counted."""
        with self._lock:
            now = time.monotonic()
            self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
            self._stamp = now
            self._level -= amount
            return 0.0 if self._level >= 0 else -self._level / self.rate
