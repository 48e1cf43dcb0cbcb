"""IPv6, DHCP and SLAAC without root or VMs: the model's canonical addresses, the plan, templates,
the bad inputs (exit 2 with file:line), the judges on crafted frames, dnsmasq's files."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptPrefixInfo, IPv6
from scapy.layers.l2 import Ether

from tests.unit.scenario_helpers import plan_of, problems
from tests.unit.test_capture_analysis import wire
from vnetlab.backends import dnsmasq
from vnetlab.backends.cloud_seed import CloudSeed, network_config
from vnetlab.backends.image import NO_IPV6
from vnetlab.checks.base import CaptureSubject
from vnetlab.checks.capture import count_echo, count_echo_between, count_ndp
from vnetlab.checks.ping import path_points, ping_target
from vnetlab.checks.runner import judge_icmp6_echo, judge_ndp
from vnetlab.compose import parse_scenario
from vnetlab.features.dhcp import dhcp_messages, judge_dhcp, judge_ra
from vnetlab.model.addressing import eui64_address, link_local, nic_addresses, read_nic, uses_ipv6
from vnetlab.model.templates import render, scenario_variables
from vnetlab.plan.dump import plan_data
from vnetlab.plan.variables import plan_variables
from vnetlab.tools.explain import explain

pytestmark = pytest.mark.usefixtures("no_neighbour_resolution")  # tests/unit/conftest.py: scapy never resolves a MAC here

DUAL = """\
name: dual
bridges:
  - name: lan
    subnets: [10.1.1.0/24, fd00:1::/64]
    dhcp: {range: 10.1.1.100-10.1.1.200, lease: 30m, router: 10.1.1.1, dns: [10.1.1.1]}
    ra: {prefix: fd00:1::/64}
vms:
  - name: vm1
    nics: [{bridge: lan, addresses: [10.1.1.2/24, "fd00:1::2/64"]}]
  - name: vm2
    nics: [{bridge: lan, address: "fd00:1::3/64"}]
  - name: d1
    nics: [{bridge: lan, addresses: [dhcp, slaac]}]
  - name: d2
    nics: [{bridge: lan, address: dhcp}]
checks:
  - ping: {from: vm1, to: vm2}
  - ping: {from: vm1, to: d1, family: 6}
  - ping: {from: vm1, to: d2}
  - capture: {bridge: lan, between: [vm1, vm2], expect: [ndp, icmp6-echo]}
  - capture: {bridge: lan, between: [d1], expect: [dhcp]}
  - capture: {bridge: lan, between: [d1], expect: [ra]}
"""

V4 = """\
name: v4
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}
  - {name: vm2, nics: [{bridge: br0, address: 10.1.1.3/24}]}
