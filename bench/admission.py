"""Boot admission, decided by measurement: N tiny guests on one bridge (the scale bench's lab), booted
(--cold), run with every guest booting at once and with at most K booting at a time (`--boot-parallel K`: the
next starts when one's console says it is ready), K around the host's core count. Prints each
round, the median per setting, and records which is fastest; vnetlab's default (cores + 1) should
be it or within noise of it.
"""

from __future__ import annotations

import os
import statistics
import sys

from common import bench_setup, record, run_lab  # bench/common.py, beside this script
from scale import scenario  # bench/scale.py: the same lab


def main() -> int:
    args, accel = bench_setup(__doc__, lab="bench-admit", vms=True)
    cores = os.cpu_count() or 1
    limits = sorted({0, cores, cores + 1, cores + 2} - set(range(args.vms, 10_000)))  # 0: all at once; a limit ≥ N is all at once too
    seconds: dict[int, list[float]] = {k: [] for k in limits}
    for r in range(1, args.rounds + 1):
        for k in limits:  # interleaved, so a slow moment of the host hits every setting
            total, _ = run_lab(scenario(args.vms), args.lab, accel.name, "--boot-timeout", "900", "--boot-parallel", str(k), "--cold")
            seconds[k].append(total)
            print(f"round {r}: {args.vms} guests, {'all at once' if k == 0 else f'at most {k} booting'}: {total:6.2f} s", flush=True)
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    for k, m in medians.items():
        print(f"median, {'all at once' if k == 0 else f'at most {k} booting':<16}: {m:6.2f} s (range {min(seconds[k]):.2f}-{max(seconds[k]):.2f})")
    best = min(medians, key=lambda k: medians[k])
    print(f"fastest: {'all at once' if best == 0 else f'at most {best} at a time'}")
    default = cores + 1 if cores + 1 in medians else 0
    others = ", ".join(f"{'all' if k == 0 else k}: {medians[k]:.2f} s" for k in limits if k != default)
    record(f"{args.vms} guests: default boot admission (cores + 1) vs all at once", f"{medians[default]:.2f} s", f"{medians[0]:.2f} s (all at once)",
           f"{medians[default] / medians[0]:.2f}×", args.rounds, f"--boot-parallel K medians: {others}; fastest {'all at once' if best == 0 else f'K={best}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
