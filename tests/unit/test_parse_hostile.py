"""vnetlab.checks.parse: right values on real guest output, bounded time and no exception on hostile output.

The student is root in the guest, so what the guest prints is chosen by an
adversary: digit runs of a megabyte, lines of a megabyte, 100k lines, '²' and
other non-ASCII digits, NUL bytes, JSON that is not an object or nests 100k
deep. Every call must return within BOUND seconds (a stall bound, not a speed target) and
never raise. The former regexes are kept here, copied verbatim, to show that
they agree on real output and are quadratic on hostile output.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vnetlab.checks import parse
from vnetlab.checks.parse import (
    MAX_LINES,
    MAX_JSON,
    excerpt,
    guest_links,
    handshakes,
    iperf_error,
    iperf_json,
    iperf_received,
    ping_rtt,
    ping_summary,
    unix_time,
)

# Seconds per call: linear parsing of ≤1 MB meets it with a wide margin even on a loaded 2-core machine,
# while the former quadratic regexes miss it by orders of magnitude (1 MB of digits: hours). Not a speed target.
BOUND = 5.0
MB = 1_000_000

# -- the former parsers, copied from the callers as they were (reference only) --------------

OLD_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")  # checks/runner.py
OLD_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)")  # features/perf.py
OLD_LINK = r"\d+:\s+([^:@\s]+)[^:]*:\s+<([^>]*)>.*link/\S+\s+([0-9a-f:]{17})"  # tools/inspect.py


def old_parse_guest_ip(link_text: str, addr_text: str) -> dict[str, tuple[str, str, list[str]]]:
    """tools/inspect.py parse_guest_ip before the hardening."""
    links: dict[str, tuple[str, str]] = {}
    for line in link_text.splitlines():
        m = re.match(OLD_LINK, line)
        if m:
            links[m[1]] = ("up" if "UP" in m[2].split(",") else "down", m[3])
    addrs: dict[str, list[str]] = {}
    for line in addr_text.splitlines():
        m = re.match(r"\d+:\s+(\S+)\s+inet6?\s+(\S+)", line)
        if m:
            addrs.setdefault(m[1], []).append(m[2])
    return {mac: (name, state, addrs.get(name, [])) for name, (state, mac) in links.items()}


# -- real output ------------------------------------------------------------------------------

IPUTILS_PING = """\
PING 10.1.1.3 (10.1.1.3) 56(84) bytes of data.
64 bytes from 10.1.1.3: icmp_seq=1 ttl=64 time=0.512 ms
64 bytes from 10.1.1.3: icmp_seq=2 ttl=64 time=0.318 ms
64 bytes from 10.1.1.3: icmp_seq=3 ttl=64 time=0.431 ms

--- 10.1.1.3 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 402ms
rtt min/avg/max/mdev = 0.318/0.420/0.512/0.079 ms
"""

IPUTILS_PING_LOST = """\
PING 10.1.1.9 (10.1.1.9) 56(84) bytes of data.
From 10.1.1.2 icmp_seq=1 Destination Host Unreachable
From 10.1.1.2 icmp_seq=2 Destination Host Unreachable
From 10.1.1.2 icmp_seq=3 Destination Host Unreachable

--- 10.1.1.9 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2041ms
pipe 3
"""

BUSYBOX_PING = """\
PING 10.1.1.3 (10.1.1.3): 56 data bytes
64 bytes from 10.1.1.3: seq=0 ttl=64 time=1.207 ms
64 bytes from 10.1.1.3: seq=1 ttl=64 time=0.843 ms
64 bytes from 10.1.1.3: seq=2 ttl=64 time=0.990 ms

--- 10.1.1.3 ping statistics ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.843/1.013/1.207 ms
"""

BUSYBOX_PING_LOST = """\
PING 10.1.1.9 (10.1.1.9): 56 data bytes

