"""Exercises without root: params drawn per student, the model's rules with their lines (exit 2 on the
command line), answers, the judges on the wire, judging a run again from its folder, and grading
bundles from their evidence (claims edited, params that do not fit, evidence altered)."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from vnetlab.checks.base import CheckResult, Evidence
from vnetlab.checks.capture import read_frames
from vnetlab.checks.evidence import Collected, EvidenceError, RunSetting, keep_setting, save_evidence, select_checks
from vnetlab.checks.ping import echo_on_wire, judge_ping, judge_ping_wire
from vnetlab.checks.runner import judge_checks, judge_run
from vnetlab.compose import load_scenario, parse_scenario, registry
from vnetlab.exercise.answers import HIDDEN, expected_answers, hide_answers
from vnetlab.exercise.bundle import RESULT_FILE, write_bundle
from vnetlab.exercise.grading import grade
from vnetlab.exercise.lab import clean_answer, lab_name
from vnetlab.exercise.state import ExerciseInputError, ExerciseState, TaskRecord
from vnetlab.features.exercise import answer_matches, judge_answer, normalized
from vnetlab.features.perf import judge_perf_wire
from vnetlab.features.wireguard import judge_handshake_wire, message_types
from vnetlab.model.params import DEFAULT_STUDENT, WORDS, draw, Param
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.planner import PlanOptions, make_plan

EXERCISE = SCENARIOS_DIR / "ex-two-vm-ping.yaml"
BASE = {
    "name": "pex",
    "bridges": [{"name": "br0", "subnet": "10.1.1.0/24"}],
    "vms": [{"name": "vm1", "nics": [{"bridge": "br0", "address": "10.1.1.2/24"}]}, {"name": "vm2", "nics": [{"bridge": "br0", "address": "10.1.1.3/24"}]}],
}


def doc(**changes) -> dict:
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


def parse(d: dict, student: str | None = None, file: str = "lab.yaml"):
    return parse_scenario(yaml.safe_dump(d, sort_keys=False), file, student)


def problems(d: dict) -> list[str]:
    with pytest.raises(ValidationError) as bad:
        parse(d)
    return [str(p) for p in bad.value.problems]


# -- params -----------------------------------------------------------------------------------------------------------


def test_params_are_the_same_for_the_same_id_and_differ_between_ids():
    alice, again, bob = (load_scenario(EXERCISE, s) for s in ("alice", "alice", "bob"))
    assert alice.param_values == again.param_values and alice.param_values != bob.param_values
    assert load_scenario(EXERCISE).param_values == load_scenario(EXERCISE, DEFAULT_STUDENT).param_values
    for s in (alice, bob):
        net = ipaddress.IPv4Network(s.param_values["net"])
        assert net.prefixlen == 24 and net.subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))
        assert s.bridges[0].subnet == str(net)  # rendered before the model checked it
        assert [n.address for v in s.vms for n in v.nics] == [f"{net.network_address + 2}/24", f"{net.network_address + s.param_values['host2']}/24"]
        assert 10 <= s.param_values["host2"] <= 250


def test_every_kind_draws_within_its_bounds_and_subnets_stay_clear_of_each_other_and_the_scenario():
    params = {
        "n": Param(range=[3, 5]), "c": Param(choice=["red", 7]), "w": "word", "w2": Param(word=True),
        "a": Param(subnet_of="10.0.0.0/22", prefix=24), "b": Param(subnet_of="10.0.0.0/22", prefix=24),
    }
    literal = [ipaddress.IPv4Network("10.0.1.0/24")]
    for student in ("s1", "s2", "s3", "s4", "s5", "s6"):
        v = draw(params, "ex", student, literal)
        assert 3 <= v["n"] <= 5 and v["c"] in ("red", 7) and v["w"] in WORDS and v["w2"] in WORDS
        a, b = ipaddress.IPv4Network(v["a"]), ipaddress.IPv4Network(v["b"])
        assert not a.overlaps(b) and not a.overlaps(literal[0]) and not b.overlaps(literal[0])
    with pytest.raises(ValueError, match="no /24 inside 10.0.0.0/24 found clear"):
        draw({"a": Param(subnet_of="10.0.0.0/24", prefix=24)}, "ex", "s", [ipaddress.IPv4Network("10.0.0.0/24")])


def test_params_render_anywhere_filters_work_and_numbers_reach_number_fields():
    s = parse(doc(
        params={"k": {"range": [2, 2]}, "net": {"choice": ["10.9.8.0/24"]}, "who": "word"},
        description="count {{ params.k }} on {{ params.net | netmask }} /{{ params.net | prefixlen }}",
        bridges=[{"name": "br0", "subnet": "{{ params.net }}"}],
        vms=[{"name": "vm1", "nics": [{"bridge": "br0", "address": "{{ params.net | host(-1) }}/24"}]}, {"name": "vm2", "nics": [{"bridge": "br0", "address": "{{ params.net | host(params.k) }}/24"}]}],
        checks=[{"ping": {"from": "vm1", "to": "vm2", "count": "{{ params.k }}"}}, {"command": {"node": "vm1", "run": "echo {{ params.who }} {{ vm2.ip }}"}}],
    ))
    assert s.description == "count 2 on 255.255.255.0 /24"
    assert [n.address for v in s.vms for n in v.nics] == ["10.9.8.254/24", "10.9.8.2/24"]
    assert s.checks[0].ping.count == 2  # an integer field takes the rendered number
    assert s.checks[1].command.run == "echo {{ params.who }} {{ vm2.ip }}"  # names a node: rendered once planned
    from vnetlab.plan.variables import plan_variables
    from vnetlab.model.templates import render

    assert render(s.checks[1].command.run, plan_variables(make_plan(s, "p"))) == f"echo {s.param_values['who']} 10.9.8.2"


def test_a_student_id_that_cannot_be_one_is_refused():
    with pytest.raises(ValidationError, match="student id 'a b' is not usable"):
        load_scenario(EXERCISE, "a b")
    with pytest.raises(ExerciseInputError):
        clean_answer("x" * 201)


def test_lab_names_are_name_and_id_and_never_shared():
    assert lab_name("ex-two-vm-ping", "alice") == "ex-two-vm-ping-alice"
    names = {lab_name("ex-two-vm-ping", s) for s in ("Alice", "alice", "alice.smith@uni.example", "alice.smith@uni.example2")}
    assert len(names) == 4 and all(len(n) <= 24 for n in names)


# -- bad input: exit 2 with file:line -------------------------------------------------------------------------------


def ex_doc(*tasks: dict, **extra) -> dict:
    return doc(exercise={"title": "T", "tasks": list(tasks), **extra})


PING = {"ping": {"from": "vm1", "to": "vm2"}}
BAD = {
    "task-without-checks": (ex_doc({"name": "t1", "checks": []}), "exercise.tasks[0].checks: expected at least 1 item(s), got 0"),
    "task-without-a-checks-key": (ex_doc({"name": "t1"}), "exercise.tasks[0].checks: missing (expected a list: what must hold once the task is done"),
    "solve-unknown-node": (ex_doc({"name": "t1", "checks": [PING], "solve": [{"node": "vm9", "run": "true"}]}), "exercise.tasks[0].solve[0].node: no VM, container or host named 'vm9'"),
    "answer-without-expect": (ex_doc({"name": "t1", "checks": [{"answer": {"normalize": "mac"}}]}), "exercise.tasks[0].checks[0].answer.expect: missing"),
    "unknown-param-kind": (doc(params={"x": {"ranges": [1, 2]}}), "params.x.ranges: unknown param kind 'ranges'"),
    "param-used-not-defined": (doc(params={"x": {"range": [1, 2]}}, description="{{ params.y }}"), "description: param y is used but not defined (params: x)"),
    "subnet-of-too-small": (doc(params={"x": {"subnet-of": "10.0.0.0/24", "prefix": 16}}), "params.x.prefix: 10.0.0.0/24 is too small for a /16"),
    "duplicate-task-names": (ex_doc({"name": "t1", "checks": [PING]}, {"name": "t1", "checks": [PING]}), "exercise.tasks[1].name: duplicate task name 't1'"),
    "hint-cost-above-points": (ex_doc({"name": "t1", "checks": [PING], "points": 1, "hint-cost": 1.5}), "exercise.tasks[0].hint-cost: a hint costs 1.5 but the task is worth 1"),
}


@pytest.mark.parametrize("case", sorted(BAD), ids=str)
def test_bad_exercise_input_exits_2_with_file_and_line(tmp_path, case):
    d, message = BAD[case]
    path = tmp_path / "ex.yaml"
    text = yaml.safe_dump(d, sort_keys=False)
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "vnetlab", "plan", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    field = message.split(":")[0]
    line = int(result.stderr.split(f"{path}:", 1)[1].split(":", 1)[0])
    assert f"error: {path}:{line}: {message}" in result.stderr, result.stderr
    where = text.splitlines()[line - 1]  # the line named is the field's own (or, for a missing key, its mapping's)
    key = field.rsplit(".", 1)[-1]
    assert key.split("[")[0] in where or key in ("expect", "checks") and ("normalize" in where or "name: t1" in where), (line, where)


# -- answers --------------------------------------------------------------------------------------------------------


def test_answers_compare_as_their_kind():
    assert normalized("52-54-00-AB-cd-01", "mac") == normalized("5254.00ab.cd01", "mac") == "52:54:00:ab:cd:01"
    assert answer_matches(" 10.1.1.3/24 ", "10.1.1.3", "ip") and not answer_matches("10.1.1.4", "10.1.1.3", "ip")
    assert answer_matches("+042", "42", "int") and answer_matches("p2", "p[0-9]", "regex") and not answer_matches("p22", "p[0-9]", "regex")
    assert answer_matches(" yes ", "yes", "exact") and not answer_matches("Yes", "yes", "exact")
    with pytest.raises(ValueError):
        normalized("52:54", "mac")


def test_the_answer_judge_never_shows_the_expected_answer():
    plan = make_plan(load_scenario(EXERCISE, "alice"), "lab-a")
    check = plan.scenario.exercise.tasks[1].checks[0].answer
    mac = plan.vm("vm2").nics[0].mac
    right = judge_answer(plan, check, Evidence({"answer": mac.upper(), "at": 1.0}))
    wrong = judge_answer(plan, check, Evidence({"answer": "52:54:00:00:00:01", "at": 1.0}))
    none = judge_answer(plan, check, Evidence({"answer": None}))
    assert right.ok and not wrong.ok and not none.ok
    assert mac not in wrong.detail and mac not in none.detail and "no answer yet" in none.detail


def test_no_check_shows_a_student_another_tasks_answer():
    """Task 1's capture names vm2's MAC, task 2's answer: what a student sees has it hidden, in any notation."""
    plan = make_plan(load_scenario(EXERCISE, "alice"), "ex-two-vm-ping-alice")
    mac = plan.vm("vm2").nics[0].mac
    found = expected_answers(plan)
    assert found is not None
    cisco = mac.replace(":", "")[:4] + "." + mac.replace(":", "")[4:8] + "." + mac.replace(":", "")[8:]
    capture = CheckResult("capture on br0", "capture", False, f"expected ≥1 ARP request and ≥1 reply between 52:54:00:aa:bb:cc (vm1) and {mac} (vm2); saw {mac.upper()} and {mac.replace(':', '-')}, {cisco}",
                          data={"macs": [mac], "nested": {"seen": mac}, "count": 3})
    other = CheckResult("ping vm1 → vm2", "ping", True, f"expected 3/3 echo replies from 10.1.1.3, got 3/3 ({mac}0 is longer, a{mac[1:]} is not it either)")
    answer = judge_answer(plan, plan.scenario.exercise.tasks[1].checks[0].answer, Evidence({"answer": mac, "at": 1.0}))
    shown = hide_answers([capture, other, answer], found)
    assert shown[0].detail == f"expected ≥1 ARP request and ≥1 reply between 52:54:00:aa:bb:cc (vm1) and {HIDDEN} (vm2); saw {HIDDEN} and {HIDDEN}, {HIDDEN}"
    assert shown[0].data == {"macs": [HIDDEN], "nested": {"seen": HIDDEN}, "count": 3} and capture.detail.count(mac) == 1  # the evidence's copy is untouched
    assert shown[1] == other  # a longer hex string is not the MAC
    assert shown[2] == answer and mac in answer.detail  # an answer check only quotes what the student typed
    assert expected_answers(make_plan(parse(doc()), "p")) is None  # no exercise: nothing to hide


