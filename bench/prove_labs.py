"""Run each scenario once, one after another: PASS or FAIL with the lab's time, and nothing of it may
remain (the soak's check: namespace, tap, domain, qemu, lab folder, lock). `make prove-debian13`
runs it inside its Debian 13 tree against that release's libvirtd and QEMU; it runs on any host.

    bench/prove_labs.py [--prefix P] SCENARIO...     exit 0 when every lab passed and left nothing
    bench/prove_labs.py --gone LAB [--gone LAB...]    only check that these labs (run by others) left nothing
"""

from __future__ import annotations

import argparse
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
