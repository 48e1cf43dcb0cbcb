"""How many QMP commands does libvirt send to start one domain, and how many are `qom-get`s?

libvirt 9.0 reads the guest CPU's features one `qom-get` at a time before it resumes a guest
(docs/benchmark.md: 413 commands per domain, 397 of them `qom-get`): the biggest cost a lab guest
has that a raw boot has not. This counts them on the host's libvirt and QEMU, so that each release
is measured instead of assumed. Method: for the length of `vnetlab run two-vm-ping --cold` (--rounds
times), libvirtd's debug log of its QEMU monitor and process code goes to a file of its own
(`virt-admin daemon-log-filters '1:qemu.qemu_monitor 1:qemu.qemu_process'`; the daemon's filters
and outputs are put back afterwards, also on failure). A domain's monitor is the one libvirt
opens right after 'Connect monitor to vm=… name=…' in the same thread; its commands are the
QEMU_MONITOR_SEND_MSG lines from the first up to the `cont` that resumes the guest (vnetlab starts
domains paused): what starting the domain cost. Other domains starting meanwhile (other labs on
the host) are in the log too, and not counted.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import domain_name

from common import bench_setup, record, run_lab  # bench/common.py, beside this script

FILTERS = "1:qemu.qemu_monitor 1:qemu.qemu_process"
_CONNECT = re.compile(r"^\S+ \S+ (\d+): .*Connect monitor to vm=\S+ name='([^']+)'")
_NEW = re.compile(r"^\S+ \S+ (\d+): .*QEMU_MONITOR_NEW: mon=(0x[0-9a-f]+)")
_SEND = re.compile(r"QEMU_MONITOR_SEND_MSG: mon=(0x[0-9a-f]+) msg=(\{.*\})\s*(?:fd=-?\d+)?$")


def commands_per_start(log: str, domains: set[str]) -> dict[str, Counter]:
    """For each of `domains` that started in the log: its monitor commands up to the first `cont`, by name."""
    connecting: dict[str, str] = {}  # thread → domain whose monitor it is opening
    monitors: dict[str, str] = {}  # monitor address → domain
    counts: dict[str, Counter] = {}
    resumed: set[str] = set()
    for line in log.splitlines():
        if found := _CONNECT.match(line):
            connecting[found.group(1)] = found.group(2)
        elif (found := _NEW.match(line)) and found.group(1) in connecting:
            domain = connecting.pop(found.group(1))
            if domain in domains:
                monitors[found.group(2)] = domain
                counts[domain] = Counter()
        elif (found := _SEND.search(line)) and found.group(1) in monitors:
            domain = monitors[found.group(1)]
            if domain in resumed:
                continue
            command = json.loads(found.group(2)).get("execute", "?")
            if command == "cont":
                resumed.add(domain)
                continue
            counts[domain][command] += 1
    return {d: c for d, c in counts.items() if d in resumed}


def _admin(*args: str) -> str:
    done = subprocess.run(["virt-admin", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise SystemExit(f"virt-admin {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.split(":", 1)[1].strip() if ":" in done.stdout else ""


def main() -> int:
    args, accel = bench_setup(__doc__, lab="bench-qmp")
    log = Path(f"/var/log/vnetlab-qmp-{os.getpid()}.log")
    filters, outputs = _admin("daemon-log-filters"), _admin("daemon-log-outputs")
    starts: list[Counter] = []
    try:
        _admin("daemon-log-filters", FILTERS)
        _admin("daemon-log-outputs", " ".join(x for x in (f"1:file:{log}", outputs) if x))
        scenario = (SCENARIOS_DIR / "two-vm-ping.yaml").read_text()
        for n in range(1, args.rounds + 1):
            lab = f"{args.lab}-{n}"
            run_lab(scenario, lab, accel.name, "--cold")  # booted guests' domain starts, the count compared across releases (a restore is one too, with its own count)
            found = commands_per_start(log.read_text(), {domain_name(lab, vm) for vm in ("vm1", "vm2")})
            if len(found) != 2:
                raise SystemExit(f"round {n}: found the start of {len(found)} of the 2 domains in libvirtd's log ({log})")
            for domain, counts in sorted(found.items()):
                starts.append(counts)
                top = ", ".join(f"{c} {name}" for name, c in counts.most_common(3))
                print(f"round {n}: {domain}: {sum(counts.values())} QMP commands before the resume ({top})", flush=True)
    finally:
        _admin("daemon-log-filters", filters)
        _admin("daemon-log-outputs", outputs)
        log.unlink(missing_ok=True)
    total = statistics.median(sum(c.values()) for c in starts)
    qom = statistics.median(c["qom-get"] for c in starts)
    print(f"median of {len(starts)} domain starts: {total:g} QMP commands, {qom:g} of them qom-get")
    record("QMP commands libvirt sends per domain start", f"{total:g} ({qom:g} qom-get)", "", "", len(starts),
           "libvirtd's monitor debug log, commands up to the resume (bench/qmp_per_start.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
