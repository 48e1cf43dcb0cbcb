"""IPv6 and DHCP on real guests: the two lessons, dual-stack on the debian kind and on a user's
cloud image, DHCP leases in the report and in the capture, nothing left behind (no dnsmasq)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from labtools import DEFAULT_START, leftovers, run_report, vnetlab
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package
from support.cloud_image import ensure_cloud_image  # noqa: E402

pytestmark = pytest.mark.e2e
LAB_PREFIX = "a-"


def _ok(result, report, n: int) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["ok"] for c in report["checks"]] == [True] * n, [c["detail"] for c in report["checks"]]


def _check(report: dict, start: str) -> dict:
    return next(c for c in report["checks"] if c["name"].startswith(start))


def _starts(report: dict) -> dict[str, str]:
    """VM → how it started (restored from a warm image unless $VNETLAB_COLD: IPv6 needs no boot)."""
    return {vm: g["start"] for vm, g in report["guests"].items()}


def test_ipv6_ndp_shows_arp_broadcast_beside_ndp_multicast(tmp_path, lab_name):
    result, report = run_report(tmp_path, "ipv6-ndp", lab_name)
    _ok(result, report, 7)
    assert _starts(report) == {"vm1": DEFAULT_START, "vm2": DEFAULT_START}
    capture = _check(report, "capture on br0")
    assert capture["counts"]["ndp_solicitation"] >= 1 and capture["counts"]["ndp_advertisement"] >= 1
    assert capture["counts"]["arp_request"] >= 1 and capture["counts"]["icmp6_echo_pairs"] >= 3
    frames = rdpcap(capture["data"]["pcap"])
    arp = [f for f in frames if f.haslayer(ARP) and f[ARP].op == 1]
    ns = [f for f in frames if f.haslayer(ICMPv6ND_NS) and f[IPv6].src != "::"]
    assert arp and all(f[Ether].dst == "ff:ff:ff:ff:ff:ff" for f in arp)  # ARP asks everyone
    assert ns and any(f[Ether].dst.startswith("33:33:ff:") and f[IPv6].dst.startswith("ff02::1:ff") for f in ns)  # NDP asks a group
    assert leftovers(lab_name) == []


def test_libvirt_nat_vs_bridge_leases_masquerades_and_bridges(tmp_path, lab_name):
    result, report = run_report(tmp_path, "libvirt-nat-vs-bridge", lab_name)
    _ok(result, report, 6)
    [lease] = report["features"]["dhcp"]["leases"]
    assert (lease["bridge"], lease["vm"], lease["nic"], lease["address"]) == ("virbr0", "vm1", "eth0", "192.168.122.2")
    assert "lease on virbr0: vm1 eth0" in result.stdout
    dhcp = _check(report, "capture on virbr0")
    assert all(dhcp["counts"][f"dhcp_{m}"] >= 1 for m in ("discover", "offer", "request", "ack")), dhcp
    masq = _check(report, "capture on eth0")
    assert masq["counts"]["translated"] >= 3 and masq["counts"]["private"] == 0
    assert leftovers(lab_name) == []  # the dnsmasq with it


DUAL_STACK = """\
name: {name}
image: {image}
bridges:
  - name: lan
    subnets: [10.1.1.0/24, fd00:1::/64]
    dhcp: {{range: 10.1.1.100-10.1.1.200, lease: 1h{dhcp_options}}}
    ra: {{prefix: fd00:1::/64{ra_from}}}
vms:
  - name: vm1
    nics: [{{bridge: lan, addresses: [10.1.1.2/24, "fd00:1::2/64"]}}]
  - name: vm2{vm2_image}
    nics: [{{bridge: lan, addresses: [dhcp, slaac]}}]