"""


# -- the model ------------------------------------------------------------------------------------


def test_addresses_are_canonicalised_by_family_once_at_load():
    s = parse_scenario(DUAL, "dual.yaml")
    vm1, vm2, d1, d2 = (nic_addresses(v.nics[0]) for v in s.vms)
    assert vm1.ipv4 == ipaddress.IPv4Interface("10.1.1.2/24") and vm1.ipv6 == ipaddress.IPv6Interface("fd00:1::2/64")
    assert vm2.ipv4 is None and vm2.ipv6 == ipaddress.IPv6Interface("fd00:1::3/64")
    assert d1.dhcp and d1.slaac and d1.ipv4 == ipaddress.IPv4Interface("10.1.1.100/24") and d1.ipv6 is None  # a reservation; SLAAC needs the MAC
    assert d2.dhcp and d2.ipv4 == ipaddress.IPv4Interface("10.1.1.101/24")  # the next one, in declaration order
    assert s.bridges[0].nets.ipv4 == ipaddress.IPv4Network("10.1.1.0/24") and s.bridges[0].nets.ipv6 == ipaddress.IPv6Network("fd00:1::/64")
    assert uses_ipv6(s) and not uses_ipv6(parse_scenario(V4, "v4.yaml"))


def test_an_ra_prefix_is_the_bridge_ipv6_subnet_when_it_names_none():
    text = DUAL.replace("subnets: [10.1.1.0/24, fd00:1::/64]", "subnet: 10.1.1.0/24")
    assert parse_scenario(text, "x.yaml").bridges[0].nets.ipv6 == ipaddress.IPv6Network("fd00:1::/64")


def test_read_nic_keeps_the_first_of_each_family():
    a = read_nic(["10.1.1.2/24", "fd00::2/64", "10.1.1.3/24"])
    assert str(a.ipv4) == "10.1.1.2/24" and str(a.ipv6) == "fd00::2/64"
    assert read_nic(["dhcp", "10.1.1.3/24"]).ipv4 is None  # dhcp holds IPv4: the reservation comes later


def test_eui64_is_what_linux_forms():
    assert str(link_local("52:54:00:12:34:56")) == "fe80::5054:ff:fe12:3456/64"
    assert str(eui64_address(ipaddress.IPv6Network("fd00:1::/64"), "02:00:00:aa:bb:cc")) == "fd00:1::ff:feaa:bbcc/64"


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("addresses: [10.1.1.2/24, \"fd00:1::2/64\"]", "addresses: [10.1.1.2/24, \"fd00:2::2/64\"]", "dual.yaml:9: vms[0].nics[0].addresses[1]: fd00:2::2/64 is not in subnet fd00:1::/64 of bridge 'lan'"),
        ("range: 10.1.1.100-10.1.1.200", "range: 10.1.2.100-10.1.2.200", "dual.yaml:5: bridges[0].dhcp.range: 10.1.2.100-10.1.2.200 is not inside subnet 10.1.1.0/24 of bridge 'lan' (10.1.2.100 and 10.1.2.200 are outside)"),
        ("range: 10.1.1.100-10.1.1.200", "range: 10.1.1.1-10.1.1.200", "dual.yaml:5: bridges[0].dhcp.range: 10.1.1.1-10.1.1.200 overlaps static addresses: 10.1.1.2 (vm1 eth0); keep them out of the range"),
        ("    dhcp: {range: 10.1.1.100-10.1.1.200, lease: 30m, router: 10.1.1.1, dns: [10.1.1.1]}\n", "", "dual.yaml:12: vms[2].nics[0].addresses[0]: address dhcp needs a DHCP server on bridge 'lan': give the bridge dhcp: {range: FIRST-LAST}"),
        ("    ra: {prefix: fd00:1::/64}\n", "", "dual.yaml:12: vms[2].nics[0].addresses[1]: address slaac needs router advertisements on bridge 'lan': give the bridge ra: {prefix: fd00:1::/64}"),
        ("subnets: [10.1.1.0/24, fd00:1::/64]", "subnet: 10.1.1.0/24", None),  # fine: the ra prefix is its IPv6 subnet
        ("{from: vm1, to: d1, family: 6}", "{from: vm1, to: 10.1.1.100, family: 6}", "dual.yaml:18: checks[1].ping.family: family 6 but 10.1.1.100 is an IPv4 address (an address says its family: drop family)"),
    ],
)
def test_bad_input_is_located(old, new, expected):
    assert old in DUAL
    found = problems(DUAL.replace(old, new, 1).replace("dual.yaml", "x"))
    found = [p.replace("lab.yaml", "dual.yaml") for p in found]
    if expected is None:
        assert found == []
    else:
        assert expected in found, found


def test_a_v6_address_in_a_v4_subnet_says_what_to_write():
    [p] = problems(V4.replace("address: 10.1.1.3/24", "address: fd00:1::3/64"))
    assert p == "lab.yaml:5: vms[1].nics[0].address: fd00:1::3/64 is an IPv6 address, but bridge 'br0' has only the IPv4 subnet 10.1.1.0/24: give the bridge both (subnets: [10.1.1.0/24, fd00:1::/64]) or use an IPv4 address"


def test_the_cli_exits_2_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DUAL.replace("range: 10.1.1.100-10.1.1.200", "range: 10.1.1.1-10.1.1.200"))
    result = subprocess.run([sys.executable, "-m", "vnetlab", "plan", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bad}:5: bridges[0].dhcp.range: 10.1.1.1-10.1.1.200 overlaps static addresses" in result.stderr


# -- the plan -------------------------------------------------------------------------------------


def test_the_plan_knows_every_address_in_advance():
    plan = plan_of(DUAL, "dual")
    vm1, vm2, d1, d2 = (plan.vm(n).nics[0] for n in ("vm1", "vm2", "d1", "d2"))
    assert (vm1.cidr, vm1.cidr6, vm1.static) == ("10.1.1.2/24", "fd00:1::2/64", ("10.1.1.2/24", "fd00:1::2/64"))
    assert (vm2.cidr, vm2.cidr6) == (None, "fd00:1::3/64")
    assert d1.dhcp and d1.slaac and d1.cidr == "10.1.1.100/24" and d1.static == ()
    assert d1.cidr6 == str(eui64_address(ipaddress.IPv6Network("fd00:1::/64"), d1.mac))
    assert all(n.link_local == str(link_local(n.mac)) for n in (vm1, vm2, d1, d2))
    assert all(NO_IPV6 not in v.cmdline for v in plan.vms)
    v4 = plan_of(V4, "v4")
    assert all(NO_IPV6 in v.cmdline for v in v4.vms) and all(n.link_local is None and n.cidr6 is None for v in v4.vms for n in v.nics)


def test_dnsmasq_holds_a_reservation_per_dhcp_nic_and_advertises_the_prefix():
    plan = plan_of(DUAL, "dual")
    [server] = plan.part("dhcp").servers
    text = dnsmasq.config_text(server.config, plan.lab_dir)
    assert "interface=lan\nbind-interfaces\n" in text and "port=0\n" in text
    assert "dhcp-range=10.1.1.100,10.1.1.200,255.255.255.0,30m\n" in text
    assert f"dhcp-host={plan.vm('d1').nics[0].mac},10.1.1.100,d1\n" in text and f"dhcp-host={plan.vm('d2').nics[0].mac},10.1.1.101,d2\n" in text
    assert "dhcp-option=option:router,10.1.1.1\n" in text and "dhcp-option=option:dns-server,10.1.1.1\n" in text
    assert f"dhcp-leasefile={plan.lab_dir}/dhcp/lan.leases\n" in text
    assert "enable-ra\ndhcp-range=fd00:1::,ra-only,64\n" in text
    assert server.address == "10.1.1.254/24" and server.own_address  # no gateway: the top free address
    assert ipaddress.IPv6Interface(server.address6).network == ipaddress.IPv6Network("fd00:1::/64")
    assert "dnsmasq lan:<pid>" in plan_data(plan)["resources"]


def test_without_router_option_dnsmasq_sends_none():
    plan = plan_of(DUAL.replace(", router: 10.1.1.1, dns: [10.1.1.1]", ""), "dual")
    text = dnsmasq.config_text(plan.part("dhcp").servers[0].config, plan.lab_dir)
    assert "dhcp-option=option:router\n" in text and "dhcp-option=option:dns-server\n" in text  # empty: not sent


def test_a_gateway_is_the_dhcp_server_and_its_default_router():
    text = V4.replace("subnet: 10.1.1.0/24}", "subnet: 10.1.1.0/24, gateway: 10.1.1.1, dhcp: {range: 10.1.1.100-10.1.1.110}}").replace("address: 10.1.1.3/24", "address: dhcp")
    plan = plan_of(text, "gw")
    [server] = plan.part("dhcp").servers
    assert server.address == "10.1.1.1/24" and not server.own_address
    assert server.config.router == "10.1.1.1"


def test_templates_see_ipv6_the_reservation_and_the_planned_slaac_address():
    s = parse_scenario(DUAL, "dual.yaml")
    model = scenario_variables(s)
    assert render("{{ vm2.ip6 }} {{ vm2.eth0.ip6 }} {{ vm2.ip }} {{ d2.ip }}", model) == "fd00:1::3 fd00:1::3 fd00:1::3 10.1.1.101"
    plan = plan_of(DUAL, "dual")
    d1 = plan.vm("d1").nics[0]
    variables = plan_variables(plan)
    assert render("{{ d1.eth0.ip6 }} {{ d1.eth0.link_local }}", variables) == f"{d1.ip6} {d1.link_local.split('/')[0]}"


def test_ping_picks_the_family_from_the_target():
    plan = plan_of(DUAL, "dual")
    pings = [c.ping for c in plan.scenario.checks if c.ping is not None]
    assert ping_target(plan, pings[0]) == "fd00:1::3"  # no IPv4 in common: IPv6
    assert ping_target(plan, pings[1]) == plan.vm("d1").nics[0].ip6  # family: 6, the address SLAAC forms
    assert ping_target(plan, pings[2]) == "10.1.1.101"  # the reservation
    assert path_points(plan, "vm1", "fd00:1::3") == ["lan"]


def test_explain_shows_the_ipv6_settings_the_server_and_the_clients():
    text = explain(plan_of(DUAL, "dual"))
    assert "vm1$ ip addr add fd00:1::2/64 dev eth0" in text and "vm1$ echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_ra" in text
    assert "d1$ echo 1 > /proc/sys/net/ipv6/conf/eth0/accept_ra" in text and "d1$ ip addr add" not in text
    assert "dhcp-range=10.1.1.100,10.1.1.200,255.255.255.0,30m" in text and "dnsmasq --keep-in-foreground" in text
    assert "d1$ udhcpc -i eth0" in text


def test_cloud_seed_asks_dhcp_for_the_dhcp_nics_only():
    seed = CloudSeed("d1", "ssh-ed25519 AAAA", "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----", "ssh-ed25519 AAAB", "52:54:00:00:00:01", "10.9.0.2/24",
                     (("52:54:00:00:00:02", "eth0"), ("52:54:00:00:00:03", "eth1")), dhcp=("eth1",))
    ethernets = yaml.safe_load(network_config(seed))["ethernets"]
    assert ethernets["eth0"]["dhcp4"] is False and ethernets["eth1"]["dhcp4"] is True and ethernets["mgmt0"]["dhcp4"] is False


# -- the judges, on crafted frames ----------------------------------------------------------------

MAC_A, MAC_B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
V6_A, V6_B = "fd00:1::a", "fd00:1::b"


def ndp_exchange():
    ns = Ether(src=MAC_A, dst="33:33:ff:00:00:0b") / IPv6(src=V6_A, dst="ff02::1:ff00:b") / ICMPv6ND_NS(tgt=V6_B)
    dad = Ether(src=MAC_A, dst="33:33:ff:00:00:0a") / IPv6(src="::", dst="ff02::1:ff00:a") / ICMPv6ND_NS(tgt=V6_B)  # not address resolution
    na = Ether(src=MAC_B, dst=MAC_A) / IPv6(src=V6_B, dst=V6_A) / ICMPv6ND_NA(tgt=V6_B, S=1)
    echo = [Ether(src=MAC_A, dst=MAC_B) / IPv6(src=V6_A, dst=V6_B) / ICMPv6EchoRequest(id=5, seq=s) for s in (1, 2)]
    reply = [Ether(src=MAC_B, dst=MAC_A) / IPv6(src=V6_B, dst=V6_A) / ICMPv6EchoReply(id=5, seq=s) for s in (1, 2)]
    return wire(dad, ns, na, *echo, *reply)


def test_ndp_counts_solicitations_for_the_other_address_and_their_advertisements():
    c = count_ndp(ndp_exchange(), MAC_A, {V6_A}, MAC_B, {V6_B})
    assert (c.solicitations, c.advertisements) == (1, 1) and c.solicited_to == {"ff02::1:ff00:b / 33:33:ff:00:00:0b"}
    assert count_ndp(ndp_exchange(), MAC_A, {V6_A}, "52:54:00:00:00:0c", {"fd00:1::c"}).solicitations == 0


def test_icmpv6_echo_pairs_in_both_counters():
    packets = ndp_exchange()
    c = count_echo_between(packets, V6_A, V6_B)
    assert (c.requests, c.replies, c.pairs) == (2, 2, 2)
    assert count_echo(packets, {"fd00:1:0::a"}, "fd00:1::b").pairs == 2  # spelled another way: the same address
    v4 = wire(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.1.2", dst="10.1.1.3") / ICMP(type=8, id=1, seq=1))
    assert count_echo(v4, {"10.1.1.2"}, "10.1.1.3").requests == 1 and count_echo(v4, {V6_A}, V6_B).requests == 0


def subject(plan, name_a, name_b, packets):
    return CaptureSubject(name_a, plan.vm(name_a).nics[0], name_b, plan.vm(name_b).nics[0], packets)


def test_core_judges_ndp_and_icmp6_echo_on_a_plan():
    plan = plan_of(DUAL, "dual")
    a, b = plan.vm("vm1").nics[0], plan.vm("vm2").nics[0]
    ns = Ether(src=a.mac, dst="33:33:ff:00:00:03") / IPv6(src=a.ip6, dst="ff02::1:ff00:3") / ICMPv6ND_NS(tgt=b.ip6)
    na = Ether(src=b.mac, dst=a.mac) / IPv6(src=b.ip6, dst=a.ip6) / ICMPv6ND_NA(tgt=b.ip6)
    echoes = [Ether(src=a.mac, dst=b.mac) / IPv6(src=a.ip6, dst=b.ip6) / ICMPv6EchoRequest(id=1, seq=s) for s in range(3)]
    echoes += [Ether(src=b.mac, dst=a.mac) / IPv6(src=b.ip6, dst=a.ip6) / ICMPv6EchoReply(id=1, seq=s) for s in range(3)]
    j = judge_ndp(plan, None, subject(plan, "vm1", "vm2", wire(ns, na)))
    assert j.ok and "ff02::1:ff00:3 / 33:33:ff:00:00:03" in j.seen
    assert not judge_ndp(plan, None, subject(plan, "vm1", "vm2", wire(ns))).ok  # no advertisement back
    assert judge_icmp6_echo(plan, None, subject(plan, "vm1", "vm2", wire(*echoes))).ok  # 3 pairs: the ping vm1 → vm2 goes by IPv6
    assert not judge_icmp6_echo(plan, None, subject(plan, "vm1", "vm2", wire(*echoes[:3]))).ok


def dhcp_frame(kind: int, mac: str, yiaddr: str = "0.0.0.0", server: bool = False):
    chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    ip = IP(src="10.1.1.254", dst="10.1.1.100") if server else IP(src="0.0.0.0", dst="255.255.255.255")
    sport, dport = (67, 68) if server else (68, 67)
    return Ether(src="02:00:00:00:00:01" if server else mac, dst=mac if server else "ff:ff:ff:ff:ff:ff") / ip / UDP(sport=sport, dport=dport) / BOOTP(op=2 if server else 1, chaddr=chaddr, yiaddr=yiaddr) / DHCP(options=[("message-type", kind), "end"])


def test_dhcp_judges_the_whole_exchange_for_the_client_mac():
    plan = plan_of(DUAL, "dual")
    d1 = plan.vm("d1").nics[0]
    dora = wire(dhcp_frame(1, d1.mac), dhcp_frame(2, d1.mac, "10.1.1.100", True), dhcp_frame(3, d1.mac), dhcp_frame(5, d1.mac, "10.1.1.100", True))
    assert dhcp_messages(dora, d1.mac) == [(1, "0.0.0.0"), (2, "10.1.1.100"), (3, "0.0.0.0"), (5, "10.1.1.100")]
    j = judge_dhcp(plan, None, subject(plan, "d1", "d1", dora))
    assert j.ok and j.seen == "DISCOVER → OFFER 10.1.1.100 → REQUEST → ACK 10.1.1.100"
    assert not judge_dhcp(plan, None, subject(plan, "d1", "d1", dora[2:])).ok  # a renewal: no DISCOVER, no OFFER
    other = wire(dhcp_frame(1, d1.mac), dhcp_frame(2, d1.mac, "10.1.1.150", True), dhcp_frame(3, d1.mac), dhcp_frame(5, d1.mac, "10.1.1.150", True))
    j = judge_dhcp(plan, None, subject(plan, "d1", "d1", other))
    assert not j.ok and "offered 10.1.1.150, not the reservation" in j.seen
    assert dhcp_messages(dora, "52:54:00:99:99:99") == []  # another client's exchange


def test_ra_judges_the_prefix_from_the_router():
    plan = plan_of(DUAL, "dual")
    d1 = plan.vm("d1").nics[0]
    router = plan.bridge("lan").mac
    rs = Ether(src=d1.mac, dst="33:33:00:00:00:02") / IPv6(src=d1.link_local.split("/")[0], dst="ff02::2") / ICMPv6ND_RS()
    ra = Ether(src=router, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6ND_RA(routerlifetime=0) / ICMPv6NDOptPrefixInfo(prefix="fd00:1::", prefixlen=64)
    wrong = Ether(src=router, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6ND_RA() / ICMPv6NDOptPrefixInfo(prefix="fd00:9::", prefixlen=64)
    j = judge_ra(plan, None, subject(plan, "d1", "d1", wire(rs, ra)))
    assert j.ok and j.counts == {"ra": 1, "ra_all": 1, "rs": 1}
    assert not judge_ra(plan, None, subject(plan, "d1", "d1", wire(rs, wrong))).ok


# -- dnsmasq's lease file (written by a daemon that reads what guests send) ---------------------------


def test_lease_lines_are_matched_whole():
    text = (
        "1796648896 52:54:00:62:73:7f 10.1.1.100 d1 01:52:54:00:62:73:7f\n"
        "garbage line\n"
        "1796648896 52:54:00:62:73:80 10.1.1.101 " + "x" * 500 + " *\n"
        "0 52:54:00:62:73:81 10.1.1.102 * *\n"
        "0 52:54:00:62:73:82 10.1.1.103 \x1b]0;pwned\x07 *\n"  # a host name the guest sent with a terminal escape: not dnsmasq's writing
        "0 52:54:00:62:73:83 10.1.1.104 d3 \u202eid\n"
    )
    leases = dnsmasq.parse_leases(text)
    assert [(l.mac, l.address, l.hostname) for l in leases] == [("52:54:00:62:73:7f", "10.1.1.100", "d1"), ("52:54:00:62:73:81", "10.1.1.102", "*")]
    assert json.dumps(leases[0].to_json())


class _Guest:
    """A guest that answers `ip -o addr` with whatever it likes (it is root in there)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def run(self, command: str, timeout: float, check: bool = True):
        from vnetlab.backends.ssh import CommandResult

        return CommandResult(command, 0, self.out, "")


