"""Choosing the accelerator: KVM where it really works, TCG otherwise.

A /dev/kvm that opens is not proof: on hosts whose KVM module is kvm_pvm an ordinary guest kernel
hangs right after the firmware. So KVM is used only after a probe has booted the guest kernel
under it. The verdict is cached per host boot and image, so only the first run pays for a probe
that times out.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vnetlab.errors import VnetlabError
from vnetlab.backends.image import GuestImage
from vnetlab.backends.keys import make_dirs, write_secret

QEMU = "qemu-system-x86_64"
ACCELERATORS = ("auto", "kvm", "tcg")


class AccelError(VnetlabError):
    """KVM was asked for and does not work, or qemu itself is missing."""


@dataclass(frozen=True)
class AccelChoice:
    name: str  # "kvm" or "tcg"
    domain_type: str  # libvirt <domain type=...>: "kvm" or "qemu"
    reason: str  # one line for the user


def choose_accel(
    requested: str,
    image: GuestImage,
    *,
    cache_dir: Path = Path("/run/vnetlab"),
    timeout: float = 8.0,
) -> AccelChoice:
    """KVM if `requested` allows it and a probe boots `image`'s kernel under KVM, else TCG."""
    if requested not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {requested!r}: choose one of {', '.join(ACCELERATORS)}")
    if requested == "tcg":
        return AccelChoice("tcg", "qemu", "forced by --accel tcg")
    works, reason = _kvm_works(image, cache_dir, timeout)
    if works:
        return AccelChoice("kvm", "kvm", reason)
    if requested == "kvm":
        raise AccelError(f"--accel kvm cannot be honoured: {reason}")
    return AccelChoice("tcg", "qemu", f"{reason} — using TCG")


def _kvm_works(image: GuestImage, cache_dir: Path, timeout: float) -> tuple[bool, str]:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return False, f"/dev/kvm cannot be opened ({exc.strerror})"
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return _probe(image.kernel, timeout)  # no key to cache the verdict under
    cache = cache_dir / f"kvm-probe-{boot_id}-{image.recipe_hash}.json"
    try:
        cached = json.loads(cache.read_text())
        return bool(cached["works"]), f"{cached['reason']} (probed earlier in this host boot)"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    works, reason = _probe(image.kernel, timeout)
    try:
        make_dirs(cache_dir, 0o755)
        write_secret(cache, json.dumps({"works": works, "reason": reason}).encode())  # atomic
    except OSError:
        pass  # the cache only saves time; the verdict stands without it
    return works, reason


def _probe(kernel: Path, timeout: float) -> tuple[bool, str]:
    """Boot `kernel` under KVM without an initrd: a working KVM prints the banner, panics for want
    of a root filesystem and exits (-no-reboot) in about a second; a broken one prints nothing.
    (128 MiB: with 64 the ~65 MB vmlinux does not even start under TCG.)"""
    command = [
        QEMU, "-accel", "kvm", "-nodefaults", "-nographic", "-no-reboot", "-m", "128",
        "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1", "-serial", "stdio",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        probe = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise AccelError(f"{QEMU} not found: apt-get install qemu-system-x86") from None
    output, errors, timed_out = b"", b"", False
    try:
        output, errors = probe.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if probe.returncode is None:  # timed out or interrupted: never leave it running
            probe.kill()
            probe.communicate()
    elapsed = time.monotonic() - started
    if timed_out:
        hint = " (the host KVM module is kvm_pvm)" if Path("/sys/module/kvm_pvm").exists() else ""
        return False, f"/dev/kvm present but the probe kernel did not start within {timeout:g} s{hint}"
    if b"Linux version" in output or b"Kernel panic" in output:
        return True, f"KVM probe booted the guest kernel in {elapsed:.1f} s"
    last_error = (errors.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    return False, f"KVM probe failed: {QEMU} exited with status {probe.returncode}: {last_error}"
