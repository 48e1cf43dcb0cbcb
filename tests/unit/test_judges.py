"""Every capture judge, on frames built with scapy (no guests): each way it must fail, and the exact
words and counts it reports. vnetlab's headline claim is that a capture proves ARP and ICMP echo
crossed the bridge, and the exercises grade students with these judges; `make mutation` checks
that these tests notice when a judge's decision changes (docs/reliability.md, "Mutation testing").
"""

from __future__ import annotations

import dataclasses

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from vnetlab.checks.base import CaptureSubject, endpoint
from vnetlab.checks.runner import CORE_JUDGES, judge_arp, judge_capture, judge_icmp_echo, judges
from vnetlab.compose import load_scenario, parse_scenario
from vnetlab.features import containers, hypervisors, nat, routing, stp, vlan, vxlan, wireguard
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import make_plan

BROADCAST = "ff:ff:ff:ff:ff:ff"


pytestmark = pytest.mark.usefixtures("no_neighbour_resolution")  # tests/unit/conftest.py


def lesson(name: str, lab: str = "judged"):
    return make_plan(load_scenario(SCENARIOS_DIR / f"{name}.yaml"), lab)


def captures(plan):
    return [c.capture for c in plan.scenario.checks if c.capture is not None]


def subject(plan, cap, frames, a=None, b=None):
    a, b = (a, b) if a else cap.between
    return CaptureSubject(a, endpoint(plan, a, cap.on), b, endpoint(plan, b, cap.on), frames)


def wire(*packets):
    """Serialised and dissected again, as a capture delivers them."""
    return [Ether(bytes(p)) for p in packets]


def arp_request(x, y):
    return Ether(src=x.mac, dst=BROADCAST) / ARP(op=1, hwsrc=x.mac, psrc=x.ip, pdst=y.ip)


def arp_reply(y, x):
    return Ether(src=y.mac, dst=x.mac) / ARP(op=2, hwsrc=y.mac, psrc=y.ip, hwdst=x.mac, pdst=x.ip)


def echo(x, y, seq, *, reply=False, ident=7, ttl=64, src_mac=None):
    return Ether(src=src_mac or x.mac, dst=y.mac) / IP(src=x.ip, dst=y.ip, ttl=ttl) / ICMP(type=0 if reply else 8, id=ident, seq=seq)


def pairs(x, y, n, **kw):
    """n echo requests x → y, each answered."""
    out = []
    for seq in range(1, n + 1):
        out += [echo(x, y, seq, **kw), echo(y, x, seq, reply=True, **{k: v for k, v in kw.items() if k != "src_mac"})]
    return out


# -- the core: ARP and ICMP echo on two-vm-ping (two pings of 3: 6 pairs wanted) -------------------


@pytest.fixture(scope="module")
def two():
    plan = lesson("two-vm-ping")
    (cap,) = captures(plan)
    return plan, cap, plan.vm("vm1").nics[0], plan.vm("vm2").nics[0]


def test_arp_wants_a_request_and_its_reply(two):
    plan, cap, a, b = two
    j = judge_arp(plan, cap, subject(plan, cap, wire(arp_request(a, b), arp_reply(b, a))))
    assert j.ok
    assert j.expected == f"≥1 ARP request and ≥1 reply between {a.mac} (vm1) and {b.mac} (vm2)"
    assert j.seen == "1 ARP request(s), 1 reply(ies)"
    assert j.counts == {"arp_request": 1, "arp_reply": 1}


@pytest.mark.parametrize(
    "frames, asked, answered",
    [
        pytest.param(lambda a, b, c: [arp_request(a, b)], 1, 0, id="request-without-reply"),
        pytest.param(lambda a, b, c: [arp_request(a, b)] * 3, 3, 0, id="requests-never-answered"),
        pytest.param(lambda a, b, c: [arp_reply(b, a)], 0, 1, id="reply-without-request"),
        pytest.param(lambda a, b, c: [], 0, 0, id="nothing"),
        pytest.param(lambda a, b, c: [arp_request(c, b), arp_reply(b, c)], 0, 0, id="another-host-asked"),
        pytest.param(lambda a, b, c: [arp_request(a, c), arp_reply(c, a)], 0, 0, id="asked-for-another-host"),
        pytest.param(lambda a, b, c: [arp_request(a, b), arp_reply(c, a)], 1, 0, id="answered-by-another-host"),
    ],
)
def test_arp_fails(two, frames, asked, answered):
    plan, cap, a, b = two
    c = type(a)("vm3", "eth0", "br0", "t", "52:54:00:99:99:99", "10.1.1.99/24")
    j = judge_arp(plan, cap, subject(plan, cap, wire(*frames(a, b, c))))
    assert not j.ok
    assert j.counts == {"arp_request": asked, "arp_reply": answered}
    assert j.seen == f"{asked} ARP request(s), {answered} reply(ies)"


def test_icmp_echo_wants_as_many_pairs_as_the_pings_sent(two):
    plan, cap, a, b = two
    j = judge_icmp_echo(plan, cap, subject(plan, cap, wire(*pairs(a, b, 3), *pairs(b, a, 3, ident=9))))
    assert j.ok
    assert j.expected == f"≥6 ICMP echo request/reply pairs between {a.ip} and {b.ip}"
    assert j.seen == "6 request(s), 6 reply(ies), 6 pair(s)"
    assert j.counts == {"icmp_echo_request": 6, "icmp_echo_reply": 6, "icmp_echo_pairs": 6}


