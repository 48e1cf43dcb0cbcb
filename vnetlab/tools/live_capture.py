"""`vnetlab capture`: a live capture on a lab interface, streamed as pcap and/or summarised.

The socket is vnetlab.checks.capture's promiscuous listening socket, opened inside the lab
namespace; frames are written as they arrive (pcap flushed per packet), so
`vnetlab capture LAB br0 -w - | wireshark -k -i -` shows traffic live.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from scapy.packet import Packet
from scapy.utils import PcapWriter

from vnetlab.backends.linux_bridge import list_links
from vnetlab.checks.capture import open_listen_socket
from vnetlab.run.lab import LabError
from vnetlab.plan.planner import Plan
from vnetlab.backends.netns import run_in_namespace

_DLT_EN10MB = 1


@dataclass
class CaptureStats:
    packets: int = 0
    seconds: float = 0.0
    protocols: Counter = field(default_factory=Counter)

    def line(self) -> str:
        top = ", ".join(f"{name} {n}" for name, n in self.protocols.most_common(6))
        return f"{self.packets} packet(s) in {self.seconds:.1f} s" + (f": {top}" if top else "")


def protocol_of(packet: Packet) -> str:
    """The innermost layer worth naming (ICMP, ARP, TCP, UDP, …)."""
    names = [layer.__name__ for layer in packet.layers()]
    for name in reversed(names):
        if name not in ("Raw", "Padding"):
            return name
    return names[0] if names else "?"


def live_capture(
    plan: Plan,
    iface: str,
    *,
    pcap: str | None,
    count: int | None,
    timeout: float | None,
    on_packet: Callable[[Packet], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> CaptureStats:
    """Capture on `iface` in the lab's namespace until `count` packets, `timeout` seconds or Ctrl-C;
    pcap is a file to write, "-" for stdout, or None. `on_ready` is called once the socket is open:
    from then on no frame is missed (a script may start its traffic then)."""
    lab = plan.lab
    names = [link["name"] for link in list_links(plan.namespace)]
    if iface not in names:
        raise LabError(f"lab {lab!r} has no interface {iface!r} in {plan.namespace} (interfaces: {', '.join(sorted(names))})")
    sock = run_in_namespace(plan.namespace, open_listen_socket, iface)
    out: BinaryIO | None = None
    if pcap is not None:
        try:
            out = sys.stdout.buffer if pcap == "-" else open(pcap, "wb")  # noqa: SIM115 — closed in finally
        except OSError:
            sock.close()
            raise
    writer = PcapWriter(out, linktype=_DLT_EN10MB, sync=True) if out is not None else None
    if writer is not None:
        writer.write_header(None)  # at once: a reader such as `wireshark -k -i -` waits for it
        writer.flush()
    stats = CaptureStats()
    if on_ready is not None:
        on_ready()
    start = time.monotonic()
    try:
        while count is None or stats.packets < count:
            wait = 0.2 if timeout is None else min(0.2, timeout - (time.monotonic() - start))
            if wait <= 0:
                break
            if not sock.select([sock], wait):
                continue
            packet = sock.recv()
            if packet is None:
                continue
            stats.packets += 1
            stats.protocols[protocol_of(packet)] += 1
            if writer is not None:
                writer.write(packet)
            if on_packet is not None:
                on_packet(packet)
    except KeyboardInterrupt:
        pass
    finally:
        stats.seconds = time.monotonic() - start
        sock.close()
        if writer is not None:
            writer.flush()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    return stats
