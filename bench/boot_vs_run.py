"""How much does vnetlab add on top of booting its guest?

In one run: (1) a raw qemu boot of the very same image (kernel, initrd with keys, two
virtio NICs on an isolated qemu hub) until the readiness marker, and (2) a complete
`vnetlab run two-vm-ping` (image check, accel probe, two guests, SSH, addresses,
pings, capture, teardown). Prints both, the ratio (target: at most 2.0x under TCG)
and vnetlab's per-step timings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vnetlab.accel import choose_accel
from vnetlab.image import GUEST_READY_MARKER, ensure_image, kernel_cmdline, write_guest_initrd
from vnetlab.keys import generate_client_key, generate_host_key
from vnetlab.paths import Layout

TARGET_RATIO = 2.0


def raw_boot_seconds(accel_name: str, timeout: float = 120.0) -> float:
    image = ensure_image(Layout().images)
    host, client = generate_host_key(), generate_client_key("bench")
    macs = ("52:54:00:00:00:01", "52:54:00:00:00:02")
    with tempfile.TemporaryDirectory() as tmp:
        initrd = Path(tmp) / "initrd.img"
        write_guest_initrd(image, initrd, {
            "/root/.ssh/authorized_keys": (client.public_line.encode() + b"\n", 0o600),
            "/etc/dropbear/dropbear_ed25519_host_key": (host.dropbear_blob, 0o600),
        })
        argv = [
            "qemu-system-x86_64", "-accel", "tcg,tb-size=32" if accel_name == "tcg" else "kvm", "-machine", "pc", "-m", "128", "-nodefaults", "-nographic",
            "-no-reboot", "-serial", "stdio", "-kernel", str(image.kernel), "-initrd", str(initrd),
            "-append", kernel_cmdline("bench", macs[0], "172.30.255.2/24", [(macs[1], "eth0")]),
        ]
        argv += ["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"]
        for i, mac in enumerate(macs):  # a hub with nothing else on it: no frame leaves qemu
            argv += ["-netdev", f"hubport,id=n{i},hubid={i}", "-device", f"virtio-net-pci,netdev=n{i},mac={mac}"]
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, b""):
                if GUEST_READY_MARKER.encode() in line:
                    return time.monotonic() - start
                if time.monotonic() - start > timeout:
                    break
            raise SystemExit("raw boot: no readiness marker")
        finally:
            proc.kill()
            proc.wait()


def vnetlab_run(accel: str) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "vnetlab", "run", "two-vm-ping", "--name", "bench", "--accel", accel, "--quiet", "--report", str(report)],
            capture_output=True, text=True,
        )
        seconds = time.monotonic() - start
        if result.returncode != 0:
            raise SystemExit(f"vnetlab run failed:\n{result.stdout}\n{result.stderr}")
        return seconds, json.loads(report.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    args = parser.parse_args()
    image = ensure_image(Layout().images)
    accel = choose_accel(args.accel, image)
    raw = raw_boot_seconds(accel.name)
    total, report = vnetlab_run(accel.name)
    ratio = total / raw
    print(f"accelerator: {accel.name} ({accel.reason})")
    print(f"raw qemu boot to readiness marker: {raw:6.2f} s")
    print(f"vnetlab run two-vm-ping:           {total:6.2f} s")
    for step in report["steps"]:
        print(f"  {step['name']:<10} {step['seconds']:6.2f} s")
    print(f"ratio: {ratio:.2f}x (target ≤ {TARGET_RATIO:.1f}x under TCG) — {'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