@pytest.mark.parametrize(
    "frames, counts",
    [
        pytest.param(lambda a, b: pairs(a, b, 5), (5, 5, 5), id="one-pair-short"),
        pytest.param(lambda a, b: [echo(a, b, s) for s in range(1, 7)], (6, 0, 0), id="requests-without-replies"),
        pytest.param(lambda a, b: [echo(a, b, s) for s in range(1, 13)] + [echo(b, a, s, reply=True) for s in range(1, 6)], (12, 5, 5), id="more-requests-than-pairs"),
        pytest.param(lambda a, b: [echo(b, a, s, reply=True) for s in range(1, 7)], (0, 6, 0), id="replies-without-requests"),
        pytest.param(lambda a, b: [f for s in range(1, 7) for f in (echo(a, b, s), echo(b, a, s + 100, reply=True))], (6, 6, 0), id="replies-to-other-sequence-numbers"),
        pytest.param(lambda a, b: [f for s in range(1, 7) for f in (echo(a, b, s), echo(b, a, s, reply=True, ident=8))], (6, 6, 0), id="replies-to-another-identifier"),
        pytest.param(lambda a, b: [f for s in range(1, 7) for f in (echo(a, b, s), echo(a, b, s, reply=True))], (6, 6, 0), id="replies-the-wrong-way"),
        pytest.param(lambda a, b: [echo(a, b, 1), *[echo(b, a, 1, reply=True)] * 6], (1, 6, 1), id="one-request-answered-six-times"),
        pytest.param(lambda a, b: [f for s in range(1, 7) for f in (echo(b, a, s, reply=True), echo(a, b, s))], (6, 6, 0), id="replies-before-requests"),
    ],
)
def test_icmp_echo_fails(two, frames, counts):
    plan, cap, a, b = two
    j = judge_icmp_echo(plan, cap, subject(plan, cap, wire(*frames(a, b))))
    assert not j.ok
    assert (j.counts["icmp_echo_request"], j.counts["icmp_echo_reply"], j.counts["icmp_echo_pairs"]) == counts
    assert j.seen == f"{counts[0]} request(s), {counts[1]} reply(ies), {counts[2]} pair(s)"


def test_icmp_echo_wants_one_pair_when_no_ping_names_the_two(two):
    plan, cap, a, b = two
    text = (SCENARIOS_DIR / "two-vm-ping.yaml").read_text()
    alone = make_plan(parse_scenario(text.replace("count: 3}", "count: 3, expect: failure}"), "lab.yaml"), "judged")
    (cap2,) = captures(alone)
    one = judge_icmp_echo(alone, cap2, subject(alone, cap2, wire(*pairs(a, b, 1))))
    assert one.ok and one.expected == f"≥1 ICMP echo request/reply pairs between {a.ip} and {b.ip}"
    assert not judge_icmp_echo(alone, cap2, subject(alone, cap2, [])).ok


def test_judge_capture_names_details_and_all_expectations(two, tmp_path):
    plan, cap, a, b = two
    frames = wire(arp_request(a, b), arp_reply(b, a), *pairs(a, b, 6))
    result = judge_capture(plan, cap, frames, tmp_path / "br0.pcap")
    assert result.ok and result.kind == "capture"
    assert result.name == "capture on br0: arp, icmp-echo between vm1 and vm2"
    assert result.detail == (
        f"expected ≥1 ARP request and ≥1 reply between {a.mac} (vm1) and {b.mac} (vm2); ≥6 ICMP echo request/reply pairs between {a.ip} and {b.ip}; "
        "saw 1 ARP request(s), 1 reply(ies); 6 request(s), 6 reply(ies), 6 pair(s) in 14 frames"
    )
    assert result.counts == {"arp_request": 1, "arp_reply": 1, "icmp_echo_request": 6, "icmp_echo_reply": 6, "icmp_echo_pairs": 6}
    assert result.data == {"pcap": str(tmp_path / "br0.pcap")}
    no_arp = judge_capture(plan, cap, wire(*pairs(a, b, 6)), tmp_path / "br0.pcap")
    assert not no_arp.ok  # every expectation must hold, not one of them
    no_echo = judge_capture(plan, cap, wire(arp_request(a, b), arp_reply(b, a)), tmp_path / "br0.pcap")
    assert not no_echo.ok


def test_judge_capture_uses_the_scenarios_name(two, tmp_path):
    plan, cap, a, b = two
    named = type(cap)(**{**cap.__dict__, "name": "the students' ping crossed br0"})
    assert judge_capture(plan, named, [], tmp_path / "x.pcap").name == "the students' ping crossed br0"


class Truncated(list):
    """A capture whose memory bound was hit: the judges see the first frames only."""

    truncated = True
    seen = 1000
    written = 900