checks:
  - ping: {{from: vm1, to: vm2}}
  - ping: {{from: vm1, to: vm2, family: 6}}
  - ping: {{from: vm2, to: "fd00:1::2"}}
  - command: {{name: vm2 holds the IPv6 address the plan says, node: vm2, run: "ip -6 -o addr show | grep -F -- ' {{{{ vm2.eth0.address6 }}}} '"}}
  - capture: {{bridge: lan, between: [vm1, vm2], expect: [arp, icmp-echo, ndp, icmp6-echo]}}
  - capture: {{bridge: lan, between: [vm2], expect: [dhcp]}}
  - capture: {{bridge: lan, between: [vm2], expect: [ra]}}
{extra_checks}"""


def _dual_stack(tmp_path: Path, lab_name: str, ra_from: str = "", dhcp_options: str = "", extra_checks: str = "", **fields: str) -> dict:
    scenario = tmp_path / "dual.yaml"
    scenario.write_text(DUAL_STACK.format(ra_from=ra_from, dhcp_options=dhcp_options, extra_checks=extra_checks, **fields))
    result, report = run_report(tmp_path, str(scenario), lab_name)
    _ok(result, report, 7 + extra_checks.count("\n  - "))
    [lease] = report["features"]["dhcp"]["leases"]
    assert (lease["vm"], lease["nic"], lease["address"]) == ("vm2", "eth0", "10.1.1.100")
    [slaac] = report["features"]["dhcp"]["slaac"]
    assert slaac["vm"] == "vm2" and slaac["address"].startswith("fd00:1::") and slaac["address"].endswith("/64")
    assert all(_check(report, f"capture on lan: {e}")["ok"] for e in ("dhcp", "ra"))
    assert leftovers(lab_name) == []
    return report


def test_dual_stack_with_dhcp_and_slaac_on_tiny_from_a_guests_radvd(tmp_path, lab_name):
    """Both guests tiny: vm2 leases with udhcpc (taking the router and DNS options) and forms its
    SLAAC address from the advertisements of vm1's radvd (ra: {from: vm1}), which also gives it
    its IPv6 default route through vm1's link-local address."""
    report = _dual_stack(
        tmp_path, lab_name, ra_from=", from: vm1", name="tiny-dual", image="tiny", vm2_image="",
        dhcp_options=", router: 10.1.1.2, dns: [10.1.1.53, 10.1.1.54]",
        extra_checks=(
            '\n  - command: {name: vm2 took the router and DNS options, node: vm2, run: "ip -4 route show default; cat /etc/resolv.conf",'
            ' expect: {stdout: "default via 10\\\\.1\\\\.1\\\\.2 dev eth0(.|\\\\n)*nameserver 10\\\\.1\\\\.1\\\\.53\\\\nnameserver 10\\\\.1\\\\.1\\\\.54"}}'
            '\n  - command: {name: vm2 routes IPv6 through vm1, node: vm2, run: "ip -6 route show default | grep -F \'default via {{ vm1.eth0.link_local }} dev eth0\'"}\n'
        ),
    )
    assert {g["image"] for g in report["guests"].values()} == {"tiny"}
    assert _starts(report) == {"vm1": DEFAULT_START, "vm2": DEFAULT_START}
    ra = _check(report, "capture on lan: ra")
    assert ra["counts"]["ra"] >= 1 and "vm1's radvd" in ra["detail"], ra


def test_inspect_shows_a_guests_radvd_and_flags_it_stopped(tmp_path, lab_name):
    """`vnetlab inspect` asks a router guest whether its radvd runs (and forwards IPv6), and says
    so when a student (root in the guest) stopped it."""
    scenario = tmp_path / "radvd.yaml"
    scenario.write_text(DUAL_STACK.format(ra_from=", from: vm1", dhcp_options="", extra_checks="", name="tiny-radvd", image="tiny", vm2_image=""))
    try:
        up = vnetlab("up", str(scenario), "--name", lab_name)
        assert up.returncode == 0, up.stdout + up.stderr
        inspect = vnetlab("inspect", lab_name)
        assert inspect.returncode == 0, inspect.stdout
        assert "radvd in vm1" in inspect.stdout and "radvd pid " in inspect.stdout and "forwarding 1" in inspect.stdout, inspect.stdout
        stop = vnetlab("exec", lab_name, "vm1", "--", "kill $(cat /run/vnetlab/radvd.pid)")  # one word: joined as ssh joins them
        assert stop.returncode == 0, stop.stdout + stop.stderr
        inspect = vnetlab("inspect", lab_name)
        assert inspect.returncode == 1 and "radvd does not run in vm1" in inspect.stdout, inspect.stdout
    finally:
        vnetlab("down", lab_name)
    assert leftovers(lab_name) == []


