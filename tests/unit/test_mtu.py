"""The mtu feature without guests: its rules (each message at its line), its plan part, `--explain`,
the plan's YAML, the pmtu check's judgement of ping's output, and the configure steps with
stand-ins. One root test (skipped otherwise) shows the kernel behaviour the feature is built on."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from vnetlab.backends.ssh import CommandResult
from vnetlab.checks.base import CheckContext, Evidence
from vnetlab.checks.capture import frag_needed
from vnetlab.checks.ping import output_evidence
from vnetlab.cli import main
from vnetlab.compose import load_scenario
from vnetlab.features import mtu
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.dump import plan_data
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.tools import explain as ex
from vnetlab.tools.graph import topology
from scenario_helpers import checks_appended, problems
from scenario_helpers import plan_of as plan_in

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")

BASE = """\
name: mtu-lab
bridges:
  - {name: jumbo, subnet: 10.9.0.0/24, mtu: 9000}
  - {name: plain, subnet: 10.8.0.0/24}
vms:
  - name: vm1
    nics:
      - {bridge: jumbo, address: 10.9.0.2/24}
      - {bridge: plain, address: 10.8.0.2/24}
  - name: vm2
    nics:
      - {bridge: jumbo, address: 10.9.0.3/24, mtu: 4000}
"""


def with_checks(*checks: str, base: str = BASE) -> str:
    return checks_appended(base, *checks)


def plan_of(text: str, lab: str = "m-lab"):
    return plan_in(text, lab)


# -- the model: shape (the loader) and rules (each located) ------------------------------------


def test_a_good_lab_loads_and_nics_may_stay_below_their_bridge():
    assert problems(with_checks("pmtu: {from: vm1, to: vm2, size: 3972}", "pmtu: {from: vm1, to: 10.9.0.3, size: 8973, expect: failure}")) == []


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("mtu: 9000}", "mtu: 67}", "lab.yaml:3: bridges[0].mtu: expected an integer from 68 to 65535, got 67"),
        ("mtu: 9000}", "mtu: 65536}", "lab.yaml:3: bridges[0].mtu: expected an integer from 68 to 65535, got 65536"),
        ("mtu: 4000}", "mtu: 0}", "lab.yaml:12: vms[1].nics[0].mtu: expected an integer from 68 to 65535, got 0"),
        ("mtu: 4000}", "mtu: big}", "lab.yaml:12: vms[1].nics[0].mtu: expected an integer, got 'big'"),
    ],
)
def test_mtu_out_of_range_is_a_shape_problem_at_its_line(old, new, expected):
    assert problems(BASE.replace(old, new)) == [expected]


def test_an_mtu_below_68_exits_2_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "lab.yaml"
    path.write_text(BASE.replace("mtu: 9000}", "mtu: 60}"))
    assert main(["plan", str(path)]) == 2
    assert f"{path}:3: bridges[0].mtu: expected an integer from 68 to 65535, got 60" in capsys.readouterr().err


def test_a_nic_above_its_bridge_is_located():
    assert problems(BASE.replace("mtu: 4000}", "mtu: 9001}")) == [
        "lab.yaml:12: vms[1].nics[0].mtu: bridge 'jumbo' (MTU 9000) is too small for mtu 9001: its ports drop larger frames "
        "without a word; lower this NIC's mtu to 9000 or less, or raise the bridge's"
    ]


def test_a_nic_above_1500_on_a_bridge_without_mtu_is_located():
    text = BASE.replace("      - {bridge: plain, address: 10.8.0.2/24}", "      - {bridge: plain, address: 10.8.0.2/24, mtu: 1501}")
    assert problems(text) == [
        "lab.yaml:9: vms[0].nics[1].mtu: bridge 'plain' (MTU 1500, the kernel's default: it has no mtu) is too small for mtu 1501: "
        "its ports drop larger frames without a word; lower this NIC's mtu to 1500 or less, or raise the bridge's"
    ]


def test_a_nic_on_an_unknown_bridge_is_only_the_core_problem():
    text = BASE.replace("{bridge: jumbo, address: 10.9.0.3/24, mtu: 4000}", "{bridge: nope, mtu: 4000}")
    assert problems(text) == ["lab.yaml:12: vms[1].nics[0].bridge: no bridge named 'nope' (bridges: jumbo, plain)"]


def test_mtu_on_an_ovs_bridge_is_located():
    text = BASE.replace("{name: jumbo, subnet: 10.9.0.0/24, mtu: 9000}", "{name: jumbo, subnet: 10.9.0.0/24, type: ovs, mtu: 9000}")
    assert problems(text) == ["lab.yaml:3: bridges[0].mtu: bridge type ovs takes no mtu here: vnetlab sets MTUs on Linux bridges (type linux) only"]


@pytest.mark.parametrize(
    "check,expected",
    [
        ("pmtu: {from: vm9, to: vm2, size: 100}", "lab.yaml:14: checks[0].pmtu.from: no VM, container or host named 'vm9'"),
        ("pmtu: {from: vm1, to: vm1, size: 100}", "lab.yaml:14: checks[0].pmtu.to: a node pinging itself proves nothing about the path"),
        ("pmtu: {from: vm2, to: vm9, size: 100}", "lab.yaml:14: checks[0].pmtu.to: expected a VM, container or host name or an IPv4 address, got 'vm9'"),
        ("pmtu: {from: vm1, to: vm2, size: 65508}", "lab.yaml:14: checks[0].pmtu.size: expected an integer from 0 to 65507, got 65508"),
        ("pmtu: {from: vm1, to: vm2, size: -1}", "lab.yaml:14: checks[0].pmtu.size: expected an integer from 0 to 65507, got -1"),
        ("pmtu: {from: vm1, to: vm2}", "lab.yaml:14: checks[0].pmtu.size: missing (expected an integer: ICMP payload bytes of each ping; the IPv4 packet is 28 bytes more (ping -s))"),
        ("pmtu: {from: vm1, to: vm2, size: 10, expect: maybe}", "lab.yaml:14: checks[0].pmtu.expect: expected one of: success, failure, frag-needed; got 'maybe'"),
        ("pmtu: {from: vm1, to: vm2, size: 10, dont-fragment: true}", "lab.yaml:14: checks[0].pmtu.dont-fragment: unknown key (expected one of: from, to, size, expect, name)"),
    ],
)
def test_pmtu_check_problems_are_located(check, expected):
    assert problems(with_checks(check)) == [expected]


def test_a_pmtu_target_off_every_common_subnet_must_be_named_by_address():
    text = BASE.replace("      - {bridge: jumbo, address: 10.9.0.3/24, mtu: 4000}", "      - {bridge: plain, address: 10.8.0.3/24}")
    text = text.replace("      - {bridge: plain, address: 10.8.0.2/24}\n", "")
    assert problems(with_checks("pmtu: {from: vm1, to: vm2, size: 100}", base=text)) == [
        "lab.yaml:13: checks[0].pmtu.to: 'vm1' and 'vm2' have no addressed NICs on a common subnet"
    ]
    assert problems(with_checks("pmtu: {from: vm1, to: 10.8.0.3, size: 100}", base=text)) == []


def test_pmtu_from_a_container_is_accepted():
    text = BASE + "containers:\n  - {name: c1, nic: {bridge: jumbo, address: 10.9.0.9/24}}\n"
    assert problems(with_checks("pmtu: {from: c1, to: vm1, size: 8972}", base=text)) == []


# Every rule of the module is needed: disabling any one of them lets a case above through.
# (The same mutation harness as test_rules_are_tested, over this module's rules and these cases.)
RULE_CASES = [
    BASE.replace("mtu: 4000}", "mtu: 9001}"),
    BASE.replace("{name: jumbo, subnet: 10.9.0.0/24, mtu: 9000}", "{name: jumbo, subnet: 10.9.0.0/24, type: ovs, mtu: 9000}"),
    with_checks("pmtu: {from: vm9, to: vm2, size: 100}"),
    with_checks("pmtu: {from: vm1, to: vm1, size: 100}"),
    with_checks("pmtu: {from: vm2, to: vm9, size: 100}"),
    with_checks("pmtu: {from: vm1, to: vm2, size: 100}", base=BASE.replace("      - {bridge: plain, address: 10.8.0.2/24}\n", "").replace("{bridge: jumbo, address: 10.9.0.2/24}", "{bridge: plain, address: 10.8.0.2/24}")),
]


def test_removing_any_rule_of_the_module_lets_a_case_through():
    sys.path.insert(0, str(Path(__file__).parent))
    import test_rules_are_tested as harness

    sites = [s for s in harness.SITES if s.module == "vnetlab.features.mtu"]
    assert len(sites) == 3, [str(s) for s in sites]  # the target rules are the core's (check_target), shared with ping
    expected = [problems(text) for text in RULE_CASES]
    assert all(len(p) == 1 for p in expected), expected
    uncaught = []
    for site in sites:
        with harness.disabled(site):
            if all(problems(text) == want for text, want in zip(RULE_CASES, expected)):
                uncaught.append(str(site))
    assert not uncaught


# -- the plan ---------------------------------------------------------------------------------------


def test_nics_take_their_bridges_mtu_unless_they_set_their_own():
    part = plan_of(BASE).part("mtu")
    assert part.bridges == (mtu.BridgeMtu("jumbo", 9000),)
    assert [(g.vm, g.nic, g.mtu) for g in part.guests] == [("vm1", "eth0", 9000), ("vm2", "eth0", 4000)]
    plan = plan_of(BASE)
    assert [g.mac for g in part.guests] == [plan.vm("vm1").nics[0].mac, plan.vm("vm2").nics[0].mac]


def test_a_lab_without_mtus_has_no_part_and_no_dump_key():
    plan = make_plan(load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml"), "x", PlanOptions(kernel=KERNEL))
    assert plan.part("mtu", None) is None
    assert "mtu" not in plan_data(plan)
    assert "MTU" not in ex.explain(plan)


def test_ports_are_the_taps_then_the_node_veths_of_the_bridge():
    text = BASE + "containers:\n  - {name: c1, nic: {bridge: jumbo, address: 10.9.0.9/24}}\n"
    plan = plan_of(text)
    node = next(n for n in plan.nodes if n.name == "c1")
    assert mtu.ports(plan, "jumbo") == [
        mtu.Port(plan.vm("vm1").nics[0].tap, "vm1 eth0", "tap"),
        mtu.Port(plan.vm("vm2").nics[0].tap, "vm2 eth0", "tap"),
        mtu.Port(node.veth, "container c1", "veth", node.namespace, "eth0"),
    ]
    assert [p.name for p in mtu.ports(plan, "plain")] == [plan.vm("vm1").nics[1].tap]


def test_the_plan_yaml_lists_bridges_ports_and_guest_nics():
    plan = plan_of(BASE)
    taps = [plan.vm("vm1").nics[0].tap, plan.vm("vm2").nics[0].tap]
    assert plan_data(plan)["mtu"] == {
        "bridges": [{"name": "jumbo", "mtu": 9000, "ports": taps}],
        "guests": [{"vm": "vm1", "nic": "eth0", "mtu": 9000}, {"vm": "vm2", "nic": "eth0", "mtu": 4000}],
    }


def test_explain_sets_the_bridge_then_each_port_then_the_guests():
    plan = plan_of(with_checks("pmtu: {from: vm1, to: vm2, size: 3972}", "pmtu: {from: vm1, to: vm2, size: 3973, expect: failure}"))
    t1, t2 = plan.vm("vm1").nics[0].tap, plan.vm("vm2").nics[0].tap
    sections = {s.title: s for s in ex.sections(plan)}
    network = sections["MTU of the bridges and their ports"]
    assert network.stage == "network" and network.lines == (
        "ip -n vnl-m-lab link set jumbo mtu 9000    # set by hand: the kernel no longer derives it from the ports",
        f"ip -n vnl-m-lab link set {t1} mtu 9000    # tap of vm1 eth0: once the guest has started and the tap joined the bridge",
        f"ip -n vnl-m-lab link set {t2} mtu 9000    # tap of vm2 eth0: once the guest has started and the tap joined the bridge",
    )
    assert sections["MTU of the guests' NICs"].lines == ("vm1$ ip link set dev eth0 mtu 9000", "vm2$ ip link set dev eth0 mtu 4000")
    checks = sections["Checks, in scenario order"].lines
    assert checks == (
        "vm1$ /usr/bin/ping -M do -c 3 -W 2 -s 3972 10.9.0.3    # 4000-byte packets: must get 3/3 replies",
        "vm1$ /usr/bin/ping -M do -c 3 -W 2 -s 3973 10.9.0.3    # 4001-byte packets: must be refused or get no reply",
    )
    titles = list(sections)
    assert titles.index("MTU of the guests' NICs") == titles.index("Addresses inside the guests") + 1


def test_explain_of_a_container_on_an_mtu_bridge_sets_both_veth_ends_and_pings_in_its_namespace():
    text = with_checks("pmtu: {from: c1, to: vm1, size: 8972}", base=BASE + "containers:\n  - {name: c1, nic: {bridge: jumbo, address: 10.9.0.9/24}}\n")
    plan = plan_of(text)
    node = next(n for n in plan.nodes if n.name == "c1")
    lines = {s.title: s for s in ex.sections(plan)}
    assert lines["MTU of the bridges and their ports"].lines[-2:] == (
        f"ip -n vnl-m-lab link set {node.veth} mtu 9000    # veth of container c1",
        f"ip -n {node.namespace} link set eth0 mtu 9000    # its other end",
    )
    assert lines["Checks, in scenario order"].lines == (f"ip netns exec {node.namespace} /usr/bin/ping -M do -c 3 -W 2 -s 8972 10.9.0.2    # 9000-byte packets: must get 3/3 replies",)


def test_the_lesson_scenario_plans_and_draws_its_mtus():
    plan = make_plan(load_scenario(SCENARIOS_DIR / "mtu-pmtu.yaml"), "mtu-pmtu", PlanOptions(kernel=KERNEL))
    part = plan.part("mtu")
    assert [(b.bridge, b.mtu) for b in part.bridges] == [("jumbo", 9000), ("small", 1400)]
    assert [(g.vm, g.nic, g.mtu) for g in part.guests] == [("jumbo1", "eth0", 9000), ("router", "eth0", 9000), ("router", "eth1", 1400), ("small1", "eth0", 1400)]
    topo = topology(plan)
    assert next(b for b in topo.bridges if b.label[0] == "jumbo").label[-1] == "mtu 9000"
    router_small = next(e for e in topo.edges if e.a == "vm_router" and e.label[0].startswith("eth1"))
    assert router_small.label[-1] == "mtu 1400"
    pmtus = [c.pmtu for c in plan.scenario.checks if c.kind == "pmtu"]
    assert [(c.size, c.expect) for c in pmtus] == [(8972, "success"), (8973, "failure"), (1372, "success"), (1373, "failure"), (1372, "success"), (1373, "failure")]


def test_plan_explain_on_the_command_line_shows_the_mtu_sections():
    out = subprocess.run([sys.executable, "-m", "vnetlab", "plan", "mtu-pmtu", "--explain"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ip -n vnl-mtu-pmtu link set small mtu 1400" in out.stdout and "router$ ip link set dev eth1 mtu 1400" in out.stdout


# -- the pmtu check: ping's output judged ------------------------------------------------------------

OK_9000 = """PING 10.9.0.1 (10.9.0.1) 8972(9000) bytes of data.
8980 bytes from 10.9.0.1: icmp_seq=1 ttl=64 time=2.93 ms
8980 bytes from 10.9.0.1: icmp_seq=2 ttl=64 time=1.50 ms
8980 bytes from 10.9.0.1: icmp_seq=3 ttl=64 time=2.03 ms

