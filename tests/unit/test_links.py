"""Link faults without root: the action's model and rules, the links of a plan and their commands, a
ping's recovery from its output, the runner's background checks and undos (with stand-in kinds),
the judges of actions and of pings that must fail, and the summary's tally."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from vnetlab.checks import runner
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence
from vnetlab.checks.parse import ping_replies
from vnetlab.checks.ping import judge_ping
from vnetlab.checks.recovery import first_sequence, longest_outage
from vnetlab.errors import Interrupted
from vnetlab.features import links
from vnetlab.tools.explain import explain
from vnetlab.tools.report import tally_text
from scenario_helpers import KERNEL, checks_appended, plan_of, problems

BASE = """\
name: lf
bridges:
  - {name: br1, subnet: 10.1.1.0/24, stp: true}
  - {name: br2, stp: true}
bridge-links:
  - between: [br1, br2]
vms:
  - name: vm1
    nics: [{bridge: br1, address: 10.1.1.1/24}]
  - name: vm2
    nics: [{bridge: br2, address: 10.1.1.2/24}]
containers:
  - {name: c1, nic: {bridge: br1, address: 10.1.1.9/24}}
"""


def lab(*checks: str) -> str:
    return checks_appended(BASE, *checks) if checks else BASE


# -- the model -----------------------------------------------------------------------------------


def test_the_issue_s_actions_load_and_a_recovery_ping_before_them():
    text = lab(
        "ping: {from: vm1, to: vm2, count: 100, measure: recovery, recovery-max-s: 5}",
        "action: {link: vm1.eth0, state: down}",
        "action: {netem: {link: vm2.eth0, loss: 30%}}",
        "action: {wait: 2s}",
        "action: {link: [br2, br1], state: down}",
        "action: {link: c1.eth0, state: up}",
    )
    assert problems(text) == []
    plan = plan_of(text, "lf")
    kinds = [c.kind for c in plan.scenario.checks]
    assert kinds == ["ping", "action", "action", "action", "action", "action"]
    assert plan.scenario.checks[0].ping.recovery_max_s == 5.0


@pytest.mark.parametrize("action, found", [
    ("{link: vm1.eth0, state: sideways}", "lab.yaml:15: checks[0].action.state: expected one of: up, down; got 'sideways'"),
    ("{link: vm1.eth0}", "lab.yaml:15: checks[0].action: state: missing (expected up or down: what to do to the link)"),
    ("{wait: 1s, state: up}", "lab.yaml:15: checks[0].action: state goes with link: (the link to take down or bring up)"),
    ("{wait: 1s, link: vm1.eth0}", "lab.yaml:15: checks[0].action: expected exactly one of: link (with state), netem, wait"),
    ("{link: vm1, state: down}", "lab.yaml:15: checks[0].action.link: expected NODE.NIC (e.g. vm1.eth0) or [br1, br2], got 'vm1'"),
    ("{link: [br1, br2, br1], state: down}", "lab.yaml:15: checks[0].action.link: a link between bridges is [br1, br2]: expected two bridge names, got 3"),
    ("{link: c1.eth1, state: down}", "lab.yaml:15: checks[0].action.link: container 'c1' has no interface named 'eth1' (its interfaces: eth0)"),
    ("{wait: 11m}", "lab.yaml:15: checks[0].action.wait: expected a duration like 40ms, 1.5s or 500us, got '11m'"),
    ("{wait: 601s}", "lab.yaml:15: checks[0].action.wait: 601s is out of range (0 to 600s)"),
])
def test_bad_actions_are_located(action, found):
    assert problems(lab(f"action: {action}")) == [found]


def test_a_bridge_link_is_named_in_either_order_and_a_routed_uplink_is_refused():
    assert links.link_problem(SimpleNamespace(bridge_links=[SimpleNamespace(between=["br1", "br2"])]), ["br2", "br1"]) is None
    routed = """\
name: up
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}
hosts:
  - {name: inet1, address: 203.0.113.2/24, uplink: {name: eth0, address: 203.0.113.1/24}}
checks:
  - action: {link: inet1.eth0, state: down}
