"""The decisions of the check runners, core and features', on what a node printed or the kernel
reported, with no guest: the ping check, the check context's helpers, the runner's order, and each
feature's judge (pmtu, perf, device operations, command checks, WireGuard handshakes, STP port
states, an unaddressed interface), the half of its CheckKind that decides from the evidence alone.
The SSH sessions here are fakes that answer with fixed output; the real ones are proven by
tests/root and tests/e2e. `make mutation` checks that these
tests notice a changed decision (docs/reliability.md, "Mutation testing").
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from vnetlab.backends import netns
from vnetlab.backends.ssh import CappedOutput, CommandResult
from vnetlab.checks import base, runner
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence, GuestNode, NamespaceNode
from vnetlab.checks.evidence import Collected
from vnetlab.checks.ping import PING, PING_INTERVAL, output_evidence, ping_argv, ping_target, run_ping
from vnetlab.compose import load_scenario, parse_scenario
from vnetlab.features import commands, containers, mtu, ops, perf, stp, wireguard
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import make_plan


def lesson(name: str, lab: str = "fc"):
    return make_plan(load_scenario(SCENARIOS_DIR / f"{name}.yaml"), lab)


@functools.cache
def cached_lesson(name: str):
    return lesson(name)


def ran(command: str, code: int, stdout: str, stderr: str = "") -> Evidence:
    """The evidence a collector keeps of one program run."""
    return Evidence(output_evidence(CommandResult(command, code, stdout, stderr)))


def ping_output(sent: int, received: int, rtt: str | None = "0.100/0.250/0.400", busybox: bool = True) -> str:
    head = "PING 10.1.1.3 (10.1.1.3): 56 data bytes\n" + "".join(f"64 bytes from 10.1.1.3: seq={i} ttl=64 time=0.2 ms\n" for i in range(received))
    summary = f"{sent} packets transmitted, {received} packets received, {0 if sent == 0 else 100 * (sent - received) // sent}% packet loss\n"
    if not busybox:
        summary = f"{sent} packets transmitted, {received} received, 0% packet loss, time 2003ms\n"
    return head + "\n--- 10.1.1.3 ping statistics ---\n" + summary + (f"round-trip min/avg/max = {rtt} ms\n" if rtt else "")


class FakeSSH:
    """A guest session that answers from a script: command → (exit, stdout, stderr); records every call."""

    def __init__(self, answers=None, default=(0, "", "")):
        self.answers = answers or {}
        self.default = default
        self.calls: list[tuple[str, float, bool]] = []

    def run(self, command: str, *, timeout: float = 30.0, stdin: bytes | None = None, check: bool = True) -> CommandResult:
        self.calls.append((command, timeout, check))
        for key, answer in self.answers.items():
            if key in command:
                code, out, err = answer(command) if callable(answer) else answer
                return CommandResult(command, code, out, err)
        return CommandResult(command, *self.default)


# -- the ping check ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two():
    return lesson("two-vm-ping")


def ping_spec(plan, **changes):
    return dataclasses.replace(plan.scenario.checks[0].ping, **changes)


def ping(plan, tmp_path, output, spec=None, exit_code=0, stderr=""):
    ssh = FakeSSH(default=(exit_code, output, stderr))
    result = run_ping(CheckContext(plan, {"vm1": ssh}, tmp_path), spec or ping_spec(plan))
    return result, ssh


def test_ping_argv_and_timeout(two, tmp_path):
    assert ping_argv(3, "10.1.1.3") == ["ping", "-c", "3", "-i", PING_INTERVAL, "-W", "2", "10.1.1.3"]
    _, ssh = ping(two, tmp_path, ping_output(3, 3))
    assert ssh.calls == [("ping -c 3 -i 0.01 -W 2 10.1.1.3", 17.5, False)]


def test_ping_passes_when_every_echo_is_answered(two, tmp_path):
    result, _ = ping(two, tmp_path, ping_output(3, 3))
    assert result.ok and result.kind == "ping" and result.name == "ping vm1 → vm2"
    assert result.detail == "expected 3/3 echo replies from 10.1.1.3, got 3/3"
    assert result.data == {"target": "10.1.1.3", "sent": 3, "received": 3, "rtt_min_ms": 0.1, "rtt_avg_ms": 0.25, "rtt_max_ms": 0.4, "loss_percent": 0.0}


@pytest.mark.parametrize("sent, received", [(3, 2), (3, 0), (2, 2), (4, 4)])
def test_ping_fails_unless_every_asked_echo_is_answered(two, tmp_path, sent, received):
    result, _ = ping(two, tmp_path, ping_output(sent, received))
    assert result.ok is (received == 3)
    assert result.detail == f"expected 3/3 echo replies from 10.1.1.3, got {received}/{sent}"
    assert result.data["loss_percent"] == round(100.0 * (3 - received) / 3, 1)


def test_ping_without_a_summary_fails_and_quotes_the_output(two, tmp_path):
    result, _ = ping(two, tmp_path, "ping: bad address '10.1.1.3'\n", exit_code=1, stderr="\x1b[2Jboom\n")
    assert not result.ok
    assert result.detail == "`ping -c 3 -i 0.01 -W 2 10.1.1.3` printed no summary (exit 1): ping: bad address '10.1.1.3' \\x1b[2Jboom"
    assert result.data == {"target": "10.1.1.3", "sent": 0, "received": 0}


def test_ping_that_must_fail(two, tmp_path):
    spec = ping_spec(two, expect="failure")
    quiet, _ = ping(two, tmp_path, ping_output(3, 0, rtt=None), spec)
    assert quiet.ok and quiet.name == "ping vm1 → vm2 (must fail)" and quiet.kind == "ping"
    assert quiet.detail == "expected no echo reply from 10.1.1.3, got 0/3: no reply on the wire (the requests left the source, nothing came back)"
    assert quiet.data == {"target": "10.1.1.3", "sent": 3, "received": 0, "failure": "no reply"}
    answered, _ = ping(two, tmp_path, ping_output(3, 1), spec)
    assert not answered.ok and answered.detail == "expected no echo reply from 10.1.1.3, got 1/3"


def test_ping_loss_max(two, tmp_path):
    spec = ping_spec(two, count=10, loss_max=20)
    for received, ok in [(10, True), (8, True), (7, False), (0, False)]:
        result, _ = ping(two, tmp_path, ping_output(10, received), spec)
        assert result.ok is ok, received
        lost = 100.0 * (10 - received) / 10
        assert result.detail == f"expected at most 20% of 10 echo requests to 10.1.1.3 lost, lost {lost:g}% ({received}/10 replies)"
    zero = ping_spec(two, count=10, loss_max=100)
    assert not ping(two, tmp_path, ping_output(10, 0), zero)[0].ok  # a loss bound still wants one reply
    assert ping(two, tmp_path, ping_output(10, 1), zero)[0].ok


def test_ping_round_trip_bounds(two, tmp_path):
    both = ping_spec(two, rtt_min_ms=0.2, rtt_max_ms=0.3)
    inside, _ = ping(two, tmp_path, ping_output(3, 3, "0.100/0.250/0.400"), both)
    assert inside.ok
    assert inside.detail == "expected 3/3 echo replies from 10.1.1.3, got 3/3; average round trip at least 0.2 ms and at most 0.3 ms: min/avg/max 0.1/0.25/0.4 ms"
    for rtt in ("0.100/0.199/0.400", "0.100/0.301/0.400"):
        assert not ping(two, tmp_path, ping_output(3, 3, rtt), both)[0].ok, rtt
    for rtt in ("0.1/0.2/0.4", "0.1/0.3/0.4"):
        assert ping(two, tmp_path, ping_output(3, 3, rtt), both)[0].ok, rtt  # the bounds are inclusive
    lower = ping_spec(two, rtt_min_ms=40)
    assert not ping(two, tmp_path, ping_output(3, 3, "1/2/3"), lower)[0].ok
    assert ping(two, tmp_path, ping_output(3, 3, "41/42/43"), lower)[0].ok
    assert ping(two, tmp_path, ping_output(3, 3, "1/2/3"), ping_spec(two, rtt_max_ms=40))[0].ok
    missing, _ = ping(two, tmp_path, ping_output(3, 3, rtt=None), both)
    assert not missing.ok and missing.detail.endswith("; average round trip at least 0.2 ms and at most 0.3 ms: no round-trip times")
    lost, _ = ping(two, tmp_path, ping_output(3, 2, "0.1/0.25/0.4"), both)
    assert not lost.ok  # within the bounds, but a reply short


def test_ping_targets(tmp_path):
    plan = lesson("wireguard-vpn")
    via = next(c.ping for c in plan.scenario.checks if c.ping is not None and c.ping.via)
    assert ping_target(plan, via) == "192.168.2.2"
    assert ping_target(plan, dataclasses.replace(via, via=None)) == "10.1.1.3"
    assert ping_target(plan, dataclasses.replace(via, via=None, to="10.9.9.9")) == "10.9.9.9"
    result = run_ping(CheckContext(plan, {"vm1": FakeSSH(default=(0, ping_output(3, 3), ""))}, tmp_path), via)
    assert result.name == "ping vm1 → vm2 via wg0" and result.data["target"] == "192.168.2.2"


# -- what checks share: expected echo pairs, endpoints, nodes ------------------------------------


def test_expected_echo_pairs():
    routed = lesson("static-routing")
    assert base.expected_echo_pairs(routed, "host1", "host2") == 3  # the ping names host2 by its address
    assert base.expected_echo_pairs(routed, "host2", "host1") == 3
    assert base.expected_echo_pairs(routed, "host1", "router") == 0
    wg = lesson("wireguard-vpn")
    assert base.expected_echo_pairs(wg, "vm1", "vm2") == 0
    assert base.expected_echo_pairs(wg, "vm1", "vm2", via="wg0") == 6
    assert base.expected_echo_pairs(wg, "vm2", "vm1", via="wg1") == 0
    ops_plan = lesson("bridge-device-ops")  # pings that must fail are not exchanges
    assert base.expected_echo_pairs(ops_plan, "vm1", "vm2") == 4


def test_node_ips_endpoints_and_capture_points():
    plan = lesson("vm-bridge-uplink")
    assert base.node_ips(plan, "vm1") == {"10.1.1.2"} and base.node_ips(plan, "lan1") == {"10.1.1.100"}
    assert base.node_ips(plan, "nobody") == set()
    lan1 = base.endpoint(plan, "lan1", "eth0")
    assert lan1 is plan.nodes[0]
    assert base.endpoint(plan, "vm1", "eth0") is plan.vm("vm1").nics[0]  # the uplink's bridge
    assert base.capture_segment(plan, "eth0") == "br0" and base.capture_segment(plan, "br0") == "br0"
    assert base.capture_iface(plan, "eth0") == "eth0" and base.capture_iface(plan, "br0") == plan.bridge("br0").capture_iface
    assert base.node_kind(plan, "lan1") == "host" and base.node_kind(plan, "vm1") == "VM"
    trunk = lesson("vlan-trunk")
    nic = trunk.vm("vm3").nics[0]
    assert base.link_nic(trunk, "vm3.eth0") is nic and base.link_nic(trunk, "br0") is None and base.link_nic(trunk, "vm3.eth7") is None
    assert base.capture_segment(trunk, "vm3.eth0") == nic.bridge and base.capture_iface(trunk, "vm3.eth0") == nic.tap
    assert base.endpoint(trunk, "vm1", "vm3.eth0") is trunk.vm("vm1").nic_on(nic.bridge)
    routed = lesson("mtu-pmtu")
    assert base.endpoint(routed, "router", "small") is routed.vm("router").nics[1]
    assert base.endpoint(routed, "jumbo1", "small") is routed.vm("jumbo1").nics[0]  # not on it: its first addressed NIC
    perf_plan = lesson("vm-vs-container-perf")
    assert base.node_kind(perf_plan, "c1") == "container"


def test_lab_nodes_and_results(two, tmp_path):
    ssh = FakeSSH(default=(0, "out", "err"))
    ctx = CheckContext(two, {"vm1": ssh}, tmp_path)
    node = ctx.node("vm1")
    assert isinstance(node, GuestNode) and node.name == "vm1" and node.ssh is ssh
    assert GuestNode.command_line(["echo", "a b", "$x"]) == "echo 'a b' '$x'"
    assert node.run(["echo", "a b"], 4.0) == CommandResult("echo 'a b'", 0, "out", "err") and ssh.calls == [("echo 'a b'", 4.0, False)]
    perf_plan = lesson("vm-vs-container-perf")
    lan1 = base.lab_node(perf_plan, {}, "lan1")
    assert isinstance(lan1, NamespaceNode) and (lan1.name, lan1.namespace) == ("lan1", "vnl-fc.lan1")
    result = CheckResult("n", "k", True, "d")
    assert result.to_json() == {"name": "n", "kind": "k", "ok": True, "detail": "d"}
    full = CheckResult("n", "k", False, "d", counts={"a": 0}, data={"x": 1})
    assert full.to_json() == {"name": "n", "kind": "k", "ok": False, "detail": "d", "counts": {"a": 0}, "data": {"x": 1}}


@pytest.fixture
def here(monkeypatch):
    """A namespace node's program runs in this process's namespace: the result shaping is what is tested."""
    monkeypatch.setattr(netns, "run_in_namespace", lambda ns, fn, *a, **kw: fn(*a, **kw))
    return NamespaceNode("c1", "vnl-fc.c1")


def test_a_namespace_node_runs_the_hosts_program(here):
    done = here.run(["sh", "-c", "echo out; echo err >&2; exit 3"], 10.0)
    assert done == CommandResult("sh -c 'echo out; echo err >&2; exit 3'", 3, "out\n", "err\n")
    assert here.run(["cat"], 10.0, stdin=b"fed\xff") == CommandResult("cat", 0, "fed\ufffd", "")
    assert here.run(["cat"], 10.0).stdout == ""  # no stdin: never waits for one


def test_a_namespace_node_reports_timeouts_and_missing_programs(here):
    slow = here.run(["sh", "-c", "echo started; exec sleep 10"], 0.5)
    assert slow.exit_code == 124 and slow.stdout == "started\n" and slow.stderr == "\n(timed out after 0.5 s)"
    missing = here.run(["/nonexistent/prog", "x"], 5.0)
    assert missing.command == "/nonexistent/prog x" and missing.exit_code == 127 and missing.stdout == ""
    assert missing.stderr.startswith("cannot run /nonexistent/prog in namespace vnl-fc.c1: [Errno 2]")


def test_text_of_process_output():
    out = CappedOutput()
    assert out.text() == ""
    out.add(b"a\xffb")
    assert out.text() == "a\ufffdb"


# -- the runner: neighbours forgotten, checks in order, captures judged last ----------------------


def test_only_the_nodes_of_an_arp_capture_forget_their_neighbours(two, tmp_path):
    sessions = {"vm1": FakeSSH(), "vm2": FakeSSH()}
    runner.stimulate(CheckContext(two, sessions, tmp_path), Collected(pcaps={}))
    assert [s.calls for s in sessions.values()] == [[("ip neigh flush all", 10.0, False)]] * 2
    wg = lesson("wireguard-vpn")  # its capture has no arp expectation
    quiet = {"vm1": FakeSSH(), "vm2": FakeSSH()}
    runner.stimulate(CheckContext(wg, quiet, tmp_path), Collected(pcaps={}))
    assert [s.calls for s in quiet.values()] == [[], []]


def test_ping_sources_whose_arp_is_not_judged_forget_only_their_unresolved_neighbours(two, tmp_path):
    """An earlier phase's unanswered lookup would swallow the ping's requests (see forget_unresolved);
    where ARP is judged, the stimulus forgets every entry anyway, so nothing more is sent there."""
    wg = lesson("wireguard-vpn")  # pings from vm1 and vm2, no arp expectation
    sessions = {"vm1": FakeSSH(), "vm2": FakeSSH()}
    runner.forget_unresolved(CheckContext(wg, sessions, tmp_path))
    assert [s.calls for s in sessions.values()] == [[("ip neigh flush all nud incomplete nud failed", 10.0, False)]] * 2
    judged = {"vm1": FakeSSH(), "vm2": FakeSSH()}
    runner.forget_unresolved(CheckContext(two, judged, tmp_path))
    assert [s.calls for s in judged.values()] == [[], []]
    broken = {"vm1": FakeSSH(), "vm2": None}  # no session to vm2: its ping says so, not this step
    runner.forget_unresolved(CheckContext(wg, broken, tmp_path))
    assert broken["vm1"].calls == [("ip neigh flush all nud incomplete nud failed", 10.0, False)]


class FakeCapture:
    """Records when it is started and stopped; stop() gives the frames the test chose."""

    events: list[str] = []
    frames: list = []

    def __init__(self, ns, iface, pcap_path):
        self.ns, self.iface, self.pcap_path = ns, iface, pcap_path

    def start(self):
        self.events.append(f"start {self.iface} in {self.ns}")

    def stop(self):
        self.events.append(f"stop {self.iface}")
        return self.frames


def test_run_checks_captures_around_every_check_and_judges_after(two, tmp_path, monkeypatch):
    a, b = two.vm("vm1").nics[0], two.vm("vm2").nics[0]
    frames = [Ether(src=a.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=a.mac, psrc=a.ip, pdst=b.ip),
              Ether(src=b.mac, dst=a.mac) / ARP(op=2, hwsrc=b.mac, psrc=b.ip, hwdst=a.mac, pdst=a.ip)]
    for s in range(6):
        frames += [Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip) / ICMP(type=8, id=1, seq=s),
                   Ether(src=b.mac, dst=a.mac) / IP(src=b.ip, dst=a.ip) / ICMP(type=0, id=1, seq=s)]
    FakeCapture.events, FakeCapture.frames = [], [Ether(bytes(f)) for f in frames]
    monkeypatch.setattr(runner, "Capture", FakeCapture)

    def answer(name):
        def said(command):
            FakeCapture.events.append(f"{name}: {command}")
            return (0, ping_output(3, 3), "")
        return said

    sessions = {"vm1": FakeSSH({"": answer("vm1")}), "vm2": FakeSSH({"": answer("vm2")})}
    results, pcaps = runner.run_checks(two, sessions, tmp_path)
    iface = two.bridge("br0").capture_iface
    assert FakeCapture.events == [
        f"start {iface} in {two.namespace}", "vm1: ip neigh flush all", "vm2: ip neigh flush all",  # forgotten while the capture runs
        "vm1: ping -c 3 -i 0.01 -W 2 10.1.1.3", "vm2: ping -c 3 -i 0.01 -W 2 10.1.1.2", f"stop {iface}",
    ]
    assert [(r.name, r.ok) for r in results] == [("ping vm1 → vm2", True), ("ping vm2 → vm1", True), ("capture on br0: arp, icmp-echo between vm1 and vm2", True)]
    assert pcaps == {"br0": tmp_path / "br0.pcap"} and results[2].data == {"pcap": str(tmp_path / "br0.pcap")}
    FakeCapture.frames = []
    again, _ = runner.run_checks(two, sessions, tmp_path)
    assert [r.ok for r in again] == [True, True, False]


def test_run_one_keeps_the_scenarios_name(two, tmp_path):
    check = two.scenario.checks[0]
    named = dataclasses.replace(check, ping=dataclasses.replace(check.ping, name="vm1 reaches vm2"))
    fine = CheckKind(lambda ctx, spec: Evidence(), lambda plan, spec, evidence: CheckResult("x", "ping", True, "d"))
    assert runner.run_one({"ping": fine}, CheckContext(two, {}, tmp_path), named).name == "vm1 reaches vm2"
    assert runner.run_one({"ping": fine}, CheckContext(two, {}, tmp_path), check).name == "x"
    crashed = runner.run_one({"ping": CheckKind(lambda ctx, spec: 1 / 0, fine.judge)}, CheckContext(two, {}, tmp_path), check)
    assert (crashed.name, crashed.kind, crashed.ok, crashed.detail) == ("ping check", "ping", False, "the check could not be completed: ZeroDivisionError: division by zero")
    table = runner.check_kinds(two)
    assert table["ping"] is PING and table["command"] is commands.COMMAND and table["pmtu"] is mtu.PMTU


# -- pmtu (mtu-pmtu) -------------------------------------------------------------------------------


def pmtu_check(**kw):
    return mtu.PmtuCheck(**{"source": "jumbo1", "to": "router", "size": 8972, **kw})


def pmtu(check, stdout, stderr="", code=0):
    """The pmtu judge of mtu-pmtu (jumbo1 reaches the router at 10.9.0.1) on what ping printed."""
    plan = cached_lesson("mtu-pmtu")
    argv = mtu.pmtu_argv(check.size, "10.9.0.1")
    assert mtu.pmtu_target(plan, check) == "10.9.0.1"
    return mtu.judge_pmtu(plan, check, ran(shlex.join(argv), code, stdout, stderr))


def test_pmtu_success_wants_every_reply():
    check = pmtu_check()
    ok = pmtu(check, ping_output(3, 3, busybox=False))
    assert ok.ok and ok.kind == "pmtu" and ok.name == "pmtu jumbo1 → router: 9000-byte packets, don't fragment"
    assert ok.detail == "expected 3/3 echo replies from 10.9.0.1 to 9000-byte packets (8972 bytes of payload) with don't-fragment, got 3/3"
    assert ok.data == {"target": "10.9.0.1", "size": 8972, "packet": 9000, "sent": 3, "received": 3}
    for received in (2, 0):
        assert not pmtu(check, ping_output(3, received, busybox=False)).ok


def test_pmtu_failure_wants_no_reply_and_says_who_refused():
    check = pmtu_check(size=8973, expect="failure")
    router = "From 10.9.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)\n" + ping_output(3, 0, rtt=None, busybox=False)
    refused = pmtu(check, router, stderr="ping: local error: message too long, mtu=1500\nping: local error: message too long, mtu=9000\n", code=1)
    assert refused.ok and refused.name.endswith("(must fail)")
    assert refused.detail == (
        "expected no echo reply from 10.9.0.1 to 9001-byte packets (8973 bytes of payload) with don't-fragment, "
        "got 0/3; a router answered fragmentation needed (mtu 1400), then the sender refused to send it (mtu 1500)"
    )
    assert refused.data["router_mtu"] == 1400 and refused.data["sender_mtu"] == 1500
    assert not pmtu(check, ping_output(3, 1, busybox=False)).ok
    silent = pmtu(check, ping_output(3, 0, rtt=None, busybox=False))
    assert silent.ok and silent.detail.endswith("got 0/3")


def test_pmtu_without_a_summary():
    result = pmtu(pmtu_check(), "", stderr="ping: connect: Network is unreachable\n", code=2)
    assert not result.ok
    assert result.detail == "`/usr/bin/ping -M do -c 3 -W 2 -s 8972 10.9.0.1` printed no summary (exit 2): ping: connect: Network is unreachable"
    assert not pmtu(pmtu_check(expect="failure"), "", code=2).ok  # no summary is never a pass


def test_refusals_are_read_line_by_line_and_bounded():
    assert mtu.refusals("Frag needed and DF set (mtu = 1400)\nmessage too long, mtu=9000") == {"router": 1400, "sender": 9000}
    assert mtu.refusals("message too long, mtu=1500\nmessage too long, mtu=9000") == {"sender": 1500}  # the first one
    assert mtu.refusals("Frag needed and DF set (mtu = 99999)") == {"router": 99999}
    assert mtu.refusals("Frag needed and DF set (mtu = 123456)") == {}  # more than 5 digits is no MTU
    assert mtu.refusals("Frag needed and DF set\n(mtu = 1400)") == {}
    assert mtu.refusals("message too long" + "x" * 25 + "mtu=1400") == {}
    assert mtu.refusals(None) == {}  # type: ignore[arg-type]
    assert mtu.refusals("message too long, mtu=1400\n" + "noise\n" * mtu.MAX_LINES) == {}  # only the last MAX_LINES lines
    assert mtu.refusals("message too long, mtu=1400\n" + "n" * mtu.MAX_TEXT) == {}  # only the last MAX_TEXT characters
    assert mtu.refusals(" " * mtu.MAX_LINE + "message too long, mtu=1400") == {}  # MAX_LINE characters of a line
    assert mtu._said({}) == "" and mtu._said({"sender": 1}) == "; the sender refused to send it (mtu 1)"


# -- perf (vm-vs-container-perf) -------------------------------------------------------------------


def figures(**kw):
    values = {"mbit_s": 940.5, "bytes": 235_000_000, "seconds": 2.0, "rtt_min_ms": 0.1, "rtt_avg_ms": 0.2, "rtt_max_ms": 0.3, "pings_sent": 5, "pings_received": 5}
    return perf.PerfFigures(**{**values, **kw})


def measured(f: perf.PerfFigures, target: str = "10.1.1.100", seconds: int = 2) -> Evidence:
    """The evidence a perf collector keeps that gives figures `f`: iperf3's JSON and ping's output
    (a server that could not be started: `f.error`; no round-trip line when `f.rtt_avg_ms` is None)."""
    received = {"bits_per_second": f.mbit_s * 1e6, "bytes": f.bytes, "seconds": f.seconds}
    iperf = CommandResult(shlex.join(perf.client_argv(target, seconds)), 0, json.dumps({"end": {"sum_received": received}}), "")
    rtt = f"{f.rtt_min_ms}/{f.rtt_avg_ms}/{f.rtt_max_ms}" if f.rtt_avg_ms is not None else None
    said = CommandResult(shlex.join(ping_argv(f.pings_sent, target)), 0, ping_output(f.pings_sent, f.pings_received, rtt), "")
    if f.error:
        return Evidence({"server_error": f.error, "iperf": None, "ping": output_evidence(said)})
    return Evidence({"server_error": None, "iperf": output_evidence(iperf), "ping": output_evidence(said)})


def on_kvm(plan):
    """The plan as it would be with KVM: a guest's figures are then not the emulator's."""
    return dataclasses.replace(plan, domain_type="kvm")


def test_perf_figures_ok_needs_bytes_replies_and_no_error():
    assert figures().ok
    assert not figures(bytes=0).ok and not figures(pings_received=0).ok and not figures(error="refused").ok
    assert figures(bytes=1, pings_received=1).ok


def test_perf_judge():
    plan = lesson("vm-vs-container-perf")
    check = perf.PerfCheck(source="vm1", to="lan1")
    assert perf.figures(measured(figures()).data, "vm1", "10.1.1.100", 2) == figures()
    fine = perf.judge_perf(plan, check, measured(figures()))
    assert fine.ok and fine.name == "perf vm1 → lan1" and fine.kind == "perf"
    assert fine.detail == (
        "expected iperf3 to move data and ≥1 echo reply; got 940.5 Mbit/s (235000000 bytes in 2.0 s), RTT 0.1/0.2/0.3 ms min/avg/max, 5/5 replies"
        " — a guest under TCG: this figure measures the CPU emulator, not the path"
    )
    assert fine.data == {"path": "vm1 → lan1", "ends": "VM → host", "via": "bridge br0", "target": "10.1.1.100", "emulated": True, **dataclasses.asdict(figures())}
    kvm = on_kvm(plan)
    failed = perf.judge_perf(kvm, check, measured(figures(bytes=0, mbit_s=0.0, seconds=0.0, rtt_avg_ms=None, error="`iperf3 -c` on vm1: refused")))
    assert not failed.ok and failed.data["emulated"] is False
    assert failed.detail == "expected iperf3 to move data and ≥1 echo reply; got 0.0 Mbit/s (0 bytes in 0.0 s), no RTT, 5/5 replies; `iperf3 -c` on vm1: refused"
    capped = perf.PerfCheck(source="vm1", to="lan1", mbit_max=100)
    above = perf.judge_perf(kvm, capped, measured(figures(mbit_s=100.1)))
    assert not above.ok and above.detail.endswith("; at most 100 Mbit/s expected: above it")
    within = perf.judge_perf(kvm, capped, measured(figures(mbit_s=100.0)))
    assert within.ok and within.detail.endswith("; at most 100 Mbit/s expected: within it")
    assert not perf.judge_perf(kvm, capped, measured(figures(mbit_s=1.0, bytes=0))).ok
    nat = perf.judge_perf(kvm, perf.PerfCheck(source="c1", to="inet1"), measured(figures(), target="203.0.113.2"))
    assert nat.data["via"] == "NAT out of wan0 (ip_forward)" and nat.data["ends"] == "container → host"


# -- device operations (bridge-device-ops) ---------------------------------------------------------


def link(name, kind="tap", state="up", master=None, addresses=()):
    return {"name": name, "kind": kind, "state": state, "master": master, "addresses": list(addresses)}


@pytest.fixture(scope="module")
def devops():
    plan = lesson("bridge-device-ops")
    t1, t2 = plan.vm("vm1").nics[0].tap, plan.vm("vm2").nics[0].tap
    return plan, t1, t2


def op(action, **kw):
    return ops.OpCheck(action=action, bridge="br0", **kw)


def refused(error, links):
    """What an op collector keeps: the kernel's refusal (None: it did it) and the links read back."""
    return Evidence({"refused": error, "links": links})