@pytest.mark.parametrize("how,value,text,hidden", [
    ("ip", "10.1.1.3/24", "to 10.1.1.3, 10.1.1.30, 110.1.1.3 and 10.1.1.3.", f"to {HIDDEN}, 10.1.1.30, 110.1.1.3 and {HIDDEN}."),
    ("int", "1450", "mtu 1450, 14500, 1450.5 and (1450)", f"mtu {HIDDEN}, 14500, 1450.5 and ({HIDDEN})"),
    ("exact", "p2", "port p2 or P2, not p20 or sp2", f"port {HIDDEN} or {HIDDEN}, not p20 or sp2"),
])
def test_answers_are_hidden_as_their_kind_is_written(how, value, text, hidden):
    task = {"name": "q", "checks": [{"answer": {"expect": value, "normalize": how}}], "solve": [{"answer": value}]}
    plan = make_plan(parse(doc(exercise={"title": "t", "tasks": [task]})), "p")
    [shown] = hide_answers([CheckResult("c", "ping", True, text)], expected_answers(plan))
    assert shown.detail == hidden


# -- on the wire ----------------------------------------------------------------------------------------------------


def echo(src: str, dst: str, seq: int, reply: bool = False, size: int | None = None):
    pad = b"x" * ((size or 84) - 28)
    return Ether() / IP(src=src, dst=dst) / ICMP(type=0 if reply else 8, id=7, seq=seq) / Raw(pad)


