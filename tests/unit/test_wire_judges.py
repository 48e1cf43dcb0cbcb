"""The judges on the wire, word for word: an exercise counts a check only when vnetlab's own capture
saw its traffic, and a student reads the verdict's detail to find out why it did not. Each way a wire
judge must fail (no reply, too few pairs, the wrong size, the wrong port or address, one way only,
a stale session), and the exact expectation and sighting it states; frames built with scapy."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from types import SimpleNamespace
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from vnetlab.backends.ssh import CommandResult
from vnetlab.checks import runner
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence, Judgement, Wire, nic_cidrs
from vnetlab.checks.evidence import Collected, RunSetting, select_checks, with_checks
from vnetlab.checks.capture import read_frames
from vnetlab.checks.parse import MAX_TEXT
from vnetlab.checks.ping import _underlay_ip, collect_ping, echo_on_wire, guest_of, judge_ping_wire, kept_output, output_evidence, path_points, ping_points, recorded
from vnetlab.compose import load_scenario, parse_scenario, registry
from vnetlab.features.mtu import PMTU, PmtuCheck, judge_pmtu_wire
from vnetlab.features.perf import PERF, WIRE_BYTES_MAX, judge_perf_wire
from vnetlab.features.wireguard import HANDSHAKE, judge_handshake_wire
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.paths import Layout
from vnetlab.plan.planner import PlanOptions, make_plan

A, B = "10.1.1.2", "10.1.1.3"
ETH = {"src": "52:54:00:00:00:0a", "dst": "52:54:00:00:00:0b"}  # given: scapy would otherwise ask the host's network
WG_PORT = 51820
LAB = {
    "name": "wirej",
    "bridges": [{"name": "br0", "subnet": "10.1.1.0/24"}, {"name": "br1", "subnet": "10.2.2.0/24"}],
    "vms": [
        {"name": "vm1", "nics": [{"bridge": "br0", "address": f"{A}/24"}]},
        {"name": "vm2", "nics": [{"bridge": "br0", "address": f"{B}/24"}, {"bridge": "br1", "address": "10.2.2.3/24"}]},
    ],
    "wireguard": [{"name": "wg0", "underlay": "br0", "members": [{"vm": "vm1", "address": "192.168.2.1/24"}, {"vm": "vm2", "address": "192.168.2.2/24"}]}],
    "checks": [
        {"ping": {"from": "vm1", "to": "vm2", "count": 3}},
        {"ping": {"from": "vm1", "to": "vm2", "via": "wg0", "count": 3}},
        {"ping": {"from": "vm2", "to": "vm1", "via": "wg0", "count": 3, "expect": "failure"}},
        {"wireguard": {"tunnel": "wg0", "between": ["vm1", "vm2"]}},
        {"perf": {"from": "vm1", "to": "vm2"}},
    ],
}


@functools.cache
def lab():
    return make_plan(parse_scenario(yaml.safe_dump(copy.deepcopy(LAB), sort_keys=False), "lab.yaml"), "wirej")


@functools.cache
def pmtu_lab():
    return make_plan(load_scenario(SCENARIOS_DIR / "mtu-pmtu.yaml"), "wirej")


def spec(i: int):
    return lab().scenario.checks[i].spec


def frames(tmp_path: Path, packets):
    """The frames a capture kept of these packets, read back from a pcap as a run folder keeps it."""
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.pcap"
    wrpcap(str(path), packets)
    return read_frames(path)


def echo(src: str, dst: str, seq: int, reply: bool = False, size: int = 84, ident: int = 7):
    return Ether(**ETH) / IP(src=src, dst=dst) / ICMP(type=0 if reply else 8, id=ident, seq=seq) / Raw(b"x" * (size - 28))


def pairs(n: int, src: str = A, dst: str = B, size: int = 84):
    return [p for k in range(n) for p in (echo(src, dst, k, size=size), echo(dst, src, k, reply=True, size=size))]


def said(stdout: str) -> Evidence:
    return Evidence({"command": "ping", "exit": 0, "stdout": stdout, "stderr": ""})


pytestmark = pytest.mark.usefixtures("no_neighbour_resolution")  # tests/unit/conftest.py
PINGED_3 = said("3 packets transmitted, 3 packets received, 0% packet loss\n")
PINGED_1 = said("3 packets transmitted, 1 packets received, 66% packet loss\n")
SILENT = said("")


# -- a ping's echo pairs ---------------------------------------------------------------------------------------------


def test_echo_pairs_on_the_wire_are_stated_exactly(tmp_path):
    seen = {"br0": frames(tmp_path, pairs(3))}
    ok = echo_on_wire(lab(), "vm1", B, seen, ["br0"], claimed=3, must_fail=False)
    assert ok.ok
    assert ok.expected == f"≥3 echo request/reply pair(s) with {B} on br0"
    assert ok.seen == f"3 echo request/reply pair(s) {A} ↔ {B} on br0 (3 echo request(s) → {B}, 3 reply(ies))"
    assert ok.counts == {"wire_echo_requests": 3, "wire_echo_replies": 3, "wire_echo_pairs": 3}
    two = echo_on_wire(lab(), "vm1", B, {"br0": frames(tmp_path, pairs(2))}, ["br0"], claimed=3, must_fail=False)
    assert not two.ok and two.seen.startswith("2 echo request/reply pair(s)")  # fewer pairs than the guest claimed replies
    one = echo_on_wire(lab(), "vm1", B, {"br0": frames(tmp_path, pairs(1))}, ["br0"], claimed=0, must_fail=False)
    assert one.ok and one.expected == f"≥1 echo request/reply pair(s) with {B} on br0"  # a guest claiming nothing still needs one pair


def test_echo_replies_that_answer_no_request_are_no_pair(tmp_path):
    unanswered = [echo(A, B, 0), echo(B, A, 5, reply=True), echo(B, A, 0, reply=True, ident=9)]
    got = echo_on_wire(lab(), "vm1", B, {"br0": frames(tmp_path, unanswered)}, ["br0"], claimed=0, must_fail=False)
    assert not got.ok and got.counts == {"wire_echo_requests": 1, "wire_echo_replies": 2, "wire_echo_pairs": 0}
    assert got.seen == f"0 echo request/reply pair(s) {A} ↔ {B} on br0 (1 echo request(s) → {B}, 2 reply(ies))"


def test_the_best_capture_point_is_the_one_with_most_pairs_then_requests(tmp_path):
    seen = {"br0": frames(tmp_path, [echo(A, B, 0)]), "br1": frames(tmp_path, pairs(2))}
    got = echo_on_wire(lab(), "vm1", B, seen, ["br0", "br1"], claimed=2, must_fail=False)
    assert got.ok and got.expected.endswith("on br0 or br1") and " on br1 (" in got.seen
    requests_only = {"br0": frames(tmp_path, [echo(A, B, 0), echo(A, B, 1)]), "br1": frames(tmp_path, [echo(A, B, 0)])}
    got = echo_on_wire(lab(), "vm1", B, requests_only, ["br1", "br0"], claimed=0, must_fail=False)
    assert not got.ok and got.counts["wire_echo_requests"] == 2  # the point that saw most of the attempt is the one told
    assert got.seen == f"no echo reply crossed br1 or br0 (2 echo request(s) → {B}, 0 reply(ies))"


def test_without_a_capture_point_nothing_is_seen():
    got = echo_on_wire(lab(), "vm1", B, {}, [], claimed=0, must_fail=False)
    assert not got.ok and got.counts == {"wire_echo_requests": 0, "wire_echo_replies": 0, "wire_echo_pairs": 0}
    assert got.expected == f"≥1 echo request/reply pair(s) with {B} on no capture point"
    assert got.seen == f"no echo reply crossed no capture point (0 echo request(s) → {B}, 0 reply(ies))"
    assert echo_on_wire(lab(), "vm1", B, {}, [], claimed=0, must_fail=True).ok
    kept_nothing = echo_on_wire(lab(), "vm1", B, {}, ["br0"], claimed=0, must_fail=False)  # a capture point with no frames kept
    assert not kept_nothing.ok and kept_nothing.seen == f"no echo reply crossed br0 (0 echo request(s) → {B}, 0 reply(ies))"


def test_an_echo_that_must_fail_fails_on_any_reply_at_any_point(tmp_path):
    seen = {"br0": frames(tmp_path, [echo(A, B, 0)]), "br1": frames(tmp_path, pairs(2))}
    got = echo_on_wire(lab(), "vm1", B, seen, ["br0", "br1"], claimed=0, must_fail=True)
    assert not got.ok and got.expected == f"no echo reply from {B} on br0 or br1"
    assert got.seen == f"2 echo reply(ies) from {B} crossed br1"
    quiet = echo_on_wire(lab(), "vm1", B, {"br0": frames(tmp_path, [echo(A, B, 0)])}, ["br0"], claimed=0, must_fail=True)
    assert quiet.ok and quiet.seen == f"no echo reply crossed br0 (1 echo request(s) → {B}, 0 reply(ies))"
    assert quiet.counts == {"wire_echo_requests": 1, "wire_echo_replies": 0, "wire_echo_pairs": 0}


def test_a_sized_echo_counts_only_packets_of_its_size(tmp_path):
    seen = {"br0": frames(tmp_path, pairs(3, size=1500) + pairs(3))}
    got = echo_on_wire(lab(), "vm1", B, seen, ["br0"], claimed=3, must_fail=False, size=1500)
    assert got.ok and got.expected == f"≥3 echo (1500-byte packets) request/reply pair(s) with {B} on br0"
    assert got.counts["wire_echo_pairs"] == 3  # the 84-byte pairs are not the probe's
    small = echo_on_wire(lab(), "vm1", B, {"br0": frames(tmp_path, pairs(3))}, ["br0"], claimed=3, must_fail=True, size=1500)
    assert small.ok and small.seen.startswith("no echo (1500-byte packets) reply crossed br0")


def test_a_ping_is_judged_on_the_wire_against_the_replies_its_guest_claimed(tmp_path):
    ping = spec(0)
    assert ping_points(lab(), ping) == ["br0"]
    assert judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, pairs(3))}).ok
    fewer = judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, pairs(2))})
    assert not fewer.ok and fewer.expected == f"≥3 echo request/reply pair(s) with {B} on br0"
    assert judge_ping_wire(lab(), ping, PINGED_1, {"br0": frames(tmp_path, pairs(1))}).ok
    no_summary = judge_ping_wire(lab(), ping, SILENT, {"br0": frames(tmp_path, pairs(1))})
    assert no_summary.ok and no_summary.expected.startswith("≥1 ")
    must_fail = dataclasses.replace(ping, expect="failure")
    refused = judge_ping_wire(lab(), must_fail, SILENT, {"br0": frames(tmp_path, pairs(1))})
    assert not refused.ok and refused.expected == f"no echo reply from {B} on br0"


def test_path_points_follow_the_target_subnet_else_every_addressed_nic():
    assert path_points(lab(), "vm2", A) == ["br0"]
    assert path_points(lab(), "vm2", "10.2.2.9") == ["br1"]
    assert path_points(lab(), "vm2", "172.16.0.1") == ["br0", "br1"]  # routed: wherever it may leave
    assert path_points(lab(), "vm2", "vm1") == ["br0", "br1"]  # not an address
    assert path_points(pmtu_lab(), "jumbo1", "10.14.0.10") == ["jumbo"]


def test_path_points_of_a_namespace_node_and_behind_a_switch_guest():
    perf = make_plan(load_scenario(SCENARIOS_DIR / "vm-vs-container-perf.yaml"), "wirej")
    assert path_points(perf, "c1", "10.1.1.2") == ["cbr0"]  # a container: its bridge
    assert path_points(perf, "inet1", "10.1.1.2") == ["wan0"]  # a host on no bridge: its uplink
    by_hand = make_plan(load_scenario(SCENARIOS_DIR / "ex-bridge-by-hand.yaml"), "wirej")
    net = by_hand.scenario.bridges[0].subnet.rsplit(".", 1)[0]
    assert path_points(by_hand, "vm1", f"{net}.3") == ["vm1.eth0"]  # the bridge runs in sw-br0: vm1's link to it


# -- a ping through a tunnel: its carrier datagrams -----------------------------------------------------------------


def carrier(src: str, dst: str, n: int, port: int = WG_PORT, sport: int = 40000):
    return [Ether(**ETH) / IP(src=src, dst=dst) / UDP(sport=sport, dport=port) / Raw(b"\4\0\0\0" + b"c" * 60) for _ in range(n)]


def test_a_ping_through_a_tunnel_needs_its_carrier_datagrams_both_ways(tmp_path):
    ping = spec(1)
    assert ping_points(lab(), ping) == ["br0"]
    both = judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, carrier(A, B, 3) + carrier(B, A, 3))})
    assert both.ok and both.counts == {"wire_carrier_out": 3, "wire_carrier_back": 3}
    assert both.expected == f"≥3 WireGuard tunnel datagram(s) each way between {A} and {B} on br0"
    assert both.seen == f"3 datagram(s) {A} → {B} and 3 back on UDP port {WG_PORT} (WireGuard tunnel wg0)"
    short_back = judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, carrier(A, B, 3) + carrier(B, A, 2))})
    assert not short_back.ok and short_back.counts == {"wire_carrier_out": 3, "wire_carrier_back": 2}
    short_out = judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, carrier(A, B, 2) + carrier(B, A, 3))})
    assert not short_out.ok
    one_way = judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, carrier(A, B, 3))})
    assert not one_way.ok
    assert one_way.seen == f"no reply crossed br0: 3 datagram(s) {A} → {B} and 0 back on UDP port {WG_PORT} (WireGuard tunnel wg0)"
    claimed_none = judge_ping_wire(lab(), ping, SILENT, {"br0": frames(tmp_path, carrier(A, B, 1) + carrier(B, A, 1))})
    assert claimed_none.ok and claimed_none.expected.startswith("≥1 WireGuard tunnel datagram(s)")
    assert not judge_ping_wire(lab(), ping, SILENT, {}).ok


def test_a_pings_points_are_its_tunnels_underlay_or_its_path_to_the_target():
    back = dataclasses.replace(spec(0), source="vm2", to="vm1")
    assert ping_points(lab(), back) == ["br0"]  # vm2 has NICs on br0 and br1: the one on vm1's subnet
    assert ping_points(lab(), spec(2)) == ["br0"]  # through wg0: its underlay, though the tunnel's address is on neither bridge
    assert PMTU.wire.points(pmtu_lab(), PmtuCheck(source="router", to="small1", size=1372)) == ["small"]  # the router's NIC toward small1
    assert PERF.wire.points(lab(), dataclasses.replace(spec(4), source="vm2", to="vm1")) == ["br0"]  # iperf3's path, not every NIC of vm2
    assert path_points(lab(), "vm2", "192.168.2.1") == ["br0", "br1"]


def test_an_echo_from_a_node_with_several_addresses_names_them_all(tmp_path):
    seen = {"br0": frames(tmp_path, pairs(2, B, A))}
    got = echo_on_wire(lab(), "vm2", A, seen, ["br0"], claimed=2, must_fail=False)
    assert got.ok and got.seen == f"2 echo request/reply pair(s) 10.1.1.3, 10.2.2.3 ↔ {A} on br0 (2 echo request(s) → {A}, 2 reply(ies))"


def test_an_overlay_or_tunnel_vnetlab_does_not_know_is_captured_nowhere():
    assert ping_points(lab(), dataclasses.replace(spec(1), via="wg9")) == []
    assert HANDSHAKE.wire.points(lab(), dataclasses.replace(spec(3), tunnel="wg9")) == []
    assert HANDSHAKE.wire.points(lab(), spec(3)) == ["br0"]
    assert _underlay_ip(lab(), "vm1", "br0") == A and _underlay_ip(lab(), "vm2", "br1") == "10.2.2.3"
    assert _underlay_ip(lab(), "vm1", "br1") is None  # no address there: no carrier to count


def test_only_the_tunnels_port_and_members_carry_a_ping(tmp_path):
    ping = spec(1)
    other_port = carrier(A, B, 3, port=4789) + carrier(B, A, 3, port=4789)
    assert judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, other_port)}).counts == {"wire_carrier_out": 0, "wire_carrier_back": 0}
    from_the_port = carrier(A, B, 3, port=9999, sport=WG_PORT) + carrier(B, A, 3, port=9999, sport=WG_PORT)
    assert judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, from_the_port)}).ok  # the port at either end
    strangers = carrier(A, "10.1.1.9", 3) + carrier("10.1.1.9", A, 3)
    assert not judge_ping_wire(lab(), ping, PINGED_3, {"br0": frames(tmp_path, strangers)}).ok
    elsewhere = {"br1": frames(tmp_path, carrier(A, B, 3) + carrier(B, A, 3))}
    assert not judge_ping_wire(lab(), ping, PINGED_3, elsewhere).ok  # not on the underlay


def test_a_ping_through_a_tunnel_that_must_fail_fails_on_a_datagram_back(tmp_path):
    ping = spec(2)  # vm2 → vm1, must fail
    quiet = judge_ping_wire(lab(), ping, SILENT, {"br0": frames(tmp_path, carrier(B, A, 3))})
    assert quiet.ok and quiet.expected == f"no WireGuard tunnel datagram from {A} back on br0"
    assert quiet.seen == f"3 datagram(s) {B} → {A} and 0 back on UDP port {WG_PORT} (WireGuard tunnel wg0) on br0"
    answered = judge_ping_wire(lab(), ping, SILENT, {"br0": frames(tmp_path, carrier(B, A, 3) + carrier(A, B, 1))})
    assert not answered.ok and answered.counts == {"wire_carrier_out": 3, "wire_carrier_back": 1}


# -- pmtu: echo pairs of the probe's size, and the router's word ---------------------------------------------------


def frag_needed(router: str, to: str, about: str, mtu: int):
    quoted = bytes(IP(src=to, dst=about, len=mtu + 1) / ICMP())[:28]
    return Ether(**ETH) / IP(src=router, dst=to) / ICMP(type=3, code=4, nexthopmtu=mtu) / Raw(quoted)


def test_pmtu_on_the_wire_counts_only_echo_of_the_probes_size(tmp_path):
    check = PmtuCheck(source="jumbo1", to="router", size=8972)
    whole = {"jumbo": frames(tmp_path, pairs(3, "10.9.0.10", "10.9.0.1", size=9000))}
    got = judge_pmtu_wire(pmtu_lab(), check, PINGED_3, whole)
    assert got.ok and got.expected == "≥3 echo (9000-byte packets) request/reply pair(s) with 10.9.0.1 on jumbo"
    smaller = {"jumbo": frames(tmp_path, pairs(3, "10.9.0.10", "10.9.0.1", size=1500))}
    assert not judge_pmtu_wire(pmtu_lab(), check, PINGED_3, smaller).ok
    refused = dataclasses.replace(check, size=8973, expect="failure")
    assert judge_pmtu_wire(pmtu_lab(), refused, SILENT, whole).ok  # 9000-byte replies are not the 9001-byte probe's
    assert not judge_pmtu_wire(pmtu_lab(), refused, SILENT, {"jumbo": frames(tmp_path, pairs(1, "10.9.0.10", "10.9.0.1", size=9001))}).ok


def test_frag_needed_on_the_wire_wants_no_reply_and_the_routers_word_about_the_target(tmp_path):
    check = PmtuCheck(source="jumbo1", to="10.14.0.10", size=1373, expect="frag-needed")
    probe = [echo("10.9.0.10", "10.14.0.10", 0, size=1401)]
    told = judge_pmtu_wire(pmtu_lab(), check, SILENT, {"jumbo": frames(tmp_path, probe + [frag_needed("10.9.0.1", "10.9.0.10", "10.14.0.10", 1400)] * 2)})
    assert told.ok
    assert told.expected == "no echo (1401-byte packets) reply from 10.14.0.10 on jumbo, and ≥1 ICMP fragmentation needed to jumbo1"
    assert told.seen == "no echo (1401-byte packets) reply crossed jumbo (1 echo (1401-byte packets) request(s) → 10.14.0.10, 0 reply(ies)); 2 fragmentation needed about 10.14.0.10 (next-hop MTU 1400)"
    assert told.counts == {"wire_echo_requests": 1, "wire_echo_replies": 0, "wire_echo_pairs": 0, "wire_frag_needed": 2}
    two_routers = [frag_needed("10.9.0.1", "10.9.0.10", "10.14.0.10", 1450), frag_needed("10.9.0.1", "10.9.0.10", "10.14.0.10", 1400)]
    assert judge_pmtu_wire(pmtu_lab(), check, SILENT, {"jumbo": frames(tmp_path, probe + two_routers)}).seen.endswith("; 2 fragmentation needed about 10.14.0.10 (next-hop MTU 1400, 1450)")
    nothing_kept = judge_pmtu_wire(pmtu_lab(), check, SILENT, {})
    assert not nothing_kept.ok and nothing_kept.counts["wire_frag_needed"] == 0
    silent_router = judge_pmtu_wire(pmtu_lab(), check, SILENT, {"jumbo": frames(tmp_path, probe)})
    assert not silent_router.ok and silent_router.seen.endswith("; 0 fragmentation needed about 10.14.0.10")
    about_another = frag_needed("10.9.0.1", "10.9.0.10", "10.14.0.99", 1400)
    assert not judge_pmtu_wire(pmtu_lab(), check, SILENT, {"jumbo": frames(tmp_path, probe + [about_another])}).ok
    replied = probe + [echo("10.14.0.10", "10.9.0.10", 0, reply=True, size=1401), frag_needed("10.9.0.1", "10.9.0.10", "10.14.0.10", 1400)]
    assert not judge_pmtu_wire(pmtu_lab(), check, SILENT, {"jumbo": frames(tmp_path, replied)}).ok  # it got through after all


# -- perf: the TCP bytes iperf3 says it moved ------------------------------------------------------------------------


def iperf_said(received: int) -> Evidence:
    out = json.dumps({"end": {"sum_received": {"bytes": received, "bits_per_second": 1e6, "seconds": 1}}})
    return Evidence({"server_error": None, "iperf": {"command": "iperf3", "exit": 0, "stdout": out, "stderr": ""},
                     "ping": {"command": "ping", "exit": 0, "stdout": "1 packets transmitted, 1 packets received\n", "stderr": ""}})


def tcp(n: int, payload: int = 1000, src: str = A, dst: str = B, dport: int = 5201):
    return [Ether(**ETH) / IP(src=src, dst=dst) / TCP(sport=40000, dport=dport) / Raw(b"d" * payload) for _ in range(n)]


def test_perf_on_the_wire_wants_half_the_bytes_iperf3_reports(tmp_path):
    perf = spec(4)
    half = judge_perf_wire(lab(), perf, iperf_said(4000), {"br0": frames(tmp_path, tcp(2))})
    assert half.ok and half.counts == {"wire_tcp_bytes": 2000}
    assert half.expected == f"≥2000 bytes of TCP to {B}:5201 on br0 (half of the 4000 iperf3 reports)"
    assert half.seen == f"2000 bytes of TCP to {B}:5201 on br0"
    short = judge_perf_wire(lab(), perf, iperf_said(4000), {"br0": frames(tmp_path, tcp(1) + tcp(1, payload=999))})
    assert not short.ok and short.counts == {"wire_tcp_bytes": 1999}
    nothing = judge_perf_wire(lab(), perf, iperf_said(4000), {})
    assert not nothing.ok and nothing.seen == "no iperf3 data crossed br0" and nothing.counts == {"wire_tcp_bytes": 0}


def test_perf_on_the_wire_ignores_other_flows_and_caps_what_it_asks(tmp_path):
    perf = spec(4)
    others = tcp(3, dport=22) + tcp(3, src="10.1.1.9") + tcp(3, dst="10.1.1.9")
    assert judge_perf_wire(lab(), perf, iperf_said(2000), {"br0": frames(tmp_path, others)}).counts == {"wire_tcp_bytes": 0}
    huge = judge_perf_wire(lab(), perf, iperf_said(1 << 30), {"br0": frames(tmp_path, tcp(1))})
    assert not huge.ok and huge.expected.startswith(f"≥{WIRE_BYTES_MAX} bytes of TCP")  # the capture keeps only its first frames
    unmeasured = judge_perf_wire(lab(), perf, Evidence({"server_error": "no server", "ping": {"stdout": ""}}), {"br0": frames(tmp_path, tcp(1, payload=1))})
    assert unmeasured.ok and unmeasured.expected.startswith("≥1 bytes") and unmeasured.expected.endswith("(half of the 0 iperf3 reports)")


# -- WireGuard: a handshake on the underlay --------------------------------------------------------------------------


def wg(src: str, dst: str, kind: int, size: int):
    return Ether(**ETH) / IP(src=src, dst=dst) / UDP(sport=WG_PORT, dport=WG_PORT) / Raw(bytes([kind, 0, 0, 0]) + b"\1" * (size - 4))


def test_a_handshake_on_the_wire_is_an_initiation_one_way_and_its_response_back(tmp_path):
    check = spec(3)
    got = judge_handshake_wire(lab(), check, Evidence(), {"br0": frames(tmp_path, [wg(A, B, 1, 148), wg(B, A, 2, 92)])})
    assert got.ok and got.expected == f"a WireGuard handshake (or data both ways) between {A} and {B} on br0"
    assert got.seen == f"{A} → {B}: 1 handshake initiation; back: 1 handshake response (UDP port {WG_PORT} on br0)"
    assert got.counts == {"wire_handshake_initiation_out": 1, "wire_handshake_response_back": 1}
    begun_by_b = judge_handshake_wire(lab(), check, Evidence(), {"br0": frames(tmp_path, [wg(B, A, 1, 148), wg(A, B, 2, 92)])})
    assert begun_by_b.ok and begun_by_b.counts == {"wire_handshake_response_out": 1, "wire_handshake_initiation_back": 1}
    unanswered = judge_handshake_wire(lab(), check, Evidence(), {"br0": frames(tmp_path, [wg(A, B, 1, 148), wg(B, A, 1, 148)])})
    assert not unanswered.ok
    assert unanswered.seen == f"no completed WireGuard handshake crossed br0: {A} → {B}: 1 handshake initiation; back: 1 handshake initiation (UDP port {WG_PORT} on br0)"
    nothing = judge_handshake_wire(lab(), check, Evidence(), {})
    assert not nothing.ok and nothing.seen == f"no completed WireGuard handshake crossed br0: {A} → {B}: nothing; back: nothing (UDP port {WG_PORT} on br0)"


def test_data_both_ways_shows_a_session_but_not_a_new_handshake(tmp_path):
    check = spec(3)
    one_way = judge_handshake_wire(lab(), check, Evidence(), {"br0": frames(tmp_path, [wg(A, B, 4, 64), wg(A, B, 4, 64)])})
    assert not one_way.ok and one_way.counts == {"wire_data_out": 2}
    rekeyed = dataclasses.replace(check, rekey=True)
    stale = judge_handshake_wire(lab(), rekeyed, Evidence(), {"br0": frames(tmp_path, [wg(A, B, 4, 64), wg(B, A, 4, 64)])})
    assert not stale.ok and stale.expected == f"a new WireGuard handshake between {A} and {B} on br0"
    assert stale.seen.startswith(f"no new WireGuard handshake crossed br0: {A} → {B}: 1 data; back: 1 data")
    fresh = judge_handshake_wire(lab(), rekeyed, Evidence(), {"br0": frames(tmp_path, [wg(A, B, 1, 148), wg(B, A, 2, 92)])})
    assert fresh.ok and not fresh.seen.startswith("no ")


# -- what a ping check keeps of its run --------------------------------------------------------------------------------


class Guest:
    """A guest whose every command prints `stdout`; records what it was asked to run."""

    def __init__(self, stdout: str):
        self.stdout, self.calls = stdout, []

    def run(self, command, *, timeout=30.0, stdin=None, check=True):
        self.calls.append((command, timeout))
        return CommandResult(command, 1, self.stdout, "ping: warning\n")


def test_a_ping_keeps_its_command_exit_and_outputs_as_its_source_ran_them(tmp_path):
    guest = Guest("3 packets transmitted, 3 packets received, 0% packet loss\n")
    got = collect_ping(CheckContext(lab(), {"vm1": guest}, tmp_path), spec(0))
    assert guest.calls == [("ping -c 3 -i 0.01 -W 2 10.1.1.3", 17.5)]  # 10 s and 2.5 s an echo request
    assert got == Evidence({"command": "ping -c 3 -i 0.01 -W 2 10.1.1.3", "exit": 1, "stdout": guest.stdout, "stderr": "ping: warning\n"}, ("vm1",))
    assert recorded(got) == CommandResult("ping -c 3 -i 0.01 -W 2 10.1.1.3", 1, guest.stdout, "ping: warning\n")


def test_a_recorded_run_missing_its_fields_reads_as_a_failed_silent_one():
    assert recorded(Evidence({})) == CommandResult("", -1, "", "")
    assert recorded(Evidence({"command": 5, "exit": "3", "stdout": None, "stderr": 7})) == CommandResult("5", 3, "None", "7")
    assert output_evidence(CommandResult("c", 0, "o", "e"), retries=2) == {"command": "c", "exit": 0, "stdout": "o", "stderr": "e", "retries": 2}
    assert output_evidence(SimpleNamespace(exit_code=0, stdout="o", stderr=""))["command"] == ""  # a result that names no command


def test_kept_output_is_the_tail_the_parsers_read_and_one_character_more():
    whole = "x" * MAX_TEXT
    assert kept_output(whole) is whole
    longer = "a" * 10 + "y" * MAX_TEXT
    assert kept_output(longer) == "a" + "y" * MAX_TEXT and kept_output("") == ""


def test_only_guests_output_is_the_students_to_shape():
    perf = make_plan(load_scenario(SCENARIOS_DIR / "vm-vs-container-perf.yaml"), "wirej")
    assert guest_of(perf, "vm1", "c1", "vm1", "lan1") == ("vm1",)
    assert guest_of(lab(), "vm2", "vm1", "vm2") == ("vm2", "vm1") and guest_of(perf, "c1") == ()


# -- the runner: what is captured, and a verdict graded on the wire ---------------------------------------------------


POINTS_LAB = {
    **LAB,
    "vms": LAB["vms"] + [{"name": "vm3", "nics": [{"bridge": "br1", "address": "10.2.2.4/24"}]}],
    "checks": [
        {"capture": {"bridge": "br1", "between": ["vm2", "vm3"], "expect": ["arp"]}},
        {"ping": {"from": "vm1", "to": "vm2"}},
        {"command": {"node": "vm1", "run": "true"}},
    ],
}


def test_the_points_captured_are_the_capture_checks_and_on_the_wire_every_kinds_path():
    plan = make_plan(parse_scenario(yaml.safe_dump(copy.deepcopy(POINTS_LAB), sort_keys=False), "lab.yaml"), "wirej")
    kinds = runner.check_kinds(plan)
    assert runner.capture_points(plan, kinds, False) == ["br1"]
    assert runner.capture_points(plan, kinds, True) == ["br0", "br1"]  # the ping's bridge too; a command has no signature on the wire
    assert runner.capture_points(plan, {}, True) == ["br1"]  # a kind unknown here adds nothing
    assert runner.capture_points(lab(), runner.check_kinds(lab()), True) == ["br0"]  # pings, tunnel, handshake and perf all cross br0
    assert runner.capture_points(lab(), runner.check_kinds(lab()), False) == []


def verdict(ok: bool = True) -> CheckResult:
    return CheckResult("ping vm1 → vm2", "ping", ok, "expected 3/3 echo replies from 10.1.1.3, got 3/3", data={"sent": 3})


def test_a_verdict_on_the_wire_holds_only_when_the_capture_saw_the_traffic():
    seen = Judgement(True, "≥3 pairs", "3 pairs on br0", {"wire_echo_pairs": 3})
    both = runner.on_the_wire(verdict(), seen)
    assert both.ok and both.detail == "expected 3/3 echo replies from 10.1.1.3, got 3/3; on the wire: 3 pairs on br0"
    assert both.data == {"sent": 3, "wire": {"ok": True, "wire_echo_pairs": 3}}
    faked = runner.on_the_wire(verdict(), Judgement(False, "≥3 pairs", "no echo reply crossed br0", {"wire_echo_pairs": 0}))
    assert not faked.ok and faked.detail == "expected 3/3 echo replies from 10.1.1.3, got 3/3; on the wire: no echo reply crossed br0 (expected ≥3 pairs)"
    assert faked.data["wire"] == {"ok": False, "wire_echo_pairs": 0}
    assert not runner.on_the_wire(verdict(False), seen).ok  # the wire does not pass what the guest failed


def wired_kind(wire_ok: bool = True, crash: bool = False) -> CheckKind:
    def on_wire(plan, spec, evidence, frames):
        if crash:
            raise KeyError("br9")
        return Judgement(wire_ok, "≥1 pair", f"{len(frames)} point(s)", {"wire_echo_pairs": int(wire_ok)})
    return CheckKind(lambda ctx, spec: Evidence(), lambda plan, spec, evidence: verdict(), Wire(lambda plan, spec: ["br0"], on_wire))


def test_judge_one_grades_on_the_wire_only_when_asked_and_the_kind_has_a_signature():
    check = lab().scenario.checks[0]
    assert runner.judge_one(wired_kind(False), lab(), check, Evidence(), {}, wire=False).ok  # the guest's word, outside an exercise
    graded = runner.judge_one(wired_kind(False), lab(), check, Evidence(), {"br0": []}, wire=True)
    assert not graded.ok and graded.detail.endswith("; on the wire: 1 point(s) (expected ≥1 pair)")
    unwired = CheckKind(lambda ctx, spec: Evidence(), lambda plan, spec, evidence: verdict())
    assert runner.judge_one(unwired, lab(), check, Evidence(), {}, wire=True).data == {"sent": 3}  # no signature: the verdict as it was
    crashed = runner.judge_one(wired_kind(crash=True), lab(), check, Evidence(), {}, wire=True)
    assert (crashed.name, crashed.kind, crashed.ok, crashed.detail) == ("ping check", "ping", False, "the check could not be judged: KeyError: 'br9'")
    failed = runner.judge_one(wired_kind(), lab(), check, Evidence(error="TimeoutError: 10 s"), {}, wire=True)
    assert (failed.name, failed.ok, failed.detail) == ("ping check", False, "the check could not be completed: TimeoutError: 10 s")


def test_run_one_judges_on_the_guests_word_alone(tmp_path):
    check = lab().scenario.checks[0]
    got = runner.run_one({"ping": wired_kind(False)}, CheckContext(lab(), {}, tmp_path, wire=True), check)
    assert got.ok and "wire" not in got.data  # an ad hoc check (the pytest plugin) has no capture to ask


def answer_plan():
    task = {"name": "q", "checks": [{"answer": {"expect": "42", "normalize": "int"}}, {"command": {"node": "vm1", "run": "true"}}], "solve": [{"answer": "42"}]}
    d = {k: v for k, v in copy.deepcopy(LAB).items() if k != "checks"}
    plan = make_plan(parse_scenario(yaml.safe_dump({**d, "exercise": {"title": "t", "tasks": [task]}}, sort_keys=False), "lab.yaml"), "wirej")
    return select_checks(plan, "exercise.tasks[0].checks")


def test_the_check_phase_hands_collectors_the_answer_and_keeps_the_wire_flag(tmp_path):
    plan = answer_plan()
    guest = Guest("")
    collected = runner.collect_checks(plan, {"vm1": guest}, tmp_path, wire=True, answer={"value": " 42 ", "at": 5.0})
    assert collected.wire and collected.pcaps == {} and collected.frames == {}  # neither kind crosses a capture point
    assert collected.evidence[0] == Evidence({"answer": " 42 ", "at": 5.0}) and list(collected.evidence) == [0, 1]
    results, pcaps = runner.run_checks(plan, {"vm1": guest}, tmp_path, wire=True, answer={"value": "41", "at": 6.0})
    assert pcaps == {} and [r.ok for r in results] == [False, False] and results[0].detail == "answered '41': not the expected answer"
    assert json.loads((tmp_path / "evidence.json").read_text())["wire"] is True
    plain = runner.collect_checks(plan, {"vm1": guest}, tmp_path)
    assert not plain.wire and plain.evidence[0] == Evidence({"answer": None, "at": None})


def test_a_runs_plan_is_made_again_from_its_setting(tmp_path):
    text = (SCENARIOS_DIR / "ex-two-vm-ping.yaml").read_text()
    setting = RunSetting("/x/ex.yaml", "lab-b", "kvm", "/k/vmlinux", str(tmp_path), ("6.1",), "bob", "exercise.tasks[0].checks", None)
    plan = runner.setting_plan(setting, text, registry())
    assert (plan.lab, plan.domain_type, plan.host_kernel) == ("lab-b", "kvm", frozenset({"6.1"}))
    assert plan.scenario.param_values == load_scenario(SCENARIOS_DIR / "ex-two-vm-ping.yaml", "bob").param_values
    assert [c.kind for c in plan.scenario.checks] == ["ping", "capture"]
    assert make_plan(load_scenario(SCENARIOS_DIR / "ex-two-vm-ping.yaml", "bob"), "lab-b", PlanOptions("kvm", Path("/k/vmlinux"), Layout(tmp_path))).vms == plan.vms
    one = runner.setting_plan(dataclasses.replace(setting, checks="checks", only=None, student=None), text, registry())
    assert one.scenario.param_values == load_scenario(SCENARIOS_DIR / "ex-two-vm-ping.yaml").param_values and one.domain_type == "kvm"


def test_collectors_are_told_the_phase_is_graded_on_the_wire_and_its_paths_are_captured(tmp_path, monkeypatch):
    """Graded on the wire, a collector may put on it what its signature needs (the WireGuard check's probe
    through the tunnel), and every kind's path is captured besides the capture checks' bridges."""
    plan = make_plan(parse_scenario(yaml.safe_dump(copy.deepcopy(POINTS_LAB), sort_keys=False), "lab.yaml"), "wirej")
    told, started = [], []

    class Capture:
        def __init__(self, ns, iface, pcap_path):
            self.iface, self.pcap_path = iface, pcap_path

        def start(self):
            started.append(self.iface)

        def stop(self):
            return []

    kind = CheckKind(lambda ctx, spec: told.append(ctx.wire) or Evidence(), lambda plan, spec, evidence: verdict(), Wire(lambda plan, spec: ["br0"], lambda *a: Judgement(True, "", "")))
    monkeypatch.setattr(runner, "Capture", Capture)
    monkeypatch.setattr(runner, "check_kinds", lambda plan: {"ping": kind, "command": kind})
    guests = {"vm2": Guest(""), "vm3": Guest("")}
    graded = runner.collect_checks(plan, guests, tmp_path, wire=True)
    assert told == [True, True] and sorted(graded.pcaps) == ["br0", "br1"] and len(started) == 2 and sorted(graded.frames) == ["br0", "br1"]
    told.clear()
    plain = runner.collect_checks(plan, guests, tmp_path)
    assert told == [False, False] and sorted(plain.pcaps) == ["br1"]


def test_run_one_collects_and_judges_a_real_ping(tmp_path):
    guest = Guest("3 packets transmitted, 3 packets received, 0% packet loss\n")
    got = runner.run_one(runner.check_kinds(lab()), CheckContext(lab(), {"vm1": guest}, tmp_path), lab().scenario.checks[0])
    assert guest.calls == [("ping -c 3 -i 0.01 -W 2 10.1.1.3", 17.5)]
    assert (got.name, got.ok, got.detail) == ("ping vm1 → vm2", True, "expected 3/3 echo replies from 10.1.1.3, got 3/3")


def test_a_run_judged_again_is_graded_on_the_wire_as_it_was_collected():
    ping_only = with_checks(lab(), [lab().scenario.checks[0]])
    nothing_seen = {"br0": []}
    assert runner.judge_checks(ping_only, Collected({0: PINGED_3}, nothing_seen, wire=False))[0].ok  # the guest's word, as it ran
    graded = runner.judge_checks(ping_only, Collected({0: PINGED_3}, nothing_seen, wire=True))[0]
    assert not graded.ok and "; on the wire: no echo reply crossed br0" in graded.detail
    assert runner.judge_one(runner.check_kinds(lab())["ping"], lab(), lab().scenario.checks[0], PINGED_3, {}).ok  # unless asked, not on the wire


def test_a_runs_plan_keeps_the_one_check_it_ran_and_its_trust_in_host_paths(tmp_path):
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("x\n")
    d = copy.deepcopy(LAB)
    d["checks"][0]["ping"]["name"] = "reach"
    d["vms"][0]["files"] = [{"src": str(secret), "dest": "/tmp/x"}]
    (tmp_path / "lab").mkdir()
    setting = RunSetting(str(tmp_path / "lab" / "lab.yaml"), "wirej", "qemu", "/k", str(tmp_path), (), None, "checks", "reach", True)
    plan = runner.setting_plan(setting, yaml.safe_dump(d, sort_keys=False), registry())
    assert [c.spec.name for c in plan.scenario.checks] == ["reach"]
    with pytest.raises(ValidationError, match="outside the scenario's folder"):
        runner.setting_plan(dataclasses.replace(setting, allow_host_paths=False), yaml.safe_dump(d, sort_keys=False), registry())


def test_a_vms_addresses_are_its_nics_and_its_trunks_sub_interfaces():
    trunk = make_plan(load_scenario(SCENARIOS_DIR / "vlan-trunk.yaml"), "wirej")
    [(nic, cidrs)] = nic_cidrs(trunk, "vm3")
    assert nic is trunk.vm("vm3").nics[0] and nic.cidr is None and cidrs == ["10.0.10.5/24", "10.0.20.5/24"]
    assert path_points(trunk, "vm3", "10.0.20.3") == ["vm3.eth0"]  # the trunk carries both VLANs
    switch = trunk.vm("sw-br0")
    assert nic_cidrs(trunk, "sw-br0") == [(n, []) for n in switch.nics]  # a switch guest a feature adds: no address of its own
    assert nic_cidrs(lab(), "vm2") == [(n, [n.cidr]) for n in lab().vm("vm2").nics]