def test_the_addresses_a_guest_reports_are_kept_only_when_they_are_addresses():
    from vnetlab.features.dhcp import DhcpError, _addresses, _part, wait_for_address

    plan = plan_of(DUAL, "dual")
    [client] = [c for c in _part(plan).clients if c.slaac]
    out = (
        "eth0\n"
        "2: eth0    inet6 \x1b[2Jfd00:1::99/64 scope global \\       valid_lft forever\n"
        "2: eth0    inet6 fd00:1:0::77/64 scope global tentative \\       valid_lft forever\n"
        "2: eth0    inet 10.1.1.5/24 scope global eth0\n"
    )
    dev, held = _addresses(_Guest(out), client, 6)
    assert (dev, held) == ("eth0", [("fd00:1::77/64", True)])  # canonical, the escape-laden word and the other family dropped
    with pytest.raises(DhcpError) as err:
        wait_for_address(_Guest(out.replace(" tentative", "")), client, 6, client.slaac, 0.0)
    assert "formed fd00:1::77/64 from the advertised prefix" in str(err.value) and "\x1b" not in str(err.value)


class _Stimulated:
    """A guest whose NIC holds its lease and SLAAC address; records what it was asked to run."""

    def __init__(self, client) -> None:
        self.client, self.commands = client, []

    def run(self, command: str, *, timeout: float = 30.0, stdin: bytes | None = None, check: bool = True):
        from vnetlab.backends.ssh import CommandResult

        self.commands.append(command)
        if "route show default" in command:
            return CommandResult(command, 0, f"default via {self.client.router} dev eth0\n", "")
        address = self.client.slaac if "ip -6 -o addr" in command else self.client.dhcp
        return CommandResult(command, 0, f"eth0\n2: eth0    inet{'6' if 'ip -6' in command else ''} {address} scope global \\\n", "")


