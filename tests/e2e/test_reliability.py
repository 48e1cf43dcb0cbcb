"""Reliability on real guests: parallel labs, the per-lab lock, kill -9 at any point, signals,
bounded waits, decoys that only look like ours, secrets on disk and pinned host keys.

Every lab here is named r-…; `down --all` is only exercised when no one else's lab exists.
"""

from __future__ import annotations

import json
import os
import ipaddress
import signal
import shlex
import socket
import stat
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from pyroute2 import IPRoute

from labtools import LineWatcher, leftovers, run_failing, scenario_with_checks, start, state_of, vnetlab, wait_until

from vnetlab.backends import netns
from vnetlab.checks.ping import ping_argv
from vnetlab.backends.keys import generate_host_key
from vnetlab.run.lab import LOCK_DIR, cold_by_environment
from vnetlab.paths import RECIPE_DIR, SCENARIOS_DIR, Layout
from vnetlab.plan.planner import METADATA_NS, tap_prefix

pytestmark = pytest.mark.e2e
LAB_PREFIX = "r-"  # for the lab_name fixture

SCENARIO = SCENARIOS_DIR / "two-vm-ping.yaml"
ETH_P_ALL = 0x0003
# Checks that last a few seconds (2 x 60 pings), for tests that must act while checks run.
SLOW_CHECKS = "  - ping: {from: vm1, to: vm2, count: 60}\n  - ping: {from: vm2, to: vm1, count: 60}\n"


def lock_held(lab: str) -> bool:
    """Whether some process holds the lab's flock, read from /proc/locks (probing it could steal it)."""
    try:
        ino = os.stat(LOCK_DIR / f"{lab}.lock").st_ino
    except FileNotFoundError:
        return False
    return any(line.split()[1] == "FLOCK" and line.split()[5].endswith(f":{ino}") for line in Path("/proc/locks").read_text().splitlines())


def only_our_labs_exist(ours: set[str]) -> bool:
    listed = {p.name for p in Layout().labs.iterdir()} if Layout().labs.exists() else set()
    return listed <= ours


@pytest.fixture
def labs():
    """Lab names a test uses; each is brought down afterwards and must leave nothing."""
    names: list[str] = []
    yield names
    for name in names:
        vnetlab("down", name)
        assert leftovers(name) == [], name


# -- 1. parallel labs and the lock -----------------------------------------------------------


def test_three_labs_of_one_scenario_run_at_once_without_collisions(tmp_path, labs):
    path = scenario_with_checks(tmp_path, "two-vm-ping", None, name="r-par")
    procs = [start("run", str(path), "--name", "auto", "--report", str(tmp_path / f"report{i}.json")) for i in range(3)]
    results = [p.communicate(timeout=600) for p in procs]
    reports = []
    for i, (proc, (out, err)) in enumerate(zip(procs, results)):
        report = json.loads((tmp_path / f"report{i}.json").read_text())
        labs.append(report["lab"])
        assert proc.returncode == 0, out + err
        assert report["ok"] and report["lab"].startswith("r-par-") and len(report["lab"]) == len("r-par-") + 6
        assert err.splitlines()[0] == f"lab {report['lab']}"  # the chosen name comes first
        reports.append(report)
    names = [r["lab"] for r in reports]
    assert len(set(names)) == 3
    taps, macs, domains = [], [], []
    for report in reports:
        for xml in report["artifacts"]["domain_xml"].values():
            dom = ET.parse(xml).getroot()
            domains.append(dom.findtext("name"))
            for iface in dom.findall("devices/interface"):
                taps.append(iface.find("target").get("dev"))
                macs.append(iface.find("mac").get("address"))
    assert len(set(domains)) == len(domains) == 6
    assert len(set(taps)) == len(taps) == 12
    assert len(set(macs)) == len(macs) == 12
    for name in names:
        assert leftovers(name) == []


