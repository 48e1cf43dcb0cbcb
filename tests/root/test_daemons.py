"""The lab daemon backend in real namespaces: recorded before it starts, found again without its
PID, never a process that is not the lab's; and a bridge's dnsmasq serving a real DHCP exchange
in a test namespace, stopped by its record."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vnetlab import procfs
from vnetlab.backends import daemon, dnsmasq, linux_bridge, netns

pytestmark = pytest.mark.root


class Recorded:
    """Records as a lab's state would keep them; `crash_before_pid` stops like a kill -9 between the two writes."""

    def __init__(self, crash_before_pid: bool = False):
        self.names: list[str] = []
        self.crash = crash_before_pid
        self.running_at_record: list[bool] = []

    def record(self, name: str) -> None:
        self.names.append(name)

    def settle(self, intent: str, name: str) -> None:
        if self.crash:
            raise KeyboardInterrupt("killed before the PID was recorded")
        self.names[self.names.index(intent)] = name


def stand_in(tmp_path: Path, program: str) -> list[str]:
    """`sleep` under a daemon's name, with the lab's folder on its command line."""
    exe = tmp_path / program
    shutil.copy("/bin/sleep", exe)
    return [str(exe), "300"]


def wait_running(pid: int, program: str, marker: str) -> None:
    deadline = time.monotonic() + 5
    while not daemon.is_running(pid, program, marker):
        assert time.monotonic() < deadline, "the stand-in never ran"
        time.sleep(0.02)


def test_a_daemon_is_recorded_before_it_starts_and_stopped_by_its_pid(tmp_path, make_ns):
    ns = make_ns()
    d = daemon.Daemon("t1", stand_in(tmp_path, "dnsmasq"), ns, str(tmp_path))
    records = Recorded()
    pid = daemon.start(d, records)
    assert records.names == [f"t1:{pid}"]
    wait_running(pid, "dnsmasq", str(tmp_path))
    daemon.stop(records.names[0], "dnsmasq", str(tmp_path), ns)
    assert not daemon.is_running(pid, "dnsmasq", str(tmp_path))


def test_a_daemon_whose_pid_never_came_is_found_in_its_namespace(tmp_path, make_ns):
    ns = make_ns()
    other = make_ns()
    d = daemon.Daemon("t2", stand_in(tmp_path, "dnsmasq"), ns, str(tmp_path))
    elsewhere = daemon.spawn(daemon.Daemon("t3", d.argv, other, str(tmp_path)))  # the same program in another namespace
    records = Recorded(crash_before_pid=True)
    with pytest.raises(KeyboardInterrupt):
        daemon.start(d, records)
    assert records.names == ["t2:"]
    deadline = time.monotonic() + 5
    while not (found := [p for p in procfs.net_namespace_members(netns.namespace_path(ns)) if daemon.is_running(p, "dnsmasq", str(tmp_path))]):
        assert time.monotonic() < deadline, "the stand-in never ran"
        time.sleep(0.02)  # `ip netns exec` has not exec'd it yet
    [pid] = found
    daemon.stop("t2:", "dnsmasq", str(tmp_path), ns)
    assert not daemon.is_running(pid, "dnsmasq", str(tmp_path))
    wait_running(elsewhere, "dnsmasq", str(tmp_path))  # not in the namespace: left alone


def test_a_reused_pid_is_never_signalled(tmp_path):
    other = subprocess.Popen(["sleep", "30"])
    try:
        daemon.stop(f"t4:{other.pid}", "dnsmasq", str(tmp_path))
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.skipif(not dnsmasq.installed(), reason="dnsmasq-base is not installed (vnetlab setup installs it)")
def test_dnsmasq_leases_its_reservation_on_its_bridge_only(tmp_path, make_ns):
    lab_ns, client_ns = make_ns(), make_ns()
    linux_bridge.create_bridge(lab_ns, "lan", "02:00:00:00:00:01")
    linux_bridge.add_address(lab_ns, "lan", "10.9.1.254/24")
    linux_bridge.create_veth(lab_ns, "v0", client_ns, "eth0")
    linux_bridge.attach_to_bridge(lab_ns, "v0", "lan")
    subprocess.run(["ip", "-n", client_ns, "link", "set", "eth0", "address", "02:aa:00:00:00:02", "up"], check=True)
    config = dnsmasq.ServerConfig("lan", "10.9.1.100", "10.9.1.200", "255.255.255.0", "1h", reservations=(dnsmasq.Reservation("02:aa:00:00:00:02", "10.9.1.150", "c1"),))
    dnsmasq.folder(tmp_path).mkdir()
    dnsmasq.config_path(tmp_path, "lan").write_text(dnsmasq.config_text(config, tmp_path))
    d = dnsmasq.daemon(tmp_path, "lan", lab_ns)
    records = Recorded()
    pid = daemon.start(d, records)
    try:
        daemon.wait_until(lambda: b"started, version" in d.log.read_bytes(), d, pid, 15, "started")
        out = subprocess.run(["ip", "netns", "exec", client_ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-s", "/bin/true", "-t", "5", "-T", "1"],
                             capture_output=True, text=True, timeout=60)
        assert "lease of 10.9.1.150 obtained from 10.9.1.254" in out.stdout + out.stderr, out
        [lease] = dnsmasq.read_leases(tmp_path, "lan")
        assert (lease.mac, lease.address, lease.hostname) == ("02:aa:00:00:00:02", "10.9.1.150", "c1")
    finally:
        daemon.stop(records.names[0], dnsmasq.DNSMASQ, f"--conf-file={dnsmasq.config_path(tmp_path, 'lan')}", lab_ns)
    assert not daemon.is_running(pid, dnsmasq.DNSMASQ, d.marker)
