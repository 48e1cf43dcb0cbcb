"""Capture on an interface inside a lab namespace (scapy), and pure analysis of the packets.

The capture socket is opened by a thread inside the namespace (an AF_PACKET
socket is bound to the namespace it was created in); a reader thread then
reads it from the root namespace. Analysis functions take any iterable of
scapy packets (a capture's Frames, rdpcap() output, or packets built in tests).

What crosses a lab bridge is hostile input (a student is root in the guest and
may flood it), so a capture is bounded: every frame is streamed to the pcap as
it arrives, up to MAX_PCAP_BYTES; only raw frame bytes are kept in memory for
the judges, up to MAX_KEPT_BYTES and MAX_KEPT_FRAMES (the first frames, in
capture order), parsed into scapy packets only while a judge iterates; frames
past a bound are still counted (Frames.seen, Frames.truncated); and stop()
drains the socket for at most _DRAIN_MAX_FRAMES frames or _DRAIN_SECONDS.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vnetlab.backends.netns import run_in_namespace
from vnetlab.lazy import LazyModule

if TYPE_CHECKING:
    from scapy.arch.linux import L2ListenSocket
    from scapy.packet import Packet
    from scapy.utils import PcapWriter

# scapy is imported at the first capture or judgement (or by vnetlab.lazy.preload while guests boot),
# its layers all at once so that every frame is dissected into all of them.
SCAPY_LAYERS = ("scapy.layers.l2", "scapy.layers.inet", "scapy.layers.inet6")
_linux, _config, _interfaces, _utils = (LazyModule(name, *SCAPY_LAYERS) for name in ("scapy.arch.linux", "scapy.config", "scapy.interfaces", "scapy.utils"))
_l2, _inet, _inet6 = (LazyModule(name, *SCAPY_LAYERS) for name in SCAPY_LAYERS)

# Bounds of one capture (see the module docstring). Kept bytes count each frame's bytes plus
# _KEPT_OVERHEAD of bookkeeping. The frame bound caps the judges' time: scapy parses a frame
# in 50-150 µs, so 100k frames cost 5-15 s per pass over them.
MAX_KEPT_BYTES = 32 << 20
MAX_KEPT_FRAMES = 100_000
MAX_PCAP_BYTES = 256 << 20  # the whole file: header and per-frame record headers included
_KEPT_OVERHEAD = 16  # per kept frame: its end offset (8 bytes) and timestamp (8 bytes)
_PCAP_HEADER, _PCAP_RECORD_HEADER = 24, 16
# Frames a finished ping caused have crossed the bridge (its reply reached the source), and
# stop() drains what the socket still holds; this margin is for frames a guest queued just
# before its command returned.
_SETTLE = 0.05
# The drain after stop is asked for: what the socket holds then belongs to the capture, but a
# flooding guest refills it forever. 20k frames is more than a full receive buffer of small frames.
_DRAIN_MAX_FRAMES = 20_000
_DRAIN_SECONDS = 0.5
_STOP_TIMEOUT = 5.0  # the reader ends within the drain bound; this only guards against a stuck disk
_RECV_SIZE = 0xFFFF  # scapy's MTU, the pcap snaplen
_RCVBUF = 4 << 20  # scapy's 64 KiB drops frames in bursts; the kernel caps this at rmem_max
_DLT_EN10MB = 1
_ICMP_ECHO_REQUEST, _ICMP_ECHO_REPLY = 8, 0
_ICMP6_ECHO_REQUEST, _ICMP6_ECHO_REPLY = 128, 129
_ND_ROUTER_SOLICIT, _ND_ROUTER_ADVERT, _ND_NEIGHBOR_SOLICIT, _ND_NEIGHBOR_ADVERT = 133, 134, 135, 136
_ARP_REQUEST, _ARP_REPLY = 1, 2
_PROTO_ICMP, _PROTO_ICMPV6 = 1, 58
_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, _PACKET_MR_PROMISC = 263, 1, 1  # <linux/if_packet.h>


def open_listen_socket(iface: str) -> L2ListenSocket:
    """Open scapy's listening socket on iface of the calling thread's namespace, promiscuous.

    scapy resolves interface names through its global table, which lists the
    root namespace: hand it a NetworkInterface built here instead, and set
    promiscuous mode ourselves with the namespace's own ifindex (the kernel
    drops the membership when the socket closes). Promiscuous mode makes a
    bridge pass up the frames it forwards between its ports.
    """
    index = socket.if_nametoindex(iface)
    nic = _interfaces.NetworkInterface(None, data={"name": iface, "network_name": iface, "description": iface, "index": index})
    sock = _linux.L2ListenSocket(iface=nic, promisc=False)
    try:
        sock.ins.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, struct.pack("IHH8s", index, _PACKET_MR_PROMISC, 0, b""))
        sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    except OSError:
        sock.close()
        raise
    return sock


def _parse(cls: type[Packet], data: bytes) -> Packet:
    """Dissect like scapy's own sockets do: a frame that crashes a dissector becomes Raw
    (guest frames are hostile; one must not abort the judges)."""
    try:
        return cls(data)
    except Exception:
        return _config.conf.raw_layer(data)


class Frames:
    """The frames a capture kept, for the judges: iterable any number of times, each pass
    yielding scapy packets in capture order, parsed one at a time from the kept bytes (so
    memory holds raw bytes, never a list of Packets).

    len() is the number of frames kept, i.e. what an iteration yields; `seen` counts every
    frame the capture read, and `truncated` says the judges see only the first len() of them.
    `written` is how many of them the pcap holds.
    """

    def __init__(
        self,
        data: bytes | bytearray,
        ends: array,
        times: array,
        *,
        seen: int,
        written: int,
        parse_as: type[Packet] | None = None,
    ) -> None:
        if len(ends) != len(times) or seen < len(ends):
            raise ValueError("inconsistent frames")
        self._data, self._ends, self._times = data, ends, times
        self._parse_as = parse_as or _l2.Ether
        self.seen = seen
        self.written = written

    @property
    def truncated(self) -> bool:
        """Frames were seen but not kept: the in-memory bound was hit."""
        return len(self._ends) < self.seen

    @property
    def pcap_truncated(self) -> bool:
        """Frames were seen but not written: the pcap size bound was hit."""
        return self.written < self.seen

    @property
    def kept_bytes(self) -> int:
        """What the kept frames cost, as counted against MAX_KEPT_BYTES."""
        return len(self._data) + _KEPT_OVERHEAD * len(self._ends)

    def __len__(self) -> int:
        return len(self._ends)

    def __iter__(self) -> Iterator[Packet]:
        start = 0
        for end, timestamp in zip(self._ends, self._times):
            packet = _parse(self._parse_as, bytes(self._data[start:end]))
            packet.time = timestamp
            start = end
            yield packet

    def __eq__(self, other: object) -> bool:
        """Equal to a sequence of the same packets (`capture.stop() == []` for an empty capture)."""
        if not isinstance(other, (Frames, list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which are unhashable

    def __repr__(self) -> str:
        more = f" of {self.seen} seen, truncated" if self.truncated else ""
        return f"<Frames: {len(self)} kept{more}, {self.written} in the pcap>"


class _Recorder:
    """Takes each captured frame once, as it arrives: counts it, appends it to the pcap until
    the pcap bound, keeps its bytes until the memory bounds. Both stop at the first frame that
    does not fit, so the pcap and the kept frames are each a prefix of the capture."""

    def __init__(
        self,
        pcap_path: Path,
        *,
        parse_as: type[Packet] | None = None,
        max_kept_bytes: int = MAX_KEPT_BYTES,
        max_kept_frames: int = MAX_KEPT_FRAMES,
        max_pcap_bytes: int = MAX_PCAP_BYTES,
    ) -> None:
        self._max_kept_bytes, self._max_kept_frames, self._max_pcap_bytes = max_kept_bytes, max_kept_frames, max_pcap_bytes
        self._parse_as = parse_as or _l2.Ether
        self._writer: PcapWriter | None = _utils.PcapWriter(str(pcap_path), linktype=_DLT_EN10MB)
        try:
            self._writer.write_header(None)  # an empty capture is still a valid pcap
        except BaseException:
            self._writer.close()
            raise
        self._pcap_bytes = _PCAP_HEADER
        self._data = bytearray()
        self._ends = array("Q")
        self._times = array("d")
        self._writing = self._keeping = True  # each turns False at the first frame that does not fit
        self.seen = 0
        self.written = 0

    def add(self, frame: bytes, timestamp: float) -> None:
        """Record one frame captured at `timestamp` (seconds since the epoch)."""
        if self._writer is None:
            raise RuntimeError("recorder is closed")
        self.seen += 1
        if self._writing:
            record = _PCAP_RECORD_HEADER + len(frame)
            if self._pcap_bytes + record <= self._max_pcap_bytes:
                sec, usec = divmod(round(timestamp * 1_000_000), 1_000_000)
                self._writer.write_packet(frame, sec=sec, usec=usec)
                self._pcap_bytes += record
                self.written += 1
            else:
                self._writing = False
        if self._keeping:
            kept = len(self._ends) + 1
            if kept <= self._max_kept_frames and len(self._data) + len(frame) + _KEPT_OVERHEAD * kept <= self._max_kept_bytes:
                self._data += frame
                self._ends.append(len(self._data))
                self._times.append(timestamp)
            else:
                self._keeping = False

    def close(self) -> Frames:
        """Flush and close the pcap; the frames kept, for the judges."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.flush()
            finally:
                writer.close()
        return Frames(self._data, self._ends, self._times, seen=self.seen, written=self.written, parse_as=self._parse_as)