def test_judge_capture_says_when_it_judged_the_first_frames_only(two, tmp_path):
    plan, cap, a, b = two
    frames = Truncated(wire(arp_request(a, b), arp_reply(b, a), *pairs(a, b, 6)))
    result = judge_capture(plan, cap, frames, tmp_path / "br0.pcap")
    assert result.ok
    assert result.detail.endswith(" in 14 frames (of 1000 seen: the capture keeps at most its bound in memory; the pcap has 900)")
    assert result.data == {"pcap": str(tmp_path / "br0.pcap"), "frames_seen": 1000, "frames_kept": 14, "frames_in_pcap": 900}


def test_the_judges_of_a_plan_are_the_cores_and_its_features(two):
    plan, *_ = two
    table = judges(plan)
    assert table["arp"] is judge_arp and table["icmp-echo"] is judge_icmp_echo and set(CORE_JUDGES) <= set(table)
    assert table["wireguard-udp"] is wireguard.judge_udp and table["vlan-tagged"] is vlan.judge_vlan_tagged


# -- routed (static-routing): echo requests that crossed a router ----------------------------------


@pytest.fixture(scope="module")
def routed():
    plan = lesson("static-routing")
    (cap,) = captures(plan)
    return plan, cap, endpoint(plan, "host1", "lan2"), endpoint(plan, "host2", "lan2")


def test_routed_wants_every_request_one_hop_down(routed):
    plan, cap, a, b = routed
    j = routing.judge_routed(plan, cap, subject(plan, cap, wire(*[echo(a, b, s, ttl=63) for s in range(1, 4)], echo(b, a, 1, reply=True))))
    assert j.ok
    assert j.expected == f"≥3 echo requests {a.ip} → {b.ip} on lan2, each with TTL < 64 (one hop per router)"
    assert j.seen == f"3 echo request(s) {a.ip} → {b.ip}, TTL 63–63"
    assert j.counts == {"routed_requests": 3, "requests": 3}


@pytest.mark.parametrize(
    "ttls, routed_n",
    [([64, 64, 64], 0), ([63, 63, 64], 2), ([63, 63], 2), ([], 0), ([65, 65, 65], 0)],
    ids=["bridged", "one-not-routed", "too-few", "none", "more-than-sent"],
)
def test_routed_fails(routed, ttls, routed_n):
    plan, cap, a, b = routed
    j = routing.judge_routed(plan, cap, subject(plan, cap, wire(*[echo(a, b, s, ttl=t) for s, t in enumerate(ttls, 1)])))
    assert not j.ok
    assert j.counts == {"routed_requests": routed_n, "requests": len(ttls)}
    assert j.seen == f"{len(ttls)} echo request(s) {a.ip} → {b.ip}" + (f", TTL {min(ttls)}–{max(ttls)}" if ttls else "")


def test_routed_counts_only_requests_from_a_to_b(routed):
    plan, cap, a, b = routed
    other = wire(
        echo(b, a, 1, ttl=63),  # the other way
        echo(a, b, 2, ttl=63, reply=True),  # a reply
        Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip, ttl=63) / UDP(dport=7),  # not ICMP
        Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst="10.9.9.9", ttl=63) / ICMP(type=8),  # elsewhere
        Ether(src=a.mac, dst=b.mac) / IP(src="10.9.9.9", dst=b.ip, ttl=63) / ICMP(type=8),  # from elsewhere
        Ether(src=a.mac, dst=b.mac) / ARP(),
    )
    j = routing.judge_routed(plan, cap, subject(plan, cap, other + wire(*[echo(a, b, s, ttl=62) for s in range(3, 6)])))
    assert j.ok and j.counts == {"routed_requests": 3, "requests": 3}


# -- bridged and masqueraded (vm-bridge-uplink, container-bridge-nat) ------------------------------


@pytest.fixture(scope="module")
def uplink():
    plan = lesson("vm-bridge-uplink")
    cap = captures(plan)[0]
    return plan, cap, endpoint(plan, "vm1", cap.on), endpoint(plan, "lan1", cap.on)


def test_bridged_wants_the_senders_own_mac_on_every_frame(uplink):
    plan, cap, a, b = uplink
    j = containers.judge_bridged(plan, cap, subject(plan, cap, wire(*pairs(a, b, 6))))
    assert j.ok
    assert j.expected == f"≥6 frames {a.ip} → {b.ip} on eth0, all from vm1's own MAC {a.mac}"  # a ping of 3 each way
    assert j.seen == f"6 frame(s) {a.ip} → {b.ip}, 6 from {a.mac}"
    assert j.counts == {"bridged_own_mac": 6, "bridged_from_a": 6}


@pytest.mark.parametrize(
    "frames, own, from_a",
    [
        pytest.param(lambda a, b: pairs(a, b, 5), 5, 5, id="too-few"),
        pytest.param(lambda a, b: pairs(a, b, 6) + [echo(a, b, 9, src_mac="52:54:00:aa:aa:aa")], 6, 7, id="one-through-a-router"),
        pytest.param(lambda a, b: pairs(a, b, 6, src_mac="52:54:00:aa:aa:aa"), 0, 6, id="all-rewritten"),
        pytest.param(lambda a, b: [], 0, 0, id="none"),
    ],
)
def test_bridged_fails(uplink, frames, own, from_a):
    plan, cap, a, b = uplink
    j = containers.judge_bridged(plan, cap, subject(plan, cap, wire(*frames(a, b))))
    assert not j.ok and j.counts == {"bridged_own_mac": own, "bridged_from_a": from_a}


