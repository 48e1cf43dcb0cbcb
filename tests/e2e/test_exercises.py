"""Exercises on real guests: every shipped exercise proven (`exercise test`) and done the student's
way (commands typed over SSH, answers read from the live lab), two students' labs worked, submitted
and graded (different params, their points, an edited bundle flagged, another task's answer never
shown), a faked ping graded ✗ on the wire, `check` waiting for the lab's lock, Ctrl-C leaving the state as it was, `judge` on an
exercise's run, and `reset`."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from labtools import ENV, VNETLAB, LineWatcher, leftovers, starts_of, vnetlab

from vnetlab.compose import load_scenario
from vnetlab.paths import Layout, SCENARIOS_DIR, exercise_files
from vnetlab.run.lab import cold_by_environment, lab_lock

pytestmark = pytest.mark.e2e
LAB_PREFIX = "t-x"
EXERCISE = SCENARIOS_DIR / "ex-two-vm-ping.yaml"


def shipped_exercises() -> list[str]:
    return [p.stem for p in exercise_files()]


@pytest.mark.parametrize("name", shipped_exercises())
def test_every_shipped_exercise_is_proven(tmp_path, name, lab_name):
    """`vnetlab exercise test`: each task fails after setup and passes after its solution; at the end all
    pass. (make test runs this for every exercise shipped.)"""
    junit = tmp_path / "junit.xml"
    result = vnetlab("exercise", "test", name, "--name", lab_name, "--junit", str(junit), timeout=1800)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = load_scenario(SCENARIOS_DIR / f"{name}.yaml").exercise.tasks
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 2 * len(tasks) + 1 and not ET.parse(junit).getroot().findall(".//failure")
    names = [c.get("name") for c in cases]
    for k, task in enumerate(tasks, 1):
        assert f"{k}. {task.name}: fails before its solution" in names and f"{k}. {task.name}: passes after its solution" in names
    assert f"PASS {name}" in result.stdout


def typed(lab: str, node: str, command: str) -> str:
    """A command the student types in a guest over SSH (`vnetlab ssh LAB NODE -- COMMAND`); its output."""
    done = vnetlab("ssh", lab, node, "--", command)
    print(f"{node}$ {command}\n{done.stdout}{done.stderr}", end="")
    assert done.returncode == 0, f"{command} on {node}: exit {done.returncode}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


def _two_vm_ping(lab: str, p: dict, task: int) -> str | None:
    vm2 = ipaddress.IPv4Network(p["net"])[p["host2"]]
    if task == 1:
        typed(lab, "vm2", f"ip addr add {vm2}/24 dev eth0")
        return None
    neigh = typed(lab, "vm1", f"ip neigh show {vm2}")  # the MAC that answered vm1's ARP, as vm1 learnt it
    return re.search(r"lladdr ([0-9a-f:]{17})", neigh).group(1)


def _bridge_by_hand(lab: str, p: dict, task: int) -> str | None:
    if task == 1:
        for command in ("ip link add name br0 type bridge", "ip link set p1 master br0", "ip link set p2 master br0", "ip link set p1 up", "ip link set p2 up", "ip link set br0 up"):
            typed(lab, "sw-br0", command)
        return None
    mac = typed(lab, "vm2", "cat /sys/class/net/eth0/address")  # the port the bridge learnt vm2's MAC on
    return re.search(rf"^{mac} dev (\S+) master br0", typed(lab, "sw-br0", "bridge fdb show br br0"), re.MULTILINE).group(1)


def _wireguard(lab: str, p: dict, task: int) -> str | None:
    tun, port = ipaddress.IPv4Network(p["tun"]), p["port"]
    me, peer, peer_ip = ("vm1", "vm2", "10.1.1.3") if task == 1 else ("vm2", "vm1", "10.1.1.2")
    mine, theirs = (tun[1], tun[2]) if task == 1 else (tun[2], tun[1])
    typed(lab, me, "ip link add wg0 type wireguard")
    typed(lab, me, f'wg set wg0 listen-port {port} private-key /etc/wireguard/wg0.key peer "$(cat /root/{peer}.pub)" allowed-ips {theirs}/32 endpoint {peer_ip}:{port}')
    typed(lab, me, f"ip addr add {mine}/24 dev wg0")
    typed(lab, me, "ip link set wg0 up")
    return None


def _container_nat(lab: str, p: dict, task: int) -> str | None:
    if task == 1:
        typed(lab, "router", "sysctl -w net.ipv4.ip_forward=1")
    else:  # nft, where the reference solution uses iptables: any NAT that does the job passes
        typed(lab, "router", "nft add table ip nat")
        typed(lab, "router", "nft 'add chain ip nat post { type nat hook postrouting priority 100; }'")
        typed(lab, "router", f'nft add rule ip nat post ip saddr {p["inside"]} oifname "eth1" masquerade')
    return None


def _vlan_trunk(lab: str, p: dict, task: int) -> str | None:
    vid, address = (p["vid_a"], "10.0.10.5/24") if task == 1 else (p["vid_b"], "10.0.20.5/24")
    typed(lab, "vm3", f"ip link add link eth0 name eth0.{vid} type vlan id {vid}")
    typed(lab, "vm3", f"ip addr add {address} dev eth0.{vid}")
    typed(lab, "vm3", f"ip link set eth0.{vid} up")
    return None


def _mtu_trouble(lab: str, p: dict, task: int) -> str | None:
    small = int(typed(lab, "small1", "cat /sys/class/net/eth0/mtu"))
    if task == 2:
        typed(lab, "router", f"ip link set eth1 mtu {small}")
        return None
    typed(lab, "jumbo1", f"/usr/bin/ping -M do -c 1 -W 2 -s {small - 28} 10.14.0.10")  # the path MTU crosses
    lost = vnetlab("ssh", lab, "jumbo1", "--", f"/usr/bin/ping -M do -c 1 -W 2 -s {small - 27} 10.14.0.10")
    assert lost.returncode != 0 and "Frag needed" not in lost.stdout + lost.stderr, lost.stdout  # one byte more vanishes: a black hole
    mtus = {nic: int(typed(lab, vm, f"cat /sys/class/net/{nic.split()[1]}/mtu")) for vm, nic in (("router", "router eth1"), ("small1", "small1 eth0"))}
    [wrong] = [nic for nic, mtu in mtus.items() if mtu != small]  # the NIC on small that does not match its segment
    return wrong


STUDENTS_WORK = {
    "ex-two-vm-ping": _two_vm_ping, "ex-bridge-by-hand": _bridge_by_hand, "ex-wireguard": _wireguard,
    "ex-container-nat": _container_nat, "ex-vlan-trunk": _vlan_trunk, "ex-mtu-trouble": _mtu_trouble,
}


def shown(output: str, answers: list[str]) -> list[str]:
    """The answers a check's detail shows (an answer check only quotes what the student typed)."""
    details = "\n".join(line for line in output.splitlines() if "│ answer (" not in line)
    return [a for a in answers if re.search(rf"(?<![\w:]){re.escape(a)}(?![\w:])", details, re.IGNORECASE)]


