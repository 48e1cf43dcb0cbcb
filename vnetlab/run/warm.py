"""Warm start: each guest restored from a warm image instead of booted (docs/architecture.md, "Warm start").

A guest whose warm image is missing gets it made on first use, inside its lab: a guest of the same
XML, its identity taken out, boots in the lab namespace with unattached taps (both recorded, so a
kill leaves nothing), says VNETLAB-WARM before it is any particular guest, and libvirt saves it
into the image cache. Each lab guest is then defined and restored from a save image of its own
(backends/save_image.py) under its own name, UUID, taps, MACs and files, and finds its keys,
hostname and addresses in its fw_cfg identity file (run/apply.py writes it).
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libvirt

from vnetlab.backends import image_cache, linux_bridge, qcow2
from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import save_image
from vnetlab.backends.cloud_seed import CloudSeed, warm_recipe_hash, write_warm_seed_iso
from vnetlab.backends.image import GUEST_FAILED_MARKER
from vnetlab.backends.image_kinds import FILE
from vnetlab.backends.keys import generate_client_key, generate_host_key
from vnetlab.backends.warm_image import (
    DISK_FILE, IDENTITY_SIZE, KIND, SAVE_FILE, SEED_FILE, WARM_MARKER, HostSide, WarmError, WarmImage, cached,
    header_reads, host_versions, restore_xml, warm_domain_xml, warm_key, warm_mac, warm_refused,
)
from vnetlab.plan.planner import METADATA_NS, Plan, PlannedVM, tap_prefix
from vnetlab.run.apply import create_tap_recorded, identity_file
from vnetlab.run.configure import wait_for_console
from vnetlab.run.progress import Progress
from vnetlab.run.state import LabState

WARM_SETTLE = 3.0  # s after the warm marker before the save: free page reporting hands the boot's freed pages back (83 → 68 MiB)
WARM_TIMEOUT = 600.0  # s for a warm image's guest to boot to its marker (a debian guest: ~12 s alone under TCG; a cloud image: ~2 min)
RESTORE_TIMEOUT = 120.0
RESTORE_ATTEMPTS = 3  # a restore the kernel refused for the moment (libvirt's cgroup BPF program: EAGAIN) is tried again


def cold_reason(vm: PlannedVM) -> str | None:
    """Why this guest is booted although warm start is on; None when it can be restored."""
    if vm.host is not None:
        return f"it runs on hypervisor {vm.host}"
    if vm.shares:
        return "it mounts host folders (shares:), which QEMU cannot save while mounted"
    if vm.image.kind == FILE and any(n.dhcp for n in vm.nics):
        return "a cloud image's DHCP NIC asks through cloud-init's network config at boot, which a restored guest does not run"
    return None


def warm_keys(plan: Plan, say: Callable[[str], None]) -> dict[str, str]:
    """VM → the key of the warm image it restores from, for every guest that can be restored."""
    refused = warm_refused()
    if refused is not None:
        for vm in plan.vms:
            say(f"{vm.name}: booted, not restored: {refused}")
        return {}
    found = host_versions()
    cloud = f"{found}; cloud warm start {warm_recipe_hash()}"  # what a cloud image's warm guest runs is in no image's hash
    keys = {}
    for vm in plan.vms:
        reason = cold_reason(vm)
        if reason is not None:
            say(f"{vm.name}: booted, not restored: {reason}")
            continue
        try:
            keys[vm.name] = warm_key(vm.xml, cloud if vm.image.kind == FILE else found)
        except WarmError as exc:
            say(f"{vm.name}: booted, not restored: {exc}")
    return keys


@dataclass(frozen=True)
class Restore:
    """Restores a guest from `warm` (run/apply.py's Starter)."""

    warm: WarmImage
    header: save_image.SaveHeader
    header_reads: int = 1  # how many times this host's libvirt reads the header of a save image it restores
    how: str = "restore"

    def host_side(self, vm: PlannedVM) -> HostSide:
        return HostSide(
            vm.domain, tuple(n.tap for n in vm.all_nics), tuple(n.mac for n in vm.all_nics), str(vm.console_path),
            fw_cfg=str(identity_file(vm)),
            disk=str(vm.disk_path) if vm.disk is not None else None,
            backing=(str(self.warm.disk), str(vm.base_disk_path)) if vm.disk is not None else (),
            seed=str(self.warm.seed) if vm.seed is not None else None,
        )

    def domain_xml(self, vm: PlannedVM) -> str:
        return restore_xml(self.header.xml, vm.xml, self.host_side(vm), warm_image=self.warm.key)

    def start_paused(self, conn: libvirt.virConnect, dom: libvirt.virDomain, vm: PlannedVM) -> None:
        """Its own save image, a FIFO in its folder: the header with its XML (and the UUID libvirt
        gave the domain), then the warm image's stream."""
        if vm.disk is not None:
            try:
                qcow2.create_overlay(self.warm.disk, vm.disk)  # on the disk as the warm guest left it
            except qcow2.DiskError as exc:
                raise qcow2.DiskError(f"{vm.name}: cannot make its disk overlay on the warm image's disk: {exc}") from None
            os.chmod(vm.disk, 0o600)
        xml = restore_xml(self.header.xml, vm.xml, self.host_side(vm), uuid=hv.bounded(f"UUID of {vm.domain}", dom.UUIDString), warm_image=self.warm.key)
        (vm.secrets.parent / "domain.xml").write_text(xml)
        header = save_image.build_header(xml, self.header.cookie)
        fifo = vm.secrets.parent / "restore.save"
        for attempt in range(1, RESTORE_ATTEMPTS + 1):
            save_image.make_fifo(fifo)
            feeder = save_image.PipeFeeder(fifo, header, self.warm.save, self.header.stream_offset, self.header_reads).start()
            try:
                hv.restore_paused(conn, fifo, vm.domain, timeout=RESTORE_TIMEOUT)
                break
            except hv.HypervisorError as exc:
                if attempt == RESTORE_ATTEMPTS or hv.TRANSIENT_START_ERROR not in str(exc):
                    writing = f" (writing its save image: {feeder.error})" if feeder.error else ""
                    raise hv.HypervisorError(f"{vm.name}: restoring it from warm image {self.warm.key}: {exc}{writing}; `--cold` boots the guests instead", exc.code) from None
            finally:
                feeder.stop()
                fifo.unlink(missing_ok=True)
            time.sleep(0.2)


def restorers(images: Mapping[str, WarmImage]) -> dict[str, Restore]:
    """VM → how it is restored, for the guests that have a warm image (the headers read once per image)."""
    headers = {image.key: save_image.read_header(image.save) for image in images.values()}
    reads = header_reads(libvirt.getVersion())
    return {vm: Restore(image, headers[image.key], reads) for vm, image in images.items()}


# --- making warm images ------------------------------------------------------------------------


def ensure_warm_images(
    plan: Plan, state: LabState, conn: libvirt.virConnect, keys: Mapping[str, str], cache: Path, progress: Progress,
) -> dict[str, WarmImage]:
    """VM → its warm image, made first where missing (at once, in the lab namespace)."""
    found: dict[str, WarmImage] = {}
    missing: dict[str, PlannedVM] = {}
    for vm in plan.vms:
        key = keys.get(vm.name)
        if key is None or key in found:
            continue
        image = cached(cache, key)
        if image is not None:
            found[key] = image
        else:
            missing.setdefault(key, vm)
    if missing:
        labels = ", ".join(dict.fromkeys(f"{vm.image.label()} {vm.memory} MiB {len(vm.all_nics)} NIC(s)" for vm in missing.values()))
        with progress.step("warm", f"Warm image(s) made on first use: {len(missing)} guest(s) booted once and saved ({labels})"):
            taps = iter(f"{tap_prefix(plan.lab)}-w{i}" for i in range(10_000))
            jobs = [(key, (plan, state, conn, vm, key, cache, i, tuple(next(taps) for _ in vm.all_nics), progress)) for i, (key, vm) in enumerate(missing.items())]
            if len(jobs) == 1:  # in this thread: an interrupt stops it where it is, and teardown finds what it recorded
                key, args = jobs[0]
                found[key] = make_warm_image(*args)
            else:
                with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:  # its exit waits for every maker
                    futures = {key: pool.submit(make_warm_image, *args) for key, args in jobs}
                    for key, future in futures.items():
                        found[key] = future.result()
    gid = hv.qemu_group(conn, plan.domain_type)
    if gid is not None:  # the cache is root's: what the restored guests' qemu reads, for qemu's group only
        image_cache.grant_to_qemu(cache, [f for image in found.values() for f in image.read_by_qemu()], gid)
    return {vm: found[key] for vm, key in keys.items()}


LOCK_DIR = Path("/run/vnetlab/locks")  # beside the labs' locks (run/lab.py): gone with a reboot, never in the image cache


@contextmanager
def _key_lock(key: str) -> Iterator[None]:
    """One maker of a warm image at a time: a second lab waits, then finds it made."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(LOCK_DIR / f"{KIND}-{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def make_warm_image(
    plan: Plan, state: LabState, conn: libvirt.virConnect, vm: PlannedVM, key: str, cache: Path, index: int,
    taps: tuple[str, ...], progress: Progress,
) -> WarmImage:
    """Boot a guest like `vm` with no identity until it says VNETLAB-WARM, let it settle, save it."""
    with _key_lock(key):
        image = cached(cache, key)
        if image is not None:
            return image
        started = time.monotonic()
        name = f"vnl-{plan.lab}.warm{index}"  # '.' is in no VM name: never a lab guest's domain
        with image_cache.building(cache, KIND, key) as build:
            gid = hv.qemu_group(conn, plan.domain_type)
            if gid is not None:  # its guest's qemu opens its disk, seed and fw_cfg file in there (libvirt hands them over)
                image_cache.open_build_to_qemu(build, gid)
            zeros = build / "identity.zero"
            zeros.write_bytes(b"\0" * IDENTITY_SIZE)
            os.chmod(zeros, 0o600)
            console = build / "console.log"
            if vm.disk is not None and vm.base_disk_path is not None:
                qcow2.create_overlay(vm.base_disk_path, build / DISK_FILE)
            host = HostSide(
                name, taps, tuple(warm_mac(i) for i in range(len(taps))), str(console),
                fw_cfg=str(zeros),
                disk=str(build / DISK_FILE) if vm.disk is not None else None,
                backing=(str(vm.base_disk_path),) if vm.disk is not None else (),
                seed=str(build / SEED_FILE) if vm.seed is not None else None,
            )
            if vm.seed is not None:
                _write_warm_seed(build / SEED_FILE, vm, taps)
            metadata = f"<metadata><vnetlab:lab xmlns:vnetlab='{METADATA_NS}' name='{plan.lab}' warm-image='{key}'/></metadata>"
            xml = warm_domain_xml(vm.xml, host, metadata)
            for tap in taps:
                create_tap_recorded(plan, state, tap, None)
            state.record(plan.lab_dir, "domain", name, None)
            progress.detail(f"warm image {key}: booting {name} like {vm.name} ({vm.image.label()}), with no identity")
            dom = hv.bounded(f"starting {name}", lambda: conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED), timeout=60.0)
            for tap in taps:  # never on a bridge: its NICs stay down, and nothing reaches the root namespace
                linux_bridge.move_link(tap, plan.namespace)
            hv.resume(dom)
            wait_for_console(
                console, f"the guest of a warm image ({name})", lambda text: re.search(rf"{WARM_MARKER}\r*\n", text) is not None,  # perhaps after a shell prompt
                lambda text: GUEST_FAILED_MARKER in text, time.monotonic() + WARM_TIMEOUT, lambda: hv.is_running(dom), threading.Event(),
                f"it did not say {WARM_MARKER} within {WARM_TIMEOUT:g} s",
            )
            booted = time.monotonic()
            time.sleep(WARM_SETTLE)
            hv.bounded(f"saving {name}", lambda: dom.save(str(build / SAVE_FILE)), timeout=RESTORE_TIMEOUT)
            saved = time.monotonic()
            for file in build.iterdir():  # root's alone (whatever libvirt left its owner); the disk and seed, read by every restored guest's qemu, never written, are granted to its group when used
                os.chown(file, 0, 0)
                os.chmod(file, image_cache.FILE_MODE)
            zeros.unlink()
            info = {
                "image": vm.image.label(), "base": vm.boot.disk.parent.name if vm.boot and vm.boot.disk else (vm.boot.kernel.parent.name if vm.boot and vm.boot.kernel else ""),
                "memory_mib": vm.memory, "vcpus": vm.vcpus, "nics": len(taps), "domain_type": plan.domain_type, "versions": host_versions(),
                "boot_seconds": round(booted - started, 1), "save_seconds": round(saved - booted - WARM_SETTLE, 2),
                "seconds": round(saved - started, 1), "save_mib": round((build / SAVE_FILE).stat().st_size / 2**20, 1),
            }
            entry = image_cache.publish(build, cache, KIND, key, info)
        progress.detail(f"warm image {key}: booted in {info['boot_seconds']} s, saved in {info['save_seconds']} s ({info['save_mib']} MiB)")
        return WarmImage(entry.path, key, entry.info)


def _write_warm_seed(dest: Path, vm: PlannedVM, taps: tuple[str, ...]) -> None:
    """A cloud image's warm seed: keys made for the warm boot and thrown away (nobody logs into the
    warm guest; each restored guest gets its own), the warm MACs, no address."""
    client, host = generate_client_key("vnetlab warm image, thrown away"), generate_host_key()
    seed = CloudSeed(
        hostname="vnetlab-warm", authorized_key=client.public_line, host_key_private=host.openssh_private.decode(),
        host_key_public=host.public_line, mgmt_mac=warm_mac(0), mgmt_cidr="192.0.2.2/24",  # never given: the warm seed addresses no NIC
        nics=tuple((warm_mac(i), f"vnlwarm{i}") for i in range(1, len(taps))),
    )
    write_warm_seed_iso(dest, seed)