def test_bridged_takes_the_mac_in_any_case(uplink):
    plan, cap, a, b = uplink
    frames = wire(*[echo(a, b, s, src_mac=a.mac.upper()) for s in range(1, 7)])
    assert containers.judge_bridged(plan, cap, subject(plan, cap, frames)).ok


@pytest.fixture(scope="module")
def masq():
    plan = lesson("container-bridge-nat")
    cap = next(c for c in captures(plan) if "masqueraded" in c.expect)
    (n,) = plan.part("nat")
    return plan, cap, endpoint(plan, "c1", cap.on), endpoint(plan, "inet1", cap.on), n


def translated(n, b, k, *, src=None):
    out = []
    for s in range(1, k + 1):
        out.append(Ether(src="02:00:00:00:00:01", dst=b.mac) / IP(src=src or n.outside, dst=b.ip) / ICMP(type=8, id=1, seq=s))
    return out


def test_masqueraded_wants_the_uplinks_address_only(masq):
    plan, cap, a, b, n = masq
    j = nat.judge_masqueraded(plan, cap, subject(plan, cap, wire(*translated(n, b, 6))))
    assert j.ok, j
    assert j.expected == f"≥6 packets {n.outside} (translated) → {b.ip} on eth0 and none with an address of {n.subnet} (e.g. c1's {a.ip})"
    assert j.seen == "6 translated, 0 with a private address"
    assert j.counts == {"translated": 6, "private": 0}


@pytest.mark.parametrize(
    "frames, translated_n, private",
    [
        pytest.param(lambda n, a, b: translated(n, b, 5), 5, 0, id="too-few"),
        pytest.param(lambda n, a, b: translated(n, b, 6) + translated(n, b, 1, src=a.ip), 6, 1, id="one-leaked-untranslated"),
        pytest.param(lambda n, a, b: translated(n, b, 6, src=a.ip), 0, 6, id="none-translated"),
        pytest.param(lambda n, a, b: [Ether(src="02:00:00:00:00:01", dst=b.mac) / IP(src=b.ip, dst=a.ip) / ICMP(type=0)] + translated(n, b, 6), 6, 1, id="private-destination"),
        pytest.param(lambda n, a, b: [], 0, 0, id="none"),
    ],
)
def test_masqueraded_fails(masq, frames, translated_n, private):
    plan, cap, a, b, n = masq
    j = nat.judge_masqueraded(plan, cap, subject(plan, cap, wire(*frames(n, a, b))))
    assert not j.ok and j.counts == {"translated": translated_n, "private": private}


def test_masqueraded_behind_a_router_vm_wants_the_routers_own_address():
    """ex-container-nat: the containers sit behind a router guest, whose wan address must be the only source on wan."""
    from vnetlab.checks.evidence import select_checks

    plan = make_plan(load_scenario(SCENARIOS_DIR / "ex-container-nat.yaml"), "nat")
    where = next(f"exercise.tasks[{k}].checks" for k, t in enumerate(plan.scenario.exercise.tasks) if any(c.capture for c in t.checks))
    plan = select_checks(plan, where)
    (cap,) = captures(plan)
    router, inet1 = endpoint(plan, "router", cap.on), endpoint(plan, "inet1", cap.on)
    inside = plan.scenario.bridges[0].subnet
    out = [Ether(src=router.mac, dst=inet1.mac) / IP(src=router.ip, dst=inet1.ip) / ICMP(type=8, id=1, seq=s) for s in (1, 2)]
    j = nat.judge_masqueraded(plan, cap, subject(plan, cap, wire(*out)))
    assert j.ok and j.counts == {"translated": 2, "private": 0}  # one echo each from c1 and c2
    assert j.expected == f"≥2 packets {router.ip} (router, translated) → {inet1.ip} on wan and none with an address of {inside} (behind router)"
    c1 = endpoint(plan, "c1", cap.on)
    leaked = nat.judge_masqueraded(plan, cap, subject(plan, cap, wire(*out, Ether(src=router.mac, dst=inet1.mac) / IP(src=c1.ip, dst=inet1.ip) / ICMP(type=8))))
    assert not leaked.ok and leaked.counts == {"translated": 2, "private": 1}
    assert not nat.judge_masqueraded(plan, cap, subject(plan, cap, wire(*out[:1]))).ok


# -- bounded broadcast (stp-loop) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop():
    plan = lesson("stp-loop")
    (cap,) = captures(plan)
    return plan, cap, endpoint(plan, "vm1", cap.on), endpoint(plan, "vm2", cap.on)


def test_bounded_broadcast_counts_broadcast_frames_only(loop):
    plan, cap, a, b = loop
    frames = wire(*[arp_request(a, b)] * stp.BROADCAST_MAX, *pairs(a, b, 50), Ether(src=a.mac, dst="FF:FF:FF:FF:FF:FE") / ARP())
    j = stp.judge_bounded_broadcast(plan, cap, subject(plan, cap, frames))
    assert j.ok
    assert j.expected == f"≤{stp.BROADCAST_MAX} broadcast frames on br2 during the checks (a loop without STP gives thousands a second)"
    assert j.seen == f"{stp.BROADCAST_MAX} broadcast frame(s)" and j.counts == {"broadcast_frames": stp.BROADCAST_MAX}
    storm = stp.judge_bounded_broadcast(plan, cap, subject(plan, cap, wire(*[arp_request(a, b)] * (stp.BROADCAST_MAX + 1))))
    assert not storm.ok and storm.counts == {"broadcast_frames": stp.BROADCAST_MAX + 1}


