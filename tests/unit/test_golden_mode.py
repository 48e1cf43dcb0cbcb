"""VNETLAB_UPDATE_GOLDEN can never turn into a green run, and is refused in CI.

An update run used to compare each golden file with what it had just written (always equal),
so a suite run with the variable set passed whatever the code did. The shared helper
(tests/goldens.py) now fails after writing, and refuses to write at all when CI=true.
The first tests drive the helper on temporary files; the last ones call the three real golden
tests (plan/XML, `--explain`, the schema copy) with their golden folder/file pointed at scratch
copies, so the real golden files are never touched (checked).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # tests/: the shared golden helper
import goldens  # noqa: E402
from goldens import REFUSED_IN_CI, REWRITTEN, UPDATE_ENV, compare_golden, compare_goldens  # noqa: E402

Failed = pytest.fail.Exception


@pytest.fixture
def env(monkeypatch):
    """A clean environment: neither update mode nor CI, whatever the caller's shell says."""
    monkeypatch.delenv(UPDATE_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    return monkeypatch


def test_normal_mode_passes_on_equal_text_and_fails_on_a_difference(env, tmp_path):
    golden = tmp_path / "plan.yaml"
    golden.write_text("a: 1\n")
    compare_golden(golden, "a: 1\n")
    with pytest.raises(AssertionError, match="plan.yaml differ"):
        compare_golden(golden, "a: 2\n")
    assert golden.read_text() == "a: 1\n"  # a normal run never writes an existing golden file


def test_parse_compares_meaning_not_formatting(env, tmp_path):
    golden = tmp_path / "schema.json"
    golden.write_text('{"a": 1, "b": [1, 2]}\n')
    compare_golden(golden, json.dumps({"b": [1, 2], "a": 1}, indent=2), parse=json.loads)
    with pytest.raises(AssertionError):
        compare_golden(golden, json.dumps({"a": 2}), parse=json.loads)


def test_update_mode_writes_every_file_then_fails(env, tmp_path):
    env.setenv(UPDATE_ENV, "1")
    changed, same, new = tmp_path / "changed.txt", tmp_path / "same.txt", tmp_path / "sub" / "new.txt"
    changed.write_text("old\n")
    same.write_text("same\n")
    with pytest.raises(Failed) as caught:
        compare_goldens({changed: "new\n", same: "same\n", new: "fresh\n"})
    message = str(caught.value)
    assert message.startswith(REWRITTEN)
    assert "golden files rewritten; review the diff and run again without VNETLAB_UPDATE_GOLDEN" in message
    assert f"{changed}: changed" in message and f"{same}: unchanged" in message and f"{new}: new" in message
    assert (changed.read_text(), same.read_text(), new.read_text()) == ("new\n", "same\n", "fresh\n")


def test_update_mode_fails_even_when_nothing_changed(env, tmp_path):
    """The old behaviour: write, then compare the file with itself and pass."""
    env.setenv(UPDATE_ENV, "1")
    golden = tmp_path / "explain.txt"
    golden.write_text("ip netns add vnl-lab\n")
    with pytest.raises(Failed, match="golden files rewritten"):
        compare_golden(golden, "ip netns add vnl-lab\n")


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_update_mode_is_refused_in_ci_and_writes_nothing(env, tmp_path, ci):
    env.setenv(UPDATE_ENV, "1")
    env.setenv("CI", ci)
    golden = tmp_path / "plan.yaml"
    golden.write_text("stale\n")
    before = golden.stat().st_mtime_ns
    with pytest.raises(Failed) as caught:
        compare_golden(golden, "current\n")
    assert str(caught.value) == REFUSED_IN_CI
    assert "CI=true" in str(caught.value)
    assert golden.read_text() == "stale\n" and golden.stat().st_mtime_ns == before
    assert not (tmp_path / "missing.txt").exists()
    with pytest.raises(Failed, match="CI=true"):
        compare_golden(tmp_path / "missing.txt", "x\n")
    assert not (tmp_path / "missing.txt").exists()


def test_ci_without_update_mode_compares_normally(env, tmp_path):
    env.setenv("CI", "true")
    golden = tmp_path / "plan.yaml"
    golden.write_text("a\n")
    compare_golden(golden, "a\n")
    with pytest.raises(AssertionError):
        compare_golden(golden, "b\n")


def test_a_missing_golden_file_is_written_and_fails_once(env, tmp_path):
    golden = tmp_path / "new" / "vm1.xml"
    with pytest.raises(Failed, match="did not exist"):
        compare_golden(golden, "<domain/>\n")
    assert golden.read_text() == "<domain/>\n"
    compare_golden(golden, "<domain/>\n")


# -- the real golden tests, pointed at scratch copies of their files ------------------------


def _load(path: Path) -> types.ModuleType:
    """A test module by path, as a module of its own (its golden folder/file constants patchable)."""
    spec = importlib.util.spec_from_file_location(f"golden_mode_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def real_golden_tests(env, tmp_path):
    """The three golden tests as callables, each comparing against a scratch copy of its files;
    the real golden files are checked to be untouched afterwards (and put back if they were not)."""
    plan_mod = _load(TESTS / "golden" / "test_plan_golden.py")
    explain_mod = _load(TESTS / "unit" / "test_explain.py")
    schema_mod = _load(TESTS / "unit" / "test_schema.py")
    real = {
        "plan": TESTS / "golden" / "two-vm-ping" / "qemu" / "vm2.xml",
        "explain": TESTS / "golden" / "wireguard-vpn" / "explain.txt",
        "schema": Path(schema_mod.COMMITTED),
    }
    before = {path: path.read_bytes() for path in real.values()}
    (tmp_path / "golden").mkdir()
    for name in ("two-vm-ping", "wireguard-vpn"):
        shutil.copytree(TESTS / "golden" / name, tmp_path / "golden" / name)
    shutil.copy(real["schema"], tmp_path / "scenario.schema.json")
    env.setattr(plan_mod, "GOLDEN", tmp_path / "golden")
    env.setattr(explain_mod, "GOLDEN", tmp_path / "golden")
    env.setattr(schema_mod, "COMMITTED", tmp_path / "scenario.schema.json")
    two_vm_ping = next(f for f in plan_mod.scenario_files() if f.stem == "two-vm-ping")
    tests = {
        "plan": lambda: plan_mod.test_plan_and_xml_match_golden(two_vm_ping, "qemu"),
        "explain": lambda: explain_mod.test_explain_matches_golden("wireguard-vpn"),
        "schema": schema_mod.test_committed_copy_is_up_to_date,
    }
    scratch = {
        "plan": tmp_path / "golden" / "two-vm-ping" / "qemu" / "vm2.xml",  # the last file the plan test compares
        "explain": tmp_path / "golden" / "wireguard-vpn" / "explain.txt",
        "schema": tmp_path / "scenario.schema.json",
    }
    yield tests, scratch
    touched = [str(path) for path, data in before.items() if path.read_bytes() != data]
    for path, data in before.items():
        if path.read_bytes() != data:
            path.write_bytes(data)
    assert not touched, f"the test wrote real golden files (put back): {touched}"


STALE = {"plan": "<stale/>\n", "explain": "stale\n", "schema": "{}\n"}


def _outcome(test) -> str:
    try:
        test()
    except Failed as exc:
        return f"failed: {exc}"
    except AssertionError as exc:
        return f"assert: {exc}"
    return "passed"


def test_the_real_golden_tests_fail_in_update_mode_and_refuse_it_in_ci(real_golden_tests, env, tmp_path):
    tests, scratch = real_golden_tests
    for name, text in STALE.items():
        scratch[name].write_text(text)
    for name, test in tests.items():  # normal mode notices each stale file
        assert _outcome(test).startswith("assert: "), name

    env.setenv(UPDATE_ENV, "1")
    env.setenv("CI", "true")
    for name, test in tests.items():
        assert _outcome(test) == f"failed: {REFUSED_IN_CI}", name
        assert scratch[name].read_text() == STALE[name], f"{name}: written in CI"

    env.delenv("CI")
    for name, test in tests.items():
        outcome = _outcome(test)
        assert outcome.startswith(f"failed: {REWRITTEN} ("), (name, outcome)
        assert str(tmp_path) in outcome, (name, outcome)  # it names the (scratch) files it wrote
        assert scratch[name].read_text() != STALE[name], f"{name}: not rewritten"

    env.delenv(UPDATE_ENV)
    for name, test in tests.items():  # what update mode wrote is what the code gives now
        assert _outcome(test) == "passed", name


def test_no_test_module_handles_update_mode_itself():
    """Every golden comparison goes through tests/goldens.py: no other module reads the variable."""
    offenders = []
    for path in TESTS.rglob("*.py"):
        if path.name in ("goldens.py", Path(__file__).name):
            continue
        text = path.read_text()
        if f'environ.get("{UPDATE_ENV}")' in text or f"environ['{UPDATE_ENV}']" in text or f'environ["{UPDATE_ENV}"]' in text or f'getenv("{UPDATE_ENV}")' in text:
            offenders.append(str(path.relative_to(TESTS)))
    assert not offenders, f"these modules read {UPDATE_ENV} themselves instead of using tests/goldens.py: {offenders}"
    assert goldens.compare_golden is compare_golden