def frames_of(tmp_path: Path, packets, name: str = "br0.pcap"):
    path = tmp_path / name
    wrpcap(str(path), packets)
    return read_frames(path)


def test_a_ping_counts_on_the_wire_only_with_its_echo_pairs(tmp_path):
    plan = make_plan(parse(doc(checks=[PING])), "w")
    ping = plan.scenario.checks[0].ping
    summary = Evidence({"command": "ping", "exit": 0, "stdout": "3 packets transmitted, 3 packets received, 0% packet loss\n", "stderr": ""})
    assert judge_ping(plan, ping, summary).ok  # the guest's word alone
    faked = judge_ping_wire(plan, ping, summary, {"br0": frames_of(tmp_path, [Ether() / ARP()])})
    assert not faked.ok and faked.seen.startswith("no echo reply crossed br0")
    real = [p for k in range(3) for p in (echo("10.1.1.2", "10.1.1.3", k), echo("10.1.1.3", "10.1.1.2", k, reply=True))]
    assert judge_ping_wire(plan, ping, summary, {"br0": frames_of(tmp_path, real)}).ok
    only_requests = judge_ping_wire(plan, ping, summary, {"br0": frames_of(tmp_path, real[::2])})
    assert not only_requests.ok and "no echo reply crossed br0 (3 echo request(s)" in only_requests.seen
    must_fail = dataclasses.replace(ping, expect="failure")
    assert not judge_ping_wire(plan, must_fail, summary, {"br0": frames_of(tmp_path, real)}).ok
    assert judge_ping_wire(plan, must_fail, summary, {"br0": frames_of(tmp_path, real[::2])}).ok
    sized = echo_on_wire(plan, "vm1", "10.1.1.3", {"br0": frames_of(tmp_path, real)}, ["br0"], claimed=3, must_fail=False, size=1500)
    assert not sized.ok  # pmtu: only echo packets of the probe's size count