def test_bounded_broadcast_reads_the_destination_in_any_case(loop):
    plan, cap, a, b = loop

    class Upper:
        dst = BROADCAST.upper()

    class NoDestination:
        pass

    j = stp.judge_bounded_broadcast(plan, cap, subject(plan, cap, [Upper()] * (stp.BROADCAST_MAX + 1) + [NoDestination()]))
    assert not j.ok and j.counts == {"broadcast_frames": stp.BROADCAST_MAX + 1}


# -- WireGuard (wireguard-vpn): encrypted UDP, no plaintext tunnel traffic ---------------------------


@pytest.fixture(scope="module")
def wg():
    plan = lesson("wireguard-vpn")
    (cap,) = captures(plan)
    return plan, cap, endpoint(plan, "vm1", cap.on), endpoint(plan, "vm2", cap.on)


def datagram(x, y, port=51820, dport=None):
    return Ether(src=x.mac, dst=y.mac) / IP(src=x.ip, dst=y.ip) / UDP(sport=port, dport=dport or port) / (b"\x04" + bytes(31))


def test_wireguard_udp_wants_each_request_and_reply_encrypted(wg):
    plan, cap, a, b = wg
    frames = wire(*[datagram(a, b) if i % 2 else datagram(b, a) for i in range(12)])
    j = wireguard.judge_udp(plan, cap, subject(plan, cap, frames))
    assert j.ok
    assert j.expected == f"≥12 UDP datagram(s) on port 51820 between {a.ip} and {b.ip} (wg0)"
    assert j.seen == "12 UDP datagram(s) on port 51820" and j.counts == {"wireguard_udp": 12}
    few = wireguard.judge_udp(plan, cap, subject(plan, cap, frames[:11] + wire(datagram(a, b, 51821), datagram(a, b, 40000, 40001))))
    assert not few.ok and few.counts == {"wireguard_udp": 11}
    assert not wireguard.judge_udp(plan, cap, subject(plan, cap, [])).ok


def test_no_plaintext_tunnel_fails_on_one_readable_packet(wg):
    plan, cap, a, b = wg
    tunnel = plan.scenario.wireguard[0]
    t1, t2 = (m.address.split("/")[0] for m in tunnel.members)
    clean = wireguard.judge_no_plaintext(plan, cap, subject(plan, cap, wire(datagram(a, b), *pairs(a, b, 2))))
    assert clean.ok
    assert clean.expected == "0 plaintext ICMP packets of tunnel subnet 192.168.2.0/24"
    assert clean.seen == "0 plaintext ICMP packet(s) of 192.168.2.0/24" and clean.counts == {"plaintext_tunnel_icmp": 0}
    leak = Ether(src=a.mac, dst=b.mac) / IP(src=t1, dst=t2) / ICMP()
    j = wireguard.judge_no_plaintext(plan, cap, subject(plan, cap, wire(datagram(a, b), leak)))
    assert not j.ok and j.counts == {"plaintext_tunnel_icmp": 1} and j.seen == "1 plaintext ICMP packet(s) of 192.168.2.0/24"


# -- VLANs (vlan-trunk): tagged on the trunk, plain on access ports ----------------------------------


@pytest.fixture(scope="module")
def trunk():
    plan = lesson("vlan-trunk")
    caps = captures(plan)
    return plan, caps


def tagged(x, y, vids, seq=1, reply=False):
    frame = Ether(src=x.mac, dst=y.mac)
    for vid in vids:
        frame = frame / Dot1Q(vlan=vid)
    return frame / IP(src=x.ip, dst=y.ip) / ICMP(type=0 if reply else 8, seq=seq)


def test_vlan_tagged_wants_every_frame_with_one_shared_tag(trunk):
    plan, caps = trunk
    cap = caps[0]  # link vm3.eth0, vm1 ↔ vm3: VLAN 10
    a, b = endpoint(plan, "vm1", cap.on), endpoint(plan, "vm3", cap.on)
    ok = vlan.judge_vlan_tagged(plan, cap, subject(plan, cap, wire(tagged(a, b, [10]), tagged(b, a, [10], reply=True))))
    assert ok.ok, ok
    assert ok.expected == "the frames between vm1 and vm3 on link vm3.eth0 tagged with VLAN 10 (802.1Q)"
    assert ok.seen == "2 frame(s) between them: 2 tagged VLAN 10" and ok.counts == {"vlan_frames": 2, "vlan_untagged": 0, "vlan_wrong_tag": 0}
    for frames, counts, seen in [
        ([tagged(a, b, [10]), tagged(b, a, [])], (2, 1, 0), "2 frame(s) between them: 1 tagged VLAN 10, 1 untagged"),
        ([tagged(a, b, [10]), tagged(b, a, [20])], (2, 0, 1), "2 frame(s) between them: 1 tagged VLAN 10, 1 tagged VLAN 20"),
        ([tagged(a, b, [10, 10])], (1, 0, 1), "1 frame(s) between them: 1 tagged VLAN 10"),
        ([], (0, 0, 0), "no frame between them"),
    ]:
        j = vlan.judge_vlan_tagged(plan, cap, subject(plan, cap, wire(*frames)))
        assert not j.ok and (j.counts["vlan_frames"], j.counts["vlan_untagged"], j.counts["vlan_wrong_tag"]) == counts and j.seen == seen