@pytest.mark.parametrize("name", shipped_exercises())
def test_a_student_does_each_shipped_exercise(name, lab_name):
    """The student's way: start, every task fails while the work is not done, the commands typed in the
    guests over SSH (not the exercise's own solve steps) and the answers read from the live lab make
    each task pass, and no check shows a student another task's answer."""
    assert set(STUDENTS_WORK) == set(shipped_exercises())
    started = exercise("start", name, "--student", "e2e-student", "--name", lab_name, "-q")
    print(started.stdout)
    assert started.returncode == 0, started.stdout + started.stderr
    scenario = load_scenario(SCENARIOS_DIR / f"{name}.yaml", "e2e-student")
    tasks = scenario.exercise.tasks
    assert scenario.exercise.title in started.stdout and all(f"Task {k}: {t.name}" in started.stdout for k, t in enumerate(tasks, 1))
    params = json.loads(exercise("status", lab_name, "--json").stdout)["params"]
    assert params == scenario.param_values

    before = exercise("check", lab_name, "-q")
    print(before.stdout)
    status = json.loads(exercise("status", lab_name, "--json").stdout)
    assert before.returncode == 1 and [t["state"] for t in status["tasks"]] == ["failed"] * len(tasks), before.stdout
    outputs, answers = [before.stdout], []
    for k, task in enumerate(tasks, 1):
        answer = STUDENTS_WORK[name](lab_name, params, k)
        if answer is not None:
            done = exercise("answer", lab_name, str(k), answer, "-q")
            answers.append(answer)
        else:
            done = exercise("check", lab_name, str(k), "-q")
            outputs.append(done.stdout)
        print(done.stdout)
        assert done.returncode == 0 and "✓ passed" in done.stdout, f"{k}. {task.name}: {done.stdout}{done.stderr}"
    final = exercise("check", lab_name, "-q")
    outputs.append(final.stdout)
    status = json.loads(exercise("status", lab_name, "--json").stdout)
    assert final.returncode == 0 and [t["state"] for t in status["tasks"]] == ["passed"] * len(tasks), final.stdout
    assert status["points"] == status["max_points"] == sum(t.points for t in tasks)
    assert shown("\n".join(outputs), answers) == []  # the wire checks' details (MACs, ports …) hide the answers


