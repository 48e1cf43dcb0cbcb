"""Failing daemons and races, without VMs: teardown with libvirtd unreachable, libvirt errors
that are not "not found", domain names two labs can share, a tap or namespace name taken by
someone else while a lab creates it, artifacts on disk, guest-reserved NIC names.

Namespaces, taps and Open vSwitch daemons are real (made here, in the lab's namespace or down and
unaddressed in the root namespace, as vnetlab does); libvirt is a fake connection object, only to
test one unit (the real daemon going down is tests/e2e/test_daemon_failures.py).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import secrets
import signal
import stat
import time
from pathlib import Path

import libvirt
import pytest

from vnetlab import cli
from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import daemon, linux_bridge, netns, ovs
from vnetlab.backends.accel import AccelChoice
from vnetlab.backends.image import GuestImage
from vnetlab.compose import parse_scenario, registry
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.paths import Layout
from vnetlab.plan.planner import METADATA_NS, PlanOptions, make_plan
from vnetlab.run import apply as apply_mod
from vnetlab.run import lab as lab_mod
from vnetlab.run.apply import boot_vm, create_network
from vnetlab.run.progress import Progress
from vnetlab.run.state import STATE_FILE, LabState, make_private_dir
from vnetlab.run.teardown import teardown

from conftest import remove_namespace

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, taps, /run/vnetlab)")

LINUX = """\
name: tf
bridges:
  - {name: br0, subnet: 10.1.1.0/24}
vms:
  - name: vm1
    nics: [{bridge: br0, address: 10.1.1.2/24}]
  - name: vm2
    nics: [{bridge: br0, address: 10.1.1.3/24}]
