"""Every validation rule is tested: removing any one of them fails a test.

A rule is a call that reports a problem — `r.add(...)` / `rules.add(...)` in the core's cross-field
rules (vnetlab/model/validate.py, including `Rules.address`/`Rules.claim`) and in every feature's
validators (vnetlab/features/*.py). They are found with the ast module, so a new rule is found too.

CASES holds one minimal bad scenario per rule (some rules have a few) with the exact problems it
must cause: field and message pattern, nothing else reported. `test_each_case_reports_exactly_its_problems`
runs them. `test_removing_any_rule_fails_a_case` then disables the rules one at a time — the
function holding the call is recompiled with that one call replaced by `pass`, and the live
function's code is swapped for it (same globals, same object the composed model holds), then
restored — and requires that at least one case fails under each such mutant. A rule no case
notices is printed with its file and line: add a case for it.
"""

from __future__ import annotations

import __future__
import ast
import copy
import importlib
import re
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import vnetlab
from vnetlab.compose import parse_scenario
from vnetlab.model.typed_yaml import Problem, ValidationError

PACKAGE = Path(vnetlab.__file__).parent
RULE_FILES = [PACKAGE / "model" / "validate.py", *sorted((PACKAGE / "features").glob("*.py"))]
RECEIVERS = {"r", "rules"}  # how validators name the shared Rules object; `self` inside class Rules

# Rules no scenario can reach, with the reason. An entry whose rule is gone fails the test, so the
# list cannot go stale. (module, function, start of the call's source) → why it is unreachable.
UNREACHABLE: dict[tuple[str, str, str], str] = {}  # (module, function, source start) → why no scenario can reach it


# -- the cases ---------------------------------------------------------------------------


def nic(bridge: str = "br0", address: str | None = None, **extra: Any) -> dict:
    return {"bridge": bridge, **({"address": address} if address else {}), **extra}


def vm(name: str, *nics: dict, **extra: Any) -> dict:
    return {"name": name, "nics": list(nics) or [nic()], **extra}


def br(name: str = "br0", subnet: str | None = "10.1.1.0/24", **extra: Any) -> dict:
    return {"name": name, **({"subnet": subnet} if subnet else {}), **extra}


