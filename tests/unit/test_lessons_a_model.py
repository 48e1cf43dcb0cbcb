"""WireGuard tunnels, device operations and OVS bridges in the model and plan: located errors, derived commands."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether

from vnetlab.features import wireguard
from vnetlab.backends.ssh import CommandResult
from vnetlab.checks.base import CaptureSubject, CheckContext
from vnetlab.checks.parse import handshakes
from vnetlab.checks.ping import ping_target
from vnetlab.checks.runner import judges
from vnetlab.compose import parse_scenario
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.model.typed_yaml import ValidationError

WG = (SCENARIOS_DIR / "wireguard-vpn.yaml").read_text()
OPS = (SCENARIOS_DIR / "bridge-device-ops.yaml").read_text()
OVS = (SCENARIOS_DIR / "ovs-two-vm-ping.yaml").read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_scenario(text, "lab.yaml")
    return [str(p) for p in info.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# -- wireguard: model --------------------------------------------------------------


@pytest.mark.parametrize(
    "old,new,needle,expected",
    [
        ("underlay: br0", "underlay: br9", "underlay: br9", "wireguard[0].underlay: no bridge named 'br9' (bridges: br0)"),
        ("{vm: vm2, address: 192.168.2.2/24}", "{vm: vm3, address: 192.168.2.2/24}", "vm: vm3", "wireguard[0].members[1].vm: no VM named 'vm3'"),
        ("{vm: vm2, address: 192.168.2.2/24}", "{vm: vm1, address: 192.168.2.2/24}", "vm: vm1, address: 192.168.2.2", "wireguard[0].members[1].vm: duplicate member 'vm1'"),
        ("{vm: vm2, address: 192.168.2.2/24}", "{vm: vm2, address: 192.168.3.2/24}", "192.168.3.2", "wireguard[0].members[1].address: 192.168.3.2/24 is not in the tunnel's subnet 192.168.2.0/24 (from members[0])"),
        ("{vm: vm2, address: 192.168.2.2/24}", "{vm: vm2, address: 192.168.2.1/24}", "vm: vm2, address: 192.168.2.1", "wireguard[0].members[1].address: 192.168.2.1 is already used by vm1 wg0"),
        ("{vm: vm2, address: 192.168.2.2/24}", "{vm: vm2, address: 192.168.2.2}", "vm: vm2, address: 192.168.2.2}", "wireguard[0].members[1].address: expected an IPv4 address with prefix like 192.168.2.1/24, got '192.168.2.2'"),
        ("{vm: vm1, address: 192.168.2.1/24}", "{vm: vm1, address: 10.1.1.9/24}", "10.1.1.9", "wireguard[0].members[0].address: 10.1.1.0/24 overlaps 10.1.1.0/24, a subnet already in the lab (a tunnel needs its own)"),
        ("listen-port: 51820", "listen-port: 70000", "listen-port: 70000", "wireguard[0].listen-port: expected an integer from 1 to 65535, got 70000"),
        ("    listen-port: 51820\n", "    listen-port: 51820\n    mtu: 1420\n", "mtu", "wireguard[0].mtu: unknown key (expected one of: name, underlay, members, listen-port)"),
        ("  - name: wg0\n", "  - name: mgmt0\n", "name: mgmt0", "wireguard[0].name: 'mgmt0' is reserved inside the guest"),
        ("{from: vm1, to: vm2, via: wg0, count: 3}", "{from: vm1, to: vm2, via: wg9, count: 3}", "via: wg9", "checks[0].ping.via: no WireGuard tunnel named 'wg9' (tunnels: wg0)"),
        ("{from: vm1, to: vm2, via: wg0, count: 3}", "{from: vm1, to: 192.168.2.2, via: wg0, count: 3}", "to: 192.168.2.2, via", "checks[0].ping.to: with via, expected a VM name (a member of tunnel 'wg0'), got '192.168.2.2'"),
        ("wireguard: {tunnel: wg0, between: [vm1, vm2]}", "wireguard: {tunnel: wg1, between: [vm1, vm2]}", "tunnel: wg1", "checks[2].wireguard.tunnel: no WireGuard tunnel named 'wg1' (tunnels: wg0)"),
        ("wireguard: {tunnel: wg0, between: [vm1, vm2]}", "wireguard: {tunnel: wg0, between: [vm1, vm1]}", "tunnel: wg0, between", "checks[2].wireguard.between: expected two different VMs"),
        ("wireguard: {tunnel: wg0, between: [vm1, vm2]}", "wireguard: {tunnel: wg0, between: [vm1]}", "tunnel: wg0, between", "checks[2].wireguard.between: expected at least 2 item(s), got 1"),
    ],
)
def test_bad_wireguard_sections_are_located(old, new, needle, expected):
    assert old in WG
    text = WG.replace(old, new, 1)
    found = problems(text)
    assert any(p.endswith(expected) for p in found), found
    [hit] = [p for p in found if p.endswith(expected)]
    assert hit.startswith(f"lab.yaml:{line_of(text, needle)}: "), (hit, line_of(text, needle))


def test_tunnel_member_needs_an_addressed_nic_on_the_underlay():
    text = WG.replace("      - bridge: br0\n        address: 10.1.1.3/24\n", "      - bridge: br0\n")
    found = problems(text)
    assert f"lab.yaml:{line_of(text, 'vm: vm2, address')}: wireguard[0].members[1].vm: VM 'vm2' has no IPv4-addressed NIC on bridge 'br0' (the tunnel's underlay)" in found


def test_tunnel_capture_expectations_need_a_tunnel_on_that_bridge():
    text = WG.split("wireguard:\n  - name")[0] + "checks:\n  - capture: {bridge: br0, between: [vm1, vm2], expect: [no-plaintext-tunnel]}\n"
    [p] = problems(text)
    assert p.endswith("checks[0].capture.expect: no-plaintext-tunnel needs a WireGuard tunnel with underlay 'br0' joining vm1 and vm2")


def test_ping_via_needs_both_ends_in_the_tunnel():
    text = WG.replace("  - name: vm2\n", "  - name: vm3\n    nics: [{bridge: br0, address: 10.1.1.4/24}]\n  - name: vm2\n", 1)
    text = text.replace("{from: vm2, to: vm1, via: wg0, count: 3}", "{from: vm3, to: vm1, via: wg0, count: 3}")
    [p] = problems(text)
    assert p == f"lab.yaml:{line_of(text, 'from: vm3')}: checks[1].ping.from: VM 'vm3' is not a member of tunnel 'wg0'"


# -- wireguard: plan, keys, commands -------------------------------------------------


def test_plan_derives_a_full_mesh_and_the_guest_commands(tmp_path):
    plan = make_plan(parse_scenario(WG, "wg.yaml"), "s1-wg", PlanOptions(layout=_layout(tmp_path)))
    vm1, vm2 = plan.part("wireguard")
    assert (vm1.vm, vm1.address, vm1.listen_port) == ("vm1", "192.168.2.1/24", 51820)
    assert [(p.vm, p.endpoint, p.allowed_ips) for p in vm1.peers] == [("vm2", "10.1.1.3:51820", "192.168.2.2/32")]
    assert [(p.vm, p.endpoint, p.allowed_ips) for p in vm2.peers] == [("vm1", "10.1.1.2:51820", "192.168.2.1/32")]
    assert vm1.key_file == plan.lab_dir / "secrets" / "wg-wg0-vm1.key"
    assert wireguard.guest_commands(vm1, lambda vm: f"<{vm}>") == [
        "modprobe wireguard",
        "ip link add wg0 type wireguard",
        "wg set wg0 listen-port 51820 private-key /etc/wireguard/wg0.key peer <vm2> allowed-ips 192.168.2.2/32 endpoint 10.1.1.3:51820",
        "ip addr add 192.168.2.1/24 dev wg0",
        "ip link set wg0 up",
    ]
    ping = plan.scenario.checks[0].ping
    assert ping is not None and ping_target(plan, ping) == "192.168.2.2"


def _layout(tmp_path: Path):
    from vnetlab.paths import Layout

    return Layout(tmp_path)


def test_keys_are_private_once_per_lab_and_match_wg_pubkey(tmp_path):
    plan = make_plan(parse_scenario(WG, "wg.yaml"), "s1-wg", PlanOptions(layout=_layout(tmp_path)))
    wireguard.ensure_keys(plan.part("wireguard"))
    key = plan.part("wireguard")[0].key_file
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(base64.b64decode(key.read_text().strip())) == 32
    before = key.read_bytes()
    wireguard.ensure_keys(plan.part("wireguard"))
    assert key.read_bytes() == before
    assert plan.part("wireguard")[0].key_file.read_bytes() != plan.part("wireguard")[1].key_file.read_bytes()
    if os.path.exists("/usr/bin/wg"):  # the reference implementation agrees on the public key
        pub = subprocess.run(["/usr/bin/wg", "pubkey"], input=key.read_text(), capture_output=True, text=True, check=True).stdout.strip()
        assert wireguard.public_key(key) == pub


def test_parse_handshakes():
    a, b = (base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2))
    text = f"{a}\t1764330000\n{b}\t0\nnoise\n"
    assert handshakes(text) == {a: 1764330000, b: 0}


# -- wireguard: capture judges --------------------------------------------------------


def _subject(plan, packets) -> CaptureSubject:
    a, b = plan.vm("vm1"), plan.vm("vm2")
    return CaptureSubject("vm1", a.nic_on("br0"), "vm2", b.nic_on("br0"), packets)


def _frames(inner_icmp: bool, udp: int) -> list:
    eth = Ether(src="52:54:00:00:00:01", dst="52:54:00:00:00:02")
    out = [eth / IP(src="10.1.1.2", dst="10.1.1.3") / UDP(sport=51820, dport=51820) / (b"x" * 32) for _ in range(udp)]
    if inner_icmp:
        out.append(eth / IP(src="192.168.2.1", dst="192.168.2.2") / ICMP())
    return out


def test_wireguard_judges_pass_on_encrypted_traffic_and_fail_on_plaintext():
    plan = make_plan(parse_scenario(WG, "wg.yaml"), "s1-wg")
    check = plan.scenario.checks[3].capture
    assert check is not None
    good = _subject(plan, _frames(False, 12))
    assert judges(plan)["wireguard-udp"](plan, check, good).ok and judges(plan)["no-plaintext-tunnel"](plan, check, good).ok
    too_few = judges(plan)["wireguard-udp"](plan, check, _subject(plan, _frames(False, 11)))
    assert not too_few.ok and too_few.expected.startswith("≥12 UDP datagram(s) on port 51820") and too_few.seen == "11 UDP datagram(s) on port 51820"
    leak = judges(plan)["no-plaintext-tunnel"](plan, check, _subject(plan, _frames(True, 12)))
    assert not leak.ok and leak.counts == {"plaintext_tunnel_icmp": 1}


def _wg_message(src: str, dst: str, kind: int, size: int, port: int = 51820):
    eth = Ether(src="52:54:00:00:00:01", dst="52:54:00:00:00:02")
    return eth / IP(src=src, dst=dst) / UDP(sport=port, dport=port) / (bytes([kind, 0, 0, 0]) + b"\0" * (size - 4))


def _wg_capture(plan, expectation: str):
    """The scenario's capture check with `expect: [expectation]` (validated like a scenario's)."""
    text = WG.replace("expect: [wireguard-udp, no-plaintext-tunnel]", f"expect: [{expectation}]")
    replanned = make_plan(parse_scenario(text, "wg.yaml"), "s1-wg")
    return replanned.scenario.checks[3].capture


def test_a_handshake_on_the_wire_is_an_initiation_one_way_and_a_response_back():
    plan = make_plan(parse_scenario(WG, "wg.yaml"), "s1-wg")
    check = _wg_capture(plan, "wireguard-handshake")
    judge = judges(plan)["wireguard-handshake"]
    init, resp = _wg_message("10.1.1.2", "10.1.1.3", 1, 148), _wg_message("10.1.1.3", "10.1.1.2", 2, 92)
    data = [_wg_message("10.1.1.2", "10.1.1.3", 4, 128), _wg_message("10.1.1.3", "10.1.1.2", 4, 128)]
    good = judge(plan, check, _subject(plan, [init, resp, *data]))
    assert good.ok and good.counts == {"wireguard_initiations": 1, "wireguard_responses": 1}
    assert good.seen == "10.1.1.2 → 10.1.1.3: 1 handshake initiation, 1 data; back: 1 handshake response, 1 data"
    assert good.expected.startswith("a WireGuard handshake on port 51820 between 10.1.1.2 and 10.1.1.3")
    # data alone (a session made before the capture), half a handshake, or the response from the initiator: no handshake
    for frames in (data, [init, *data], [init, _wg_message("10.1.1.2", "10.1.1.3", 2, 92)]):
        assert not judge(plan, check, _subject(plan, frames)).ok
    # the type byte alone is not a handshake: the message has its exact size, on the tunnel's port
    assert not judge(plan, check, _subject(plan, [_wg_message("10.1.1.2", "10.1.1.3", 1, 100), resp])).ok
    assert not judge(plan, check, _subject(plan, [_wg_message("10.1.1.2", "10.1.1.3", 1, 148, port=51821), resp])).ok
    # either member may start it
    assert judge(plan, check, _subject(plan, [_wg_message("10.1.1.3", "10.1.1.2", 1, 148), _wg_message("10.1.1.2", "10.1.1.3", 2, 92)])).ok


def test_only_wireguard_means_nothing_else_between_the_underlay_addresses():
    plan = make_plan(parse_scenario(WG, "wg.yaml"), "s1-wg")
    check = _wg_capture(plan, "only-wireguard")
    judge = judges(plan)["only-wireguard"]
    eth = Ether(src="52:54:00:00:00:01", dst="52:54:00:00:00:02")
    tunnel = _frames(False, 4)
    assert judge(plan, check, _subject(plan, tunnel)).ok
    plain = eth / IP(src="10.1.1.2", dst="10.1.1.3") / ICMP()
    other_port = eth / IP(src="10.1.1.3", dst="10.1.1.2") / UDP(sport=4000, dport=4001)
    bad = judge(plan, check, _subject(plan, [*tunnel, plain, other_port]))
    assert not bad.ok and bad.counts == {"wireguard_udp_port": 4, "underlay_other": 2}
    assert bad.seen == "4 UDP datagram(s) on port 51820, 2 other IPv4 packet(s) between them"
    stranger = eth / IP(src="10.1.1.9", dst="10.1.1.3") / ICMP()  # another host's traffic is not theirs
    assert judge(plan, check, _subject(plan, [*tunnel, stranger])).ok
    assert not judge(plan, check, _subject(plan, [])).ok  # nothing crossed: nothing proves the tunnel


@dataclass
class ScriptedSSH:
    """Answers each command by the first (needle, stdout, exit) whose needle it contains."""

    answers: list[tuple[str, str, int]]
    commands: list[str] = field(default_factory=list)

    def run(self, command: str, *, timeout: float = 30.0, stdin: bytes | None = None, check: bool = True) -> CommandResult:
        self.commands.append(command)
        out, code = next((o, c) for needle, o, c in self.answers if needle in command)
        return CommandResult(command, code, out, "")


def _rekey_plan(tmp_path):
    text = WG.replace("wireguard: {tunnel: wg0, between: [vm1, vm2]}", "wireguard: {tunnel: wg0, between: [vm1, vm2], rekey: true}")
    plan = make_plan(parse_scenario(text, "wg.yaml"), "s1-wg", PlanOptions(layout=_layout(tmp_path)))
    wireguard.ensure_keys(plan.part("wireguard"))
    keys = {i.vm: wireguard.public_key(i.key_file) for i in plan.part("wireguard")}
    return plan, plan.scenario.checks[2].wireguard, keys


def test_a_rekeyed_check_drops_the_sessions_then_wants_a_handshake_from_after_that(tmp_path):
    plan, check, keys = _rekey_plan(tmp_path)
    vm1 = ScriptedSSH([("wg show", f"1002\n{keys['vm2']}\t1001\n", 0), ("date", "1000\n", 0)])
    vm2 = ScriptedSSH([("wg show", f"1003\n{keys['vm1']}\t1001\n", 0), ("date", "999\n", 0)])
    result = wireguard.HANDSHAKE.run(CheckContext(plan, {"vm1": vm1, "vm2": vm2}, tmp_path), check)
    assert vm1.commands[0] == "date +%s; ip link set wg0 down && ip link set wg0 up && ping -c 1 -W 5 192.168.2.2 >/dev/null"
    assert vm2.commands[0] == "date +%s"
    assert result.ok and result.name == "wireguard wg0: handshake vm1 ↔ vm2 (rekeyed)"
    assert result.detail.endswith("saw vm1: handshake with vm2 1 s ago (after the rekey); vm2: handshake with vm1 2 s ago (after the rekey)")
    # a handshake from before the rekey (still valid for two minutes) is not this check's
    stale = ScriptedSSH([("wg show", f"1003\n{keys['vm1']}\t990\n", 0), ("date", "999\n", 0)])
    result = wireguard.HANDSHAKE.run(CheckContext(plan, {"vm1": vm1, "vm2": stale}, tmp_path), check)
    assert not result.ok and "vm2: no handshake with vm1 since the rekey (the latest 9 s before it)" in result.detail
    # no tunnel on vm1: the rekey's failure is said, and nothing passes
    gone = ScriptedSSH([("wg show", "1000\n", 1), ("ip link set", "1000\n", 1), ("date", "1000\n", 0)])
    result = wireguard.HANDSHAKE.run(CheckContext(plan, {"vm1": gone, "vm2": stale}, tmp_path), check)
    assert not result.ok and "vm1: `ip link set wg0 down && ip link set wg0 up && ping -c 1 -W 5 192.168.2.2 >/dev/null` exited 1" in result.detail


# -- device operations ----------------------------------------------------------------


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("{action: detach, bridge: br0, vm: vm2}", "{action: detach, bridge: br0}", "checks[2].op.vm: action detach needs the VM whose tap it is about"),
        ("{action: detach, bridge: br0, vm: vm2}", "{action: detach, bridge: br0, vm: vm9}", "checks[2].op.vm: no VM named 'vm9'"),
        ("{action: detach, bridge: br0, vm: vm2}", "{action: detach, bridge: br1, vm: vm2}", "checks[2].op.bridge: no bridge named 'br1'"),
        ("{action: list, bridge: br0}", "{action: list, bridge: br0, vm: vm1}", "checks[0].op.vm: action list takes no vm"),
        ("{action: list, bridge: br0}", "{action: lst, bridge: br0}", "checks[0].op.action: expected one of: list, detach, attach, link-down, link-up, add-address, delete-address, delete-tap, delete-bridge; got 'lst'"),
        ("{action: add-address, bridge: br0, address: 10.1.1.1/24}", "{action: add-address, bridge: br0}", "checks[6].op.address: action add-address needs an address with prefix, e.g. 10.1.1.1/24"),
        ("{action: add-address, bridge: br0, address: 10.1.1.1/24}", "{action: add-address, bridge: br0, address: 10.1.1.1}", "checks[6].op.address: expected an IPv4 address with prefix like 10.1.1.1/24, got '10.1.1.1'"),
        ("{action: link-down, bridge: br0}", "{action: link-down, bridge: br0, address: 10.1.1.1/24}", "checks[13].op.address: action link-down takes no address"),
        ("{action: delete-bridge, bridge: br0, expect: error}", "{action: delete-bridge, bridge: br0, expect: maybe}", "checks[12].op.expect: expected one of: success, error; got 'maybe'"),
    ],
)
def test_bad_operations_are_located(old, new, expected):
    assert old in OPS
    text = OPS.replace(old, new, 1)
    found = problems(text)
    assert any(p.endswith(expected) for p in found), found
    [hit] = [p for p in found if p.endswith(expected)]
    assert hit.startswith(f"lab.yaml:{line_of(text, new)}: "), hit


def test_operations_need_a_linux_bridge():
    text = OPS.replace("  - name: br0\n", "  - name: br0\n    type: ovs\n", 1)
    found = problems(text)
    assert any(p.endswith("checks[0].op.bridge: device operations work on linux bridges; 'br0' is type ovs") for p in found), found


# -- OVS in the plan --------------------------------------------------------------------


def test_ovs_plan_starts_daemons_before_the_bridge_and_captures_on_a_mirror_port():
    plan = make_plan(parse_scenario(OVS, "ovs.yaml"), "s1-ovs")
    kinds = [f"{r.kind} {r.name}" for r in plan.resources]
    assert kinds[:5] == ["namespace vnl-s1-ovs", "process ovsdb-server", "process ovs-vswitchd", "bridge vnl-mgmt", "ovs-bridge br0"]
    br0 = plan.bridge("br0")
    assert br0.type == "ovs" and br0.capture_port == "vnlmir0" and br0.capture_iface == "vnlmir0"
    assert plan.bridge("vnl-mgmt").capture_iface == "vnl-mgmt"
    linux = make_plan(parse_scenario(OVS.replace("    type: ovs\n", ""), "x.yaml"), "s1-ovs")
    assert not any(r.kind in ("process", "ovs-bridge") for r in linux.resources)


def test_stopping_a_recorded_daemon_never_kills_a_reused_pid(tmp_path):
    """A record "ovsdb-server:<pid>" whose PID now belongs to another program is left alone."""
    from vnetlab.backends import ovs

    other = subprocess.Popen(["sleep", "30"])
    try:
        ovs.stop_process(tmp_path, f"ovsdb-server:{other.pid}")
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
    ovs.stop_process(tmp_path, "ovs-vswitchd:999999999")  # long gone: nothing to do
    with pytest.raises(ovs.OvsError, match="unexpected process record"):
        ovs.stop_process(tmp_path, "sshd:1")


def test_stopping_a_recorded_daemon_of_this_lab(tmp_path):
    """A process running the daemon's program from the lab's OVS folder is stopped and reaped."""
    from vnetlab.backends import ovs

    folder = ovs.ovs_dir(tmp_path)
    folder.mkdir()
    stand_in = folder / "ovsdb-server"  # `sleep` under the daemon's name, with the lab's folder in its argv[0]
    shutil.copy("/bin/sleep", stand_in)
    proc = subprocess.Popen([str(stand_in), "30"])
    deadline = time.monotonic() + 5
    while str(folder).encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)  # until the child has exec'd
    ovs.stop_process(tmp_path, f"ovsdb-server:{proc.pid}")
    assert not Path(f"/proc/{proc.pid}").exists()


def test_two_tunnels_in_one_vm_need_their_own_ports():
    second = "  - name: wg1\n    underlay: br0\n    members:\n      - {vm: vm1, address: 192.168.3.1/24}\n      - {vm: vm2, address: 192.168.3.2/24}\n"
    text = WG.replace("checks:\n", second + "checks:\n", 1)
    [p] = problems(text)
    assert p == f"lab.yaml:{line_of(text, 'name: wg1')}: wireguard[1].listen-port: 51820 is already the port of tunnel 'wg0' in VM 'vm1'"
    plan = make_plan(parse_scenario(text.replace("    underlay: br0\n    members:\n      - {vm: vm1, address: 192.168.3.1/24}", "    underlay: br0\n    listen-port: 51821\n    members:\n      - {vm: vm1, address: 192.168.3.1/24}"), "x.yaml"), "s1-two")
    assert [(w.tunnel, w.vm, w.peers[0].endpoint) for w in plan.part("wireguard")] == [
        ("wg0", "vm1", "10.1.1.3:51820"), ("wg0", "vm2", "10.1.1.2:51820"), ("wg1", "vm1", "10.1.1.3:51821"), ("wg1", "vm2", "10.1.1.2:51821"),
    ]
