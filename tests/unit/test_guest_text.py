"""What a guest or a remote host printed reaches root's terminal, report.json and junit.xml as
visible text, never as escape sequences or as characters XML 1.0 cannot carry (issue 23, finding 4);
so do the exercise engine's verdicts, evidence.json, `vnetlab judge`, result.json, the exercise
state and the gradebook (its CSV also as text to a spreadsheet). The classroom's API: test_classroom_server.py.

The console here is a real serial log file written with what a hostile or merely systemd-coloured
guest prints; the guest's failure goes through the real wait (vnetlab.run.configure), the real
report and JUnit writers, xmllint and the real CLI error printer. Only the guest is missing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.table import Table
from rich.text import Text
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from vnetlab import cli
from vnetlab.backends.image import GUEST_FAILED_MARKER
from vnetlab.backends.ssh import CommandResult, SSHError, _tail
from vnetlab.checks import runner
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence
from vnetlab.checks.capture import read_frames
from vnetlab.checks.evidence import Collected, RunSetting, keep_setting, load_collected, save_evidence, select_checks
from vnetlab.checks.parse import excerpt
from vnetlab.checks.runner import judge_run
from vnetlab.compose import load_scenario, parse_scenario, registry
from vnetlab.errors import VnetlabError
from vnetlab.exercise.bundle import write_bundle
from vnetlab.exercise.grading import grade, spreadsheet_text
from vnetlab.exercise.lab import TaskOutcome
from vnetlab.exercise.state import STATE_FILE, ExerciseState, TaskRecord
from vnetlab.exercise.terminal import print_outcomes
from vnetlab.features.commands import CommandCheck, Expect, run_command_check
from vnetlab.features.exercise import judge_answer
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.printable import printable, printable_data, printable_json
from vnetlab.run.configure import GuestError, console_tail, wait_for_marker
from vnetlab.run.lab import Outcome
from vnetlab.run.progress import StepTiming
from vnetlab.tools.junit import junit_xml
from vnetlab.tools.report import print_summary, save_reports

# What a console really carries: systemd's coloured status, a window title (OSC ... BEL), a screen
# clear (CSI), a one-byte C1 CSI, a bidi override, a form feed, NUL, DEL, a lone carriage return.
HOSTILE_CONSOLE = (
    "[  1.234] systemd[1]: Starting \x1b[0;1;39mdropbear\x1b[0m...\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mdropbear.service\x1b[0m.\r\n"
    "\x1b]0;pwned by vm1\x07\x1b[2J\x1b[H\x9b31mred\x9d2;title\x9c\r\n"
    "\u202eevil\u202c \x00\x01\x08\x0b\x0c\x7f tail\rover\r\n"
    "[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mvnetlab-ready.service\x1b[0m.\r\n"
)
HOSTILE_OUTPUT = "\x1b]0;owned\x07\x1b[2J\x1b[0;32m OK \x1b[0m\x00\x9b1m\u202eexit\n"
# Characters no output of vnetlab may carry: C0 but newline and tab, DEL, C1 (0x9b is CSI, 0x9d OSC), bidi, surrogates.
FORBIDDEN = {chr(c) for c in range(0x20) if chr(c) not in "\n\t"} | {chr(c) for c in range(0x7F, 0xA0)} | {"\u202e", "\u202c", "\ud800"}


def forbidden_in(text: str) -> set[str]:
    return {c for c in text if c in FORBIDDEN}


# -- the one function -----------------------------------------------------------------------------


def test_printable_shows_what_was_sent_as_escapes():
    assert printable("\x1b[0;32m OK\x1b[0m") == "\\x1b[0;32m OK\\x1b[0m"
    assert printable("\x1b]0;t\x07") == "\\x1b]0;t\\x07"
    assert printable("a\x9bb\u202ec\ud800d\U000e0001") == "a\\x9bb\\u202ec\\ud800d\\U000e0001"
    assert printable("x\ry\x00") == "x\\ry\\x00"
    assert printable("lines\nand\ttabs stay, 中文　全角 too") == "lines\nand\ttabs stay, 中文　全角 too"
    assert printable("a\nb\tc\rd", one_line=True) == "a b c d"
    assert printable(None) == "None" and printable(3) == "3"


def test_printable_is_idempotent_and_leaves_only_printable_text():
    every = "".join(chr(c) for c in range(0x3000)) + "\ud800\udfff\ufffe\uffff\U0010ffff"
    once = printable(every)
    assert printable(once) == once
    assert forbidden_in(once) == set()
    assert all(c.isprintable() or c in "\n\t" or c == "\u3000" or c.isspace() for c in once)


def test_printable_data_walks_json_values():
    data = {"detail": "\x1b[2J", "n": 3, "ok": True, "none": None, "list": ["\x07", 1.5], "nested": {"\x1bkey": "v"}}
    assert printable_data(data) == {"detail": "\\x1b[2J", "n": 3, "ok": True, "none": None, "list": ["\\x07", 1.5], "nested": {"\\x1bkey": "v"}}


def test_every_vnetlab_error_message_is_printable():
    """The base class of every message the CLI prints: a remote stderr or a console tail in it is shown, not obeyed."""
    exc = VnetlabError("hypervisor h2: `ip link add` exited 2: \x1b]0;x\x07RTNETLINK answers: File exists\x1b[2J")
    assert str(exc) == "hypervisor h2: `ip link add` exited 2: \\x1b]0;x\\x07RTNETLINK answers: File exists\\x1b[2J"
    assert forbidden_in(str(SSHError("banner \x1b[2J"))) == set()


def test_ssh_tails_and_excerpts_are_printable():
    assert forbidden_in(_tail(HOSTILE_OUTPUT, HOSTILE_CONSOLE)) == set()
    assert "\\x1b[0;32m" in _tail(HOSTILE_OUTPUT)
    assert excerpt("\x1b]0;owned\x07\u202eok") == "\\x1b]0;owned\\x07\\u202eok"
    assert forbidden_in(excerpt(HOSTILE_CONSOLE)) == set()


# -- a console full of escape sequences, through the real wait, report, JUnit and CLI -------------


@pytest.fixture
def plan(tmp_path: Path):
    scenario = load_scenario(SCENARIOS_DIR / "two-vm-ping.yaml")
    plan = make_plan(scenario, "hostile", PlanOptions(kernel=tmp_path / "vmlinux", layout=Layout(tmp_path)))
    plan.vm("vm1").console_log.parent.mkdir(parents=True)
    return plan


def failed_boot(plan) -> GuestError:
    """The error a guest whose init fails raises, with its console tail in it (the real wait)."""
    vm = plan.vm("vm1")
    vm.console_log.write_bytes((HOSTILE_CONSOLE + f"{GUEST_FAILED_MARKER} host=vm1 reason=ready\r\n").encode("utf-8", "surrogatepass"))
    with pytest.raises(GuestError) as caught:
        wait_for_marker(vm, deadline=time.monotonic() + 10, is_running=lambda vm: True, stop=threading.Event())
    return caught.value


class HostileSSH:
    """A guest's SSH session that answers every command with escape sequences and exit 1."""

    def run(self, command: str, *, timeout: float = 30.0, stdin: bytes | None = None, check: bool = True) -> CommandResult:
        return CommandResult(command, 1, HOSTILE_OUTPUT * 3, HOSTILE_CONSOLE)


