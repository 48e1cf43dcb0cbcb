"""How fast does a debian guest come up in a lab, against a raw qemu boot of the same disk?

In one run, N rounds of: (1) a raw qemu boot of the very same debian qcow2 (through an overlay,
with the same kernel, initramfs and keys, a virtio NIC on an isolated qemu hub) until systemd's
serial login prompt, (2) `vnetlab run --cold` of a one-VM debian lab (no checks), whose report
gives the guest's boot-to-SSH time (from domain start to an authenticated SSH session; issue 11's
target: at most 20 s under TCG on a 2-core machine), and (3) the whole `vnetlab run
debian-two-vm-ping`, its guests restored from their warm image (made once before the rounds, not
timed; issue 28's target: at most 0.3x the raw boot to login) and (4) with --cold.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from vnetlab.backends import qcow2
from vnetlab.backends.debian_image import ensure_disk
from vnetlab.backends.image import ensure_image, write_guest_secrets
from vnetlab.backends.keys import generate_client_key, generate_host_key
from vnetlab.paths import SCENARIOS_DIR, Layout

from common import bench_setup, raw_boot, record, run_lab  # bench/common.py, beside this script

TARGET_SSH_SECONDS = 20.0
LOGIN_PROMPT = b" login:"
SCENARIO = """name: bench-debian
image: debian
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}
"""


def raw_boot_to_login(accel_name: str) -> float:
    image = ensure_image(Layout().images)
    disk = ensure_disk(image, (), Layout().images)
    host, client = generate_host_key(), generate_client_key("bench")
    with tempfile.TemporaryDirectory() as tmp:
        secrets, overlay = Path(tmp) / "secrets.cpio", Path(tmp) / "disk.qcow2"
        write_guest_secrets(image, secrets, {
            "/root/.ssh/authorized_keys": (client.public_line.encode() + b"\n", 0o600),
            "/etc/vnetlab/ssh_host_ed25519_key": (host.openssh_private, 0o600),
            "/etc/vnetlab/ssh_host_ed25519_key.pub": (host.public_line.encode() + b"\n", 0o644),
        })
        qcow2.create_overlay(disk.disk, overlay)
        return raw_boot(image, secrets, accel_name, LOGIN_PROMPT, memory=256, disk=overlay).seconds


TARGET_WARM_RATIO = 0.30  # issue 28: debian-two-vm-ping, warm, against one raw boot to login


def vnetlab_run(accel: str, lab: str) -> tuple[float, float, float]:
    """(whole run, guest ready marker, guest SSH) in seconds, the guest booted."""
    seconds, data = run_lab(SCENARIO, lab, accel, "--cold")
    guest = data["guests"]["vm1"]  # from its domain's start
    return seconds, guest["ready_seconds"], guest["ssh_seconds"]


def two_vm_ping(accel: str, lab: str, *extra: str) -> float:
    return run_lab((SCENARIOS_DIR / "debian-two-vm-ping.yaml").read_text(), f"{lab}2", accel, *extra)[0]


def main() -> int:
    args, accel = bench_setup(__doc__, lab="bench-debian")
    print(f"warm image made or found: first debian-two-vm-ping {two_vm_ping(accel.name, args.lab):.2f} s (not timed)")
    raws, runs, warm, cold = [], [], [], []
    for n in range(1, args.rounds + 1):
        raws.append(raw_boot_to_login(accel.name))
        runs.append(vnetlab_run(accel.name, args.lab))
        warm.append(two_vm_ping(accel.name, args.lab))
        cold.append(two_vm_ping(accel.name, args.lab, "--cold"))
        total, ready, ssh = runs[-1]
        print(f"round {n}: raw qemu boot of the debian disk to its login prompt {raws[-1]:5.2f} s; "
              f"vnetlab debian guest ready {ready:5.2f} s, SSH {ssh:5.2f} s (whole run {total:5.2f} s); "
              f"debian-two-vm-ping warm {warm[-1]:5.2f} s ({warm[-1] / raws[-1]:.2f}x), cold {cold[-1]:5.2f} s ({cold[-1] / raws[-1]:.2f}x)", flush=True)
    ssh = statistics.median(r[2] for r in runs)
    raw = statistics.median(raws)
    print(f"median raw qemu boot to login prompt: {raw:6.2f} s")
    print(f"median vnetlab debian boot to SSH:    {ssh:6.2f} s ({ssh / raw:.2f}x the raw boot to login); whole run {statistics.median(r[0] for r in runs):.2f} s")
    print(f"target: SSH-ready in at most {TARGET_SSH_SECONDS:.0f} s under TCG — {'met' if ssh <= TARGET_SSH_SECONDS else 'NOT met'}")
    record("debian guest: boot to SSH vs raw boot to login prompt", f"{ssh:.2f} s", f"{raw:.2f} s", f"{ssh / raw:.2f}×", len(runs), f"accel {accel.name}; --cold")
    ratios = [w / r for w, r in zip(warm, raws)]
    cold_ratios = [c / r for c, r in zip(cold, raws)]
    ratio = statistics.median(ratios)
    print(f"debian-two-vm-ping warm: median {statistics.median(warm):.2f} s, {ratio:.2f}x the raw boot to login (range {min(ratios):.2f}-{max(ratios):.2f}x; "
          f"target ≤ {TARGET_WARM_RATIO:.1f}x) — {'met' if ratio <= TARGET_WARM_RATIO else 'NOT met'}; cold {statistics.median(cold):.2f} s, {statistics.median(cold_ratios):.2f}x")
    record("debian-two-vm-ping, warm start, vs raw boot to login prompt", f"{statistics.median(warm):.2f} s", f"{raw:.2f} s",
           f"{ratio:.2f}× ({min(ratios):.2f}–{max(ratios):.2f}×)", len(ratios), f"accel {accel.name}; target ≤ {TARGET_WARM_RATIO}×; --cold: {statistics.median(cold):.2f} s, {statistics.median(cold_ratios):.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