def _read_frame(sock: L2ListenSocket, recorder: _Recorder) -> bool:
    """Move one queued frame from the (non-blocking) socket to the recorder; False when none is queued."""
    try:
        _, data, timestamp = sock.recv_raw(_RECV_SIZE)
    except BlockingIOError:
        return False
    if data:
        recorder.add(data, timestamp if timestamp is not None else time.time())
    return True


@dataclass
class _Running:
    """A started capture: its socket, recorder and reader thread, and how stop() wakes the reader."""

    sock: L2ListenSocket
    recorder: _Recorder
    wake_read: int
    wake_write: int
    stopping: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def read(self) -> None:
        """The reader thread: record frames until stop is asked for, then a bounded drain."""
        try:
            poller = select.poll()  # not select(): a busy process may hold descriptors past FD_SETSIZE
            poller.register(self.sock.ins, select.POLLIN)
            poller.register(self.wake_read, select.POLLIN)
            while not self.stopping.is_set():
                if not _read_frame(self.sock, self.recorder):
                    poller.poll()
            deadline = time.monotonic() + _DRAIN_SECONDS
            for _ in range(_DRAIN_MAX_FRAMES):
                if time.monotonic() >= deadline or not _read_frame(self.sock, self.recorder):
                    break
        except BaseException as exc:  # re-raised by stop()
            self.error = exc

    def close(self) -> None:
        self.sock.close()
        for fd in (self.wake_read, self.wake_write):
            os.close(fd)