"""

OVS = LINUX.replace("{name: br0, subnet", "{name: br0, type: ovs, subnet")


# -- a fake libvirt, to test one unit ----------------------------------------------------------


def libvirt_error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_QEMU, message, 2, None, None, None, 0, 0)
    return exc


class FakeDomain:
    def __init__(self, conn: FakeConn, name: str, lab: str | None, *, metadata_error: Exception | None = None, metadata_delay: float = 0.0):
        self.conn, self._name, self.lab = conn, name, lab
        self.metadata_error, self.metadata_delay = metadata_error, metadata_delay

    def name(self) -> str:
        return self._name

    def metadata(self, kind: int, uri: str) -> str:
        assert kind == libvirt.VIR_DOMAIN_METADATA_ELEMENT and uri == METADATA_NS
        time.sleep(self.metadata_delay)
        if self.metadata_error is not None:
            raise self.metadata_error
        if self.lab is None:
            raise libvirt_error(libvirt.VIR_ERR_NO_DOMAIN_METADATA, "Requested metadata element is not present")
        return f"<lab name='{self.lab}' vm='x'/>"

    def isActive(self) -> int:
        return 1

    def state(self) -> list[int]:
        return [libvirt.VIR_DOMAIN_RUNNING, 0]

    def XMLDesc(self, flags: int = 0) -> str:
        return f"<domain><name>{self._name}</name><devices/></domain>"

    def destroy(self) -> int:
        self.conn.calls.append(("destroy", self._name))
        return 0

    def undefine(self) -> int:
        self.conn.calls.append(("undefine", self._name))
        self.conn.domains.pop(self._name, None)
        return 0

    def openConsole(self, dev, stream, flags) -> int:
        self.conn.calls.append(("console", self._name))
        return 0


class FakeConn:
    """lookupByName answers from `domains`; a missing name is VIR_ERR_NO_DOMAIN, in French (a
    translated libvirt), so only the error code can tell."""

    def __init__(self) -> None:
        self.domains: dict[str, FakeDomain] = {}
        self.calls: list[tuple[str, str]] = []
        self.lookup_error: Exception | None = None
        self.define_error: Exception | None = None
        self.missing = "Domaine introuvable : aucun domaine ne correspond au nom « {} »"

    def add(self, name: str, lab: str | None, **kw) -> FakeDomain:
        self.domains[name] = FakeDomain(self, name, lab, **kw)
        return self.domains[name]

    def lookupByName(self, name: str) -> FakeDomain:
        if self.lookup_error is not None:
            raise self.lookup_error
        if name not in self.domains:
            raise libvirt_error(libvirt.VIR_ERR_NO_DOMAIN, self.missing.format(name))
        return self.domains[name]

    def defineXML(self, xml: str):
        raise self.define_error or AssertionError("defineXML not expected here")

    def newStream(self, flags: int):
        return FakeStream()

    def close(self) -> int:
        return 0


class FakeStream:
    def abort(self) -> None:
        pass


def libvirtd_down() -> None:
    raise hv.HypervisorError("libvirtd is not running (/run/libvirt/libvirt-sock is missing): start it with `libvirtd -d`, or run `vnetlab doctor`")


# -- labs whose network part is real ---------------------------------------------------------


def lab_name(prefix: str = "tf") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


class NetLab:
    """A lab's network created by apply.create_network (namespace, bridges, switch daemons), its taps
    created down and unaddressed in the root namespace and recorded as boot_vm does (the first moved
    into the lab namespace, as after a domain started), and its domains recorded (never defined)."""

    def __init__(self, tmp_path: Path, scenario: str, name: str | None = None, *, taps: bool = True, domains: bool = True):
        self.layout = Layout(tmp_path / "state")
        self.name = name or lab_name()
        self.plan = make_plan(parse_scenario(scenario, "tf.yaml"), self.name, PlanOptions(layout=self.layout))
        make_private_dir(self.plan.lab_dir)
        self.state = LabState(self.name, "tf", "tf.yaml", self.plan.namespace, "qemu", "", os.getpid())
        self.state.save(self.plan.lab_dir)
        self.taps = [n.tap for vm in self.plan.vms for n in vm.all_nics] if taps else []
        self.domains = [vm.domain for vm in self.plan.vms] if domains else []
        self.daemon_pids: list[int] = []

    def create(self) -> NetLab:
        create_network(self.plan, self.state)
        self.daemon_pids = [int(r.name.rpartition(":")[2]) for r in self.state.resources if r.kind == "process"]
        for vm in self.plan.vms:
            for nic in vm.all_nics:
                if nic.tap in self.taps:
                    self.state.record(self.plan.lab_dir, "tap", nic.tap, vm.name)
                    linux_bridge.create_tap(nic.tap)
            if vm.domain in self.domains:
                self.state.record(self.plan.lab_dir, "domain", vm.domain, vm.name)
        if self.taps:
            linux_bridge.move_link(self.taps[0], self.plan.namespace)
        return self

    def recorded(self) -> list[tuple[str, str]]:
        return [(r["kind"], r["name"]) for r in json.loads((self.plan.lab_dir / STATE_FILE).read_text())["resources"]]

    def daemons_alive(self) -> list[int]:
        return [pid for pid in self.daemon_pids if any(daemon.is_running(pid, program, str(ovs.ovs_dir(self.plan.lab_dir))) for program in ovs.DAEMONS)]

    def cleanup(self) -> None:
        """Whatever a failing test left: this test's daemons, taps and namespace, by name and PID."""
        for pid in self.daemons_alive():
            os.kill(pid, signal.SIGKILL)
        for tap in self.taps:
            linux_bridge.delete_link(None, tap)
        remove_namespace(self.plan.namespace)


@pytest.fixture
def net_labs(tmp_path):
    made: list[NetLab] = []

    def make(scenario: str = LINUX, name: str | None = None, **kw) -> NetLab:
        lab = NetLab(tmp_path, scenario, name, **kw)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        lab.cleanup()


def root_taps(names: list[str]) -> list[str]:
    return [name for name in names if linux_bridge.link_exists(None, name)]


# -- 1. teardown, `down --all` and `status` with libvirtd unreachable --------------------------