def test_wireguard_and_perf_have_their_own_signatures(tmp_path):
    wg = parse(doc(wireguard=[{"name": "wg0", "underlay": "br0", "members": [{"vm": "vm1", "address": "192.168.2.1/24"}, {"vm": "vm2", "address": "192.168.2.2/24"}]}],
                   checks=[{"wireguard": {"tunnel": "wg0", "between": ["vm1", "vm2"]}}, {"perf": {"from": "vm1", "to": "vm2"}}]))
    plan = make_plan(wg, "w")
    check = plan.scenario.checks[0].wireguard

    def wgmsg(src: str, dst: str, kind: int, size: int):
        return Ether() / IP(src=src, dst=dst) / UDP(sport=51820, dport=51820) / Raw(bytes([kind, 0, 0, 0]) + b"\1" * (size - 4))

    data_message = b"\x04\x00\x00\x00" + b"x" * 28  # a keepalive: header and tag, no payload
    assert message_types([bytes([1, 0, 0, 0]) + b"x" * 144, data_message, b"\x04\x01\x00\x00" + b"x" * 28]) == {1: 1, 4: 1}
    assert message_types([bytes([1, 0, 0, 0]) + b"x" * 100, data_message[:20], bytes([2, 0, 0, 0]) + b"x" * 100]) == {}  # each message has its size
    assert message_types([bytes([1, 2, 0, 0]) + b"x" * 144, bytes([2, 0, 0, 1]) + b"x" * 88]) == {}  # the right size, not the type's three zero bytes
    handshake = [wgmsg("10.1.1.2", "10.1.1.3", 1, 148), wgmsg("10.1.1.3", "10.1.1.2", 2, 92)]
    assert judge_handshake_wire(plan, check, Evidence(), {"br0": frames_of(tmp_path, handshake)}).ok
    one_way = judge_handshake_wire(plan, check, Evidence(), {"br0": frames_of(tmp_path, handshake[:1])})
    assert not one_way.ok and one_way.seen.startswith("no completed WireGuard handshake crossed br0")
    data_both = {"br0": frames_of(tmp_path, [wgmsg("10.1.1.2", "10.1.1.3", 4, 64), wgmsg("10.1.1.3", "10.1.1.2", 4, 64)])}
    assert judge_handshake_wire(plan, check, Evidence(), data_both).ok
    rekeyed = dataclasses.replace(check, rekey=True)  # the check made a new handshake: data of an older session is not it
    stale = judge_handshake_wire(plan, rekeyed, Evidence(), data_both)
    assert not stale.ok and stale.seen.startswith("no new WireGuard handshake crossed br0")
    assert judge_handshake_wire(plan, rekeyed, Evidence(), {"br0": frames_of(tmp_path, handshake)}).ok
    perf = plan.scenario.checks[1].perf
    claimed = {"server_error": None, "iperf": {"command": "", "exit": 0, "stdout": json.dumps({"end": {"sum_received": {"bytes": 4000, "bits_per_second": 1e6, "seconds": 1}}}), "stderr": ""},
               "ping": {"command": "", "exit": 0, "stdout": "1 packets transmitted, 1 packets received\n", "stderr": ""}}
    data = [Ether() / IP(src="10.1.1.2", dst="10.1.1.3") / TCP(sport=40000, dport=5201) / Raw(b"d" * 1000) for _ in range(3)]
    assert judge_perf_wire(plan, perf, Evidence(claimed), {"br0": frames_of(tmp_path, data)}).ok  # 3000 ≥ half of 4000
    assert not judge_perf_wire(plan, perf, Evidence(claimed), {"br0": frames_of(tmp_path, data[:1])}).ok


