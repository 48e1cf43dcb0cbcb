"""A real capture on a veth in a test namespace, while a sender floods the link (root, no VMs).

The flood goes out of a raw AF_PACKET socket opened inside the sending
namespace, on one end of a veth pair whose other end is captured; both
namespaces are made by these tests and removed afterwards (see conftest.py),
and the frames carry an experimental ethertype nobody's stack answers. The
sender keeps flooding while stop() runs: stop() must return by its own bound.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
from scapy.utils import PcapReader

from vnetlab.backends import linux_bridge as lb
from vnetlab.backends import netns
from vnetlab.checks.capture import Capture
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: shared helpers
from capture_stop import stop_within  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

FLOOD_TYPE = 0x88B5  # IEEE local experimental ethertype
SENDER_MAC = b"\x02\x00\x5e\x10\x0f\x01"
STOP_BOUND = 2.0  # seconds; stop() waits _SETTLE (0.05 s) and drains for at most 0.5 s


# The flooder runs in its own process: a sender thread in this process shares the GIL with
# the capture's reader and cannot outpace it. It writes to an AF_PACKET socket this process
# opened inside the sending namespace (its descriptor is passed down), publishes how many
# frames it sent in a shared 8-byte file, says "busy" once it has sent 20480, and ends by
# itself after 60 s or when its parent goes away, should the test be unable to end it.
FLOODER = r"""
import mmap, os, socket, struct, sys, time
head, sock_fd, counter_fd = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sock = socket.socket(fileno=sock_fd)
counter = mmap.mmap(counter_fd, 8)
parent, deadline, sent, attempts, busy = os.getppid(), time.monotonic() + 60, 0, 0, False
while True:
    attempts += 1
    try:
        sock.send(head + struct.pack("!Q", sent) + bytes(38))
        sent += 1
    except OSError:  # ENOBUFS: the queue is full; a flood just goes on
        pass
    if attempts % 1024 == 0:
        struct.pack_into("Q", counter, 0, sent)
        if not busy and sent >= 20480:
            print("busy", flush=True)
            busy = True
        if time.monotonic() > deadline or os.getppid() != parent:
            break
"""


class Flood:
    """Floods numbered frames out of `iface` in namespace `ns` from a child process, until the block ends."""

    def __init__(self, ns: str, iface: str, workdir: Path) -> None:
        self.sock = netns.run_in_namespace(ns, socket.socket, socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: sends, receives nothing
        self.sock.bind((iface, 0))
        self._counter_path = workdir / "flood-counter"
        self._counter_path.write_bytes(bytes(8))
        self._proc: subprocess.Popen | None = None

    @property
    def sent(self) -> int:
        """Frames sent so far (updated every 1024 attempts)."""
        return struct.unpack("Q", self._counter_path.read_bytes())[0]

    def wait_busy(self, timeout: float) -> bool:
        """Whether the flooder reported at least 20480 frames sent within `timeout` seconds."""
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        return bool(ready) and self._proc.stdout.readline() == b"busy\n"

    def __enter__(self) -> Flood:
        head = b"\xff" * 6 + SENDER_MAC + struct.pack("!H", FLOOD_TYPE)
        with open(self._counter_path, "r+b") as counter:
            fds = (self.sock.fileno(), counter.fileno())
            self._proc = subprocess.Popen(
                [sys.executable, "-c", FLOODER, head.hex(), *map(str, fds)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, pass_fds=fds,
            )  # fmt: skip
        return self

    def __exit__(self, *_: object) -> None:
        if self._proc is not None:
            self._proc.kill()  # our child, by PID
            self._proc.wait(10)
            assert self._proc.stdout is not None
            self._proc.stdout.close()
        self.sock.close()


@pytest.fixture
def link(make_ns):
    """(sending namespace, captured namespace): a veth pair between two fresh namespaces, up."""
    sender, captured = make_ns(), make_ns()
    lb.create_veth(sender, "fl0", captured, "fl1")
    lb.set_link_up(sender, "fl0")
    lb.set_link_up(captured, "fl1")
    return sender, captured




def started(capture: Capture, flood: Flood) -> None:
    """Wait until the flood is under way; if it never is, stop the capture and fail."""
    if not flood.wait_busy(30):
        capture.stop()
        pytest.fail("the sender could not flood")


def flood_numbers(packets) -> list[int]:
    """The sequence numbers of the flood's frames among `packets` (IPv6 noise of the links skipped)."""
    return [struct.unpack("!Q", p.load[:8])[0] for p in packets if p.type == FLOOD_TYPE]


def test_stop_returns_while_the_link_is_flooded(link, tmp_path):
    sender, captured = link
    pcap = tmp_path / "flood.pcap"
    capture = Capture(captured, "fl1", pcap)
    capture.start()
    with Flood(sender, "fl0", tmp_path) as flood:
        started(capture, flood)
        sent_before = flood.sent
        frames, elapsed = stop_within(capture, 10.0)
        sent_after = flood.sent
    assert sent_after > sent_before, "the flood paused during stop(): the test proves nothing"
    assert elapsed < STOP_BOUND, f"stop() took {elapsed:.2f} s during a flood"
    assert 0 < len(frames) <= frames.seen
    seen = flood_numbers(frames)
    assert seen == sorted(seen) and len(seen) > 0  # capture order
    again = flood_numbers(islice(frames, 2000))  # judges walk the frames more than once
    assert again and again == seen[: len(again)]
    with PcapReader(str(pcap)) as reader:
        assert sum(1 for _ in reader) == frames.written


def test_a_flood_past_the_memory_bound_is_counted_and_marked(link, tmp_path):
    sender, captured = link
    pcap = tmp_path / "bounded.pcap"
    capture = Capture(captured, "fl1", pcap, max_kept_frames=1000, max_pcap_bytes=64 << 10)
    capture.start()
    with Flood(sender, "fl0", tmp_path) as flood:
        started(capture, flood)
        frames, _ = stop_within(capture, 10.0)
    assert len(frames) == 1000 and len(list(frames)) == 1000
    assert frames.seen > 1000 and frames.truncated
    assert frames.pcap_truncated and frames.written < frames.seen
    assert pcap.stat().st_size <= 64 << 10
    with PcapReader(str(pcap)) as reader:
        assert sum(1 for _ in reader) == frames.written
