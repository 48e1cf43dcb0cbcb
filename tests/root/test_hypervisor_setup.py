"""A lab's set-up and teardown on a simulated hypervisor, without guests (issue 23): what a failed
set-up may touch on a hypervisor another lab shares, VXLAN devices named per lab, processes that
must not outlive the lab, and the bounded output of a namespace node's commands.

The hypervisor is the real simulated one (a namespace on a lab underlay with its own sshd, reached
over SSH and SFTP); the network is made by apply.create_network as `vnetlab run` makes it, and
removed by the teardown `vnetlab down` runs. "Another lab's" things are decoys made here: a
namespace, a folder in /var/lib/vnetlab/hosted, a link in the root namespace (down, unaddressed).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vnetlab import procfs
from vnetlab.backends import linux_bridge, netns, remote_host
from vnetlab.backends.ssh import MAX_OUTPUT
from vnetlab.checks.base import NamespaceNode
from vnetlab.compose import parse_scenario
from vnetlab.features.hypervisors import HOSTED_ROOT, HypervisorError, boot_hosted, device_name, remove_overlay_vxlan, sim_lab_namespace, sim_stack_namespace
from vnetlab.paths import SCENARIOS_DIR, Layout
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.run import lab as lab_mod
from vnetlab.run.apply import create_network
from vnetlab.run.state import LabState, RecordedResource, make_private_dir
from vnetlab.run.teardown import teardown_lab

from conftest import remove_namespace

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, sshd, /var/lib/vnetlab)")]

TWO_HOSTS = (SCENARIOS_DIR / "two-hosts-ping.yaml").read_text()

CONTAINER = """\
name: hs
description: a guest and a container on one bridge
bridges: [{name: br0, subnet: 10.1.1.0/24}]
containers:
  - {name: c1, nic: {bridge: br0, address: 10.1.1.9/24}}
vms:
  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}
