"""A run folder judged again (`vnetlab judge RUN_DIR`, grading a student's bundle): its files may come
from anyone, so each way one can be missing, malformed or altered is refused with an EvidenceError that
names the file and what is wrong, and what a run keeps is read back exactly as it was written."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import struct
from pathlib import Path

import pytest
import yaml
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from vnetlab.checks import evidence as ev
from vnetlab.checks.base import Evidence
from vnetlab.checks.capture import read_frames
from vnetlab.checks.evidence import (
    EVIDENCE_FILE,
    Collected,
    EvidenceError,
    NoSuchCheck,
    RunSetting,
    checks_at,
    evidence_json,
    keep_setting,
    load_collected,
    read_json,
    read_setting,
    save_evidence,
    select_checks,
    sha256_file,
    write_json,
)
from vnetlab.compose import load_scenario, parse_scenario
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import make_plan

LAB = {
    "name": "folder",
    "bridges": [{"name": "br0", "subnet": "10.1.1.0/24"}],
    "vms": [{"name": "vm1", "nics": [{"bridge": "br0", "address": "10.1.1.2/24"}]}, {"name": "vm2", "nics": [{"bridge": "br0", "address": "10.1.1.3/24"}]}],
    "checks": [
        {"ping": {"from": "vm1", "to": "vm2", "count": 1}},
        {"capture": {"bridge": "br0", "between": ["vm1", "vm2"], "expect": ["arp"]}},
        {"command": {"name": "uptime", "node": "vm1", "run": "uptime"}},
    ],
}
PINGED = {"command": "ping", "exit": 0, "stdout": "1 packets transmitted, 1 packets received\n", "stderr": ""}
SETTING = RunSetting("/s/lab.yaml", "lab-a", "qemu", "/k", "/l", ("5.10",), "alice", "checks", "uptime", True)


def plan_of(d: dict = LAB):
    return make_plan(parse_scenario(yaml.safe_dump(copy.deepcopy(d), sort_keys=False), "lab.yaml"), "folder")


def kept(tmp_path: Path, packets=None, wire: bool = False) -> tuple[Path, object]:
    """A run folder as the check phase leaves it: evidence for the ping and the command, br0's pcap."""
    plan = plan_of()
    run = tmp_path / "run"
    run.mkdir()
    pcap = run / "br0.pcap"
    wrpcap(str(pcap), packets or [Ether(src="52:54:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP()] * 3)
    collected = Collected({0: Evidence(PINGED, ("vm1",)), 2: Evidence({"exit": 0}, (), "timed out")}, {"br0": read_frames(pcap)}, {"br0": pcap}, wire=wire)
    save_evidence(run, plan, collected)
    return run, plan


def edit(run: Path, change) -> None:
    raw = json.loads((run / EVIDENCE_FILE).read_text())
    change(raw)
    (run / EVIDENCE_FILE).write_text(json.dumps(raw))


def refused(run: Path, plan) -> str:
    with pytest.raises(EvidenceError) as error:
        load_collected(run, plan)
    return str(error.value)


# -- what a run keeps, read back ------------------------------------------------------------------------------------


def test_evidence_json_records_each_check_and_each_pcap_with_its_digest_and_counts(tmp_path):
    run, plan = kept(tmp_path, wire=True)
    raw = json.loads((run / EVIDENCE_FILE).read_text())
    digest = hashlib.sha256((run / "br0.pcap").read_bytes()).hexdigest()
    assert raw == {
        "format": 1, "wire": True,
        "checks": [{"index": 0, "kind": "ping", "data": PINGED, "guests": ["vm1"]}, {"index": 2, "kind": "command", "data": {"exit": 0}, "guests": [], "error": "timed out"}],
        "captures": {"br0": {"pcap": "br0.pcap", "sha256": digest, "seen": 3, "written": 3}},
    }
    assert (run / EVIDENCE_FILE).read_text().endswith("}\n") and (run / EVIDENCE_FILE).stat().st_mode & 0o777 == 0o600
    back = load_collected(run, plan)
    assert back.wire and back.evidence == {0: Evidence(PINGED, ("vm1",)), 2: Evidence({"exit": 0}, (), "timed out")}
    assert back.pcaps == {"br0": run / "br0.pcap"} and len(back.frames["br0"]) == 3


def test_a_pcap_gone_or_never_captured_is_left_out_and_counts_default_to_zero(tmp_path):
    plan = plan_of()
    gone = Collected({0: Evidence(PINGED)}, {}, {"br0": tmp_path / "br0.pcap", "br1": tmp_path / "none.pcap"})
    (tmp_path / "br0.pcap").write_bytes(b"x")
    got = evidence_json(plan, gone)
    assert got["wire"] is False and got["captures"] == {"br0": {"pcap": "br0.pcap", "sha256": hashlib.sha256(b"x").hexdigest(), "seen": 0, "written": 0}}


def test_the_count_a_capture_saw_is_kept_beyond_what_its_pcap_holds(tmp_path):
    run, plan = kept(tmp_path)
    edit(run, lambda raw: raw["captures"]["br0"].update(seen=1000))
    assert load_collected(run, plan).frames["br0"].seen == 1000  # the capture saw more than it kept
    edit(run, lambda raw: raw["captures"]["br0"].update(seen="1000"))
    assert load_collected(run, plan).frames["br0"].seen == 3  # not a count: the pcap's own


def test_wire_is_only_a_literal_true(tmp_path):
    run, plan = kept(tmp_path)
    for value, wire in ((True, True), ("yes", False), (1, False)):
        edit(run, lambda raw: raw.update(wire=value))
        assert load_collected(run, plan).wire is wire
    edit(run, lambda raw: raw.pop("wire"))
    assert load_collected(run, plan).wire is False


def test_write_json_is_exact_and_read_json_gives_it_back(tmp_path):
    data = {"b": [1, 2.5, None, True], "a": "\x1b[2J é"}
    write_json(tmp_path / "x.json", data)
    text = (tmp_path / "x.json").read_text()
    assert text == '{\n  "b": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  "a": "\\u001b[2J é"\n}\n'
    assert read_json(tmp_path / "x.json") == data and not (tmp_path / "x.json.tmp").exists()


def test_sha256_file_reads_a_file_of_several_blocks_whole(tmp_path):
    blob = os.urandom((1 << 20) * 2 + 17)
    (tmp_path / "big").write_bytes(blob)
    assert sha256_file(tmp_path / "big") == hashlib.sha256(blob).hexdigest()


# -- a run folder that cannot be judged -----------------------------------------------------------------------------


def test_an_evidence_file_missing_too_large_or_not_json_is_refused(tmp_path, monkeypatch):
    plan = plan_of()
    assert refused(tmp_path, plan) == f"{tmp_path / EVIDENCE_FILE} is missing"
    (tmp_path / EVIDENCE_FILE).write_text("{nope")
    assert refused(tmp_path, plan).startswith(f"{tmp_path / EVIDENCE_FILE} is unreadable: Expecting property name")
    (tmp_path / EVIDENCE_FILE).write_bytes(b'{"a": "\xff"}')
    assert refused(tmp_path, plan).startswith(f"{tmp_path / EVIDENCE_FILE} is unreadable: 'utf-8' codec can't decode")
    (tmp_path / EVIDENCE_FILE).write_text("[1, 2]")
    monkeypatch.setattr(ev, "MAX_JSON_BYTES", 6)
    assert refused(tmp_path, plan) == f"{tmp_path / EVIDENCE_FILE}: expected {{checks: [...], captures: {{...}}}}"  # 6 bytes: read
    monkeypatch.setattr(ev, "MAX_JSON_BYTES", 5)
    assert refused(tmp_path, plan) == f"{tmp_path / EVIDENCE_FILE} is 6 bytes; at most 5"


@pytest.mark.parametrize("raw", [[], {"checks": [], "captures": []}, {"checks": {}, "captures": {}}, {"captures": {}}, {"checks": []}])
def test_an_evidence_file_of_another_shape_is_refused(tmp_path, raw):
    (tmp_path / EVIDENCE_FILE).write_text(json.dumps(raw))
    assert refused(tmp_path, plan_of()) == f"{tmp_path / EVIDENCE_FILE}: expected {{checks: [...], captures: {{...}}}}"


def test_a_check_without_its_evidence_or_of_another_kind_is_refused(tmp_path):
    run, plan = kept(tmp_path)
    edit(run, lambda raw: raw["checks"].pop(1))
    assert refused(run, plan) == f"{run / EVIDENCE_FILE} has no evidence for check 3 (command)"
    (tmp_path / "b").mkdir()
    run2, _ = kept(tmp_path / "b")
    edit(run2, lambda raw: raw["checks"][0].update(kind="command"))
    assert refused(run2, plan) == f"{run2 / EVIDENCE_FILE} has no evidence for check 1 (ping)"
    edit(run2, lambda raw: raw["checks"].__setitem__(0, "not an entry"))
    assert refused(run2, plan) == f"{run2 / EVIDENCE_FILE} has no evidence for check 1 (ping)"


@pytest.mark.parametrize("entry", [
    {"data": [], "guests": []},
    {"guests": []},
    {"data": {}, "guests": "vm1"},
    {"data": {}},
    {"data": {}, "guests": ["vm1", 2]},
    {"data": {}, "guests": [], "error": 5},
])
def test_an_evidence_entry_of_another_shape_is_refused(tmp_path, entry):
    run, plan = kept(tmp_path)
    edit(run, lambda raw: raw["checks"].__setitem__(0, {"index": 0, "kind": "ping", **entry}))
    assert refused(run, plan) == f"{run / EVIDENCE_FILE}, check 1: evidence entries are {{data: {{...}}, guests: [NAME, ...], error: TEXT|null}}"


def test_evidence_entries_round_trip_with_and_without_an_error():
    for e in (Evidence({"k": 1}, ("vm1", "vm2")), Evidence({}, (), "boom"), Evidence()):
        assert Evidence.from_json(e.to_json()) == e
    assert Evidence({}).to_json() == {"data": {}, "guests": []}  # no error: no key
    assert Evidence({}, (), "boom").to_json() == {"data": {}, "guests": [], "error": "boom"}
    assert Evidence.from_json({"data": {}, "guests": [], "error": None}).error is None


@pytest.mark.parametrize("entry", [{"sha256": "x"}, "br0.pcap", {"pcap": 5}, {"pcap": "../br0.pcap"}, {"pcap": "br0.txt"}, {"pcap": ".pcap"}, {"pcap": "a/b.pcap"}, {"pcap": "br0.pcap\n"}])
def test_a_capture_that_names_no_pcap_of_the_folder_is_refused(tmp_path, entry):
    run, plan = kept(tmp_path)
    edit(run, lambda raw: raw["captures"].__setitem__("br0", entry))
    assert refused(run, plan) == f"{run / EVIDENCE_FILE}: capture 'br0' names no pcap file of the folder"


def test_a_pcap_missing_altered_or_not_vnetlabs_is_refused(tmp_path):
    run, plan = kept(tmp_path)
    pcap = run / "br0.pcap"
    good = pcap.read_bytes()
    pcap.rename(run / "moved.pcap")
    assert refused(run, plan) == f"{pcap} is missing"
    (run / "br0.pcap").mkdir()
    assert refused(run, plan) == f"{pcap} is missing"  # a folder is no pcap
    (run / "br0.pcap").rmdir()
    pcap.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit of one frame
    assert refused(run, plan) == f"{pcap} does not match its SHA-256 in {EVIDENCE_FILE}: the capture was altered"
    pcap.write_bytes(b"not a pcap at all, but its digest is recorded")
    edit(run, lambda raw: raw["captures"]["br0"].update(sha256=sha256_file(pcap)))
    assert refused(run, plan) == f"{pcap}: {pcap} is not an Ethernet pcap as vnetlab writes them"


def test_a_capture_check_without_its_capture_is_refused(tmp_path):
    run, plan = kept(tmp_path)
    edit(run, lambda raw: raw.update(captures={}))
    assert refused(run, plan) == f"{run / EVIDENCE_FILE} has no capture on br0"
    two = plan_of({**LAB, "bridges": LAB["bridges"] + [{"name": "br1", "subnet": "10.2.2.0/24"}],
                   "vms": [{**v, "nics": v["nics"] + [{"bridge": "br1", "address": f"10.2.2.{k + 2}/24"}]} for k, v in enumerate(LAB["vms"])],
                   "checks": LAB["checks"] + [{"capture": {"bridge": "br1", "between": ["vm1", "vm2"], "expect": ["arp"]}}]})
    assert refused(run, two) == f"{run / EVIDENCE_FILE} has no capture on br0, br1"
    only_checks = dataclasses.replace(plan, scenario=dataclasses.replace(plan.scenario, checks=[plan.scenario.checks[0]]))
    assert load_collected(run, only_checks).frames == {}  # no capture check: none needed


# -- the setting a run judged with ----------------------------------------------------------------------------------


def test_a_setting_round_trips_through_judging_json(tmp_path):
    assert SETTING.to_json() == {
        "format": 1, "scenario_file": "/s/lab.yaml", "lab": "lab-a", "domain_type": "qemu", "kernel": "/k", "layout": "/l",
        "host_kernel": ["5.10"], "student": "alice", "checks": "checks", "only": "uptime", "allow_host_paths": True,
    }
    keep_setting(tmp_path, SETTING, "name: x\n")
    assert read_setting(tmp_path) == (SETTING, "name: x\n")
    assert RunSetting.from_json({"scenario_file": "f", "lab": "l", "domain_type": "kvm", "kernel": "k", "layout": "y"}) == RunSetting("f", "l", "kvm", "k", "y")
    assert RunSetting.from_json({**SETTING.to_json(), "host_kernel": ("a", "b")}).host_kernel == ("a", "b")


@pytest.mark.parametrize("change", [
    {"scenario_file": 1}, {"lab": None}, {"domain_type": 2}, {"kernel": ["k"]}, {"layout": 3}, {"checks": None},
    {"host_kernel": "5.10"}, {"host_kernel": [5]}, {"student": 7}, {"only": ["x"]}, {"allow_host_paths": "yes"}, {"allow_host_paths": 1},
])
def test_a_setting_of_unexpected_values_is_refused(change):
    with pytest.raises(EvidenceError, match=r"^judging\.json: unexpected values$"):
        RunSetting.from_json({**SETTING.to_json(), **change})


def test_a_setting_that_is_no_object_lacks_a_field_or_names_no_lab_vnetlab_makes_is_refused():
    with pytest.raises(EvidenceError, match=r"^judging\.json is not a JSON object$"):
        RunSetting.from_json(["lab-a"])
    with pytest.raises(EvidenceError, match=r"^judging\.json: .*missing 1 required keyword-only argument: 'layout'|^judging\.json: .*'layout'"):
        RunSetting.from_json({k: v for k, v in SETTING.to_json().items() if k != "layout"})
    with pytest.raises(EvidenceError, match=r"^judging\.json: lab 'Lab A' or domain type 'qemu' is none vnetlab makes$"):
        RunSetting.from_json({**SETTING.to_json(), "lab": "Lab A"})
    with pytest.raises(EvidenceError, match=r"^judging\.json: lab 'lab-a' or domain type 'xen' is none vnetlab makes$"):
        RunSetting.from_json({**SETTING.to_json(), "domain_type": "xen"})
    with pytest.raises(EvidenceError, match=r"^judging\.json: lab 'lab-a-' or domain type 'qemuqemuqe' is none"):
        RunSetting.from_json({**SETTING.to_json(), "lab": "lab-a-", "domain_type": "qemu" * 5})
    with pytest.raises(EvidenceError) as long:
        RunSetting.from_json({**SETTING.to_json(), "lab": "L" * 1000})
    assert str(long.value) == f"judging.json: lab {'L' * 40!r} or domain type 'qemu' is none vnetlab makes"  # a hostile file is quoted bounded
    assert RunSetting.from_json({**SETTING.to_json(), "lab": "l" * 24}).lab == "l" * 24
    with pytest.raises(EvidenceError, match="is none vnetlab makes"):
        RunSetting.from_json({**SETTING.to_json(), "lab": "l" * 25})


def test_a_run_without_its_scenario_or_setting_is_refused(tmp_path):
    with pytest.raises(EvidenceError, match=r"judging\.json is missing$"):
        read_setting(tmp_path)
    ev.write_json(tmp_path / "judging.json", SETTING.to_json())
    with pytest.raises(EvidenceError) as missing:
        read_setting(tmp_path)
    assert str(missing.value) == f"{tmp_path / 'scenario.yaml'} is missing: the run did not keep the scenario it ran"
    (tmp_path / "scenario.yaml").write_bytes(b"name: \xff\n")
    with pytest.raises(EvidenceError, match=r"scenario\.yaml is unreadable: 'utf-8' codec can't decode"):
        read_setting(tmp_path)


# -- which checks a run ran ------------------------------------------------------------------------------------------


def test_checks_at_follows_a_path_of_names_and_indexes():
    scenario = load_scenario(SCENARIOS_DIR / "ex-two-vm-ping.yaml")
    assert checks_at(scenario, "checks") is scenario.checks
    assert checks_at(scenario, "exercise.tasks[0].checks") is scenario.exercise.tasks[0].checks
    assert checks_at(scenario, "exercise.tasks[1].checks") is scenario.exercise.tasks[1].checks


@pytest.mark.parametrize("path", ["", "exercise", "exercise.tasks[2].checks", "exercise.tasks[0]", "exercise.title", "nothing", "exercise..tasks[0].checks",
                                  "Exercise.tasks[0].checks", " checks", "checks ", "exercise.tasks[0].checks[0]", "exercise.tasks[x].checks", "checks[0]"])
def test_checks_at_refuses_a_path_to_no_list_of_checks(path):
    scenario = load_scenario(SCENARIOS_DIR / "ex-two-vm-ping.yaml")
    with pytest.raises(EvidenceError) as error:
        checks_at(scenario, path)
    assert str(error.value) == f"no list of checks at {path!r} in scenario 'ex-two-vm-ping'"


def test_select_checks_takes_a_tasks_checks_and_one_check_by_name():
    plan = plan_of()
    assert select_checks(plan) is plan and select_checks(plan, "checks", None) is plan
    uptime = select_checks(plan, "checks", "uptime")
    assert [c.kind for c in uptime.scenario.checks] == ["command"] and plan.scenario.checks[2] is uptime.scenario.checks[0]
    assert len(plan.scenario.checks) == 3  # the plan itself is left as it was
    with pytest.raises(NoSuchCheck, match="^nope$"):
        select_checks(plan, "checks", "nope")
    ex = make_plan(load_scenario(SCENARIOS_DIR / "ex-two-vm-ping.yaml"), "folder")
    task = select_checks(ex, "exercise.tasks[0].checks")
    assert [c.kind for c in task.scenario.checks] == ["ping", "capture"] and task.scenario.name == ex.scenario.name


# -- a run's pcap read back ------------------------------------------------------------------------------------------


def pcap_bytes(*frames: bytes, magic: int = 0xA1B2C3D4, linktype: int = 1, caplen: int | None = None, when: tuple[int, int] = (1700000000, 250000)) -> bytes:
    """A pcap as _Recorder writes it (little-endian, microseconds, Ethernet), or altered."""
    out = struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 0xFFFF, linktype)
    for f in frames:
        out += struct.pack("<IIII", *when, len(f) if caplen is None else caplen, len(f)) + f
    return out


def frame(n: int, fill: int = 0x61) -> bytes:
    return bytes(Ether(src="52:54:00:00:00:01", dst="52:54:00:00:00:02", type=0x88B5)) + bytes([fill]) * (n - 14)


def read_back(tmp_path: Path, data: bytes, **bounds):
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    return read_frames(path, **bounds)


def test_a_pcap_is_read_back_frame_for_frame_with_its_times(tmp_path):
    frames = read_back(tmp_path, pcap_bytes(frame(60), frame(100, 0x62), frame(14)))
    assert [bytes(p) for p in frames] == [frame(60), frame(100, 0x62), frame(14)]
    assert [p.time for p in frames] == [1700000000.25] * 3
    assert (len(frames), frames.seen, frames.written, frames.truncated) == (3, 3, 3, False)
    empty = read_back(tmp_path, pcap_bytes())
    assert (len(empty), empty.seen, empty.written, empty.truncated) == (0, 0, 0, False)  # nothing seen is nothing cut
    late = read_back(tmp_path, pcap_bytes(frame(60), when=(2**31 + 5, 0)))
    assert next(iter(late)).time == 2**31 + 5  # a capture after January 2038: the seconds are unsigned
    biggest = read_back(tmp_path, pcap_bytes(frame(0xFFFF)))
    assert len(biggest) == 1 and len(bytes(next(iter(biggest)))) == 0xFFFF  # the snaplen itself is a frame vnetlab writes


@pytest.mark.parametrize("seen,want", [(None, 2), (0, 2), (1, 2), (2, 2), (9, 9)])
def test_a_recorded_count_below_what_the_pcap_holds_is_not_believed(tmp_path, seen, want):
    assert read_back(tmp_path, pcap_bytes(frame(60), frame(60)), seen=seen).seen == want


@pytest.mark.parametrize("data", [
    b"",
    pcap_bytes()[:23],
    pcap_bytes(magic=0xD4C3B2A1),  # big-endian
    pcap_bytes(magic=0xA1B23C4D),  # nanoseconds
    pcap_bytes(linktype=113),  # Linux cooked capture
    pcap_bytes(linktype=0),
], ids=["empty", "short-header", "big-endian", "nanoseconds", "sll", "null-link"])
def test_a_file_that_is_no_pcap_vnetlab_writes_is_refused(tmp_path, data):
    with pytest.raises(ValueError) as error:
        read_back(tmp_path, data)
    assert str(error.value) == f"{tmp_path / 'x.pcap'} is not an Ethernet pcap as vnetlab writes them"


def test_a_pcap_cut_short_or_with_an_oversized_record_is_refused(tmp_path):
    whole = pcap_bytes(frame(60), frame(60))
    path = tmp_path / "x.pcap"
    for cut, words in ((len(whole) - 61, "ends inside a record header"), (len(whole) - 76 + 15, "ends inside a record header"), (len(whole) - 1, "ends inside a frame"), (len(whole) - 60, "ends inside a frame")):
        with pytest.raises(ValueError) as error:
            read_back(tmp_path, whole[:cut])
        assert str(error.value) == f"{path} {words}"
    assert len(read_back(tmp_path, whole[: len(whole) - 76])) == 1  # a whole record less: fine
    with pytest.raises(ValueError) as error:
        read_back(tmp_path, pcap_bytes(frame(60), caplen=0x10000))
    assert str(error.value) == f"{path}: a record of 65536 bytes (at most 65535)"
    with pytest.raises(ValueError) as error:
        read_back(tmp_path, pcap_bytes(frame(60), caplen=0xFFFFFFFF))
    assert str(error.value) == f"{path}: a record of 4294967295 bytes (at most 65535)"  # a hostile length is refused, never read


def test_reading_back_keeps_the_same_first_frames_as_the_live_capture(tmp_path):
    three = pcap_bytes(frame(60), frame(60), frame(60))
    assert (len(read_back(tmp_path, three, max_kept_frames=3)), len(read_back(tmp_path, three, max_kept_frames=2))) == (3, 2)
    cut = read_back(tmp_path, three, max_kept_frames=2)
    assert (cut.seen, cut.written, cut.truncated) == (3, 3, True)
    assert len(read_back(tmp_path, three, max_kept_bytes=2 * (60 + 16))) == 2  # each frame costs its bytes and 16 more
    assert len(read_back(tmp_path, three, max_kept_bytes=2 * (60 + 16) - 1)) == 1
    prefix = read_back(tmp_path, pcap_bytes(frame(60), frame(200), frame(20)), max_kept_bytes=160)
    assert len(prefix) == 1 and prefix.written == 3  # the small third frame would fit, but the kept frames are a prefix