def judged(plan, check, links, error=None):
    result = ops.judge_op(plan, check, refused(error, links))
    return result.ok, result.detail


def test_op_list_and_attachments(devops):
    plan, t1, t2 = devops
    both = [link("lo", kind=None), link("br0", kind="bridge"), link(t1, master="br0"), link(t2, master="br0")]
    ok, detail = judged(plan, op("list"), both)
    assert ok and detail.startswith(f"expected ports of br0: {t1}, {t2}; saw ports of br0: {t1}, {t2} — links in vnl-fc: lo loopback up; br0 bridge up; {t1} (vm1 eth0) tap up master br0;")
    assert not judged(plan, op("list"), both[:3])[0]
    assert judged(plan, op("list"), both[:2])[1].startswith(f"expected ports of br0: {t1}, {t2}; saw ports of br0: none")
    detached = [link("br0", kind="bridge"), link(t1, master="br0"), link(t2)]
    assert judged(plan, op("detach", vm="vm2"), detached) == (True, f"expected {t2} master none; saw master none, up")
    assert not judged(plan, op("detach", vm="vm2"), both)[0]
    assert not judged(plan, op("detach", vm="vm2"), both[:3])[0]  # gone is not detached
    assert judged(plan, op("attach", vm="vm2"), both) == (True, f"expected {t2} master br0; saw master br0, up")
    assert not judged(plan, op("attach", vm="vm2"), detached)[0]
    assert judged(plan, op("delete-tap", vm="vm2"), both[:3]) == (True, f"expected no link {t2}; saw it is gone")
    assert judged(plan, op("delete-tap", vm="vm2"), both) == (False, f"expected no link {t2}; saw it still exists (master br0)")