def test_vlan_judges_look_only_at_frames_between_the_two(trunk):
    plan, caps = trunk
    cap = caps[0]
    a, b = endpoint(plan, "vm1", cap.on), endpoint(plan, "vm3", cap.on)
    c = endpoint(plan, "vm2", caps[1].on)
    others = wire(tagged(c, b, [20]), tagged(a, a, [99]), Ether(src=a.mac, dst=BROADCAST) / Dot1Q(vlan=10) / ARP(), tagged(b, c, []))
    j = vlan.judge_vlan_tagged(plan, cap, subject(plan, cap, others + wire(tagged(a, b, [10]))))
    assert j.ok and j.counts == {"vlan_frames": 1, "vlan_untagged": 0, "vlan_wrong_tag": 0}
    upper = wire(Ether(src=a.mac.upper(), dst=b.mac.upper()) / Dot1Q(vlan=10) / IP())
    assert vlan.judge_vlan_tagged(plan, cap, subject(plan, cap, upper)).counts["vlan_frames"] == 1


def test_untagged_wants_every_frame_plain(trunk):
    plan, caps = trunk
    cap = caps[2]  # link vm1.eth0, vm1 ↔ vm3
    a, b = endpoint(plan, "vm1", cap.on), endpoint(plan, "vm3", cap.on)
    ok = vlan.judge_untagged(plan, cap, subject(plan, cap, wire(tagged(a, b, []), tagged(b, a, [], reply=True))))
    assert ok.ok
    assert ok.expected == "the frames between vm1 and vm3 on link vm1.eth0 untagged (no 802.1Q header)"
    assert ok.seen == "2 frame(s) between them: 2 untagged" and ok.counts == {"vlan_frames": 2, "vlan_untagged": 2, "vlan_wrong_tag": 0}
    leaked = vlan.judge_untagged(plan, cap, subject(plan, cap, wire(tagged(a, b, []), tagged(b, a, [10]))))
    assert not leaked.ok and leaked.counts == {"vlan_frames": 2, "vlan_untagged": 1, "vlan_wrong_tag": 0}
    assert not vlan.judge_untagged(plan, cap, subject(plan, cap, [])).ok


def test_vlan_where_names_a_bridge_or_its_mirror_port():
    plan = lesson("vlan-trunk-ovs")
    cap = next(c for c in captures(plan) if c.bridge)
    assert vlan._where(plan, cap.on) in (f"bridge {cap.on}", f"{cap.on}'s mirror port")


# -- VXLAN (vxlan-overlay) and the multi-host overlay (three-hosts-vxlan) ----------------------------


@pytest.fixture(scope="module")
def overlay():
    plan = lesson("vxlan-overlay")
    (vx,) = plan.part("vxlan")
    under, bridge = captures(plan)
    return plan, vx, under, bridge, plan.vm("vm1").nics[0], plan.vm("vm2").nics[0]


def encapsulated(vx, inner, *, vni=None, src=None, dst=None, port=4789):
    outer = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(src=src or vx.a.ip, dst=dst or vx.b.ip) / UDP(sport=40000, dport=port)
    return Ether(bytes(outer / VXLAN(vni=vx.vni if vni is None else vni) / inner))


def test_vxlan_wants_the_echo_inside_its_vni(overlay):
    plan, vx, under, _, a, b = overlay
    frames = [encapsulated(vx, f) for f in pairs(a, b, 6)]
    j = vxlan.judge_vxlan(plan, under, subject(plan, under, frames))
    assert j.ok and j.counts["inner_icmp_echo_pairs"] == 6
    for bad, key, n in [
        ([encapsulated(vx, f) for f in pairs(a, b, 5)], "inner_icmp_echo_pairs", 5),
        ([encapsulated(vx, f, vni=vx.vni + 1) for f in pairs(a, b, 6)], "vxlan_vni_datagrams", 0),
        ([encapsulated(vx, f, port=4790) for f in pairs(a, b, 6)], "vxlan_datagrams", 0),
        ([encapsulated(vx, f, src="192.168.100.9") for f in pairs(a, b, 6)], "vxlan_datagrams", 0),
        ([encapsulated(vx, f) for f in [echo(a, b, s) for s in range(1, 7)]], "inner_icmp_echo_pairs", 0),
        (wire(*pairs(a, b, 6)), "vxlan_datagrams", 0),
    ]:
        j = vxlan.judge_vxlan(plan, under, subject(plan, under, bad))
        assert not j.ok and j.counts[key] == n, (key, j)


