"""`--explain`: the equivalent shell commands, a pure function of the plan, pinned by golden text.

Regenerate after an intended change with
`VNETLAB_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_explain.py` and review the diff.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vnetlab.cli import main
from vnetlab.compose import compose, default_features, registry
from vnetlab.features.base import Feature
from vnetlab.features.wireguard import WireGuard, guest_commands
from vnetlab.model.validate import load_scenario
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.tools import explain as ex

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared golden helper
from goldens import compare_golden  # noqa: E402

GOLDEN = Path(__file__).parents[1] / "golden"
KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")


def plan_of(name: str, lab: str | None = None):
    scenario = load_scenario(SCENARIOS_DIR / f"{name}.yaml", registry())
    return make_plan(scenario, lab or scenario.name, PlanOptions(kernel=KERNEL))


@pytest.mark.parametrize("name", ["wireguard-vpn", "ovs-two-vm-ping", "bridge-device-ops", "ex-two-vm-ping"])
def test_explain_matches_golden(name):
    text = ex.explain(plan_of(name))
    compare_golden(GOLDEN / name / "explain.txt", text)


def test_two_vm_ping_in_full():
    """The smallest lab, spelled out: every line is what apply/configure/checks/teardown do."""
    plan = plan_of("two-vm-ping", "s1-ex")
    m1, e1 = (n.tap for n in plan.vm("vm1").all_nics)
    m2, e2 = (n.tap for n in plan.vm("vm2").all_nics)
    mgmt_mac, br0_mac = plan.bridge("vnl-mgmt").mac, plan.bridge("br0").mac
    key = "/var/lib/vnetlab/labs/s1-ex/secrets/id_ed25519"
    guests = "/var/lib/vnetlab/labs/s1-ex/guests"
    assert ex.explain(plan) == f"""\
# vnetlab --explain: lab s1-ex (scenario two-vm-ping), as commands you can run by hand as root

## 1. Lab namespace vnl-s1-ex (everything below lives in it; nothing is addressed in the root namespace)
ip netns add vnl-s1-ex
ip netns exec vnl-s1-ex sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n vnl-s1-ex link set lo up

## 2. Bridges (vnl-mgmt is vnetlab's management bridge: SSH to the guests)
ip -n vnl-s1-ex link add vnl-mgmt address {mgmt_mac} type bridge
ip -n vnl-s1-ex link set vnl-mgmt up
ip -n vnl-s1-ex addr add 172.30.255.1/24 dev vnl-mgmt
ip -n vnl-s1-ex link add br0 address {br0_mac} type bridge
ip -n vnl-s1-ex link set br0 up

## 3. Guests: taps and domains
# each vNIC is a tap made down in the root namespace (the only place libvirt opens it), the guest starts
# paused, its taps move into the lab namespace and join their bridges, then the guest runs
# vm1
tunctl -t {m1}    # or: ip tuntap add dev {m1} mode tap
tunctl -t {e1}    # or: ip tuntap add dev {e1} mode tap
virsh define {guests}/vm1/domain.xml    # `vnetlab plan --xml` prints it
virsh start --paused vnl-s1-ex-vm1
ip link set {m1} netns vnl-s1-ex
ip -n vnl-s1-ex link set {m1} master vnl-mgmt up
ip link set {e1} netns vnl-s1-ex
ip -n vnl-s1-ex link set {e1} master br0 up
virsh resume vnl-s1-ex-vm1
# vm2
tunctl -t {m2}    # or: ip tuntap add dev {m2} mode tap
tunctl -t {e2}    # or: ip tuntap add dev {e2} mode tap
virsh define {guests}/vm2/domain.xml    # `vnetlab plan --xml` prints it
virsh start --paused vnl-s1-ex-vm2
ip link set {m2} netns vnl-s1-ex
ip -n vnl-s1-ex link set {m2} master vnl-mgmt up
ip link set {e2} netns vnl-s1-ex
ip -n vnl-s1-ex link set {e2} master br0 up
virsh resume vnl-s1-ex-vm2

## 4. Addresses inside the guests
# `vmN$ command` means: run it in that guest, logged in with the line above it
# vm1: ip netns exec vnl-s1-ex ssh -i {key} root@172.30.255.2
vm1$ ip addr add 10.1.1.2/24 dev eth0
vm1$ ip link set eth0 up
# vm2: ip netns exec vnl-s1-ex ssh -i {key} root@172.30.255.3
vm2$ ip addr add 10.1.1.3/24 dev eth0
vm2$ ip link set eth0 up