# -- judging a run again, and grading --------------------------------------------------------------------------------


def run_folder(tmp_path: Path, plan, setting: RunSetting, text: str, evidence: dict, packets) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    keep_setting(run, setting, text)
    pcap = run / "br0.pcap"
    wrpcap(str(pcap), packets)
    save_evidence(run, plan, Collected(evidence, {"br0": read_frames(pcap)}, {"br0": pcap}, wire=True))
    return run


def exchange(plan):
    (a, b), (ma, mb) = ([plan.vm(v).nics[0].ip for v in ("vm1", "vm2")]), [plan.vm(v).nics[0].mac for v in ("vm1", "vm2")]
    arp = [Ether(src=ma, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ma, psrc=a, pdst=b), Ether(src=mb, dst=ma) / ARP(op=2, hwsrc=mb, psrc=b, hwdst=ma, pdst=a)]
    return arp + [p for k in range(3) for p in (echo(a, b, k), echo(b, a, k, reply=True))]


PINGED = {"command": "ping", "exit": 0, "stdout": "3 packets transmitted, 3 packets received, 0% packet loss\n", "stderr": ""}


def test_a_run_is_judged_again_from_its_folder_alone_and_an_altered_pcap_is_refused(tmp_path):
    text = EXERCISE.read_text()
    scenario = parse_scenario(text, str(EXERCISE), "alice")
    setting = RunSetting(str(EXERCISE), "lab-a", "qemu", "/k", str(tmp_path), (), "alice", "exercise.tasks[0].checks")
    plan = select_checks(make_plan(scenario, "lab-a", PlanOptions(kernel=Path("/k"), layout=Layout(tmp_path))), setting.checks)
    run = run_folder(tmp_path, plan, setting, text, {0: Evidence(PINGED, ("vm1",))}, exchange(plan))
    judged = judge_run(run, registry())
    assert [r.ok for r in judged.results] == [True, True] and judged.collected.wire
    assert judged.results == judge_checks(plan, judged.collected)
    (run / "br0.pcap").write_bytes((run / "br0.pcap").read_bytes()[:-10])
    with pytest.raises(EvidenceError, match="does not match its SHA-256"):
        judge_run(run, registry())