--- 10.1.1.9 ping statistics ---
3 packets transmitted, 0 packets received, 100% packet loss
"""

KEY_A = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="  # wg(8)'s example key
KEY_B = base64.b64encode(bytes(range(32))).decode()
WG_HANDSHAKES = f"{KEY_A}\t1764330012\n{KEY_B}\t0\n"

IPERF3_J = """\
{
	"start":	{
		"connected":	[{
				"socket":	5,
				"local_host":	"10.1.1.2",
				"local_port":	41222,
				"remote_host":	"10.1.1.3",
				"remote_port":	5201
			}],
		"version":	"iperf 3.12",
		"system_info":	"Linux vm1 6.1.0 #1 SMP x86_64",
		"test_start":	{"protocol": "TCP", "num_streams": 1, "blksize": 131072, "duration": 3}
	},
	"intervals":	[{
			"streams":	[{"socket": 5, "start": 0, "end": 1.000117, "seconds": 1.000117, "bytes": 118489088, "bits_per_second": 947801485.2}],
			"sum":	{"start": 0, "end": 1.000117, "seconds": 1.000117, "bytes": 118489088, "bits_per_second": 947801485.2, "omitted": false, "sender": true}
		}],
	"end":	{
		"sum_sent":	{"start": 0, "end": 3.000214, "seconds": 3.000214, "bytes": 352321536, "bits_per_second": 939456788.1, "retransmits": 0, "sender": true},
		"sum_received":	{"start": 0, "end": 3.001403, "seconds": 3.001403, "bytes": 351141888, "bits_per_second": 935937716.9, "sender": true},
		"cpu_utilization_percent":	{"host_total": 41.2, "remote_total": 12.9}
	}
}
"""

IPERF3_J_REFUSED = """\
{
	"start":	{"connected": [], "version": "iperf 3.12", "system_info": "Linux vm1 6.1.0 #1 SMP x86_64"},
	"intervals":	[],
	"end":	{},
	"error":	"error - unable to connect to server - server may not be running: Connection refused"
}
"""

# iproute2 `ip -o link` / `ip -o addr` (containers, the host's ip in a node's namespace).
IPROUTE2_LINK = (
    "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\"
    "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
    "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\\"
    "    link/ether 52:54:00:6b:1a:01 brd ff:ff:ff:ff:ff:ff\\    altname enp0s3\n"
    "3: eth1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\"
    "    link/ether 52:54:00:6b:1a:02 brd ff:ff:ff:ff:ff:ff\\    altname enp0s4\n"
    "4: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\"
    "    link/none \n"
    "5: veth0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\"
    "    link/ether 9a:1c:3e:55:02:7f brd ff:ff:ff:ff:ff:ff link-netnsid 0\n"
    "6: ip6tnl0@NONE: <NOARP> mtu 1452 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\"
    "    link/tunnel6 :: brd :: permaddr 5a2e:1b3c:9d40::\n"
)
IPROUTE2_ADDR = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever\n"
    "2: eth0    inet 10.1.1.2/24 brd 10.1.1.255 scope global eth0\\       valid_lft forever preferred_lft forever\n"
    "2: eth0    inet6 fe80::5054:ff:fe6b:1a01/64 scope link \\       valid_lft forever preferred_lft forever\n"
    "4: wg0    inet 10.9.0.1/24 scope global wg0\\       valid_lft forever preferred_lft forever\n"
    "5: veth0    inet 10.2.0.1/24 scope global veth0\\       valid_lft forever preferred_lft forever\n"
)
IPROUTE2_VIEW = {
    "00:00:00:00:00:00": ("lo", "up", ["127.0.0.1/8", "::1/128"]),
    "52:54:00:6b:1a:01": ("eth0", "up", ["10.1.1.2/24", "fe80::5054:ff:fe6b:1a01/64"]),
    "52:54:00:6b:1a:02": ("eth1", "down", []),
    "9a:1c:3e:55:02:7f": ("veth0", "up", ["10.2.0.1/24"]),
}

# busybox `ip -o link` / `ip -o addr` (the guest image: busybox-static), as networking/libiproute/ipaddress.c prints them.
BUSYBOX_LINK = (
    "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
    "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP qlen 1000\\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff\n"
    "3: eth1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN qlen 1000\\    link/ether 52:54:00:12:34:57 brd ff:ff:ff:ff:ff:ff\n"
    "4: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN qlen 1000\\    link/[65534] \n"
)
BUSYBOX_ADDR = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever\n"
    "2: eth0    inet 10.1.1.2/24 brd 10.1.1.255 scope global eth0\\       valid_lft forever preferred_lft forever\n"
    "2: eth0    inet6 fe80::5054:ff:fe12:3456/64 scope link \\       valid_lft forever preferred_lft forever\n"
    "4: wg0    inet 10.9.0.2/24 scope global wg0\\       valid_lft forever preferred_lft forever\n"
)
BUSYBOX_VIEW = {
    "00:00:00:00:00:00": ("lo", "up", ["127.0.0.1/8", "::1/128"]),
    "52:54:00:12:34:56": ("eth0", "up", ["10.1.1.2/24", "fe80::5054:ff:fe12:3456/64"]),
    "52:54:00:12:34:57": ("eth1", "down", []),
}

# -- hostile output ---------------------------------------------------------------------------

HOSTILE: dict[str, str] = {
    "empty": "",
    "1MB digits": "1" * MB,
    "1MB dots": "." * MB,
    "1MB NUL": "\x00" * MB,
    "1MB one line": "3 packets transmitted, " * (MB // 23),
    "100k lines": "3 packets transmitted, 3 received\n" * 100_000,
    "100k empty lines": "\n" * 100_000,
    "1MB line of digits then summary": "1" * MB + " packets transmitted, 3 received\n",
    "digits in summary": "3 packets transmitted, " + "1" * MB + " received\n",
    "rtt of dots": "rtt min/avg/max/mdev = " + "." * MB + " ms\n",
    "rtt of digits": "rtt min/avg/max/mdev = " + "1" * MB + "/1/1/1 ms\n",
    "rtt repeated": "rtt min/avg/max/mdev = 1/1/1/1 ms " * (MB // 32),
    "old regex killer": "= " + "1." * (MB // 2),
    "superscript digits": "² packets transmitted, ² received\nrtt min/avg/max/mdev = ²/²/²/² ms\n" + f"{KEY_A}\t²\n²\n",
    "other unicode digits": "٣ packets transmitted, ٣ received\n３ packets transmitted, ３ received\n"
    f"round-trip min/avg/max = ٠.١/٠.٢/٠.٣ ms\n{KEY_A}\t١٧٦٤\n१२३\n",
    "NUL inside": "3 packets\x00 transmitted, 3 received\nrtt min/avg/max/mdev = 0.1/0.2\x00/0.3/0 ms\n"
    f"{KEY_A}\x00\t1\n17643\x0030000\n",
    "huge key": "A" * MB + "=\t1764330000\n",
    "huge time": f"{KEY_A}\t" + "9" * MB + "\n",
    "100k wg lines": "".join(f"{base64.b64encode(i.to_bytes(32, 'big')).decode()}\t{i}\n" for i in range(100_000)),
    "link killer": "1: " + "a" * MB,
    "link killer 2": "1: eth0: <UP> " + "link/x " * (MB // 7),
    "link killer 3": "1: eth0: <UP> link/ether " + "0:" * (MB // 2),
    "100k link lines": "".join(
        f"{i}: e{i}: <UP> mtu 1500\\    link/ether 02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x} brd ff:ff:ff:ff:ff:ff\n"
        for i in range(100_000)
    ),
    "100k addr lines": "".join(f"2: eth0    inet 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/8 scope global eth0\n" for i in range(100_000)),
    "unicode separators": "3 packets transmitted,\u20283 received\u2029\x85\x1c\x0b\x0c\r",
    "lone surrogates": "\ud800\udfff" * (MB // 2),
    "escape sequences": "\x1b]0;pwned\x07\x1b[2J\u202e3 packets transmitted, 3 received\n",
}

HOSTILE_JSON: dict[str, str] = {
    "list": "[]",
    "string": '"x"',
    "number": "1",
    "overflow": "1e999",
    "null": "null",
    "true": "true",
    "NaN": "NaN",
    "-Infinity": "-Infinity",
    "NaN inside": '{"end": {"sum_received": {"bits_per_second": NaN, "bytes": 1, "seconds": 1}}}',
    "overflow inside": '{"end": {"sum_received": {"bits_per_second": 1e999, "bytes": 1, "seconds": 1}}}',
    "100k deep lists": "[" * 100_000,
    "100k deep objects": '{"a":' * 100_000,
    "100k deep closed": "[" * 100_000 + "]" * 100_000,
    "huge int": "1" * 5000,
    "huge int inside": '{"end": {"sum_received": {"bytes": ' + "9" * 5000 + "}}}",
    "huge float": "1." + "0" * MB,
    "1MB key": '{"' + "k" * MB + '": 1}',
    "1MB value": '{"error": "' + "e" * MB + '"}',
    "over the limit": '{"pad": "' + "x" * MAX_JSON + '"}',
    "many floats": "[" + ",".join(["1.5"] * 400_000) + "]",
    "at the limit, small lists": "[" + ",".join(["[]"] * (MAX_JSON // 3 - 1)) + "]",  # the slowest shape found
    "truncated": IPERF3_J[: len(IPERF3_J) // 2],
    "lone surrogate": '{"error": "\\ud800"}',
    "NUL": "\x00" * MB,
    "BOM": "\ufeff{}",
}


def timed(fn: Callable[..., Any], *args: Any) -> Any:
    """Call fn; it must return (not raise) within BOUND seconds."""
    start = time.monotonic()
    result = fn(*args)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND, f"{fn.__name__} took {elapsed:.3f} s"
    return result


# -- real output gives the right values -------------------------------------------------------


@pytest.mark.parametrize(
    "text, summary, rtt",
    [
        (IPUTILS_PING, (3, 3), (0.318, 0.420, 0.512)),
        (IPUTILS_PING_LOST, (3, 0), None),
        (BUSYBOX_PING, (3, 3), (0.843, 1.013, 1.207)),
        (BUSYBOX_PING_LOST, (3, 0), None),
        ("", None, None),
        ("ping: unknown host nowhere\n", None, None),
        ("3 packets transmitted, 3 packets received, 1 duplicates, 0% packet loss\r\nround-trip min/avg/max = 1/2/3 ms\r\n", (3, 3), (1.0, 2.0, 3.0)),
        ("rtt min/avg/max/mdev = 0.032/0.039/0.047/0.006 ms, pipe 2\n", None, (0.032, 0.039, 0.047)),
    ],
)
def test_ping_real(text: str, summary: tuple[int, int] | None, rtt: tuple[float, float, float] | None) -> None:
    assert timed(ping_summary, text) == summary
    assert timed(ping_rtt, text) == rtt
    old = OLD_PING_SUMMARY.search(text)
    assert ((int(old[1]), int(old[2])) if old else None) == summary  # same as the former parser
    old_rtt = OLD_RTT.search(text)
    assert (tuple(float(x) for x in old_rtt.groups()) if old_rtt else None) == rtt


def test_ping_last_summary_wins() -> None:
    text = IPUTILS_PING + BUSYBOX_PING_LOST
    assert ping_summary(text) == (3, 0)
    assert ping_rtt(IPUTILS_PING + BUSYBOX_PING) == (0.843, 1.013, 1.207)


def test_ping_summary_is_found_after_many_reply_lines() -> None:
    """Only the tail is read: a summary after 100k reply lines (and >256 KiB) is still the answer."""
    replies = "64 bytes from 10.1.1.3: icmp_seq=1 ttl=64 time=0.512 ms\n" * 100_000
    assert timed(ping_summary, replies + IPUTILS_PING) == (3, 3)
    assert timed(ping_rtt, replies + IPUTILS_PING) == (0.318, 0.420, 0.512)


def test_ping_cut_first_line_is_not_read() -> None:
    """When the text is cut to its tail, the partial first line is dropped rather than misread."""
    line = "123 packets transmitted, 5 received\n"
    padding = "x" * (parse.MAX_TEXT - len(line) + 1)
    assert ping_summary("123 packets transmitted, 5 received" + "\n" + padding) is None  # cut mid-"123": the line is dropped
    assert ping_summary("\n" + line + "y" * (parse.MAX_TEXT - len(line) - 5)) == (123, 5)


def test_handshakes_real() -> None:
    assert base64.b64decode(KEY_A, validate=True) and len(base64.b64decode(KEY_A)) == 32
    assert timed(handshakes, WG_HANDSHAKES) == {KEY_A: 1764330012, KEY_B: 0}
    assert handshakes("") == {}
    assert handshakes("Unable to access interface: No such device\n") == {}
    assert handshakes(f"{KEY_A}\t5\n{KEY_A}\t7\n") == {KEY_A: 7}  # as dict(): the last line for a key wins
    assert handshakes("abc=\t1764330000\n") == {}  # not a public key
    assert handshakes(f"{KEY_A[:-2]}B=\t1\n") == {}  # 43rd character with the low bits set: not 32 bytes
    assert handshakes(f"{KEY_A}\t1\textra\n") == {}


def test_unix_time_real() -> None:
    assert unix_time("1764330012") == 1764330012
    assert unix_time("1764330012\r\n") == 1764330012
    assert unix_time("  0 ") == 0
    for bad in ("", "date: not found", "-5", "1.5", "12 34", "0x10", "1" * 21, "+1"):
        assert unix_time(bad) is None, bad
    # The caller's way: first line is `date +%s`, the rest is `wg show … latest-handshakes`.
    first, _, rest = ("1764330020\n" + WG_HANDSHAKES).partition("\n")
    assert (unix_time(first), handshakes(rest)) == (1764330020, {KEY_A: 1764330012, KEY_B: 0})


def test_iperf_real() -> None:
    data, error = timed(iperf_json, IPERF3_J)
    assert error is None and isinstance(data, dict)
    assert iperf_error(data) is None
    assert iperf_received(data) == (935937716.9, 351141888, 3.001403)
    data, error = iperf_json(IPERF3_J_REFUSED)
    assert error is None and data is not None
    assert iperf_error(data) == "error - unable to connect to server - server may not be running: Connection refused"
    assert "refused" in (iperf_error(data) or "")
    assert iperf_received(data) == (0.0, 0, 0.0)


@pytest.mark.parametrize(
    "text, reason",
    [("", "no output"), ("  \n", "no output"), ("iperf3: command not found", "not JSON"), ("[]", "not a JSON object (a list)"), ('"x"', "not a JSON object (a str)")],
)
def test_iperf_json_errors_are_short_and_readable(text: str, reason: str) -> None:
    data, error = iperf_json(text)
    assert data is None and error is not None and error.startswith(reason) and len(error) < 200


@pytest.mark.parametrize(
    "received",
    [
        {},
        {"bits_per_second": "fast", "bytes": "1", "seconds": None},
        {"bits_per_second": True, "bytes": False, "seconds": [1]},
        {"bits_per_second": -1.0, "bytes": -5, "seconds": -0.5},
        {"bits_per_second": float("nan"), "bytes": float("inf"), "seconds": float("-inf")},
        {"bits_per_second": 10**400, "bytes": 2**63, "seconds": 1e300 * 1e300},
    ],
)
def test_iperf_received_zeros_for_bad_figures(received: dict) -> None:
    assert iperf_received({"end": {"sum_received": received}}) == (0.0, 0, 0.0)


def test_iperf_received_shapes() -> None:
    for data in ({}, {"end": []}, {"end": {"sum_received": []}}, {"end": None}, [], None, "x"):
        assert iperf_received(data) == (0.0, 0, 0.0)  # type: ignore[arg-type]
    assert iperf_received({"end": {"sum_received": {"bits_per_second": 5, "bytes": 7.0, "seconds": 2}}}) == (5.0, 7, 2.0)
    result = iperf_received({"end": {"sum_received": {"bits_per_second": 1, "bytes": 2, "seconds": 3}}})
    assert [type(x) for x in result] == [float, int, float]


def test_iperf_error_shapes() -> None:
    assert iperf_error({"error": ""}) is None
    assert iperf_error({"error": None}) is None
    assert iperf_error({"error": 0}) is None  # falsy, as `.get("error") or …` read it
    assert iperf_error({"error": 3}) == "3"
    assert iperf_error({"error": ["a"]}) == "(an error that is a JSON list, not text)"
    assert iperf_error({"error": "x\x1b[2J\ud800y"}) == "x\\x1b[2J\\ud800y"
    assert len(iperf_error({"error": "e" * MB}) or "") == 200
    assert iperf_error([]) is None  # type: ignore[arg-type]


def test_excerpt() -> None:
    assert excerpt("  exit 1: no route\n") == "exit 1: no route"
    assert excerpt("a\nb\tc") == "a b c"
    assert excerpt("\x1b]0;owned\x07\u202eok") == "\\x1b]0;owned\\x07\\u202eok"  # shown, not obeyed
    assert len(timed(excerpt, "z" * MB)) == parse.EXCERPT
    assert excerpt(None) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize("link, addr, view", [(IPROUTE2_LINK, IPROUTE2_ADDR, IPROUTE2_VIEW), (BUSYBOX_LINK, BUSYBOX_ADDR, BUSYBOX_VIEW)], ids=["iproute2", "busybox"])
def test_guest_links_real(link: str, addr: str, view: dict) -> None:
    assert timed(guest_links, link, addr) == view
    assert old_parse_guest_ip(link, addr) == view  # the same as the former parser
    # As the caller splits `ip -o link; echo ---; ip -o addr`.
    link_text, _, addr_text = (link + "---\n" + addr).partition("---")
    assert guest_links(link_text, addr_text) == view


def test_guest_links_same_as_old_on_edge_cases() -> None:
    """A VLAN sharing its parent's MAC (the parent, listed first, wins: it is the guest's NIC), a renamed line, an address with a peer."""
    link = (
        IPROUTE2_LINK
        + "7: eth0.10@eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\"
        "    link/ether 52:54:00:6b:1a:01 brd ff:ff:ff:ff:ff:ff\n"
        "3: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\\"
        "    link/ether 52:54:00:6b:1a:02 brd ff:ff:ff:ff:ff:ff\n"
    )
    addr = IPROUTE2_ADDR + "4: wg0    inet 10.9.0.1 peer 10.9.0.2/32 scope global wg0\n7: eth0.10    inet 10.10.0.1/24 scope global eth0.10\n"
    old = old_parse_guest_ip(link, addr)
    assert old["52:54:00:6b:1a:01"] == ("eth0.10", "up", ["10.10.0.1/24"])  # the former parser took the sub-interface
    assert guest_links(link, addr) == {**old, "52:54:00:6b:1a:01": ("eth0", "up", ["10.1.1.2/24", "fe80::5054:ff:fe6b:1a01/64"])}


def test_guest_links_mac_must_be_six_hex_pairs() -> None:
    """The one intended difference: the old [0-9a-f:]{17} took 17 characters of an ip6 tunnel's local address."""
    link = "8: t6@NONE: <POINTOPOINT,NOARP,UP> mtu 1452 qdisc noqueue state UNKNOWN\\    link/tunnel6 2001:db8:aaaa:bbbb::1 brd 2001:db8:aaaa:cccc::1\n"
    assert old_parse_guest_ip(link, "") == {"2001:db8:aaaa:bbb": ("t6", "up", [])}
    assert guest_links(link, "") == {}


