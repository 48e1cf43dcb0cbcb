"""What the benchmarks share: their command line (--accel, --rounds), the accelerator, and a raw qemu boot."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from vnetlab.backends.accel import AccelChoice, choose_accel
from vnetlab.backends.image import SECRETS_FW_CFG, GuestImage, ensure_image, kernel_cmdline
from vnetlab.paths import Layout
from vnetlab.procfs import cpu_seconds

from results import record  # noqa: F401 — bench/results.py: every benchmark records through common


def bench_setup(doc: str | None, *, lab: str, vms: bool = False) -> tuple[argparse.Namespace, AccelChoice]:
    """Parse --accel/--rounds/--lab (and --vms), build the tiny image if needed, choose the accelerator and say which."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    parser.add_argument("--rounds", type=int, default=3, metavar="N", help="raw boot + vnetlab run pairs (default 3)")
    parser.add_argument("--lab", default=lab, metavar="NAME", help=f"the lab's name (default {lab}); another lets it run beside a benchmark of the same name on this host")
    if vms:
        parser.add_argument("--vms", type=int, default=10, metavar="N", help="guests in the lab and raw boots started together (default 10)")
    args = parser.parse_args()
    args.rounds = max(1, args.rounds)
    accel = choose_accel(args.accel, ensure_image(Layout().images))
    print(f"accelerator: {accel.name} ({accel.reason})")
    return args, accel


class RawBoot(NamedTuple):
    seconds: float  # until the needle appeared on the serial console
    qemu_cpu_s: float  # CPU seconds qemu had used by then


def raw_boot(image: GuestImage, secrets: Path, accel_name: str, needle: bytes, *, memory: int, disk: Path | None = None, timeout: float = 180.0) -> RawBoot:
    """Boot `image`'s kernel and initramfs with `secrets` (the guest's keys, through fw_cfg as a lab
    guest gets them; and `disk` as the root of a debian guest) in a bare qemu,
    two virtio NICs on isolated hubs and the devices of a lab guest's domain, until `needle` appears on the serial console."""
    macs = ("52:54:00:00:00:01", "52:54:00:00:00:02")
    argv = [
        "qemu-system-x86_64", "-accel", "tcg,tb-size=32" if accel_name == "tcg" else "kvm", "-machine", "pc", "-m", str(memory), "-nodefaults", "-nographic",
        "-no-reboot", "-serial", "stdio", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-fw_cfg", f"name={SECRETS_FW_CFG},file={secrets}",
        "-append", kernel_cmdline("bench", macs[0], "172.30.255.2/24", [(macs[1], "eth0")], disk_root=disk is not None),
        "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
        "-device", "virtio-balloon-pci,free-page-reporting=on",  # as in the domain XML: the guest reports its free pages
    ]
    if disk is not None:
        argv += ["-drive", f"file={disk},if=virtio,format=qcow2,cache=unsafe"]
    for i, mac in enumerate(macs):  # a hub with nothing else on it: no frame leaves qemu
        argv += ["-netdev", f"hubport,id=n{i},hubid={i}", "-device", f"virtio-net-pci,netdev=n{i},mac={mac}"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        seen = b""
        while time.monotonic() - start < timeout:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            seen = (seen + chunk)[-512:]
            if needle in seen:
                return RawBoot(time.monotonic() - start, cpu_seconds(proc.pid) or 0.0)
        raise SystemExit(f"raw boot: no {needle.decode()!r} on the serial console within {timeout:g} s")
    finally:
        proc.kill()
        proc.wait()


def run_lab(scenario_text: str, name: str, accel: str, *extra: str) -> tuple[float, dict]:
    """`vnetlab run` of a scenario given as text, quietly, with a report: (seconds, the report)."""
    with tempfile.TemporaryDirectory() as tmp:
        path, report = Path(tmp) / f"{name}.yaml", Path(tmp) / "report.json"
        path.write_text(scenario_text)
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "vnetlab", "run", str(path), "--name", name, "--accel", accel, "--quiet", "--report", str(report), *extra],
            capture_output=True, text=True,
        )
        seconds = time.monotonic() - start
        if result.returncode != 0:
            raise SystemExit(f"vnetlab run failed:\n{result.stdout}\n{result.stderr}")
        return seconds, json.loads(report.read_text())


def median_run(runs: list[tuple[float, dict]], what: str) -> dict:
    """Print the median run's time and steps; return its report."""
    _, report = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    print(f"median {what}: {statistics.median(t for t, _ in runs):6.2f} s; its steps:")
    for step in report["steps"]:
        print(f"  {step['name']:<10} {step['seconds']:6.2f} s")
    return report


def cpu_per_guest(raw_cpu: float, report: dict) -> str:
    """Where a lab guest's extra time goes, as CPU: its qemu against a raw boot's, moment by moment
    (medians over the run's guests), and vnetlab's own. On 2 busy cores CPU time is boot time."""
    moments: dict[str, list[float]] = {}
    for seen in report["cpu"]["qemu_s"].values():
        for moment, seconds in seen.items():
            moments.setdefault(moment, []).append(seconds)
    median = {moment: statistics.median(values) for moment, values in moments.items()}
    up = median.get("up", 0.0)
    lines = [
        f"qemu CPU per guest (median): a raw boot to its readiness marker {raw_cpu:.2f} s; a lab guest {median.get('started', 0.0):.2f} s when libvirt had started it, "
        f"{up:.2f} s once up ({up - raw_cpu:+.2f} s against the raw boot, libvirt's start, SSH and addresses included), {median.get('checked', up):.2f} s after the checks",
        f"vnetlab's own CPU during the run: {report['cpu']['vnetlab_s']:.2f} s (its start-up and imports before it not counted)",
    ]
    return "\n".join(lines)
