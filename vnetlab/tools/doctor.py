"""`vnetlab doctor`: what this host lacks for a lab, and the command that fixes it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import kernel_probe, netns
from vnetlab.backends.image import cached_image
from vnetlab.paths import Layout
from vnetlab.tools.setup import qemu_reaches_kvm


@dataclass(frozen=True)
class Finding:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _image() -> Finding:
    image = cached_image(Layout().images)
    if image is None:
        return Finding("guest image", "fail", "the tiny image of this vnetlab's recipe is not built yet (the first lab builds it)", "vnetlab image build")
    return Finding("guest image", "ok", f"{image.entry} (kernel {image.kernel_version}); `vnetlab image list` shows every cached image")


def _apt(pkg: str) -> str:
    return f"apt-get install -y {pkg}"


def diagnose() -> list[Finding]:
    out: list[Finding] = []
    out.append(Finding("root", "ok", "running as root") if os.geteuid() == 0 else Finding("root", "fail", "labs create namespaces and taps", "run vnetlab as root"))
    for binary, pkg in [("qemu-system-x86_64", "qemu-system-x86"), ("libvirtd", "libvirt-daemon-system"), ("virtlogd", "libvirt-daemon-system")]:
        path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
        out.append(Finding(binary, "ok", path) if path else Finding(binary, "fail", "not installed", _apt(pkg)))
    # The guest image is fetched and built by these (never from the host's own kernel or binaries).
    for binary, pkg in [("mmdebstrap", "mmdebstrap"), ("qemu-img", "qemu-utils"), ("mkfs.ext4", "e2fsprogs"), ("depmod", "kmod")]:
        path = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/sbin/{binary}") if os.path.exists(p)), None)
        out.append(Finding(binary, "ok", f"{path} (guest image build)") if path else Finding(binary, "fail", "not installed: guest images cannot be built", _apt(pkg)))
    out.append(_image())
    for path, pkg in [("/usr/bin/ping", "iputils-ping"), ("/bin/busybox", "busybox-static"), ("/usr/bin/iperf3", "iperf3")]:
        out.append(Finding(pkg, "ok", path) if os.path.exists(path) else Finding(pkg, "fail", f"{path} missing (container and host nodes run it)", _apt(pkg)))
    out.append(_daemon("libvirtd", hv.LIBVIRT_SOCKET, "libvirtd -d"))
    out.append(_daemon("virtlogd", hv.VIRTLOGD_SOCKET, "virtlogd -d"))
    if hv.LIBVIRT_SOCKET.exists():
        try:
            conn = hv.connect()
            out.append(Finding("qemu:///system", "ok", f"libvirt {hv.version_text(conn.getLibVersion())}, QEMU {hv.version_text(conn.getVersion())}"))
            conn.close()
        except hv.HypervisorError as exc:
            out.append(Finding("qemu:///system", "fail", str(exc), "libvirtd -d; virtlogd -d"))
    out.append(_kvm())
    out.append(_ksm())
    out.append(_ovs())
    out.append(_dnsmasq())
    out.append(_sshd())
    out += kernel_findings()
    return out


# What vnetlab does on a host kernel without the capability (the guests' kernel, Debian's, has everything).
WITHOUT = {
    "vlan_filtering": "VLANs on a Linux bridge run in a switch guest (or use type: ovs)",
    "vlan": "802.1Q sub-interfaces are made inside the guests only, as always",
    "netem": "netem runs inside the guests",
    "ifb": "netem runs inside the guests",
    "mirred": "netem runs inside the guests",
    "vxlan": "labs with vxlan: cannot run on this host",
    "tbf": "no lab needs it",
    "stp": "labs with stp: true cannot run on this host",
    "mtu_9000": "labs with an MTU above 1500 cannot run on this host",
}


def kernel_missing(key: str, error: str) -> str:
    return f"not supported by this host kernel ({error}): {WITHOUT.get(key, 'no lab uses it')}"


def kernel_findings(probe: Callable[[], kernel_probe.KernelProbe] = kernel_probe.probe_kernel) -> list[Finding]:
    """One row per capability of the host kernel (vnetlab.backends.kernel_probe), probed once per boot."""
    try:
        result = probe()
    except netns.NamespaceError as exc:
        fix = "run vnetlab doctor as root" if os.geteuid() != 0 else ""
        return [Finding("host kernel capabilities", "warn", f"not probed: the probe needs a scratch network namespace ({exc})", fix)]
    except Exception as exc:  # noqa: BLE001 — a probe that breaks must not take the rest of doctor's report with it
        return [Finding("host kernel capabilities", "warn", f"the probe failed: {type(exc).__name__}: {exc}")]
    when = "earlier in this host boot" if result.cached else "just now"
    return [
        Finding(f"kernel: {c.label}", "ok", f"supported (probed in a scratch namespace {when})")
        if c.ok
        else Finding(f"kernel: {c.label}", "warn", kernel_missing(c.key, c.error))
        for c in result.capabilities
    ]


def _daemon(name: str, socket: Path, start: str) -> Finding:
    if socket.exists():
        return Finding(name, "ok", f"{socket} present")
    return Finding(name, "fail", f"not running ({socket} missing)", start)


def _ovs() -> Finding:
    """Only labs with `type: ovs` bridges need Open vSwitch (userspace datapath: no kernel module)."""
    missing = [b for b in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovsdb-tool") if shutil.which(b) is None]
    if missing:
        return Finding("Open vSwitch", "warn", f"{', '.join(missing)} not installed: only labs with `type: ovs` bridges need it", _apt("openvswitch-switch"))
    return Finding("Open vSwitch", "ok", f"{shutil.which('ovs-vswitchd')} (labs run their own daemons, userspace datapath)")


def _dnsmasq() -> Finding:
    """Only labs with `dhcp:` or `ra:` on a bridge need dnsmasq (one per such bridge, in the lab namespace)."""
    path = shutil.which("dnsmasq")
    if path is None:
        return Finding("dnsmasq", "warn", "not installed: only labs with dhcp: or ra: on a bridge need it", _apt("dnsmasq-base"))
    return Finding("dnsmasq", "ok", f"{path} (labs run their own, one per DHCP or advertising bridge)")


def _sshd() -> Finding:
    """Only labs with simulated hypervisors need OpenSSH's sshd (one per simulated hypervisor, in its namespace)."""
    if not os.path.exists("/usr/sbin/sshd"):
        return Finding("sshd", "warn", "/usr/sbin/sshd missing: only labs with `simulate: true` hypervisors need it", _apt("openssh-server") + " (then keep its own service stopped)")
    return Finding("sshd", "ok", "/usr/sbin/sshd (simulated hypervisors run their own, each in its namespace)")


