"""Create a planned lab on the system, recording each resource before it exists.

Order matters for the network safety rule: the namespace and its bridges come
first; taps are created down and unaddressed in the root namespace (libvirt
can only open them there), the guest starts paused, and its taps are moved into
the lab namespace and enslaved before the guest runs a single instruction.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

import libvirt

from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import linux_bridge, netns
from vnetlab.backends import image_cache, qcow2
from vnetlab.backends.cloud_seed import CloudSeed, write_seed_iso
from vnetlab.backends.image import GuestImage, write_guest_secrets
from vnetlab.backends.image_kinds import TINY
from vnetlab.backends.keys import ClientKey, HostKey, generate_client_key, generate_host_key, write_secret
from vnetlab.backends.warm_image import IDENTITY_FILE, identity_archive, identity_words
from vnetlab.errors import VnetlabError
from vnetlab.lazy import preload
from vnetlab.plan.planner import METADATA_NS, Plan, PlannedBridge, PlannedVM
from vnetlab.run.connections import Connections
from vnetlab.run.progress import Progress
from vnetlab.run.state import LabState, make_private_dir

CLIENT_KEY = "id_ed25519"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
GUEST_HOST_KEY = "/etc/dropbear/dropbear_ed25519_host_key"
# Where /sbin/vnl-root (disk guests) finds the OpenSSH host key it copies onto the root disk.
DISK_GUEST_HOST_KEY = "/etc/vnetlab/ssh_host_ed25519_key"
OPENSSH_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"  # where a restored disk or cloud guest's sshd reads it


def secrets_dir(plan: Plan) -> Path:
    return plan.lab_dir / "secrets"


def host_key_file(plan: Plan, vm: str) -> Path:
    return secrets_dir(plan) / f"{vm}.host_key.pub"


def qemu_passage(path: Path, qemu_gid: int | None) -> None:
    """A folder on the way to a guest's own files: 0710 root:<qemu group> so libvirt's qemu user can pass
    through (not list), and nobody else can enter; 0700 when qemu runs as root."""
    make_private_dir(path)
    if qemu_gid is not None:
        os.chown(path, -1, qemu_gid)
        os.chmod(path, 0o710)


def identity_file(vm: PlannedVM) -> Path:
    """A restored guest's fw_cfg file: its identity and keys (backends/warm_image.identity_archive)."""
    return vm.secrets.parent / "identity.tar"


def prepare_files(plan: Plan, image: GuestImage, qemu_gid: int | None, restored: Collection[str] = ()) -> None:
    """Per-lab client key, per-guest host keys, and what each guest boots from besides the image's
    kernel and initramfs: its keys' archive (fw_cfg), its qcow2 overlay, its cloud-init seed; for
    a guest restored from a warm image (named in `restored`), its identity archive instead (its
    overlay is made when it is restored, on the warm image's disk).

    Keys are 0600 in the 0700 secrets folder. Keys' archives and seeds embed the guests' private host
    keys: they are 0600 (libvirt's DAC driver hands them to qemu's user while the guest runs)
    below folders only root and qemu's group may traverse.
    """
    for folder in (plan.lab_dir, plan.lab_dir / "guests", *(vm.secrets.parent for vm in plan.vms)):
        qemu_passage(folder, qemu_gid)
    if qemu_gid is not None:  # what the guests boot from the image cache (root's): readable by qemu's group
        booted = [f for vm in plan.vms if vm.host is None and vm.boot is not None for f in (vm.boot.kernel, vm.boot.initrd, vm.boot.disk) if f is not None]
        image_cache.grant_to_qemu(image.kernel.parent.parent, booted, qemu_gid)
    make_private_dir(secrets_dir(plan))
    client: ClientKey = generate_client_key(f"vnetlab-{plan.lab}")
    write_secret(secrets_dir(plan) / CLIENT_KEY, client.private_openssh)
    for vm in plan.vms:
        host: HostKey = generate_host_key()
        write_secret(host_key_file(plan, vm.name), host.public_line.encode())
        if vm.name in restored:
            write_secret(identity_file(vm), _guest_identity(vm, client, host))
        else:
            _guest_boot_files(vm, image, client, host)
        (vm.secrets.parent / "domain.xml").write_text(vm.xml)