--- 10.9.0.1 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2004ms
rtt min/avg/max/mdev = 1.502/2.152/2.928/0.588 ms
"""
REFUSED_LOCALLY = ("PING 10.9.0.1 (10.9.0.1) 8973(9001) bytes of data.\n\n--- 10.9.0.1 ping statistics ---\n"
                   "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2049ms\n\n",
                   "/usr/bin/ping: local error: message too long, mtu=9000\n" * 3)
REFUSED_BY_ROUTER = ("PING 10.14.0.10 (10.14.0.10) 1373(1401) bytes of data.\nFrom 10.9.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)\n\n"
                     "--- 10.14.0.10 ping statistics ---\n3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2016ms\n\n",
                     "/usr/bin/ping: local error: message too long, mtu=1400\n" * 2)


@dataclass
class FakeSSH:
    answer: tuple[str, str, int]
    commands: list[str] = field(default_factory=list)

    def run(self, command: str, *, timeout: float = 30.0, stdin: bytes | None = None, check: bool = True) -> CommandResult:
        self.commands.append(command)
        out, err, code = self.answer
        return CommandResult(command, code, out, err)


LESSON = None


def lesson_plan():
    global LESSON
    if LESSON is None:
        LESSON = make_plan(load_scenario(SCENARIOS_DIR / "mtu-pmtu.yaml"), "mtu-pmtu", PlanOptions(kernel=KERNEL))
    return LESSON


def run_check(index: int, out: str, err: str = "", code: int = 0):
    plan = lesson_plan()
    ssh = FakeSSH((out, err, code))
    check = plan.scenario.checks[index].pmtu
    result = mtu.run_pmtu(CheckContext(plan, {check.source: ssh}, Path("/nonexistent")), check)
    return result, ssh.commands


def test_a_passing_pmtu_check_runs_iputils_ping_with_dont_fragment():
    result, commands = run_check(2, OK_9000)
    assert commands == ["/usr/bin/ping -M do -c 3 -W 2 -s 8972 10.9.0.1"]
    assert result.ok and result.kind == "pmtu" and result.name == "pmtu jumbo1 → router: 9000-byte packets, don't fragment"
    assert result.detail == "expected 3/3 echo replies from 10.9.0.1 to 9000-byte packets (8972 bytes of payload) with don't-fragment, got 3/3"
    assert result.data == {"target": "10.9.0.1", "size": 8972, "packet": 9000, "sent": 3, "received": 3}


def test_a_must_fail_check_passes_when_the_sender_refuses_and_says_so():
    result, _ = run_check(3, *REFUSED_LOCALLY, 1)
    assert result.ok and result.name.endswith("(must fail)")
    assert result.detail == "expected no echo reply from 10.9.0.1 to 9001-byte packets (8973 bytes of payload) with don't-fragment, got 0/3; the sender refused to send it (mtu 9000)"
    assert result.data["sender_mtu"] == 9000 and "router_mtu" not in result.data


def test_a_router_answering_fragmentation_needed_is_named():
    result, commands = run_check(7, *REFUSED_BY_ROUTER, 1)
    assert commands == ["/usr/bin/ping -M do -c 3 -W 2 -s 1373 10.14.0.10"]
    assert result.ok and result.data["router_mtu"] == 1400 and result.data["sender_mtu"] == 1400
    assert result.detail.endswith("got 0/3; a router answered fragmentation needed (mtu 1400), then the sender refused to send it (mtu 1400)")


def test_a_wrong_expectation_fails_with_what_was_seen():
    result, _ = run_check(3, OK_9000.replace("8972(9000)", "8973(9001)"))
    assert not result.ok
    assert result.detail == "expected no echo reply from 10.9.0.1 to 9001-byte packets (8973 bytes of payload) with don't-fragment, got 3/3"
    result, _ = run_check(2, *REFUSED_LOCALLY, 1)
    assert not result.ok and result.detail.endswith("got 0/3; the sender refused to send it (mtu 9000)")


BLACK_HOLE = ("PING 10.14.0.10 (10.14.0.10) 1373(1401) bytes of data.\n\n--- 10.14.0.10 ping statistics ---\n"
              "3 packets transmitted, 0 received, 100% packet loss, time 2044ms\n\n", "")


def run_frag_needed(out: str, err: str = "", code: int = 1):
    """The lesson's last check (1373 bytes across the router) with expect: frag-needed."""
    plan = plan_of((SCENARIOS_DIR / "mtu-pmtu.yaml").read_text().replace("size: 1373, expect: failure}\n", "size: 1373, expect: frag-needed}\n"), "mtu-pmtu")
    check = plan.scenario.checks[-1].pmtu
    ssh = FakeSSH((out, err, code))
    return mtu.run_pmtu(CheckContext(plan, {check.source: ssh}, Path("/nonexistent")), check), ssh.commands