## 5. Checks, in scenario order
ip netns exec vnl-s1-ex tcpdump -ni br0 -w br0.pcap &    # for the whole check phase
vm1$ ping -c 3 -i 0.01 -W 2 10.1.1.3
vm2$ ping -c 3 -i 0.01 -W 2 10.1.1.2
kill $(jobs -p)    # stop the capture(s), then read what the capture checks judge:
tcpdump -nr br0.pcap

## 6. Teardown (newest first)
virsh destroy vnl-s1-ex-vm2; virsh undefine vnl-s1-ex-vm2
virsh destroy vnl-s1-ex-vm1; virsh undefine vnl-s1-ex-vm1
ip netns del vnl-s1-ex    # its bridges, taps and veths go with it
"""


def test_explain_is_pure_and_uses_the_lab_name():
    a, b = ex.explain(plan_of("wireguard-vpn", "s1-a")), ex.explain(plan_of("wireguard-vpn", "s1-a"))
    assert a == b
    other = ex.explain(plan_of("wireguard-vpn", "s1-b"))
    assert "vnl-s1-a" in a and "vnl-s1-a" not in other


def test_explain_shows_what_the_guests_really_run():
    """The WireGuard lines come from the same function configure() sends over SSH."""
    plan = plan_of("wireguard-vpn")
    text = ex.explain(plan)
    for w in plan.part("wireguard"):
        for command in guest_commands(w, lambda vm: "KEY"):
            head = command.split(" peer ")[0]
            assert f"{w.vm}$ {head}" in text


def test_ovs_explain_starts_private_daemons_and_mirrors():
    text = ex.explain(plan_of("ovs-two-vm-ping", "s1-o"))
    assert "ip netns exec vnl-s1-o ovsdb-server /var/lib/vnetlab/labs/s1-o/ovs/conf.db" in text
    assert "datapath_type=netdev" in text and "select-all=true output-port=@p" in text
    assert "tcpdump -ni vnlmir0 -w br0.pcap" in text
    assert "kill $(cat /var/lib/vnetlab/labs/s1-o/ovs/ovs-vswitchd.pid)" in text


def _plan_with(features, name: str, lab: str):
    scenario = load_scenario(SCENARIOS_DIR / f"{name}.yaml", compose(features))
    return make_plan(scenario, lab, PlanOptions(kernel=KERNEL))


class _Nft(Feature):
    """A feature whose only hook is a section of commands after the addressing."""

    name = "nft-demo"

    def explain(self, plan):
        return [ex.Section("NAT", (f"ip netns exec {plan.namespace} nft -f nat.nft",), stage="configure")]


def test_a_feature_adds_its_section_where_its_stage_says():
    text = ex.explain(_plan_with((*default_features(), _Nft()), "two-vm-ping", "x"))
    assert "## 5. NAT\nip netns exec vnl-x nft -f nat.nft\n\n## 6. Checks" in text


class _QuietWireGuard(WireGuard):
    check_commands = {}


def test_check_kinds_without_commands_are_named_not_dropped():
    features = tuple(_QuietWireGuard() if f.name == "wireguard" else f for f in default_features())
    text = ex.explain(_plan_with(features, "wireguard-vpn", "wireguard-vpn"))
    assert "# (wireguard check: judged by vnetlab, see the report)" in text and "wg show" not in text


def test_plan_explain_on_the_command_line(capsys):
    assert main(["plan", "bridge-device-ops", "--name", "s1-cli", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "brctl delbr br0    # refused (EBUSY) while it is up" in out
    assert "ip -n vnl-s1-cli link set" in out and "nomaster    # brctl delif br0" in out


def test_nat_lab_explains_forwarding_and_masquerade_in_the_lab_namespace():
    text = ex.explain(plan_of("container-bridge-nat"))
    assert "ip netns exec vnl-container-bridge-nat sysctl -w net.ipv4.ip_forward=1" in text
    assert 'ip saddr 10.2.0.0/24 oifname "eth0" masquerade' in text
    assert text.index("masquerade") < text.index("Checks, in scenario order")
    assert "nft" not in ex.explain(plan_of("two-vm-ping"))