def _guest_boot_files(vm: PlannedVM, image: GuestImage, client: ClientKey, host: HostKey) -> None:
    authorized = (client.public_line + "\n").encode()
    if vm.disk is not None and vm.boot is not None and vm.boot.disk is not None and vm.host is None:  # elsewhere: made there
        try:
            qcow2.create_overlay(vm.boot.disk, vm.disk)
        except qcow2.DiskError as exc:
            raise qcow2.DiskError(f"{vm.name}: cannot make its disk overlay: {exc}") from None
        os.chmod(vm.disk, 0o600)
    if vm.seed is not None:
        seed = CloudSeed(
            hostname=vm.name, authorized_key=client.public_line, host_key_private=host.openssh_private.decode(),
            host_key_public=host.public_line, mgmt_mac=vm.mgmt.mac, mgmt_cidr=vm.mgmt.cidr or "",
            nics=tuple((n.mac, n.guest_name) for n in vm.nics), dhcp=tuple(n.guest_name for n in vm.nics if n.dhcp),
        )
        write_seed_iso(vm.seed, seed)
        return
    if vm.disk is not None:  # a disk guest booted by vnl-root: OpenSSH's key format
        secrets = {
            DISK_GUEST_HOST_KEY: (host.openssh_private, 0o600),
            DISK_GUEST_HOST_KEY + ".pub": ((host.public_line + "\n").encode(), 0o644),
        }
    else:
        secrets = {GUEST_HOST_KEY: (host.dropbear_blob, 0o600)}
    write_guest_secrets(image, vm.secrets, {AUTHORIZED_KEYS: (authorized, 0o600), **secrets})


@dataclass(frozen=True)
class StateRecords:
    """Records of one kind in the lab's state, for a daemon: its intent before it starts, then with its PID (backends.daemon.Records)."""

    state: LabState
    lab_dir: Path
    kind: str

    def record(self, name: str) -> None:
        self.state.record(self.lab_dir, self.kind, name)

    def settle(self, intent: str, name: str) -> None:
        self.state.replace(self.lab_dir, self.kind, intent, name)


def _guest_identity(vm: PlannedVM, client: ClientKey, host: HostKey) -> bytes:
    """What makes a restored guest this guest: the lab's key, its host key (dropbear's format for the
    tiny guest, OpenSSH's for the others, where sshd reads it) and its identity's words."""
    files = {
        AUTHORIZED_KEYS: ((client.public_line + "\n").encode(), 0o600),
        IDENTITY_FILE: (identity_words(vm.name, vm.mgmt.mac, vm.mgmt.cidr or "", [(n.mac, n.guest_name) for n in vm.nics]).encode(), 0o644),
    }
    if vm.image.kind == TINY:
        files[GUEST_HOST_KEY] = (host.dropbear_blob, 0o600)
    else:
        files[OPENSSH_HOST_KEY] = (host.openssh_private, 0o600)
        files[OPENSSH_HOST_KEY + ".pub"] = ((host.public_line + "\n").encode(), 0o644)
    return identity_archive(files, {"/root/.ssh": 0o700, str(PurePosixPath(IDENTITY_FILE).parent): 0o755})


class Switch(Protocol):
    """What apply needs of a switch backend (chosen by the bridge's type)."""

    def start(self, plan: Plan, records: StateRecords) -> None: ...  # its daemons, each recorded as a `process`

    def create_bridge(self, plan: Plan, bridge: PlannedBridge) -> None: ...

    def attach_port(self, plan: Plan, port: str, bridge: str) -> None: ...