def test_frag_needed_wants_the_routers_answer_after_forgetting_the_learnt_path_mtu():
    result, commands = run_frag_needed(*REFUSED_BY_ROUTER)
    assert commands == ["ip route flush cache", "/usr/bin/ping -M do -c 3 -W 2 -s 1373 10.14.0.10"]
    assert result.ok and result.name == "pmtu jumbo1 → 10.14.0.10: 1401-byte packets, don't fragment (a router must answer fragmentation needed)"
    assert result.detail == ("expected no echo reply from 10.14.0.10 to 1401-byte packets (1373 bytes of payload) with don't-fragment, and a router answering "
                             "fragmentation needed, got 0/3; a router answered fragmentation needed (mtu 1400), then the sender refused to send it (mtu 1400)")


def test_frag_needed_fails_on_a_black_hole_and_on_the_senders_own_refusal():
    result, _ = run_frag_needed(*BLACK_HOLE)
    assert not result.ok and result.detail.endswith("got 0/3 (dropped without a word: a black hole)")
    result, _ = run_frag_needed(*REFUSED_LOCALLY)  # the sender's NIC is the smallest: no router was asked
    assert not result.ok and result.detail.endswith("got 0/3; the sender refused to send it (mtu 9000)")
    result, _ = run_frag_needed(OK_9000, "", 0)
    assert not result.ok