KSM_RUN = Path("/sys/kernel/mm/ksm/run")


def _ksm(run: Path = KSM_RUN) -> Finding:
    """Kernel same-page merging: vnetlab's guests may share their identical pages (qemu marks guest
    memory mergeable), but turning it on is the host's choice, never vnetlab's: it is host-wide,
    costs a core while it scans, and lets a guest time whether another holds a page it knows."""
    try:
        state = run.read_text().strip()
    except OSError:
        return Finding("KSM", "ok", "this kernel has no same-page merging: each guest keeps its own pages")
    if state == "1":
        return Finding("KSM", "ok", "on: guests share their identical pages (ten tiny guests measured 154 → 77 MiB Pss each)")
    return Finding("KSM", "ok", "off (vnetlab never turns it on): with it on, ten tiny guests measured 154 → 77 MiB Pss each; it is host-wide and opens a timing side channel between guests")


def _kvm() -> Finding:
    if not os.path.exists("/dev/kvm"):
        return Finding("KVM", "warn", "/dev/kvm missing: guests run under TCG (software emulation), several times slower", "enable virtualization (or nested virtualization) for this host")
    user, reachable = qemu_reaches_kvm()
    if reachable is False:
        return Finding("KVM", "warn", f"qemu's user {user} cannot open /dev/kvm, so libvirt probes qemu again on every call (seconds per domain start)", "vnetlab setup (gives /dev/kvm to group kvm, as udev does)")
    if os.path.exists("/sys/module/kvm_pvm"):
        return Finding("KVM", "warn", "/dev/kvm is the paravirtual kvm_pvm module, which hangs ordinary guest kernels: `--accel auto` probes it and falls back to TCG")
    return Finding("KVM", "ok", "/dev/kvm present; `--accel auto` probes that it really boots a guest")