class Capture:
    """Promiscuous capture of everything crossing `iface` in namespace `ns`, streamed to pcap_path.

    The bounds default to the module's; tests pass smaller ones.
    """

    def __init__(
        self,
        ns: str,
        iface: str,
        pcap_path: Path,
        *,
        max_kept_bytes: int = MAX_KEPT_BYTES,
        max_kept_frames: int = MAX_KEPT_FRAMES,
        max_pcap_bytes: int = MAX_PCAP_BYTES,
    ) -> None:
        self.ns = ns
        self.iface = iface
        self.pcap_path = Path(pcap_path)
        self._bounds = {"max_kept_bytes": max_kept_bytes, "max_kept_frames": max_kept_frames, "max_pcap_bytes": max_pcap_bytes}
        self._running: _Running | None = None

    @property
    def _where(self) -> str:
        return f"capture on {self.iface!r} in namespace {self.ns!r}"

    def start(self) -> None:
        """Start capturing; frames are buffered by the kernel from the moment this returns."""
        if self._running is not None:
            raise RuntimeError(f"{self._where} already started")
        try:
            sock = run_in_namespace(self.ns, open_listen_socket, self.iface)
        except OSError as exc:
            raise OSError(f"cannot start {self._where}: {exc.strerror or exc}") from exc  # no "[Errno …]" in the message
        with ExitStack() as undo:  # what is open so far, if starting fails
            undo.callback(sock.close)
            sock.ins.setblocking(False)  # the reader takes what is queued, then waits in poll()
            self.pcap_path.parent.mkdir(parents=True, exist_ok=True)
            recorder = _Recorder(self.pcap_path, parse_as=sock.LL, **self._bounds)
            undo.callback(recorder.close)
            wake_read, wake_write = os.pipe()
            undo.callback(os.close, wake_read)
            undo.callback(os.close, wake_write)
            running = _Running(sock, recorder, wake_read, wake_write)
            running.thread = threading.Thread(target=running.read, name=f"capture {self.iface}", daemon=True)
            running.thread.start()
            undo.pop_all()  # running: stop() closes them
        self._running = running

    def stop(self) -> Frames:
        """Stop, finish pcap_path and return the frames kept (see Frames), within about
        _SETTLE + _DRAIN_SECONDS even while frames keep arriving."""
        running, self._running = self._running, None
        if running is None or running.thread is None:
            raise RuntimeError(f"{self._where} is not running")
        time.sleep(_SETTLE)
        running.stopping.set()
        os.write(running.wake_write, b"\0")
        running.thread.join(_STOP_TIMEOUT)
        try:
            if running.thread.is_alive():  # it still owns the recorder: leave the pcap to it
                raise RuntimeError(f"{self._where} did not stop within {_STOP_TIMEOUT:g} s")
        finally:
            running.close()
        frames = running.recorder.close()
        if running.error is not None:
            raise running.error  # what ended the reader early; the pcap holds what it had read
        return frames