def _frag_needed(src: str, dst: str, next_hop_mtu: int):
    from scapy.layers.inet import ICMP, IP, IPerror, ICMPerror
    from scapy.layers.l2 import Ether

    quoted = IPerror(src=dst, dst="10.14.0.10", flags="DF") / ICMPerror(type=8)
    return Ether() / IP(src=src, dst=dst) / ICMP(type=3, code=4, nexthopmtu=next_hop_mtu) / quoted


def test_the_frag_needed_expectation_reads_the_routers_icmp_on_the_wire():
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    from vnetlab.checks.base import CaptureSubject
    from vnetlab.checks.runner import judges

    text = (SCENARIOS_DIR / "mtu-pmtu.yaml").read_text() + "  - capture: {bridge: jumbo, between: [jumbo1, router], expect: [frag-needed]}\n"
    plan = plan_of(text, "mtu-pmtu")
    check = plan.scenario.checks[-1].capture
    judge = judges(plan)["frag-needed"]

    def subject(packets):
        return CaptureSubject("jumbo1", plan.vm("jumbo1").nic_on("jumbo"), "router", plan.vm("router").nic_on("jumbo"), packets)

    seen = judge(plan, check, subject([_frag_needed("10.9.0.1", "10.9.0.10", 1400), _frag_needed("10.9.0.1", "10.9.0.10", 1400)]))
    assert seen.ok and seen.counts == {"frag_needed": 2}
    assert seen.expected == "≥1 ICMP fragmentation needed from 10.9.0.1 (router) to 10.9.0.10 (jumbo1)" and seen.seen == "2 fragmentation needed (next-hop MTU 1400)"
    others = [
        Ether() / IP(src="10.9.0.1", dst="10.9.0.10") / ICMP(type=3, code=1),  # host unreachable: not about the size
        _frag_needed("10.9.0.10", "10.9.0.1", 1400),  # the other way round
        Ether() / IP(src="10.9.0.1", dst="10.9.0.10") / ICMP(type=0),
    ]
    none = judge(plan, check, subject(others))
    assert not none.ok and none.seen == "0 fragmentation needed"
    assert frag_needed([_frag_needed("10.9.0.1", "10.9.0.10", 1280)], {"10.9.0.10"}, sender="10.9.0.1") == [1280]
    assert frag_needed([_frag_needed("10.9.0.1", "10.9.0.10", 1280)], {"10.9.0.10"}, about="10.14.0.10") == [1280]
    assert frag_needed([_frag_needed("10.9.0.1", "10.9.0.10", 1280)], {"10.9.0.10"}, about="10.14.0.11") == []