@pytest.mark.root
@pytest.mark.parametrize("scenario", [LINUX, OVS], ids=["linux-bridge", "ovs"])
def test_teardown_without_libvirtd_removes_the_rest_and_keeps_only_the_domains(net_labs, monkeypatch, scenario):
    lab = net_labs(scenario).create()
    assert netns.namespace_exists(lab.plan.namespace) and root_taps(lab.taps) == lab.taps[1:]
    if scenario is OVS:
        assert len(lab.daemons_alive()) == 2
    monkeypatch.setattr(hv, "connect", libvirtd_down)

    problems = teardown(lab.plan.lab_dir, lab.state, lab_mod.removers(registry()))

    assert not netns.namespace_exists(lab.plan.namespace)
    assert root_taps(lab.taps) == []
    assert lab.daemons_alive() == []
    assert lab.recorded() == [("domain", d) for d in lab.domains]  # what is left, and only that
    assert sorted(problems) == sorted(f"domain {d}: libvirtd is not running (/run/libvirt/libvirt-sock is missing): start it with `libvirtd -d`, or run `vnetlab doctor`" for d in lab.domains)

    # libvirtd back: a later teardown finishes (the domains turn out gone; libvirt says so in French).
    monkeypatch.setattr(hv, "connect", FakeConn)
    again = LabState.load(lab.plan.lab_dir)
    assert teardown(lab.plan.lab_dir, again, lab_mod.removers(registry())) == []
    assert not lab.plan.lab_dir.exists()


@pytest.mark.root
def test_down_all_goes_through_every_lab_and_says_what_is_left(net_labs, monkeypatch, capsys, tmp_path):
    with_domains = net_labs().create()
    network_only = net_labs(domains=False).create()
    busy = net_labs(taps=False, domains=False).create()
    monkeypatch.setattr(lab_mod, "Options", functools.partial(lab_mod.Options, layout=with_domains.layout))
    monkeypatch.setattr(hv, "connect", libvirtd_down)
    lab_mod.LOCK_DIR.mkdir(parents=True, exist_ok=True)
    lock = lab_mod.LOCK_DIR / f"{busy.name}.lock"
    lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another vnetlab command works on this lab
        code = cli.main(["down", "--all"])
    finally:
        os.close(lock_fd)
        lock.unlink(missing_ok=True)
    out, err = capsys.readouterr()

    for lab in (with_domains, network_only):  # libvirtd down: all the rest of every lab is gone
        assert not netns.namespace_exists(lab.plan.namespace) and root_taps(lab.taps) == []
    assert code == cli.EXIT_FAIL
    lines = {line.split(":")[0]: line for line in out.splitlines()}
    assert lines[f"lab {network_only.name}"] == f"lab {network_only.name}: removed"
    left = lines[f"lab {with_domains.name}"]
    assert left.startswith(f"lab {with_domains.name}: removed namespace {with_domains.plan.namespace}, bridge vnl-mgmt, bridge br0, tap ")
    assert left.endswith(f"; left domain {with_domains.domains[0]}, domain {with_domains.domains[1]} (kept in its state file)")
    assert lines[f"lab {busy.name}"].startswith(f"lab {busy.name}: not removed: lab {busy.name!r} is busy")
    assert "libvirtd is not running" in err and "not everything was removed" in err
    assert with_domains.recorded() == [("domain", d) for d in with_domains.domains]
    assert not network_only.plan.lab_dir.exists()
    assert netns.namespace_exists(busy.plan.namespace)  # left to the command that holds it


@pytest.mark.root
def test_status_with_libvirtd_down_lists_the_labs_and_their_domains_as_unknown(net_labs, monkeypatch, capsys):
    lab = net_labs(taps=False).create()
    monkeypatch.setattr("vnetlab.paths.Layout", lambda: lab.layout)
    monkeypatch.setattr(hv, "connect", libvirtd_down)
    code = cli.main(["status"])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert lab.name in out and f"{lab.domains[0]} (unknown (libvirtd not answering))" in out
    assert "domains unknown: libvirtd is not answering (libvirtd is not running" in out


