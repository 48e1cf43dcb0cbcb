"""Run each scenario once, one after another: PASS or FAIL with the lab's time, how each guest
started (restored from a warm image, with the seconds of its restore call, or booted), and nothing
of it may remain (the soak's check: namespace, tap, domain, qemu, lab folder, lock).
`make prove-debian13` runs it inside its Debian 13 tree against that release's libvirtd and QEMU;
it runs on any host.

    bench/prove_labs.py [--prefix P] SCENARIO...     exit 0 when every lab passed and left nothing
    bench/prove_labs.py --gone LAB [--gone LAB...]    only check that these labs (run by others) left nothing
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from soak import finish, left_behind, run_lab  # bench/soak.py, beside this script

NAME_MAX = 24  # vnetlab's limit on a lab name


def lab_name(prefix: str, scenario: str) -> str:
    """PREFIX-SCENARIO, cut to vnetlab's limit: with a prefix unique to the run, the labs never meet
    another run's on the same host (taps live briefly in the root namespace, which a chroot shares)."""
    return f"{prefix}-{scenario}"[:NAME_MAX].rstrip("-")


def starts(report: Path) -> str:
    """How the report's guests started: "vm1 restored in 0.52 s, vm2 booted" (the restore: from the
    libvirt call to the paused domain, the timeline's restoring → restored), and the warm step's
    time when the run made a warm image first; "" without a report."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return ""
    stages = data.get("timeline", {}).get("guests", {})
    said = []
    for vm, guest in sorted(data.get("guests", {}).items()):
        at = {stage["stage"]: stage["at"] for stage in stages.get(vm, [])}
        if guest.get("start") == "restore" and {"restoring", "restored"} <= at.keys():
            said.append(f"{vm} restored in {at['restored'] - at['restoring']:.2f} s")
        else:
            said.append(f"{vm} {'restored' if guest.get('start') == 'restore' else 'booted'}")
    warm = [step["seconds"] for step in data.get("steps", []) if step.get("name") == "warm"]
    return ", ".join(said) + (f" (warm image(s) made first: {warm[0]:.1f} s)" if warm else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO")
    parser.add_argument("--gone", action="append", default=[], metavar="LAB", help="a lab run by another command (a benchmark) that must have left nothing either (repeatable)")
    parser.add_argument("--prefix", default=f"prove{os.getpid() % 10000}", help="the labs' names start with it (default: prove and this process's id)")
    args = parser.parse_args()
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vnetlab-prove-") as tmp:
        for scenario in args.scenarios:
            lab, report = lab_name(args.prefix, scenario), Path(tmp) / f"{scenario}.json"
            started = time.monotonic()
            ok, seconds, problems = finish(lab, run_lab(lab, report, scenario), report, started)
            print(f"{'PASS' if ok else 'FAIL'} {scenario} (lab {lab}) in {seconds:.1f} s", flush=True)
            if started_how := starts(report):
                print(f"    guests: {started_how}", flush=True)
            for line in (line for problem in problems for line in problem.splitlines()):
                print(f"    {line}", flush=True)
            if not ok:
                failed.append(scenario)
    if args.scenarios:
        print(f"{len(args.scenarios) - len(failed)}/{len(args.scenarios)} labs passed and left nothing behind" + (f"; failed: {', '.join(failed)}" if failed else ""))
    for lab in args.gone:
        left = left_behind(lab)
        print(f"{'gone' if not left else 'LEFT BEHIND'}: lab {lab}" + "".join(f"\n    {item}" for item in left), flush=True)
        if left:
            failed.append(lab)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