def test_a_second_command_on_a_busy_lab_is_refused_and_a_second_up_says_it_exists(labs, tmp_path):
    lab = "r-lock"
    labs.append(lab)
    scenario = str(scenario_with_checks(tmp_path, "two-vm-ping", SLOW_CHECKS))  # `check` below outlasts `down`'s start-up
    first = start("up", scenario, "--name", lab)
    wait_until("the first `up` holds the lab's lock", lambda: lock_held(lab), first)
    second = vnetlab("up", scenario, "--name", lab)
    assert second.returncode == 1
    assert f"lab '{lab}' is busy: another vnetlab command is working on it" in second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err

    again = vnetlab("up", scenario, "--name", lab)
    assert again.returncode == 1 and f"lab '{lab}' already exists" in again.stderr

    check = start("check", lab)
    wait_until("`check` holds the lab's lock", lambda: lock_held(lab), check)
    down = vnetlab("down", lab)
    assert down.returncode == 1 and "is busy" in down.stderr
    out, err = check.communicate(timeout=300)
    assert check.returncode == 0, out + err
    assert vnetlab("down", lab).stdout.strip() == f"lab {lab}: removed"
    assert leftovers(lab) == []


# -- 2. kill -9 at any point, then down ------------------------------------------------------

def _kinds(state: dict) -> list[str]:
    return [r["kind"] for r in state["resources"]]