def bundle(tmp_path: Path, student: str, *, hints: int = 0) -> Path:
    """A submitted bundle of ex-two-vm-ping for `student`, both tasks done (the evidence made here, as a real check keeps it)."""
    layout = Layout(tmp_path / "host")
    text = EXERCISE.read_text()
    lab = lab_name("ex-two-vm-ping", student)
    plan = make_plan(parse_scenario(text, str(EXERCISE), student), lab, PlanOptions(kernel=Path("/k"), layout=layout))
    ex = plan.scenario.exercise
    records = []
    for k, task in enumerate(ex.tasks):
        where = f"exercise.tasks[{k}].checks"
        setting = RunSetting(str(EXERCISE), lab, "qemu", "/k", str(layout.root), (), student, where)
        task_plan = select_checks(plan, where)
        folder = tmp_path / f"{student}-runs" / str(k)
        folder.parent.mkdir(exist_ok=True)
        if k == 0:
            run = run_folder(tmp_path / f"{student}-runs", task_plan, setting, text, {0: Evidence(PINGED, ("vm1",))}, exchange(plan))
            run.rename(folder)
            results = judge_checks(task_plan, Collected({0: Evidence(PINGED, ("vm1",))}, {"br0": read_frames(folder / "br0.pcap")}, {"br0": folder / "br0.pcap"}, wire=True))
        else:
            folder.mkdir()
            keep_setting(folder, setting, text)
            answer = {"answer": plan.vm("vm2").nics[0].mac, "at": 2.0}
            save_evidence(folder, task_plan, Collected({0: Evidence(answer)}, wire=True))
            results = judge_checks(task_plan, Collected({0: Evidence(answer)}, wire=True))
        assert all(r.ok for r in results)
        records.append(TaskRecord(task.name, "passed", 2.0, 2.0, hints if k == 0 else 0, None, str(folder), [r.to_json() for r in results]))
    state = ExerciseState("ex-two-vm-ping", ex.title, str(EXERCISE), __import__("hashlib").sha256(EXERCISE.read_bytes()).hexdigest(), student, lab, dict(plan.scenario.param_values), 1.0, 2700, records)
    folder, _ = write_bundle(state, plan, text, tmp_path / "bundles", layout)
    return folder