# -- 2. lab_of: only "no such metadata" means not ours; bounded ---------------------------------


@pytest.mark.root
def test_a_transient_libvirt_error_on_the_metadata_keeps_the_domain_in_the_state(net_labs, monkeypatch):
    lab = net_labs(taps=False).create()
    conn = FakeConn()
    conn.add(lab.domains[0], lab.name, metadata_error=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "client socket is closed"))
    conn.add(lab.domains[1], None)  # no vnetlab metadata: a same-named domain that is not ours
    monkeypatch.setattr(hv, "connect", lambda: conn)

    problems = teardown(lab.plan.lab_dir, lab.state)

    assert problems == [f"domain {lab.domains[0]}: reading the lab metadata of {lab.domains[0]}: client socket is closed"]
    assert lab.recorded() == [("domain", lab.domains[0])]  # could not tell: kept for the next `down`
    assert conn.calls == []  # neither destroyed: one could not be told, the other is not ours
    assert not netns.namespace_exists(lab.plan.namespace)


def test_lab_of_is_bounded(monkeypatch):
    monkeypatch.setattr(hv.bounded, "__defaults__", (0.3,))
    dom = FakeConn().add("vnl-x-vm1", "x", metadata_delay=3.0)
    started = time.monotonic()
    with pytest.raises(hv.HypervisorError, match="did not answer within 0.3 s"):
        hv.lab_of(dom, METADATA_NS)
    assert time.monotonic() - started < 2.0


def test_lab_of_reads_the_lab_and_says_none_only_without_metadata():
    conn = FakeConn()
    assert hv.lab_of(conn.add("a", "lab1"), METADATA_NS) == "lab1"
    assert hv.lab_of(conn.add("b", None), METADATA_NS) is None
    with pytest.raises(hv.HypervisorError) as raised:
        hv.lab_of(conn.add("c", "lab1", metadata_error=libvirt_error(libvirt.VIR_ERR_RPC, "Cannot recv data")), METADATA_NS)
    assert raised.value.code == libvirt.VIR_ERR_RPC


# -- 3. "not found" by error code, not by message -------------------------------------------


def test_lookup_tells_a_missing_domain_by_its_error_code_not_its_message():
    conn = FakeConn()
    assert hv.lookup(conn, "vnl-x-vm1") is None  # VIR_ERR_NO_DOMAIN, in French
    conn.lookup_error = libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket to '/run/libvirt/virtqemud-sock': No such file or directory (not found)")
    with pytest.raises(hv.HypervisorError) as raised:
        hv.lookup(conn, "vnl-x-vm1")  # the daemon is unreachable: that is no answer about the domain
    assert raised.value.code == libvirt.VIR_ERR_SYSTEM_ERROR


@pytest.mark.root
def test_teardown_keeps_a_domain_when_libvirt_fails_with_a_message_that_says_not_found(net_labs, monkeypatch):
    lab = net_labs(taps=False).create()
    conn = FakeConn()
    conn.lookup_error = libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Unable to open /run/libvirt/qemu: No domain socket found")
    monkeypatch.setattr(hv, "connect", lambda: conn)
    assert len(teardown(lab.plan.lab_dir, lab.state)) == 2
    assert lab.recorded() == [("domain", d) for d in lab.domains]


def test_remove_is_idempotent_by_error_code():
    conn = FakeConn()
    dom = conn.add("vnl-x-vm1", "x")

    def gone():
        conn.domains.pop("vnl-x-vm1", None)
        raise libvirt_error(libvirt.VIR_ERR_NO_DOMAIN, "Domaine introuvable")

    dom.destroy = gone  # undefined by someone else meanwhile
    assert hv.remove(conn, "vnl-x-vm1") is True
    assert hv.remove(conn, "vnl-x-vm1") is False