def _echo(src: str, dst: str, kind: int, payload: int):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    return Ether(bytes(Ether() / IP(src=src, dst=dst) / ICMP(type=kind, id=7, seq=1) / (b"\0" * payload)))  # as captured: lengths filled in


def test_frag_needed_on_the_wire_is_no_reply_and_the_routers_answer_to_the_sender():
    """Graded on the wire, ping's word is not enough: the capture must see the router's answer, and no reply of the probe's size."""
    plan = plan_of((SCENARIOS_DIR / "mtu-pmtu.yaml").read_text().replace("size: 1373, expect: failure}\n", "size: 1373, expect: frag-needed}\n"), "mtu-pmtu")
    check = plan.scenario.checks[-1].pmtu
    wire = mtu.PMTU.wire
    assert wire is not None and wire.points(plan, check) == ["jumbo"]
    evidence = Evidence(output_evidence(CommandResult("ping", 1, *REFUSED_BY_ROUTER)))
    probe = _echo("10.9.0.10", "10.14.0.10", 8, 1373)
    said = wire.judge(plan, check, evidence, {"jumbo": [probe, _frag_needed("10.9.0.1", "10.9.0.10", 1400)]})
    assert said.ok and said.counts["wire_frag_needed"] == 1 and said.seen.endswith("; 1 fragmentation needed about 10.14.0.10 (next-hop MTU 1400)")
    silent = wire.judge(plan, check, evidence, {"jumbo": [probe]})  # ping printed the router's answer; the wire saw none
    assert not silent.ok and silent.seen.endswith("; 0 fragmentation needed about 10.14.0.10")
    answered = wire.judge(plan, check, evidence, {"jumbo": [probe, _frag_needed("10.9.0.1", "10.9.0.10", 1400), _echo("10.14.0.10", "10.9.0.10", 0, 1373)]})
    assert not answered.ok  # a reply of the probe's size crossed: the path carried it after all
    elsewhere = wire.judge(plan, check, evidence, {"jumbo": [probe, _frag_needed("10.9.0.1", "10.9.0.11", 1400)]})
    assert not elsewhere.ok  # told to another host