# -- hostile output: bounded time, no exception -----------------------------------------------

TEXT_FUNCTIONS: list[Callable[[str], Any]] = [ping_summary, ping_rtt, handshakes, unix_time, excerpt]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text(name: str) -> None:
    text = HOSTILE[name]
    for fn in TEXT_FUNCTIONS:
        timed(fn, text)
    summary = timed(ping_summary, text)
    assert summary is None or all(type(x) is int for x in summary)
    rtt = timed(ping_rtt, text)
    assert rtt is None or all(type(x) is float and math.isfinite(x) for x in rtt)
    found = timed(handshakes, text)
    assert len(found) <= MAX_LINES and all(type(v) is int for v in found.values())
    for link, addr in ((text, text), (text, IPROUTE2_ADDR), (IPROUTE2_LINK, text)):
        view = timed(guest_links, link, addr)
        assert len(view) <= MAX_LINES
    data, error = timed(iperf_json, text)
    assert (data is None) != (error is None)


@pytest.mark.parametrize("name", ["superscript digits", "other unicode digits", "NUL inside"])
def test_non_ascii_digits_and_nul_are_not_numbers(name: str) -> None:
    text = HOSTILE[name]
    assert ping_summary(text) is None
    assert ping_rtt(text) is None
    assert handshakes(text) == {}
    for line in text.splitlines():
        assert unix_time(line) is None
    assert "²".isdigit() and unix_time("²") is None  # the WireGuard crash: isdigit() True, int() raises