def test_op_addresses_states_and_bridge_removal(devops):
    plan, t1, _ = devops
    bare, addressed = [link("br0", kind="bridge")], [link("br0", kind="bridge", addresses=["10.1.1.1/24"])]
    add, delete = op("add-address", address="10.1.1.1/24"), op("delete-address", address="10.1.1.1/24")
    assert judged(plan, add, addressed) == (True, "expected 10.1.1.1/24 on br0; saw br0 has 10.1.1.1/24")
    assert judged(plan, add, bare) == (False, "expected 10.1.1.1/24 on br0; saw br0 has no address")
    assert judged(plan, add, []) == (False, "expected 10.1.1.1/24 on br0; saw no br0")
    assert judged(plan, delete, bare) == (True, "expected 10.1.1.1/24 not on br0; saw br0 has no address")
    assert not judged(plan, delete, addressed)[0]
    assert judged(plan, op("link-down"), [link("br0", kind="bridge", state="down")]) == (True, "expected br0 down; saw down")
    assert judged(plan, op("link-down"), bare) == (False, "expected br0 down; saw up")
    assert judged(plan, op("link-up"), []) == (False, "expected br0 up; saw gone")
    assert judged(plan, op("delete-bridge"), []) == (True, "expected br0 gone; saw it is gone")
    assert judged(plan, op("delete-bridge"), bare) == (False, "expected br0 gone; saw it still exists (up)")


