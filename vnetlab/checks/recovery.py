"""How long a path was down, from a ping that ran through the outage (`measure: recovery`).

The ping sends at a fixed interval whether or not replies come, so the sequence numbers it got
no reply for are the outage. Its longest run of losses is the one measured: the time from the
last reply before it to the first reply after it (from the replies' own timestamps when the ping
printed them — iputils' -D — else from the sequence numbers and the interval). A ping that lost
no reply measured nothing, and one whose replies never came back did not recover: both fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Outage:
    """The longest run of echo requests without a reply."""

    lost: int  # requests in the run
    first_lost: int  # the run's first sequence number
    last_reply: int | None  # the reply before the run; None: the ping started inside the outage
    resumed: int | None  # the first reply after it; None: replies never came back
    seconds: float | None  # last reply before (or the first request) → first reply after; None when never resumed
    timed: bool  # seconds from the replies' timestamps (else sequence numbers × interval)


def first_sequence(text: str) -> int:
    """iputils numbers its requests from 1 (icmp_seq=), busybox from 0 (seq=)."""
    return 1 if "icmp_seq=" in text else 0


def longest_outage(replies: Sequence[tuple[int, float | None]], sent: int, interval: float, first: int) -> Outage | None:
    """The longest run of requests `first` … `first + sent - 1` without a reply; None when none was lost."""
    last = first + sent - 1
    times = {seq: t for seq, t in replies if first <= seq <= last}
    got = sorted(times)
    points: list[int | None] = [None, *got, None]  # None at either end: the ping's start, its end
    best: Outage | None = None
    for before, after in zip(points, points[1:]):
        start = first if before is None else before + 1
        stop = last if after is None else after - 1
        lost = stop - start + 1
        if lost <= 0 or (best is not None and lost <= best.lost):
            continue
        if after is None:
            seconds, timed = None, False
        elif before is not None and times[before] is not None and times[after] is not None and times[after] >= times[before]:  # type: ignore[operator]
            seconds, timed = times[after] - times[before], True  # type: ignore[operator]
        else:
            seconds, timed = (after - (first if before is None else before)) * interval, False
        best = Outage(lost, start, before, after, None if seconds is None else round(seconds, 3), timed)
    return best


def describe(outage: Outage, sent: int, interval: float) -> str:
    """What the ping saw of the outage, in words."""
    how = "by the replies' timestamps" if outage.timed else f"by sequence numbers, {interval:g} s apart"
    before = f"after seq {outage.last_reply}" if outage.last_reply is not None else "from the start"
    if outage.resumed is None:
        return f"replies stopped {before} and never came back ({outage.lost} of {sent} requests lost until the end, {outage.lost * interval:g} s)"
    return f"replies stopped {before} and came back at seq {outage.resumed}: {outage.seconds:g} s without a reply ({outage.lost} of {sent} requests lost; {how})"
