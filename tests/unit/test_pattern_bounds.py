"""A scenario's regular expressions run over what a guest prints, and the student is root in the
guest (issue 23, finding 8): a pattern that backtracks without end over 256 KiB of output must fail
its check with a readable detail, never hang or crash the run; an invalid pattern is a located
problem when the scenario is loaded."""

from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from vnetlab.backends.ssh import CommandResult
from vnetlab.checks.base import CheckContext
from vnetlab.checks import parse
from vnetlab.checks.parse import MATCH_TIMEOUT, MAX_EXPANDED, MAX_MATCHED, PatternError, PatternTimeout, compile_pattern, expanded_size, pattern_found
from vnetlab.compose import parse_scenario
from vnetlab.features.commands import run_command_check
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.plan.planner import PlanOptions, make_plan

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")
GUARD = 60.0  # s: far above MATCH_TIMEOUT; only there so that a hang fails the test instead of holding it
CATASTROPHIC = ".*ok.*done"
OUTPUT = ("ok " * (MAX_MATCHED // 3 + 1))[:MAX_MATCHED]  # 256 KiB on one line, "ok" everywhere and never "done"


def lab(expect: str) -> str:
    return (
        "name: patterns\nbridges: [{name: br0, subnet: 10.1.1.0/24}]\nvms:\n  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}\n"
        f"checks:\n  - command: {{node: vm1, run: 'cat log', expect: {expect}}}\n"
    )


@dataclass
class Guest:
    """A guest whose every command prints `stdout` (SSH is not the point here)."""

    stdout: str

    def run(self, command: str, *, timeout: float = 30.0, stdin: bytes | None = None, check: bool = True) -> CommandResult:
        return CommandResult(command, 0, self.stdout, "")


def _check_in_child(expect: str, stdout: str, results: multiprocessing.Queue) -> None:
    scenario = parse_scenario(lab(expect), "lab.yaml")
    plan = make_plan(scenario, "patterns", PlanOptions(kernel=KERNEL))
    started = time.monotonic()
    result = run_command_check(CheckContext(plan, {"vm1": Guest(stdout)}, Path("/nonexistent")), scenario.checks[0].spec)
    results.put((result.ok, result.detail, result.data, time.monotonic() - started))


def checked(expect: str, stdout: str) -> tuple[bool, str, dict, float]:
    """The command check, run in a child process: Python's re holds the GIL while it backtracks, so
    only another process can notice (and stop) a search that does not end."""
    results: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_check_in_child, args=(expect, stdout, results))
    child.start()
    child.join(GUARD)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"the check of {expect} over {len(stdout)} characters did not finish within {GUARD:g} s")
    return results.get(timeout=5)


def test_a_catastrophic_pattern_over_256_kib_fails_its_check_with_the_reason() -> None:
    ok, detail, data, _seconds = checked(json.dumps({"stdout": CATASTROPHIC}), OUTPUT)
    assert not ok
    assert f"stdout: the regular expression '{CATASTROPHIC}' gave up after {MATCH_TIMEOUT:g} s over {MAX_MATCHED} characters" in detail
    assert "anchor it, or make it more specific" in detail and data["pattern_timeouts"]


def test_ordinary_patterns_still_judge_the_output() -> None:
    assert checked(json.dumps({"stdout": "ok done$"}), OUTPUT + " ok done\n")[0]
    assert checked(json.dumps({"stdout": "^done"}), "start\ndone\n")[0] is False  # re's default: ^ is the start of the text
    assert checked(json.dumps({"stdout": "(?m)^done"}), "start\ndone\n")[0]
    assert pattern_found("abc", "x" * (2 * MAX_MATCHED) + "abc") and not pattern_found("abc", "abc" + "x" * MAX_MATCHED)  # its end only