@pytest.mark.parametrize("index", [2, 3])
def test_no_summary_fails_whatever_was_expected(index):
    """A must-fail check must not pass because ping did not run (busybox's ping has no -M)."""
    result, _ = run_check(index, "", "sh: /usr/bin/ping: not found\n", 127)
    assert not result.ok
    assert result.detail == "`/usr/bin/ping -M do -c 3 -W 2 -s %d 10.9.0.1` printed no summary (exit 127): sh: /usr/bin/ping: not found" % (8972 if index == 2 else 8973)


def test_refusals_are_read_boundedly_from_hostile_output():
    assert mtu.refusals("ping: local error: message too long, mtu=1400") == {"sender": 1400}
    assert mtu.refusals("From 10.9.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)") == {"router": 1400}
    assert mtu.refusals("message too long, mtu=123456") == {}  # not a 5-digit MTU
    assert mtu.refusals("message too long, mtu=") == {} and mtu.refusals(None) == {}  # type: ignore[arg-type]
    assert mtu.refusals("message too long, mtu=1\n" + "x" * (mtu.MAX_TEXT + 10)) == {}  # cut off: only the tail is read
    hostile = ("message too long" + " " * 5000 + "mtu=1400\n") * 3 + "9" * 100_000
    assert mtu.refusals(hostile) == {}  # the line is cut at MAX_LINE; no catastrophic backtracking either


