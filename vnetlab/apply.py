"""Create a planned lab on the system, recording each resource before it exists.

Order matters for the network safety rule: the namespace and its bridges come
first; taps are created down and unaddressed in the root namespace (libvirt
can only open them there), the guest starts paused, and its taps are moved into
the lab namespace and enslaved before the guest runs a single instruction.
"""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import libvirt

from vnetlab import netns
from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import linux_bridge
from vnetlab.image import GuestImage, write_guest_initrd
from vnetlab.keys import ClientKey, HostKey, generate_client_key, generate_host_key, write_secret
from vnetlab.plan import Plan, PlannedVM
from vnetlab.progress import Progress
from vnetlab.state import LabState, make_private_dir

CLIENT_KEY = "id_ed25519"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
GUEST_HOST_KEY = "/etc/dropbear/dropbear_ed25519_host_key"


def secrets_dir(plan: Plan) -> Path:
    return plan.lab_dir / "secrets"


def host_key_file(plan: Plan, vm: str) -> Path:
    return secrets_dir(plan) / f"{vm}.host_key.pub"


def prepare_files(plan: Plan, image: GuestImage) -> None:
    """Per-lab client key, per-guest host keys, and per-guest initrds (base image + a small secrets archive)."""
    make_private_dir(secrets_dir(plan))
    client: ClientKey = generate_client_key(f"vnetlab-{plan.lab}")
    write_secret(secrets_dir(plan) / CLIENT_KEY, client.private_openssh)
    for vm in plan.vms:
        host: HostKey = generate_host_key()
        write_secret(host_key_file(plan, vm.name), host.public_line.encode())
        # qemu runs as libvirt's unprivileged user: the guest folder is traversable but
        # not listable, and libvirt relabels the 0600 initrd for the guest's lifetime.
        vm.initrd.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(vm.initrd.parent, 0o711)
        write_guest_initrd(
            image,
            vm.initrd,
            {
                AUTHORIZED_KEYS: ((client.public_line + "\n").encode(), 0o600),
                GUEST_HOST_KEY: (host.dropbear_blob, 0o600),
            },
        )
        (vm.initrd.parent / "domain.xml").write_text(vm.xml)


def create_network(plan: Plan, state: LabState) -> None:
    state.record(plan.lab_dir, "namespace", plan.namespace)
    netns.create_namespace(plan.namespace)
    for bridge in plan.bridges:
        state.record(plan.lab_dir, "bridge", bridge.name)
        linux_bridge.create_bridge(plan.namespace, bridge.name, bridge.mac)
        if bridge.cidr:
            linux_bridge.add_address(plan.namespace, bridge.name, bridge.cidr)


def boot_vm(plan: Plan, state: LabState, conn: libvirt.virConnect, vm: PlannedVM) -> None:
    for nic in vm.all_nics:
        state.record(plan.lab_dir, "tap", nic.tap, vm.name)
        linux_bridge.create_tap(nic.tap)
    state.record(plan.lab_dir, "domain", vm.domain, vm.name)
    dom = hv.define(conn, vm.xml)
    hv.start_paused(dom)
    for nic in vm.all_nics:
        linux_bridge.move_link(nic.tap, plan.namespace)
        linux_bridge.attach_to_bridge(plan.namespace, nic.tap, nic.bridge)
    hv.resume(dom)


def apply(plan: Plan, state: LabState, conn: libvirt.virConnect, image: GuestImage, progress: Progress) -> None:
    with progress.step("prepare", "Keys and guest initrds"):
        prepare_files(plan, image)
    with progress.step("network", f"Namespace {plan.namespace} with bridges {', '.join(b.name for b in plan.bridges)}"):
        create_network(plan, state)
    with progress.step("boot", f"Starting {len(plan.vms)} guest(s) ({plan.domain_type})"):

        def boot(vm: PlannedVM) -> None:
            boot_vm(plan, state, conn, vm)
            progress.detail(f"{vm.name}: domain {vm.domain} started, taps {', '.join(n.tap for n in vm.all_nics)} in {plan.namespace}")

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(plan.vms)) as pool:
            for future in [pool.submit(boot, vm) for vm in plan.vms]:
                future.result()