def test_the_ra_stimulus_starts_ipv6_over_and_waits_for_the_address_and_the_lease():
    from vnetlab.checks.base import CheckContext
    from vnetlab.features.dhcp import IPV6_OVER, _part, redo_slaac

    plan = plan_of(DUAL, "dual")
    [client] = [c for c in _part(plan).clients if c.slaac]
    assert client.dhcp  # d1 leases and forms its SLAAC address: a debian guest's networkd does both
    guest = _Stimulated(client)
    redo_slaac(CheckContext(plan, {"d1": guest}, Path(".")), [c.capture for c in plan.scenario.checks if c.capture is not None])
    over, slaac, lease, route = guest.commands
    assert over.endswith(IPV6_OVER) and f"mac={client.mac};" in over and f"slaac={client.slaac};" in over
    assert "ip -6 -o addr" in slaac and "ip -4 -o addr" in lease and "ip -4 route show default" in route  # networkd asked for the lease again on the way


@pytest.mark.parametrize(("managed", "expect"), [(True, "ip -6 addr del fd00:1::5054:ff:fe00:1/64 dev vnl-no-such0\nsystemctl restart systemd-networkd\n"), (False, "/proc/sys/net/ipv6/conf/vnl-no-such0/disable_ipv6")])
def test_ipv6_starts_over_through_networkd_where_it_manages_the_nic(managed, expect):
    """networkd forms the address where it manages the NIC: switching IPv6 off under it lost the
    address for good; it keeps the address across its restart, so the address goes first (the
    stimulus then waits for the advertisement that forms it again). Elsewhere the kernel forms it
    again once IPv6 is switched off and on."""
    from vnetlab.features.dhcp import IPV6_OVER

    stubs = 'cat() { echo 7; }; grep() { [ "$managed" = yes ]; }; systemctl() { echo "systemctl $*"; }; ip() { echo "ip $*"; }; dev=vnl-no-such0; slaac=fd00:1::5054:ff:fe00:1/64; '
    done = subprocess.run(["sh", "-c", stubs + IPV6_OVER], capture_output=True, text=True, env={"managed": "yes" if managed else "no", "PATH": "/usr/bin:/bin"})
    assert expect in (done.stdout if managed else done.stderr)  # unmanaged: the write is tried (no such NIC here)
    assert ("systemctl" in done.stdout) == managed and ("ip -6 addr del" in done.stdout) == managed