# -- configure and apply, with stand-ins -----------------------------------------------------------


def test_apply_sets_bridges_then_veths_and_configure_the_taps(monkeypatch):
    text = BASE + "containers:\n  - {name: c1, nic: {bridge: jumbo, address: 10.9.0.9/24}}\n"
    plan = plan_of(text)
    node = next(n for n in plan.nodes if n.name == "c1")
    calls: list[tuple[str, list]] = []
    monkeypatch.setattr(mtu, "set_mtus", lambda ns, mtus: calls.append((ns, mtus)))
    mtu.apply_bridges(plan)
    assert calls == [("vnl-m-lab", [("jumbo", 9000), (node.veth, 9000)]), (node.namespace, [("eth0", 9000)])]
    calls.clear()
    mtu.configure_taps(plan)
    assert calls == [("vnl-m-lab", [(plan.vm("vm1").nics[0].tap, 9000), (plan.vm("vm2").nics[0].tap, 9000)])]


def test_guests_find_their_nic_by_mac_and_a_refusal_stops_the_run():
    plan = plan_of(BASE)
    good = {"vm1": FakeSSH(("", "", 0)), "vm2": FakeSSH(("", "", 0))}
    mtu.configure_guests(plan, good)
    [script] = good["vm2"].commands
    assert f"mac={plan.vm('vm2').nics[0].mac};" in script and script.endswith('ip link set dev "$dev" mtu 4000 || exit 1')
    bad = {"vm1": FakeSSH(("", "ip: RTNETLINK answers: Invalid argument\n", 1)), "vm2": FakeSSH(("", "", 0))}
    with pytest.raises(mtu.MtuError) as caught:
        mtu.configure_guests(plan, bad)
    assert str(caught.value) == "vm1: setting the MTU of its NICs (eth0 9000) failed (exit 1): ip: RTNETLINK answers: Invalid argument"


