"""Stopping a capture without letting a stop that never ends hang the test run (shared by the
unit and root capture tests; imported after putting tests/ on sys.path, like goldens)."""

from __future__ import annotations

import threading
import time

from vnetlab.checks.capture import Capture


def stop_within(capture: Capture, seconds: float) -> tuple[object, float]:
    """Call capture.stop() in a helper thread; fail (instead of hanging) if it takes longer than `seconds`."""
    out: dict[str, object] = {}

    def stop() -> None:
        start = time.monotonic()
        try:
            out["frames"] = capture.stop()
        except BaseException as exc:  # reported below
            out["error"] = exc
        out["elapsed"] = time.monotonic() - start

    helper = threading.Thread(target=stop, daemon=True)
    helper.start()
    helper.join(seconds)
    assert not helper.is_alive(), f"stop() still running after {seconds} s of a flood"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["frames"], out["elapsed"]  # type: ignore[return-value]