# -- 4. artifacts before teardown: a full disk or a second signal never skips teardown ----------


def _fake_run(monkeypatch, tmp_path: Path, lab: str, collect) -> lab_mod.LabRunner:
    """A LabRunner whose bring-up makes only the real network (no image, no guests)."""
    layout = Layout(tmp_path / "state")
    image = GuestImage(tmp_path / "vmlinux", tmp_path / "initrd.img", "test", "test")
    monkeypatch.setattr(lab_mod.LabRunner, "_images", lambda self, scenario: (image, {}))
    monkeypatch.setattr(lab_mod.LabRunner, "_accel", lambda self, image: AccelChoice("tcg", "qemu", "test"))

    def bring_up(self, plan, state, image, *_):
        create_network(plan, state)
        return {}

    monkeypatch.setattr(lab_mod.LabRunner, "_bring_up", bring_up)
    monkeypatch.setattr(lab_mod.LabRunner, "_check", lambda self, plan, sessions, run_dir, outcome, *_: None)
    monkeypatch.setattr(lab_mod, "collect_artifacts", collect)
    return lab_mod.LabRunner(lab_mod.Options(lab=lab, layout=layout), Progress(quiet=True), registry())


@pytest.mark.root
def test_a_full_disk_while_keeping_artifacts_is_reported_and_the_lab_is_still_torn_down(tmp_path, monkeypatch):
    (tmp_path / "tf.yaml").write_text(LINUX)
    lab = lab_name()

    def disk_full(plan, run_dir, pcaps, *_):
        raise OSError(errno.ENOSPC, "No space left on device")

    runner = _fake_run(monkeypatch, tmp_path, lab, disk_full)
    try:
        outcome = runner.run(str(tmp_path / "tf.yaml"), keep=False)
        assert not netns.namespace_exists(f"vnl-{lab}")
        assert not (tmp_path / "state" / "labs" / lab).exists()
        assert not outcome.ok and "could not keep the run's artifacts" in outcome.error and "No space left on device" in outcome.error
    finally:
        remove_namespace(f"vnl-{lab}")


@pytest.mark.root
def test_a_signal_while_keeping_artifacts_does_not_skip_teardown(tmp_path, monkeypatch):
    (tmp_path / "tf.yaml").write_text(LINUX)
    lab = lab_name()
    collected = []

    def interrupted(plan, run_dir, pcaps, *_):
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C, while the artifacts are copied
        time.sleep(0.3)
        collected.append(run_dir)
        return {"dir": str(run_dir)}

    runner = _fake_run(monkeypatch, tmp_path, lab, interrupted)
    try:
        outcome = runner.run(str(tmp_path / "tf.yaml"), keep=False)
        assert collected and outcome.ok
        assert not netns.namespace_exists(f"vnl-{lab}")
        assert not (tmp_path / "state" / "labs" / lab).exists()
    finally:
        remove_namespace(f"vnl-{lab}")


# -- 5. domain names two labs can share ---------------------------------------------------------


CLASH_A = "name: tf\nbridges: [{name: br0}]\nvms:\n  - {name: b-c, nics: [{bridge: br0}]}\n"
CLASH_AB = "name: tf\nbridges: [{name: br0}]\nvms:\n  - {name: c, nics: [{bridge: br0}]}\n"


