"""The benchmarks' latest figures (bench/results.json, not committed): one entry per benchmark and
host release, for bench/table.py to publish. Standard library only, so that the table can be
published by any python3 (scripts/prove-debian13 does it from outside its Debian 13 tree)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"
OS_RELEASE = Path("/etc/os-release")


def load(path: Path = RESULTS) -> dict[str, dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save(results: dict[str, dict], path: Path = RESULTS) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def key(name: str, host: str) -> str:
    """One entry per benchmark and host release: a Debian 13 figure does not replace a Debian 12 one."""
    return f"{name} @ {host.split(',')[0]}"


def record(name: str, measured: str, raw: str, ratio: str, rounds: int, note: str = "", path: Path = RESULTS) -> None:
    """Keep this benchmark's latest medians, on this host release, in bench/results.json."""
    results = load(path)
    host = host_release()
    busy = f"load average {os.getloadavg()[0]:.1f} at the end"  # a figure taken on a busy host reads as such
    results[key(name, host)] = {
        "name": name, "host": host, "measured": measured, "raw": raw, "ratio": ratio, "rounds": rounds,
        "note": "; ".join(x for x in (note, busy) if x), "date": time.strftime("%Y-%m-%d"), "machine": machine(),
    }
    save(results, path)


def host_release(os_release: Path = OS_RELEASE) -> str:
    """'Debian 13, libvirt 11.3.0, QEMU 10.0.2': the release and the two programs the figures depend on."""
    fields = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', os_release.read_text() if os_release.exists() else "", re.MULTILINE))
    release = " ".join(x for x in (fields.get("NAME", "unknown").removesuffix(" GNU/Linux"), fields.get("VERSION_ID", "")) if x)
    return ", ".join([release, f"libvirt {_version(['libvirtd', '--version'])}", f"QEMU {_version(['qemu-system-x86_64', '--version'])}"])


def _version(argv: list[str]) -> str:
    """The first dotted version number a program prints about itself ('?' when it cannot be run)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return "?"
    found = re.search(r"\d+\.\d+(?:\.\d+)?", out)
    return found.group(0) if found else "?"


def machine() -> str:
    cores = len([line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor")])
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")), 0)
    return f"{cores} cores, {mem / 2**20:.0f} GiB"
