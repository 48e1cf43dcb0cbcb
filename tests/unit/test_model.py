"""The scenario model: every broken file gives located, specific problems."""

from __future__ import annotations

import textwrap

import pytest

from vnetlab.compose import parse_scenario
from vnetlab.paths import scenario_files
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.model.validate import vm_memory

GOOD = """\
name: t
description: test
bridges:
  - name: br0
    subnet: 10.1.1.0/24
vms:
  - name: vm1
    nics:
      - bridge: br0
        address: 10.1.1.2/24
  - name: vm2
    nics:
      - bridge: br0
        address: 10.1.1.3/24
checks:
  - ping: {from: vm1, to: vm2}
  - capture: {bridge: br0, between: [vm1, vm2], expect: [arp, icmp-echo]}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_scenario(textwrap.dedent(text), "lab.yaml")
    return [str(p) for p in info.value.problems]


def test_good_scenario_loads_with_defaults():
    s = parse_scenario(GOOD, "lab.yaml")
    assert [v.name for v in s.vms] == ["vm1", "vm2"]
    assert s.vms[0].memory is None and vm_memory(s, s.vms[0]) == 128 and s.vms[0].nic_name(0) == "eth0"
    assert s.checks[0].ping is not None and s.checks[0].ping.count == 3
    assert s.management.subnet == "172.30.255.0/24"


def test_every_shipped_scenario_is_valid():
    files = scenario_files()
    assert any(f.stem == "two-vm-ping" for f in files)
    for path in files:
        scenario = parse_scenario(path.read_text(), str(path))
        assert scenario.name == path.stem


def test_unknown_key_names_file_line_field_and_the_expected_keys():
    text = GOOD.replace("        address: 10.1.1.3/24", "        adress: 10.1.1.3/24")
    assert problems(text) == ["lab.yaml:14: vms[1].nics[0].adress: unknown key (expected one of: bridge, address, addresses, name, mtu, netem, vlan, trunk)"]


def test_missing_field_is_reported_where_its_mapping_starts():
    text = GOOD.replace("      - bridge: br0\n        address: 10.1.1.2/24", "      - address: 10.1.1.2/24")
    [p] = problems(text)
    assert p.startswith("lab.yaml:9: vms[0].nics[0].bridge: missing (expected a string")


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("address: 10.1.1.3/24", "address: 10.1.2.3/24", "lab.yaml:14: vms[1].nics[0].address: 10.1.2.3/24 is not in subnet 10.1.1.0/24 of bridge 'br0'"),
        ("address: 10.1.1.3/24", "address: 10.1.1.2/24", "lab.yaml:14: vms[1].nics[0].address: 10.1.1.2 is already used by vm1 eth0"),
        ("address: 10.1.1.3/24", "address: 10.1.1.255/24", "lab.yaml:14: vms[1].nics[0].address: 10.1.1.255 is the network or broadcast address of 10.1.1.0/24"),
        ("address: 10.1.1.3/24", "address: 10.1.1.3", "lab.yaml:14: vms[1].nics[0].address: 10.1.1.3 needs its prefix length: expected an address with prefix like 10.1.1.3/24"),
        ("address: 10.1.1.3/24", "address: fd00:1::3/64", "lab.yaml:14: vms[1].nics[0].address: fd00:1::3/64 is an IPv6 address, but bridge 'br0' has only the IPv4 subnet 10.1.1.0/24: give the bridge both (subnets: [10.1.1.0/24, fd00:1::/64]) or use an IPv4 address"),
        ("address: 10.1.1.3/24", "address: 10.1.1.3/24x", "lab.yaml:14: vms[1].nics[0].address: expected an IPv4 or IPv6 address with prefix like 10.1.1.2/24 or fd00:1::2/64, dhcp or slaac, got '10.1.1.3/24x'"),
        ("- name: vm2", "- name: vm1", "lab.yaml:11: vms[1].name: duplicate VM name 'vm1'"),
        ("      - bridge: br0\n        address: 10.1.1.3/24", "      - bridge: br9\n        address: 10.1.1.3/24", "lab.yaml:13: vms[1].nics[0].bridge: no bridge named 'br9' (bridges: br0)"),
        ("subnet: 10.1.1.0/24", "subnet: 10.1.1.1/24", "lab.yaml:5: bridges[0].subnet: expected an IPv4 or IPv6 network like 10.1.1.0/24 or fd00:1::/64 (host bits zero), got '10.1.1.1/24'"),
        ("{from: vm1, to: vm2}", "{from: vm1, to: vm3}", "lab.yaml:16: checks[0].ping.to: expected a VM name or an IPv4 or IPv6 address, got 'vm3'"),
        ("{from: vm1, to: vm2}", "{from: vm1, to: vm1}", "lab.yaml:16: checks[0].ping.to: a VM pinging itself proves nothing about the bridge"),
        ("between: [vm1, vm2]", "between: [vm1, vm1]", "lab.yaml:17: checks[1].capture.between: expected two different VMs"),
        ("between: [vm1, vm2]", "between: [vm1]", "lab.yaml:17: checks[1].capture: between: expected exactly two node names, got 1"),
        ("expect: [arp, icmp-echo]", "expect: [arp, tcp]", "lab.yaml:17: checks[1].capture.expect[1]: expected one of: arp, icmp-echo, ndp, icmp6-echo, bridged, dhcp, ra, masqueraded, wireguard-udp, no-plaintext-tunnel, wireguard-handshake, only-wireguard, routed, frag-needed, bounded-broadcast, vxlan, unencapsulated, vlan-tagged, untagged, overlay; got 'tcp'"),
    ],
)
def test_semantic_and_shape_problems(old, new, expected):
    assert old in GOOD
    assert expected in problems(GOOD.replace(old, new, 1))


def test_names_must_fit_interfaces_and_be_safe():
    [p] = problems(GOOD.replace("- name: br0", "- name: br0-this-is-too-long"))
    assert "bridges[0].name: 'br0-this-is-too-long' is 20 characters long; at most 15 allowed" in p
    [p] = problems(GOOD.replace("- name: vm1", "- name: \"vm'1<x>\""))
    assert "vms[0].name" in p and "does not match" in p


def test_wrong_types_and_ranges():
    assert any("vms[0].memory: expected an integer from 64 to 4096, got 100000" in p for p in problems(GOOD.replace("  - name: vm1\n", "  - name: vm1\n    memory: 100000\n")))
    assert any("vms[0].memory: expected an integer, got 'lots'" in p for p in problems(GOOD.replace("  - name: vm1\n", "  - name: vm1\n    memory: lots\n")))
    assert any("vms: expected a list, got 'none'" in p for p in problems("name: t\ndescription: d\nbridges: [{name: br0}]\nvms: none\n"))


def test_management_subnet_must_not_overlap_a_lab_subnet():
    text = GOOD + "management: {subnet: 10.1.0.0/16}\n"
    assert any("bridges[0].subnet: 10.1.1.0/24 overlaps the management subnet 10.1.0.0/16" in p for p in problems(text))


def test_reserved_and_duplicate_interface_names():
    text = GOOD.replace("        address: 10.1.1.2/24", "        address: 10.1.1.2/24\n        name: mgmt0")
    assert any("vms[0].nics[0].name: 'mgmt0' is reserved inside the guest" in p for p in problems(text))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "lab.yaml:1: (top level): the file is empty (expected a mapping)"),
        ("name: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "lab.yaml:1: (top level): expected a mapping, got a list"),
        ("name: t\nname: u\n", "lab.yaml:2: name: duplicate key"),
    ],
)
def test_broken_yaml(text, expected):
    assert any(expected in p for p in problems(text))


def test_check_needs_exactly_one_kind():
    text = GOOD.replace("  - ping: {from: vm1, to: vm2}\n", "  - {}\n")
    assert any("checks[0]: expected exactly one of: ping, capture" in p for p in problems(text))
