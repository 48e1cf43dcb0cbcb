"""The capture analysers on packets built in memory (no root, no network)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import rdpcap, wrpcap

from vnetlab.checks.capture import TrafficCounts, count_arp_icmp, count_icmp_in_subnet, count_udp

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
