"""The capture analysers on packets built in memory (no root, no network)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import rdpcap, wrpcap

from vnetlab.checks.capture import EchoCounts, TrafficCounts, count_arp_icmp, count_echo, count_icmp_in_subnet, count_ipv4, frag_needed, count_udp, count_udp_from, tcp_bytes, udp_payloads

MAC_A, IP_A = "52:54:00:00:00:0a", "10.1.1.2"
MAC_B, IP_B = "52:54:00:00:00:0b", "10.1.1.3"
MAC_C, IP_C = "52:54:00:00:00:0c", "10.1.1.4"
BROADCAST = "ff:ff:ff:ff:ff:ff"


pytestmark = pytest.mark.usefixtures("no_neighbour_resolution")  # tests/unit/conftest.py


def wire(*packets):
    """Serialise and re-dissect, as a capture would deliver them."""
    return [Ether(bytes(p)) for p in packets]


def arp_request(mac, ip, asked):
    return Ether(src=mac, dst=BROADCAST) / ARP(op=1, hwsrc=mac, psrc=ip, pdst=asked)


def arp_reply(mac, ip, to_mac, to_ip):
    return Ether(src=mac, dst=to_mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=to_mac, pdst=to_ip)


def echo(src_mac, src, dst_mac, dst, *, reply=False, ident=7, seq=1):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / ICMP(type=0 if reply else 8, id=ident, seq=seq)


def ping_exchange(count=3, ident=7):
    packets = [arp_request(MAC_A, IP_A, IP_B), arp_reply(MAC_B, IP_B, MAC_A, IP_A)]
    for seq in range(1, count + 1):
        packets.append(echo(MAC_A, IP_A, MAC_B, IP_B, ident=ident, seq=seq))
        packets.append(echo(MAC_B, IP_B, MAC_A, IP_A, reply=True, ident=ident, seq=seq))
    return wire(*packets)


def counts(packets):
    return count_arp_icmp(packets, MAC_A, IP_A, MAC_B, IP_B)


def test_one_ping_exchange():
    assert counts(ping_exchange(3)) == TrafficCounts(1, 1, 3, 3, 3)


def test_both_directions_and_mac_case():
    packets = ping_exchange(2) + wire(
        arp_request(MAC_B, IP_B, IP_A),
        arp_reply(MAC_A, IP_A, MAC_B, IP_B),
        echo(MAC_B, IP_B, MAC_A, IP_A, ident=9, seq=1),
        echo(MAC_A, IP_A, MAC_B, IP_B, reply=True, ident=9, seq=1),
    )
    assert count_arp_icmp(packets, MAC_A.upper(), IP_A, MAC_B.upper(), IP_B) == TrafficCounts(2, 2, 3, 3, 3)


def test_unanswered_and_mismatched_replies_are_not_pairs():
    packets = wire(
        echo(MAC_A, IP_A, MAC_B, IP_B, seq=1),
        echo(MAC_B, IP_B, MAC_A, IP_A, reply=True, seq=1),
        echo(MAC_A, IP_A, MAC_B, IP_B, seq=2),  # lost reply
        echo(MAC_A, IP_A, MAC_B, IP_B, seq=3),
        echo(MAC_B, IP_B, MAC_A, IP_A, reply=True, ident=8, seq=3),  # other id
        echo(MAC_A, IP_A, MAC_B, IP_B, reply=True, seq=4),  # addresses not swapped w.r.t. any request
    )
    assert counts(packets) == TrafficCounts(0, 0, 3, 3, 1)


def test_reply_before_request_and_duplicates():
    packets = wire(
        echo(MAC_B, IP_B, MAC_A, IP_A, reply=True, seq=1),
        echo(MAC_A, IP_A, MAC_B, IP_B, seq=1),
        echo(MAC_A, IP_A, MAC_B, IP_B, seq=2),
        echo(MAC_A, IP_A, MAC_B, IP_B, seq=2),  # duplicated request, one reply
        echo(MAC_B, IP_B, MAC_A, IP_A, reply=True, seq=2),
    )
    assert counts(packets) == TrafficCounts(0, 0, 3, 2, 1)


def test_other_hosts_and_other_arp_are_ignored():
    packets = wire(
        arp_request(MAC_C, IP_C, IP_A),  # a third host asking
        arp_reply(MAC_A, IP_A, MAC_C, IP_C),  # answered to the third host
        arp_request(MAC_A, IP_A, IP_A),  # gratuitous ARP
        arp_request(MAC_A, IP_A, IP_C),  # asks for someone else
        arp_reply(MAC_B, IP_C, MAC_A, IP_A),  # b claiming c's address
        echo(MAC_A, IP_A, MAC_C, IP_C),
        echo(MAC_C, IP_C, MAC_A, IP_A, reply=True),
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / UDP(sport=1000, dport=2000),
    )
    assert counts(packets) == TrafficCounts(0, 0, 0, 0, 0)


def test_echo_quoted_in_icmp_error_is_not_counted():
    error = Ether(src=MAC_B, dst=MAC_A) / IP(src=IP_B, dst=IP_A) / ICMP(type=3, code=3) / IP(src=IP_A, dst=IP_B) / ICMP(
        type=8, id=7, seq=1
    )
    assert counts(wire(error)) == TrafficCounts(0, 0, 0, 0, 0)


def test_analysis_survives_a_pcap_round_trip(tmp_path):
    path = tmp_path / "ping.pcap"
    wrpcap(str(path), ping_exchange(4))
    assert counts(rdpcap(str(path))) == TrafficCounts(1, 1, 4, 4, 4)


@settings(max_examples=50, deadline=None)
@given(noise=st.integers(min_value=0, max_value=30), seed=st.integers(), count=st.integers(min_value=1, max_value=6))
def test_traffic_of_other_hosts_never_changes_the_counts(noise, seed, count):
    rng = random.Random(seed)
    exchange = ping_exchange(count)
    others = wire(
        *[
            rng.choice(
                [
                    arp_request(MAC_C, IP_C, rng.choice([IP_A, IP_B])),
                    echo(MAC_C, IP_C, MAC_A, IP_A, seq=rng.randint(1, 6)),
                    echo(MAC_B, IP_B, MAC_C, IP_C, reply=True, seq=rng.randint(1, 6)),
                ]
            )
            for _ in range(noise)
        ]
    )
    mixed = list(exchange)
    for packet in others:  # scatter the noise; the exchange keeps its order
        mixed.insert(rng.randint(0, len(mixed)), packet)
    assert counts(mixed) == TrafficCounts(1, 1, count, count, count)


def wireguard(src, dst, sport=51820, dport=51820):
    return Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (b"\x04" + bytes(31))


def test_count_udp_either_direction_and_either_port_end():
    packets = wire(
        wireguard(IP_A, IP_B),
        wireguard(IP_B, IP_A),
        wireguard(IP_A, IP_B, sport=40000),
        wireguard(IP_B, IP_A, dport=40000),
        wireguard(IP_A, IP_B, sport=40000, dport=40001),  # other port
        wireguard(IP_A, IP_C),  # other host
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / ICMP(),
    )
    assert count_udp(packets, IP_A, IP_B, 51820) == 4
    assert count_udp(packets, IP_B, IP_A, 51820) == 4


def test_count_udp_ignores_udp_quoted_in_icmp_errors():
    unreachable = Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_B, dst=IP_A) / ICMP(type=3, code=3) / IP(src=IP_A, dst=IP_B) / UDP(
        sport=40000, dport=51820
    )
    assert count_udp(wire(unreachable), IP_A, IP_B, 51820) == 0


def test_count_icmp_in_subnet():
    tunnel = "10.9.0.0/24"
    packets = wire(
        Ether(src=MAC_A, dst=MAC_B) / IP(src="10.9.0.1", dst="10.9.0.2") / ICMP(),  # plaintext tunnel traffic
        Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.1.2", dst="10.9.0.2") / ICMP(type=0),  # one end inside
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / ICMP(),  # underlay ping
        Ether(src=MAC_A, dst=MAC_B) / IP(src="10.9.0.1", dst="10.9.0.2") / UDP(dport=53),  # not ICMP
        wireguard(IP_A, IP_B),  # encrypted: unreadable
        # encapsulated in VXLAN, still plaintext on the wire
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / UDP(sport=4789, dport=4789) / VXLAN(vni=1) / Ether(src=MAC_A, dst=MAC_B) / IP(
            src="10.9.0.1", dst="10.9.0.2"
        ) / ICMP(),
    )
    assert count_icmp_in_subnet(packets, tunnel) == 3
    assert count_icmp_in_subnet(packets, "192.168.0.0/16") == 0


def test_count_icmp_in_ipv6_subnet():
    packets = wire(
        Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(),
        Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fd01::1", dst="fd01::2") / ICMPv6EchoRequest(),
        Ether(src=MAC_A, dst=MAC_B) / IP(src="10.9.0.1", dst="10.9.0.2") / ICMP(),
    )
    assert count_icmp_in_subnet(packets, "fd00::/64") == 1


# -- the wire judges' counters: one direction, one flow ------------------------------------------------------------


def ip_echo(src, dst, *, reply=False, ident=7, seq=1, pad=0):
    return Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst) / ICMP(type=0 if reply else 8, id=ident, seq=seq) / (b"p" * pad)


def test_count_echo_counts_requests_to_the_target_and_its_replies_that_answer_them():
    sources = {IP_A, "10.1.2.2"}  # a node with two addresses: either may be the source
    packets = wire(
        ip_echo(IP_A, IP_B, seq=1), ip_echo(IP_B, IP_A, reply=True, seq=1),
        ip_echo("10.1.2.2", IP_B, seq=2), ip_echo(IP_B, "10.1.2.2", reply=True, seq=2),
        ip_echo(IP_C, IP_B, seq=3), ip_echo(IP_B, IP_C, reply=True, seq=3),  # another host's exchange
        ip_echo(IP_A, IP_C, seq=4), ip_echo(IP_C, IP_A, reply=True, seq=4),  # with another target
        ip_echo(IP_B, IP_A, reply=True, seq=9),  # a reply to no request
        ip_echo(IP_B, IP_A, reply=True, seq=1),  # a second reply to seq 1
        ip_echo(IP_B, IP_A, seq=5),  # the target asking
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_B, dst=IP_A) / ICMP(type=3, code=1) / IP(src=IP_A, dst=IP_B) / ICMP(type=8, id=7, seq=6),
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / UDP(dport=7),
    )
    assert count_echo(packets, sources, IP_B) == EchoCounts(requests=2, replies=4, pairs=2)
    assert count_echo(packets, {IP_A}, IP_B) == EchoCounts(requests=1, replies=3, pairs=1)
    assert count_echo(wire(ip_echo(IP_B, IP_A, reply=True), ip_echo(IP_A, IP_B)), {IP_A}, IP_B) == EchoCounts(1, 1, 0)  # a reply before its request
    assert count_echo(wire(ip_echo(IP_A, IP_B), ip_echo(IP_B, IP_A, reply=True, ident=8)), {IP_A}, IP_B).pairs == 0  # another identifier


def test_count_echo_of_a_size_counts_only_packets_of_that_total_length():
    packets = wire(ip_echo(IP_A, IP_B, pad=72), ip_echo(IP_B, IP_A, reply=True, pad=72), ip_echo(IP_A, IP_B, seq=2), ip_echo(IP_B, IP_A, reply=True, seq=2))
    assert count_echo(packets, {IP_A}, IP_B, 100) == EchoCounts(1, 1, 1)  # 20 + 8 + 72
    assert count_echo(packets, {IP_A}, IP_B, 28) == EchoCounts(1, 1, 1)
    assert count_echo(packets, {IP_A}, IP_B, 101) == EchoCounts(0, 0, 0)
    assert count_echo(packets, {IP_A}, IP_B) == EchoCounts(2, 2, 2)


def test_count_echo_sees_an_exchange_carried_in_a_tunnel():
    inner = IP(src=IP_A, dst=IP_B) / ICMP(type=8, id=1, seq=1)
    back = IP(src=IP_B, dst=IP_A) / ICMP(type=0, id=1, seq=1)
    packets = wire(Ether(src=MAC_A, dst=MAC_B) / IP(src="192.0.2.1", dst="192.0.2.2", proto=4) / inner, Ether(src=MAC_A, dst=MAC_B) / IP(src="192.0.2.2", dst="192.0.2.1", proto=4) / back)
    assert count_echo(packets, {IP_A}, IP_B) == EchoCounts(1, 1, 1)
    v6 = wire(Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest())
    assert count_echo(v6, {"fd00::1"}, "fd00::2") == EchoCounts(1, 0, 0)  # ICMPv6 echo counts too (dual-stack labs): a request, no reply


def test_udp_counts_one_direction_with_the_port_at_either_end():
    packets = wire(
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / UDP(sport=1000, dport=51820) / b"1",
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / UDP(sport=51820, dport=1000) / b"22",
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / UDP(sport=1000, dport=1001) / b"x",  # another port
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_B, dst=IP_A) / UDP(sport=51820, dport=51820) / b"333",  # the other way
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_C) / UDP(sport=51820, dport=51820) / b"x",  # to another host
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_C, dst=IP_B) / UDP(sport=51820, dport=51820) / b"x",  # from another host
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / TCP(sport=51820, dport=51820) / b"x",  # not UDP
        Ether(src=MAC_A, dst=MAC_B) / ARP(),
    )
    assert count_udp_from(packets, IP_A, IP_B, 51820) == 2 and count_udp_from(packets, IP_B, IP_A, 51820) == 1
    assert list(udp_payloads(packets, IP_A, IP_B, 51820)) == [b"1", b"22"] and list(udp_payloads(packets, IP_B, IP_A, 51820)) == [b"333"]
    assert count_udp_from(packets, IP_A, IP_B, 1001) == 1 and list(udp_payloads(packets, IP_A, IP_B, 9)) == []


def test_tcp_bytes_sums_the_payload_the_ip_headers_state_of_one_flow():
    segment = IP(src=IP_A, dst=IP_B, options=[IPOption_NOP()] * 4) / TCP(sport=40000, dport=5201, options=[("NOP", None)] * 4) / (b"d" * 100)
    packets = wire(
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / TCP(dport=22) / (b"x" * 7),  # another port, before the flow
        Ether(src=MAC_A, dst=MAC_B) / segment,  # headers with options: 24 + 24 bytes, 100 of payload
        Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.2.2", dst=IP_B) / TCP(dport=5201) / (b"d" * 50),
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / TCP(dport=5201),  # an ACK: no payload
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / TCP(dport=22) / (b"x" * 7),  # another port
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_C) / TCP(dport=5201) / (b"x" * 7),  # another host
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_C, dst=IP_B) / TCP(dport=5201) / (b"x" * 7),  # from another host
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / UDP(dport=5201) / (b"x" * 7),  # not TCP
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_B, dst=IP_A) / TCP(sport=5201, dport=5201) / (b"x" * 7),  # the other way
    )
    assert tcp_bytes(packets, {IP_A, "10.1.2.2"}, IP_B, 5201) == 150 and tcp_bytes(packets, {IP_A}, IP_B, 5201) == 100
    cut = Ether(bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B, len=40 + 9000) / TCP(dport=5201) / (b"d" * 100)))
    assert tcp_bytes([cut], {IP_A}, IP_B, 5201) == 9000  # an offloaded segment the capture cut: its header says what it carried
    liar = Ether(bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B, len=30) / TCP(dport=5201)))
    assert tcp_bytes([liar], {IP_A}, IP_B, 5201) == 0  # a length shorter than its headers carries nothing, not less


def icmp_to(src, dst, icmp: bytes):
    return Ether(src=MAC_B, dst=MAC_A) / IP(src=src, dst=dst, proto=1) / Raw(icmp)


def frag_needed_bytes(mtu: int, about: str | None = None, kind: int = 3, code: int = 4) -> bytes:
    """ICMP type 3 code 4 with the next-hop MTU, and (about) the start of the quoted IPv4 header."""
    quoted = bytes(IP(src=IP_A, dst=about) / ICMP())[:20] if about else b""
    return bytes([kind, code, 0, 0, 0, 0]) + mtu.to_bytes(2, "big") + quoted


def test_frag_needed_reads_the_next_hop_mtu_of_each_answer_to_us_about_the_target():
    router, target = IP_C, "10.9.9.9"
    packets = wire(
        Ether(src=MAC_A, dst=BROADCAST) / ARP(op=1, hwsrc=MAC_A, psrc=IP_A, pdst=IP_C),  # no IPv4 at all
        Ether(src=MAC_B, dst=MAC_A) / IP(src=router, dst=IP_A) / UDP(dport=4),  # not ICMP
        icmp_to(router, IP_B, frag_needed_bytes(1200, target)),  # to another host
        icmp_to("10.1.1.99", IP_A, frag_needed_bytes(1100, target)),  # from another router
        icmp_to(router, IP_A, frag_needed_bytes(1000, target, code=1)),  # host unreachable
        icmp_to(router, IP_A, frag_needed_bytes(900, target, kind=11)),  # time exceeded (code 4 alone is not it)
        icmp_to(router, IP_A, frag_needed_bytes(800)[:7]),  # cut inside the header
        icmp_to(router, IP_A, frag_needed_bytes(1400, "10.9.9.8")),  # about another target
        icmp_to(router, IP_A, frag_needed_bytes(1400)),  # the header alone: 8 bytes, nothing quoted
        icmp_to(router, IP_A, frag_needed_bytes(1300, target)),  # exactly 28 bytes: all that is read
    )
    assert frag_needed(packets, {IP_A}) == [1100, 1400, 1400, 1300]
    assert frag_needed(packets, {IP_A}, sender=router) == [1400, 1400, 1300]
    assert frag_needed(packets, {IP_A}, about=target) == [1100, 1300] and frag_needed(packets, {IP_A}, sender=router, about=target) == [1300]
    assert frag_needed(packets, {IP_A, IP_B}, sender=router, about=target) == [1200, 1300]


def test_count_ipv4_by_source_mac_counts_past_frames_another_mac_sent():
    routed = Ether(src=MAC_C, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / ICMP()  # the same addresses, through a router's MAC
    own = Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / ICMP()
    assert count_ipv4(wire(routed, own, routed), dst=IP_B, ether_src=MAC_A) == 1 and count_ipv4(wire(routed, own), src=IP_A) == 2


def test_count_echo_pairs_a_request_sent_twice_with_both_replies():
    twice = wire(ip_echo(IP_A, IP_B), ip_echo(IP_A, IP_B), ip_echo(IP_B, IP_A, reply=True), ip_echo(IP_B, IP_A, reply=True), ip_echo(IP_B, IP_A, reply=True))
    assert count_echo(twice, {IP_A}, IP_B) == EchoCounts(requests=2, replies=3, pairs=2)  # the third reply answers nothing left