def test_hostile_values_are_bounded() -> None:
    assert ping_summary(HOSTILE["digits in summary"]) is None
    assert ping_summary(HOSTILE["1MB line of digits then summary"]) is None
    assert ping_rtt(HOSTILE["rtt of dots"]) is None
    assert ping_rtt("rtt min/avg/max/mdev = ./././. ms\n") is None  # the old regex matched ".", float('.') raised
    assert ping_rtt(HOSTILE["rtt of digits"]) is None
    assert handshakes(HOSTILE["huge key"]) == {}
    assert handshakes(HOSTILE["huge time"]) == {}
    assert len(handshakes(HOSTILE["100k wg lines"])) == MAX_LINES  # the head of the listing, no more
    assert len(guest_links(HOSTILE["100k link lines"], HOSTILE["100k addr lines"])) == MAX_LINES
    assert unix_time("1" * MB) is None


@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_hostile_json(name: str) -> None:
    data, error = timed(iperf_json, HOSTILE_JSON[name])
    assert (data is None) != (error is None)
    if error is not None:
        assert len(error) < 200
    if data is not None:
        assert isinstance(data, dict)
        bps, nbytes, seconds = timed(iperf_received, data)
        assert all(math.isfinite(x) and x >= 0 for x in (bps, nbytes, seconds))
        timed(iperf_error, data)


@pytest.mark.parametrize("name", ["list", "string", "number", "overflow", "null", "true", "NaN", "-Infinity", "NaN inside", "overflow inside", "100k deep lists", "100k deep objects", "100k deep closed", "huge int", "huge int inside", "huge float", "over the limit", "truncated", "NUL"])
def test_hostile_json_is_refused(name: str) -> None:
    data, error = iperf_json(HOSTILE_JSON[name])
    assert data is None and error


def test_deep_nesting_really_raises_recursion_error_in_json() -> None:
    """The reason iperf_json catches RecursionError (it is not a ValueError)."""
    with pytest.raises(RecursionError):
        json.loads("[" * 100_000)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("0123456789.,/ =:<>@\n\t²٣\x00abcdefklinptrsuvx") + ["packets transmitted", " received", "rtt min/avg/max/mdev", "link/ether", "inet", "{", "}", "[", '"']), max_size=200).map("".join))
def test_never_raises_on_arbitrary_text(text: str) -> None:
    ping_summary(text), ping_rtt(text), handshakes(text), unix_time(text), excerpt(text), guest_links(text, text), iperf_json(text)