def test_an_ipv6_ping_is_graded_on_the_wire_by_its_echo_pairs():
    from vnetlab.checks.base import Evidence
    from vnetlab.checks.ping import judge_ping_wire

    plan = plan_of(DUAL, "dual")
    ping = plan.scenario.checks[0].ping  # vm1 → vm2: IPv6, the only family they share
    a, b = plan.vm("vm1").nics[0], plan.vm("vm2").nics[0]
    said = Evidence({"command": "ping", "exit": 0, "stdout": "3 packets transmitted, 3 packets received, 0% packet loss\n", "stderr": ""})
    pairs = [Ether(src=a.mac, dst=b.mac) / IPv6(src=a.ip6, dst=b.ip6) / ICMPv6EchoRequest(id=9, seq=s) for s in range(3)]
    pairs += [Ether(src=b.mac, dst=a.mac) / IPv6(src=b.ip6, dst=a.ip6) / ICMPv6EchoReply(id=9, seq=s) for s in range(3)]
    assert judge_ping_wire(plan, ping, said, {"lan": wire(*pairs)}).ok
    j = judge_ping_wire(plan, ping, said, {"lan": wire(*pairs[:3])})  # the guest said 3/3; the wire saw no reply
    assert not j.ok and "no echo reply crossed lan" in j.seen