def test_unencapsulated_fails_on_one_vxlan_datagram_or_too_few_pairs(overlay):
    plan, vx, _, bridge, a, b = overlay
    plain = wire(*pairs(a, b, 6))
    assert vxlan.judge_unencapsulated(plan, bridge, subject(plan, bridge, plain)).ok
    stray = encapsulated(vx, pairs(a, b, 1)[0], src="10.1.1.9", dst="10.1.1.8")
    leaked = vxlan.judge_unencapsulated(plan, bridge, subject(plan, bridge, plain + [stray]))
    assert not leaked.ok and leaked.counts["vxlan_datagrams_on_bridge"] == 1
    assert leaked.seen.endswith(", 1 VXLAN datagram(s)")
    few = vxlan.judge_unencapsulated(plan, bridge, subject(plan, bridge, wire(*pairs(a, b, 5))))
    assert not few.ok and few.counts["plain_icmp_echo_pairs"] == 5


@pytest.fixture(scope="module")
def hosts():
    plan = lesson("three-hosts-vxlan")
    (cap,) = captures(plan)
    part = plan.part("hypervisors")
    return plan, cap, part, endpoint(plan, "vm2", cap.on), endpoint(plan, "vm3", cap.on)


def between_hosts(part, inner, *, src=None, dst=None, vni=None):
    h = [x.underlay_ip for x in part.hosts]
    outer = Ether(src="02:00:00:00:02:01", dst="02:00:00:00:02:02") / IP(src=src or h[1], dst=dst or h[2]) / UDP(sport=40000, dport=part.port)
    return Ether(bytes(outer / VXLAN(vni=part.tunnels[0].vni if vni is None else vni) / inner))


def test_overlay_wants_only_encapsulated_echo_between_the_hypervisors(hosts):
    plan, cap, part, a, b = hosts
    want = 6  # a ping of 3 each way between vm2 and vm3
    good = [between_hosts(part, f) for f in pairs(a, b, want)]
    j = hypervisors.judge_overlay(plan, cap, subject(plan, cap, good))
    assert j.ok, j
    assert j.counts == {"vxlan_datagrams": 2 * want, "stray_datagrams": 0, "inner_icmp_echo_pairs": want, "plain_icmp_echo": 0}
    stray = between_hosts(part, pairs(a, b, 1)[0], src="10.99.0.9")
    bad = hypervisors.judge_overlay(plan, cap, subject(plan, cap, good + [stray]))
    assert not bad.ok and bad.counts["stray_datagrams"] == 1
    plain = hypervisors.judge_overlay(plan, cap, subject(plan, cap, good + wire(echo(a, b, 9))))
    assert not plain.ok and plain.counts["plain_icmp_echo"] == 1
    replies = hypervisors.judge_overlay(plan, cap, subject(plan, cap, good + wire(echo(b, a, 9, reply=True))))
    assert not replies.ok and replies.counts["plain_icmp_echo"] == 1
    few = hypervisors.judge_overlay(plan, cap, subject(plan, cap, good[:-1]))
    assert not few.ok and few.counts["inner_icmp_echo_pairs"] == want - 1
    other_vni = hypervisors.judge_overlay(plan, cap, subject(plan, cap, [between_hosts(part, f, vni=4000) for f in pairs(a, b, want)]))
    assert not other_vni.ok and other_vni.counts["inner_icmp_echo_pairs"] == 0


# -- when no ping names the two, one exchange is enough (and none is not) ---------------------------


def without_pings(name: str):
    """The lesson with every ping made a must-fail one: the judges then want a single exchange."""
    import re

    path = SCENARIOS_DIR / f"{name}.yaml"
    text, n = re.subn(r"(- ping: \{[^}\n]*)\}", r"\1, expect: failure}", path.read_text())
    assert n >= 1 and "ping:\n" not in text
    return make_plan(parse_scenario(text, str(path)), "judged")


def test_one_exchange_is_enough_without_pings():
    plan = without_pings("static-routing")
    (cap,) = captures(plan)
    a, b = endpoint(plan, "host1", "lan2"), endpoint(plan, "host2", "lan2")
    assert routing.judge_routed(plan, cap, subject(plan, cap, wire(echo(a, b, 1, ttl=63)))).ok
    plan = without_pings("vm-bridge-uplink")
    cap = captures(plan)[0]
    a, b = endpoint(plan, "vm1", cap.on), endpoint(plan, "lan1", cap.on)
    assert containers.judge_bridged(plan, cap, subject(plan, cap, wire(echo(a, b, 1)))).ok
    assert not containers.judge_bridged(plan, cap, subject(plan, cap, [])).ok
    plan = without_pings("container-bridge-nat")
    cap = next(c for c in captures(plan) if "masqueraded" in c.expect)
    (n,) = plan.part("nat")
    assert nat.judge_masqueraded(plan, cap, subject(plan, cap, wire(*translated(n, endpoint(plan, "inet1", cap.on), 1)))).ok
    plan = without_pings("wireguard-vpn")
    (cap,) = captures(plan)
    a, b = endpoint(plan, "vm1", cap.on), endpoint(plan, "vm2", cap.on)
    assert wireguard.judge_udp(plan, cap, subject(plan, cap, wire(datagram(a, b)))).ok
    plan = without_pings("vxlan-overlay")
    (vx,) = plan.part("vxlan")
    under, bridge = captures(plan)
    a, b = plan.vm("vm1").nics[0], plan.vm("vm2").nics[0]
    assert vxlan.judge_vxlan(plan, under, subject(plan, under, [encapsulated(vx, f) for f in pairs(a, b, 1)])).ok
    assert vxlan.judge_unencapsulated(plan, bridge, subject(plan, bridge, wire(*pairs(a, b, 1)))).ok
    plan = without_pings("three-hosts-vxlan")
    (cap,) = captures(plan)
    part = plan.part("hypervisors")
    a, b = endpoint(plan, "vm2", cap.on), endpoint(plan, "vm3", cap.on)
    assert hypervisors.judge_overlay(plan, cap, subject(plan, cap, [between_hosts(part, f) for f in pairs(a, b, 1)])).ok