def test_up_refuses_a_lab_whose_domain_name_another_lab_records(tmp_path, monkeypatch):
    a = lab_name("a")
    layout = Layout(tmp_path / "state")
    plan_a = make_plan(parse_scenario(CLASH_A, "a.yaml"), a, PlanOptions(layout=layout))
    make_private_dir(plan_a.lab_dir)
    state_a = LabState(a, "tf", "a.yaml", plan_a.namespace, "qemu", "", os.getpid())
    state_a.save(plan_a.lab_dir)
    state_a.record(plan_a.lab_dir, "domain", plan_a.vms[0].domain, "b-c")
    (tmp_path / "ab.yaml").write_text(CLASH_AB)

    def went_on(self, scenario):
        raise AssertionError("the clash was not seen before the lab was built")

    monkeypatch.setattr(lab_mod.LabRunner, "_images", went_on)
    runner = lab_mod.LabRunner(lab_mod.Options(lab=f"{a}-b", layout=layout), Progress(quiet=True), registry())
    with pytest.raises(lab_mod.LabError) as raised:
        runner.run(str(tmp_path / "ab.yaml"), keep=False)
    assert str(raised.value) == (
        f"VM 'c' of lab '{a}-b' would be libvirt domain 'vnl-{a}-b-c', which lab '{a}' already uses for its VM 'b-c' "
        "(domain names join lab and VM with '-'): pick another lab name with --name"
    )
    assert not layout.lab_dir(f"{a}-b").exists()


@pytest.mark.root
def test_a_domain_defined_by_another_lab_in_a_race_is_not_recorded(net_labs, monkeypatch):
    lab = net_labs(taps=False, domains=False).create()
    vm = lab.plan.vms[0]
    lab.taps = [n.tap for n in vm.all_nics]  # boot_vm creates them: cleaned up if the test fails
    conn = FakeConn()
    conn.missing = "Domain not found: no domain with matching name '{}'"  # in English: only the race is tested here

    def define(xml):  # the other lab defined the same name just before: libvirt refuses ours (other UUID)
        conn.add(vm.domain, "someone-else")
        raise libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED, f"operation failed: domain '{vm.domain}' already exists with uuid 0843c7f9")

    conn.defineXML = define
    with pytest.raises(hv.HypervisorError) as raised:
        boot_vm(lab.plan, lab.state, conn, vm)
    assert ("domain", vm.domain) not in lab.recorded()  # libvirt defined theirs, not ours: nothing to track
    monkeypatch.setattr(hv, "connect", lambda: conn)
    assert teardown(lab.plan.lab_dir, lab.state) == []
    assert conn.calls == [] and vm.domain in conn.domains  # the other lab's domain is untouched
    assert str(raised.value) == (
        f"a libvirt domain named '{vm.domain}' was defined by someone else while this lab was defining it: left alone; pick another lab name "
        f"(libvirt domain '{vm.domain}' does not belong to lab '{lab.name}': its metadata names lab 'someone-else'; left alone)"
    )


def test_console_and_inspect_never_take_another_labs_same_named_domain(tmp_path, monkeypatch):
    from vnetlab.tools import inspect as inspect_mod
    from vnetlab.tools import interactive

    layout = Layout(tmp_path / "state")
    ab = lab_name("a") + "-b"
    plan = make_plan(parse_scenario(CLASH_AB, "ab.yaml"), ab, PlanOptions(layout=layout))
    make_private_dir(plan.lab_dir)
    (plan.lab_dir / lab_mod.SCENARIO_COPY).write_text(CLASH_AB)
    LabState(ab, "tf", "ab.yaml", plan.namespace, "qemu", "", os.getpid(), phase="up").save(plan.lab_dir)
    conn = FakeConn()
    conn.add(plan.vms[0].domain, ab.removesuffix("-b"))  # lab a's VM b-c: same name, other lab
    monkeypatch.setattr(hv, "connect", lambda: conn)

    with pytest.raises(lab_mod.LabError, match=f"has no domain: libvirt domain '{plan.vms[0].domain}' does not belong to lab '{ab}'"):
        with interactive.console_stream(plan, "c"):
            pass
    assert conn.calls == []

    report = inspect_mod.inspect_lab(ab, registry(), guests=False, layout=layout)
    [chain] = report.vms
    assert chain.state == "not this lab's" and chain.pid is None
    assert any(f"its metadata names lab '{ab.removesuffix('-b')}'" in p for p in chain.problems)


# -- 6. a tap or namespace name taken by someone else while a lab creates it --------------------