def failed_check(plan, tmp_path: Path) -> CheckResult:
    """The real command check, judging what a hostile guest printed."""
    ctx = CheckContext(plan, {"vm1": HostileSSH()}, tmp_path)  # type: ignore[dict-item]
    return run_command_check(ctx, CommandCheck(node="vm1", run="systemctl status", expect=Expect(exit=0, stdout="active"), name="unit \x1b]0;t\x07 active"))


def test_the_console_tail_of_a_failed_boot_is_shown_not_obeyed(plan):
    exc = failed_boot(plan)
    message = str(exc)
    assert forbidden_in(message) == set()
    assert "[\\x1b[0;32m  OK  \\x1b[0m] Started" in message and "\\x1b]0;pwned by vm1\\x07\\x1b[2J" in message  # a teacher sees what was sent
    assert forbidden_in(console_tail(plan.vm("vm1").console_log)) == set()


def outcome_of(plan, tmp_path: Path) -> Outcome:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    outcome = Outcome("two-vm-ping", plan.lab, checks=[failed_check(plan, tmp_path)], artifacts={"dir": str(run_dir)})
    outcome.error = str(failed_boot(plan))
    return outcome


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="needs xmllint (libxml2-utils: `vnetlab setup` installs it)")
def test_junit_of_a_hostile_console_is_valid_for_xmllint(plan, tmp_path):
    outcome = outcome_of(plan, tmp_path)
    steps = [StepTiming("boot", 1.0, False), StepTiming("checks", 0.5, False)]
    data = save_reports(outcome, steps)
    junit = Path(str(outcome.artifacts["junit"]))
    done = subprocess.run(["xmllint", "--noout", str(junit)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = junit.read_text(encoding="utf-8")
    assert "&#27;" not in text and "\\x1b[0;32m" in text  # shown as text, not as a (forbidden) reference
    report = json.loads(Path(str(outcome.artifacts["report"])).read_text())
    strings: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(report)
    assert forbidden_in("".join(strings)) == set() and report == data


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="needs xmllint (libxml2-utils: `vnetlab setup` installs it)")
def test_junit_writer_is_robust_to_any_report(tmp_path):
    """Whatever reaches it (a report written by an older vnetlab, a feature's data): every code point XML 1.0 forbids."""
    every = "".join(map(chr, range(0x2100))) + "\u202e\ud800\udfff\ufdd0\ufffe\uffff\U0001fffe\U0010ffff"
    report = {
        "scenario": "s\x1b", "lab": "l\x00", "ok": False, "accel": "tcg\x07", "error": "boot\x1b[2J\n" + every, "steps": [],
        "checks": [{"name": "n\x0c", "kind": "command\x1b", "ok": False, "detail": every, "data": {"k\x01": every}}],
    }
    path = tmp_path / "junit.xml"
    path.write_text(junit_xml(report), encoding="utf-8")
    done = subprocess.run(["xmllint", "--noout", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[:2000]


def test_no_escape_sequence_reaches_the_terminal(plan, tmp_path, capfd, monkeypatch):
    """The run's summary and the CLI's error line, on real stdout/stderr: no ESC, BEL, CSI or OSC byte."""
    outcome = outcome_of(plan, tmp_path)
    console = cli.make_console()
    print_summary(console, outcome, [StepTiming("boot", 1.0, False)], registry())
    error = failed_boot(plan)

    def failing_check(args, out, err) -> int:
        raise error

    monkeypatch.setitem(cli.COMMANDS, "check", failing_check)
    assert cli.main(["check", "hostile"]) == cli.EXIT_FAIL

    def also_a_foreign_error(args, out, err) -> int:
        raise OSError("libvirt: \x1b]0;remote\x07\x1b[2J")  # not a VnetlabError: the CLI's printer still escapes it

    monkeypatch.setitem(cli.COMMANDS, "check", also_a_foreign_error)
    assert cli.main(["check", "hostile"]) == cli.EXIT_FAIL
    out, err = capfd.readouterr()
    for stream in (out, err):
        raw = stream.encode("utf-8", "surrogateescape")
        assert forbidden_in(stream) == set(), sorted(forbidden_in(stream))
        for byte in (b"\x1b", b"\x07", b"\xc2\x9b", b"\xc2\x9d", b"\x00"):
            assert byte not in raw
    assert "\\x1b]0;pwned by vm1" in err and "\\x1b[2J" in err and "\\x1b]0;remote\\x07" in err
    assert "\\x1b]0;owned\\x07" in out  # the check's detail in the summary table


# -- the exercise engine: verdicts, evidence, `vnetlab judge`, bundles and the gradebook -----------

EXERCISE = SCENARIOS_DIR / "ex-two-vm-ping.yaml"
HOSTILE_PING = {"command": "ping", "exit": 1, "stdout": HOSTILE_OUTPUT * 2, "stderr": HOSTILE_CONSOLE}


def no_forbidden_bytes(raw: bytes) -> None:
    assert forbidden_in(raw.decode("utf-8", "surrogateescape")) == set()
    for byte in (b"\x1b", b"\x07", b"\xc2\x9b", b"\xc2\x9d", b"\x00", b"\xe2\x80\xae"):
        assert byte not in raw, byte


def shown_everywhere(result: CheckResult) -> None:
    assert forbidden_in(json.dumps(result.to_json(), ensure_ascii=False)) == set()
    assert forbidden_in(result.name + result.detail) == set()


def exercise_plan(tmp_path: Path, checks: str = "exercise.tasks[0].checks"):
    text = EXERCISE.read_text()
    setting = RunSetting(str(EXERCISE), "lab-a", "qemu", "/k", str(tmp_path), (), "alice", checks)
    plan = make_plan(parse_scenario(text, str(EXERCISE), "alice"), "lab-a", PlanOptions(kernel=Path("/k"), layout=Layout(tmp_path)))
    return text, setting, plan


def hostile_run(tmp_path: Path, evidence: Evidence) -> tuple[Path, object]:
    """Task 1 of ex-two-vm-ping checked on the wire, its ping's evidence what a hostile guest printed."""
    text, setting, plan = exercise_plan(tmp_path)
    plan = select_checks(plan, setting.checks)
    run = tmp_path / "run"
    run.mkdir()
    keep_setting(run, setting, text)
    pcap = run / "br0.pcap"
    wrpcap(str(pcap), [Ether(src="52:54:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP()])
    save_evidence(run, plan, Collected({0: evidence}, {"br0": read_frames(pcap)}, {"br0": pcap}, wire=True))
    return run, plan


def test_evidence_json_keeps_the_guests_bytes_exactly_and_shows_none_of_them(tmp_path):
    run, plan = hostile_run(tmp_path, Evidence(HOSTILE_PING, ("vm1",)))
    no_forbidden_bytes((run / "evidence.json").read_bytes())
    assert "\\u001b]0;owned\\u0007" in (run / "evidence.json").read_text()  # JSON's own escapes: the data is whole
    assert load_collected(run, plan).evidence[0] == Evidence(HOSTILE_PING, ("vm1",))
    assert printable_json({"s": "\x1b\u202e\x9b\ud800\U000e0001 中文"}) == '{"s": "\\u001b\\u202e\\u009b\\ud800\\udb40\\udc01 中文"}'
    assert json.loads(printable_json({"s": "\ud800\U000e0001"})) == {"s": "\ud800\U000e0001"}


def test_verdicts_judged_from_a_hostile_guests_evidence_are_printable(tmp_path):
    run, plan = hostile_run(tmp_path, Evidence(HOSTILE_PING, ("vm1",)))
    results = judge_run(run, registry()).results
    assert [r.ok for r in results] == [False, False]
    for r in results:
        shown_everywhere(r)
    assert "\\x1b]0;owned\\x07" in results[0].detail  # a teacher sees what was sent


def test_a_judge_collector_or_edited_evidence_that_quotes_escapes_gives_a_printable_result(tmp_path):
    _, _, plan = exercise_plan(tmp_path)
    check = plan.scenario.exercise.tasks[0].checks[0]
    loud = CheckKind(lambda ctx, spec: Evidence(), lambda plan, spec, ev: CheckResult("n\x1b[2J", "ping", True, "d\x9b1m\u202e", data={"k\x07": ["v\x1b"]}))
    result = runner.judge_one(loud, plan, check, Evidence(), {})
    assert (result.name, result.detail, result.data) == ("n\\x1b[2J", "d\\x9b1m\\u202e", {"k\\x07": ["v\\x1b"]})
    assert loud.run(CheckContext(plan, {}, tmp_path), check.spec).name == "n\\x1b[2J"  # ad hoc checks (the pytest plugin) too

    def crashing(ctx, spec):
        raise ValueError("guest said \x1b]0;t\x07")

    collected = runner.collect_one(CheckKind(crashing, loud.judge), CheckContext(plan, {}, tmp_path), check.spec)
    assert collected.error == "ValueError: guest said \\x1b]0;t\\x07"
    edited = runner.judge_one(loud, plan, check, Evidence(error="boom\x1b[2J\u202e"), {})  # a student's bundle, edited
    assert edited.detail == "the check could not be completed: boom\\x1b[2J\\u202e" and not edited.ok


def test_vnetlab_judge_prints_no_escape_sequence(tmp_path, capfd):
    run, _ = hostile_run(tmp_path, Evidence(HOSTILE_PING, ("vm1",)))
    assert cli.main(["judge", str(run)]) == cli.EXIT_FAIL
    out, err = capfd.readouterr()
    no_forbidden_bytes((out + err).encode("utf-8", "surrogateescape"))
    assert "\\x1b]0;owned\\x07" in out
    assert cli.main(["judge", str(run), "--format", "json"]) == cli.EXIT_FAIL
    out, _ = capfd.readouterr()
    no_forbidden_bytes(out.encode("utf-8", "surrogateescape"))
    assert "\\x1b]0;owned\\x07" in json.loads(out)[0]["results"][0]["detail"]


def test_the_cli_console_escapes_even_text_built_raw(capfd):
    """Whatever a Text, a table cell or markdown carries, only rich's own style codes reach the terminal."""
    console = cli.make_console()
    table = Table()
    table.add_column("detail")
    table.add_row(Text("cell \x1b]0;t\x07"))
    console.print(Text("raw \x1b[2J\x9b1m\u202e"), table)
    out, _ = capfd.readouterr()
    no_forbidden_bytes(out.encode("utf-8", "surrogateescape"))
    assert "raw \\x1b[2J\\x9b1m\\u202e" in out and "cell \\x1b]0;t" in out  # (rich itself drops a BEL)


def test_the_outcome_of_exercise_check_prints_no_escape_sequence(tmp_path, capfd):
    ctx = SimpleNamespace(out=cli.make_console(), err=cli.make_console(stderr=True))
    raw = CheckResult("ping \x1b]0;t\x07", "ping", False, "got " + HOSTILE_OUTPUT)  # as a state written before results were shown
    print_outcomes(ctx, "lab-a", [TaskOutcome(1, "address vm2", False, [raw], tmp_path, 0.0, 1)])
    out, err = capfd.readouterr()
    no_forbidden_bytes((out + err).encode("utf-8", "surrogateescape"))
    assert "\\x1b]0;owned\\x07" in out


def hostile_state(plan) -> ExerciseState:
    ex = plan.scenario.exercise
    said = CheckResult("ping vm1 → vm2", "ping", False, "got \x1b]0;owned\x07\x1b[2J", data={"stdout_tail": "\x9b1m"}).to_json()
    answer = {"value": "52:54:00:00:00:02 \u202eevil\x1b[2J", "at": 2.0}
    records = [TaskRecord(ex.tasks[0].name, "failed", 2.0, None, 0, None, None, [said]), TaskRecord(ex.tasks[1].name, "failed", 2.0, None, 0, answer, None, [])]
    return ExerciseState("ex-two-vm-ping", ex.title, str(EXERCISE), hashlib.sha256(EXERCISE.read_bytes()).hexdigest(), "alice", "lab-a", dict(plan.scenario.param_values), 1.0, 2700, records)


def test_result_json_and_the_exercise_state_keep_a_students_text_exactly_and_show_none_of_it(tmp_path):
    text, _, plan = exercise_plan(tmp_path)
    state = hostile_state(plan)
    folder, _ = write_bundle(state, plan, text, tmp_path / "bundles", Layout(tmp_path / "host"))
    raw = (folder / "result.json").read_bytes()
    no_forbidden_bytes(raw)
    result = json.loads(raw)
    assert result["tasks"][1]["answer"] == state.tasks[1].answer and result["tasks"][0]["checks"] == state.tasks[0].checks
    no_forbidden_bytes((folder / "junit.xml").read_bytes())
    (tmp_path / "lab").mkdir()
    state.save(tmp_path / "lab")
    no_forbidden_bytes((tmp_path / "lab" / STATE_FILE).read_bytes())
    assert ExerciseState.load(tmp_path / "lab") == state


def test_the_gradebook_shows_a_students_text_and_a_spreadsheet_obeys_none_of_it(tmp_path, capfd):
    text, _, plan = exercise_plan(tmp_path)
    state = hostile_state(plan)
    state.student = '=HYPERLINK("http://evil")\x1b[2J'  # result.json is the student's to edit
    folder, _ = write_bundle(state, plan, text, tmp_path / "bundles", Layout(tmp_path / "host"))
    book = grade([folder], registry(), layout=Layout(tmp_path / "host"))
    (row,) = book.rows
    assert row.error is not None and row.student == state.student
    header, rows = book.table()
    assert forbidden_in("".join(header + rows[0])) == set() and rows[0][0] == '=HYPERLINK("http://evil")\\x1b[2J'
    cells = next(csv.reader(io.StringIO(book.csv().splitlines()[1])))
    assert cells[0] == "'=HYPERLINK(\"http://evil\")\\x1b[2J" and forbidden_in(book.csv()) == set()
    assert [spreadsheet_text(c) for c in ("+1+cmd", "-x", "@SUM(A1)", "-1.5", "2", "a=b", "")] == ["'+1+cmd", "'-x", "'@SUM(A1)", "-1.5", "2", "a=b", ""]
    out_csv = tmp_path / "grades.csv"
    assert cli.main(["exercise", "grade", str(folder), "--csv", str(out_csv)]) == cli.EXIT_FAIL
    out, err = capfd.readouterr()
    no_forbidden_bytes((out + err).encode("utf-8", "surrogateescape"))
    assert "\\x1b[2J" in out and list(csv.reader(io.StringIO(out_csv.read_text())))[1][0] == cells[0] and forbidden_in(out_csv.read_text()) == set()
    assert cli.main(["exercise", "grade", str(folder), "--json"]) == cli.EXIT_FAIL
    out, _ = capfd.readouterr()
    no_forbidden_bytes(out.encode("utf-8", "surrogateescape"))
    assert json.loads(out)[0]["student"] == state.student


def test_an_answer_is_quoted_once_with_its_escapes_shown():
    plan = make_plan(load_scenario(EXERCISE, "alice"), "lab-a")
    check = plan.scenario.exercise.tasks[1].checks[0].answer
    wrong = judge_answer(plan, check, Evidence({"answer": "52:54:00:00:00:01\x1b[2J\u202e", "at": 1.0}))
    assert wrong.detail.startswith("answered '52:54:00:00:00:01\\x1b[2J\\u202e': not a MAC address: ") and wrong.data == {"answer": "52:54:00:00:00:01\\x1b[2J\\u202e"}
    assert judge_answer(plan, check, Evidence({"answer": "52:54:00:00:00:01", "at": 1.0})).detail == "answered '52:54:00:00:00:01': not the expected answer"