# Each point: when to kill (polled in the state file), and where the kill must then have landed —
# the state file as the killed process left it (it cannot change after the kill): its phase, and
# which resources it had recorded. A kill that came too late for its point (the lab already up,
# or for "namespace" a guest already defined) fails instead of passing for another point. (The
# two guests are created in parallel, tens of ms apart: the tap and domain points cannot be
# told apart more finely from outside without flaking.)
KILL_POINTS = {
    "namespace": (lambda s: "namespace" in _kinds(s), lambda s: s["phase"] == "creating" and "domain" not in _kinds(s)),
    "first-tap": (lambda s: "tap" in _kinds(s), lambda s: s["phase"] == "creating" and "tap" in _kinds(s)),
    "first-domain": (lambda s: "domain" in _kinds(s), lambda s: s["phase"] == "creating" and _kinds(s).count("domain") >= 1),
    "guests-booting": (lambda s: _kinds(s).count("domain") == 2, lambda s: s["phase"] == "creating" and _kinds(s).count("domain") == 2),
    "checks": (lambda s: s["phase"] == "up", lambda s: s["phase"] == "up" and _kinds(s).count("domain") == 2 and _kinds(s).count("tap") == 4),
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_at_any_point_then_down_removes_everything(point, labs, tmp_path):
    lab = f"r-kill-{point}"[:24]
    labs.append(lab)
    when, landed = KILL_POINTS[point]
    proc = start("run", str(scenario_with_checks(tmp_path, "two-vm-ping", SLOW_CHECKS)), "--name", lab)
    wait_until(f"the state file to show {point}", lambda: (s := state_of(lab)) is not None and when(s), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    at_kill = state_of(lab)  # what the process had written when it died
    assert at_kill is not None and at_kill["pid"] == proc.pid
    assert landed(at_kill), f"the kill landed outside {point}: phase {at_kill['phase']}, recorded {_kinds(at_kill)}"
    assert _kinds(at_kill)[0] == "namespace"  # recorded first, so a kill never leaves resources without it

    status = vnetlab("status")
    [row] = [line for line in status.stdout.splitlines() if f" {lab} " in line]
    assert at_kill["phase"] in row, row

    down = vnetlab("down", lab)
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.strip() == f"lab {lab}: removed"
    assert leftovers(lab) == []
    assert not (LOCK_DIR / f"{lab}.lock").exists()
    again = vnetlab("down", lab)
    assert again.returncode == 0 and again.stdout.strip() == f"lab {lab}: nothing to remove"
    # Last, so the cleanup above is checked whatever status said: the README's claim for every point.
    assert f"dead (pid {proc.pid}): run `vnetlab down {lab}`" in row, f"status after kill -9 at {point} (phase {at_kill['phase']}): {row}"


def test_a_lab_folder_without_state_is_listed_and_removed(labs):
    """kill -9 between creating the lab folder and its first state write (a window too short to
    hit from outside) leaves the folder with the scenario copy and nothing else: status lists it,
    down removes it."""
    lab = "r-kill-folder"
    labs.append(lab)
    folder = Layout().lab_dir(lab)
    folder.mkdir(mode=0o700)
    (folder / "scenario.yaml").write_text(SCENARIO.read_text())
    assert any(f" {lab} " in line and "files only" in line and "dead" in line for line in vnetlab("status").stdout.splitlines())
    assert vnetlab("down", lab).stdout.strip() == f"lab {lab}: removed"
    assert not folder.exists()
    assert vnetlab("down", lab).stdout.strip() == f"lab {lab}: nothing to remove"


# -- decoys: only recorded things are ever removed --------------------------------------------


def _lookalike_link(ns: str, name: str) -> None:
    def add() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="bridge")  # any kind will do; this kernel has no dummy module

    netns.run_in_namespace(ns, add)


def _has_link(ns: str, name: str) -> bool:
    def look() -> bool:
        with IPRoute() as ipr:
            return bool(ipr.link_lookup(ifname=name))

    return netns.run_in_namespace(ns, look)


def _root_link(name: str) -> tuple[int, str | None, str] | None:
    """(ifindex, kind, admin state) of a link in the root namespace, or None."""
    with IPRoute() as ipr:
        links = ipr.get_links(ifname=name) if ipr.link_lookup(ifname=name) else []
    if not links:
        return None
    link = links[0]
    info = link.get_attr("IFLA_LINKINFO")
    return link["index"], info.get_attr("IFLA_INFO_KIND") if info is not None else None, "up" if link["flags"] & 1 else "down"


DECOY_DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <metadata><vnetlab:lab xmlns:vnetlab='{ns}' name='someone-else'/></metadata>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
</domain>"""


@pytest.fixture
def decoys():
    """Things that look like a lab's but belong to nobody vnetlab knows: a namespace named like
    lab r-decoy's, a link named like its first tap in a namespace of its own, a (never started)
    domain named like lab r-decoy2's first guest, and in the root namespace a tap named like lab
    r-decoy4's first tap (taps live there until their guest starts). Removed by name at the end,
    the root tap only if it is still the one created here."""
    ns_like_lab, other_ns, fake_tap = "vnl-r-decoy", "r-decoy-other", f"{tap_prefix('r-decoy')}-0"
    domain = "vnl-r-decoy2-vm1"
    root_tap = f"{tap_prefix('r-decoy4')}-0"
    assert _root_link(root_tap) is None, f"{root_tap} already exists in the root namespace"
    conn = libvirt.open("qemu:///system")
    created_tap = None
    try:
        netns.create_namespace(ns_like_lab)
        netns.create_namespace(other_ns)
        _lookalike_link(other_ns, fake_tap)
        conn.defineXML(DECOY_DOMAIN_XML.format(name=domain, ns=METADATA_NS))
        with IPRoute() as ipr:  # a persistent tap, down and unaddressed, as vnetlab makes them
            ipr.link("add", ifname=root_tap, kind="tuntap", mode="tap", ifr={"no_pi": True})
        created_tap = _root_link(root_tap)
        yield {"namespace": ns_like_lab, "other_ns": other_ns, "fake_tap": fake_tap, "domain": domain, "conn": conn, "root_tap": root_tap, "root_tap_link": created_tap}
    finally:
        try:
            conn.lookupByName(domain).undefine()
        except libvirt.libvirtError:
            pass
        conn.close()
        netns.delete_namespace(ns_like_lab)
        netns.delete_namespace(other_ns)
        if created_tap is not None and (now := _root_link(root_tap)) is not None and now[0] == created_tap[0]:
            with IPRoute() as ipr:
                ipr.link("del", index=created_tap[0])


def assert_decoys_intact(d: dict) -> None:
    assert netns.namespace_exists(d["namespace"]), "the decoy namespace was removed"
    assert _has_link(d["other_ns"], d["fake_tap"]), "the decoy link was removed"
    dom = d["conn"].lookupByName(d["domain"])  # raises if it was removed
    assert not dom.isActive()
    assert "someone-else" in dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
    # the very tap created (same ifindex: not removed and made again), still down, still in the root namespace
    assert _root_link(d["root_tap"]) == d["root_tap_link"] == (d["root_tap_link"][0], "tun", "down"), _root_link(d["root_tap"])


def test_names_that_only_look_like_ours_are_never_used_or_removed(labs, decoys):  # decoys go first at teardown
    labs.extend(["r-decoy", "r-decoy2", "r-decoy3", "r-decoy4"])
    taken_ns = vnetlab("up", "two-vm-ping", "--name", "r-decoy")
    assert taken_ns.returncode == 1
    assert "namespace 'vnl-r-decoy' already exists but no lab state records it" in taken_ns.stdout
    assert_decoys_intact(decoys)

    taken_domain = vnetlab("up", "two-vm-ping", "--name", "r-decoy2")
    assert taken_domain.returncode == 1
    assert "a libvirt domain named 'vnl-r-decoy2-vm1' already exists and no lab state records it" in taken_domain.stdout
    assert_decoys_intact(decoys)
    assert leftovers("r-decoy2") == []  # the decoy's metadata names another lab

    taken_tap = vnetlab("up", "two-vm-ping", "--name", "r-decoy4")
    assert taken_tap.returncode == 1, taken_tap.stdout + taken_tap.stderr
    assert f"a link named {decoys['root_tap']!r} already exists in the root namespace and no lab state records it: left alone" in taken_tap.stdout + taken_tap.stderr
    assert_decoys_intact(decoys)
    assert [x for x in leftovers("r-decoy4") if x != f"tap {decoys['root_tap']}"] == []  # the rest of the refused lab is gone

    # `down` of each lab whose decoy exists, while it exists: whatever its state says, the decoy stays.
    for lab in ("r-decoy", "r-decoy2", "r-decoy4"):
        down = vnetlab("down", lab)
        assert down.returncode == 0 and down.stdout.strip() in (f"lab {lab}: removed", f"lab {lab}: nothing to remove"), down.stdout + down.stderr
        assert_decoys_intact(decoys)

    # A lab killed mid-boot, then removed: by name, and with --all when nobody else has a lab.
    proc = start("run", "two-vm-ping", "--name", "r-decoy3")
    wait_until("r-decoy3's guests", lambda: (s := state_of("r-decoy3")) is not None and sum(r["kind"] == "domain" for r in s["resources"]) == 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    if only_our_labs_exist({"r-decoy3"}):
        down = vnetlab("down", "--all")
        assert down.returncode == 0 and "lab r-decoy3: removed" in down.stdout, down.stdout + down.stderr
    else:
        others = sorted({p.name for p in Layout().labs.iterdir()} - {"r-decoy3"})
        print(f"`down --all` not exercised: other people's labs exist on this host ({', '.join(others)}); `down r-decoy3` instead")
        assert vnetlab("down", "r-decoy3").stdout.strip() == "lab r-decoy3: removed"
    assert leftovers("r-decoy3") == []
    assert_decoys_intact(decoys)


# -- 3. Ctrl-C and SIGTERM at several steps ---------------------------------------------------

SIGNAL_POINTS = {
    "network": lambda s: any(r["kind"] == "bridge" for r in s["resources"]),
    "boot": lambda s: any(r["kind"] == "domain" for r in s["resources"]),
    "checks": lambda s: s["phase"] == "up",
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", SIGNAL_POINTS)
def test_a_signal_at_any_step_tears_down_and_exits_130_with_one_line(point, sig, labs, tmp_path):
    lab = f"r-sig-{point}-{sig.name[3:].lower()}"[:24]
    labs.append(lab)
    proc = start("run", str(scenario_with_checks(tmp_path, "two-vm-ping", SLOW_CHECKS)), "--name", lab)
    wait_until(f"the state file to show {point}", lambda: (s := state_of(lab)) is not None and SIGNAL_POINTS[point](s), proc)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert err.splitlines()[-1] == f"interrupted ({sig.name}): the lab was torn down", err
    assert "Traceback" not in err, err
    assert time.monotonic() - sent < 30
    assert leftovers(lab) == []


def test_a_second_ctrl_c_during_teardown_is_ignored_and_teardown_finishes(lab_name, tmp_path):
    """Ctrl-C during the checks starts the teardown; a second Ctrl-C sent while the teardown runs
    (the state file says tearing-down and the lab folder is still there) must not stop it: the run
    ends with the one interrupted line and nothing of the lab is left."""
    proc = start("run", str(scenario_with_checks(tmp_path, "two-vm-ping", SLOW_CHECKS)), "--name", lab_name)
    wait_until("the checks to run", lambda: (s := state_of(lab_name)) is not None and s["phase"] == "up", proc)
    proc.send_signal(signal.SIGINT)
    lab_dir = Layout().lab_dir(lab_name)
    deadline = time.monotonic() + 60
    while (s := state_of(lab_name)) is None or s["phase"] != "tearing-down":  # polled tightly: teardown may take only ~0.2 s
        assert proc.poll() is None and lab_dir.exists(), "the run ended before its teardown could be seen"
        assert time.monotonic() < deadline, "teardown did not start within 60 s of the first SIGINT"
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    landed = lab_dir.exists() and proc.poll() is None  # the second signal reached a process still tearing down
    out, err = proc.communicate(timeout=120)
    assert landed, "the teardown finished before the second SIGINT: this run proved nothing (rerun)"
    assert proc.returncode == 130, out + err
    assert err.splitlines()[-1] == "interrupted (SIGINT): the lab was torn down", err
    assert err.count("interrupted") == 1 and "Traceback" not in err, err
    assert leftovers(lab_name) == []


def test_ctrl_c_while_a_guest_hangs_in_boot_does_not_wait_out_the_boot_timeout(labs):
    """vm1 is frozen (paused through libvirt) right after vnetlab resumed it: it never prints its
    marker. Ctrl-C must end the wait at once, not after --boot-timeout."""
    lab = "r-sig-frozen"
    labs.append(lab)
    proc = start("run", "two-vm-ping", "--name", lab, "--boot-timeout", "300")
    err_lines = LineWatcher(proc.stderr)
    wait_until("both domains recorded", lambda: (s := state_of(lab)) is not None and sum(r["kind"] == "domain" for r in s["resources"]) == 2, proc)
    conn = libvirt.open("qemu:///system")
    try:
        def vm1_resumed() -> bool:
            try:
                return conn.lookupByName(f"vnl-{lab}-vm1").state()[0] == libvirt.VIR_DOMAIN_RUNNING
            except libvirt.libvirtError:
                return False

        wait_until("vm1 resumed by vnetlab", vm1_resumed, proc, timeout=60)
        conn.lookupByName(f"vnl-{lab}-vm1").suspend()
    finally:
        conn.close()
    # vm2 boots and becomes reachable while vm1 stays frozen: the run must still be waiting for vm1.
    err_lines.wait_for("vm2 (tiny): ready ", timeout=120)  # "… ready 2.1 s after its restore (or boot) began"
    assert proc.poll() is None, "the run ended although vm1 was frozen"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    out, err = proc.stdout.read(), err_lines.rest()
    assert proc.returncode == 130, out + err
    assert err.splitlines()[-1] == "interrupted (SIGINT): the lab was torn down"
    assert time.monotonic() - sent < 20
    assert leftovers(lab) == []


# -- 4. bounded waits -------------------------------------------------------------------------


def test_a_guest_that_does_not_boot_in_time_fails_with_its_console_tail(labs):
    lab = "r-boot-timeout"
    labs.append(lab)
    started = time.monotonic()
    result = vnetlab("run", "two-vm-ping", "--name", lab, "--boot-timeout", "0.5", timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no readiness marker on the serial console within the boot timeout (--boot-timeout). Last console lines:" in result.stdout + result.stderr
    assert elapsed < 30, elapsed
    assert leftovers(lab) == []


def _arp_listener(ns: str, ifname: str) -> socket.socket:
    """A packet socket on the tap, opened in the lab's namespace. It takes every frame: the bridge
    consumes a port's frames before any socket bound to one protocol would see them."""
    def open_socket() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
        return sock

    return netns.run_in_namespace(ns, open_socket)


def _asked_for(sock: socket.socket, address: str) -> bool:
    """Whether an ARP request for `address` arrived: the ping's first frame. Other frames the
    guest sends on its own (IPv6 neighbour discovery, say) must not count as the ping starting."""
    wanted = ipaddress.IPv4Address(address).packed
    while True:
        try:
            frame = sock.recv(2048)
        except BlockingIOError:
            return False
        if len(frame) >= 42 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01" and frame[38:42] == wanted:  # opcode request, target IP
            return True


def test_a_hung_command_in_a_check_fails_within_its_bound_naming_command_and_output(tmp_path, labs):
    """The source guest is frozen (paused through libvirt) the moment its ping starts: the
    check's SSH command never finishes, and the run says which command and what it printed."""
    lab = "r-hung"
    labs.append(lab)
    path = scenario_with_checks(tmp_path, "two-vm-ping", name="r-hung", checks="  - ping: {from: vm1, to: 10.1.1.99, count: 3, expect: failure}\n")
    up = vnetlab("up", str(path), "--name", lab)
    assert up.returncode == 0, up.stdout + up.stderr
    xml = ET.parse(Layout().lab_dir(lab) / "guests" / "vm1" / "domain.xml").getroot()
    tap = xml.findall("devices/interface")[1].find("target").get("dev")  # [0] is mgmt0, [1] the br0 NIC
    ns = f"vnl-{lab}"
    arp = _arp_listener(ns, tap)
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.lookupByName(f"vnl-{lab}-vm1")
        check = start("check", lab)
        started = time.monotonic()
        wait_until("vm1's first frame of the ping", lambda: _asked_for(arp, "10.1.1.99"), check, timeout=60)
        dom.suspend()
        out, err = check.communicate(timeout=120)
        elapsed = time.monotonic() - started
        dom.resume()
    finally:
        conn.close()
        arp.close()
    assert check.returncode == 1, out + err
    # The lab exists, so the failure is part of the summary (and the report), as for `run`.
    assert f"command '{shlex.join(ping_argv(3, '10.1.1.99'))}' on root@" in out, out + err  # in the check's detail
    assert "did not finish within 17.5s; output so far:" in out  # empty here: busybox ping buffers its stdout
    assert elapsed < 17.5 + 15, elapsed


def test_a_capture_that_sees_nothing_fails_at_once_saying_what_it_saw(tmp_path, labs):
    lab = "r-quiet"
    labs.append(lab)
    result, report = run_failing(tmp_path, "two-vm-ping", "  - capture: {bridge: br0, between: [vm1, vm2], expect: [arp, icmp-echo]}\n", "r-quiet", lab)
    [capture] = report["checks"]
    assert capture["ok"] is False
    assert "saw 0 ARP request(s), 0 reply(ies); 0 request(s), 0 reply(ies), 0 pair(s)" in capture["detail"]
    checks_step = next(s for s in report["steps"] if s["name"] == "checks")
    assert checks_step["seconds"] < 10
    assert leftovers(lab) == []


# -- 6. secrets ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_private_and_a_swapped_host_key_is_refused(labs):
    lab = "r-secrets"
    labs.append(lab)
    up = vnetlab("up", "two-vm-ping", "--name", lab)
    assert up.returncode == 0, up.stdout + up.stderr
    lab_dir = Layout().lab_dir(lab)
    secrets = lab_dir / "secrets"
    assert _mode(secrets) == 0o700
    assert sorted(p.name for p in secrets.iterdir()) == ["id_ed25519", "vm1.host_key.pub", "vm2.host_key.pub"]
    assert all(_mode(p) == 0o600 and p.stat().st_uid == 0 for p in secrets.iterdir())
    qemu_gid = None
    for folder in (lab_dir, lab_dir / "guests", lab_dir / "guests" / "vm1", lab_dir / "guests" / "vm2"):
        # root and libvirt's qemu group may pass through (not list), nobody else may enter
        assert _mode(folder) == 0o710, (folder, oct(_mode(folder)))
        assert folder.stat().st_uid == 0 and folder.stat().st_gid != 0
        qemu_gid = folder.stat().st_gid
    for vm in ("vm1", "vm2"):
        # a booted guest's keys' archive, a restored guest's identity archive (warm start, the default)
        keys = lab_dir / "guests" / vm / ("secrets.cpio" if cold_by_environment() else "identity.tar")
        assert _mode(keys) == 0o600  # it holds the guest's private host key
        assert keys.stat().st_gid == qemu_gid  # libvirt handed it to qemu for the guest's lifetime
        assert not (lab_dir / "guests" / vm / "initrd.img").exists()  # the guests share the image's initramfs
    # Others cannot enter any folder of the lab, so no file below is reachable for them.
    assert not [d for d in (lab_dir, *lab_dir.rglob("*")) if d.is_dir() and _mode(d) & 0o007]

    # No usable password anywhere in the guest: root's is '*', dropbear refuses password logins.
    shadow = (RECIPE_DIR / "guest" / "etc" / "shadow").read_text().splitlines()
    assert all(line.split(":")[1] in ("*", "!", "!*") for line in shadow)
    assert " -s" in next(line for line in (RECIPE_DIR / "guest" / "etc" / "init.d" / "rcS").read_text().splitlines() if line.startswith("dropbear "))

    pinned = secrets / "vm1.host_key.pub"
    pinned.write_text(generate_host_key().public_line + "\n")
    check = vnetlab("check", lab)
    assert check.returncode == 1
    assert "host key mismatch for root@" in check.stdout + check.stderr
    down = vnetlab("down", lab)
    assert down.returncode == 0
    assert leftovers(lab) == []