def test_a_failing_stimulus_is_kept_as_the_evidence_of_its_captures(monkeypatch, tmp_path):
    from vnetlab.checks import runner
    from vnetlab.checks.base import CheckContext
    from vnetlab.checks.evidence import Collected

    plan = plan_of(DUAL, "dual")
    served = []

    def boom(ctx, captures):
        served.append([list(c.expect) for c in captures])
        raise RuntimeError("no neighbour table")

    monkeypatch.setitem(runner.CORE_STIMULI, "ndp", boom)
    collected = Collected()
    runner.stimulate(CheckContext(plan, {}, tmp_path), collected)  # no guest sessions: the DHCP and SLAAC stimuli fail too
    assert served == [[["ndp", "icmp6-echo"]]]
    assert collected.evidence[3].error == "RuntimeError: no neighbour table"
    assert collected.evidence[4].error and collected.evidence[5].error  # each capture keeps why
    result = runner.judge_capture(plan, plan.scenario.checks[3].capture, [], tmp_path / "lan.pcap", collected.evidence[3])
    assert not result.ok and result.detail.endswith("(before the checks: RuntimeError: no neighbour table)")


def test_guests_of_an_ipv6_lab_are_restored_from_warm_images_of_every_kind(tmp_path):
    """Restored tiny, debian and cloud guests form their link-local, static and SLAAC addresses as
    booted ones do (measured: the same IPv6 sysctls, addresses and routes, warm and --cold; their
    NICs were down and unaddressed when the warm guest was saved): each is restored. A cloud
    image's DHCP NIC still boots, for its own reason."""
    from tests.unit.scenario_helpers import KERNEL
    from tests.unit.test_image_kinds import bootable_raw
    from vnetlab.plan.planner import PlanOptions, make_plan
    from vnetlab.run.warm import cold_reason

    dual = plan_of(DUAL, "dual")
    assert [cold_reason(vm) for vm in dual.vms] == [None] * 4
    bootable_raw(tmp_path / "cloud.img")
    text = DUAL.split("vms:")[0] + (
        "vms:\n"
        "  - {name: deb, image: debian, nics: [{bridge: lan, addresses: [10.1.1.2/24, slaac]}]}\n"
        "  - {name: static6, image: {file: cloud.img}, nics: [{bridge: lan, addresses: [10.1.1.3/24, 'fd00:1::3/64']}]}\n"
        "  - {name: slaac6, image: {file: cloud.img}, nics: [{bridge: lan, address: slaac}]}\n"
        "  - {name: leases, image: {file: cloud.img}, nics: [{bridge: lan, addresses: [dhcp, slaac]}]}\n"
    )
    (tmp_path / "lab.yaml").write_text(text)
    kinds = make_plan(parse_scenario(text, str(tmp_path / "lab.yaml")), "kinds", PlanOptions(kernel=KERNEL))
    assert all(n.link_local for vm in kinds.vms for n in vm.nics)  # the lab uses IPv6
    reasons = {vm.name: cold_reason(vm) for vm in kinds.vms}
    assert reasons.pop("leases").startswith("a cloud image's DHCP NIC asks through cloud-init")
    assert reasons == {"deb": None, "static6": None, "slaac6": None}
    v4 = plan_of("name: v4\nbridges:\n  - {name: lan, subnet: 10.1.1.0/24, dhcp: {range: 10.1.1.100-10.1.1.200}}\nvms:\n  - {name: vm1, nics: [{bridge: lan, address: dhcp}]}\n", "v4")
    assert [cold_reason(vm) for vm in v4.vms] == [None]  # a tiny guest leasing IPv4 is restored (libvirt-nat-vs-bridge passed so)