def test_op_that_must_be_refused(devops):
    plan, *_ = devops
    refuse = op("delete-bridge", expect="error")
    bare = [link("br0", kind="bridge")]
    ok = ops.judge_op(plan, refuse, refused("delete bridge 'br0' (SIOCBRDELBR): [Errno 16] Device or resource busy", bare))
    assert ok.ok and ok.name == "op: delete bridge br0 (brctl delbr's ioctl) (must be refused)"
    assert ok.detail == "expected the kernel to refuse and br0 still exists; it refused: delete bridge 'br0' (SIOCBRDELBR): [Errno 16] Device or resource busy; br0 still exists, up"
    assert ok.data == {"links": bare, "error": "delete bridge 'br0' (SIOCBRDELBR): [Errno 16] Device or resource busy"}
    done = ops.judge_op(plan, refuse, refused(None, []))
    assert not done.ok and done.detail == "expected the kernel to refuse and br0 still exists; it did not refuse; br0 is gone"
    assert not ops.judge_op(plan, refuse, refused("refused", [])).ok  # refused, yet gone
    failed = ops.judge_op(plan, op("link-down"), refused("EPERM", [link("br0", kind="bridge", state="down")]))
    assert not failed.ok and failed.detail == "expected br0 down; the kernel refused: EPERM; down" and failed.data["error"] == "EPERM"
    assert "error" not in ops.judge_op(plan, op("link-down"), refused(None, [])).data