TWO_VMS = [vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br0", "10.1.1.3/24"))]


def lab(*, bridges: list | None = None, vms: list | None = None, checks: list | None = None, **sections: Any) -> dict:
    """A small valid lab (br0 10.1.1.0/24, vm1 .2 and vm2 .3 on it), with parts replaced."""
    doc: dict[str, Any] = {"name": "rules", "bridges": bridges or [br()], "vms": vms or copy.deepcopy(TWO_VMS)}
    if checks:
        doc["checks"] = checks
    doc.update(sections)
    return doc


def ping(a: str, b: str, **extra: Any) -> dict:
    return {"ping": {"from": a, "to": b, **extra}}


def capture(between: list[str], expect: list[str], **where: Any) -> dict:
    return {"capture": {**({"bridge": "br0"} if not where else where), "between": between, "expect": expect}}


def container(name: str, address: str, bridge: str = "br0") -> dict:
    return {"name": name, "nic": {"bridge": bridge, "address": address}}


# containers behind NAT: br0 carries their gateway and masquerades out of the routed uplink eth0
NAT = {
    "bridges": [br("br0", "10.2.0.0/24", gateway="10.2.0.1", nat="eth0")],
    "vms": [vm("vm1", nic("br0", "10.2.0.3/24"))],
    "containers": [container("c1", "10.2.0.2/24")],
    "hosts": [{"name": "inet1", "address": "203.0.113.2/24", "uplink": {"name": "eth0", "address": "203.0.113.1/24"}}],
}


# a router VM (vm1) between br0 and wan: the NAT is the router's own (what an exercise's student configures)
ROUTER_NAT = {
    "bridges": [br("br0", "10.2.0.0/24"), br("wan", "203.0.113.0/24")],
    "vms": [vm("vm1", nic("br0", "10.2.0.1/24"), nic("wan", "203.0.113.1/24"))],
    "containers": [container("c1", "10.2.0.2/24")],
    "hosts": [{"name": "inet1", "address": "203.0.113.2/24", "uplink": {"name": "up0", "bridge": "wan"}}],
}


def nat_lab(**changes: Any) -> dict:
    doc = lab(**copy.deepcopy(NAT))
    doc.update(changes)
    return doc


def tunnel(name: str = "wg0", *members: tuple[str, str], underlay: str = "br0", **extra: Any) -> dict:
    members = members or (("vm1", "192.168.2.1/24"), ("vm2", "192.168.2.2/24"))
    return {"name": name, "underlay": underlay, "members": [{"vm": v, "address": a} for v, a in members], **extra}


def op(action: str, bridge: str = "br0", **extra: Any) -> dict:
    return {"op": {"action": action, "bridge": bridge, **extra}}


def perf(a: str, b: str) -> dict:
    return {"perf": {"from": a, "to": b}}


def command(node: str, run: str = "true", **extra: Any) -> dict:
    return {"command": {"node": node, "run": run, **extra}}


def vxl(name: str = "vx1", vni: int = 1, bridges: list[str] | None = None, **extra: Any) -> dict:
    return {"name": name, "vni": vni, "bridges": bridges or ["br0", "br1"], **extra}


# three bridges on one subnet; vm1 on br0 and vm2 on br1, which a VXLAN joins into one segment
VX_BRIDGES = [br(), br("br1"), br("br2")]
VX_LOOP = (
    "this VXLAN clashes with the bridge-links or VXLANs that already join br0 and br1 into one Ethernet segment: "
    "a second path between them closes a loop, and a broadcast would circle it forever"
)


def vx_lab(*vxlans: dict, **changes: Any) -> dict:
    parts: dict[str, Any] = {"bridges": copy.deepcopy(VX_BRIDGES), "vms": [vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br1", "10.1.1.3/24"))]}
    return lab(**{**parts, **changes, "vxlan": list(vxlans)})


MAX_FILES_BYTES = 64 * 1024 * 1024  # vnetlab.features.commands: what `files:` may send per VM


VL_VLANS = [{"vlan": 10, "subnet": "10.0.10.0/24"}, {"vlan": 20, "subnet": "10.0.20.0/24"}]


def vl_br(subnet: str | None = None, **extra: Any) -> dict:
    return br("br0", subnet, **{"type": "ovs", "vlans": copy.deepcopy(VL_VLANS), **extra})


def vl_lab(*vms: dict, bridge: dict | None = None, **changes: Any) -> dict:
    """br0 of type ovs with VLANs 10 and 20; vm1 an access port of VLAN 10, vm2 a trunk of 10 and 20."""
    vms = vms or (vm("vm1", nic(address="10.0.10.2/24", vlan=10)), vm("vm2", nic(trunk=[{"vlan": 10, "address": "10.0.10.3/24"}, {"vlan": 20, "address": "10.0.20.3/24"}])))
    return lab(bridges=[bridge or vl_br()], vms=list(vms), **changes)


HV_SIM = {"hv1": {}, "hv2": {"simulate": True}}
UNDERLAY1, UNDERLAY2 = {"address": "192.0.2.1", "device": "eth1"}, {"address": "192.0.2.2", "device": "eth1"}
HV_REAL = {"hv1": {"underlay": UNDERLAY1}, "hv2": {"uri": "qemu+ssh://root@192.0.2.2/system", "underlay": UNDERLAY2}}


def hv_lab(hosts: dict | None = None, *, vm2: dict | None = None, **changes: Any) -> dict:
    """vm1 on this machine (hv1), vm2 on hv2 (simulated unless `hosts` says otherwise)."""
    vms = [vm("vm1", nic("br0", "10.1.1.2/24")), vm2 or vm("vm2", nic("br0", "10.1.1.3/24"), on="hv2")]
    return lab(vms=vms, hypervisors=copy.deepcopy(hosts or HV_SIM), **changes)


def task(name: str = "t1", checks: list | None = None, **extra: Any) -> dict:
    return {"name": name, "checks": [ping("vm1", "vm2")] if checks is None else checks, **extra}


def ex_lab(*tasks: dict, **extra: Any) -> dict:
    """The small lab as an exercise: title, these tasks (one pinging vm2 by default), more keys."""
    return lab(exercise={"title": "T", "tasks": list(tasks) or [task()], **extra})


@dataclass(frozen=True)
class Case:
    """A scenario (in a folder of its own, with `files`: name → text, bytes, a size for a sparse
    file, or None for a folder) and the problems it must cause, exactly."""

    id: str
    doc: dict
    expected: tuple[tuple[str, str], ...]
    files: dict[str, Any] = field(default_factory=dict)


def case(id: str, doc: dict, *expected: tuple[str, str], files: dict[str, Any] | None = None) -> Case:
    return Case(id, doc, tuple(expected), files or {})


def exact(text: str) -> str:
    return re.escape(text) + "$"


E = exact
C0 = "checks[0]"

CASES = [
    # -- Rules.address and Rules.claim (through a container's address) ----------------------
    case("address-not-ipv4", lab(containers=[container("c1", "10.1.1.9")]), ("containers[0].nic.address", E("expected an IPv4 address with prefix like 10.1.1.2/24, got '10.1.1.9'"))),
    case("address-outside-subnet", lab(containers=[container("c1", "10.9.9.2/24")]), ("containers[0].nic.address", E("10.9.9.2/24 is not in subnet 10.1.1.0/24 of bridge 'br0'"))),
    case("address-network", lab(containers=[container("c1", "10.1.1.0/24")]), ("containers[0].nic.address", E("10.1.1.0 is the network or broadcast address of 10.1.1.0/24"))),
    case("address-claimed", lab(containers=[container("c1", "10.1.1.2/24")]), ("containers[0].nic.address", E("10.1.1.2 is already used by vm1 eth0"))),
    case("address-claimed-by-gateway", lab(bridges=[br(gateway="10.1.1.3")], vms=[vm("vm1", nic("br0", "10.1.1.2/24"))], containers=[container("c1", "10.1.1.3/24")]), ("containers[0].nic.address", E("10.1.1.3 is already used by the gateway of br0"))),
    # -- management -------------------------------------------------------------------------
    case("management-not-a-network", lab(management={"subnet": "172.30.255.1/24"}), ("management.subnet", E("expected an IPv4 network like 172.30.255.0/24, got '172.30.255.1/24'"))),
    case("management-loopback", lab(management={"subnet": "127.0.0.0/24"}), ("management.subnet", E("127.0.0.0/24 overlaps 127.0.0.0/8 (loopback addresses): not usable on a lab segment"))),
    case("management-multicast", lab(management={"subnet": "224.1.0.0/24"}), ("management.subnet", E("224.1.0.0/24 overlaps 224.0.0.0/4 (multicast addresses): not usable on a lab segment"))),
    case("management-too-small", lab(management={"subnet": "172.30.255.0/30"}), ("management.subnet", E("too small: needs room for a gateway and every VM (use /24)"))),
    case("management-too-small-for-the-vms", lab(management={"subnet": "172.30.255.0/29"}, vms=[vm(f"vm{i}") for i in range(6)]), ("management.subnet", E("too small for 6 VMs"))),
    # -- bridges ----------------------------------------------------------------------------
    case("bridge-duplicate", lab(bridges=[br(), br(subnet="10.1.2.0/24")]), ("bridges[1].name", E("duplicate bridge name 'br0'"))),
    case("bridge-vnl-prefix", lab(bridges=[br("vnlx")], vms=[vm("vm1", nic("vnlx"))]), ("bridges[0].name", E("names starting with 'vnl' are reserved for vnetlab's own devices"))),
    case("bridge-lo", lab(bridges=[br("lo")], vms=[vm("vm1", nic("lo"))]), ("bridges[0].name", E("'lo' is the lab namespace's loopback interface"))),
    case("bridge-subnet-host-bits", lab(bridges=[br(subnet="10.1.1.5/24")]), ("bridges[0].subnet", E("expected an IPv4 or IPv6 network like 10.1.1.0/24 or fd00:1::/64 (host bits zero), got '10.1.1.5/24'"))),
    case("bridge-subnet-loopback", lab(bridges=[br(subnet="127.0.0.0/8")], vms=[vm("vm1")]), ("bridges[0].subnet", E("127.0.0.0/8 overlaps 127.0.0.0/8 (loopback addresses): not usable on a lab segment"))),
    case("bridge-subnet-reserved", lab(bridges=[br(subnet="240.1.0.0/16")], vms=[vm("vm1")]), ("bridges[0].subnet", E("240.1.0.0/16 overlaps 240.0.0.0/4 (reserved and broadcast addresses): not usable on a lab segment"))),
    case("bridge-subnet-in-management", lab(bridges=[br(subnet="172.30.0.0/16")], vms=[vm("vm1")]), ("bridges[0].subnet", E("172.30.0.0/16 overlaps the management subnet 172.30.255.0/24 (change management.subnet)"))),
    # -- VMs and their NICs -------------------------------------------------------------------
    # -- images ------------------------------------------------------------------------------
    case("image-kind-and-file", lab(image={"kind": "debian", "file": "x.qcow2"}), ("image", E("expected exactly one of: kind, file"))),
    case("image-packages-need-debian", lab(vms=[vm("vm1", image={"kind": "tiny", "packages": ["frr"]})]), ("vms[0].image.packages", E("extra packages need kind: debian"))),
    case("image-package-name", lab(vms=[vm("vm1", image={"kind": "debian", "packages": ["Bad_Name"]})]), ("vms[0].image.packages", E("not a Debian package name: Bad_Name"))),
    case("image-file-missing", lab(vms=[vm("vm1", image={"file": "nope.qcow2"})]), ("vms[0].image.file", r"image file /.*/nope\.qcow2 does not exist$")),
    case("image-file-not-a-disk", lab(vms=[vm("vm1", image={"file": "notes.txt"})]), ("vms[0].image.file", r"image file /.*/notes\.txt is neither qcow2 nor a bootable raw disk \(no MBR boot signature\)$"), files={"notes.txt": "not a disk\n"}),
    case("image-memory-too-small", lab(image="debian", vms=[vm("vm1", memory=128)]), ("vms[0].memory", E("128 MiB is too little for a debian guest: at least 256"))),
    # -- netem ------------------------------------------------------------------------------
    case("netem-value", lab(vms=[vm("vm1", nic(netem={"delay": "forty", "loss": "120%"}))]), ("vms[0].nics[0].netem.delay", E("expected a duration like 40ms, 1.5s or 500us, got 'forty'")), ("vms[0].nics[0].netem.loss", E("120% is out of range (0% to 100%)"))),
    case("netem-empty", lab(vms=[vm("vm1", nic(netem={}))]), ("vms[0].nics[0].netem", E("expected at least one of: delay, jitter, loss, rate"))),
    case("netem-jitter-alone", lab(vms=[vm("vm1", nic(netem={"jitter": "5ms"}))]), ("vms[0].nics[0].netem.jitter", E("needs a delay to vary around"))),
    case("vm-duplicate", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm1", nic("br0", "10.1.1.3/24"))]), ("vms[1].name", E("duplicate VM name 'vm1'"))),
    case("nic-name-reserved", lab(vms=[vm("vm1", nic(name="mgmt0"))]), ("vms[0].nics[0].name", E("'mgmt0' is reserved inside the guest"))),
    case("nic-name-temporary-prefix", lab(vms=[vm("vm1", nic(name="vnltmp1"))]), ("vms[0].nics[0].name", "'vnltmp1' is reserved inside the guest: names starting with 'vnltmp' are the temporary names")),
    case("nic-name-duplicate", lab(vms=[vm("vm1", nic(), nic(name="eth0"))]), ("vms[0].nics[1].name", E("duplicate interface name 'eth0' in VM 'vm1'"))),
    case("nic-bridge-unknown", lab(vms=[vm("vm1", nic("br9"))]), ("vms[0].nics[0].bridge", E("no bridge named 'br9' (bridges: br0)"))),
    case("nic-address-without-prefix", lab(vms=[vm("vm1", nic("br0", "10.1.1.2"))]), ("vms[0].nics[0].address", E("10.1.1.2 needs its prefix length: expected an address with prefix like 10.1.1.2/24"))),
    case("nic-address-not-an-address", lab(vms=[vm("vm1", nic("br0", "ten.one/24"))]), ("vms[0].nics[0].address", E("expected an IPv4 or IPv6 address with prefix like 10.1.1.2/24 or fd00:1::2/64, dhcp or slaac, got 'ten.one/24'"))),
    case("nic-address-outside-subnet", lab(vms=[vm("vm1", nic("br0", "10.1.2.2/24"))]), ("vms[0].nics[0].address", E("10.1.2.2/24 is not in subnet 10.1.1.0/24 of bridge 'br0'"))),
    case("nic-address-loopback", lab(bridges=[br(subnet=None)], vms=[vm("vm1", nic("br0", "127.0.0.5/8"))]), ("vms[0].nics[0].address", E("127.0.0.5/32 overlaps 127.0.0.0/8 (loopback addresses): not usable on a lab segment"))),
    case("nic-address-this-network", lab(bridges=[br(subnet=None)], vms=[vm("vm1", nic("br0", "0.1.2.3/8"))]), ("vms[0].nics[0].address", E("0.1.2.3/32 overlaps 0.0.0.0/8 ('this network' addresses): not usable on a lab segment"))),
    case("nic-address-multicast", lab(bridges=[br(subnet=None)], vms=[vm("vm1", nic("br0", "239.1.1.1/24"))]), ("vms[0].nics[0].address", E("239.1.1.1/32 overlaps 224.0.0.0/4 (multicast addresses): not usable on a lab segment"))),
    case("nic-address-reserved", lab(bridges=[br(subnet=None)], vms=[vm("vm1", nic("br0", "250.1.1.1/24"))]), ("vms[0].nics[0].address", E("250.1.1.1/32 overlaps 240.0.0.0/4 (reserved and broadcast addresses): not usable on a lab segment"))),
    case("nic-address-broadcast", lab(vms=[vm("vm1", nic("br0", "10.1.1.255/24"))]), ("vms[0].nics[0].address", E("10.1.1.255 is the network or broadcast address of 10.1.1.0/24"))),
    case("nic-address-in-management", lab(bridges=[br(subnet=None)], vms=[vm("vm1", nic("br0", "172.30.255.9/24"))]), ("vms[0].nics[0].address", E("172.30.255.0/24 overlaps the management subnet 172.30.255.0/24"))),
    case("nic-address-duplicate", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br0", "10.1.1.2/24"))]), ("vms[1].nics[0].address", E("10.1.1.2 is already used by vm1 eth0"))),
    # -- IPv6 and dual-stack ---------------------------------------------------------------------
    case("bridge-subnet-and-subnets", lab(bridges=[br(subnets=["10.1.1.0/24", "fd00:1::/64"])]), ("bridges[0].subnets", E("expected one of: subnet, subnets (subnets: [IPv4, IPv6] for a dual-stack segment)"))),
    case("bridge-two-subnets-of-a-family", lab(bridges=[br(subnet=None, subnets=["10.1.1.0/24", "10.1.2.0/24"])]), ("bridges[0].subnets[1]", E("a second IPv4 subnet: a bridge has at most one per family (subnets: [IPv4, IPv6])"))),
    case("bridge-subnet6-link-local", lab(bridges=[br(subnet=None, subnets=["10.1.1.0/24", "fe80::/64"])]), ("bridges[0].subnets[1]", E("fe80::/64 overlaps fe80::/10 (link-local (every NIC forms its own) addresses): not usable on a lab segment"))),
    case("nic-address-and-addresses", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24", addresses=["10.1.1.2/24"]))]), ("vms[0].nics[0].addresses", E("expected one of: address, addresses (addresses: [IPv4, IPv6] for a dual-stack NIC)"))),
    case("nic-two-addresses-of-a-family", lab(vms=[vm("vm1", nic(addresses=["10.1.1.2/24", "10.1.1.4/24"]))]), ("vms[0].nics[0].addresses[1]", E("a second IPv4 address: a NIC has at most one per family (addresses: [IPv4, IPv6])"))),
    case("nic-v6-address-in-a-v4-subnet", lab(vms=[vm("vm1", nic("br0", "fd00:1::2/64"))]), ("vms[0].nics[0].address", E("fd00:1::2/64 is an IPv6 address, but bridge 'br0' has only the IPv4 subnet 10.1.1.0/24: give the bridge both (subnets: [10.1.1.0/24, fd00:1::/64]) or use an IPv4 address"))),
    case("nic-v6-address-outside-subnet", lab(bridges=[br(subnet=None, subnets=["10.1.1.0/24", "fd00:1::/64"])], vms=[vm("vm1", nic("br0", "fd00:2::2/64"))]), ("vms[0].nics[0].address", E("fd00:2::2/64 is not in subnet fd00:1::/64 of bridge 'br0'"))),
    case("nic-v6-address-multicast", lab(bridges=[br(subnet=None)], vms=[vm("vm1", nic("br0", "ff02::5/64"))]), ("vms[0].nics[0].address", E("ff02::5/128 overlaps ff00::/8 (multicast addresses): not usable on a lab segment"))),
    case("nic-v6-subnet-router-anycast", lab(bridges=[br("br0", "fd00:1::/64")], vms=[vm("vm1", nic("br0", "fd00:1::/64"))]), ("vms[0].nics[0].address", E("fd00:1:: is the network address of fd00:1::/64 (the subnet-router anycast address): not a host's"))),
    case("nic-v6-address-duplicate", lab(bridges=[br("br0", "fd00:1::/64")], vms=[vm("vm1", nic("br0", "fd00:1::2/64")), vm("vm2", nic("br0", "fd00:1:0::2/64"))]), ("vms[1].nics[0].address", E("fd00:1::2 is already used by vm1 eth0"))),
    case("ping-family-mismatch", lab(checks=[ping("vm1", "10.1.1.3", family=6)]), (f"{C0}.ping.family", E("family 6 but 10.1.1.3 is an IPv4 address (an address says its family: drop family)"))),
    case("ping-v6-address-in-a-v4-lab", lab(checks=[ping("vm1", "fd00:1::3")]), (f"{C0}.ping.to", E("fd00:1::3 is an IPv6 address, but no NIC or bridge of this lab has IPv6 (its guests run without it): give the NICs IPv6 addresses (addresses: [IPv4, IPv6]) or ping an IPv4 address"))),
    case("ping-no-v6-address", lab(checks=[ping("vm1", "vm2", family=6)]), (f"{C0}.ping.to", E("'vm2' has no IPv6 address to ping"))),
    case("ping-no-common-v6-subnet", lab(bridges=[br("br0", "fd00:1::/64"), br("br1", "fd00:2::/64")], vms=[vm("vm1", nic("br0", "fd00:1::2/64")), vm("vm2", nic("br1", "fd00:2::3/64"))], checks=[ping("vm1", "vm2", family=6)]), (f"{C0}.ping.to", E("'vm1' and 'vm2' have no IPv6 addressed NICs on a common subnet"))),
    case("capture-ndp-without-ipv6", lab(checks=[capture(["vm1", "vm2"], ["ndp"])]), (f"{C0}.capture.between[0]", E("ndp needs an IPv6 address on bridge 'br0': VM 'vm1' has none there")), (f"{C0}.capture.between[1]", E("ndp needs an IPv6 address on bridge 'br0': VM 'vm2' has none there"))),
    case("node-capture-ndp", lab(containers=[container("c1", "10.1.1.9/24")], checks=[capture(["vm1", "c1"], ["ndp"])]), (f"{C0}.capture.expect", E("ndp is judged between VMs with IPv6 addresses on a bridge (containers and hosts have IPv4 only)"))),
    # -- DHCP and router advertisements --------------------------------------------------------------
    case("dhcp-needs-a-server", lab(vms=[vm("vm1", nic("br0", "dhcp"))]), ("vms[0].nics[0].address", E("address dhcp needs a DHCP server on bridge 'br0': give the bridge dhcp: {range: FIRST-LAST}"))),
    case("dhcp-range-outside-subnet", lab(bridges=[br(dhcp={"range": "10.1.2.100-10.1.2.200"})]), ("bridges[0].dhcp.range", E("10.1.2.100-10.1.2.200 is not inside subnet 10.1.1.0/24 of bridge 'br0' (10.1.2.100 and 10.1.2.200 are outside)"))),
    case("dhcp-range-overlaps-statics", lab(bridges=[br(dhcp={"range": "10.1.1.2-10.1.1.20"})]), ("bridges[0].dhcp.range", E("10.1.1.2-10.1.1.20 overlaps static addresses: 10.1.1.2 (vm1 eth0), 10.1.1.3 (vm2 eth0); keep them out of the range"))),
    case("dhcp-range-not-a-range", lab(bridges=[br(dhcp={"range": "10.1.1.100"})]), ("bridges[0].dhcp.range", E("expected FIRST-LAST, two IPv4 addresses of 10.1.1.0/24 (e.g. 10.1.1.100-10.1.1.200), got '10.1.1.100'"))),
    case("dhcp-range-backwards", lab(bridges=[br(dhcp={"range": "10.1.1.200-10.1.1.100"})]), ("bridges[0].dhcp.range", E("10.1.1.200-10.1.1.100: the first address is after the last"))),
    case("dhcp-range-holds-broadcast", lab(bridges=[br(dhcp={"range": "10.1.1.100-10.1.1.255"})]), ("bridges[0].dhcp.range", E("10.1.1.100-10.1.1.255 holds 10.1.1.255, the network or broadcast address of 10.1.1.0/24"))),
    case("dhcp-no-address-for-the-server", lab(bridges=[br("br0", "10.1.1.0/30", dhcp={"range": "10.1.1.1-10.1.1.2"})], vms=[vm("vm1", nic("br0", "dhcp"))]), ("bridges[0].dhcp.range", E("no address of 10.1.1.0/30 is left for the DHCP server (outside the range, unused): shrink the range or give the bridge a gateway"))),
    case("dhcp-range-too-small", lab(bridges=[br(dhcp={"range": "10.1.1.100-10.1.1.100"})], vms=[vm("vm1", nic("br0", "dhcp")), vm("vm2", nic("br0", "dhcp"))]), ("vms[1].nics[0].address", E("the range of bridge 'br0' (10.1.1.100-10.1.1.100) has no address left for this NIC (2 NICs ask it)"))),
    case("dhcp-without-subnet", lab(bridges=[br(subnet=None, dhcp={"range": "10.1.1.100-10.1.1.200"})]), ("bridges[0].dhcp", E("DHCP needs the bridge's IPv4 subnet: give bridge 'br0' subnet: (or subnets: [IPv4, IPv6])"))),
    case("dhcp-on-vlans", vl_lab(vm("vm1", nic(address="dhcp", vlan=10)), bridge=vl_br(dhcp={"range": "10.0.10.100-10.0.10.200"})), ("bridges[0].dhcp", E("a bridge with vlans has one subnet per VLAN: DHCP serves an untagged segment (drop dhcp or vlans)")), ("vms[0].nics[0].address", E("a VLAN NIC cannot ask the bridge's DHCP server (it serves the untagged segment)"))),
    case("dhcp-lease", lab(bridges=[br(dhcp={"range": "10.1.1.100-10.1.1.200", "lease": "soon"})]), ("bridges[0].dhcp.lease", E("expected seconds or a number with s, m, h or d (e.g. 1h), got 'soon'"))),
    case("dhcp-lease-too-short", lab(bridges=[br(dhcp={"range": "10.1.1.100-10.1.1.200", "lease": "60"})]), ("bridges[0].dhcp.lease", E("60 is shorter than dnsmasq's shortest lease (2m)"))),
    case("dhcp-router", lab(bridges=[br(dhcp={"range": "10.1.1.100-10.1.1.200", "router": "10.1.9.1"})]), ("bridges[0].dhcp.router", E("expected an IPv4 address of subnet 10.1.1.0/24, got '10.1.9.1'"))),
    case("dhcp-dns", lab(bridges=[br(dhcp={"range": "10.1.1.100-10.1.1.200", "dns": ["dns.example"]})]), ("bridges[0].dhcp.dns[0]", E("expected an IPv4 address, got 'dns.example'"))),
    case("slaac-needs-ra", lab(bridges=[br(subnet=None, subnets=["10.1.1.0/24", "fd00:7::/64"])], vms=[vm("vm1", nic(addresses=["10.1.1.2/24", "slaac"]))]), ("vms[0].nics[0].addresses[1]", E("address slaac needs router advertisements on bridge 'br0': give the bridge ra: {prefix: fd00:7::/64}"))),
    case("slaac-on-the-router", lab(bridges=[br(ra={"prefix": "fd00:1::/64", "from": "vm1"})], vms=[vm("vm1", nic(addresses=["10.1.1.2/24", "slaac"]))]), ("vms[0].nics[0].addresses[1]", E("vm1 sends the router advertisements of bridge 'br0': a router does not autoconfigure from its own (give it a static IPv6 address)"))),
    case("ra-prefix", lab(bridges=[br(ra={"prefix": "10.1.1.0/24"})]), ("bridges[0].ra.prefix", E("expected an IPv6 prefix like fd00:1::/64 (host bits zero), got '10.1.1.0/24'"))),
    case("ra-prefix-not-64", lab(bridges=[br(ra={"prefix": "fd00:1::/56"})]), ("bridges[0].ra.prefix", E("fd00:1::/56: SLAAC forms addresses in a /64 only"))),
    case("ra-prefix-not-the-subnet", lab(bridges=[br(subnet=None, subnets=["10.1.1.0/24", "fd00:1::/64"], ra={"prefix": "fd00:2::/64"})]), ("bridges[0].ra.prefix", E("fd00:2::/64 is not the IPv6 subnet fd00:1::/64 of bridge 'br0'"))),
    case("ra-from-unknown", lab(bridges=[br(ra={"prefix": "fd00:1::/64", "from": "vm9"})]), ("bridges[0].ra.from", E("expected a VM with a NIC on bridge 'br0', got 'vm9'"))),
    case("ra-from-debian-without-radvd", lab(bridges=[br(ra={"prefix": "fd00:1::/64", "from": "vm1"})], vms=[vm("vm1", nic("br0", "10.1.1.2/24"), image="debian")]), ("bridges[0].ra.from", E("vm1 sends the advertisements with radvd: a debian guest needs it (image: {kind: debian, packages: [radvd]})"))),
    case("capture-dhcp-not-a-client", lab(bridges=[br(dhcp={"range": "10.1.1.100-10.1.1.200"})], checks=[capture(["vm1"], ["dhcp"])]), (f"{C0}.capture.between[0]", E("dhcp is judged for a DHCP client: VM 'vm1' has no `address: dhcp` NIC on bridge 'br0'"))),
    case("capture-ra-without-ra", lab(checks=[capture(["vm1"], ["ra"])]), (f"{C0}.capture.expect", E("ra needs router advertisements on bridge 'br0' (ra: {prefix: …})"))),
    case("capture-ra-not-slaac", lab(bridges=[br(ra={"prefix": "fd00:1::/64"})], checks=[capture(["vm1"], ["ra"])]), (f"{C0}.capture.between[0]", E("ra is judged for a node that takes them: VM 'vm1' has no `address: slaac` NIC on bridge 'br0'"))),
    case("capture-one-node-mixed", lab(bridges=[br(dhcp={"range": "10.1.1.100-10.1.1.200"})], checks=[capture(["vm1", "vm2"], ["arp", "dhcp"])]), (f"{C0}.capture.expect", E("dhcp is judged for one node (between: [NODE]): give it a capture of its own"))),
    case("capture-one-node-on-an-uplink", lab(checks=[capture(["vm1"], ["dhcp"], interface="eth0")]), (f"{C0}.capture.interface", E("dhcp is judged on a bridge (bridge:) or a link (link:)"))),
    case("capture-one-node-not-a-bridge", lab(checks=[capture(["vm1"], ["dhcp"], bridge="br9")]), (f"{C0}.capture.bridge", E("no bridge named 'br9'"))),
    case("capture-one-node-not-on-it", lab(bridges=[br(), br("br1", "10.1.2.0/24", dhcp={"range": "10.1.2.100-10.1.2.200"})], checks=[capture(["vm1"], ["dhcp"], bridge="br1")]), (f"{C0}.capture.between[0]", E("expected a VM with a NIC on bridge 'br1', got 'vm1'"))),
    # -- ping ---------------------------------------------------------------------------------
    case("ping-from-unknown", lab(checks=[ping("vm9", "vm2")]), (f"{C0}.ping.from", E("no VM named 'vm9'"))),
    case("ping-itself", lab(checks=[ping("vm1", "vm1")]), (f"{C0}.ping.to", E("a VM pinging itself proves nothing about the bridge"))),
    case("ping-no-common-subnet", lab(bridges=[br(), br("br1", "10.1.2.0/24")], vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br1", "10.1.2.3/24"))], checks=[ping("vm1", "vm2")]), (f"{C0}.ping.to", E("'vm1' and 'vm2' have no addressed NICs on a common subnet"))),
    case("ping-to-neither-vm-nor-address", lab(checks=[ping("vm1", "vm9")]), (f"{C0}.ping.to", E("expected a VM name or an IPv4 or IPv6 address, got 'vm9'"))),
    case("ping-via-unknown-tunnel", lab(wireguard=[tunnel()], checks=[ping("vm1", "vm2", via="wg9")]), (f"{C0}.ping.via", E("no WireGuard tunnel named 'wg9' (tunnels: wg0)"))),
    case("ping-via-to-an-address", lab(wireguard=[tunnel()], checks=[ping("vm1", "10.1.1.3", via="wg0")]), (f"{C0}.ping.to", E("with via, expected a VM name (a member of tunnel 'wg0'), got '10.1.1.3'"))),
    case("ping-via-itself", lab(wireguard=[tunnel()], checks=[ping("vm1", "vm1", via="wg0")]), (f"{C0}.ping.to", E("a VM pinging itself proves nothing about the tunnel"))),
    case("ping-via-non-member", lab(vms=[*copy.deepcopy(TWO_VMS), vm("vm3", nic("br0", "10.1.1.4/24"))], wireguard=[tunnel()], checks=[ping("vm3", "vm1", via="wg0")]), (f"{C0}.ping.from", E("VM 'vm3' is not a member of tunnel 'wg0'"))),
    case("node-ping-from-unknown", lab(containers=[container("c1", "10.1.1.9/24")], checks=[ping("x9", "c1")]), (f"{C0}.ping.from", E("no VM, container or host named 'x9'"))),
    case("node-ping-itself", lab(containers=[container("c1", "10.1.1.9/24")], checks=[ping("c1", "c1")]), (f"{C0}.ping.to", E("a node pinging itself proves nothing about the network"))),
    case("node-ping-no-route", lab(bridges=[br(), br("br1", "10.1.2.0/24")], containers=[container("c1", "10.1.1.9/24"), container("c2", "10.1.2.9/24", "br1")], checks=[ping("c1", "c2")]), (f"{C0}.ping.to", E("'c1' has no route to 'c2' (no common subnet, and no NAT uplink of its bridge leading there)"))),
    case("node-ping-to-neither", lab(containers=[container("c1", "10.1.1.9/24")], checks=[ping("c1", "zz")]), (f"{C0}.ping.to", E("expected a VM, container or host name or an IPv4 or IPv6 address, got 'zz'"))),
    case("ping-to-bad-template", lab(checks=[ping("vm1", "{{ vm9.ip }}")]), (f"{C0}.ping.to", r"template variable 'vm9' is undefined")),
    case("ping-to-nic-of-unknown-node", lab(checks=[ping("vm1", "vm9.eth0")]), (f"{C0}.ping.to", E("no VM named 'vm9' (to: is a node, NODE.NIC or an IPv4 or IPv6 address)"))),
    case("ping-to-unaddressed-nic", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br0", "10.1.1.3/24"), nic("br0"))], checks=[ping("vm1", "vm2.eth1")]), (f"{C0}.ping.to", E("'vm2' has no addressed interface named 'eth1' (expected NODE.NIC like vm2.eth0; its addressed interfaces: eth0)"))),
    case("ping-to-unaddressed-vm", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2")], checks=[ping("vm1", "vm2")]), (f"{C0}.ping.to", E("'vm2' has no address to ping"))),
    # -- link faults: actions and pings that measure a recovery ---------------------------------
    case("action-unknown-link", lab(checks=[{"action": {"link": "vm3.eth0", "state": "down"}}]), (f"{C0}.action.link", E("no VM, container or host named 'vm3'"))),
    case("action-unknown-nic", lab(checks=[{"action": {"link": "vm1.eth7", "state": "down"}}]), (f"{C0}.action.link", E("VM 'vm1' has no NIC named 'eth7' (its NICs: eth0)"))),
    case("action-no-bridge-link", lab(checks=[{"action": {"link": ["br0", "br1"], "state": "down"}}]), (f"{C0}.action.link", E("no bridge-link joins 'br0' and 'br1' (bridge-links: none)"))),
    case("action-wait-unreadable", lab(checks=[{"action": {"wait": "2 s"}}]), (f"{C0}.action.wait", E("expected a duration like 40ms, 1.5s or 500us, got '2 s'"))),
    case("action-netem-unknown-link", lab(checks=[{"action": {"netem": {"link": "vm9.eth0", "loss": "30%"}}}]), (f"{C0}.action.netem.link", E("no VM, container or host named 'vm9'"))),
    case("action-netem-on-a-container", lab(containers=[container("c1", "10.1.1.9/24")], checks=[{"action": {"netem": {"link": "c1.eth0", "loss": "30%"}}}]), (f"{C0}.action.netem.link", E("netem impairs a VM NIC: 'c1' is not a VM of the scenario"))),
    case("action-netem-clear-with-values", lab(checks=[{"action": {"netem": {"link": "vm1.eth0", "loss": "30%", "clear": True}}}]), (f"{C0}.action.netem.clear", E("clear takes no delay, jitter, loss or rate"))),
    case("action-netem-value", lab(checks=[{"action": {"netem": {"link": "vm1.eth0", "loss": "130%"}}}]), (f"{C0}.action.netem.loss", E("130% is out of range (0% to 100%)"))),
    case("ping-recovery-bound-without-measure", lab(checks=[ping("vm1", "vm2", **{"recovery-max-s": 3})]), (f"{C0}.ping.recovery-max-s", E("recovery-max-s bounds a measured recovery: add measure: recovery"))),
    case("ping-recovery-must-fail", lab(checks=[ping("vm1", "vm2", count=40, measure="recovery", expect="failure"), {"action": {"wait": "1s"}}]), (f"{C0}.ping.measure", E("a recovery is measured on a ping that gets replies back in the end: drop expect"))),
    case("ping-recovery-too-short", lab(checks=[ping("vm1", "vm2", count=5, measure="recovery"), {"action": {"wait": "1s"}}]), (f"{C0}.ping.count", E("5 requests (20 a second) cannot see an outage and its end: at least 20, as many as the outage and the recovery take"))),
    case("ping-recovery-nothing-after", lab(checks=[{"action": {"wait": "1s"}}, ping("vm1", "vm2", count=40, measure="recovery")]), ("checks[1].ping.measure", E("nothing after this ping acts on the lab: put the actions that cause the outage after it (e.g. - action: {link: vm2.eth0, state: down})"))),
    # -- capture between VMs on a bridge ------------------------------------------------------
    case("capture-bridge-unknown", lab(checks=[capture(["vm1", "vm2"], ["arp"], bridge="br9")]), (f"{C0}.capture.bridge", E("no bridge named 'br9'"))),
    case("capture-vm-unaddressed", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2")], checks=[capture(["vm1", "vm2"], ["arp"])]), (f"{C0}.capture.between[1]", E("VM 'vm2' has no addressed NIC on bridge 'br0'"))),
    case("capture-same-vm", lab(checks=[capture(["vm1", "vm1"], ["arp"])]), (f"{C0}.capture.between", E("expected two different VMs"))),
    case("capture-routed-vm-unaddressed", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2")], checks=[capture(["vm1", "vm2"], ["icmp-echo"])]), (f"{C0}.capture.between[1]", E("VM 'vm2' has no address: there is no exchange of it to capture"))),
    # -- capture on an uplink or with the features' nodes --------------------------------------
    case("node-capture-bridge-unknown", lab(containers=[container("c1", "10.1.1.9/24")], checks=[capture(["vm1", "c1"], ["icmp-echo"], bridge="br9")]), (f"{C0}.capture.bridge", E("no bridge named 'br9'"))),
    case("node-capture-uplink-unknown", lab(checks=[capture(["vm1", "vm2"], ["icmp-echo"], interface="eth9")]), (f"{C0}.capture.interface", E("no uplink named 'eth9' (uplinks: none)"))),
    case("node-capture-between-unknown", lab(checks=[capture(["vm1", "zz"], ["icmp-echo"])]), (f"{C0}.capture.between[1]", E("no VM, container or host named 'zz'"))),
    case("node-capture-same-node", lab(containers=[container("c1", "10.1.1.9/24")], checks=[capture(["c1", "c1"], ["icmp-echo"])]), (f"{C0}.capture.between", E("expected two different nodes"))),
    case("node-capture-no-route", lab(bridges=[br(), br("br1", "10.1.2.0/24")], containers=[container("c1", "10.1.1.9/24"), container("c2", "10.1.2.9/24", "br1")], checks=[capture(["c1", "c2"], ["icmp-echo"])]), (f"{C0}.capture.between", E("'c1' has no route to 'c2': there is no exchange between them to capture"))),
    case("node-capture-vm-only-expectation", lab(wireguard=[tunnel()], containers=[container("c1", "10.1.1.9/24")], checks=[capture(["vm1", "c1"], ["wireguard-udp"])]), (f"{C0}.capture.expect", E("wireguard-udp is judged between VMs on a bridge, not with containers or hosts"))),
    case("node-capture-arp-off-the-bridge", nat_lab(checks=[capture(["c1", "inet1"], ["arp"])]), (f"{C0}.capture.expect", E("arp needs both nodes addressed on bridge 'br0'"))),
    # -- capture of a routed path (across segments) ---------------------------------------------
    case("routed-bridge-unknown", lab(checks=[capture(["vm1", "vm2"], ["routed"], bridge="br9")]), (f"{C0}.capture.bridge", E("no bridge named 'br9'"))),
    case("routed-between-unknown", lab(checks=[capture(["vm9", "vm2"], ["routed"])]), (f"{C0}.capture.between[0]", E("no VM, container or host named 'vm9'"))),
    case("routed-same-node", lab(checks=[capture(["vm1", "vm1"], ["routed"])]), (f"{C0}.capture.between", E("expected two different nodes"))),
    case("routed-on-an-interface", lab(checks=[capture(["vm1", "vm2"], ["routed"], interface="eth0")]), (f"{C0}.capture.expect", E("routed is judged on a bridge (bridge:)"))),
    case("routed-target-off-the-bridge", lab(bridges=[br(), br("br1", "10.1.2.0/24")], vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br1", "10.1.2.3/24"))], checks=[capture(["vm1", "vm2"], ["routed"])]), (f"{C0}.capture.between[1]", E("routed needs between[1] ('vm2') addressed on bridge 'br0', where the routed packets arrive"))),
    case("routed-source-unaddressed", lab(vms=[vm("vm1"), vm("vm2", nic("br0", "10.1.1.3/24"))], checks=[capture(["vm1", "vm2"], ["routed"])]), (f"{C0}.capture.between[0]", E("'vm1' has no address to send from"))),
    # -- containers and outside hosts ------------------------------------------------------------
    case("gateway-without-subnet", lab(bridges=[br(), br("br1", None, gateway="10.2.0.1")]), ("bridges[1].gateway", E("a gateway needs the bridge's IPv4 subnet"))),
    case("container-named-like-a-vm", lab(containers=[container("vm1", "10.1.1.9/24")]), ("containers[0].name", E("'vm1' is already the name of a VM, container or host (each node has its own namespace)"))),
    case("container-veth-clash", lab(bridges=[br(), br("ve-c1", "10.1.2.0/24")], containers=[container("c1", "10.1.1.9/24")]), ("containers[0].name", E("its veth 've-c1' clashes with another interface of the lab namespace"))),
    case("container-bridge-unknown", lab(containers=[container("c1", "10.1.1.9/24", "br9")]), ("containers[0].nic.bridge", E("no bridge named 'br9' (bridges: br0)"))),
    case("host-named-like-a-vm", lab(hosts=[{"name": "vm1", "address": "10.1.1.100/24", "uplink": {"name": "eth0", "bridge": "br0"}}]), ("hosts[0].name", E("'vm1' is already the name of a VM, container or host (each node has its own namespace)"))),
    case("uplink-named-like-a-bridge", lab(hosts=[{"name": "lan1", "address": "10.1.1.100/24", "uplink": {"name": "br0", "bridge": "br0"}}]), ("hosts[0].uplink.name", E("'br0' is already an interface of the lab namespace (or reserved)"))),
    case("uplink-bridge-unknown", lab(hosts=[{"name": "lan1", "address": "10.1.1.100/24", "uplink": {"name": "eth0", "bridge": "br9"}}]), ("hosts[0].uplink.bridge", E("no bridge named 'br9' (bridges: br0)"))),
    case("uplink-overlaps-a-bridge", lab(hosts=[{"name": "inet1", "address": "10.1.1.100/24", "uplink": {"name": "eth0", "address": "10.1.1.1/24"}}]), ("hosts[0].uplink.address", E("10.1.1.0/24 overlaps 10.1.1.0/24, a subnet already in the lab (the outside needs its own)"))),
    case("unaddressed-unknown", lab(checks=[{"unaddressed": {"interface": "br9"}}]), (f"{C0}.unaddressed.interface", E("no bridge or uplink named 'br9'"))),
    case("bridged-on-a-bridge", lab(checks=[capture(["vm1", "vm2"], ["bridged"])]), (f"{C0}.capture.expect", E("bridged is judged on a bridged uplink (interface:) leading to between[1]"))),
    # -- NAT ----------------------------------------------------------------------------------------
    case("nat-without-gateway", nat_lab(bridges=[br("br0", "10.2.0.0/24", nat="eth0")]), ("bridges[0].nat", E("NAT needs a gateway on the bridge (the containers' next hop)"))),
    case("nat-uplink-unknown", nat_lab(bridges=[br("br0", "10.2.0.0/24", gateway="10.2.0.1", nat="eth9")]), ("bridges[0].nat", E("no routed uplink named 'eth9' (routed uplinks: eth0)"))),
    case("masqueraded-on-a-bridge-host", nat_lab(checks=[capture(["c1", "vm1"], ["masqueraded"], interface="eth0")]), (f"{C0}.capture.expect", E("masqueraded is judged on a routed uplink (interface:) leading to between[1]"))),
    case("masqueraded-from-another-bridge", nat_lab(bridges=[br("br0", "10.2.0.0/24", gateway="10.2.0.1", nat="eth0"), br("br1", "10.3.0.0/24")], vms=[vm("vm1", nic("br0", "10.2.0.3/24")), vm("vm2", nic("br1", "10.3.0.2/24"))], checks=[capture(["vm2", "inet1"], ["masqueraded"], interface="eth0")]), (f"{C0}.capture.between", E("'vm2' has no route to 'inet1': there is no exchange between them to capture")), (f"{C0}.capture.between[0]", E("masqueraded needs a container (or a VM leasing its address there) whose bridge masquerades out of 'eth0'"))),
    case("masqueraded-by-a-container", lab(**ROUTER_NAT, checks=[capture(["c1", "inet1"], ["masqueraded"], bridge="wan")]), (f"{C0}.capture.between", E("'c1' has no route to 'inet1': there is no exchange between them to capture")), (f"{C0}.capture.between[0]", E("masqueraded on bridge 'wan' is judged from the VM that masquerades: a VM addressed on 'wan' and on another bridge, got 'c1'"))),
    case("masqueraded-to-the-inside", lab(**ROUTER_NAT, checks=[capture(["vm1", "c1"], ["masqueraded"], bridge="wan")]), (f"{C0}.capture.between[1]", E("masqueraded on bridge 'wan' needs between[1] addressed on it, where the translated packets go; 'c1' is not"))),
    # -- device operations -----------------------------------------------------------------------------
    case("op-bridge-unknown", lab(checks=[op("list", "br9")]), (f"{C0}.op.bridge", E("no bridge named 'br9'"))),
    case("op-on-ovs", lab(bridges=[br(type="ovs")], checks=[op("list")]), (f"{C0}.op.bridge", E("device operations work on linux bridges; 'br0' is type ovs"))),
    case("op-needs-vm", lab(checks=[op("detach")]), (f"{C0}.op.vm", E("action detach needs the VM whose tap it is about"))),
    case("op-vm-unknown", lab(checks=[op("attach", vm="vm9")]), (f"{C0}.op.vm", E("no VM named 'vm9'"))),
    case("op-vm-not-on-bridge", lab(bridges=[br(), br("br1", "10.1.2.0/24")], vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br1", "10.1.2.3/24"))], checks=[op("delete-tap", vm="vm2")]), (f"{C0}.op.vm", E("VM 'vm2' has no NIC on bridge 'br0'"))),
    case("op-takes-no-vm", lab(checks=[op("list", vm="vm1")]), (f"{C0}.op.vm", E("action list takes no vm"))),
    case("op-needs-address", lab(checks=[op("add-address")]), (f"{C0}.op.address", E("action add-address needs an address with prefix, e.g. 10.1.1.1/24"))),
    case("op-address-not-ipv4", lab(checks=[op("delete-address", address="10.1.1.1")]), (f"{C0}.op.address", E("expected an IPv4 address with prefix like 10.1.1.1/24, got '10.1.1.1'"))),
    case("op-takes-no-address", lab(checks=[op("link-down", address="10.1.1.1/24")]), (f"{C0}.op.address", E("action link-down takes no address"))),
    # -- perf -------------------------------------------------------------------------------------------
    case("perf-unknown-node", lab(checks=[perf("vm1", "vm9")]), (f"{C0}.perf.to", E("no VM, container or host named 'vm9'"))),
    case("perf-itself", lab(checks=[perf("vm1", "vm1")]), (f"{C0}.perf.to", E("measuring a node against itself says nothing about the network"))),
    case("perf-no-route", lab(bridges=[br(), br("br1", "10.1.2.0/24")], vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br1", "10.1.2.3/24"))], checks=[perf("vm1", "vm2")]), (f"{C0}.perf.to", E("'vm1' has no route to 'vm2'"))),
    # -- WireGuard ----------------------------------------------------------------------------------------
    case("tunnel-duplicate", lab(wireguard=[tunnel(), tunnel("wg0", ("vm1", "192.168.3.1/24"), ("vm2", "192.168.3.2/24"), **{"listen-port": 51821})]), ("wireguard[0].name", E("duplicate tunnel name 'wg0'")), ("wireguard[1].name", E("duplicate tunnel name 'wg0'"))),
    case("tunnel-reserved-name", lab(wireguard=[tunnel("mgmt0")]), ("wireguard[0].name", E("'mgmt0' is reserved inside the guest"))),
    case("tunnel-port-taken", lab(wireguard=[tunnel(), tunnel("wg1", ("vm1", "192.168.3.1/24"), ("vm2", "192.168.3.2/24"))]), ("wireguard[1].listen-port", E("51820 is already the port of tunnel 'wg0' in VM 'vm1'"))),
    case("tunnel-underlay-unknown", lab(wireguard=[tunnel(underlay="br9")]), ("wireguard[0].underlay", E("no bridge named 'br9' (bridges: br0)"))),
    case("tunnel-member-twice", lab(wireguard=[tunnel("wg0", ("vm1", "192.168.2.1/24"), ("vm1", "192.168.2.2/24"))]), ("wireguard[0].members[1].vm", E("duplicate member 'vm1'"))),
    case("tunnel-member-unknown", lab(wireguard=[tunnel("wg0", ("vm1", "192.168.2.1/24"), ("vm9", "192.168.2.2/24"))]), ("wireguard[0].members[1].vm", E("no VM named 'vm9'"))),
    case("tunnel-member-off-the-underlay", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2")], wireguard=[tunnel()]), ("wireguard[0].members[1].vm", E("VM 'vm2' has no IPv4-addressed NIC on bridge 'br0' (the tunnel's underlay)"))),
    case("tunnel-named-like-a-nic", lab(wireguard=[tunnel("eth0")]), ("wireguard[0].name", E("'eth0' is already an interface name in VM 'vm1'")), ("wireguard[0].name", E("'eth0' is already an interface name in VM 'vm2'"))),
    case("tunnel-address-not-ipv4", lab(wireguard=[tunnel("wg0", ("vm1", "192.168.2.1"), ("vm2", "192.168.2.2/24"))]), ("wireguard[0].members[0].address", E("expected an IPv4 address with prefix like 192.168.2.1/24, got '192.168.2.1'"))),
    case("tunnel-address-other-subnet", lab(wireguard=[tunnel("wg0", ("vm1", "192.168.2.1/24"), ("vm2", "192.168.3.2/24"))]), ("wireguard[0].members[1].address", E("192.168.3.2/24 is not in the tunnel's subnet 192.168.2.0/24 (from members[0])"))),
    case("tunnel-address-broadcast", lab(wireguard=[tunnel("wg0", ("vm1", "192.168.2.1/24"), ("vm2", "192.168.2.255/24"))]), ("wireguard[0].members[1].address", E("192.168.2.255 is the network or broadcast address of 192.168.2.0/24"))),
    case("tunnel-address-overlaps", lab(wireguard=[tunnel("wg0", ("vm1", "10.1.1.51/24"), ("vm2", "10.1.1.52/24"))]), ("wireguard[0].members[0].address", E("10.1.1.0/24 overlaps 10.1.1.0/24, a subnet already in the lab (a tunnel needs its own)")), ("wireguard[0].members[1].address", E("10.1.1.0/24 overlaps 10.1.1.0/24, a subnet already in the lab (a tunnel needs its own)"))),
    case("tunnel-address-claimed", lab(wireguard=[tunnel("wg0", ("vm1", "192.168.2.1/24"), ("vm2", "192.168.2.1/24"))]), ("wireguard[0].members[1].address", E("192.168.2.1 is already used by vm1 wg0"))),
    case("wireguard-check-unknown-tunnel", lab(wireguard=[tunnel()], checks=[{"wireguard": {"tunnel": "wg9", "between": ["vm1", "vm2"]}}]), (f"{C0}.wireguard.tunnel", E("no WireGuard tunnel named 'wg9' (tunnels: wg0)"))),
    case("wireguard-check-non-member", lab(vms=[*copy.deepcopy(TWO_VMS), vm("vm3", nic("br0", "10.1.1.4/24"))], wireguard=[tunnel()], checks=[{"wireguard": {"tunnel": "wg0", "between": ["vm1", "vm3"]}}]), (f"{C0}.wireguard.between[1]", E("VM 'vm3' is not a member of tunnel 'wg0'"))),
    case("wireguard-check-same-vm", lab(wireguard=[tunnel()], checks=[{"wireguard": {"tunnel": "wg0", "between": ["vm1", "vm1"]}}]), (f"{C0}.wireguard.between", E("expected two different VMs"))),
    case("wireguard-capture-without-tunnel", lab(checks=[capture(["vm1", "vm2"], ["wireguard-udp", "no-plaintext-tunnel"])]), (f"{C0}.capture.expect", E("wireguard-udp, no-plaintext-tunnel needs a WireGuard tunnel with underlay 'br0' joining vm1 and vm2"))),
    # -- users' files, shares, commands --------------------------------------------------------------------
    case("file-dest-not-plain", lab(vms=[vm("vm1", files=[{"src": "a.txt", "dest": "/etc/../a.txt"}])]), ("vms[0].files[0].dest", E("'/etc/../a.txt' is not a plain absolute path (no '..', '.', '//')")), files={"a.txt": "a\n"}),
    case("file-src-outside", lab(vms=[vm("vm1", files=[{"src": "../a.txt", "dest": "/a.txt"}])]), ("vms[0].files[0].src", r"'\.\./a\.txt' is /.*/a\.txt, outside the scenario's folder .*: a scenario reads files from its own folder only .*--allow-host-paths")),
    case("file-src-never", lab(vms=[vm("vm1", files=[{"src": "/etc/hostname", "dest": "/a.txt"}])]), ("vms[0].files[0].src", E("'/etc/hostname' is /etc/hostname, in /etc: vnetlab never copies or shares /etc into a guest, even with --allow-host-paths"))),
    case("file-src-missing", lab(vms=[vm("vm1", files=[{"src": "nope.txt", "dest": "/a.txt"}])]), ("vms[0].files[0].src", r"no file /.*/nope\.txt$")),
    case("file-template-not-text", lab(vms=[vm("vm1", files=[{"src": "blob", "dest": "/blob", "template": True}])]), ("vms[0].files[0].src", "template: true needs a UTF-8 text file: "), files={"blob": b"\xff\xfe\x00bad"}),
    case("file-template-undefined", lab(vms=[vm("vm1", files=[{"src": "t.txt", "dest": "/t", "template": True}])]), ("vms[0].files[0].src", re.escape("template variable 'nobody' is undefined")), files={"t.txt": "{{ nobody.ip }}\n"}),
    case("files-too-big", lab(vms=[vm("vm1", files=[{"src": "big", "dest": "/big"}])]), ("vms[0].files", E(f"{MAX_FILES_BYTES + 1} bytes in all; at most {MAX_FILES_BYTES} per VM")), files={"big": MAX_FILES_BYTES + 1}),
    case("shares-too-many", lab(vms=[vm("vm1", shares=[{"src": "d", "dest": f"/mnt/{i}"} for i in range(9)])]), ("vms[0].shares", E("at most 8 shares per VM")), files={"d": None}),
    case("share-src-outside", lab(vms=[vm("vm1", shares=[{"src": "../d", "dest": "/mnt/d"}])]), ("vms[0].shares[0].src", r"'\.\./d' is /.*/d, outside the scenario's folder ")),
    case("share-src-root", lab(vms=[vm("vm1", shares=[{"src": "/", "dest": "/mnt/d"}])]), ("vms[0].shares[0].src", E("'/' is the host's whole file system: never copied or shared, even with --allow-host-paths"))),
    case("share-src-missing", lab(vms=[vm("vm1", shares=[{"src": "nope", "dest": "/mnt/d"}])]), ("vms[0].shares[0].src", r"no folder /.*/nope$")),
    case("share-dest-not-plain", lab(vms=[vm("vm1", shares=[{"src": "d", "dest": "/mnt//d"}])]), ("vms[0].shares[0].dest", E("'/mnt//d' is not a plain absolute path (no '..', '.', '//')")), files={"d": None}),
    case("exec-template-undefined", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24"), exec=["ping -c1 {{ vm9.ip }}"])]), ("vms[0].exec[0]", re.escape("template variable 'vm9' is undefined"))),
    case("command-on-unknown", lab(checks=[command("vm9")]), (f"{C0}.command.node", E("no VM, container or host named 'vm9'"))),
    case("command-template-syntax", lab(checks=[command("vm1", "echo {{ vm2.ip ")]), (f"{C0}.command.run", "template syntax error: ")),
    case("command-bad-regex", lab(checks=[command("vm1", expect={"stdout": "("})]), (f"{C0}.command.expect.stdout", "not a regular expression: ")),
    case("command-retry-longer-than-its-time", lab(checks=[command("vm1", retry={"for": 2, "every": 5})]), (f"{C0}.command.retry.every", E("every 5 s is longer than for 2 s: one attempt only"))),
    # -- MTU and path-MTU checks -----------------------------------------------------------------------
    case("mtu-on-ovs", lab(bridges=[br(type="ovs", mtu=9000)]), ("bridges[0].mtu", E("bridge type ovs takes no mtu here: vnetlab sets MTUs on Linux bridges (type linux) only"))),
    case("nic-mtu-above-bridge", lab(bridges=[br(mtu=1400)], vms=[vm("vm1", nic("br0", "10.1.1.2/24", mtu=1500))]), ("vms[0].nics[0].mtu", re.escape("bridge 'br0' (MTU 1400) is too small for mtu 1500: "))),
    case("pmtu-from-unknown", lab(checks=[{"pmtu": {"from": "vm9", "to": "vm2", "size": 100}}]), (f"{C0}.pmtu.from", E("no VM, container or host named 'vm9'"))),
    case("pmtu-itself", lab(checks=[{"pmtu": {"from": "vm1", "to": "vm1", "size": 100}}]), (f"{C0}.pmtu.to", E("a node pinging itself proves nothing about the path"))),
    case("pmtu-no-common-subnet", lab(bridges=[br(), br("br1", "10.1.2.0/24")], vms=[vm("vm1", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br1", "10.1.2.3/24"))], checks=[{"pmtu": {"from": "vm1", "to": "vm2", "size": 100}}]), (f"{C0}.pmtu.to", E("'vm1' and 'vm2' have no addressed NICs on a common subnet"))),
    case("pmtu-to-neither", lab(checks=[{"pmtu": {"from": "vm1", "to": "vm9", "size": 100}}]), (f"{C0}.pmtu.to", E("expected a VM, container or host name or an IPv4 address, got 'vm9'"))),
    # -- STP and links between bridges ---------------------------------------------------------------
    case("stp-on-ovs", lab(bridges=[br(type="ovs", stp=True)]), ("bridges[0].stp", E("bridge type ovs takes no stp here: vnetlab turns on the kernel's STP on Linux bridges (type linux) only"))),
    case("bridge-link-three-ends", lab(bridges=[br(), br("br1", "10.1.2.0/24")], **{"bridge-links": [{"between": ["br0", "br1", "br0"]}]}), ("bridge-links[0]", E("between: expected exactly two different bridge names (one per end of the veth pair), got 3"))),
    case("bridge-link-unknown", lab(**{"bridge-links": [{"between": ["br0", "br9"]}]}), ("bridge-links[0].between[1]", E("no bridge named 'br9' (bridges: br0)"))),
    case("bridge-link-ovs", lab(bridges=[br(), br("br1", "10.1.2.0/24", type="ovs")], **{"bridge-links": [{"between": ["br0", "br1"]}]}), ("bridge-links[0].between[1]", E("bridge 'br1' is of type ovs: bridge-links join Linux bridges (type linux) only"))),
    case("bridge-link-itself", lab(**{"bridge-links": [{"between": ["br0", "br0"]}]}), ("bridge-links[0].between", E("a link from 'br0' to itself: expected two different bridges"))),
    case("bridge-link-twice", lab(bridges=[br(), br("br1", "10.1.2.0/24")], **{"bridge-links": [{"between": ["br0", "br1"]}, {"between": ["br1", "br0"]}]}), ("bridge-links[1]", E("br1 and br0 are already joined by bridge-links[0]"))),
    case(
        "bridge-loop-without-stp",
        lab(bridges=[br(stp=True), br("br1", None, stp=True), br("br2", None)], **{"bridge-links": [{"between": ["br0", "br1"]}, {"between": ["br1", "br2"]}, {"between": ["br2", "br0"]}]}),
        ("bridge-links[2]", E(
            "this link closes the loop br2 → br1 → br0 → br2, and br2 has no stp: true: a loop without STP floods the lab namespace forever "
            "(every broadcast circles the loop, copied at each bridge); set stp: true on every bridge of the loop"
        )),
    ),
    case("stp-check-without-stp", lab(checks=[{"stp": {"blocking": 1}}]), (f"{C0}.stp", E("no bridge has stp: true: without STP no port ever blocks"))),
    case("bounded-broadcast-not-on-bridge", lab(checks=[capture(["vm1", "vm2"], ["bounded-broadcast"], interface="eth0")]), (f"{C0}.capture.expect", E("bounded-broadcast is judged on a bridge (bridge:)"))),
    # -- vxlan ------------------------------------------------------------------------------
    case("vxlan-duplicate-name", vx_lab(vxl(), vxl(vni=2, bridges=["br1", "br2"])), ("vxlan[1].name", E("duplicate VXLAN name 'vx1'"))),
    case("vxlan-reserved-name", vx_lab(vxl("vnlx")), ("vxlan[0].name", E("names starting with 'vnl' are reserved for vnetlab's own devices"))),
    case("vxlan-name-of-a-node", vx_lab(vxl(), containers=[container("vx1", "10.1.1.9/24")]), ("vxlan[0].name", E("'vx1' is already the name of a container or host: its namespace would be hypervisor B's"))),
    case("vxlan-device-clash", vx_lab(vxl(), bridges=[*VX_BRIDGES, br("vx1-a", None)]), ("vxlan[0].name", E("its device 'vx1-a' clashes with another interface of the lab namespace"))),
    case("vxlan-duplicate-vni", vx_lab(vxl(), vxl("vx2", bridges=["br1", "br2"])), ("vxlan[1].vni", E("duplicate VNI 1 (vxlan[0] has it): each VXLAN needs its own"))),
    case("vxlan-unknown-bridge", vx_lab(vxl(bridges=["br0", "br9"])), ("vxlan[0].bridges[1]", E("no bridge named 'br9' (bridges: br0, br1, br2)"))),
    case("vxlan-ovs-bridge", vx_lab(vxl(), bridges=[br(), br("br1", type="ovs")]), ("vxlan[0].bridges[1]", E("bridge 'br1' is of type ovs, which takes no VXLAN device here: vnetlab joins Linux bridges (type linux) only"))),
    case("vxlan-same-bridge", vx_lab(vxl(bridges=["br0", "br0"])), ("vxlan[0].bridges", E("both sides on 'br0': expected two different bridges"))),
    case("vxlan-loop", vx_lab(vxl(), vxl("vx2", 2)), ("vxlan[1].bridges", E(VX_LOOP))),
    case("vxlan-loop-with-bridge-links", vx_lab(vxl(), **{"bridge-links": [{"between": ["br0", "br1"]}]}), ("vxlan[0].bridges", E(VX_LOOP))),
    case("vxlan-no-free-underlay", vx_lab(vxl(), management={"subnet": "192.168.0.0/16"}), ("vxlan[0].underlay", E("every default underlay (192.168.100.0/24 to 192.168.255.0/24) overlaps a subnet of the lab: set underlay: to a free subnet"))),
    case("vxlan-underlay-not-a-network", vx_lab(vxl(underlay="192.168.100.1/24")), ("vxlan[0].underlay", E("expected an IPv4 network like 192.168.100.0/24 (host bits zero), got '192.168.100.1/24'"))),
    case("vxlan-underlay-unusable", vx_lab(vxl(underlay="127.0.0.0/24")), ("vxlan[0].underlay", E("127.0.0.0/24 overlaps 127.0.0.0/8 (loopback addresses): not usable on a lab segment"))),
    case("vxlan-underlay-too-small", vx_lab(vxl(underlay="192.168.100.0/31")), ("vxlan[0].underlay", E("192.168.100.0/31 is too small: the underlay needs two host addresses (/30 or larger)"))),
    case("vxlan-underlay-overlaps", vx_lab(vxl(underlay="10.1.0.0/16")), ("vxlan[0].underlay", E("10.1.0.0/16 overlaps the subnet of bridge br0: the underlay needs a subnet of its own (both hypervisors route it)"))),
    case("vxlan-capture-same-side", vx_lab(vxl(), vms=copy.deepcopy(TWO_VMS), checks=[capture(["vm1", "vm2"], ["vxlan"], interface="vx1-u")]), (f"{C0}.capture.between", E("the capture is judged between a node on br0 and one on br1: only their exchange crosses VXLAN vx1"))),
    case("vxlan-capture-not-on-underlay", vx_lab(vxl(), checks=[capture(["vm1", "vm2"], ["vxlan"])]), (f"{C0}.capture.expect", E("vxlan is judged on the underlay of a VXLAN (interface: vx1-u)"))),
    case("unencapsulated-not-on-a-bridge", vx_lab(vxl(), checks=[capture(["vm1", "vm2"], ["unencapsulated"], interface="vx1-u")]), (f"{C0}.capture.expect", E("unencapsulated is judged on a bridge a VXLAN joins (bridge: br0, br1)"))),
    # -- vlan -------------------------------------------------------------------------------
    case("vlan-nic-on-linux-bridge-without-vlans", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24", vlan=10))]), ("vms[0].nics[0].vlan", E("bridge 'br0' declares no vlans: add vlans: [{vlan: N, subnet: …}] to it"))),
    case("vlan-subnet-and-vlans", vl_lab(bridge=vl_br(subnet="10.0.10.0/24")), ("bridges[0].subnet", E("a bridge with vlans has one subnet per VLAN (in vlans): drop subnet"))),
    case("vlan-duplicate", vl_lab(bridge=vl_br(vlans=[*VL_VLANS, {"vlan": 10, "subnet": "10.0.30.0/24"}])), ("bridges[0].vlans[2].vlan", E("duplicate VLAN 10 (vlans[0] has it)"))),
    case("vlan-subnet-not-a-network", vl_lab(bridge=vl_br(vlans=[*VL_VLANS, {"vlan": 30, "subnet": "10.0.30.1/24"}])), ("bridges[0].vlans[2].subnet", E("expected an IPv4 network like 10.1.1.0/24 (host bits zero), got '10.0.30.1/24'"))),
    case("vlan-subnet-unusable", vl_lab(bridge=vl_br(vlans=[*VL_VLANS, {"vlan": 30, "subnet": "127.0.0.0/24"}])), ("bridges[0].vlans[2].subnet", E("127.0.0.0/24 overlaps 127.0.0.0/8 (loopback addresses): not usable on a lab segment"))),
    case("vlan-subnet-overlaps-management", vl_lab(bridge=vl_br(vlans=[*VL_VLANS, {"vlan": 30, "subnet": "172.30.0.0/16"}])), ("bridges[0].vlans[2].subnet", E("172.30.0.0/16 overlaps the management subnet 172.30.255.0/24 (change management.subnet)"))),
    case("vlan-subnets-overlap", vl_lab(bridge=vl_br(vlans=[*VL_VLANS, {"vlan": 30, "subnet": "10.0.0.0/16"}])), ("bridges[0].vlans[2].subnet", E("10.0.0.0/16 overlaps VLAN 10's subnet: each VLAN of a bridge needs its own"))),
    case("vlan-nic-untagged-on-vlan-bridge", vl_lab(vm("vm1", nic(address="10.0.10.2/24"))), ("vms[0].nics[0].bridge", E("bridge 'br0' has vlans: this NIC needs vlan: (an access port) or trunk:"))),
    case("vlan-and-trunk", vl_lab(vm("vm1", nic(address="10.0.10.2/24", vlan=10, trunk=[{"vlan": 20}]))), ("vms[0].nics[0].trunk", E("expected one of vlan (an access port) or trunk (tagged VLANs), not both"))),
    case("vlan-on-bridge-without-vlans", lab(bridges=[br(type="ovs")], vms=[vm("vm1", nic("br0", "10.1.1.2/24", vlan=10))]), ("vms[0].nics[0].vlan", E("bridge 'br0' declares no vlans: add vlans: [{vlan: N, subnet: …}] to it"))),
    case("vlan-access-unknown", vl_lab(vm("vm1", nic(address="10.0.10.2/24", vlan=30))), ("vms[0].nics[0].vlan", E("VLAN 30 is not one of bridge 'br0''s vlans (10, 20)"))),
    case("vlan-access-address-outside", vl_lab(vm("vm1", nic(address="10.0.20.2/24", vlan=10))), ("vms[0].nics[0].address", E("10.0.20.2/24 is not in subnet 10.0.10.0/24 of VLAN 10 on bridge 'br0'"))),
    case("vlan-trunk-with-address", vl_lab(vm("vm1", nic(address="10.0.10.2/24", trunk=[{"vlan": 20, "address": "10.0.20.2/24"}]))), ("vms[0].nics[0].address", E("a trunk's own interface stays unaddressed: give each VLAN its address in trunk"))),
    case("vlan-trunk-duplicate", vl_lab(vm("vm1", nic(trunk=[{"vlan": 10}, {"vlan": 10}]))), ("vms[0].nics[0].trunk[1].vlan", E("duplicate VLAN 10 on this trunk"))),
    case("vlan-trunk-unknown", vl_lab(vm("vm1", nic(trunk=[{"vlan": 30}]))), ("vms[0].nics[0].trunk[0].vlan", E("VLAN 30 is not one of bridge 'br0''s vlans (10, 20)"))),
    case("vlan-trunk-name-too-long", vl_lab(vm("vm1", nic(trunk=[{"vlan": 10}], name="abcdefghijklm"))), ("vms[0].nics[0].trunk[0].vlan", E("the guest's sub-interface 'abcdefghijklm.10' would be longer than 15 characters: shorten the NIC's name"))),
    case("vlan-trunk-address-outside", vl_lab(vm("vm1", nic(trunk=[{"vlan": 10, "address": "10.0.20.2/24"}]))), ("vms[0].nics[0].trunk[0].address", E("10.0.20.2/24 is not in subnet 10.0.10.0/24 of VLAN 10 on bridge 'br0'"))),
    case("vlan-trunk-address-taken", vl_lab(vm("vm1", nic(address="10.0.10.2/24", vlan=10)), vm("vm2", nic(trunk=[{"vlan": 10, "address": "10.0.10.2/24"}]))), ("vms[1].nics[0].trunk[0].address", E("10.0.10.2 is already used by vm1 eth0"))),
    case("vlan-tagged-without-vlans", lab(checks=[capture(["vm1", "vm2"], ["vlan-tagged"])]), (f"{C0}.capture.expect", E("vlan-tagged and untagged are judged on a bridge with vlans (bridge:), or on a link to one (link:)"))),
    # -- a capture on a link (VM.NIC) ----------------------------------------------------------
    case("link-no-vm", lab(checks=[capture(["vm1", "vm2"], ["arp"], link="vm9.eth0")]), (f"{C0}.capture.link", E("no VM named 'vm9' (link is VM.NIC, e.g. vm1.eth0)"))),
    case("link-no-nic", lab(checks=[capture(["vm1", "vm2"], ["arp"], link="vm1.eth3")]), (f"{C0}.capture.link", E("VM 'vm1' has no NIC named 'eth3' (its NICs: eth0)"))),
    case("link-of-a-third-vm", lab(vms=[*copy.deepcopy(TWO_VMS), vm("vm3", nic("br0", "10.1.1.4/24"))], checks=[capture(["vm1", "vm2"], ["arp"], link="vm3.eth0")]), (f"{C0}.capture.link", E("the link of 'vm3' carries its own frames only: name it in between, e.g. between: [vm3, …]"))),
    # -- where a Linux bridge runs (switch guest) ------------------------------------------------
    case("in-on-ovs", lab(bridges=[br(type="ovs", **{"in": "guest"})]), ("bridges[0].in", E("in: is where a Linux bridge runs; a ovs bridge runs on the host"))),
    case("in-guest-with-mtu", lab(bridges=[br(mtu=9000, **{"in": "guest"})]), ("bridges[0].mtu", E("an MTU on a bridge in a switch guest is not supported yet"))),
    case("in-guest-with-container", lab(bridges=[br(**{"in": "guest"})], containers=[container("c1", "10.1.1.9/24")]), ("bridges[0].in", E("containers and hosts cannot join a bridge in a switch guest yet (their veths end in the lab namespace)"))),
    case("in-guest-bridge-capture", lab(bridges=[br(**{"in": "guest"})], checks=[capture(["vm1", "vm2"], ["arp"])]), (f"{C0}.capture.bridge", E("bridge 'br0' runs in a switch guest (in: guest): no host interface sees every frame of a bridge in a switch guest: capture on a member's link instead (link: VM.NIC)"))),
    case("vm-named-like-a-switch-guest", lab(vms=[vm("sw-br0", nic("br0", "10.1.1.2/24")), vm("vm2", nic("br0", "10.1.1.3/24"))]), ("vms[0].name", E("'sw-br0' is the name of bridge 'br0''s switch guest (when one runs it): pick another"))),
    # -- hypervisors ------------------------------------------------------------------------------
    case("on-without-hypervisors", lab(vms=[vm("vm1", nic("br0", "10.1.1.2/24"), on="hv2"), vm("vm2", nic("br0", "10.1.1.3/24"))]), ("vms[0].on", E("on: 'hv2' names a hypervisor, but there is no hypervisors: section"))),
    case("hypervisors-none-local", hv_lab({"hv2": {"simulate": True}}), ("hypervisors", E("exactly one hypervisor must be this machine (no uri, or qemu:///system); found 0"))),
    case("hypervisors-simulated-and-real", hv_lab({**HV_REAL, "hv3": {"simulate": True}}), ("hypervisors", E("simulated (hv3) and real (hv2) hypervisors cannot share a lab: the simulated underlay exists only on this machine"))),
    case("hypervisor-simulated-with-uri", hv_lab({"hv1": {}, "hv2": {"simulate": True, "uri": "qemu+ssh://root@192.0.2.2/system"}}), ("hypervisors.hv2", E("simulate: true makes its URI, underlay and host key itself: drop uri, underlay and host-key"))),
    case("hypervisor-uri-not-ssh", hv_lab({**HV_REAL, "hv2": {"uri": "qemu+tcp://192.0.2.2/system", "underlay": UNDERLAY2}}), ("hypervisors.hv2.uri", E("expected a qemu+ssh:// URI (vnetlab also runs its host commands over that SSH), got 'qemu+tcp://192.0.2.2/system'"))),
    case("hypervisor-uri-runs-a-command", hv_lab({**HV_REAL, "hv2": {"uri": "qemu+ssh://root@192.0.2.2/system?command=/tmp/x", "underlay": UNDERLAY2}}), ("hypervisors.hv2.uri", E("URI parameter command=/tmp/x is refused (it runs a program of this machine, as root, in place of ssh): write qemu+ssh://root@192.0.2.2/system"))),
    case("hypervisor-without-underlay", hv_lab({**HV_REAL, "hv2": {"uri": "qemu+ssh://root@192.0.2.2/system"}}), ("hypervisors.hv2.underlay", E("a real hypervisor needs underlay: {address, device}: where its VXLAN traffic leaves"))),
    case("hypervisor-underlay-address", hv_lab({**HV_REAL, "hv2": {"uri": "qemu+ssh://root@192.0.2.2/system", "underlay": {"address": "eth1", "device": "eth1"}}}), ("hypervisors.hv2.underlay.address", E("expected an IPv4 address, got 'eth1'"))),
    case("this-machine-without-underlay", hv_lab({**HV_REAL, "hv1": {}}), ("hypervisors.hv1.underlay", E("with real hypervisors, this machine needs underlay: {address, device} too"))),
    case("too-many-simulated", hv_lab({"hv1": {}, **{f"s{i}": {"simulate": True} for i in range(254)}}, vm2=vm("vm2", nic("br0", "10.1.1.3/24"), on="s0")), ("hypervisors", E("at most 253 simulated hypervisors"))),
    case("on-unknown-hypervisor", hv_lab(vm2=vm("vm2", nic("br0", "10.1.1.3/24"), on="hv9")), ("vms[1].on", E("no hypervisor named 'hv9' (hypervisors: hv1, hv2)"))),
    case("remote-shares", hv_lab(vm2=vm("vm2", nic("br0", "10.1.1.3/24"), on="hv2", shares=[{"src": ".", "dest": "/mnt/lab"}])), ("vms[1].shares", E("shares: are folders of this machine, exported by its hypervisor: vm2 runs on hv2 (copy them in with files: instead)"))),
    case("stretched-ovs-bridge", hv_lab(bridges=[br(type="ovs")]), ("bridges[0].type", E("bridge 'br0' has guests on another hypervisor: only Linux bridges are stretched there (got ovs)"))),
    case("vxlan-settings-without-hypervisors", lab(vxlan={"dstport": 4789}), ("vxlan", E("a mapping of vxlan: settings is for labs over several hypervisors (add hypervisors:); the VXLAN overlay lesson takes a list"))),
    case("vxlan-overlays-with-hypervisors", hv_lab(bridges=[br(), br("br1")], vxlan=[vxl()]), ("vxlan", E("a lab over several hypervisors stretches its bridges with VXLAN itself: vxlan: here is a mapping of settings (dstport, vni-base, mtu), not a list of overlays"))),
    case("stretched-bridge-in-a-switch-guest", hv_lab(bridges=[br(**{"in": "guest"})]), ("bridges[0].in", E("bridge 'br0' has guests on another hypervisor: a stretched bridge runs on each hypervisor's host, not in a switch guest"))),
    case("stretched-bridge-with-vlans", lab(bridges=[br("br0", None, vlans=copy.deepcopy(VL_VLANS))], hypervisors=copy.deepcopy(HV_SIM),
                                            vms=[vm("vm1", nic(address="10.0.10.2/24", vlan=10)), vm("vm2", nic(address="10.0.10.3/24", vlan=10), on="hv2")]),
         ("vms[0].nics[0]", E("VLANs on a bridge stretched over hypervisors ('br0') are not supported yet")),
         ("vms[1].nics[0]", E("VLANs on a bridge stretched over hypervisors ('br0') are not supported yet"))),
    case("overlay-capture-on-a-bridge", hv_lab(checks=[capture(["vm1", "vm2"], ["overlay"])]), (f"{C0}.capture.interface", E("the overlay expectation judges the simulated underlay: capture on interface vnl-ul"))),
    case("vlan-tagged-not-on-the-bridge", lab(bridges=[vl_br(), br("br1")], vms=[*vl_lab()["vms"], vm("vm3", nic("br1", "10.1.1.3/24"))], checks=[capture(["vm1", "vm3"], ["vlan-tagged"])]), (f"{C0}.capture.between[1]", E("expected a VM with a NIC on bridge 'br0', got 'vm3'"))),
    # -- exercises -----------------------------------------------------------------------------------------
    case("exercise-text-template", ex_lab(task(text="{{ nobody.ip }}")), ("exercise.tasks[0].text", E("template variable 'nobody' is undefined (variables: every node by name, nodes['…'], bridges['…'])"))),
    case("exercise-setup-unknown-node", ex_lab(setup=[{"node": "vm9", "run": "true"}]), ("exercise.setup[0].node", E("no VM, container or host named 'vm9'"))),
    case("exercise-solve-unknown-node", ex_lab(task(solve=[{"node": "vm7", "run": "true"}])), ("exercise.tasks[0].solve[0].node", E("no VM, container or host named 'vm7'"))),
    case("exercise-intro-file-missing", ex_lab(intro="intro.md"), ("exercise.intro", r"no file /.*/intro\.md \(an intro of one line ending in \.md is a file, relative to the scenario\)$")),
    case("exercise-intro-outside", ex_lab(intro="../intro.md"), ("exercise.intro", r"'\.\./intro\.md' leads outside the scenario's folder /.*$")),
    case("exercise-no-time", ex_lab(**{"time-limit": "0m"}), ("exercise.time-limit", E("a time limit of no time: give e.g. 45m"))),
    case("exercise-duplicate-task", ex_lab(task(), task()), ("exercise.tasks[1].name", E("duplicate task name 't1' (tasks[0] has it)"))),
    case("exercise-task-named-a-number", ex_lab(task("12")), ("exercise.tasks[0].name", E("'12' reads as a task number: name it with words"))),
    case("exercise-hint-cost-above-points", ex_lab(task(points=1, **{"hint-cost": 2})), ("exercise.tasks[0].hint-cost", E("a hint costs 2 but the task is worth 1: at most its points"))),
    case("exercise-solve-answer-without-check", ex_lab(task(solve=[{"answer": "x"}])), ("exercise.tasks[0].solve[0].answer", E("task 't1' has no answer check to give it to"))),
    case("answer-outside-an-exercise", lab(checks=[{"answer": {"expect": "x"}}]), (f"{C0}.answer", E("an answer check grades a student's answer: it belongs in an exercise task (exercise.tasks[].checks)"))),
    case("answer-bad-regex", ex_lab(task(checks=[{"answer": {"expect": "(", "normalize": "regex"}}])), ("exercise.tasks[0].checks[0].answer.expect", E("not a regular expression: missing ), unterminated subpattern at position 0"))),
    case("answer-not-of-its-kind", ex_lab(task(checks=[{"answer": {"expect": "zz", "normalize": "mac"}}])), ("exercise.tasks[0].checks[0].answer.expect", E("'zz' is not an answer of its kind: not a MAC address: 'zz'"))),
    case("vlan-tagged-no-shared-vlan", vl_lab(vm("vm1", nic(address="10.0.10.2/24", vlan=10)), vm("vm2", nic(address="10.0.20.2/24", vlan=20)), checks=[capture(["vm1", "vm2"], ["vlan-tagged"])]), (f"{C0}.capture.between", E("'vm1' and 'vm2' share no VLAN on bridge 'br0': there is no exchange between them to capture"))),
]


# -- running a case ------------------------------------------------------------------------


def _write_files(folder: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        path = folder / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        elif isinstance(content, int):  # a sparse file of that size
            with open(path, "wb") as f:
                f.truncate(content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture(scope="module")
def case_dirs(tmp_path_factory) -> dict[str, Path]:
    """Each case's scenario file, in a folder of its own with the files it names."""
    root = tmp_path_factory.mktemp("rule-cases")
    out = {}
    for c in CASES:
        folder = root / c.id
        folder.mkdir()
        _write_files(folder, c.files)
        path = folder / "scenario.yaml"
        path.write_text(yaml.safe_dump(c.doc, sort_keys=False))
        out[c.id] = path
    return out


def reported(path: Path) -> list[Problem] | None:
    """The problems the scenario file gives, or None when it is accepted."""
    try:
        parse_scenario(path.read_text(), str(path))
    except ValidationError as exc:
        return exc.problems
    return None


def mismatch(c: Case, path: Path) -> str | None:
    """Why the case does not give exactly its expected problems (None: it does)."""
    problems = reported(path)
    if problems is None:
        return "accepted"
    hits = lambda p, e: p.field == e[0] and re.match(e[1], p.message) is not None  # noqa: E731
    missing = [e for e in c.expected if not any(hits(p, e) for p in problems)]
    extra = [f"{p.field}: {p.message}" for p in problems if not any(hits(p, e) for e in c.expected)]
    if missing or extra:
        return f"not reported: {missing}; reported besides: {extra}"
    if any(p.line is None for p in problems):
        return f"a problem without a line: {problems}"
    return None


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_each_case_reports_exactly_its_problems(c: Case, case_dirs) -> None:
    why = mismatch(c, case_dirs[c.id])
    assert why is None, f"{c.id}: {why}\n{case_dirs[c.id].read_text()}"


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


# -- finding the rules and disabling them one at a time -----------------------------------------


@dataclass(frozen=True)
class Site:
    """One `….add(path, message)` call of a validator."""

    module: str  # e.g. vnetlab.features.nat
    owner: tuple[str, ...]  # the top-level function, or (class, method), holding it
    line: int
    col: int
    source: str

    @property
    def file(self) -> Path:
        return PACKAGE.parent / (self.module.replace(".", "/") + ".py")

    def __str__(self) -> str:
        return f"{self.file.relative_to(PACKAGE.parent)}:{self.line} in {'.'.join(self.owner)}: {self.source[:140]}"


def _is_rule_call(node: ast.AST, in_rules_class: bool) -> bool:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add" and isinstance(node.func.value, ast.Name)):
        return False
    return node.func.value.id in RECEIVERS or (in_rules_class and node.func.value.id == "self")


def rule_sites(path: Path, source: str) -> list[Site]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    sites: list[Site] = []

    def walk(node: ast.AST, owner: tuple[str, ...], in_rules: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_owner, child_in_rules = owner, in_rules
            if isinstance(child, ast.ClassDef) and not owner:
                child_owner, child_in_rules = (child.name,), child.name == "Rules"
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and (not owner or (len(owner) == 1 and isinstance(node, ast.ClassDef))):
                child_owner = (*owner, child.name)
            if _is_rule_call(child, in_rules):
                sites.append(Site(module, owner, child.lineno, child.col_offset, ast.unparse(child)))
            walk(child, child_owner, child_in_rules)

    walk(ast.parse(source), (), False)
    return sites


SOURCES = {path: path.read_text() for path in RULE_FILES}  # read once: the code that is imported now
SITES = [site for path, source in SOURCES.items() for site in rule_sites(path, source)]


class _DropCall(ast.NodeTransformer):
    """Replace the statement `<call>` at (line, col) with `pass`."""

    def __init__(self, site: Site):
        self.site = site
        self.done = False

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        call = node.value
        if isinstance(call, ast.Call) and (call.lineno, call.col_offset) == (self.site.line, self.site.col):
            self.done = True
            return ast.copy_location(ast.Pass(), node)
        return node


def _owner_def(tree: ast.Module, owner: tuple[str, ...]) -> ast.FunctionDef:
    body = tree.body
    for name in owner[:-1]:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == name).body
    return next(n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == owner[-1])


def _live_function(site: Site) -> types.FunctionType:
    target: Any = importlib.import_module(site.module)
    for name in site.owner:
        target = vars(target)[name] if isinstance(target, type) else getattr(target, name)
    target = getattr(target, "__func__", target)  # staticmethod / classmethod
    if not isinstance(target, types.FunctionType):
        raise TypeError(f"{site}: {'.'.join(site.owner)} is a {type(target).__name__}, not a plain function: teach this test to mutate it")
    return target


def mutant_code(site: Site) -> types.CodeType:
    """The code of the function holding `site`, recompiled with that call replaced by `pass`."""
    if not site.owner:
        raise ValueError(f"{site}: not inside a function, so it cannot be disabled alone")
    fdef = copy.deepcopy(_owner_def(ast.parse(SOURCES[site.file]), site.owner))
    dropper = _DropCall(site)
    fdef = dropper.visit(fdef)
    if not dropper.done:
        raise ValueError(f"{site}: the call is not a statement of its own, so it cannot be replaced by `pass`")
    fdef.decorator_list = []
    tree = ast.fix_missing_locations(ast.Module(body=[fdef], type_ignores=[]))
    code = compile(tree, str(site.file), "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True)
    namespace = dict(vars(importlib.import_module(site.module)))
    exec(code, namespace)  # defines the mutant function in a copy of the module's globals
    return namespace[fdef.name].__code__


@contextmanager
def disabled(site: Site) -> Iterator[None]:
    """The live function (the very object the model's hooks hold) runs the mutant code, then is restored."""
    live = _live_function(site)
    code = mutant_code(site)
    if code.co_freevars != live.__code__.co_freevars:
        raise ValueError(f"{site}: {'.'.join(site.owner)} is a closure; cannot swap its code")
    original = live.__code__
    live.__code__ = code
    try:
        yield
    finally:
        live.__code__ = original


def _unreachable(site: Site) -> str | None:
    return next((why for (module, owner, start), why in UNREACHABLE.items() if module == site.module and owner == site.owner[-1] and site.source.startswith(start)), None)


def test_rules_are_found() -> None:
    """The scan sees the rules of the core and of the features (a rename of `r` would hide them)."""
    modules = {s.module for s in SITES}
    assert "vnetlab.model.validate" in modules and {"vnetlab.features.containers", "vnetlab.features.nat", "vnetlab.features.wireguard", "vnetlab.features.ops", "vnetlab.features.perf"} <= modules, modules
    assert any(s.owner == ("Rules", "address") for s in SITES) and any(s.owner == ("Rules", "claim") for s in SITES)
    assert len(SITES) >= 90, len(SITES)
    stale = [key for key in UNREACHABLE if not any(_unreachable(s) for s in SITES if (s.module, s.owner[-1]) == key[:2])]
    assert not stale, f"UNREACHABLE names rules that no longer exist: {stale}"


def test_disabling_a_rule_changes_only_that_rule(case_dirs) -> None:
    """The harness itself: with `management.subnet`'s loopback rule disabled, its case is accepted,
    the others are untouched, and the rule is back afterwards."""
    site = next(s for s in SITES if s.owner == ("_management",) and "unusable(mgmt)" in s.source)
    loopback = next(c for c in CASES if c.id == "management-loopback")
    duplicate = next(c for c in CASES if c.id == "bridge-duplicate")
    with disabled(site):
        assert reported(case_dirs[loopback.id]) is None
        assert mismatch(duplicate, case_dirs[duplicate.id]) is None
    assert mismatch(loopback, case_dirs[loopback.id]) is None


def _fails(c: Case, path: Path) -> bool:
    try:
        return mismatch(c, path) is not None
    except Exception:  # noqa: BLE001 — a mutant that crashes the validation fails the case too
        return True


def test_removing_any_rule_fails_a_case(case_dirs) -> None:
    uncovered: list[str] = []
    start = 0  # cases are in the order of the rules: the one that caught the last rule likely catches the next
    for site in SITES:
        if _unreachable(site):
            continue
        order = CASES[start:] + CASES[:start]
        with disabled(site):
            caught = next((c for c in order if _fails(c, case_dirs[c.id])), None)
        if caught is None:
            uncovered.append(str(site))
        else:
            start = CASES.index(caught)
    assert not uncovered, (
        f"{len(uncovered)} of {len(SITES)} rules can be deleted without any case failing; add a case for each to CASES:\n  "
        + "\n  ".join(uncovered)
    )