def test_grading_recomputes_params_rejudges_the_evidence_and_flags_edits(tmp_path):
    layout = Layout(tmp_path / "host")
    alice, bob = bundle(tmp_path, "alice", hints=1), bundle(tmp_path, "bob")
    book = grade([alice, bob], registry(), layout=layout)
    a, b = book.rows
    assert (a.student, a.points, a.hints_used, a.mismatch, a.signature) == ("alice", 2.5, 1, [], "valid")
    assert (b.student, b.points, b.mismatch) == ("bob", 3.0, [])
    assert a.tasks[0].from_guests == [] and a.tasks[1].from_guests == []  # the ping was confirmed on the wire; the answer is no guest's
    assert json.loads((alice / RESULT_FILE).read_text())["params"] != json.loads((bob / RESULT_FILE).read_text())["params"]
    header, rows = book.table()
    assert header[2:4] == ["1. address vm2", "2. whose MAC"] and rows[0][2:6] == ["1.5", "1", "2.5", "3"]
    assert book.csv().splitlines()[0].startswith("student,exercise,1. address vm2,2. whose MAC,points")

    result = json.loads((bob / RESULT_FILE).read_text())
    result["tasks"][0]["hints_used"], result["params"]["host2"] = 0, 7
    (bob / RESULT_FILE).write_text(json.dumps(result))
    (alice / "tasks" / "1" / "br0.pcap").write_bytes(b"")
    a, b = grade([alice, bob], registry(), layout=layout).rows
    assert b.signature == "INVALID" and "result.json was edited after submit (its signature does not match)" in b.mismatch
    assert "params do not fit student id 'bob'" in b.mismatch
    assert "tasks/1/br0.pcap altered or missing" in a.mismatch and a.tasks[0].points == 0 and any("task 1: claims 1.5 point(s), the evidence gives 0" in m for m in a.mismatch)
    assert grade([tmp_path / "bundles"], registry(), layout=Layout(tmp_path / "elsewhere")).rows[0].signature == "unknown (signed by another host)"


def test_a_task_capturing_on_a_bridge_in_a_switch_guest_is_refused_like_a_scenario_check():
    d = ex_doc({"name": "t1", "checks": [PING, {"capture": {"bridge": "br0", "between": ["vm1", "vm2"], "expect": ["arp"]}}]})
    d["bridges"][0]["in"] = "guest"
    assert problems(d) == [
        "lab.yaml:24: exercise.tasks[0].checks[1].capture.bridge: bridge 'br0' runs in a switch guest (in: guest): "
        "no host interface sees every frame of a bridge in a switch guest: capture on a member's link instead (link: VM.NIC)"
    ]
    d["exercise"]["setup"] = [{"node": "sw-br0", "run": "ip link del br0"}]  # its switch guest is a node setup may name
    d["exercise"]["tasks"][0]["checks"][1]["capture"] = {"link": "vm1.eth0", "between": ["vm1", "vm2"], "expect": ["arp"]}
    assert parse(d).exercise.setup[0].node == "sw-br0"


@pytest.mark.parametrize("value,how,want", [
    (" 52:54:00:AB:CD:01 ", "mac", "52:54:00:ab:cd:01"), ("5254 00ab cd01", "mac", "52:54:00:ab:cd:01"), ("525400abcd01", "mac", "52:54:00:ab:cd:01"),
    (" 10.1.1.3 ", "ip", "10.1.1.3"), ("10.1.1.3/24", "ip", "10.1.1.3/24"), ("10.1.1.3/255.255.255.0", "ip", "10.1.1.3/24"), ("fe80::1", "ip", "fe80::1"),
    ("+042", "int", "42"), ("-7", "int", "-7"), (" 0 ", "int", "0"), ("9" * 18, "int", "9" * 18),
    ("  yes  ", "exact", "yes"), (" p[0-9] ", "regex", "p[0-9]"),
])
def test_an_answer_is_normalized_as_its_kind(value, how, want):
    assert normalized(value, how) == want


