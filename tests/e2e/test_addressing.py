"""IPv6 and DHCP on real guests: the two lessons, dual-stack on the debian kind and on a user's
cloud image, DHCP leases in the report and in the capture, nothing left behind (no dnsmasq)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from labtools import leftovers, run_report
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


def test_ipv6_ndp_shows_arp_broadcast_beside_ndp_multicast(tmp_path, lab_name):
    result, report = run_report(tmp_path, "ipv6-ndp", lab_name)
    _ok(result, report, 7)
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
    dhcp: {{range: 10.1.1.100-10.1.1.200, lease: 1h}}
    ra: {{prefix: fd00:1::/64}}
vms:
  - name: vm1
    nics: [{{bridge: lan, addresses: [10.1.1.2/24, "fd00:1::2/64"]}}]
  - name: vm2
    nics: [{{bridge: lan, addresses: [{second}]}}]
checks:
  - ping: {{from: vm1, to: vm2}}
  - ping: {{from: vm1, to: vm2, family: 6}}
  - ping: {{from: vm2, to: "fd00:1::2"}}
  - command: {{name: vm2 holds the IPv6 address the plan says, node: vm2, run: "ip -6 -o addr show | grep -F -- ' {{{{ vm2.eth0.address6 }}}} '"}}
  - capture: {{bridge: lan, between: [vm1, vm2], expect: [arp, icmp-echo, ndp, icmp6-echo]}}
{more}"""


def test_dual_stack_with_dhcp_and_slaac_on_the_debian_kind(tmp_path, lab_name):
    scenario = tmp_path / "deb.yaml"
    scenario.write_text(DUAL_STACK.format(
        name="deb-dual", image="debian", second="dhcp, slaac",
        more="  - capture: {bridge: lan, between: [vm2], expect: [dhcp]}\n  - capture: {bridge: lan, between: [vm2], expect: [ra]}\n",
    ))
    result, report = run_report(tmp_path, str(scenario), lab_name)
    _ok(result, report, 7)
    [lease] = report["features"]["dhcp"]["leases"]
    assert (lease["vm"], lease["address"]) == ("vm2", "10.1.1.100")
    [slaac] = report["features"]["dhcp"]["slaac"]
    assert slaac["vm"] == "vm2" and slaac["address"].startswith("fd00:1::") and slaac["address"].endswith("/64")
    assert leftovers(lab_name) == []


def test_dual_stack_on_a_users_cloud_image(tmp_path, lab_name):
    image = ensure_cloud_image()
    os.symlink(image, tmp_path / "my-cloud.qcow2")
    scenario = tmp_path / "cloud.yaml"
    scenario.write_text(DUAL_STACK.format(name="cloud-dual", image="{file: my-cloud.qcow2}", second='10.1.1.3/24, "fd00:1::3/64"', more=""))
    result, report = run_report(tmp_path, str(scenario), lab_name)
    _ok(result, report, 5)
    assert all(g["image"].startswith("file ") for g in report["guests"].values())
    assert leftovers(lab_name) == []