# -- command checks ---------------------------------------------------------------------------------


def expect(**kw):
    return commands.Expect(**kw)


def said(code=0, out="", err=""):
    return CommandResult("c", code, out, err)


def matches(e, result):
    """judge_output's verdict, for patterns that search to their end (no problem to report)."""
    ok, problems = commands.judge_output(e, result)
    assert problems == []
    return ok


def test_judge_output_exit_and_patterns():
    assert matches(expect(), said(0)) and not matches(expect(), said(1))
    assert matches(expect(exit=2), said(2)) and not matches(expect(exit=2), said(0))
    assert matches(expect(exit="nonzero"), said(1)) and not matches(expect(exit="nonzero"), said(0))
    assert matches(expect(stdout="^ok$"), said(0, "x\nok\n")) is False  # re.search, no MULTILINE
    assert matches(expect(stdout="ok"), said(0, "it is ok")) and not matches(expect(stdout="ok"), said(0, "", "ok"))
    assert matches(expect(stderr="warn"), said(0, "", "a warning")) and not matches(expect(stderr="warn"), said(0, "warn"))
    assert not matches(expect(stdout="ok"), said(1, "ok"))
    assert not matches(expect(stdout="ok", stderr="e"), said(0, "ok", ""))
    tail = "ok" + "x" * commands.MAX_MATCHED
    assert not matches(expect(stdout="ok"), said(0, tail)) and matches(expect(stdout="ok"), said(0, tail[1:] + "ok"[:0] + "ok"))
    assert not matches(expect(stderr="ok"), said(0, "", tail))
    assert commands._expected(expect()) == "exit 0"
    assert commands._expected(expect(exit="nonzero", stdout="a", stderr="b")) == "a nonzero exit and stdout matching 'a' and stderr matching 'b'"