"""
    assert problems(routed) == ["lab.yaml:8: checks[0].action.link: host 'inet1' is behind a routed uplink: taking its link down would delete the lab namespace's routes through it"]


def test_a_switch_guests_port_is_a_link_where_the_bridge_may_run_in_one():
    """vlans: on a Linux bridge puts it in a switch guest (sw-br0) where the host kernel cannot filter
    VLANs: the plan decides, so the model accepts sw-br0.pN, and the run finds it or says it is not there."""
    from vnetlab.compose import parse_scenario
    from vnetlab.plan.planner import PlanOptions, make_plan

    text = """\
name: sw
bridges:
  - {name: br0, vlans: {10: 10.0.10.0/24}}
vms:
  - {name: vm1, nics: [{bridge: br0, vlan: 10, address: 10.0.10.2/24}]}
  - {name: vm2, nics: [{bridge: br0, vlan: 10, address: 10.0.10.3/24}]}
checks:
  - action: {link: sw-br0.p2, state: down}
"""
    assert problems(text) == []
    assert problems(text.replace("vlans:", "in: host, vlans:")) == ["lab.yaml:8: checks[0].action.link: no VM, container or host named 'sw-br0'"]
    scenario = parse_scenario(text, "lab.yaml")
    in_guest = make_plan(scenario, "sw", PlanOptions(kernel=KERNEL))
    port = links.find_link(in_guest, "sw-br0.p2")
    assert port.vm.name == "sw-br0" and port.mac == in_guest.vm("sw-br0").nics[1].mac
    on_host = make_plan(scenario, "sw", PlanOptions(kernel=KERNEL, host_kernel=frozenset({"vlan_filtering"})))
    with pytest.raises(links.UnknownLink, match=r"lab sw has no link 'sw-br0\.p2' \(links: vm1\.eth0, vm2\.eth0\)"):
        links.find_link(on_host, "sw-br0.p2")


# -- the links of a plan, and what they are by hand --------------------------------------------------


def test_every_link_of_a_plan_and_how_it_is_pulled():
    plan = plan_of(lab(), "lf")
    found = {link.label: link for link in links.planned_links(plan)}
    assert list(found) == ["vm1.eth0", "vm2.eth0", "c1.eth0", "br1↔br2"]
    vm2 = found["vm2.eth0"]
    assert vm2.vm.name == "vm2" and vm2.mac == plan.vm("vm2").nics[0].mac and vm2.ifname is None
    assert links.link_command(plan, vm2, "down") == f"virsh domif-setlink vnl-lf-vm2 {vm2.mac} down"
    assert links.link_command(plan, found["c1.eth0"], "down") == f"ip -n vnl-lf link set {plan.nodes[0].veth} down"
    assert links.link_command(plan, found["br1↔br2"], "up") == "ip -n vnl-lf link set vnlbl0a up"
    assert links.find_link(plan, ["br2", "br1"]).label == "br1↔br2"
    with pytest.raises(links.UnknownLink, match=r"lab lf has no link 'vm9\.eth0' \(links: vm1\.eth0, vm2\.eth0, c1\.eth0, br1↔br2\)"):
        links.find_link(plan, "vm9.eth0")


def test_explain_prints_each_action_and_the_recovery_ping_in_the_background():
    text = explain(plan_of(lab(
        "ping: {from: vm1, to: vm2, count: 40, measure: recovery}",
        "action: {wait: 1.5s}",
        "action: {link: [br1, br2], state: down}",
        "action: {netem: {link: vm1.eth0, delay: 40ms}}",
    ), "lf"))
    assert "vm1$ /usr/bin/ping -D -c 40 -i 0.05 -W 2 10.1.1.2 > recovery.txt &    # the lines below run while it does" in text
    assert "\nsleep 1.5\n" in text
    assert "ip -n vnl-lf link set vnlbl0a down    # the bridge link's veth: its end vnlbl0a on br1; as it was before at the end of the checks" in text
    assert "vm1$ modprobe sch_netem 2>/dev/null; /usr/sbin/tc qdisc del dev eth0 root 2>/dev/null; /usr/sbin/tc qdisc add dev eth0 root netem delay 40ms    # at the end of the checks: removed" in text


# -- a recovery, from the ping's own output ---------------------------------------------------------


def iputils(replied: list[int], sent: int, start: float = 1000.0, every: float = 0.05) -> str:
    lines = [f"[{start + (seq - 1) * every:.6f}] 64 bytes from 10.1.1.2: icmp_seq={seq} ttl=64 time=0.4 ms" for seq in replied]
    return "PING 10.1.1.2\n" + "\n".join(lines) + f"\n\n--- 10.1.1.2 ping statistics ---\n{sent} packets transmitted, {len(replied)} received, 50% packet loss\n"


def test_the_longest_run_of_losses_is_the_outage_timed_by_the_replies():
    text = iputils([*range(1, 11), 13, *range(40, 61)], 60)
    outage = longest_outage(ping_replies(text), 60, 0.05, first_sequence(text))
    assert (outage.lost, outage.first_lost, outage.last_reply, outage.resumed, outage.timed) == (26, 14, 13, 40, True)
    assert outage.seconds == pytest.approx(27 * 0.05)


def test_busybox_output_is_timed_by_sequence_numbers_and_a_start_inside_the_outage_counts_from_the_start():
    text = "\n".join(f"64 bytes from 10.1.1.2: seq={s} ttl=64 time=0.5 ms" for s in range(30, 40)) + "\n40 packets transmitted, 10 packets received, 75% packet loss\n"
    outage = longest_outage(ping_replies(text), 40, 0.05, first_sequence(text))
    assert (outage.lost, outage.first_lost, outage.last_reply, outage.resumed, outage.timed, outage.seconds) == (30, 0, None, 30, False, 1.5)


def test_timestamps_that_run_backwards_are_not_believed():
    text = iputils([1, 2, 30], 30).replace("[1000.050000]", "[2000.000000]")  # seq 2 stamped after seq 30
    outage = longest_outage(ping_replies(text), 30, 0.05, 1)
    assert (outage.timed, outage.seconds) == (False, pytest.approx(1.4))


def test_no_loss_and_no_recovery():
    assert longest_outage(ping_replies(iputils(list(range(1, 21)), 20)), 20, 0.05, 1) is None
    never = longest_outage(ping_replies(iputils(list(range(1, 6)), 20)), 20, 0.05, 1)
    assert (never.lost, never.resumed, never.seconds) == (15, None, None)


def recovery_ping(limit: float | None = 5.0) -> SimpleNamespace:
    return SimpleNamespace(source="vm1", to="10.1.1.2", count=60, expect="success", measure="recovery", recovery_max_s=limit, via=None, loss_max=None, rtt_min_ms=None, rtt_max_ms=None)


def judged(ping: SimpleNamespace, stdout: str, stderr: str = "", exit: int = 0, **more) -> CheckResult:
    plan = plan_of(lab(), "lf")
    return judge_ping(plan, ping, Evidence({"command": "ping", "exit": exit, "stdout": stdout, "stderr": stderr, **more}))


def test_a_recovery_within_its_bound_passes_and_says_when_the_ping_ran():
    result = judged(recovery_ping(), iputils([*range(1, 11), *range(40, 61)], 60), started_s=0.5, ended_s=4.2)
    assert result.ok and result.data["recovery_s"] == pytest.approx(1.5) and result.data["outage_lost"] == 29
    assert result.detail == (
        "replies stopped after seq 10 and came back at seq 40: 1.5 s without a reply (29 of 60 requests lost; by the replies' timestamps)"
        " (at most 5 s allowed); it ran from +0.5 s to +4.2 s of the checks"
    )
    assert not judged(recovery_ping(1.0), iputils([*range(1, 11), *range(40, 61)], 60)).ok


def test_a_ping_that_lost_nothing_or_never_recovered_measured_no_recovery():
    nothing = judged(recovery_ping(), iputils(list(range(1, 61)), 60))
    assert not nothing.ok and nothing.detail.startswith("no echo reply from 10.1.1.2 was lost (60/60): no outage to measure a recovery from")
    never = judged(recovery_ping(None), iputils(list(range(1, 11)), 60))
    assert not never.ok and "never came back" in never.detail


# -- pings that must fail: which failure it was ------------------------------------------------------


def failing(expect: str) -> SimpleNamespace:
    return SimpleNamespace(source="vm1", to="10.9.9.9", count=2, expect=expect, via=None, measure=None)


def test_no_route_from_the_source_is_a_failure_and_says_so_but_not_the_wires():
    said = "ping: sendto: Network is unreachable\n"
    refused = judged(failing("failure"), "PING 10.9.9.9 (10.9.9.9): 56 data bytes\n", said, exit=1)
    assert refused.ok and refused.data["failure"] == "no route"
    assert refused.detail == "no route from the source: `ping -c 2 -i 0.01 -W 2 10.9.9.9` said 'Network is unreachable' (exit 1): vm1 has no route to 10.9.9.9, nothing was sent"
    wire = judged(failing("no-reply"), "PING 10.9.9.9 (10.9.9.9): 56 data bytes\n", said, exit=1)
    assert not wire.ok and wire.detail.startswith("expected the requests to leave vm1 and get no reply; but `ping")


def test_no_reply_on_the_wire_passes_both_and_a_reply_fails_both():
    silent = "2 packets transmitted, 0 packets received, 100% packet loss\n"
    for expect in ("failure", "no-reply"):
        result = judged(failing(expect), silent, exit=1)
        assert result.ok and result.data["failure"] == "no reply" and result.detail.endswith(": no reply on the wire (the requests left the source, nothing came back)")
        assert not judged(failing(expect), "2 packets transmitted, 1 packets received, 50% packet loss\n", exit=1).ok


def test_a_ping_killed_by_a_signal_says_so():
    result = judged(SimpleNamespace(source="vm1", to="10.1.1.2", count=2, expect="success", via=None, measure=None), "", exit=-1, signal="TERM")
    assert not result.ok and "printed no summary (killed by signal TERM)" in result.detail


# -- the runner: background checks, actions put back ---------------------------------------------------


@pytest.fixture
def plan_with_actions():
    return plan_of(lab(
        "ping: {from: vm1, to: vm2, count: 40, measure: recovery}",
        "action: {link: vm1.eth0, state: down}",
        "action: {wait: 1s}",
        "action: {link: vm1.eth0, state: up}",
        "action: {link: c1.eth0, state: down}",
    ), "lf")


def stand_ins(log: list, started: threading.Event, *, fail_at: str | None = None):
    """A background 'ping' that waits until the first action happened, and actions that log what they do."""

    def ping(ctx, spec):
        assert started.wait(5), "the action after a background check ran before it was started"
        log.append("ping collected")
        return Evidence({"stdout": ""})

    def act(ctx, spec):
        what = f"{spec.link} {spec.state}" if spec.link else f"wait {spec.wait}"
        started.set()
        if what == fail_at:
            raise Interrupted("SIGINT")
        log.append(what)
        return Evidence({"restores": f"link {spec.link}", "before": "up"} if spec.link else {})

    def undo(ctx, spec, evidence):
        log.append(f"undo {spec.link} to {evidence.data['before']}")
        return {"undone": "up again"}

    return {
        "ping": CheckKind(ping, lambda plan, spec, evidence: CheckResult("p", "ping", True, ""), background=lambda spec: True),
        "action": CheckKind(act, lambda plan, spec, evidence: CheckResult("a", "action", True, ""), undo=undo),
    }


def test_a_background_check_runs_beside_the_actions_and_each_link_is_put_back_once(monkeypatch, plan_with_actions, tmp_path):
    log: list[str] = []
    monkeypatch.setattr(runner, "check_kinds", lambda plan: stand_ins(log, threading.Event()))
    collected = runner.collect_checks(plan_with_actions, {}, tmp_path)
    assert collected.evidence[0].error is None  # the ping was collected beside the actions: it waited for the first of them
    assert [e for e in log if e != "ping collected"][:4] == ["vm1.eth0 down", "wait 1s", "vm1.eth0 up", "c1.eth0 down"]
    assert log[-2:] == ["undo c1.eth0 to up", "undo vm1.eth0 to up"]  # newest first, from the first action on each
    assert collected.evidence[1].data["undone"] == "up again" and "undone" not in collected.evidence[3].data
    assert sorted(collected.evidence) == [0, 1, 2, 3, 4]


def test_ctrl_c_among_the_actions_still_puts_back_what_they_changed(monkeypatch, plan_with_actions, tmp_path):
    log: list[str] = []
    monkeypatch.setattr(runner, "check_kinds", lambda plan: stand_ins(log, threading.Event(), fail_at="wait 1s"))
    with pytest.raises(Interrupted):
        runner.collect_checks(plan_with_actions, {}, tmp_path)
    assert log[-1] == "undo vm1.eth0 to up" and "c1.eth0 down" not in log


def test_ctrl_c_during_a_links_change_still_puts_it_back(monkeypatch, plan_with_actions, tmp_path):
    """The action keeps its record (what to put back) before it changes the link: a Ctrl-C in the
    middle of the change, which used to be ignored there, ends the checks and the link is put back."""
    log: list[str] = []
    kinds = stand_ins(log, threading.Event())

    class NoNetlink:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def changing(plan, link, state, connections):
        raise Interrupted("SIGINT")  # the signal lands while the link is being changed

    monkeypatch.setattr(links, "Connections", NoNetlink)
    monkeypatch.setattr(links, "read_state", lambda plan, link, connections: "up")
    monkeypatch.setattr(links, "set_state", changing)
    kinds["action"] = CheckKind(links.collect_action, kinds["action"].judge, undo=kinds["action"].undo)
    monkeypatch.setattr(runner, "check_kinds", lambda plan: kinds)
    with pytest.raises(Interrupted):
        runner.collect_checks(plan_with_actions, {}, tmp_path)
    assert log[-1] == "undo vm1.eth0 to up"


def test_an_undo_that_fails_is_the_actions_failure(monkeypatch, plan_with_actions, tmp_path):
    kinds = stand_ins([], threading.Event())

    def broken(ctx, spec, evidence):
        raise OSError("the daemon is gone")

    kinds["action"] = CheckKind(kinds["action"].collect, links.judge_action, undo=broken)
    monkeypatch.setattr(runner, "check_kinds", lambda plan: kinds)
    collected = runner.collect_checks(plan_with_actions, {}, tmp_path)
    assert collected.evidence[1].data["undo_error"] == "OSError: the daemon is gone"


# -- judging an action's record ------------------------------------------------------------------


def test_an_actions_verdict_comes_from_its_record():
    plan = plan_of(lab(), "lf")
    pull = links.ActionSpec(link="vm2.eth0", state="down")
    record = {"action": "link", "link": "vm2.eth0", "how": "the guest NIC's carrier, through libvirt", "at_s": 1.25, "state": "down", "before": "up", "after": "down", "undone": "up again"}
    done = links.judge_action(plan, pull, Evidence(dict(record)))
    assert done.ok and done.action and done.name == "link vm2.eth0 down"
    assert done.detail == "at +1.25 s: vm2.eth0 down (the guest NIC's carrier, through libvirt; it was up); put back at the end of the checks (up again)"
    assert not links.judge_action(plan, pull, Evidence({**record, "after": "up"})).ok
    stuck = links.judge_action(plan, pull, Evidence({**record, "undo_error": "HypervisorError: gone"}))
    assert not stuck.ok and stuck.detail.endswith("could NOT be put back at the end of the checks: HypervisorError: gone")
    assert links.judge_action(plan, links.ActionSpec(wait="2s"), Evidence({"action": "wait", "at_s": 3, "seconds": 2.0})).detail == "at +3 s: waited 2 s"


def test_the_tally_counts_actions_apart():
    check, act = CheckResult("c", "ping", True, ""), CheckResult("a", "action", True, "", action=True)
    assert tally_text([]) == "no checks"
    assert tally_text([check, act, act]) == "1/1 checks passed, 2 actions done"
    assert tally_text([check, CheckResult("a", "action", False, "", action=True), act]) == "1/1 checks passed, 1/2 actions done"
    assert act.to_json()["action"] is True and "action" not in check.to_json()


def test_graph_marks_the_links_the_checks_act_on():
    from vnetlab.tools.graph import to_dot, topology

    dot = to_dot(topology(plan_of(lab("action: {link: vm2.eth0, state: down}", "action: {link: [br2, br1], state: down}", "action: {link: c1.eth0, state: up}"), "lf")))
    assert dot.count("checks: down") == 2 and dot.count("checks: up") == 1
    assert 'bridge_br1 -- bridge_br2 [label="bridge link vnlbl0a ↔ vnlbl0b\\nchecks: down"]' in dot


def test_up_says_the_lab_is_ready_rather_than_0_of_0_checks(capsys):
    from vnetlab.cli import make_console
    from vnetlab.compose import registry
    from vnetlab.run.lab import Outcome
    from vnetlab.tools.report import print_summary

    print_summary(make_console(), Outcome("two-vm-ping", "lab1", kept=True), [], registry())
    shown = capsys.readouterr().out
    assert "UP two-vm-ping (lab lab1): ready, no checks run, accel ?" in shown and "0/0" not in shown