def read_frames(
    pcap_path: Path,
    *,
    seen: int | None = None,
    max_kept_bytes: int = MAX_KEPT_BYTES,
    max_kept_frames: int = MAX_KEPT_FRAMES,
) -> Frames:
    """The frames a capture kept, read back from its pcap (to judge a run again): the same bounds
    as the live capture, so the judges see the same first frames. `seen` is what the capture
    counted (recorded with the run); the pcap's own count when unknown. Raises ValueError for a
    file that is not a little-endian microsecond Ethernet pcap as _Recorder writes them."""
    data = bytearray()
    ends, times = array("Q"), array("d")
    written = 0
    keeping = True
    with open(pcap_path, "rb") as f:
        header = f.read(_PCAP_HEADER)
        if len(header) != _PCAP_HEADER or header[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack("<I", header[20:24])[0] != _DLT_EN10MB:
            raise ValueError(f"{pcap_path} is not an Ethernet pcap as vnetlab writes them")
        while True:
            record = f.read(_PCAP_RECORD_HEADER)
            if not record:
                break
            if len(record) != _PCAP_RECORD_HEADER:
                raise ValueError(f"{pcap_path} ends inside a record header")
            sec, usec, caplen, _ = struct.unpack("<IIII", record)
            if caplen > _RECV_SIZE:
                raise ValueError(f"{pcap_path}: a record of {caplen} bytes (at most {_RECV_SIZE})")
            frame = f.read(caplen)
            if len(frame) != caplen:
                raise ValueError(f"{pcap_path} ends inside a frame")
            written += 1
            if keeping:
                kept = len(ends) + 1
                if kept <= max_kept_frames and len(data) + len(frame) + _KEPT_OVERHEAD * kept <= max_kept_bytes:
                    data += frame
                    ends.append(len(data))
                    times.append(sec + usec / 1_000_000)
                else:
                    keeping = False
    return Frames(data, ends, times, seen=max(seen or 0, written), written=written)


@dataclass
class EchoCounts:
    requests: int  # echo requests from one of the source addresses to the target
    replies: int  # echo replies from the target to one of the source addresses
    pairs: int  # replies that answer an earlier request (same id and sequence, swapped addresses)


def _echo(ip: Packet) -> tuple[str, int, int] | None:
    """An ICMP or ICMPv6 echo in this IP header: ('request'|'reply', id, seq), else None."""
    payload = ip.payload
    if isinstance(ip, _inet.IP) and isinstance(payload, _inet.ICMP) and payload.type in (_ICMP_ECHO_REQUEST, _ICMP_ECHO_REPLY):
        return ("request" if payload.type == _ICMP_ECHO_REQUEST else "reply", payload.id, payload.seq)
    if isinstance(ip, _inet6.IPv6) and isinstance(payload, _inet6.ICMPv6EchoRequest):  # scapy's echo reply is a subclass of its request
        return ("reply" if isinstance(payload, _inet6.ICMPv6EchoReply) else "request", payload.id, payload.seq)
    return None


def _canonical_ip(text: str) -> str:
    """An address as ipaddress writes it (scapy and the plan may spell an IPv6 address differently)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def count_echo(packets: Iterable[Packet], sources: set[str], target: str, size: int | None = None) -> EchoCounts:
    """The ICMP (or, for an IPv6 target, ICMPv6) echo exchange between any of `sources` and
    `target` (each reply answers at most one request); with `size`, only IPv4 packets of that
    total length (a path-MTU probe's)."""
    requests = replies = pairs = 0
    sources = {_canonical_ip(s) for s in sources}
    target = _canonical_ip(target)
    waiting: Counter[tuple[str, int, int]] = Counter()
    for packet in packets:
        for ip in _ip_layers(packet):
            echo = _echo(ip)
            if echo is None or (size is not None and (not isinstance(ip, _inet.IP) or ip.len != size)):
                continue
            kind, ident, seq = echo
            src, dst = _canonical_ip(ip.src), _canonical_ip(ip.dst)
            if kind == "request" and src in sources and dst == target:
                requests += 1
                waiting[(src, ident, seq)] += 1
            elif kind == "reply" and src == target and dst in sources:
                replies += 1
                if waiting[(dst, ident, seq)] > 0:
                    waiting[(dst, ident, seq)] -= 1
                    pairs += 1
    return EchoCounts(requests, replies, pairs)


_ICMP_UNREACHABLE, _FRAG_NEEDED = 3, 4


def frag_needed(packets: Iterable[Packet], to: set[str], *, sender: str | None = None, about: str | None = None) -> list[int]:
    """The next-hop MTU of every ICMP "fragmentation needed" (type 3, code 4) sent to one of the
    addresses `to` (from `sender`, when given), about a packet to `about` (the quoted header's
    destination, when given). Read from the bytes: the quoted packet may be cut anywhere."""
    mtus = []
    for packet in packets:
        ip = packet.getlayer(_inet.IP)
        if ip is None or ip.dst not in to or (sender is not None and ip.src != sender) or ip.proto != _PROTO_ICMP:
            continue
        icmp = bytes(ip.payload)
        if len(icmp) < 8 or icmp[0] != _ICMP_UNREACHABLE or icmp[1] != _FRAG_NEEDED:
            continue
        if about is not None and (len(icmp) < 28 or socket.inet_ntoa(icmp[24:28]) != about):
            continue
        mtus.append(int.from_bytes(icmp[6:8], "big"))
    return mtus


def count_udp_from(packets: Iterable[Packet], src_ip: str, dst_ip: str, port: int) -> int:
    """UDP datagrams from src_ip to dst_ip with `port` at either end (one direction of count_udp)."""
    return sum(
        1
        for packet in packets
        if (ip := packet.getlayer(_inet.IP)) is not None and ip.src == src_ip and ip.dst == dst_ip
        and isinstance(ip.payload, _inet.UDP) and port in (ip.payload.sport, ip.payload.dport)
    )


def udp_payloads(packets: Iterable[Packet], src_ip: str, dst_ip: str, port: int) -> Iterator[bytes]:
    """The payloads of UDP datagrams from src_ip to dst_ip with `port` at either end (outer header)."""
    for packet in packets:
        ip = packet.getlayer(_inet.IP)
        if ip is not None and ip.src == src_ip and ip.dst == dst_ip and isinstance(ip.payload, _inet.UDP) and port in (ip.payload.sport, ip.payload.dport):
            yield bytes(ip.payload.payload)


def tcp_bytes(packets: Iterable[Packet], src_ips: set[str], dst_ip: str, dport: int) -> int:
    """TCP payload bytes from any of src_ips to dst_ip:dport, by the IP header's lengths (a segment
    the NIC offloads crosses the bridge as one large frame the capture may cut; its header still
    says how much it carried)."""
    total = 0
    for packet in packets:
        ip = packet.getlayer(_inet.IP)
        if ip is None or ip.src not in src_ips or ip.dst != dst_ip or not isinstance(ip.payload, _inet.TCP) or ip.payload.dport != dport:
            continue
        total += max(0, int(ip.len) - 4 * int(ip.ihl) - 4 * int(ip.payload.dataofs))
    return total


@dataclass
class TrafficCounts:
    arp_request: int
    arp_reply: int
    icmp_echo_request: int
    icmp_echo_reply: int
    icmp_echo_pairs: int


def _ip_layers(packet: Packet) -> Iterator[Packet]:
    """Every IPv4/IPv6 header in the packet, including tunnelled ones, but not the
    copies quoted inside ICMP errors (scapy's IPerror/IPerror6 are other classes)."""
    layer = packet
    while layer:
        if type(layer) in (_inet.IP, _inet6.IPv6):
            yield layer
        layer = layer.payload


def _carries(layer: Packet, proto: int) -> bool:
    return (layer.proto if isinstance(layer, _inet.IP) else layer.nh) == proto


def count_arp_icmp(packets: Iterable[Packet], mac_a: str, ip_a: str, mac_b: str, ip_b: str) -> TrafficCounts:
    """Count the ARP and ICMP echo exchange between hosts a and b, ignoring every other host.

    A pair is an echo request followed later by a reply with the same (id, seq)
    and swapped addresses; each reply answers at most one request.
    """
    mac_a, mac_b = mac_a.lower(), mac_b.lower()
    asks_for = {mac_a: ip_b, mac_b: ip_a}  # asker's MAC -> the IP it asks about
    answers_to = {(mac_a, ip_a): mac_b, (mac_b, ip_b): mac_a}  # (owner's MAC, asked IP) -> asker's MAC
    arp_request = arp_reply = echo_request = echo_reply = pairs = 0
    waiting: Counter[tuple[str, str, int, int]] = Counter()
    for packet in packets:
        arp = packet.getlayer(_l2.ARP)
        if arp is not None:
            sender = str(arp.hwsrc).lower()
            if arp.op == _ARP_REQUEST and asks_for.get(sender) == arp.pdst:
                arp_request += 1
            elif arp.op == _ARP_REPLY and answers_to.get((sender, arp.psrc)) == str(arp.hwdst).lower():
                arp_reply += 1
        for ip in _ip_layers(packet):
            if not isinstance(ip, _inet.IP) or {ip.src, ip.dst} != {ip_a, ip_b} or not isinstance(ip.payload, _inet.ICMP):
                continue
            icmp = ip.payload
            if icmp.type == _ICMP_ECHO_REQUEST:
                echo_request += 1
                waiting[(ip.src, ip.dst, icmp.id, icmp.seq)] += 1
            elif icmp.type == _ICMP_ECHO_REPLY:
                echo_reply += 1
                request = (ip.dst, ip.src, icmp.id, icmp.seq)
                if waiting[request] > 0:
                    waiting[request] -= 1
                    pairs += 1
    return TrafficCounts(arp_request, arp_reply, echo_request, echo_reply, pairs)


def count_echo_between(packets: Iterable[Packet], ip_a: str, ip_b: str) -> EchoCounts:
    """The echo exchange between two addresses of one family, both directions (ICMP or ICMPv6)."""
    there, back = count_echo(packets, {ip_a}, ip_b), count_echo(packets, {ip_b}, ip_a)
    return EchoCounts(there.requests + back.requests, there.replies + back.replies, there.pairs + back.pairs)


@dataclass
class NdpCounts:
    solicitations: int  # neighbour solicitations from one node for an address of the other (not DAD's)
    advertisements: int  # neighbour advertisements from the other node's MAC for its address, to the asker
    solicited_to: set[str] = field(default_factory=set)  # where the solicitations went: "IPv6 destination / Ethernet destination"


def count_ndp(packets: Iterable[Packet], mac_a: str, ips_a: set[str], mac_b: str, ips_b: set[str]) -> NdpCounts:
    """Address resolution between hosts a and b in IPv6: a neighbour solicitation from one's MAC
    for an address of the other (sent to the solicited-node multicast address, or unicast when it
    checks a neighbour again), and the other's advertisement of that address to the asker's MAC.
    Duplicate address detection (source ::) is not address resolution and is not counted."""
    mac_a, mac_b = mac_a.lower(), mac_b.lower()
    ips_a, ips_b = {_canonical_ip(i) for i in ips_a}, {_canonical_ip(i) for i in ips_b}
    owns = {mac_a: ips_a, mac_b: ips_b}
    other = {mac_a: mac_b, mac_b: mac_a}
    solicitations = advertisements = 0
    solicited_to: set[str] = set()
    for packet in packets:
        ip6 = packet.getlayer(_inet6.IPv6)
        if ip6 is None:
            continue
        src_mac, dst_mac = str(getattr(packet, "src", "")).lower(), str(getattr(packet, "dst", "")).lower()
        if src_mac not in owns:
            continue
        ns, na = packet.getlayer(_inet6.ICMPv6ND_NS), packet.getlayer(_inet6.ICMPv6ND_NA)
        if ns is not None and _canonical_ip(ip6.src) != "::" and _canonical_ip(ns.tgt) in owns[other[src_mac]]:
            solicitations += 1
            solicited_to.add(f"{ip6.dst} / {dst_mac}")
        elif na is not None and _canonical_ip(na.tgt) in owns[src_mac] and dst_mac == other[src_mac]:
            advertisements += 1
    return NdpCounts(solicitations, advertisements, solicited_to)


def router_advertisements(packets: Iterable[Packet]) -> Iterator[tuple[Packet, list[str]]]:
    """Every router advertisement with the prefixes it carries (prefix information options), in order."""
    for packet in packets:
        ra = packet.getlayer(_inet6.ICMPv6ND_RA)
        if ra is None:
            continue
        prefixes = []
        option = ra.payload
        while option is not None and not isinstance(option, _config.conf.raw_layer) and option.__class__.__name__ != "NoPayload":
            if isinstance(option, _inet6.ICMPv6NDOptPrefixInfo):
                prefixes.append(f"{option.prefix}/{option.prefixlen}")
            option = option.payload
        yield packet, prefixes


def count_router_solicitations(packets: Iterable[Packet], mac: str) -> int:
    mac = mac.lower()
    return sum(1 for p in packets if p.getlayer(_inet6.ICMPv6ND_RS) is not None and str(getattr(p, "src", "")).lower() == mac)


def count_udp(packets: Iterable[Packet], src_ip: str, dst_ip: str, port: int) -> int:
    """Packets carrying UDP between the two addresses (either direction) with `port` at either end."""
    count = 0
    for packet in packets:
        for ip in _ip_layers(packet):
            udp = ip.payload
            if (
                {ip.src, ip.dst} == {src_ip, dst_ip}
                and isinstance(udp, _inet.UDP)
                and port in (udp.sport, udp.dport)
            ):
                count += 1
                break
    return count


def count_icmp_in_subnet(packets: Iterable[Packet], cidr: str) -> int:
    """Packets carrying readable ICMP (ICMPv6 for an IPv6 cidr) whose source or
    destination lies in cidr, e.g. tunnel-subnet traffic that escaped encryption."""
    network = ipaddress.ip_network(cidr, strict=False)
    proto = _PROTO_ICMP if network.version == 4 else _PROTO_ICMPV6
    count = 0
    for packet in packets:
        for ip in _ip_layers(packet):
            if (
                ip.version == network.version
                and _carries(ip, proto)
                and (ipaddress.ip_address(ip.src) in network or ipaddress.ip_address(ip.dst) in network)
            ):
                count += 1
                break
    return count


def count_ipv4(
    packets: Iterable[Packet],
    *,
    src: str | None = None,
    dst: str | None = None,
    ether_src: str | None = None,
    within: str | None = None,
) -> int:
    """Frames whose outer IPv4 header matches every given field: src, dst, the frame's
    source MAC, and `within` (source or destination inside that subnet)."""
    network = ipaddress.ip_network(within, strict=False) if within else None
    count = 0
    for packet in packets:
        ip = packet.getlayer(_inet.IP)
        if ip is None:
            continue
        if (src is not None and ip.src != src) or (dst is not None and ip.dst != dst):
            continue
        if ether_src is not None and str(getattr(packet, "src", "")).lower() != ether_src.lower():
            continue
        if network is not None and ipaddress.ip_address(ip.src) not in network and ipaddress.ip_address(ip.dst) not in network:
            continue
        count += 1
    return count


@dataclass
class VxlanSeen:
    inner: list[Packet]  # frames carried with one of the VNIs between the endpoints
    datagrams: int  # VXLAN datagrams between the endpoints
    strays: int  # VXLAN datagrams to or from any other address
    plain: list[Packet]  # every frame that is not a VXLAN datagram


def vxlan_payloads(packets: Iterable[Packet], port: int, vnis: set[int], endpoints: set[str]) -> VxlanSeen:
    """What a capture on an underlay saw: the inner frames of VXLAN datagrams (UDP to `port`)
    between `endpoints` whose VNI is one of `vnis`, and the rest."""
    from scapy.layers.vxlan import VXLAN  # also binds UDP 4789 to VXLAN in scapy's dissectors

    inner: list[Packet] = []
    plain: list[Packet] = []
    datagrams = strays = 0
    for packet in packets:
        ip = packet.getlayer(_inet.IP)
        udp = ip.payload if ip is not None else None
        if not isinstance(udp, _inet.UDP) or udp.dport != port:
            plain.append(packet)
            continue
        if not {ip.src, ip.dst} <= endpoints:
            strays += 1
            continue
        datagrams += 1
        header = udp.payload if isinstance(udp.payload, VXLAN) else _as_vxlan(bytes(udp.payload), VXLAN)
        if header is not None and header.vni in vnis:
            inner.append(header.payload)
    return VxlanSeen(inner, datagrams, strays, plain)


def _as_vxlan(data: bytes, vxlan: type) -> Packet | None:
    try:
        return vxlan(data)
    except Exception:  # noqa: BLE001 — a datagram scapy cannot dissect carries no VNI we could judge
        return None
