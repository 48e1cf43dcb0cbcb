"""Capture on an interface inside a lab namespace (scapy), and pure analysis of the packets.

The capture socket is opened by a thread inside the namespace (an AF_PACKET
socket is bound to the namespace it was created in); the sniffer thread then
reads it from the root namespace. Analysis functions take any iterable of
scapy packets (a capture, rdpcap() output, or packets built in tests).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scapy.arch.linux import L2ListenSocket
from scapy.interfaces import NetworkInterface
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer
from scapy.utils import wrpcap

from vnetlab.backends.netns import run_in_namespace

_START_TIMEOUT = 5.0
# Frames a finished ping caused have crossed the bridge (its reply reached the source), and
# stop() drains what the socket still holds; this margin is for frames a guest queued just
# before its command returned.
_SETTLE = 0.05
_RCVBUF = 4 << 20  # scapy's 64 KiB drops frames in bursts; the kernel caps this at rmem_max
_DLT_EN10MB = 1
_ICMP_ECHO_REQUEST, _ICMP_ECHO_REPLY = 8, 0
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
    nic = NetworkInterface(None, data={"name": iface, "network_name": iface, "description": iface, "index": index})
    sock = L2ListenSocket(iface=nic, promisc=False)
    try:
        sock.ins.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, struct.pack("IHH8s", index, _PACKET_MR_PROMISC, 0, b""))
        sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    except OSError:
        sock.close()
        raise
    return sock


class Capture:
    """Promiscuous capture of everything crossing `iface` in namespace `ns`, saved as pcap."""

    def __init__(self, ns: str, iface: str, pcap_path: Path) -> None:
        self.ns = ns
        self.iface = iface
        self.pcap_path = Path(pcap_path)
        self._socket: L2ListenSocket | None = None
        self._sniffer: AsyncSniffer | None = None

    @property
    def _where(self) -> str:
        return f"capture on {self.iface!r} in namespace {self.ns!r}"

    def start(self) -> None:
        """Start capturing; frames are buffered by the kernel from the moment this returns."""
        if self._sniffer is not None:
            raise RuntimeError(f"{self._where} already started")
        try:
            self._socket = run_in_namespace(self.ns, open_listen_socket, self.iface)
        except OSError as exc:
            raise OSError(f"cannot start {self._where}: {exc.strerror or exc}") from exc  # no "[Errno …]" in the message
        started = threading.Event()
        self._sniffer = AsyncSniffer(opened_socket=self._socket, store=True, started_callback=started.set)
        self._sniffer.start()
        if not started.wait(_START_TIMEOUT):
            self._close()
            raise RuntimeError(f"{self._where} did not start")

    def stop(self) -> list[Packet]:
        """Stop, write pcap_path and return the captured packets (in capture order)."""
        if self._sniffer is None or self._socket is None:
            raise RuntimeError(f"{self._where} is not running")
        sniffer, sock = self._sniffer, self._socket
        time.sleep(_SETTLE)
        try:
            if sniffer.running:
                sniffer.stop()
            else:
                sniffer.join()  # it ended on its own: re-raises what ended it
            packets = list(sniffer.results or [])
            # The sniffer stops at its next wake-up; frames still queued in the socket belong to the capture.
            while sock.select([sock], 0):
                packet = sock.recv()
                if packet is not None:
                    packets.append(packet)
        finally:
            self._close()
        self.pcap_path.parent.mkdir(parents=True, exist_ok=True)
        wrpcap(str(self.pcap_path), packets, linktype=_DLT_EN10MB)
        return packets

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._sniffer = self._socket = None


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
        if type(layer) in (IP, IPv6):
            yield layer
        layer = layer.payload


def _carries(layer: Packet, proto: int) -> bool:
    return (layer.proto if isinstance(layer, IP) else layer.nh) == proto


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
        arp = packet.getlayer(ARP)
        if arp is not None:
            sender = str(arp.hwsrc).lower()
            if arp.op == _ARP_REQUEST and asks_for.get(sender) == arp.pdst:
                arp_request += 1
            elif arp.op == _ARP_REPLY and answers_to.get((sender, arp.psrc)) == str(arp.hwdst).lower():
                arp_reply += 1
        for ip in _ip_layers(packet):
            if not isinstance(ip, IP) or {ip.src, ip.dst} != {ip_a, ip_b} or not isinstance(ip.payload, ICMP):
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


def count_udp(packets: Iterable[Packet], src_ip: str, dst_ip: str, port: int) -> int:
    """Packets carrying UDP between the two addresses (either direction) with `port` at either end."""
    count = 0
    for packet in packets:
        for ip in _ip_layers(packet):
            udp = ip.payload
            if (
                {ip.src, ip.dst} == {src_ip, dst_ip}
                and isinstance(udp, UDP)
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
        ip = packet.getlayer(IP)
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
