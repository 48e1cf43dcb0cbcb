"""netem on guest NICs and the ping assertions it makes useful, without guests: values, the tc
command, the plan and --explain, and how a ping check judges round-trip times and loss."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from vnetlab.checks.ping import run_ping
from vnetlab.compose import load_scenario, parse_scenario
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.dump import plan_data
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.tools.explain import explain
from vnetlab.tools.netem import Netem, NetemValueError, apply_script, clear_script, netem_line, parse_netem

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")


@pytest.mark.parametrize(
    ("texts", "netem", "tc"),
    [
        (("40ms", "5ms", None, None), Netem(40_000, 5_000), "delay 40ms 5ms"),
        (("1.5s", None, "10%", "20mbit"), Netem(1_500_000, None, 10.0, 20_000_000), "delay 1500ms loss 10% rate 20mbit"),
        ((None, None, "0.5%", None), Netem(None, None, 0.5, None), "loss 0.5%"),
        (("250us", None, None, "512kbit"), Netem(250, None, None, 512_000), "delay 250us rate 512kbit"),
        ((None, None, None, "1gbit"), Netem(rate_bits=1_000_000_000), "rate 1gbit"),
    ],
)
def test_values_parse_to_exact_tc_arguments(texts, netem: Netem, tc: str) -> None:
    assert parse_netem(*texts) == netem
    assert " ".join(netem.tc_args()) == tc


@pytest.mark.parametrize(
    ("texts", "complaint"),
    [
        (("forty", None, None, None), "delay: expected a duration like 40ms"),
        (("61s", None, None, None), "delay: 61s is out of range"),
        ((None, None, "-1%", None), "loss: expected a percentage"),
        ((None, None, "100.5%", None), "loss: 100.5% is out of range"),
        ((None, None, None, "4kbit"), "rate: 4kbit is out of range"),
        ((None, None, None, "20mb/s"), "rate: expected a rate like 20mbit"),
        ((None, "5ms", None, None), "jitter: needs a delay"),
        ((None, None, None, None), "expected at least one of"),
        (("40ms; reboot", None, None, None), "delay: expected a duration"),
    ],
)
def test_bad_values_are_refused_with_what_was_expected(texts, complaint: str) -> None:
    with pytest.raises(NetemValueError, match=complaint):
        parse_netem(*texts)


def test_the_guest_commands_are_built_from_parsed_values() -> None:
    assert apply_script("eth0", Netem(40_000, loss_percent=1.0)) == (
        "modprobe sch_netem 2>/dev/null; /usr/sbin/tc qdisc del dev eth0 root 2>/dev/null; /usr/sbin/tc qdisc add dev eth0 root netem delay 40ms loss 1%"
    )
    assert clear_script("eth1") == "/usr/sbin/tc qdisc del dev eth1 root 2>/dev/null; true"
    shown = "qdisc netem 8001: root refcnt 2 limit 1000 delay 40ms  5ms rate 20Mbit\nqdisc pfifo 0: parent 8001:\n"
    assert netem_line(shown) == "qdisc netem 8001: root refcnt 2 limit 1000 delay 40ms 5ms rate 20Mbit"
    assert netem_line("qdisc noqueue 0: root refcnt 2\n") is None


def test_bad_scenario_values_are_exit_2_material_with_their_line() -> None:
    text = (SCENARIOS_DIR / "impaired-link.yaml").read_text().replace("delay: 40ms", "delay: 40 parsecs")
    line = next(n for n, content in enumerate(text.splitlines(), 1) if "40 parsecs" in content)
    with pytest.raises(ValidationError) as raised:
        parse_scenario(text, "lab.yaml")
    [problem] = raised.value.problems
    assert (problem.line, problem.field) == (line, "vms[0].nics[0].netem.delay") and "expected a duration like 40ms" in problem.message


def test_the_plan_puts_netem_in_the_guests_and_explain_shows_the_commands() -> None:
    plan = make_plan(load_scenario(SCENARIOS_DIR / "impaired-link.yaml"), "impaired-link", PlanOptions(kernel=KERNEL))
    assert plan_data(plan)["netem"] == [
        {"vm": "vm1", "nic": "eth0", "netem": "delay 40 ms ± 5 ms, rate 20 Mbit/s", "where": "guest",
         "tc": "modprobe sch_netem 2>/dev/null; /usr/sbin/tc qdisc del dev eth0 root 2>/dev/null; /usr/sbin/tc qdisc add dev eth0 root netem delay 40ms 5ms rate 20mbit"},
        {"vm": "vm2", "nic": "eth0", "netem": "loss 20%", "where": "guest",
         "tc": "modprobe sch_netem 2>/dev/null; /usr/sbin/tc qdisc del dev eth0 root 2>/dev/null; /usr/sbin/tc qdisc add dev eth0 root netem loss 20%"},
    ]
    text = explain(plan)
    assert "vm1$ modprobe sch_netem 2>/dev/null; /usr/sbin/tc qdisc del dev eth0 root 2>/dev/null; /usr/sbin/tc qdisc add dev eth0 root netem delay 40ms 5ms rate 20mbit" in text
    assert "inside the guests (this host's kernel lacks the netem qdisc (CONFIG_NET_SCH_NETEM)" in text


# -- the ping check's round-trip and loss assertions -------------------------------------------


class _Node:
    def __init__(self, stdout: str):
        self.stdout = stdout

    def run(self, argv, timeout):  # the one thing the ping runner asks of a node
        return SimpleNamespace(stdout=self.stdout, stderr="", exit_code=0)


def _ping(extra: str, stdout: str):
    text = (
        "name: p\nbridges: [{name: br0, subnet: 10.1.1.0/24}]\nvms:\n"
        "  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}\n  - {name: vm2, nics: [{bridge: br0, address: 10.1.1.3/24}]}\n"
        f"checks:\n  - ping: {{from: vm1, to: vm2, count: 10{extra}}}\n"
    )
    plan = make_plan(parse_scenario(text, "p.yaml"), "p", PlanOptions(kernel=KERNEL))
    ctx = SimpleNamespace(plan=plan, node=lambda name: _Node(stdout))
    return run_ping(ctx, plan.scenario.checks[0].spec)


SLOW = "10 packets transmitted, 10 packets received, 0% packet loss\nround-trip min/avg/max = 40.5/45.25/52.0 ms\n"
LOSSY = "10 packets transmitted, 8 received, 20% packet loss, time 9ms\nrtt min/avg/max/mdev = 0.3/0.4/0.9/0.1 ms\n"


def test_rtt_bounds_are_judged_on_the_average_and_reported() -> None:
    ok = _ping(", rtt-min-ms: 30, rtt-max-ms: 100", SLOW)
    assert ok.ok and ok.detail.endswith("average round trip at least 30 ms and at most 100 ms: min/avg/max 40.5/45.25/52 ms")
    assert (ok.data["rtt_min_ms"], ok.data["rtt_avg_ms"], ok.data["rtt_max_ms"]) == (40.5, 45.25, 52.0)
    too_fast = _ping(", rtt-min-ms: 30", LOSSY.replace("8 received", "10 received"))
    assert not too_fast.ok and "min/avg/max 0.3/0.4/0.9 ms" in too_fast.detail
    too_slow = _ping(", rtt-max-ms: 45", SLOW)
    assert not too_slow.ok


def test_loss_max_allows_that_much_loss_and_no_more() -> None:
    assert not _ping("", LOSSY).ok  # by default every echo must come back
    within = _ping(", loss-max: 25", LOSSY)
    assert within.ok and within.data["loss_percent"] == 20.0
    assert within.detail.startswith("expected at most 25% of 10 echo requests to 10.1.1.3 lost, lost 20% (8/10 replies)")
    assert not _ping(", loss-max: 10", LOSSY).ok
    assert not _ping(", loss-max: 100", LOSSY.replace("8 received", "0 received")).ok  # nothing came back: not a path


FULL_KERNEL = frozenset({"netem", "ifb", "mirred", "tbf", "stp", "vxlan", "vlan_filtering", "vlan", "mtu_9000"})


def test_where_the_host_kernel_has_netem_ifb_and_mirred_the_taps_are_impaired_on_the_host() -> None:
    scenario = load_scenario(SCENARIOS_DIR / "impaired-link.yaml")
    host = make_plan(scenario, "impaired-link", PlanOptions(kernel=KERNEL, host_kernel=FULL_KERNEL))
    links = host.part("netem").links
    assert [(link.vm, link.nic, link.where, link.ifb) for link in links] == [("vm1", "eth0", "host", "nq_0"), ("vm2", "eth0", "host", "nq_1")]
    assert [link.tap for link in links] == [host.vm("vm1").nics[0].tap, host.vm("vm2").nics[0].tap]
    assert host.notes == ("netem (vm1 eth0, vm2 eth0) runs on the host: each tap's ingress is redirected to an ifb device with the netem qdisc",)
    assert [r.name for r in host.resources if r.kind == "ifb"] == ["nq_0", "nq_1"]
    text = explain(host)
    tap = links[0].tap
    assert f"tc -n vnl-impaired-link filter add dev {tap} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev nq_0" in text
    assert "tc -n vnl-impaired-link qdisc add dev nq_0 root handle 1: netem delay 40ms 5ms\n" in text
    assert "tc -n vnl-impaired-link qdisc add dev nq_0 parent 1: handle 2: tbf rate 20mbit burst 16000 latency 400ms" in text
    assert "tc -n vnl-impaired-link qdisc add dev nq_1 root handle 1: netem loss 20%\n" in text
    assert "vm1$ modprobe sch_netem" not in text
    assert plan_data(host)["netem"][0]["where"] == "host"
    # One capability missing and every NIC goes back into its guest, saying which.
    for missing in ("netem", "ifb", "mirred"):
        guest = make_plan(scenario, "impaired-link", PlanOptions(kernel=KERNEL, host_kernel=FULL_KERNEL - {missing}))
        assert {link.where for link in guest.part("netem").links} == {"guest"} and not [r for r in guest.resources if r.kind == "ifb"]
        assert guest.notes[0].startswith("netem (vm1 eth0, vm2 eth0) runs inside the guests: this host's kernel lacks ") and missing.upper()[:3] in guest.notes[0].upper()
