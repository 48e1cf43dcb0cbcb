"""Boot the real guest image with raw qemu under TCG in a private network namespace, then SSH in.

This checks the image recipe on its own, without libvirt: the readiness marker, NIC renaming by
MAC, the management address, the pinned host key, and the tools later steps rely on.
"""

from __future__ import annotations

import base64
import ctypes
import io
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from vnetlab.backends.accel import choose_accel
from vnetlab.backends.image import GUEST_FAILED_MARKER, GUEST_READY_MARKER, GuestImage, console_says, ensure_image, kernel_cmdline, write_guest_secrets, SECRETS_FW_CFG
from vnetlab.backends.keys import generate_client_key, generate_host_key

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and the image cache"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86_64"),
]

CLONE_NEWNET = 0x40000000
HOST = "vm1"
MGMT_MAC, DATA_MAC = "52:54:00:4e:00:01", "52:54:00:4e:00:02"
NS_ADDRESS, GUEST_ADDRESS = "172.30.255.1", "172.30.255.11"
MARKER_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def image() -> GuestImage:
    started = time.monotonic()
    built = ensure_image()
    print(f"\nensure_image: {time.monotonic() - started:.2f} s (a cache hit after the first build)")
    return built


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"vnltest-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def connect_in_netns(netns: str, address: tuple[str, int], timeout: float) -> socket.socket:
    """A TCP connection made from inside `netns` (Python 3.11 has no os.setns; setns only moves
    the calling thread, so a helper thread does it and the socket stays in the namespace)."""
    outcome: dict[str, object] = {}

    def connect() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}") as namespace:
                if libc.setns(namespace.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            outcome["socket"] = socket.create_connection(address, timeout=timeout)
        except OSError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=connect)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["socket"]  # type: ignore[return-value]


