"""Bounded parsers for what a guest prints (ping, wg, date, iperf3 -J, ip -o link/addr).

The student is root inside the guest, so everything a guest prints is hostile
input to vnetlab, which runs as root on the host. The unanchored regexes these
parsers replace were quadratic on long digit runs (40 KB of digits held the
ping summary regex for 12 s), matched "." as a number, took '²' for a digit
and let non-object JSON crash the perf check. Every function here therefore:

- looks at a bounded part of the text: MAX_TEXT characters and MAX_LINES lines
  (the tail for ping, whose summary is printed last; the head for listings,
  whose entries are printed in kernel order, lab interfaces and peers first),
  and at most MAX_LINE characters of each line;
- matches one line at a time with anchored regexes whose quantifiers are
  bounded and never overlap, so the work is linear in the bounded input;
- accepts ASCII digits only ([0-9] with re.ASCII, never str.isdigit);
- never raises: a parse that fails gives None, an empty dict or zeros.

Pure functions, no state beyond the compiled patterns and the bounds below.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING

from vnetlab.lazy import LazyModule
from vnetlab.printable import printable

if TYPE_CHECKING:
    import regex
else:  # imported at the first pattern compiled (~60 ms): a lab without `pattern:` checks never needs it
    regex = LazyModule("regex")

MAX_LINE = 4096  # characters of one line looked at; real lines are < 400 (ip -o link with altnames)
MAX_LINES = 2000  # lines looked at; ping -c is at most 100 here, wg/ip listings are a few dozen lines
MAX_TEXT = 256 * 1024  # characters looked at; all real outputs parsed here are a few KiB
# Characters of iperf3 -J: a one-stream test prints < 1 KiB a second (a 60 s test is ~45 KiB), so 1 MiB
# is 20 minutes of intervals. Decoding costs what the input is: the worst 1 MiB found (small nested lists)
# takes ~50 ms here, the worst 4 MiB ~200 ms (over 0.5 s on this 2-core machine under load).
MAX_JSON = 1024 * 1024
MAX_DIGITS = 10  # digits of a ping count (≤ 9 999 999 999) or of an RTT figure's integer/fraction part
MAX_TIME_DIGITS = 20  # digits of a unix time: 2**64 - 1 has 20
MAX_INT = 2**63 - 1  # largest byte count / int figure taken from iperf3 JSON
EXCERPT = 300  # characters of guest output quoted back in a detail

_NUM = rf"[0-9]{{1,{MAX_DIGITS}}}(?:\.[0-9]{{1,{MAX_DIGITS}}})?"
# iputils "3 packets transmitted, 3 received, 0% packet loss, time 2003ms";
# busybox "3 packets transmitted, 3 packets received, 0% packet loss".
_PING_SUMMARY = re.compile(rf"([0-9]{{1,{MAX_DIGITS}}}) packets transmitted, ([0-9]{{1,{MAX_DIGITS}}}) (?:packets )?received\b", re.ASCII)
# iputils "rtt min/avg/max/mdev = 0.1/0.2/0.3/0.04 ms"; busybox "round-trip min/avg/max = 0.1/0.2/0.3 ms".
_PING_RTT = re.compile(rf"(?:rtt|round-trip) min/avg/max(?:/[a-z]{{1,8}})? = ({_NUM})/({_NUM})/({_NUM})(?:/{_NUM})? ms\b", re.ASCII)
# A WireGuard public key: base64 of 32 bytes (43 characters carry 258 bits, the last 2 are zero, then "=").
_WG_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=", re.ASCII)
_TIME = re.compile(rf"[0-9]{{1,{MAX_TIME_DIGITS}}}", re.ASCII)
# `ip -o link`: "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 …\    link/ether 52:54:00:12:34:56 brd …";
# the name may carry "@if5" / "@eth0" / "@NONE". The name class excludes "@", so the two parts cannot overlap.
_LINK_HEAD = re.compile(r"[0-9]{1,10}:[ \t]{1,16}([^:@\s]{1,64})(?:@[^:\s]{1,64})?:[ \t]{1,16}<([^<>]{0,1024})>", re.ASCII)
_LINK_ADDR = re.compile(r"link/\S{1,64}\s{1,16}((?:[0-9a-f]{2}:){5}[0-9a-f]{2})", re.ASCII)
# `ip -o addr`: "2: eth0    inet 10.1.1.2/24 brd 10.1.1.255 scope global eth0\       valid_lft forever …".
_ADDR = re.compile(r"[0-9]{1,10}:\s{1,16}(\S{1,64})\s{1,16}inet6?\s{1,16}(\S{1,128})(?!\S)", re.ASCII)


def _tail_lines(text: object) -> list[str]:
    """The last MAX_LINES lines of the last MAX_TEXT characters, each cut to MAX_LINE.

    For output whose answer is printed last (ping's summary follows one line per
    reply). When the text is cut, its first line is partial and is dropped, so a
    cut "123 packets transmitted" can never read as "23 packets transmitted".
    """
    if not isinstance(text, str):
        return []
    cut = len(text) > MAX_TEXT
    lines = text[-MAX_TEXT:].splitlines()
    if cut:
        lines = lines[1:]
    return [line[:MAX_LINE] for line in lines[-MAX_LINES:]]


def _head_lines(text: object) -> list[str]:
    """The first MAX_LINES lines of the first MAX_TEXT characters, each cut to MAX_LINE.

    For listings (wg peers, ip links and addresses), printed in kernel order:
    the lab's own interfaces and peers come first. A cut text's partial last
    line is dropped.
    """
    if not isinstance(text, str):
        return []
    cut = len(text) > MAX_TEXT
    lines = text[:MAX_TEXT].splitlines()
    if cut:
        lines = lines[:-1]
    return [line[:MAX_LINE] for line in lines[:MAX_LINES]]


def ping_summary(text: str) -> tuple[int, int] | None:
    """(transmitted, received) from iputils or busybox ping output; the last summary line wins, None if there is none."""
    for line in reversed(_tail_lines(text)):
        m = _PING_SUMMARY.match(line.lstrip(" \t"))
        if m:
            return int(m[1]), int(m[2])
    return None


# One echo reply: iputils "[1733565600.123456] 64 bytes from 10.1.1.2: icmp_seq=5 ttl=64 time=0.53 ms"
# (the [time] with -D), busybox "64 bytes from 10.1.1.2: seq=4 ttl=64 time=0.5 ms"; a duplicate says "(DUP!)".
_PING_REPLY = re.compile(
    rf"(?:\[([0-9]{{1,{MAX_TIME_DIGITS}}}(?:\.[0-9]{{1,9}})?)\] )?[0-9]{{1,{MAX_DIGITS}}} bytes from [^:\s]{{1,128}}: (?:icmp_)?seq=([0-9]{{1,{MAX_DIGITS}}}) ",
    re.ASCII,
)


def ping_replies(text: str) -> list[tuple[int, float | None]]:
    """(sequence number, reply time or None) of each echo reply ping printed, in order, duplicates
    left out; the time is the guest's clock (iputils' -D), None from a ping without timestamps."""
    out: list[tuple[int, float | None]] = []
    seen: set[int] = set()
    for line in _tail_lines(text):
        m = _PING_REPLY.match(line)
        if m is None or "(DUP!)" in line:
            continue
        seq = int(m[2])
        if seq not in seen:
            seen.add(seq)
            out.append((seq, float(m[1]) if m[1] else None))
    return out


def ping_rtt(text: str) -> tuple[float, float, float] | None:
    """(min, avg, max) ms from iputils "rtt …" or busybox "round-trip …"; the last such line wins, None if none."""
    for line in reversed(_tail_lines(text)):
        m = _PING_RTT.match(line.lstrip(" \t"))
        if m:
            figures = (float(m[1]), float(m[2]), float(m[3]))
            if all(math.isfinite(f) for f in figures):  # always true for ≤ 10+10 digits; kept as the contract
                return figures
    return None


def handshakes(text: str) -> dict[str, int]:
    """`wg show IFACE latest-handshakes` ("<public key>\\t<unix time>", 0 = never) by key; other lines are ignored."""
    out: dict[str, int] = {}
    for line in _head_lines(text):
        parts = line.split(None, 2)
        if len(parts) == 2 and _WG_KEY.fullmatch(parts[0]) and _TIME.fullmatch(parts[1]):
            out[parts[0]] = int(parts[1])
    return out


def unix_time(line: str) -> int | None:
    """The guest's `date +%s` line as an int (ASCII digits, surrounding whitespace allowed), else None."""
    if not isinstance(line, str):
        return None
    m = _TIME.fullmatch(line[:MAX_LINE].strip(" \t\r\n"))
    return int(m[0]) if m else None