@pytest.mark.parametrize("value,how,message", [
    ("52:54:00:ab:cd", "mac", "not a MAC address: '52:54:00:ab:cd'"), ("52:54:00:ab:cd:01:02", "mac", "not a MAC address: '52:54:00:ab:cd:01:02'"),
    ("52:54:00:ab:cd:0g", "mac", "not a MAC address: '52:54:00:ab:cd:0g'"), ("52_54_00_ab_cd_01", "mac", "not a MAC address: '52_54_00_ab_cd_01'"),
    ("9" * 19, "int", f"not an integer: '{'9' * 19}'"), ("4 2", "int", "not an integer: '4 2'"), ("", "int", "not an integer: ''"), ("0x10", "int", "not an integer: '0x10'"),
    ("1.5", "int", "not an integer: '1.5'"),
])
def test_an_answer_that_is_not_of_its_kind_says_so(value, how, message):
    with pytest.raises(ValueError) as error:
        normalized(value, how)
    assert str(error.value) == message
    with pytest.raises(ValueError):
        normalized("10.1.1.300", "ip")


def test_answers_match_as_their_kind_asks():
    assert answer_matches("10.1.1.3/24", "10.1.1.3", "ip")  # an address asked: its prefix given too is no error
    assert not answer_matches("10.1.1.3", "10.1.1.3/24", "ip") and not answer_matches("10.1.1.3/25", "10.1.1.3/24", "ip")  # a prefix asked: it counts
    assert answer_matches(" p2 ", "p[0-9]", "regex") and not answer_matches("xp2", "p[0-9]", "regex") and not answer_matches("p2x", "p[0-9]", "regex")
    assert answer_matches("0042", "42", "int") and not answer_matches("43", "42", "int")
    assert answer_matches("10.1.1.3/24", " 10.1.1.3/24", "ip")  # a prefix asked and given
    assert answer_matches("52:54:00:ab:cd:01", "52-54-00-AB-CD-01", "mac")  # the expected answer is normalized too
    assert not answer_matches("yes/no", "yes", "exact")  # only an address drops what follows a slash


def answer_check(expect: str, normalize: str):
    task = {"name": "q", "checks": [{"answer": {"expect": expect, "normalize": normalize}}], "solve": [{"answer": "x"}]}
    plan = make_plan(parse(doc(exercise={"title": "t", "tasks": [task]})), "p")
    return plan, plan.scenario.exercise.tasks[0].checks[0].answer


def test_the_answer_judge_says_right_wrong_not_of_its_kind_or_not_given():
    plan, check = answer_check("{{ vm2.eth0.ip }}", "ip")  # the expected answer is rendered from the lab
    right = judge_answer(plan, check, Evidence({"answer": " 10.1.1.3 ", "at": 1.0}))
    assert (right.name, right.kind, right.ok, right.detail, right.data) == ("answer (ip)", "answer", True, "answered '10.1.1.3': right", {"answer": "10.1.1.3"})
    wrong = judge_answer(plan, check, Evidence({"answer": "10.1.1.2", "at": 1.0}))
    assert (wrong.ok, wrong.detail, wrong.data) == (False, "answered '10.1.1.2': not the expected answer", {"answer": "10.1.1.2"})
    bad = judge_answer(plan, check, Evidence({"answer": "vm2", "at": 1.0}))
    assert (bad.ok, bad.kind, bad.name, bad.data) == (False, "answer", "answer (ip)", {"answer": "vm2"})
    assert bad.detail == "answered 'vm2': 'vm2' does not appear to be an IPv4 or IPv6 address"
    for given in ({"answer": None}, {}, {"answer": 42}):
        none = judge_answer(plan, check, Evidence(given))
        assert (none.name, none.kind, none.ok, none.detail) == ("answer (ip)", "answer", False, "no answer yet: `vnetlab exercise answer TASK VALUE` gives one")
    plan, check = answer_check("7", "int")
    long = judge_answer(plan, check, Evidence({"answer": "1" * 250 + "7"}))
    assert long.detail.startswith(f"answered '{'1' * 199 + '7'}': not an integer: ") and long.data == {"answer": "1" * 199 + "7"}  # its last 200 characters shown