@pytest.mark.parametrize(("pattern", "message"), [("(", "missing )"), ("[a", "unterminated character set"), ("*x", "nothing to repeat")])
def test_an_invalid_pattern_is_a_located_problem(pattern: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_scenario(lab(json.dumps({"stdout": pattern})), "lab.yaml")
    assert [str(p).split(" at position")[0] for p in refused.value.problems] == [f"lab.yaml:6: checks[0].command.expect.stdout: not a regular expression: {message}"]


@pytest.mark.parametrize("pattern", ["(a{1000}){1000}", "(?:(?:(?:a{4294967294}){100}){100})", "x{65535}{65535}"])
def test_a_pattern_too_costly_to_compile_is_refused_before_it_is_compiled(pattern: str) -> None:
    """The regex module multiplies counted repeats out when it compiles: (a{1000}){1000} took 1.6 s
    and 275 MiB here, and three nested levels ran out of memory. Refused from the pattern's text."""
    with pytest.raises(ValidationError) as refused:
        parse_scenario(lab(json.dumps({"stderr": pattern})), "lab.yaml")
    (problem,) = [str(p) for p in refused.value.problems]
    assert problem.startswith("lab.yaml:6: checks[0].command.expect.stderr: the regular expression's repeats multiply out to ")
    assert problem.endswith(f"atoms; at most {MAX_EXPANDED} (write a{{1000}} as a+ or .{{0,1000}}, not nested counts)")


@pytest.mark.parametrize(("pattern", "size"), [(r"\d{1,3}(\.\d{1,3}){3}", 15), (r"\p{L}{3}", 3), (r"\{5\}", 3), ("(ab|cd){10}", 40), (".*ok.*done", 8)])
def test_ordinary_repeats_count_little(pattern: str, size: int) -> None:
    assert expanded_size(pattern) == size


@pytest.mark.parametrize(("pattern", "size"), [
    ("a{2,5}", 5), ("a{3,}", 3), ("a{,4}", 4), ("a{0}", 1), ("a{2}?", 2), ("a{2}+", 2), ("ab{3}", 4), ("a{1000}b", 1001),  # a repeat counts its most, unbounded its least
    ("a{}", 3), ("a{,}", 4), ("{3}a", 1),  # no count: literal braces; a count with nothing before it repeats nothing
    (r"\x{41}{3}", 3), (r"\N{DIGIT ONE}{4}", 4), (r"\p{L}x{2}", 3), (r"\\{3}", 3), ("a\\", 2),  # an escape is one atom, braces and all
    ("[a-z]{4}", 4), ("x[a-z]{4}", 5), ("[]a]{2}", 2), ("[^]]{3}", 3), (r"[\]]{3}", 3), ("[abc", 1),  # so is a class
    ("(?#x{1000})a", 1), ("(?#x)b{3}", 3), ("a(?#abc", 1), ("(a)(?#x)b", 2), ("(?#c)a(b)", 2),  # a comment is nothing, to its own end
    ("(ab){3}", 6), ("(a{2}b){3}", 9), ("(){5}", 5), ("((a{10}){10}){10}", 1000), ("(a|bc){2}", 6),  # groups multiply; alternatives add up
    ("a*b+c?", 3), ("a*?", 1), ("a|b", 2),
    ("a)b", 3), ("(ab", 2), ("((a{3}", 3),  # unbalanced (the compiler refuses it): what is there
])
def test_expanded_size_multiplies_counted_repeats_out_as_the_compiler_does(pattern: str, size: int) -> None:
    assert expanded_size(pattern) == size


def test_a_pattern_of_exactly_the_bound_compiles_and_one_atom_more_is_refused() -> None:
    assert compile_pattern("a{%d}" % MAX_EXPANDED).match("a" * MAX_EXPANDED)
    with pytest.raises(PatternError, match=f"multiply out to {MAX_EXPANDED + 1} atoms; at most {MAX_EXPANDED} "):
        compile_pattern("a{%d}" % (MAX_EXPANDED + 1))


class GivesUp:
    """A compiled pattern whose search runs out of time (regex raises TimeoutError): records how it was asked."""

    asked: dict = {}

    def search(self, text: str, timeout: float | None = None):
        GivesUp.asked = {"length": len(text), "end": text[-3:], "timeout": timeout}
        raise TimeoutError("regex timed out")


def test_a_search_is_bounded_in_time_and_its_giving_up_is_worded_for_the_author(monkeypatch) -> None:
    """The timeout itself is proven on a real catastrophic pattern above (in a child process); here, what
    pattern_found asks of the search and what it says when the search gives up."""
    monkeypatch.setattr(parse, "compile_pattern", lambda pattern: GivesUp())
    with pytest.raises(PatternTimeout) as short:
        pattern_found("x+y", "abc" * 10)
    assert GivesUp.asked == {"length": 30, "end": "abc", "timeout": MATCH_TIMEOUT}
    assert str(short.value) == (f"the regular expression 'x+y' gave up after {MATCH_TIMEOUT:g} s over 30 characters "
                                "(it backtracks too much: anchor it, or make it more specific than .*)")
    with pytest.raises(PatternTimeout) as long:
        pattern_found("x+y", "q" * (MAX_MATCHED + 5) + "end")
    assert GivesUp.asked == {"length": MAX_MATCHED, "end": "end", "timeout": MATCH_TIMEOUT}  # only the output's end is searched
    assert f"over {MAX_MATCHED} characters" in str(long.value)