class SwitchBackend(Switch, Protocol):
    """A switch backend a feature brings (e.g. Open vSwitch): planned, applied, explained, inspected."""

    kind: str
    bridge_resource: str

    def capture_port(self, index: int) -> str | None: ...

    def setup_resources(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class LinuxSwitch:
    """The kernel's bridge, through netlink in the lab namespace."""

    def start(self, plan: Plan, records: StateRecords) -> None:
        return None

    def create_bridge(self, plan: Plan, bridge: PlannedBridge) -> None:
        linux_bridge.create_bridge(plan.namespace, bridge.name, bridge.mac)

    def attach_port(self, plan: Plan, port: str, bridge: str) -> None:
        linux_bridge.attach_to_bridge(plan.namespace, port, bridge)


def switch_for(plan: Plan, bridge_type: str) -> Switch:
    return plan.switch(bridge_type) or LinuxSwitch()


@dataclass
class ApplyContext:
    """What a feature's apply hook gets: record a resource before it exists, attach a port to a bridge."""

    plan: Plan
    state: LabState

    def record(self, kind: str, name: str, vm: str | None = None) -> None:
        self.state.record(self.plan.lab_dir, kind, name, vm)

    def records(self, kind: str) -> StateRecords:
        """Where a daemon this feature starts is recorded (before it starts, then with its PID)."""
        return StateRecords(self.state, self.plan.lab_dir, kind)

    def attach(self, port: str, bridge: str) -> None:
        switch_for(self.plan, self.plan.bridge(bridge).type).attach_port(self.plan, port, bridge)


class ResourceTaken(VnetlabError):
    """A name this lab was creating was taken by another process at the same moment."""


def create_recorded(plan: Plan, state: LabState, kind: str, name: str, vm: str | None, create: Callable[[], None], exists: Callable[[], bool], where: str) -> None:
    """Record, then create. If the creation fails and the name now exists, another process created
    it between our existence check and our creation (the kernel says EEXIST, or the backend's own
    check refuses): it is not ours, so the record goes and teardown never removes it. A failed
    creation leaves nothing of ours behind (create_tap's last step makes the tap persistent;
    create_namespace removes a half-made namespace before raising), so whatever has the name is
    someone else's."""
    state.record(plan.lab_dir, kind, name, vm)
    try:
        create()
    except Exception as exc:
        if not exists():
            raise
        state.forget(plan.lab_dir, kind, name)
        raise ResourceTaken(f"{kind} {name!r} was created in {where} by someone else while this lab was creating it ({exc}): not recorded, so it is left alone; pick another lab name") from exc


def host_bridges(plan: Plan) -> list[PlannedBridge]:
    """The bridges made in the lab namespace (not those a switch guest runs)."""
    return [b for b in plan.bridges if b.guest is None]


def create_network(plan: Plan, state: LabState) -> None:
    """The lab namespace, its switches and bridges, then what the features add to the network."""
    # Checked before recording: a recorded name is removed by teardown, and this one is not ours.
    if netns.namespace_exists(plan.namespace):
        raise netns.NamespaceError(f"namespace {plan.namespace!r} already exists but no lab state records it: it is not vnetlab's to use or remove (if it is a leftover, remove it yourself: ip netns delete {plan.namespace})")
    create_recorded(plan, state, "namespace", plan.namespace, None, lambda: netns.create_namespace(plan.namespace), lambda: netns.namespace_exists(plan.namespace), "/run/netns")
    for kind in dict.fromkeys(b.type for b in plan.bridges):
        switch_for(plan, kind).start(plan, StateRecords(state, plan.lab_dir, "process"))
    for bridge in host_bridges(plan):
        switch = plan.switch(bridge.type)
        state.record(plan.lab_dir, switch.bridge_resource if switch else "bridge", bridge.name)
        switch_for(plan, bridge.type).create_bridge(plan, bridge)
        if bridge.cidr:
            linux_bridge.add_address(plan.namespace, bridge.name, bridge.cidr)
    ctx = ApplyContext(plan, state)
    for feature in plan.features:  # containers and outside hosts, then the host's NAT, …
        feature.apply(plan, ctx)


class Starter(Protocol):
    """How a guest's domain starts: booted (the default) or restored from a warm image (run/warm.py)."""

    how: str  # "boot" or "restore": said in the progress, the report and the waterfall

    def domain_xml(self, vm: PlannedVM) -> str: ...  # the XML its domain is defined with

    def start_paused(self, conn: libvirt.virConnect, dom: libvirt.virDomain, vm: PlannedVM) -> None: ...


@dataclass(frozen=True)
class Boot:
    how: str = "boot"

    def domain_xml(self, vm: PlannedVM) -> str:
        return vm.xml

    def start_paused(self, conn: libvirt.virConnect, dom: libvirt.virDomain, vm: PlannedVM) -> None:
        hv.start_paused(dom)


def boot_vm(
    plan: Plan, state: LabState, conn: libvirt.virConnect, vm: PlannedVM, before_resume: Callable[[PlannedVM], None] | None = None,
    starter: Starter = Boot(),
) -> None:
    if vm.host is not None:  # on another hypervisor: the feature that placed it there boots it
        if not any(feature.boot(plan, state, conn, vm) for feature in plan.features):
            raise hv.HypervisorError(f"{vm.name}: no feature of this lab boots guests on hypervisor {vm.host!r}")
        return
    for nic in vm.all_nics:
        create_tap_recorded(plan, state, nic.tap, vm.name)
    dom = define_recorded(plan, state, conn, vm.domain, starter.domain_xml(vm), vm.name)
    starter.start_paused(conn, dom, vm)
    for nic in vm.all_nics:
        linux_bridge.move_link(nic.tap, plan.namespace)
        switch_for(plan, plan.bridge(nic.port_of).type).attach_port(plan, nic.tap, nic.port_of)
    if before_resume is not None:
        before_resume(vm)
    hv.resume(dom)


def create_tap_recorded(plan: Plan, state: LabState, tap: str, vm: str | None) -> None:
    """A tap, down and unaddressed in the root namespace (where libvirt opens it), recorded first."""
    if linux_bridge.link_exists(None, tap):  # someone else's link: never record (= remove) it
        raise linux_bridge.LinkError(f"a link named {tap!r} already exists in the root namespace and no lab state records it: left alone; pick another lab name")
    create_recorded(plan, state, "tap", tap, vm, lambda: linux_bridge.create_tap(tap), lambda: linux_bridge.link_exists(None, tap), "the root namespace")


def define_recorded(plan: Plan, state: LabState, conn: libvirt.virConnect, domain: str, xml: str, vm: str | None) -> libvirt.virDomain:
    """Define the domain, recorded first; never one of that name that is not this lab's."""
    existing = hv.lookup(conn, domain)
    if existing is not None:
        raise hv.HypervisorError(f"a libvirt domain named {domain!r} already exists and no lab state records it: left alone; pick another lab name ({_owner(existing)})")
    state.record(plan.lab_dir, "domain", domain, vm)
    try:
        return hv.define(conn, xml)
    except hv.HypervisorError:
        # libvirt refuses a second domain of one name (its UUID differs): another lab defined it
        # since the lookup above. Its metadata says so; then it is not ours to record or remove.
        try:
            hv.lookup_of_lab(conn, domain, plan.lab, METADATA_NS)
        except hv.ForeignDomain as foreign:
            state.forget(plan.lab_dir, "domain", domain)
            raise hv.HypervisorError(f"a libvirt domain named {domain!r} was defined by someone else while this lab was defining it: left alone; pick another lab name ({foreign})") from None
        except hv.HypervisorError:
            pass
        raise


def _owner(dom: libvirt.virDomain) -> str:
    """Who a same-named domain belongs to, for the refusal message."""
    try:
        owner = hv.lab_of(dom, METADATA_NS)
    except hv.HypervisorError as exc:
        return f"its owner could not be read: {exc}"
    if owner is None:
        return "it is not a vnetlab lab's"
    return f"it is lab {owner!r}'s: domain names join lab and VM with '-', so two labs can clash (e.g. lab 'a' VM 'b-c' and lab 'a-b' VM 'c')"


@dataclass(frozen=True)
class Admission:
    """How many guests boot at once (0: all), and how a started guest is waited for before the next
    one starts (its console's readiness marker); `stop` is set when a guest failed, so the waiting
    ones do not start."""

    limit: int = 0
    until_ready: Callable[[PlannedVM, float], None] | None = None  # the guest, and when its start began (time.monotonic())
    stop: threading.Event = field(default_factory=threading.Event)


def apply_network(plan: Plan, state: LabState, connections: Connections, image: GuestImage, progress: Progress, restored: Collection[str] = ()) -> None:
    """The guests' files (`restored`: the guests restored from warm images), then the network."""
    with progress.step("prepare", "Keys and guest files"):
        prepare_files(plan, image, hv.qemu_group(connections.get(), plan.domain_type), restored)
    with progress.step("network", f"Namespace {plan.namespace} with bridges {', '.join(b.name for b in host_bridges(plan))}"):
        create_network(plan, state)


def start_guests(
    plan: Plan, state: LabState, connections: Connections, progress: Progress, admission: Admission | None = None, *,
    before_resume: Callable[[PlannedVM], None] | None = None,
    then: Callable[[PlannedVM, float], None] | None = None,
    starters: Mapping[str, Starter] | None = None,
) -> None:
    """Start every guest, each on its own way: booted or restored (`starters`, by VM; booted when
    absent), paused while its taps join their bridges (`before_resume` is told of each local guest
    then), waited for while it holds its admission slot, then `then` (SSH, addresses) while the
    next guests start. The first failure stops the guests that have not started and is raised
    once every guest's thread has ended."""
    admission = admission or Admission()
    starters = starters or {}
    bounded = 0 < admission.limit < len(plan.vms)
    slots = threading.BoundedSemaphore(admission.limit) if bounded else None
    how = f", at most {admission.limit} at a time" if bounded else ""
    restored = sum(1 for vm in plan.vms if vm.name in starters and starters[vm.name].how == "restore")
    what = f"{len(plan.vms)} guest(s)" + (f", {restored} restored from warm images" if restored else "")
    gate = BootGate()
    with progress.step("boot", f"Starting {what} ({plan.domain_type}{how}): console, SSH, addresses"):
        preload()  # SSH's and the capture's libraries, imported while libvirt starts the guests

        def guest(vm: PlannedVM) -> None:
            starter = starters.get(vm.name, Boot())
            started = None
            if slots is not None:
                slots.acquire()
            try:
                if not gate.enter():
                    return  # the lab is being abandoned (a guest failed, or an interrupt): closed with `stop` set
                try:
                    started = time.monotonic()
                    progress.vm_stage(vm.name, STAGES[starter.how][0])
                    boot_vm(plan, state, connections.get(vm.uri), vm, before_resume, starter)
                    progress.vm_stage(vm.name, STAGES[starter.how][1])
                    where = plan.namespace if vm.host is None else f"hypervisor {vm.host}'s lab namespace"
                    progress.detail(f"{vm.name}: domain {vm.domain} {'restored' if starter.how == 'restore' else 'started'}, taps {', '.join(n.tap for n in vm.all_nics)} in {where}")
                    if admission.until_ready is not None:
                        admission.until_ready(vm, started)
                finally:
                    gate.leave()
            finally:
                if slots is not None:
                    slots.release()
            if then is not None and started is not None:
                then(vm, started)

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(plan.vms)) as pool:
            try:
                futures = [pool.submit(guest, vm) for vm in plan.vms]  # in the try: an interrupt may land in a submit
                pending = set(futures)
                while pending:
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_EXCEPTION)
                    for future in done:
                        future.result()
            except BaseException:
                admission.stop.set()  # the waiting ones stop waiting
                gate.close_and_wait()  # and no guest starts after this: teardown must see every record
                raise


# A guest's first two stages, by how it starts (run/progress.py shows both in one column).
STAGES = {"boot": ("starting", "started"), "restore": ("restoring", "restored")}


class BootGate:
    """Who may still create resources. An interrupt raised in this thread can land inside the pool's
    own bookkeeping (e.g. in Thread.start(), after the thread began but before the pool tracks it):
    the pool would then not wait for that thread, and a tap it made after teardown had read the
    state would be left behind. Closing the gate stops every worker that has not begun and waits
    for those that have."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._closed = False

    def enter(self) -> bool:
        with self._cond:
            if self._closed:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def close_and_wait(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._active == 0)