def test_counted_frames_must_go_between_the_two_addresses(uplink, masq):
    plan, cap, a, b = uplink
    other_src = wire(*[Ether(src=a.mac, dst=b.mac) / IP(src="10.1.1.98", dst=b.ip) / ICMP(type=8, seq=s) for s in range(1, 7)])
    other_dst = wire(*[Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst="10.1.1.99") / ICMP(type=8, seq=s) for s in range(1, 7)])
    for frames in (other_src, other_dst):
        j = containers.judge_bridged(plan, cap, subject(plan, cap, frames))
        assert not j.ok and j.counts == {"bridged_own_mac": 0, "bridged_from_a": 0}
    plan, cap, a, b, n = masq
    away = [Ether(src="02:00:00:00:00:01", dst=b.mac) / IP(src=n.outside, dst="198.51.100.7") / ICMP(type=8, seq=s) for s in range(1, 7)]
    j = nat.judge_masqueraded(plan, cap, subject(plan, cap, wire(*away)))
    assert not j.ok and j.counts == {"translated": 0, "private": 0}


def test_overlay_words_and_plain_echo_both_ways(hosts):
    plan, cap, part, a, b = hosts
    good = [between_hosts(part, f) for f in pairs(a, b, 6)]
    j = hypervisors.judge_overlay(plan, cap, subject(plan, cap, good + wire(echo(a, b, 9), echo(b, a, 9, reply=True))))
    assert not j.ok and j.counts["plain_icmp_echo"] == 2
    assert j.expected == (
        "UDP 4789 datagrams only between the hypervisors' underlay addresses (192.0.2.1, 192.0.2.2, 192.0.2.3), "
        f"carrying ≥6 ICMP echo pairs between {a.ip} and {b.ip}; none of it unencapsulated"
    )
    assert j.seen == "12 VXLAN datagram(s) between the hypervisors (12 with the lab's VNIs), 0 from or to other addresses; inside: 6 echo pair(s); unencapsulated on the underlay: 2 echo packet(s)"


def test_vlan_words_with_two_vlans_and_one_plain_frame(trunk):
    plan, caps = trunk
    cap = dataclasses.replace(caps[0], between=["vm3", "vm3"])
    a = endpoint(plan, "vm3", cap.on)
    assert vlan.judge_vlan_tagged(plan, cap, subject(plan, cap, [], "vm3", "vm3")).expected == "the frames between vm3 and vm3 on link vm3.eth0 tagged with VLAN 10, 20 (802.1Q)"
    untagged_cap = caps[2]
    x, y = endpoint(plan, "vm1", untagged_cap.on), endpoint(plan, "vm3", untagged_cap.on)
    assert vlan.judge_untagged(plan, untagged_cap, subject(plan, untagged_cap, wire(tagged(x, y, [])))).ok  # one frame is enough
    assert vlan._tags(None) == [] and vlan._where(plan, "br0") == "bridge br0" and a is not None


def test_vxlan_judges_the_nic_on_its_bridges_not_the_first_one():
    """vm1's first NIC is on another bridge: the underlay capture's endpoint is that NIC, the echo
    inside the VXLAN comes from its NIC on bra."""
    text = (SCENARIOS_DIR / "vxlan-overlay.yaml").read_text()
    text = text.replace("bridges:\n  - name: bra\n", "bridges:\n  - name: brc\n    subnet: 10.5.5.0/24\n  - name: bra\n", 1)
    text = text.replace("nics: [{bridge: bra, address: 10.1.1.1/24}]", "nics: [{bridge: brc, address: 10.5.5.1/24}, {bridge: bra, address: 10.1.1.1/24}]", 1)
    plan = make_plan(parse_scenario(text, str(SCENARIOS_DIR / "vxlan-overlay.yaml")), "judged")
    (vx,) = plan.part("vxlan")
    under, bridge = captures(plan)
    a, b = plan.vm("vm1").nics[1], plan.vm("vm2").nics[0]
    assert endpoint(plan, "vm1", under.on) is plan.vm("vm1").nics[0]  # what the subject carries
    good = subject(plan, under, [encapsulated(vx, f) for f in pairs(a, b, 6)])
    assert vxlan.judge_vxlan(plan, under, good).ok
    back = subject(plan, under, [encapsulated(vx, f) for f in pairs(b, a, 6)], "vm2", "vm1")
    assert vxlan.judge_vxlan(plan, under, back).ok
    assert vxlan.judge_unencapsulated(plan, bridge, subject(plan, bridge, wire(*pairs(a, b, 6)))).ok