def _finite_float(literal: str) -> float:
    """json's parse_float: a number that overflows to ±inf is not a measurement."""
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {literal[:20]!r}")
    return value


def _no_constant(name: str) -> float:
    """json's parse_constant: NaN/Infinity are not JSON, and iperf3 (cJSON) prints them as null."""
    raise ValueError(f"non-standard constant {name}")


def iperf_json(text: str) -> tuple[dict | None, str | None]:
    """(the object, None) from `iperf3 -J` output, or (None, a short reason) if it is empty, too big, not JSON or not an object.

    Bounded to MAX_JSON characters; NaN, Infinity and numbers overflowing a
    float are refused (iperf3 never prints them); nesting deep enough to make
    json raise RecursionError is refused too.
    """
    if not isinstance(text, str):
        return None, "no output"
    if len(text) > MAX_JSON:
        return None, f"output too large ({len(text)} characters, limit {MAX_JSON})"
    if not text.strip():
        return None, "no output"
    try:
        data = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        return None, "not JSON: nested too deeply"
    except ValueError as exc:  # JSONDecodeError, our refusals, ints over Python's digit limit
        return None, f"not JSON: {str(exc)[:100]}"
    if not isinstance(data, dict):
        return None, f"not a JSON object (a {type(data).__name__})"
    return data, None


