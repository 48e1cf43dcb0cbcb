"""Soak: 20 consecutive `vnetlab run two-vm-ping`, then 3 at once; nothing of them may remain.

Not part of the test suite (it takes a few minutes): `make soak`. Labs are named soak-…; after
each phase every one of them is checked for a namespace, tap, domain, qemu process, lab folder
(state file) or lock left behind. Prints the counts and durations; exits 1 on any failure.
"""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR / "tests" / "e2e"))

from labtools import VNETLAB, leftovers  # noqa: E402 — the suite's own definition of "left behind"

from vnetlab.run.lab import LOCK_DIR  # noqa: E402

SEQUENTIAL = 20
PARALLEL = 3


def run_lab(lab: str, report: Path, scenario: str = "two-vm-ping") -> subprocess.Popen:
    return subprocess.Popen([*VNETLAB, "run", scenario, "--name", lab, "--report", str(report), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(lab: str, proc: subprocess.Popen, report: Path, started: float) -> tuple[bool, float, list[str]]:
    """Wait for the run; (passed and nothing left behind, its seconds, what went wrong)."""
    out, err = proc.communicate(timeout=600)
    seconds = time.monotonic() - started
    problems: list[str] = []
    if proc.returncode != 0:
        problems.append(f"exit {proc.returncode}: {(out + err).strip()[-500:]}")
    elif not json.loads(report.read_text())["ok"]:
        problems.append("report says not ok")
    problems += [f"left behind: {item}" for item in left_behind(lab)]
    return not problems, seconds, problems


def left_behind(lab: str) -> list[str]:
    """Everything of the lab still on the host (the suite's leftovers), and its lock."""
    left = leftovers(lab)
    if (LOCK_DIR / f"{lab}.lock").exists():
        left.append(f"lock {LOCK_DIR / f'{lab}.lock'}")
    return left


def summary(label: str, seconds: list[float]) -> str:
    return f"{label}: min {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s"


def main() -> int:
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vnetlab-soak-") as tmp:
        reports = Path(tmp)
        sequential: list[float] = []
        for i in range(SEQUENTIAL):
            lab = f"soak-seq-{i:02d}"
            started = time.monotonic()
            ok, seconds, problems = finish(lab, run_lab(lab, reports / f"{lab}.json"), reports / f"{lab}.json", started)
            sequential.append(seconds)
            print(f"{lab}: {'pass' if ok else 'FAIL'} in {seconds:.2f} s", flush=True)
            failures += [f"{lab}: {p}" for p in problems]

        started = time.monotonic()
        labs = [f"soak-par-{i}" for i in range(PARALLEL)]
        procs = {lab: run_lab(lab, reports / f"{lab}.json") for lab in labs}
        with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:  # each run timed to its own end
            outcomes = list(pool.map(lambda lab: finish(lab, procs[lab], reports / f"{lab}.json", started), labs))
        wall = time.monotonic() - started
        parallel: list[float] = []
        for lab, (ok, seconds, problems) in zip(labs, outcomes):
            parallel.append(seconds)
            print(f"{lab}: {'pass' if ok else 'FAIL'} in {seconds:.2f} s (started together)", flush=True)
            failures += [f"{lab}: {p}" for p in problems]

    # A last sweep over every soak lab, in case something reappeared or was removed late.
    for lab in [f"soak-seq-{i:02d}" for i in range(SEQUENTIAL)] + labs:
        failures += [f"{lab}: left behind at the end: {item}" for item in left_behind(lab)]

    passed_seq = SEQUENTIAL - len({f.split(":")[0] for f in failures if f.startswith("soak-seq")})
    passed_par = PARALLEL - len({f.split(":")[0] for f in failures if f.startswith("soak-par")})
    print()
    print(f"sequential: {passed_seq}/{SEQUENTIAL} passed, total {sum(sequential):.1f} s; {summary('per run', sequential)}")
    print(f"parallel:   {passed_par}/{PARALLEL} passed, wall {wall:.1f} s; {summary('per run', parallel)}")
    print(f"left behind (namespaces, taps, domains, qemu processes, lab folders, locks of soak labs): {sum('left behind' in f for f in failures)}")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
