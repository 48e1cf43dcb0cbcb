"""N tiny guests on one bridge: how close is a lab to N raw boots started together?

Each round: (1) N raw qemu boots of the tiny guest (kernel, the initramfs, a per-guest keys
archive through fw_cfg, two virtio NICs on isolated hubs) started at once, timed until the last
readiness marker; (2) `vnetlab run` of a generated lab with N VMs on one bridge and chained
pings (vm1 → vm2 → … → vmN), its guests restored from their warm image (made once before the
rounds, not timed), and (3) the same with --cold (booted), whose reports add the per-guest memory
(Pss of each qemu). Prints each round, the medians, the ratios (issue 28's target: a warm run at
most 0.6×; issue 14's: a cold one at most 1.10×), and the labs' peak total Pss.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from vnetlab.backends.image import GUEST_READY_MARKER, ensure_image, write_guest_secrets
from vnetlab.backends.keys import generate_client_key, generate_host_key
from vnetlab.paths import Layout

from common import RawBoot, bench_setup, cpu_per_guest, median_run, raw_boot, record, run_lab  # bench/common.py, beside this script


def scenario(n: int) -> str:
    vms = "".join(f"  - {{name: vm{i}, nics: [{{bridge: br0, address: 10.1.{i // 250}.{i % 250 + 2}/16}}]}}\n" for i in range(1, n + 1))
    pings = "".join(f"  - ping: {{from: vm{i}, to: vm{i + 1}, count: 1}}\n" for i in range(1, n))
    return f"name: bench-scale\nbridges: [{{name: br0, subnet: 10.1.0.0/16}}]\nvms:\n{vms}checks:\n{pings}"


def raw_boots_together(n: int, accel_name: str) -> RawBoot:
    """Seconds until the last of n raw boots started at once prints its readiness marker, and the
    median CPU one of them had used by its marker."""
    image = ensure_image(Layout().images)
    client = generate_client_key("bench")
    with tempfile.TemporaryDirectory() as tmp:
        keys = []
        for i in range(n):
            secrets = Path(tmp) / f"secrets-{i}.cpio"
            write_guest_secrets(image, secrets, {
                "/root/.ssh/authorized_keys": (client.public_line.encode() + b"\n", 0o600),
                "/etc/dropbear/dropbear_ed25519_host_key": (generate_host_key().dropbear_blob, 0o600),
            })
            keys.append(secrets)
        boots: list[RawBoot] = []
        start = time.monotonic()

        def one(secrets: Path) -> None:
            boots.append(raw_boot(image, secrets, accel_name, GUEST_READY_MARKER.encode(), memory=128, timeout=600.0))

        threads = [threading.Thread(target=one, args=(secrets,)) for secrets in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(boots) != n:
            raise SystemExit(f"raw boots: {n - len(boots)} of {n} did not print the readiness marker")
        return RawBoot(time.monotonic() - start, statistics.median(boot.qemu_cpu_s for boot in boots))


TARGET_WARM_RATIO = 0.60  # issue 28


def vnetlab_run(n: int, accel: str, lab: str, *extra: str) -> tuple[float, dict]:
    return run_lab(scenario(n), lab, accel, "--boot-timeout", "900", *extra)


def main() -> int:
    args, accel = bench_setup(__doc__, lab="bench-scale", vms=True)
    made = vnetlab_run(args.vms, accel.name, args.lab)  # the warm image on first use (or found): not a round
    print(f"warm image made or found, first run {made[0]:.2f} s (not timed)")
    boots: list[RawBoot] = []
    runs: list[tuple[float, dict]] = []  # cold
    warm: list[tuple[float, dict]] = []
    for r in range(1, args.rounds + 1):
        boots.append(raw_boots_together(args.vms, accel.name))
        warm.append(vnetlab_run(args.vms, accel.name, args.lab))
        runs.append(vnetlab_run(args.vms, accel.name, args.lab, "--cold"))
        (total, report), (warm_total, warm_report) = runs[-1], warm[-1]
        print(f"round {r}: {args.vms} raw boots together {boots[-1].seconds:6.2f} s; vnetlab run warm {warm_total:6.2f} s ({warm_total / boots[-1].seconds:.2f}x, "
              f"total Pss {warm_report['memory']['total_pss_mib']:.0f} MiB), cold {total:6.2f} s ({total / boots[-1].seconds:.2f}x, "
              f"total Pss {report['memory']['total_pss_mib']:.0f} MiB)", flush=True)
    raws = [boot.seconds for boot in boots]
    ratios = [total / raw for raw, (total, _) in zip(raws, runs)]
    print(f"median {args.vms} raw boots together: {statistics.median(raws):6.2f} s")
    warm_ratios = [total / raw for raw, (total, _) in zip(raws, warm)]
    warm_median = median_run(warm, f"vnetlab run of {args.vms} guests (warm start)")
    warm_pss = sorted(m["pss"] for m in warm_median["memory"]["guests_mib"].values())
    print(f"warm: Pss per guest median {statistics.median(warm_pss):.0f} MiB at most; total {warm_median['memory']['total_pss_mib']:.0f} MiB")
    print(cpu_per_guest(statistics.median(boot.qemu_cpu_s for boot in boots), warm_median))
    warm_ratio = statistics.median(warm_ratios)
    print(f"warm ratio (median of {len(warm_ratios)} rounds): {warm_ratio:.2f}x, range {min(warm_ratios):.2f}-{max(warm_ratios):.2f}x "
          f"(issue 28's target: at most {TARGET_WARM_RATIO:.1f}x) — {'met' if warm_ratio <= TARGET_WARM_RATIO else 'NOT met'}")
    record(f"{args.vms} guests, warm start, vs {args.vms} raw boots together", f"{statistics.median(t for t, _ in warm):.2f} s", f"{statistics.median(raws):.2f} s",
           f"{warm_ratio:.2f}× ({min(warm_ratios):.2f}–{max(warm_ratios):.2f}×)", len(warm_ratios),
           f"target ≤ {TARGET_WARM_RATIO}×; Pss {statistics.median(warm_pss):.0f} MiB per guest at most; {warm_median['memory']['total_pss_mib']:.0f} MiB in all")
    median_report = median_run(runs, f"vnetlab run --cold of {args.vms} guests")
    pss = sorted(m["pss"] for m in median_report["memory"]["guests_mib"].values())
    settled = sorted(m["pss_last"] for m in median_report["memory"]["guests_mib"].values())
    print(f"Pss per guest: median {statistics.median(pss):.0f} MiB at most (range {pss[0]:.0f}-{pss[-1]:.0f}), {statistics.median(settled):.0f} MiB after the checks "
          f"(range {settled[0]:.0f}-{settled[-1]:.0f}); total {median_report['memory']['total_pss_mib']:.0f} MiB at most")
    print(cpu_per_guest(statistics.median(boot.qemu_cpu_s for boot in boots), median_report))
    ratio = statistics.median(ratios)
    print(f"ratio (median of {len(ratios)} rounds): {ratio:.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x (issue 14's target: at most 1.10x)")
    record(f"{args.vms} guests vs {args.vms} raw boots together", f"{statistics.median(t for t, _ in runs):.2f} s", f"{statistics.median(raws):.2f} s",
           f"{ratio:.2f}× ({min(ratios):.2f}–{max(ratios):.2f}×)", len(ratios),
           f"--cold (booted); Pss {statistics.median(pss):.0f} MiB per guest at most, {statistics.median(settled):.0f} MiB after the checks; {median_report['memory']['total_pss_mib']:.0f} MiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