def _number(value: object, integral: bool) -> float | int:
    """A finite, non-negative JSON number (bool is not one), else 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, int):
        if not 0 <= value <= MAX_INT:
            return 0
        return value if integral else float(value)
    if not math.isfinite(value) or value < 0 or (integral and value > MAX_INT):
        return 0
    return int(value) if integral else value


def iperf_received(data: dict) -> tuple[float, int, float]:
    """(bits_per_second, bytes, seconds) of data["end"]["sum_received"]; 0 for each that is missing, mistyped, negative or not finite."""
    end = data.get("end") if isinstance(data, dict) else None
    received = end.get("sum_received") if isinstance(end, dict) else None
    if not isinstance(received, dict):
        return 0.0, 0, 0.0
    return (
        float(_number(received.get("bits_per_second"), integral=False)),
        int(_number(received.get("bytes"), integral=True)),
        float(_number(received.get("seconds"), integral=False)),
    )


def iperf_error(data: dict) -> str | None:
    """data["error"] as a short printable string when iperf3 reported one (truthy, as the perf check reads it), else None."""
    error = data.get("error") if isinstance(data, dict) else None
    if not error:
        return None
    if isinstance(error, str):
        return excerpt(error, 200) or "(unprintable error)"
    if isinstance(error, (int, float)):
        return excerpt(repr(error), 200)
    return f"(an error that is a JSON {type(error).__name__}, not text)"


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """The last `limit` characters of stripped guest output, one line, every control and other
    unprintable character shown as an escape (vnetlab.printable).

    Guest output quoted back in a check's detail reaches the operator's terminal, report.json
    and junit.xml: escape sequences, bidi overrides and lone surrogates must not, and a teacher
    still sees that they were sent. (Rich markup such as "[/]" is the renderer's to escape, not this one's.)
    """
    if not isinstance(text, str) or limit <= 0:
        return ""
    return printable(text[-(limit + MAX_LINE):].strip()[-limit:], one_line=True)


def guest_links(link_text: str, addr_text: str) -> dict[str, tuple[str, str, list[str]]]:
    """MAC → (interface, "up"|"down", addresses) from a guest's `ip -o link` and `ip -o addr` (busybox or iproute2).

    Same result as the former inspect.parse_guest_ip on real output, except
    that a MAC must be six hex pairs (the old [0-9a-f:]{17} also took 17
    characters of an ip6 tunnel's address). Interfaces without one (link/none,
    ipip) are left out; the last line for a name wins, and the first name for a MAC: the guest's
    NICs come first (lowest ifindex), before devices made later that share their MAC (a VLAN
    sub-interface eth0.10, a bridge that took its first port's MAC).
    """
    links: dict[str, tuple[str, str]] = {}
    for line in _head_lines(link_text):
        head = _LINK_HEAD.match(line)
        if head is None:
            continue
        mac = None
        for m in _LINK_ADDR.finditer(line, head.end()):
            mac = m[1]
        if mac is not None:
            links[head[1]] = ("up" if "UP" in head[2].split(",") else "down", mac)
    addrs: dict[str, list[str]] = {}
    for line in _head_lines(addr_text):
        m = _ADDR.match(line)
        if m:
            addrs.setdefault(m[1], []).append(m[2])
    out: dict[str, tuple[str, str, list[str]]] = {}
    for name, (state, mac) in links.items():
        out.setdefault(mac, (name, state, list(addrs.get(name, []))))
    return out


# -- a scenario's own regular expressions over guest output --------------------------------------
# A scenario's pattern may backtrack catastrophically: `.*ok.*done` over 256 KiB of output without
# "done" held Python's re for ~40 s (16 KiB already took minutes in another measurement here), and
# re has no time limit. The `regex` module (re's syntax, plus its own extensions) takes one.
MAX_MATCHED = 256 * 1024  # a scenario's pattern sees at most this much of an output (its end)
MATCH_TIMEOUT = 2.0  # s one search may take


class PatternError(ValueError):
    """A scenario's regular expression does not compile."""


class PatternTimeout(Exception):
    """A scenario's regular expression did not finish searching within MATCH_TIMEOUT."""


MAX_EXPANDED = 10_000  # atoms of a pattern once its counted repeats are multiplied out (what compiling costs)
_COUNTED = re.compile(r"\{([0-9]{0,10})(?:(,)([0-9]{0,10}))?\}[?+]?")
_ESCAPE_WITH_BRACES = re.compile(r"\\[pPNxuUg][{<][^}>]{0,64}[}>]|\\.", re.DOTALL)
_CLASS = re.compile(r"\[\^?\]?(?:\\.|[^\]\\])*\]", re.DOTALL)
_SIMPLE_QUANTIFIER = re.compile(r"[*+?][?+]?")


def expanded_size(pattern: str) -> int:
    """How many atoms `pattern` holds once its counted repeats are multiplied out, as the regex module
    compiles them: `(a{1000}){1000}` is a million (1.6 s and 275 MiB to compile; four levels of 100
    did not finish). An over-estimate: alternatives add up, an unbounded repeat counts its least."""
    stack: list[list[int]] = [[]]  # per open group: the sizes of its items so far
    position = 0
    while position < len(pattern):
        char = pattern[position]
        counted = _COUNTED.match(pattern, position) if char == "{" else None
        if counted and (counted[1] or counted[3]):
            low, high = int(counted[1] or 0), int(counted[3] or 0) if counted[2] else int(counted[1] or 0)
            if stack[-1]:
                stack[-1][-1] *= max(low, high, 1)
            position = counted.end()
            continue
        if char == "\\":
            escape = _ESCAPE_WITH_BRACES.match(pattern, position)
            position = escape.end() if escape else len(pattern)
            stack[-1].append(1)
        elif char == "[":
            klass = _CLASS.match(pattern, position)
            position = klass.end() if klass else len(pattern)
            stack[-1].append(1)
        elif char == "(":
            if pattern.startswith("(?#", position):
                end = pattern.find(")", position)
                position = len(pattern) if end < 0 else end + 1
                continue
            stack.append([])
            position += 1
        elif char == ")":
            inner = sum(stack.pop()) if len(stack) > 1 else 0
            stack[-1].append(max(inner, 1))
            position += 1
        elif _SIMPLE_QUANTIFIER.match(pattern, position) or char == "|":
            position += 1
        else:
            stack[-1].append(1)
            position += 1
    while len(stack) > 1:  # unbalanced: the compiler says so; count what is there
        inner = sum(stack.pop())
        stack[-1].append(inner)
    return sum(stack[0])


def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """A scenario's pattern, compiled; PatternError when it is not one, or would cost too much to compile."""
    size = expanded_size(pattern)
    if size > MAX_EXPANDED:
        raise PatternError(f"the regular expression's repeats multiply out to {size} atoms; at most {MAX_EXPANDED} (write a{{1000}} as a+ or .{{0,1000}}, not nested counts)")
    try:
        return regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError, MemoryError) as exc:
        raise PatternError(f"not a regular expression: {exc}") from None


def pattern_found(pattern: str, text: str) -> bool:
    """Whether a scenario's `pattern` occurs in the last MAX_MATCHED characters of `text`; PatternTimeout
    after MATCH_TIMEOUT seconds, so a pattern that backtracks without end fails its check instead of
    stalling the run."""
    try:
        return compile_pattern(pattern).search(text[-MAX_MATCHED:], timeout=MATCH_TIMEOUT) is not None
    except TimeoutError:
        raise PatternTimeout(
            f"the regular expression {pattern!r} gave up after {MATCH_TIMEOUT:g} s over {min(len(text), MAX_MATCHED)} characters "
            "(it backtracks too much: anchor it, or make it more specific than .*)"
        ) from None
