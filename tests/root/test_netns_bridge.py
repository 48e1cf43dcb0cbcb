"""Namespaces, bridges, taps and veths for real (root, no VMs).

Everything is created under unique vnltest-*/vnlt* names and removed by the
fixtures even when a test fails. Addresses and traffic only ever live inside
the namespaces created here.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import select
import struct
import subprocess
import time

import pytest
from scapy.layers.l2 import ARP, Ether

from vnetlab.backends import netns
from vnetlab.backends import linux_bridge as lb
from vnetlab.checks.capture import Capture, count_arp_icmp

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

BRIDGE_MAC = "02:00:5e:10:00:01"
_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI = 0x0002, 0x1000


def _wait_until(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True




@pytest.fixture
def tap_name():
    name = f"vnlt{secrets.token_hex(4)}"
    yield name
    lb.delete_link(None, name)  # only if a test left it in the root namespace


def _in_ns(ns, path):
    return netns.run_in_namespace(ns, lambda: open(path).read().strip())


def _link(ns, name):
    return next(link for link in lb.list_links(ns) if link["name"] == name)


def ping(ns, address, count=2):
    return subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", address],
        capture_output=True,
        text=True,
        timeout=30,
    )


# --- namespaces -------------------------------------------------------------


def test_namespace_lifecycle():
    name = f"vnltest-{secrets.token_hex(4)}"
    try:
        assert not netns.namespace_exists(name)
        netns.create_namespace(name)
        assert netns.namespace_exists(name)
        assert name in netns.list_namespaces()
        with pytest.raises(netns.NamespaceError, match="already exists"):
            netns.create_namespace(name)
        assert subprocess.run(["ip", "netns", "exec", name, "true"]).returncode == 0  # iproute2 sees it
    finally:
        netns.delete_namespace(name)
    assert not netns.namespace_exists(name)
    assert name not in netns.list_namespaces()
    netns.delete_namespace(name)  # idempotent


def test_new_namespace_has_lo_up_and_ipv6_off(make_ns):
    ns = make_ns()
    links = lb.list_links(ns)
    assert [link["name"] for link in links] == ["lo"]
    assert links[0]["state"] == "up" and links[0]["addresses"] == ["127.0.0.1/8"]
    assert _in_ns(ns, "/proc/sys/net/ipv6/conf/all/disable_ipv6") == "1"
    assert _in_ns(ns, "/proc/sys/net/ipv6/conf/default/disable_ipv6") == "1"


def test_run_in_namespace_leaves_the_caller_alone(make_ns):
    ns = make_ns()
    mine = os.readlink("/proc/thread-self/ns/net")
    inside = netns.run_in_namespace(ns, os.readlink, "/proc/thread-self/ns/net")
    assert inside != mine
    assert os.stat(netns.namespace_path(ns)).st_ino == int(inside.split("[")[1].rstrip("]"))
    assert os.readlink("/proc/thread-self/ns/net") == mine

    def boom():
        raise KeyError("from inside")

    with pytest.raises(KeyError, match="from inside"):
        netns.run_in_namespace(ns, boom)
    assert os.readlink("/proc/thread-self/ns/net") == mine
    with pytest.raises(netns.NamespaceError, match="does not exist"):
        netns.run_in_namespace("vnltest-absent", os.getpid)


def test_set_sysctl_only_inside_the_namespace(make_ns):
    ns = make_ns()
    root_before = open("/proc/sys/net/ipv4/ip_forward").read()
    netns.set_sysctl(ns, "net.ipv4.ip_forward", "1")
    assert _in_ns(ns, "/proc/sys/net/ipv4/ip_forward") == "1"
    assert open("/proc/sys/net/ipv4/ip_forward").read() == root_before
    netns.set_sysctl(ns, "net/ipv4/conf/lo/forwarding", "0")  # '/' form, for names containing dots
    assert _in_ns(ns, "/proc/sys/net/ipv4/conf/lo/forwarding") == "0"
    for key in ("kernel.hostname", "net.ipv4/../../kernel/hostname", "net..x"):
        with pytest.raises(netns.NamespaceError):
            netns.set_sysctl(ns, key, "x")
    with pytest.raises(netns.NamespaceError):
        netns.set_sysctl(ns, "net.ipv4.no_such_key", "1")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "x\0y"])
def test_invalid_namespace_names_are_refused(bad):
    with pytest.raises(netns.NamespaceError, match="invalid"):
        netns.create_namespace(bad)


# --- links -----------------------------------------------------------------


def test_bridge_has_fixed_mac_no_address_no_ipv6(make_ns):
    ns, other = make_ns(), make_ns()
    lb.create_bridge(ns, "br0", BRIDGE_MAC.upper())
    lb.create_veth(ns, "p0", other, "eth0")
    lb.attach_to_bridge(ns, "p0", "br0")
    bridge = _link(ns, "br0")
    assert bridge == {
        "name": "br0",
        "kind": "bridge",
        "mac": BRIDGE_MAC,  # not taken over from the port
        "state": "up",
        "master": None,
        "addresses": [],
    }
    assert _in_ns(ns, "/proc/sys/net/ipv6/conf/br0/disable_ipv6") == "1"
    with pytest.raises(lb.LinkError, match="br0"):
        lb.create_bridge(ns, "br0", BRIDGE_MAC)
    with pytest.raises(lb.LinkError, match="invalid MAC"):
        lb.create_bridge(ns, "br1", "02:00:00:00:00")
    with pytest.raises(netns.NamespaceError):
        lb.create_bridge("vnltest-absent", "br0", BRIDGE_MAC)


def test_tap_created_down_in_root_then_moved_and_bridged(make_ns, tap_name):
    ns = make_ns()
    lb.create_bridge(ns, "br0", BRIDGE_MAC)
    lb.create_tap(tap_name)
    tap = _link(None, tap_name)
    assert (tap["kind"], tap["state"], tap["master"], tap["addresses"]) == ("tap", "down", None, [])
    with pytest.raises(lb.LinkError, match="already exists"):
        lb.create_tap(tap_name)

    lb.move_link(tap_name, ns)
    assert not lb.link_exists(None, tap_name)
    assert lb.link_exists(ns, tap_name)
    lb.attach_to_bridge(ns, tap_name, "br0")
    assert (_link(ns, tap_name)["master"], _link(ns, tap_name)["state"]) == ("br0", "up")
    lb.detach_from_bridge(ns, tap_name)
    assert _link(ns, tap_name)["master"] is None
    lb.set_link_down(ns, tap_name)
    assert _link(ns, tap_name)["state"] == "down"
    lb.delete_link(ns, tap_name)
    assert not lb.link_exists(ns, tap_name)
    lb.delete_link(ns, tap_name)  # idempotent
    lb.delete_link("vnltest-absent", tap_name)


def _read_arp_reply(fd, asker_ip, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if select.select([fd], [], [], 0.2)[0]:
            frame = Ether(os.read(fd, 2048))
            if ARP in frame and frame[ARP].op == 2 and frame[ARP].pdst == asker_ip:
                return frame
    return None


def test_tap_held_open_moves_and_switches_frames(make_ns, tap_name, tmp_path):
    """What a paused guest needs: its tap moved while qemu (here: this test) holds the fd, then L2 to a host."""
    sw, host = make_ns(), make_ns()
    lb.create_bridge(sw, "br0", BRIDGE_MAC)
    lb.create_veth(sw, "vh", host, "eth0")
    lb.attach_to_bridge(sw, "vh", "br0")
    lb.add_address(host, "eth0", "10.231.7.1/24")
    lb.set_link_up(host, "eth0")
    host_mac = _link(host, "eth0")["mac"]
    guest_mac, guest_ip = "02:00:5e:10:00:99", "10.231.7.9"

    lb.create_tap(tap_name)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", tap_name.encode(), _IFF_TAP | _IFF_NO_PI))
        lb.move_link(tap_name, sw)
        lb.attach_to_bridge(sw, tap_name, "br0")
        capture = Capture(sw, "br0", tmp_path / "tap.pcap")
        capture.start()
        try:
            request = Ether(src=guest_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=guest_mac, psrc=guest_ip, pdst="10.231.7.1")
            os.write(fd, bytes(request))
            reply = _read_arp_reply(fd, guest_ip)
        finally:
            packets = capture.stop()
    finally:
        os.close(fd)
    assert reply is not None, "no ARP reply reached the tap"
    assert reply[ARP].hwsrc == host_mac
    counts = count_arp_icmp(packets, guest_mac, guest_ip, host_mac, "10.231.7.1")
    assert (counts.arp_request, counts.arp_reply) == (1, 1)


def test_tap_dies_with_its_namespace(tap_name):
    ns = f"vnltest-{secrets.token_hex(4)}"
    netns.create_namespace(ns)
    try:
        lb.create_tap(tap_name)
        lb.move_link(tap_name, ns)
    finally:
        netns.delete_namespace(ns)
    assert _wait_until(lambda: not lb.link_exists(None, tap_name)), "tap came back to the root namespace"


def test_move_errors(make_ns, tap_name):
    ns = make_ns()
    with pytest.raises(lb.LinkError, match="no link"):
        lb.move_link(tap_name, ns)
    lb.create_tap(tap_name)
    with pytest.raises(netns.NamespaceError):
        lb.move_link(tap_name, "vnltest-absent")
    assert lb.link_exists(None, tap_name)
    with pytest.raises(lb.LinkError, match="no link"):
        lb.attach_to_bridge(ns, tap_name, "br0")


def test_veth_between_namespaces_carries_traffic(make_ns):
    a, b = make_ns(), make_ns()
    lb.create_veth(a, "va", b, "vb")
    assert lb.link_exists(a, "va") and lb.link_exists(b, "vb")
    assert not lb.link_exists(None, "va") and not lb.link_exists(None, "vb")
    assert _link(a, "va")["state"] == "down" and _link(a, "va")["kind"] == "veth"
    lb.add_address(a, "va", "10.231.8.1/30")
    lb.add_address(b, "vb", "10.231.8.2/30")
    lb.set_link_up(a, "va")
    lb.set_link_up(b, "vb")
    assert _link(a, "va")["addresses"] == ["10.231.8.1/30"]
    result = ping(a, "10.231.8.2")
    assert result.returncode == 0, result.stdout + result.stderr
    lb.set_link_down(b, "vb")
    assert ping(a, "10.231.8.2", count=1).returncode != 0
    with pytest.raises(lb.LinkError, match="invalid address"):
        lb.add_address(a, "va", "10.231.8.300/30")
    lb.delete_link(a, "va")  # takes the peer along
    assert _wait_until(lambda: not lb.link_exists(b, "vb"))


def test_bridge_joins_two_host_namespaces(make_ns):
    sw, h1, h2 = make_ns(), make_ns(), make_ns()
    lb.create_bridge(sw, "br0", BRIDGE_MAC)
    for i, host in enumerate((h1, h2), start=1):
        lb.create_veth(sw, f"p{i}", host, "eth0")
        lb.attach_to_bridge(sw, f"p{i}", "br0")
        lb.add_address(host, "eth0", f"10.231.9.{i}/24")
        lb.set_link_up(host, "eth0")
    assert {link["name"]: link["master"] for link in lb.list_links(sw)} == {
        "lo": None,
        "br0": None,
        "p1": "br0",
        "p2": "br0",
    }
    result = ping(h1, "10.231.9.2")
    assert result.returncode == 0, result.stdout + result.stderr
    lb.detach_from_bridge(sw, "p2")
    assert ping(h1, "10.231.9.2", count=1).returncode != 0


@pytest.mark.parametrize("bad", ["", "x" * 16, "a/b", "a b", "a:b"])
def test_invalid_link_names_are_refused(bad):
    with pytest.raises(lb.LinkError, match="invalid interface name"):
        lb.create_tap(bad)


def _fdb(ns, bridge):
    return subprocess.run(["bridge", "-n", ns, "fdb", "show", "br", bridge], capture_output=True, text=True, timeout=10, check=True).stdout


def test_a_pulled_port_reads_down_and_disabled_and_learned_addresses_are_flushed(make_ns):
    """What a link action reads and does on a bridge port (features/links.py): the veth end's state,
    the port's STP state (disabled while down), and the flush of what the bridge learned."""
    sw, host = make_ns(), make_ns()
    lb.create_bridge(sw, "br0", BRIDGE_MAC)
    lb.create_veth(sw, "p1", host, "eth0")
    lb.attach_to_bridge(sw, "p1", "br0")
    lb.set_link_up(host, "eth0")
    assert lb.link_state(sw, "p1") == "up"
    assert _wait_until(lambda: ("br0", "p1", 3) in lb.bridge_ports(sw))  # forwarding (no STP on br0)
    learned = "02:00:5e:10:00:99"
    subprocess.run(["bridge", "-n", sw, "fdb", "add", learned, "dev", "p1", "master", "dynamic"], check=True, timeout=10)
    assert learned in _fdb(sw, "br0")
    lb.flush_fdb(sw, ["br0"])
    after = _fdb(sw, "br0")
    assert learned not in after and "permanent" in after  # the bridge's and its ports' own entries stay
    lb.set_link_down(sw, "p1")
    assert lb.link_state(sw, "p1") == "down"
    assert _wait_until(lambda: ("br0", "p1", 0) in lb.bridge_ports(sw))  # disabled
    lb.set_link_up(sw, "p1")
    assert lb.link_state(sw, "p1") == "up"
    with pytest.raises(lb.LinkError):
        lb.link_state(sw, "p9")
