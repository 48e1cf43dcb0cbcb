"""What the benchmarks share: their command line (--accel, --rounds), the accelerator, and a raw qemu boot."""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from vnetlab.backends.accel import AccelChoice, choose_accel
from vnetlab.backends.image import GuestImage, ensure_image, kernel_cmdline
from vnetlab.paths import Layout


def bench_setup(doc: str | None) -> tuple[argparse.Namespace, AccelChoice]:
    """Parse --accel/--rounds, build the tiny image if needed, choose the accelerator and say which."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    parser.add_argument("--rounds", type=int, default=3, metavar="N", help="raw boot + vnetlab run pairs (default 3)")
    args = parser.parse_args()
    args.rounds = max(1, args.rounds)
    accel = choose_accel(args.accel, ensure_image(Layout().images))
    print(f"accelerator: {accel.name} ({accel.reason})")
    return args, accel


def raw_boot_seconds(image: GuestImage, initrd: Path, accel_name: str, needle: bytes, *, memory: int, disk: Path | None = None, timeout: float = 180.0) -> float:
    """Boot `image`'s kernel with `initrd` (and `disk` as the root of a debian guest) in a bare qemu,
    two virtio NICs on isolated hubs, until `needle` appears on the serial console; the seconds it took."""
    macs = ("52:54:00:00:00:01", "52:54:00:00:00:02")
    argv = [
        "qemu-system-x86_64", "-accel", "tcg,tb-size=32" if accel_name == "tcg" else "kvm", "-machine", "pc", "-m", str(memory), "-nodefaults", "-nographic",
        "-no-reboot", "-serial", "stdio", "-kernel", str(image.kernel), "-initrd", str(initrd),
        "-append", kernel_cmdline("bench", macs[0], "172.30.255.2/24", [(macs[1], "eth0")], disk_root=disk is not None),
        "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
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
                return time.monotonic() - start
        raise SystemExit(f"raw boot: no {needle.decode()!r} on the serial console within {timeout:g} s")
    finally:
        proc.kill()
        proc.wait()