def addresses(student: str) -> tuple[str, str]:
    """vm2's address with prefix for this student, and the subnet."""
    s = load_scenario(EXERCISE, student)
    return s.vm("vm2").nics[0].address, s.bridges[0].subnet


def exercise(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return vnetlab("exercise", *args, timeout=timeout)


def mac_of(lab: str, vm: str) -> str:
    return vnetlab("exec", lab, vm, "--", "cat /sys/class/net/eth0/address").stdout.strip()


def work(lab: str, student: str, tmp_path: Path, *, hint: bool) -> tuple[Path, dict]:
    """What a student does: start, check (fails), maybe a hint, the address, check, the MAC, submit."""
    address, _ = addresses(student)
    started = exercise("start", "ex-two-vm-ping", "--student", student, "--name", lab)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Two VMs on a bridge" in started.stdout and f"Give vm2 the address {address} on eth0." in started.stdout
    assert f"vnetlab ssh {lab} vm1" in started.stdout and f"vnetlab shell {lab}" in started.stdout
    first = exercise("check", lab)
    assert first.returncode == 1 and "no echo reply crossed br0" in first.stdout and f"a hint is available: vnetlab exercise hint {lab} 1" in first.stdout, first.stdout
    if hint:
        shown = exercise("hint", lab, "address vm2")
        assert shown.returncode == 0 and "Hint 1/2 (new): `ip addr add` takes an address with its prefix." in shown.stdout, shown.stdout
    assert vnetlab("exec", lab, "vm2", "--", f"ip addr add {address} dev eth0").returncode == 0
    done = exercise("check", lab, "1")
    assert done.returncode == 0 and f"passed — {2 - 0.5 * hint:g} point(s)" in done.stdout, done.stdout
    mac = mac_of(lab, "vm2")  # task 2's answer: the capture's detail would name it
    assert "‹hidden: an answer›" in done.stdout and mac not in done.stdout.lower(), done.stdout
    state = (Layout().lab_dir(lab) / "exercise.json").read_text()
    assert mac not in state.lower() and mac in vnetlab("judge", str(Path(json.loads(state)["tasks"][0]["run"]).parent), "--format", "json").stdout.lower()  # the teacher's judge shows it
    assert exercise("answer", lab, "whose MAC", "52:54:00:00:00:01").returncode == 1
    right = exercise("answer", lab, "2", mac.upper())
    assert right.returncode == 0 and "right" in right.stdout, right.stdout
    status = json.loads(exercise("status", lab, "--json").stdout)
    submitted = exercise("submit", lab, "--out", str(tmp_path / "bundles"))
    assert submitted.returncode == 0, submitted.stderr
    bundle = Path(submitted.stdout.strip())
    claims = json.loads((bundle / "result.json").read_text())
    assert mac not in json.dumps(claims["tasks"][0]["checks"]).lower() and claims["tasks"][1]["answer"]["value"] == mac.upper()  # hidden but in the answer typed
    return bundle, status


def test_two_students_work_submit_and_are_graded(tmp_path):
    labs = {s: f"t-x{os.getpid() % 10000}-{s}" for s in ("alice", "bob")}
    bundles, statuses = {}, {}
    try:
        for student, lab in labs.items():
            bundles[student], statuses[student] = work(lab, student, tmp_path, hint=student == "alice")
            again = exercise("submit", lab, "--out", str(tmp_path / "bundles"))
            assert again.returncode == 0 and Path(again.stdout.strip()) != bundles[student] and bundles[student].is_dir()  # earlier bundles stay
            assert vnetlab("down", lab).returncode == 0 and leftovers(lab) == []
    finally:
        for lab in labs.values():
            vnetlab("down", lab)
    alice, bob = statuses["alice"], statuses["bob"]
    assert alice["params"] != bob["params"] and alice["params"]["net"] == addresses("alice")[1] and bob["params"]["net"] == addresses("bob")[1]
    assert [t["state"] for t in alice["tasks"]] == ["passed", "passed"] and (alice["points"], bob["points"]) == (2.5, 3.0)
    assert alice["tasks"][0]["hints_used"] == 1 and alice["tasks"][0]["name"] == "address vm2"

    edited = tmp_path / "bundles" / "edited"
    shutil.copytree(bundles["bob"], edited)
    claims = json.loads((edited / "result.json").read_text())
    claims["student"] = "mallory"  # bob's work handed in as mallory's
    (edited / "result.json").write_text(json.dumps(claims))
    csv = tmp_path / "grades.csv"
    graded = exercise("grade", str(bundles["alice"]), str(bundles["bob"]), str(edited), "--csv", str(csv))
    assert graded.returncode == 1, graded.stdout + graded.stderr  # the edited bundle is a mismatch
    rows = {line.split(",")[-1]: line for line in csv.read_text().splitlines()[1:]}
    assert rows[str(bundles["alice"])].startswith("alice,ex-two-vm-ping,1.5,1,2.5,3,1,") and ",valid,," in rows[str(bundles["alice"])]
    assert rows[str(bundles["bob"])].startswith("bob,ex-two-vm-ping,2,1,3,3,0,") and ",valid,," in rows[str(bundles["bob"])]
    flagged = rows[str(edited)]
    assert flagged.startswith("mallory,") and "INVALID" in flagged and "result.json was edited after submit" in flagged and "params do not fit student id 'mallory'" in flagged
    assert "Gradebook" in graded.stdout


def fake_shell(lab: str, *, sleep: bool) -> None:
    """vm1's root login shell replaced: `ping …` prints a success summary (or first sleeps), anything else runs."""
    body = 'sleep 60; ' if sleep else ''
    script = (
        "#!/bin/busybox sh\n"
        f'case "$2" in ping\\ *) {body}echo "3 packets transmitted, 3 packets received, 0% packet loss"; echo "round-trip min/avg/max = 0.1/0.2/0.3 ms"; exit 0;; esac\n'
        'exec /bin/busybox sh "$@"\n'
    )
    command = f"cat > /root/fake-shell && chmod +x /root/fake-shell && (grep -qx /root/fake-shell /etc/shells || echo /root/fake-shell >> /etc/shells) && sed -i 's#^root:x:0:0:root:/root:.*#root:x:0:0:root:/root:/root/fake-shell#' /etc/passwd"
    assert subprocess.run([*VNETLAB, "ssh", lab, "vm1", "--", command], input=script, capture_output=True, text=True, timeout=60, env=ENV).returncode == 0


def real_shell(lab: str) -> None:
    assert vnetlab("ssh", lab, "vm1", "--", "sed -i 's#^root:x:0:0:root:/root:.*#root:x:0:0:root:/root:/bin/sh#' /etc/passwd").returncode == 0


def test_faked_ping_lock_waits_ctrl_c_judge_and_reset(lab_name):
    started = exercise("start", "ex-two-vm-ping", "--student", "carol", "--name", lab_name)
    assert started.returncode == 0, started.stdout + started.stderr
    how = "cold" if cold_by_environment() else "warm"  # an exercise's guests are restored from warm images, as a run's
    assert starts_of(lab_name) == {"vm1": how, "vm2": how}
    state = Layout().lab_dir(lab_name) / "exercise.json"
    address, _ = addresses("carol")
    assert exercise("hint", lab_name, "1").returncode == 0

    # Ctrl-C in the middle of a check: the state is as it was.
    fake_shell(lab_name, sleep=True)
    before = state.read_bytes()
    proc = subprocess.Popen([*VNETLAB, "exercise", "check", lab_name, "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    LineWatcher(proc.stderr).wait_for("Connecting to guests")  # connected: the ping (sleeping 60 s in vm1) runs now
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert state.read_bytes() == before

    # A ping faked in the guest: the guest says 3/3, the wire says otherwise.
    fake_shell(lab_name, sleep=False)
    assert vnetlab("exec", lab_name, "vm2", "--", f"ip addr add {address} dev eth0").returncode == 0
    faked = exercise("check", lab_name, "address vm2")
    assert faked.returncode == 1, faked.stdout
    row = next(line for line in faked.stdout.splitlines() if "ping vm1 → vm2" in line)
    assert "✗" in row and "got 3/3" in row and "no echo reply crossed br0" in row
    ping = json.loads(state.read_text())["tasks"][0]["checks"][0]
    assert not ping["ok"] and ping["data"]["received"] == 3 and ping["data"]["wire"]["ok"] is False

    # The same run judged again from its folder: the same verdicts.
    run = Path(json.loads(state.read_text())["tasks"][0]["run"])
    judged = vnetlab("judge", str(run.parent), "--format", "json")
    assert judged.returncode == 1
    [again] = json.loads(judged.stdout)
    assert again["wire"] and [r["ok"] for r in again["results"]] == [c["ok"] for c in json.loads(state.read_text())["tasks"][0]["checks"]]

    # A check while another command holds the lab waits for it.
    real_shell(lab_name)
    with lab_lock(lab_name, Layout().lab_dir(lab_name) / "state.json"):
        proc = subprocess.Popen([*VNETLAB, "exercise", "check", lab_name, "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        LineWatcher(proc.stderr).wait_for(f"waiting: another command is working on lab {lab_name}")
        assert proc.poll() is None
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "passed — 1.5 point(s)" in out, out

    # reset: a fresh lab for the same student; the hint stays used, the task is untried again.
    reset = exercise("reset", lab_name)
    assert reset.returncode == 0 and f"Give vm2 the address {address} on eth0." in reset.stdout, reset.stdout + reset.stderr
    status = json.loads(exercise("status", lab_name, "--json").stdout)
    assert [t["state"] for t in status["tasks"]] == ["untried", "untried"] and status["tasks"][0]["hints_used"] == 1
    assert starts_of(lab_name) == {"vm1": how, "vm2": how}  # restored again (test_cold_start.py: a --cold lab's reset boots)
    assert status["params"] == load_scenario(EXERCISE, "carol").param_values and status["student"] == "carol"
    assert exercise("check", lab_name, "1").returncode == 1  # vm2's address is gone again