@pytest.mark.root
def test_a_tap_created_by_someone_else_meanwhile_is_not_recorded_nor_removed(net_labs, monkeypatch):
    lab = net_labs(taps=False, domains=False).create()
    vm = lab.plan.vms[0]
    theirs = vm.mgmt.tap
    lab.taps = [theirs]  # removed at the end by the test, never by the lab
    real_create = linux_bridge.create_tap

    def race(name):
        real_create(name)  # the other process wins: its tap, named like ours
        real_create(name)  # ours then fails: the name exists

    monkeypatch.setattr(linux_bridge, "create_tap", race)
    with pytest.raises(Exception) as raised:
        boot_vm(lab.plan, lab.state, FakeConn(), vm)
    assert ("tap", theirs) not in lab.recorded()
    monkeypatch.setattr(hv, "connect", FakeConn)
    assert teardown(lab.plan.lab_dir, lab.state) == []
    assert linux_bridge.link_exists(None, theirs)  # still there: it was never ours
    assert isinstance(raised.value, apply_mod.ResourceTaken)
    assert str(raised.value).startswith(f"tap '{theirs}' was created in the root namespace by someone else while this lab was creating it (create tap '{theirs}': a link with that name already exists")


@pytest.mark.root
def test_a_namespace_created_by_someone_else_meanwhile_is_not_recorded_nor_removed(net_labs, monkeypatch):
    lab = net_labs(taps=False, domains=False)  # not created: create_network runs here
    real_create = netns.create_namespace

    def race(name):
        real_create(name)  # someone else's, named like ours
        real_create(name)

    monkeypatch.setattr(netns, "create_namespace", race)
    with pytest.raises(Exception) as raised:
        create_network(lab.plan, lab.state)
    assert lab.recorded() == []
    assert teardown(lab.plan.lab_dir, lab.state) == []
    assert netns.namespace_exists(lab.plan.namespace)  # theirs stays (the fixture removes it)
    assert isinstance(raised.value, apply_mod.ResourceTaken)
    assert str(raised.value).startswith(f"namespace '{lab.plan.namespace}' was created in /run/netns by someone else while this lab was creating it")


# -- 7. run artifacts are private ------------------------------------------------------------


def test_run_folders_are_0700_and_the_files_written_there_0600(tmp_path):
    layout = Layout(tmp_path / "state")
    old_umask = os.umask(0o022)
    try:
        run_dir = lab_mod.new_run_dir(layout, "tf")
        again = lab_mod.new_run_dir(layout, "tf")  # same second: a folder of its own
    finally:
        os.umask(old_umask)
    assert run_dir != again
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700 and stat.S_IMODE(again.stat().st_mode) == 0o700
    plan = make_plan(parse_scenario(LINUX, "tf.yaml"), "tf", PlanOptions(layout=layout))
    plan.vms[0].console_log.parent.mkdir(parents=True)
    plan.vms[0].console_log.write_text("root@vm1:~# secret\n")
    artifacts = lab_mod.collect_artifacts(plan, run_dir, {})
    files = [Path(p) for p in (*artifacts["console"].values(), *artifacts["domain_xml"].values())]
    assert len(files) == 3
    assert {oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {oct(0o600)}


# -- 8. the guest init's temporary NIC names ----------------------------------------------------


@pytest.mark.parametrize("name", ["vnltmp0", "vnltmp12", "vnltmpx"])
def test_nic_names_like_the_guest_inits_temporary_names_are_refused(name):
    text = f"name: tf\nbridges: [{{name: br0}}]\nvms:\n  - name: vm1\n    nics:\n      - {{bridge: br0, name: {name}}}\n"
    with pytest.raises(ValidationError) as raised:
        parse_scenario(text, "tf.yaml")
    assert [str(p) for p in raised.value.problems] == [
        f"tf.yaml:6: vms[0].nics[0].name: {name!r} is reserved inside the guest: names starting with 'vnltmp' are the temporary names the guest's init gives every NIC while it renames them"
    ]
