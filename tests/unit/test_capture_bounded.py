"""A capture is bounded against a flooding guest (no root, no network).

The frame accumulator is fed directly; Capture itself runs on a stand-in socket
that never runs dry (what a flooding guest looks like to the reader), so stop()
must end by its own bound instead of "until the socket is empty".
"""

from __future__ import annotations

import sys
from pathlib import Path

import socket
import struct
import threading
import time
import tracemalloc

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.supersocket import SuperSocket
from scapy.utils import PcapReader, rdpcap

from vnetlab.checks import capture as capture_module
from vnetlab.checks.capture import (
    _DRAIN_MAX_FRAMES,
    _DRAIN_SECONDS,
    _SETTLE,
    MAX_KEPT_BYTES,
    MAX_KEPT_FRAMES,
    MAX_PCAP_BYTES,
    Capture,
    Frames,
    _Recorder,
    count_arp_icmp,
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: shared helpers
from capture_stop import stop_within  # noqa: E402

MAC_A, IP_A = "52:54:00:00:00:0a", "10.1.1.2"
MAC_B, IP_B = "52:54:00:00:00:0b", "10.1.1.3"
pytestmark = pytest.mark.usefixtures("no_neighbour_resolution")  # tests/unit/conftest.py
FLOOD_TYPE = 0x88B5  # IEEE local experimental ethertype: nobody's stack reacts to it
T0 = 1_700_000_000.0


def numbered(i: int, size: int = 60) -> bytes:
    """A frame that carries its sequence number, padded to `size` bytes."""
    head = struct.pack("!6s6sHQ", b"\xff" * 6, b"\x02\x00\x00\x00\x00\x01", FLOOD_TYPE, i)
    return head + b"\0" * (size - len(head))


def number_of(packet) -> int:
    return struct.unpack("!Q", bytes(packet)[14:22])[0]


def echo(i: int, reply: bool = False) -> bytes:
    src, dst = ((MAC_B, IP_B), (MAC_A, IP_A)) if reply else ((MAC_A, IP_A), (MAC_B, IP_B))
    return bytes(Ether(src=src[0], dst=dst[0]) / IP(src=src[1], dst=dst[1]) / ICMP(type=0 if reply else 8, id=7, seq=i))


# --- the accumulator --------------------------------------------------------


def test_memory_stays_within_the_default_bound_and_the_rest_is_counted(tmp_path):
    """40 MiB of frames through the default 32 MiB bound: what is kept (and allocated) stays under it."""
    size, total = 60_000, (40 << 20) // 60_000
    recorder = _Recorder(tmp_path / "big.pcap")
    tracemalloc.start()
    try:
        for i in range(total):
            recorder.add(numbered(i, size), T0 + i / 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frames = recorder.close()
    assert frames.seen == total and frames.truncated
    assert len(frames) == MAX_KEPT_BYTES // (size + 16)  # len() counts the frames kept, not seen
    assert frames.kept_bytes <= MAX_KEPT_BYTES
    assert peak < MAX_KEPT_BYTES * 1.2, f"{peak} bytes allocated for a {MAX_KEPT_BYTES}-byte bound"
    assert [number_of(p) for p in frames] == list(range(len(frames)))  # the first frames, in order
    assert frames.written == total and not frames.pcap_truncated  # 40 MiB is under the pcap bound
    assert sum(1 for _ in PcapReader(str(tmp_path / "big.pcap"))) == total


def test_frame_count_bound_keeps_a_prefix_and_counts_everything(tmp_path):
    recorder = _Recorder(tmp_path / "n.pcap", max_kept_frames=100)
    for i in range(5000):
        recorder.add(numbered(i), T0 + i)
    frames = recorder.close()
    assert (len(frames), frames.seen, frames.written, frames.truncated) == (100, 5000, 5000, True)
    first, second = list(frames), list(frames)  # judges walk the frames more than once
    assert [number_of(p) for p in first] == [number_of(p) for p in second] == list(range(100))
    assert [float(p.time) for p in first] == [T0 + i for i in range(100)]
    assert "100 kept of 5000 seen, truncated" in repr(frames)


def test_the_default_frame_bound_applies_to_small_frames(tmp_path):
    recorder = _Recorder(tmp_path / "small.pcap", max_pcap_bytes=1 << 20)
    for i in range(MAX_KEPT_FRAMES + 10):
        recorder.add(numbered(i), T0)
    frames = recorder.close()
    assert (len(frames), frames.seen, frames.truncated) == (MAX_KEPT_FRAMES, MAX_KEPT_FRAMES + 10, True)


def test_pcap_stops_at_its_bound_and_stays_a_readable_prefix(tmp_path):
    path, bound = tmp_path / "cut.pcap", 24 + 10 * (16 + 60) + 5  # room for 10 records and a bit
    recorder = _Recorder(path, max_pcap_bytes=bound)
    for i in range(50):
        recorder.add(numbered(i), T0 + i * 0.25)
    frames = recorder.close()
    assert (frames.written, frames.seen, frames.pcap_truncated, frames.truncated) == (10, 50, True, False)
    assert len(frames) == 50  # memory bound not reached: the judges still see everything
    assert path.stat().st_size <= bound
    saved = rdpcap(str(path))
    assert [number_of(p) for p in saved] == list(range(10))
    assert [float(p.time) for p in saved] == [T0 + i * 0.25 for i in range(10)]
    assert saved[0].__class__ is Ether  # linktype 1


def test_default_pcap_bound_is_stated():
    assert (MAX_KEPT_BYTES, MAX_PCAP_BYTES) == (32 << 20, 256 << 20)


def test_pcap_is_streamed_while_frames_arrive(tmp_path):
    """Frames reach the file during the capture, not in one write at the end."""
    path = tmp_path / "stream.pcap"
    recorder = _Recorder(path)
    for i in range(200):
        recorder.add(numbered(i, 1500), T0)
    assert path.stat().st_size >= 100 * 1500  # the writer's buffer is far smaller than 300 kB
    recorder.close()
    assert path.stat().st_size == 24 + 200 * (16 + 1500)


def test_judges_count_on_frames_more_than_once(tmp_path):
    recorder = _Recorder(tmp_path / "echo.pcap")
    for i in range(3):
        recorder.add(echo(i), T0 + i)
        recorder.add(echo(i, reply=True), T0 + i + 0.001)
    frames = recorder.close()
    first = count_arp_icmp(frames, MAC_A, IP_A, MAC_B, IP_B)
    assert (first.icmp_echo_request, first.icmp_echo_reply, first.icmp_echo_pairs) == (3, 3, 3)
    assert count_arp_icmp(frames, MAC_A, IP_A, MAC_B, IP_B) == first
    assert count_arp_icmp(rdpcap(str(tmp_path / "echo.pcap")), MAC_A, IP_A, MAC_B, IP_B) == first
    assert len(frames) == 6 and frames == [Ether(echo(i, reply)) for i in range(3) for reply in (False, True)]


def test_an_empty_capture_is_an_empty_valid_pcap(tmp_path):
    frames = _Recorder(tmp_path / "empty.pcap").close()
    assert frames == [] and len(frames) == 0 and not frames and not frames.truncated
    assert len(rdpcap(str(tmp_path / "empty.pcap"))) == 0


def test_a_frame_that_crashes_the_dissector_becomes_raw(tmp_path):
    def exploding(data: bytes):
        raise ValueError("hostile frame")

    recorder = _Recorder(tmp_path / "x.pcap", parse_as=exploding)  # type: ignore[arg-type]
    recorder.add(numbered(0), T0)
    [packet] = recorder.close()
    assert isinstance(packet, Raw) and bytes(packet) == numbered(0)


def test_frames_refuse_inconsistent_counts():
    from array import array

    with pytest.raises(ValueError):
        Frames(b"ab", array("Q", [2]), array("d", [T0]), seen=0, written=0)


# --- Capture on a socket that never runs dry ---------------------------------


class FloodSocket(SuperSocket):
    """A stand-in for the capture socket while a guest floods the link: always a frame queued.

    `ins` is one end of a socketpair kept readable, so both select() and poll() report
    data; recv_raw() hands out numbered frames until `end()`, then reports an empty queue.
    """

    nonblocking_socket = False

    def __init__(self, size: int = 100) -> None:
        self.ins, self._peer = socket.socketpair()
        self._peer.send(b"!")
        self.outs = None
        self.LL = Ether
        self.size = size
        self.delivered = 0
        self.flooding = True
        self.reached = threading.Event()  # set once 1000 frames were delivered

    def recv_raw(self, x: int = 65535):
        if not self.flooding:
            raise BlockingIOError
        self.delivered += 1
        if self.delivered == 1000:
            self.reached.set()
        return Ether, numbered(self.delivered - 1, self.size), time.time()

    def end(self) -> None:
        """The flood is over: nothing is queued any more."""
        self.flooding = False
        self._peer.close()
        try:
            self.ins.setblocking(False)
            self.ins.recv(16)  # drain the readability byte
        except OSError:
            pass




def test_stop_returns_while_the_flood_goes_on(monkeypatch, tmp_path):
    flood = FloodSocket()
    monkeypatch.setattr(capture_module, "run_in_namespace", lambda ns, fn, iface: flood)
    capture = Capture("lab", "br0", tmp_path / "out" / "br0.pcap")
    capture.start()
    try:
        assert flood.reached.wait(10), "the reader took nothing from the socket"
        frames, elapsed = stop_within(capture, 5.0)
        assert flood.flooding  # still flooding when stop() returned
    finally:
        flood.end()
    assert elapsed < _SETTLE + _DRAIN_SECONDS + 1.0
    assert frames.seen == flood.delivered  # every frame taken from the socket is counted
    assert frames.written == frames.seen and not frames.pcap_truncated
    assert sum(1 for _ in PcapReader(str(tmp_path / "out" / "br0.pcap"))) == frames.written
    assert len(frames) == min(frames.seen, MAX_KEPT_FRAMES, MAX_KEPT_BYTES // (100 + 16))
    assert [number_of(p) for p in frames][:5] == [0, 1, 2, 3, 4]


def test_the_final_drain_is_bounded_by_frames(monkeypatch, tmp_path):
    """A reader far behind the flood drains at most _DRAIN_MAX_FRAMES after stop is asked for."""
    flood = FloodSocket()
    monkeypatch.setattr(capture_module, "run_in_namespace", lambda ns, fn, iface: flood)
    monkeypatch.setattr(capture_module, "_DRAIN_SECONDS", 60.0)  # only the frame bound can end it
    capture = Capture("lab", "br0", tmp_path / "drain.pcap")
    capture.start()
    try:
        assert flood.reached.wait(10)
        running = capture._running
        assert running is not None and running.thread is not None
        before = flood.delivered
        running.stopping.set()  # what stop() does after its settle time
        after_set = flood.delivered
        running.thread.join(30)
        assert not running.thread.is_alive()
        after_drain = flood.delivered
        frames, _ = stop_within(capture, 5.0)
    finally:
        flood.end()
    assert frames.seen == after_drain
    assert after_drain - before >= _DRAIN_MAX_FRAMES  # the flood never ran dry: the drain took its full count
    assert after_drain - after_set <= _DRAIN_MAX_FRAMES + 1  # at most one more frame before the drain, then the bound


def test_a_reader_error_is_raised_by_stop_and_the_pcap_is_finished(monkeypatch, tmp_path):
    flood = FloodSocket()

    def failing(x: int = 65535):
        if flood.delivered >= 3:
            raise OSError(100, "Network is down")
        return FloodSocket.recv_raw(flood, x)

    flood.recv_raw = failing  # type: ignore[method-assign]
    monkeypatch.setattr(capture_module, "run_in_namespace", lambda ns, fn, iface: flood)
    capture = Capture("lab", "br0", tmp_path / "err.pcap")
    capture.start()
    try:
        capture._running.thread.join(10)  # type: ignore[union-attr]
        with pytest.raises(OSError, match="Network is down"):
            capture.stop()
    finally:
        flood.end()
    assert len(rdpcap(str(tmp_path / "err.pcap"))) == 3
    with pytest.raises(RuntimeError, match="not running"):
        capture.stop()


def test_a_failed_start_leaves_nothing_open(monkeypatch, tmp_path):
    flood = FloodSocket()
    monkeypatch.setattr(capture_module, "run_in_namespace", lambda ns, fn, iface: flood)
    (tmp_path / "file").write_text("")
    capture = Capture("lab", "br0", tmp_path / "file" / "br0.pcap")  # its folder cannot exist
    with pytest.raises(OSError):
        capture.start()
    assert flood.closed and flood.ins.fileno() == -1
    with pytest.raises(RuntimeError, match="not running"):
        capture.stop()
    flood.end()