def test_dual_stack_with_dhcp_and_slaac_on_the_debian_kind(tmp_path, lab_name):
    """vm2's systemd-networkd leases, takes the router option, and vnetlab writes the lease's DNS
    servers to /etc/resolv.conf (networkd keeps them only in its lease file)."""
    report = _dual_stack(
        tmp_path, lab_name, name="deb-dual", image="debian", vm2_image="",
        dhcp_options=", router: 10.1.1.2, dns: [10.1.1.53, 10.1.1.54]",
        extra_checks=(
            '\n  - command: {name: vm2 took the router and DNS options, node: vm2, run: "ip -4 route show default; cat /etc/resolv.conf",'
            ' expect: {stdout: "default via 10\\\\.1\\\\.1\\\\.2 dev eth0(.|\\\\n)*nameserver 10\\\\.1\\\\.1\\\\.53\\\\nnameserver 10\\\\.1\\\\.1\\\\.54"}}\n'
        ),
    )
    assert {g["image"] for g in report["guests"].values()} == {"debian"}
    assert _starts(report) == {"vm1": DEFAULT_START, "vm2": DEFAULT_START}


def test_dual_stack_with_dhcp_and_slaac_on_a_users_cloud_image(tmp_path, lab_name):
    """vm2 boots a cloud image: cloud-init's network-config asks for its lease (dhcp4: true); the
    kernel forms its SLAAC address; a tiny vm1 holds static addresses of both families."""
    os.symlink(ensure_cloud_image(), tmp_path / "my-cloud.qcow2")
    report = _dual_stack(tmp_path, lab_name, name="cloud-dual", image="tiny", vm2_image="\n    image: {file: my-cloud.qcow2}")
    assert report["guests"]["vm2"]["image"].startswith("file ") and report["guests"]["vm1"]["image"] == "tiny"
    assert _starts(report) == {"vm1": DEFAULT_START, "vm2": "boot"}  # a cloud image's DHCP NIC asks at boot


CLOUD_SIX = """\
name: cloud-six
image: tiny
bridges:
  - name: lan
    subnets: [10.1.1.0/24, fd00:1::/64]
    ra: {prefix: fd00:1::/64}
vms:
  - name: vm1
    nics: [{bridge: lan, addresses: [10.1.1.2/24, "fd00:1::2/64"]}]
  - name: vm2
    image: {file: my-cloud.qcow2}
    nics: [{bridge: lan, addresses: [10.1.1.3/24, slaac]}]
checks:
  - ping: {from: vm1, to: vm2, family: 6}
  - ping: {from: vm2, to: "fd00:1::2"}
  - command: {name: vm2 holds its link-local and SLAAC addresses, node: vm2, run: "ip -6 -o addr show dev eth0 | grep -F -- ' {{ vm2.eth0.link_local }}/64 ' && ip -6 -o addr show dev eth0 | grep -F -- ' {{ vm2.eth0.address6 }} '"}
"""


def test_slaac_and_link_local_on_a_users_cloud_image_without_dhcp(tmp_path, lab_name):
    """A cloud image's guest with no DHCP NIC is restored in an IPv6 lab (unless $VNETLAB_COLD) and
    forms the link-local and SLAAC addresses of the MAC it took after the restore, not the warm guest's."""
    os.symlink(ensure_cloud_image(), tmp_path / "my-cloud.qcow2")
    scenario = tmp_path / "cloud-six.yaml"
    scenario.write_text(CLOUD_SIX)
    result, report = run_report(tmp_path, str(scenario), lab_name)
    _ok(result, report, 3)
    assert _starts(report) == {"vm1": DEFAULT_START, "vm2": DEFAULT_START}
    [slaac] = report["features"]["dhcp"]["slaac"]
    assert slaac["vm"] == "vm2" and slaac["address"].startswith("fd00:1::5054:ff:fe")
    assert leftovers(lab_name) == []