"""


class Lab:
    """A lab of `scenario` under a unique name in a test state root: planned, its state file
    written as `run` writes it, its network made by create_network, torn down as `down` does."""

    def __init__(self, tmp_path: Path, scenario: str, **options) -> None:
        self.name = f"hs-{secrets.token_hex(3)}"
        self.layout = Layout(tmp_path / self.name)
        self.scenario = parse_scenario(scenario, str(tmp_path / "lab.yaml"))
        kernel = self.layout.images / "tiny" / "vmlinux"  # stand-ins: staged on the hypervisor over SFTP, never booted
        kernel.parent.mkdir(parents=True)
        kernel.write_bytes(b"kernel")
        (kernel.parent / "initrd.img").write_bytes(b"initrd")
        self.plan = make_plan(self.scenario, self.name, PlanOptions(kernel=kernel, layout=self.layout, **options))
        make_private_dir(self.plan.lab_dir)
        self.state = LabState(self.name, "hs", "lab.yaml", self.plan.namespace, "qemu", "", os.getpid(), **options)
        self.state.save(self.plan.lab_dir)

    def create(self) -> Lab:
        create_network(self.plan, self.state)
        return self

    def down(self) -> list[str]:
        """Teardown from the state file alone, as `vnetlab down` (a fresh read: nothing of this process's)."""
        state = LabState.load(self.plan.lab_dir) if (self.plan.lab_dir / "state.json").exists() else self.state
        return teardown_lab(self.plan.lab_dir, state, lab_mod.removers(self.scenario.model)).problems

    def recorded(self) -> list[tuple[str, str]]:
        return [(r.kind, r.name) for r in LabState.load(self.plan.lab_dir).resources]

    def namespaces(self) -> list[str]:
        return [ns for ns in netns.list_namespaces() if ns == self.plan.namespace or ns.startswith(self.plan.namespace + ".")]

    def sshds(self) -> list[int]:
        """This lab's simulated hypervisors' sshd listeners, wherever they run (found by their config)."""
        needle = str(self.plan.lab_dir / "hosts").encode()
        return [pid for pid in _pids() if needle in _cmdline(pid) and b"sshd" in _cmdline(pid) and _alive(pid)]

    def cleanup(self) -> None:
        """What a failing test left: this lab's sshds (by PID), namespaces and hosted folders."""
        if self.plan.lab_dir.exists():
            self.down()
        for pid in self.sshds():
            os.kill(pid, 9)
        for ns in self.namespaces():
            remove_namespace(ns)
        for folder in HOSTED_ROOT_PATH.glob(f"{self.name}.*"):
            shutil.rmtree(folder, ignore_errors=True)


HOSTED_ROOT_PATH = Path(str(HOSTED_ROOT))


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    fields = procfs.stat_fields(pid)
    return fields is not None and not procfs.is_zombie(fields)


@pytest.fixture
def labs(tmp_path):
    made: list[Lab] = []
    decoys: list[tuple[str, str]] = []

    def make(scenario: str = TWO_HOSTS, **options) -> Lab:
        made.append(Lab(tmp_path, scenario, **options))
        return made[-1]

    make.decoys = decoys  # (kind, name) the test made as "another lab's": removed here, never by a lab
    yield make
    for lab in made:
        lab.cleanup()
    for kind, name in decoys:
        if kind == "namespace":
            remove_namespace(name)
        elif kind == "folder":
            shutil.rmtree(name, ignore_errors=True)
        else:
            linux_bridge.delete_link(None, name)


def _decoy_folder(labs, path: Path) -> Path:
    path.mkdir(parents=True)
    labs.decoys.append(("folder", str(path)))
    (path / "theirs").write_text("another lab's file\n")
    return path / "theirs"


# -- finding 2: a failed remote set-up touches nothing of another lab's -------------------------


def test_a_remote_set_up_refused_for_a_taken_namespace_leaves_that_labs_folder(labs):
    """Another instance of this lab name (another controller sharing the hypervisor) has its
    namespace and folder there: the set-up is refused before anything is made, and the teardown
    that follows removes nothing of it."""
    lab = labs()  # no instance id: named like a lab of an earlier version, or another controller's
    theirs = _decoy_folder(labs, HOSTED_ROOT_PATH / f"{lab.name}.hv2")
    taken = sim_lab_namespace(lab.plan.namespace, "hv2")
    netns.create_namespace(taken)
    labs.decoys.append(("namespace", taken))
    with pytest.raises(HypervisorError, match=f"namespace '{taken}' already exists there and no lab state records it"):
        lab.create()
    assert not [r for r in lab.recorded() if r[0] in ("host-files", "host-namespace")], lab.recorded()
    assert lab.down() == []
    assert theirs.read_text() == "another lab's file\n" and netns.namespace_exists(taken)
    assert lab.namespaces() == [taken] and lab.sshds() == []


def test_a_lab_folder_that_exists_on_the_hypervisor_is_refused_not_recorded(labs):
    """The folder is made exclusively: one of the same name (the same instance id, a leftover) is
    someone else's, never filled, never removed."""
    lab = labs(instance="0123abcd")
    folder = HOSTED_ROOT_PATH / f"{lab.name}.hv2.0123abcd"
    theirs = _decoy_folder(labs, folder)
    with pytest.raises(HypervisorError, match=rf"hypervisor hv2: the lab's folder {folder}: .*File exists; not recorded"):
        lab.create()
    assert not [r for r in lab.recorded() if r[0] == "host-files"], lab.recorded()
    assert lab.down() == []
    assert theirs.read_text() == "another lab's file\n" and sorted(p.name for p in folder.iterdir()) == ["theirs"]
    assert lab.namespaces() == [] and lab.sshds() == []


def test_a_remote_tap_the_hypervisor_refuses_is_unrecorded_and_left_alone(labs):
    """A link named like the guest's tap exists where the hypervisor's libvirtd opens taps (for a
    simulated one, this machine's root namespace): refused, un-recorded, and still there after the
    teardown (as a refused local tap is, run/apply.py)."""
    lab = labs(instance="0123abcd").create()
    vm2 = lab.plan.vm("vm2")
    theirs = vm2.mgmt.tap
    linux_bridge.create_tap(theirs)
    labs.decoys.append(("link", theirs))
    vm2.secrets.parent.mkdir(parents=True, exist_ok=True)
    vm2.secrets.write_bytes(b"keys")
    with pytest.raises(HypervisorError, match=rf"vm2: tap {theirs} on hypervisor hv2: .*not recorded, so it is left alone"):
        boot_hosted(lab.plan, lab.state, None, vm2)
    assert not [r for r in lab.recorded() if r[0].startswith("host-tap")], lab.recorded()
    assert lab.down() == []
    assert linux_bridge.link_exists(None, theirs)
    assert lab.namespaces() == [] and lab.sshds() == [] and not list(HOSTED_ROOT_PATH.glob(f"{lab.name}.*"))


# -- finding 6: VXLAN devices named per lab, removed only where the lab made them ---------------


def test_a_link_named_like_a_labs_vxlan_device_in_the_root_namespace_survives_the_lab(labs):
    """A simulated lab makes its VXLAN devices in its own namespace: its teardown used to delete
    the same name in the root namespace too, where another lab's device (made there before it
    moves) or anyone's link may be."""
    lab = labs()
    device = lab.plan.part("hypervisors").tunnels_on("hv1")[0].device
    linux_bridge.create_tap(device)  # down, unaddressed
    labs.decoys.append(("link", device))
    lab.create()
    assert linux_bridge.link_exists(lab.plan.namespace, device)
    assert lab.down() == []
    assert linux_bridge.link_exists(None, device)
    assert lab.namespaces() == []


def test_two_labs_with_vxlan_at_once_each_teardown_leaves_the_others_devices(labs):
    a, b = labs(instance="0a0a0a0a").create(), labs(instance="0b0b0b0b").create()
    devices = {lab.name: [t.device for t in lab.plan.part("hypervisors").tunnels_on("hv1")] for lab in (a, b)}
    assert not set(devices[a.name]) & set(devices[b.name])
    for lab in (a, b):  # here, and on its hypervisor hv2 (made there over SSH)
        assert all(linux_bridge.link_exists(lab.plan.namespace, d) for d in devices[lab.name]) and _on_hv2(lab) == set(devices[lab.name])
    assert b.down() == []
    assert all(linux_bridge.link_exists(a.plan.namespace, d) for d in devices[a.name]) and _on_hv2(a) == set(devices[a.name])
    assert b.namespaces() == []
    assert a.down() == []
    assert a.namespaces() == []


def test_a_real_hypervisor_labs_device_is_removed_from_the_root_namespace_only_under_its_own_name(tmp_path):
    """With real hypervisors, this machine's VXLAN devices are made in the root namespace and then
    moved: a crash in between leaves one there, which teardown removes, but only under a name of
    this lab's (a lab of an earlier version recorded the shared vnl-vx<N>)."""
    lab = f"hs-{secrets.token_hex(3)}"
    state = LabState(lab, "hs", "lab.yaml", f"vnl-{lab}", "qemu", "", os.getpid())
    ours, legacy = device_name(lab, 0), f"vnl-vx{secrets.randbelow(900) + 100}"
    try:
        for name in (ours, legacy):
            linux_bridge.create_tap(name)  # down, unaddressed: stand-ins for the devices
        for name in (ours, legacy):
            remove_overlay_vxlan(RecordedResource("overlay-vxlan", name), state, tmp_path)
        assert not linux_bridge.link_exists(None, ours)
        assert linux_bridge.link_exists(None, legacy)
    finally:
        for name in (ours, legacy):
            linux_bridge.delete_link(None, name)


def _on_hv2(lab: Lab) -> set[str]:
    """The VXLAN devices in the lab namespace of its hypervisor hv2, read there (its namespaces
    are made by its own shell, in its own mount namespace)."""
    with remote_host.shell(remote_host.load_hosts(lab.plan.lab_dir)["hv2"]) as sh:
        links = remote_host.parse_links(sh.run(remote_host.links_command(sim_lab_namespace(lab.plan.namespace, "hv2"))))
    return {name for name, link in links.items() if link["kind"] == "vxlan"}


# -- finding 7: no process of the lab outlives its teardown ------------------------------------


def test_a_process_a_command_left_in_the_background_in_a_container_ends_with_the_lab(labs):
    lab = labs(CONTAINER).create()
    node = next(n for n in lab.plan.nodes if n.name == "c1")
    result = NamespaceNode("c1", node.namespace).run(["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"], timeout=10)
    assert result.exit_code == 0, result
    pid = int(result.stdout)
    assert _alive(pid) and pid in netns.processes_in(node.namespace)
    started = time.monotonic()
    assert lab.down() == []
    assert not _alive(pid), _cmdline(pid)
    assert time.monotonic() - started < 10
    assert lab.namespaces() == []


def test_a_kill_9_between_the_simulated_sshd_start_and_its_record_leaves_nothing_after_down(labs):
    """The set-up runs in a child process that kills itself (SIGKILL) the moment sim_host.start_sshd
    returns, before the caller could record the PID; `down` (LabRunner.down) then finds the sshd
    in the hypervisor's namespace."""
    lab = labs()
    child = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from vnetlab.backends import sim_host
        from vnetlab.compose import parse_scenario
        from vnetlab.paths import Layout
        from vnetlab.plan.planner import PlanOptions, make_plan
        from vnetlab.run.apply import create_network
        from vnetlab.run.state import LabState
        started = sim_host.start_sshd
        def start_then_die(*args):
            started(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        sim_host.start_sshd = start_then_die
        layout = Layout(Path({str(lab.layout.root)!r}))
        plan = make_plan(parse_scenario(sys.stdin.read(), "lab.yaml"), {lab.name!r}, PlanOptions(kernel=layout.images / "tiny" / "vmlinux", layout=layout))
        create_network(plan, LabState.load(plan.lab_dir))
    """)
    done = subprocess.run([sys.executable, "-c", child], input=TWO_HOSTS, text=True, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr
    deadline = time.monotonic() + 10
    while not lab.sshds() and time.monotonic() < deadline:  # sshd outlived its parent (its own session)
        time.sleep(0.05)
    assert lab.sshds(), "the sshd did not start"
    assert ("sim-host", sim_stack_namespace(lab.plan.namespace, "hv2")) in lab.recorded()
    report = lab_mod.LabRunner(lab_mod.Options(layout=lab.layout), _quiet_progress(), lab.scenario.model).down(lab.name)
    assert report.existed and report.problems == [], report.problems
    assert lab.sshds() == []
    assert lab.namespaces() == []


def _quiet_progress():
    from rich.console import Console

    from vnetlab.run.progress import Progress

    return Progress(Console(file=open(os.devnull, "w")), quiet=True)


# -- finding 11: a namespace node's command output is bounded ----------------------------------


def test_a_namespace_nodes_output_is_kept_within_the_cap(labs):
    """64 MiB from a container's command: the head and tail are kept (at most MAX_OUTPUT per
    stream, as over SSH), the rest read and dropped so the command still ends normally."""
    lab = labs(CONTAINER).create()
    node = NamespaceNode("c1", next(n.namespace for n in lab.plan.nodes if n.name == "c1"))
    result = node.run(["sh", "-c", "echo FIRST; head -c 67108864 /dev/zero | tr '\\0' y; echo; echo LAST; echo oops >&2; exit 3"], timeout=60)
    assert result.exit_code == 3 and result.truncated
    assert len(result.stdout) <= MAX_OUTPUT and result.stdout.startswith("FIRST\nyyy") and result.stdout.endswith("yyy\nLAST\n")
    assert "bytes of output here" in result.stdout and result.stderr == "oops\n"
    echoed = node.run(["cat"], timeout=10, stdin=b"x" * 300_000)  # stdin still fed while output is read
    assert (echoed.exit_code, echoed.stdout, echoed.truncated) == (0, "x" * 300_000, False)
    slow = node.run(["sh", "-c", "echo started; sleep 30"], timeout=1)
    assert slow.exit_code == 124 and slow.stdout == "started\n" and "timed out after 1 s" in slow.stderr
    assert lab.down() == []
