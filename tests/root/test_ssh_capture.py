"""SSH into a namespace and capture on a namespaced bridge, for real (root, no VMs).

The SSH server is a dropbear started by these tests inside a test namespace.
Dropbear reads root's ~/.ssh/authorized_keys from the passwd home and has no
option to point elsewhere, so it runs in a private mount namespace (slave
propagation, so the host's later unmounts of /run/netns entries still reach
it) where a temporary directory is bind-mounted over /root: the host's
/root/.ssh is never read or written. Every process left in a test namespace
(dropbear, its session children, a `sleep 60`) was started by these tests and
is killed by PID before the namespace is deleted.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from vnetlab.backends import netns
from vnetlab.backends import linux_bridge as lb
from vnetlab.checks.capture import Capture, TrafficCounts, count_arp_icmp, count_icmp_in_subnet, count_udp
from vnetlab.backends.ssh import CommandResult, GuestSSH, SSHError


pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

CLIENT_IP, SERVER_IP, PORT = "10.231.20.1", "10.231.20.2", 2222




def _host_key_line(path: Path) -> str:
    out = subprocess.run(["dropbearkey", "-y", "-f", str(path)], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith(("ssh-", "ecdsa-")))


def _dropbear_key(path: Path) -> str:
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(path)], capture_output=True, check=True)
    return _host_key_line(path)


def _client_key(path: Path) -> paramiko.Ed25519Key:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vnetlab-test", "-f", str(path)], check=True)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def _start_dropbear(work: Path, server_ns: str, port: int) -> subprocess.Popen:
    """dropbear in server_ns, with work/home bind-mounted over /root in its own mount namespace."""
    script = 'mount --bind "$0" /root && exec ip netns exec "$1" dropbear -F -E -s -p "$2" -r "$3" -P "$4"'
    with open(work / f"dropbear-{port}.log", "wb") as log:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", script, str(work / "home"), server_ns,
             str(port), str(work / "host_key"), str(work / f"dropbear-{port}.pid")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # the PID is dropbear's own: unshare, sh and ip exec into it
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Server:
    client_ns: str
    server_ns: str
    host_key_line: str
    pkey: paramiko.PKey
    workdir: Path

    def guest(self, *, pkey: paramiko.PKey | None = None, host_key_line: str | None = None, port: int = PORT) -> GuestSSH:
        return GuestSSH(self.client_ns, SERVER_IP, pkey or self.pkey, host_key_line or self.host_key_line, port=port)


@pytest.fixture(scope="module")
def server(namespaces, tmp_path_factory):
    """dropbear on SERVER_IP:PORT in one namespace, reached over a veth from another."""
    work = tmp_path_factory.mktemp("ssh")
    client_ns, server_ns = namespaces(), namespaces()
    lb.create_veth(client_ns, "eth0", server_ns, "eth0")
    for ns, ip in ((client_ns, CLIENT_IP), (server_ns, SERVER_IP)):
        lb.add_address(ns, "eth0", f"{ip}/24")
        lb.set_link_up(ns, "eth0")

    home = work / "home"
    (home / ".ssh").mkdir(parents=True)
    home.chmod(0o700)
    pkey = _client_key(work / "id_ed25519")
    authorized = home / ".ssh" / "authorized_keys"
    authorized.write_text((work / "id_ed25519.pub").read_text())
    authorized.chmod(0o600)
    host_key_line = _dropbear_key(work / "host_key")

    proc = _start_dropbear(work, server_ns, PORT)
    try:
        yield Server(client_ns, server_ns, host_key_line, pkey, work)
    finally:
        _stop(proc)


@pytest.fixture
def guest(server):
    with server.guest() as ssh:
        ssh.connect(time.monotonic() + 15)  # the first test also waits here for dropbear to start
        yield ssh


# --- SSH -------------------------------------------------------------------


def test_run_collects_stdout_stderr_and_exit_code(guest):
    result = guest.run("echo hello; echo oops >&2; ip -br addr show eth0")
    assert isinstance(result, CommandResult)
    assert (result.exit_code, result.stderr) == (0, "oops\n")
    assert result.stdout.startswith("hello\n")
    assert SERVER_IP in result.stdout  # the command ran inside the server namespace


def test_failing_command(guest):
    assert guest.run("echo boom; exit 3", check=False).exit_code == 3
    with pytest.raises(SSHError) as err:
        guest.run("echo boom; echo bang >&2; exit 3")
    message = str(err.value)
    assert SERVER_IP in message and "exit 3" in message and "exited with 3" in message
    assert "boom" in message and "bang" in message


def test_stdin_transfers_a_file(guest, server):
    data = os.urandom(1 << 20)
    target = server.workdir / f"upload-{secrets.token_hex(4)}"
    guest.run(f"cat > {target}", stdin=data)
    assert target.read_bytes() == data
    assert guest.run(f"wc -c < {target}").stdout.strip() == str(len(data))


def test_large_stdin_echoed_back_does_not_deadlock(guest):
    data = secrets.token_hex(3 << 20).encode()  # 6 MiB, beyond the SSH windows both ways
    result = guest.run("cat", stdin=data, timeout=60)
    assert result.stdout.encode() == data


def test_hanging_command_times_out(guest):
    start = time.monotonic()
    with pytest.raises(SSHError, match="sleep 60.*did not finish within 2s"):
        guest.run("echo started; sleep 60", timeout=2)
    assert time.monotonic() - start < 5
    assert guest.run("echo still usable").stdout == "still usable\n"


def test_host_key_mismatch_is_refused_without_retry(server):
    other_key = _dropbear_key(server.workdir / f"other-{secrets.token_hex(4)}")
    start = time.monotonic()
    with server.guest(host_key_line=other_key) as ssh:
        with pytest.raises(SSHError, match="host key mismatch"):
            ssh.connect(time.monotonic() + 20)
    assert time.monotonic() - start < 5


def test_server_without_the_pinned_key_type_is_refused_without_retry(server):
    path = server.workdir / f"ecdsa-{secrets.token_hex(4)}"
    subprocess.run(["dropbearkey", "-t", "ecdsa", "-f", str(path)], capture_output=True, check=True)
    start = time.monotonic()
    with server.guest(host_key_line=_host_key_line(path)) as ssh:
        with pytest.raises(SSHError, match="host key mismatch"):
            ssh.connect(time.monotonic() + 20)
    assert time.monotonic() - start < 5


def test_unknown_client_key_is_refused_without_retry(server):
    start = time.monotonic()
    with server.guest(pkey=paramiko.RSAKey.generate(2048)) as ssh:
        with pytest.raises(SSHError, match="authentication failed"):
            ssh.connect(time.monotonic() + 20)
    assert time.monotonic() - start < 8


def test_connect_retries_until_the_server_is_up(server):
    port = PORT + 2
    start = time.monotonic()
    with server.guest(port=port) as ssh:
        started: list[subprocess.Popen] = []
        late = threading.Timer(1.0, lambda: started.append(_start_dropbear(server.workdir, server.server_ns, port)))
        late.start()
        try:
            ssh.connect(time.monotonic() + 15)
            assert ssh.run("echo up").stdout == "up\n"
        finally:
            late.cancel()
            late.join()
            for proc in started:
                _stop(proc)
    assert time.monotonic() - start >= 1.0


def test_nothing_listening_fails_by_the_deadline(server):
    start = time.monotonic()
    with server.guest(port=PORT + 1) as ssh:
        with pytest.raises(SSHError, match="cannot connect"):
            ssh.connect(time.monotonic() + 2)
    elapsed = time.monotonic() - start
    assert 2 <= elapsed < 4


def test_closed_connection_refuses_to_run(server, guest):
    guest.close()
    with pytest.raises(SSHError, match="not connected"):
        guest.run("true")
    guest.close()  # idempotent


def test_bad_arguments(server):
    with pytest.raises(SSHError, match="not a public host key"):
        server.guest(host_key_line="garbage")
    for host in ("guest.example", ""):
        with pytest.raises(SSHError, match="IP address"):
            GuestSSH(server.client_ns, host, server.pkey, server.host_key_line)


# --- capture ----------------------------------------------------------------


@pytest.fixture(scope="module")
def switched(namespaces):
    """A bridge in one namespace with two hosts, each in its own namespace, plugged in by veths."""
    sw, h1, h2 = namespaces(), namespaces(), namespaces()
    lb.create_bridge(sw, "br0", "02:00:5e:10:01:00")
    hosts = {}
    for i, host in enumerate((h1, h2), start=1):
        lb.create_veth(sw, f"p{i}", host, "eth0")
        lb.attach_to_bridge(sw, f"p{i}", "br0")
        lb.add_address(host, "eth0", f"10.231.21.{i}/24")
        lb.set_link_up(host, "eth0")
        mac = next(link["mac"] for link in lb.list_links(host) if link["name"] == "eth0")
        hosts[host] = (mac, f"10.231.21.{i}")
    return sw, hosts


def ping(ns: str, address: str, count: int) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", address],
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_capture_on_bridge_sees_arp_and_echo_pairs(switched, tmp_path):
    sw, hosts = switched
    (h1, (mac1, ip1)), (h2, (mac2, ip2)) = hosts.items()
    capture = Capture(sw, "br0", tmp_path / "out" / "br0.pcap")
    capture.start()
    try:
        ping(h1, ip2, 3)
        ping(h2, ip1, 3)
    finally:
        packets = capture.stop()

    counts = count_arp_icmp(packets, mac1, ip1, mac2, ip2)
    assert counts.arp_request >= 1 and counts.arp_reply >= 1
    assert (counts.icmp_echo_request, counts.icmp_echo_reply, counts.icmp_echo_pairs) == (6, 6, 6)
    assert all(ARP in p or IP in p for p in packets), "IPv6 (or other) noise in the capture"
    assert count_icmp_in_subnet(packets, "10.231.21.0/24") == 12
    assert count_udp(packets, ip1, ip2, 51820) == 0
    saved = rdpcap(str(tmp_path / "out" / "br0.pcap"))
    assert len(saved) == len(packets)
    assert count_arp_icmp(saved, mac1, ip1, mac2, ip2) == counts


def test_capture_counts_udp_from_a_namespaced_socket(switched, tmp_path):
    sw, hosts = switched
    (h1, (_, ip1)), (_, (_, ip2)) = hosts.items()
    sock = netns.run_in_namespace(h1, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    capture = Capture(sw, "br0", tmp_path / "udp.pcap")
    capture.start()
    try:
        with sock:
            sock.bind((ip1, 51820))
            for _ in range(3):
                sock.sendto(b"handshake", (ip2, 51820))
                time.sleep(0.05)
    finally:
        packets = capture.stop()
    assert count_udp(packets, ip1, ip2, 51820) == 3
    assert count_udp(packets, ip2, ip1, 51820) == 3
    assert count_udp(packets, ip1, ip2, 51821) == 0


def test_empty_capture_still_writes_a_pcap(switched, tmp_path):
    sw, _ = switched
    capture = Capture(sw, "br0", tmp_path / "empty.pcap")
    capture.start()
    assert capture.stop() == []
    assert len(rdpcap(str(tmp_path / "empty.pcap"))) == 0
    assert count_arp_icmp([], "02:00:00:00:00:01", "10.0.0.1", "02:00:00:00:00:02", "10.0.0.2") == TrafficCounts(
        0, 0, 0, 0, 0
    )


def test_capture_errors(switched, tmp_path):
    sw, _ = switched
    with pytest.raises(OSError, match="no-such-if"):
        Capture(sw, "no-such-if", tmp_path / "x.pcap").start()
    with pytest.raises(RuntimeError, match="not running"):
        Capture(sw, "br0", tmp_path / "x.pcap").stop()
    capture = Capture(sw, "br0", tmp_path / "x.pcap")
    capture.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            capture.start()
    finally:
        capture.stop()