def wait_for_marker(log: Path, qemu: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if console_says(text, GUEST_READY_MARKER, HOST) or console_says(text, GUEST_FAILED_MARKER, HOST):
            return text
        if qemu.poll() is not None:
            pytest.fail(f"qemu exited with status {qemu.returncode}; serial log:\n{text}")
        time.sleep(0.05)
    pytest.fail(f"no readiness marker within {timeout:g} s; serial log:\n{text}")


def run(client: paramiko.SSHClient, command: str) -> str:
    _stdin, stdout, stderr = client.exec_command(command, timeout=30)
    status = stdout.channel.recv_exit_status()
    output = stdout.read().decode()
    assert status == 0, f"{command!r} exited {status}: {output}{stderr.read().decode()}"
    return output


def test_guest_boots_and_accepts_pinned_ssh(image: GuestImage, netns: str, tmp_path: Path) -> None:
    host_key, client_key = generate_host_key(), generate_client_key("vnetlab-e2e")
    secrets = tmp_path / "secrets.cpio"
    write_guest_secrets(
        image,
        secrets,
        {
            "/etc/dropbear/dropbear_ed25519_host_key": (host_key.dropbear_blob, 0o600),
            "/root/.ssh/authorized_keys": (f"{client_key.public_line}\n".encode(), 0o600),
        },
    )
    # The data NIC asks for "eth0", the name the kernel first gives the management NIC.
    cmdline = kernel_cmdline(HOST, MGMT_MAC, f"{GUEST_ADDRESS}/24", [(DATA_MAC, "eth0")])
    for tap in ("vnltap0", "vnltap1"):
        subprocess.run(["ip", "-n", netns, "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    subprocess.run(["ip", "-n", netns, "addr", "add", f"{NS_ADDRESS}/24", "dev", "vnltap0"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "vnltap0", "up"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)

    log = tmp_path / "serial.log"
    command = [
        "ip", "netns", "exec", netns,  # execs qemu in place: the PID below is qemu's
        "qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot", "-m", "128",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline, "-serial", f"file:{log}",
        "-fw_cfg", f"name={SECRETS_FW_CFG},file={secrets}",
        "-netdev", "tap,id=mgmt,ifname=vnltap0,script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={MGMT_MAC}",
        "-netdev", "tap,id=data,ifname=vnltap1,script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=data,mac={DATA_MAC}",
    ]  # fmt: skip
    started = time.monotonic()
    qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        serial = wait_for_marker(log, qemu, MARKER_TIMEOUT)
        booted = time.monotonic()
        markers = [line for line in serial.splitlines() if "VNETLAB" in line]
        assert markers == [f"{GUEST_READY_MARKER} host={HOST}"], serial

        key_type, key_data = host_key.public_line.split()[:2]
        client = paramiko.SSHClient()
        client.get_host_keys().add(GUEST_ADDRESS, key_type, paramiko.Ed25519Key(data=base64.b64decode(key_data)))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        sock = connect_in_netns(netns, (GUEST_ADDRESS, 22), timeout=10)
        pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(client_key.private_openssh.decode()))
        client.connect(
            GUEST_ADDRESS, sock=sock, username="root", pkey=pkey,
            look_for_keys=False, allow_agent=False, timeout=20, auth_timeout=20,
        )  # fmt: skip
        connected = time.monotonic()
        with client:
            assert run(client, "hostname").strip() == HOST
            assert run(client, "cat /proc/cmdline").strip() == cmdline
            assert run(client, "cat /proc/1/comm").strip() == "init"
            links = run(client, "ip link")
            interfaces = dict(re.findall(r"^\d+: ([^:@]+): <([^>]*)>", links, re.M))
            assert set(interfaces) == {"lo", "mgmt0", "eth0"}, links
            assert "UP" in interfaces["mgmt0"].split(",") and "UP" not in interfaces["eth0"].split(","), links
            assert re.search(rf"mgmt0: .*\n\s+link/ether {MGMT_MAC}", links), links
            assert re.search(rf"eth0: .*\n\s+link/ether {DATA_MAC}", links), links
            assert f"inet {GUEST_ADDRESS}/24" in run(client, "ip addr show dev mgmt0")
            assert "inet " not in run(client, "ip addr show dev eth0")
            run(client, f"ping -c 1 -W 5 {NS_ADDRESS}")
            run(client, "modprobe wireguard && ip link add wg0 type wireguard && wg show wg0")
            assert "wireguard" in run(client, "lsmod")
            assert run(client, "wg --version").startswith("wireguard-tools")
            assert "iperf 3" in run(client, "iperf3 --version")
        print(f"\nTCG boot to readiness marker: {booted - started:.2f} s; marker to authenticated SSH: {connected - booted:.2f} s")
    finally:
        qemu.kill()
        qemu.wait()
        qemu.stderr.close()  # type: ignore[union-attr]


def test_a_guest_without_its_keys_says_so_at_once(image: GuestImage, tmp_path: Path) -> None:
    """No fw_cfg file with its keys (a raw boot, a template without it): one failure line naming
    what is missing, not a guest whose SSH never answers until the boot timeout."""
    log = tmp_path / "serial.log"
    command = [
        "qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot", "-m", "128",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-serial", f"file:{log}",
        "-append", kernel_cmdline(HOST, MGMT_MAC, f"{GUEST_ADDRESS}/24", []),
    ]  # fmt: skip
    qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        serial = wait_for_marker(log, qemu, MARKER_TIMEOUT)
        markers = [line for line in serial.splitlines() if "VNETLAB" in line]
        assert markers == [f"{GUEST_FAILED_MARKER} host={HOST} reason=no fw_cfg file {SECRETS_FW_CFG} (this guest's keys)"], serial
    finally:
        qemu.kill()
        qemu.wait()
        qemu.stderr.close()  # type: ignore[union-attr]


def test_auto_accel_probe_leaves_no_qemu(image: GuestImage, tmp_path: Path) -> None:
    choice = choose_accel("auto", image, cache_dir=tmp_path)
    print(f"\nchoose_accel('auto'): {choice}")
    assert choice.name in {"kvm", "tcg"} and choice.reason and "\n" not in choice.reason
    assert (choice.name, choice.domain_type) in {("kvm", "kvm"), ("tcg", "qemu")}
    if Path("/sys/module/kvm_pvm").exists():
        assert choice.name == "tcg" and "kvm_pvm" in choice.reason
    probes = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).startswith("qemu-system-x86_64\0-accel\0kvm")]
    assert not probes, "the KVM probe left a qemu process"
    assert "probed earlier" in choose_accel("auto", image, cache_dir=tmp_path).reason


def _cmdline(process: Path) -> str:
    try:
        return (process / "cmdline").read_text()
    except OSError:
        return ""