class Clock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_command_check_retries_until_it_passes_or_the_time_is_up(two, tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(commands, "time", clock)
    answers = iter([(1, "", "not yet"), (1, "", "not yet"), (0, "ready\n", "")])
    ssh = FakeSSH({"": lambda command: next(answers)})
    check = commands.CommandCheck(node="vm1", run="cat /tmp/x", expect=expect(stdout="ready"), retry=commands.Retry(for_=5, every=2), timeout=7)
    result = commands.run_command_check(CheckContext(two, {"vm1": ssh}, tmp_path), check)
    assert result.ok and result.kind == "command" and result.name == "command on vm1: cat /tmp/x"
    assert ssh.calls == [("sh -c 'cat /tmp/x'", 7.0, False)] * 3 and clock.slept == [2, 2]
    assert result.detail == "ran `cat /tmp/x` on vm1: expected exit 0 and stdout matching 'ready'; got exit 0 after 3 attempt(s), stdout: 'ready'"
    assert result.data == {"command": "cat /tmp/x", "exit": 0, "attempts": 3, "stdout_tail": "ready", "stderr_tail": ""}
    clock2 = Clock()
    monkeypatch.setattr(commands, "time", clock2)
    never = FakeSSH(default=(1, "", "no\x1b[2J"))
    failed = commands.run_command_check(CheckContext(two, {"vm1": never}, tmp_path), dataclasses.replace(check, name="vm1 is ready"))
    assert not failed.ok and failed.name == "vm1 is ready" and len(never.calls) == 3 and clock2.slept == [2, 2]  # at 0, 2, 4 s; 6 s is past 5
    assert failed.detail == "ran `cat /tmp/x` on vm1: expected exit 0 and stdout matching 'ready'; got exit 1 after 3 attempt(s), no stdout, stderr: 'no\\x1b[2J'"
    once = FakeSSH(default=(1, "out", ""))
    single = commands.run_command_check(CheckContext(two, {"vm1": once}, tmp_path), dataclasses.replace(check, retry=None))
    assert not single.ok and len(once.calls) == 1 and single.detail.endswith("got exit 1, stdout: 'out'")


def test_command_check_renders_template_variables(two, tmp_path):
    ssh = FakeSSH(default=(0, "", ""))
    check = commands.CommandCheck(node="vm1", run="ping -c1 {{ vm2.ip }}")
    result = commands.run_command_check(CheckContext(two, {"vm1": ssh}, tmp_path), check)
    assert result.ok and ssh.calls[0][0] == "sh -c 'ping -c1 10.1.1.3'" and result.data["command"] == "ping -c1 10.1.1.3"


# -- WireGuard handshakes ----------------------------------------------------------------------------

KEY1, KEY2 = "A" * 42 + "E=", "B" * 42 + "I="


def handshake_check():
    return wireguard.WireGuardCheck(tunnel="wg0", between=["vm1", "vm2"])


def wg_said(now, key, stamp, code=0, err=""):
    return CommandResult("c", code, f"{now}\n{key}\t{stamp}\n" if key else f"{now}\n", err)


def handshakes(keys, said):
    """The WireGuard judge of wireguard-vpn on what each member's probe printed (the collector's evidence)."""
    evidence = Evidence({"keys": keys, **{vm: output_evidence(result) for vm, result in said.items()}}, guests=tuple(said))
    return wireguard.judge_check(cached_lesson("wireguard-vpn"), handshake_check(), evidence)


def test_handshakes_on_both_sides():
    keys = {"vm1": KEY1, "vm2": KEY2}
    both = handshakes(keys, {"vm1": wg_said(1000, KEY2, 990), "vm2": wg_said(1001, KEY1, 995)})
    assert both.ok and both.kind == "wireguard" and both.name == "wireguard wg0: handshake vm1 ↔ vm2"
    assert both.detail == "expected a completed handshake on wg0 between vm1 and vm2 on both sides; saw vm1: handshake with vm2 10 s ago; vm2: handshake with vm1 6 s ago"
    assert both.data == {"vm1": {"peer": "vm2", "latest_handshake": 990, "guest_time": 1000}, "vm2": {"peer": "vm1", "latest_handshake": 995, "guest_time": 1001}}
    one = handshakes(keys, {"vm1": wg_said(1000, KEY2, 990), "vm2": wg_said(1001, KEY1, 0)})
    assert not one.ok and one.detail.endswith("; vm2: no handshake with vm1's key yet")
    wrong_key = handshakes(keys, {"vm1": wg_said(1000, KEY1, 990), "vm2": wg_said(1001, KEY1, 995)})
    assert not wrong_key.ok and wrong_key.data["vm1"]["latest_handshake"] == 0
    broken = handshakes(keys, {"vm1": wg_said(1000, KEY2, 990, code=1, err="Unable to access interface"), "vm2": wg_said(1001, KEY1, 995)})
    assert broken.ok is False and "vm1: `date +%s; wg show wg0 latest-handshakes` exited 1: Unable to access interface" in broken.detail
    no_clock = handshakes(keys, {"vm1": wg_said("x", KEY2, 990), "vm2": wg_said(1001, KEY1, 995)})
    assert no_clock.ok and "vm1: handshake with vm2 at 990" in no_clock.detail


def test_capture_tunnel_is_the_tunnel_on_the_bridge_joining_both():
    plan = lesson("wireguard-vpn")
    cap = next(c.capture for c in plan.scenario.checks if c.capture is not None)
    assert wireguard.capture_tunnel(plan.scenario, cap).name == "wg0"
    assert wireguard.capture_tunnel(plan.scenario, dataclasses.replace(cap, bridge="br9")) is None
    assert wireguard.capture_tunnel(plan.scenario, dataclasses.replace(cap, between=["vm1", "vm9"])) is None


# -- STP port states (stp-loop) and an unaddressed interface ----------------------------------------


def port_states(states):
    """What the STP collector keeps: every bridge port of the lab namespace with its kernel state."""
    return Evidence({"ports": [list(p) for p in states]})


def test_stp_wants_exactly_the_blocking_ports_and_every_other_forwarding():
    plan = lesson("stp-loop")
    tap1 = plan.vm("vm1").nics[0].tap
    fw, bl = stp.FORWARDING, stp.BLOCKING
    states = [("br1", tap1, fw), ("br1", "vnlbl0a", fw), ("br1", "vnlbl2b", bl), ("br2", "vnlbl0b", fw), ("other", "x", bl)]
    ok = stp.judge_stp(plan, stp.StpCheck(blocking=1), port_states(states))
    assert ok.ok and ok.name == "stp: 1 blocking port(s)" and ok.kind == "stp"
    assert ok.detail == "expected 1 blocking port(s) and every other of the 4 bridge ports forwarding; saw 1 blocking: br1 port vnlbl2b (link br1↔br3)"
    assert ok.data == {"blocking": ["br1/vnlbl2b"], "ports": {f"br1/{tap1}": "forwarding", "br1/vnlbl0a": "forwarding", "br1/vnlbl2b": "blocking", "br2/vnlbl0b": "forwarding"}}
    assert not stp.judge_stp(plan, stp.StpCheck(blocking=0), port_states(states)).ok
    assert not stp.judge_stp(plan, stp.StpCheck(blocking=2), port_states(states)).ok
    learning = stp.judge_stp(plan, stp.StpCheck(blocking=1), port_states(states + [("br2", "vnlbl1a", stp.LEARNING)]))
    assert not learning.ok and learning.detail.endswith("; not forwarding: br2 port vnlbl1a (link br2↔br3) learning")
    none = stp.judge_stp(plan, stp.StpCheck(blocking=0), port_states([("br1", tap1, fw)]))
    assert none.ok and none.detail.endswith("saw 0 blocking") and f"br1 port {tap1} (tap of vm1)" not in none.detail


@pytest.fixture(scope="module")
def lab_x():
    """A lab called x: its namespace is vnl-x."""
    return lesson("vm-bridge-uplink", lab="x")


def addresses(found):
    """What the unaddressed collector keeps: the interface's addresses (None: no such interface)."""
    return Evidence({"addresses": found})


def test_unaddressed_interface(lab_x):
    check = containers.UnaddressedCheck(interface="br0")
    clean = containers.judge_unaddressed(lab_x, check, addresses(["fe80::1/64"]))
    assert clean.ok and clean.name == "no address on br0 in vnl-x" and clean.kind == "unaddressed"
    assert clean.detail == "expected no IPv4 address on br0 (the host stays out of the bridged path), found none" and clean.data == {"addresses": ["fe80::1/64"]}
    addressed = containers.judge_unaddressed(lab_x, check, addresses(["10.1.1.1/24", "fe80::1/64"]))
    assert not addressed.ok and addressed.detail.endswith("found 10.1.1.1/24")
    missing = containers.judge_unaddressed(lab_x, check, addresses(None))
    assert not missing.ok and missing.detail == "expected interface br0 in vnl-x; it does not exist"
    assert containers.judge_unaddressed(lab_x, check, addresses([])).ok


# -- the words and kinds of every path, and exact bounds ---------------------------------------------


def test_every_path_says_its_kind_and_name(devops, lab_x):
    missing = containers.judge_unaddressed(lab_x, containers.UnaddressedCheck(interface="br0"), addresses(None))
    assert (missing.name, missing.kind, missing.ok) == ("no address on br0 in vnl-x", "unaddressed", False)
    two = containers.judge_unaddressed(lab_x, containers.UnaddressedCheck(interface="br0"), addresses(["10.1.1.1/24", "10.1.2.1/24"]))
    assert two.detail.endswith("found 10.1.1.1/24, 10.1.2.1/24")
    nothing = pmtu(pmtu_check(), "", code=2)
    assert (nothing.name, nothing.kind, nothing.ok) == ("pmtu jumbo1 → router: 9000-byte packets, don't fragment", "pmtu", False)
    assert nothing.data == {"target": "10.9.0.1", "size": 8972, "packet": 9000, "sent": 0, "received": 0}
    plan, t1, t2 = devops
    listed = ops.judge_op(plan, op("list"), refused(None, []))
    assert (listed.name, listed.kind) == ("op: list links, ports of br0", "op")
    assert judged(plan, op("detach", vm="vm2"), []) == (False, f"expected {t2} master none; saw gone")
    both = [link("br0", kind="bridge", addresses=["10.1.1.1/24", "10.1.2.1/24"])]
    assert judged(plan, op("add-address", address="10.1.1.1/24"), both)[1] == "expected 10.1.1.1/24 on br0; saw br0 has 10.1.1.1/24, 10.1.2.1/24"


def test_stp_names_every_blocking_and_moving_port():
    plan = lesson("stp-loop")
    states = [("br1", "vnlbl2b", stp.BLOCKING), ("br2", "vnlbl0b", stp.BLOCKING), ("br2", "vnlbl1a", stp.LEARNING), ("br3", "vnlbl1b", stp.LISTENING)]
    result = stp.judge_stp(plan, stp.StpCheck(blocking=2), port_states(states))
    assert not result.ok
    assert result.detail == (
        "expected 2 blocking port(s) and every other of the 4 bridge ports forwarding; saw 2 blocking: br1 port vnlbl2b (link br1↔br3), br2 port vnlbl0b (link br2↔br1); "
        "not forwarding: br2 port vnlbl1a (link br2↔br3) learning, br3 port vnlbl1b (link br3↔br2) listening"
    )


def test_perf_detail_keeps_its_measurement_when_capped():
    plan = lesson("vm-vs-container-perf")
    capped = perf.judge_perf(on_kvm(plan), perf.PerfCheck(source="vm1", to="lan1", mbit_max=1000), measured(figures()))
    assert capped.detail == (
        "expected iperf3 to move data and ≥1 echo reply; got 940.5 Mbit/s (235000000 bytes in 2.0 s), RTT 0.1/0.2/0.3 ms min/avg/max, 5/5 replies"
        "; at most 1000 Mbit/s expected: within it"
    )


def test_quoted_output_is_cut_to_its_stated_length(two, tmp_path, monkeypatch):
    monkeypatch.setattr(commands, "time", Clock())
    long_out, long_err = "o" * 2500 + "O", "e" * 2500 + "E"
    ssh = FakeSSH(default=(1, long_out, long_err))
    result = commands.run_command_check(CheckContext(two, {"vm1": ssh}, tmp_path), commands.CommandCheck(node="vm1", run="x"))
    assert f", stdout: '{long_out[-200:]}', stderr: '{long_err[-200:]}'" in result.detail
    assert result.data["stdout_tail"] == long_out[-2000:] and result.data["stderr_tail"] == long_err[-2000:]
    keys = {"vm1": KEY1, "vm2": KEY2}
    broken = handshakes(keys, {"vm1": wg_said(1, KEY2, 0, code=1, err="w" * 300 + "W"), "vm2": wg_said(1, KEY1, 0)})
    assert broken.ok is False and f"exited 1: {('w' * 300 + 'W')[-200:]};" in broken.detail
    never = handshakes(keys, {"vm1": wg_said(1, KEY2, 0), "vm2": wg_said(1, KEY1, 5)})
    assert never.ok is False


def test_a_retry_runs_its_last_attempt_at_the_deadline(two, tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(commands, "time", clock)
    ssh = FakeSSH(default=(1, "", ""))
    check = commands.CommandCheck(node="vm1", run="x", retry=commands.Retry(for_=4, every=2))
    result = commands.run_command_check(CheckContext(two, {"vm1": ssh}, tmp_path), check)
    assert result.data["attempts"] == 3 and clock.slept == [2, 2]  # at 0, 2 and 4 s: the last one at the deadline


def iperf_ran(stdout: str, code: int = 0, stderr: str = "", ping: str | None = None) -> dict:
    """A perf collector's raw evidence: the client's run as recorded, and 5 pings all answered."""
    said = CommandResult("ping", 0, ping if ping is not None else ping_output(5, 5), "")
    return {"server_error": None, "iperf": output_evidence(CommandResult("iperf3", code, stdout, stderr)), "ping": output_evidence(said)}


CLIENT = "`iperf3 -c 10.1.1.100 -t 2 -J` on vm1"


@pytest.mark.parametrize("stdout,code,stderr,error", [
    ("{}", 0, "", f"{CLIENT}: exit 0: an empty JSON object; {{}}"),
    ("", 1, "iperf3: error - unable to connect to server: Connection refused\n", f"{CLIENT}: exit 1: no output; iperf3: error - unable to connect to server: Connection refused"),
    ("[1]", 0, "", f"{CLIENT}: exit 0: not a JSON object (a list); [1]"),
    ('{"error": "unable to send control message: Broken pipe"}', 1, "", f"{CLIENT}: unable to send control message: Broken pipe"),
    ("x" * 300, 2, "y", f"{CLIENT}: exit 2: not JSON: Expecting value: line 1 column 1 (char 0); {('x' * 300 + 'y')[-200:]}"),
])
def test_perf_figures_say_why_the_client_measured_nothing(stdout, code, stderr, error):
    got = perf.figures(iperf_ran(stdout, code, stderr), "vm1", "10.1.1.100", 2)
    assert got.error == error and (got.mbit_s, got.bytes, got.seconds) == (0.0, 0, 0.0) and not got.ok
    assert (got.pings_sent, got.pings_received, got.rtt_avg_ms) == (5, 5, 0.25)  # the pings are measured all the same


def test_perf_figures_are_rounded_from_iperf3s_json_and_pings_summary():
    out = json.dumps({"end": {"sum_received": {"bits_per_second": 123_456_789_000.0, "bytes": 30_000_000, "seconds": 2.004999}}})
    got = perf.figures(iperf_ran(out, ping=ping_output(5, 3, "0.100/0.250/0.400")), "vm1", "10.1.1.100", 2)
    assert got == perf.PerfFigures(123456.8, 30_000_000, 2.0, 0.1, 0.25, 0.4, 5, 3, None)  # Mbit/s: bits / 10**6
    unsaid = perf.figures(iperf_ran(out, ping=""), "vm1", "10.1.1.100", 2)
    assert (unsaid.rtt_min_ms, unsaid.rtt_avg_ms, unsaid.rtt_max_ms, unsaid.pings_sent, unsaid.pings_received) == (None, None, None, 0, 0) and not unsaid.ok
    no_server = perf.figures({"server_error": "cannot start `iperf3 -s -1` on lan1: gone", "iperf": None, "ping": iperf_ran("")["ping"]}, "vm1", "10.1.1.100", 2)
    assert no_server.error == "cannot start `iperf3 -s -1` on lan1: gone" and no_server.bytes == 0 and no_server.pings_received == 5


def test_a_command_check_keeps_what_its_last_attempt_printed_as_its_evidence(two, tmp_path, monkeypatch):
    long_out = "o" * commands.MAX_MATCHED + "END"
    ssh = FakeSSH(default=(2, long_out, "e\n"))
    check = commands.CommandCheck(node="vm1", run="echo {{ vm2.ip }}", timeout=9)
    got = commands.collect_command(CheckContext(two, {"vm1": ssh}, tmp_path), check)
    assert got.guests == ("vm1",) and ssh.calls == [("sh -c 'echo 10.1.1.3'", 9.0, False)]
    assert got.data == {"command": "echo 10.1.1.3", "exit": 2, "stdout": long_out[-commands.MAX_MATCHED:], "stderr": "e\n", "attempts": 1}  # what a pattern is searched in
    perf_plan = cached_lesson("vm-vs-container-perf")
    monkeypatch.setattr("vnetlab.backends.netns.run_in_namespace", lambda ns, fn, *args, **kwargs: fn(*args, **kwargs))  # no root needed
    assert commands.collect_command(CheckContext(perf_plan, {}, tmp_path), commands.CommandCheck(node="c1", run="true")).guests == ()  # a container's output is no student's


def test_a_command_verdict_reads_its_evidence_and_says_which_pattern_gave_up(two, monkeypatch):
    check = commands.CommandCheck(node="vm1", run="cat log", expect=expect(stdout="ok", stderr="warn"), retry=commands.Retry(for_=5, every=1))
    evidence = Evidence({"command": "cat log", "exit": 0, "stdout": "all ok\n", "stderr": "a warning\n"})
    fine = commands.judge_command(two, check, evidence)
    assert fine.ok and fine.detail == "ran `cat log` on vm1: expected exit 0 and stdout matching 'ok' and stderr matching 'warn'; got exit 0 after 1 attempt(s), stdout: 'all ok', stderr: 'a warning'"
    assert fine.data == {"command": "cat log", "exit": 0, "attempts": 1, "stdout_tail": "all ok", "stderr_tail": "a warning"}

    def slow(pattern, text):
        if pattern == "warn":
            raise commands.PatternTimeout(f"the regular expression {pattern!r} gave up")
        return True

    monkeypatch.setattr(commands, "pattern_found", slow)
    assert commands.judge_output(expect(stdout="ok", stderr="warn"), said(0, "ok", "warn")) == (False, ["stderr: the regular expression 'warn' gave up"])
    assert commands.judge_output(expect(stdout="warn"), said(0, "ok")) == (False, ["stdout: the regular expression 'warn' gave up"])
    gave_up = commands.judge_command(two, check, evidence)
    assert not gave_up.ok and gave_up.detail.endswith(", stderr: 'a warning'; stderr: the regular expression 'warn' gave up")
    assert gave_up.data["pattern_timeouts"] == ["stderr: the regular expression 'warn' gave up"]
    assert commands.judge_output(expect(exit=1, stdout="ok"), said(0, "ok")) == (False, [])  # the exit decides too
    both = commands.judge_command(two, dataclasses.replace(check, expect=expect(stdout="warn", stderr="warn")), evidence)
    assert both.detail.endswith("; stdout: the regular expression 'warn' gave up; stderr: the regular expression 'warn' gave up")


def test_a_command_that_passes_is_not_run_again(two, tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(commands, "time", clock)
    ssh = FakeSSH(default=(0, "ready\n", ""))
    check = commands.CommandCheck(node="vm1", run="cat /tmp/x", expect=expect(stdout="ready"), retry=commands.Retry(for_=10, every=1))
    got = commands.collect_command(CheckContext(two, {"vm1": ssh}, tmp_path), check)
    assert got.data["attempts"] == 1 and len(ssh.calls) == 1 and clock.slept == []


def test_perf_says_which_client_measured_nothing_and_how_it_was_run():
    plan = on_kvm(lesson("vm-vs-container-perf"))
    refused = perf.judge_perf(plan, perf.PerfCheck(source="vm1", to="lan1", seconds=3), Evidence(iperf_ran('{"error": "unable to connect to server"}', 1)))
    assert not refused.ok and refused.detail.endswith("; `iperf3 -c 10.1.1.100 -t 3 -J` on vm1: unable to connect to server")


def test_perf_between_containers_under_tcg_measures_no_emulator():
    plan = lesson("vm-vs-container-perf")
    assert plan.domain_type == "qemu"
    nat = perf.judge_perf(plan, perf.PerfCheck(source="c1", to="inet1"), measured(figures(), target="203.0.113.2"))
    assert nat.ok and nat.data["emulated"] is False and "TCG" not in nat.detail  # no guest at either end
    to_a_vm = perf.judge_perf(plan, perf.PerfCheck(source="lan1", to="vm1"), measured(figures(), target="10.1.1.2"))
    assert to_a_vm.data["emulated"] is True and to_a_vm.detail.endswith("— a guest under TCG: this figure measures the CPU emulator, not the path")


def rekeyed(keys, said, rekey="1000\n", clock="1000\n", rekey_code=0, rekey_err=""):
    """The WireGuard judge with rekey: vm1's clock and rekey, vm2's clock, then each member's probe."""
    evidence = Evidence({"keys": keys, "rekey": output_evidence(CommandResult("r", rekey_code, rekey, rekey_err)), "clock": output_evidence(CommandResult("d", 0, clock, "")),
                         **{vm: output_evidence(result) for vm, result in said.items()}}, guests=tuple(said))
    return wireguard.judge_check(cached_lesson("wireguard-vpn"), dataclasses.replace(handshake_check(), rekey=True), evidence)


def test_a_rekeyed_handshake_counts_only_when_made_after_the_rekey():
    keys = {"vm1": KEY1, "vm2": KEY2}
    fresh = rekeyed(keys, {"vm1": wg_said(1005, KEY2, 1002), "vm2": wg_said(1006, KEY1, 1000)})
    assert fresh.ok and fresh.name == "wireguard wg0: handshake vm1 ↔ vm2 (rekeyed)"
    assert fresh.detail == ("expected a completed handshake made during this check (after a rekey) on wg0 between vm1 and vm2 on both sides; "
                            "saw vm1: handshake with vm2 3 s ago (after the rekey); vm2: handshake with vm1 6 s ago (after the rekey)")  # the rekey's own second counts
    stale = rekeyed(keys, {"vm1": wg_said(1005, KEY2, 1002), "vm2": wg_said(1006, KEY1, 990)})
    assert stale.ok is False and stale.detail.endswith("; vm2: no handshake with vm1 since the rekey (the latest 10 s before it)")  # a bool: report.json and JUnit read it
    stale_a = rekeyed(keys, {"vm1": wg_said(1005, KEY2, 999), "vm2": wg_said(1006, KEY1, 1001)}, rekey="1000\n", clock="998\n")
    assert not stale_a.ok and "vm1: no handshake with vm2 since the rekey (the latest 1 s before it)" in stale_a.detail  # each side by its own clock
    blind = rekeyed(keys, {"vm1": wg_said(1005, KEY2, 1002), "vm2": wg_said(1006, KEY1, 1003)}, clock="no date here\n")
    assert not blind.ok and blind.detail.endswith("; vm2: its clock could not be read before the rekey")


def test_a_failed_rekey_is_said_and_the_handshakes_still_decide():
    keys = {"vm1": KEY1, "vm2": KEY2}
    command = wireguard.rekey_command("wg0", wireguard.tunnel_ip(cached_lesson("wireguard-vpn").scenario, "wg0", "vm2"))
    failed = rekeyed(keys, {"vm1": wg_said(1005, KEY2, 1002), "vm2": wg_said(1006, KEY1, 1003)}, rekey_code=2, rekey_err="RTNETLINK answers: Operation not permitted\n")
    assert failed.ok and f"saw vm1: `{command}` exited 2: RTNETLINK answers: Operation not permitted; vm1: handshake with vm2 3 s ago" in failed.detail
    unsaid = rekeyed(keys, {"vm1": wg_said(1005, KEY2, 1002), "vm2": wg_said(1006, KEY1, 1003)}, rekey_code=1)
    assert f"saw vm1: `{command}` exited 1; vm1:" in unsaid.detail


def test_pmtu_frag_needed_wants_no_reply_and_the_routers_answer_not_the_senders():
    check = pmtu_check(size=8973, expect="frag-needed")
    router = "From 10.9.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)\n" + ping_output(3, 0, rtt=None, busybox=False)
    told = pmtu(check, router, stderr="ping: local error: message too long, mtu=1400\n", code=1)
    assert told.ok and told.name == "pmtu jumbo1 → router: 9001-byte packets, don't fragment (a router must answer fragmentation needed)"
    assert told.detail == ("expected no echo reply from 10.9.0.1 to 9001-byte packets (8973 bytes of payload) with don't-fragment, and a router answering "
                           "fragmentation needed, got 0/3; a router answered fragmentation needed (mtu 1400), then the sender refused to send it (mtu 1400)")
    black_hole = pmtu(check, ping_output(3, 0, rtt=None, busybox=False), code=1)
    assert not black_hole.ok and black_hole.detail.endswith(", and a router answering fragmentation needed, got 0/3 (dropped without a word: a black hole)")
    own_nic = pmtu(check, ping_output(3, 0, rtt=None, busybox=False), stderr="ping: local error: message too long, mtu=1500\n", code=1)
    assert not own_nic.ok and own_nic.detail.endswith("got 0/3; the sender refused to send it (mtu 1500)")  # no router was asked: no black hole either
    answered = pmtu(check, router.replace("0 received", "1 received"), code=0)
    assert not answered.ok and "got 1/3; a router answered" in answered.detail and "black hole" not in answered.detail
    assert not pmtu(check, ping_output(3, 1, rtt=None, busybox=False)).detail.endswith("black hole)")  # a reply is no black hole
