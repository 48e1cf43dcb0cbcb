"""Host-side netem's plumbing for real (root, no VMs): an ifb device, a tap's ingress redirected to
it, and the netem qdisc there. A veth end stands in for the tap: a frame sent from its peer (the
guest's side) arrives on its ingress and must come out of the ifb instead. The netem qdisc itself
is set where the kernel has it; where it does not (this machine's kernel), the error must say so.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
from scapy.layers.l2 import ARP, Ether

from vnetlab.backends import host_netem, netns
from vnetlab.backends import linux_bridge as lb
from vnetlab.backends.kernel_probe import host_capabilities
from vnetlab.tools.netem import parse_netem

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

ETH_P_ALL = 0x0003


def _frames_out_of(ns: str, iface: str, send, marker: str, timeout: float = 3.0) -> int:
    """How many frames carrying `marker` leave `iface` while `send()` runs (an AF_PACKET socket in ns)."""

    def listen() -> int:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
            sock.bind((iface, 0))
            sock.settimeout(0.2)
            send()
            seen, deadline = 0, time.monotonic() + timeout
            while time.monotonic() < deadline and seen < 3:
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                seen += marker.encode() in data
            return seen

    return netns.run_in_namespace(ns, listen)


def test_a_taps_ingress_is_redirected_to_its_ifb_and_netem_is_set_there_or_refused_by_name(make_ns):
    ns = make_ns()
    lb.create_veth(ns, "tap0", ns, "guest0")
    for name in ("tap0", "guest0"):
        lb.set_link_up(ns, name)
    host_netem.create_ifb(ns, "nq_0")
    host_netem.redirect_ingress(ns, "tap0", "nq_0")
    host_netem.redirect_ingress(ns, "tap0", "nq_0")  # again (a live change): replaced, not doubled

    def send() -> None:
        frame = bytes(Ether(src="02:00:5e:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.0.2.1", pdst="192.0.2.2") / b"vnetlab-probe")

        def out() -> None:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
                sock.bind(("guest0", 0))
                for _ in range(3):
                    sock.send(frame)

        netns.run_in_namespace(ns, out)

    assert _frames_out_of(ns, "nq_0", send, "vnetlab-probe") == 3  # the guest's frames leave through the ifb

    netem = parse_netem("40ms", "5ms", "10%", "20mbit")
    if "netem" in host_capabilities():
        shown = host_netem.impair(ns, "tap0", "nq_0", netem)
        assert shown.startswith("netem delay 40.0ms jitter 5.0ms loss 10%") and "tbf rate" in shown, shown
        host_netem.clear_netem(ns, "nq_0")
        assert host_netem.read_netem(ns, "nq_0") is None
    else:
        with pytest.raises(host_netem.HostNetemError, match=r"set netem \(delay 40 ms ± 5 ms, loss 10%, rate 20 Mbit/s\) on 'nq_0'.*No such file or directory"):
            host_netem.set_netem(ns, "nq_0", netem)
        assert host_netem.read_netem(ns, "nq_0") is None
