"""What a guest or a remote host printed reaches root's terminal, report.json and junit.xml as
visible text, never as escape sequences or as characters XML 1.0 cannot carry (issue 23, finding 4).

The console here is a real serial log file written with what a hostile or merely systemd-coloured
guest prints; the guest's failure goes through the real wait (vnetlab.run.configure), the real
report and JUnit writers, xmllint and the real CLI error printer. Only the guest is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from vnetlab import cli
from vnetlab.backends.image import GUEST_FAILED_MARKER
from vnetlab.backends.ssh import CommandResult, SSHError, _tail
from vnetlab.checks.base import CheckContext, CheckResult
from vnetlab.checks.parse import excerpt
from vnetlab.compose import load_scenario, registry
from vnetlab.errors import VnetlabError
from vnetlab.features.commands import CommandCheck, Expect, run_command_check
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.printable import printable, printable_data
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