def test_the_guest_script_sets_every_nic_in_a_shell(tmp_path):
    """The script as the guest's sh runs it, against a fake /sys/class/net and a fake `ip`."""
    nics = [mtu.GuestMtu("vm1", "eth0", "52:54:00:00:00:01", 9000), mtu.GuestMtu("vm1", "eth1", "52:54:00:00:00:02", 1400)]
    net = tmp_path / "net"
    for name, mac in (("eth7", "52:54:00:00:00:02"), ("eth3", "52:54:00:00:00:01")):
        (net / name).mkdir(parents=True)
        (net / name / "address").write_text(mac + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ip").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n")
    (bin_dir / "ip").chmod(0o755)
    script = mtu.guest_script(nics).replace("/sys/class/net/", f"{net}/")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=10)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text() == "link set dev eth3 mtu 9000\nlink set dev eth7 mtu 1400\n"
    missing = mtu.guest_script([mtu.GuestMtu("vm1", "eth0", "52:54:00:00:00:09", 9000)]).replace("/sys/class/net/", f"{net}/")
    done = subprocess.run(["sh", "-c", missing], capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=10)
    assert done.returncode == 1 and done.stderr == "no interface with MAC 52:54:00:00:00:09\n"


def test_configure_label_names_the_bridges_and_guests():
    feature = mtu.Mtu()
    assert feature.configure_label(lesson_plan()) == "MTU: jumbo 9000 (and its ports), small 1400 (and its ports), guest NICs of jumbo1, router, small1"
    assert feature.configure_label(make_plan(load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml"), "x", PlanOptions(kernel=KERNEL))) is None


# -- the kernel, in a scratch namespace (root) ----------------------------------------------------------


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_a_bridge_set_by_hand_keeps_its_mtu_but_its_ports_keep_theirs():
    """Why the feature sets every port: the kernel leaves a port joining a 9000 bridge at 1500."""
    from vnetlab.backends import linux_bridge, netns

    ns = f"vnlmtutest-{os.getpid()}"
    netns.create_namespace(ns)
    try:
        linux_bridge.create_bridge(ns, "br0", "02:00:00:00:00:01")
        mtu.set_mtus(ns, [("br0", 9000)])
        linux_bridge.create_veth(ns, "p0", ns, "p1")
        linux_bridge.attach_to_bridge(ns, "p0", "br0")
        assert {k: v for k, v in mtu.link_mtus(ns).items() if k in ("br0", "p0")} == {"br0": 9000, "p0": 1500}
        mtu.set_mtus(ns, [("p0", 9000)])
        mtu.set_mtus(ns, [("p0", 1400)])
        assert mtu.link_mtus(ns)["br0"] == 9000  # set by hand: no longer derived from the ports
        with pytest.raises(mtu.MtuError, match=r"setting the MTU of 'nope' to 1400: no such link in namespace"):
            mtu.set_mtus(ns, [("nope", 1400)])
        with pytest.raises(mtu.MtuError, match=r"setting the MTU of 'p1' to 20 in namespace .*: the kernel refused: "):
            mtu.set_mtus(ns, [("p1", 20)])
    finally:
        netns.delete_namespace(ns)
    assert not netns.namespace_exists(ns)


def test_the_scenario_file_names_its_schema_first():
    text = (SCENARIOS_DIR / "mtu-pmtu.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../schema/scenario.schema.json"
    assert yaml.safe_load(text)["name"] == "mtu-pmtu"


def test_a_pmtu_target_takes_a_pings_forms_across_a_router():
    """A node behind a router by name (its first address), NODE.NIC, a template: as a ping's `to`."""
    text = BASE.replace("      - {bridge: jumbo, address: 10.9.0.3/24, mtu: 4000}", "      - {bridge: plain, address: 10.8.0.3/24}")
    text = text.replace("  - name: vm1\n    nics:\n      - {bridge: jumbo, address: 10.9.0.2/24}\n      - {bridge: plain, address: 10.8.0.2/24}\n",
                        "  - name: vm1\n    nics:\n      - {bridge: jumbo, address: 10.9.0.2/24}\n  - name: router\n    nics:\n      - {bridge: jumbo, address: 10.9.0.1/24}\n      - {bridge: plain, address: 10.8.0.1/24}\n")
    checks = ("pmtu: {from: vm1, to: vm2, size: 100}", "pmtu: {from: vm1, to: router.eth1, size: 100}", 'pmtu: {from: vm1, to: "{{ vm2.ip }}", size: 100}')
    assert problems(with_checks(*checks, base=text)) == []
    plan = plan_of(with_checks(*checks, base=text))
    assert [mtu.pmtu_target(plan, c.spec) for c in plan.scenario.checks] == ["10.8.0.3", "10.8.0.1", "10.8.0.3"]
    assert mtu.check_name(plan.scenario.checks[2].spec, plan) == "pmtu vm1 → 10.8.0.3: 128-byte packets, don't fragment"
