"""Warm images (backends/warm_image.py): which guests share one (the key), the XML that boots one,
each restored guest's own XML, and the identity a restored guest reads, checked against the
guest's shell functions that read it (images/guest/lib/vnetlab/boot.sh)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vnetlab.backends.warm_image import (
    IDENTITY_SIZE, HostSide, WarmError, identity_archive, identity_words, restore_xml, warm_cmdline, warm_domain_xml, warm_key, warm_mac,
)
from vnetlab.paths import RECIPE_DIR

GOLDEN = Path(__file__).parent.parent / "golden"
VM1 = (GOLDEN / "two-vm-ping/qemu/vm1.xml").read_text()
VM2 = (GOLDEN / "two-vm-ping/qemu/vm2.xml").read_text()
DEBIAN = (GOLDEN / "debian-two-vm-ping/qemu/vm1.xml").read_text()
ROUTER = (GOLDEN / "static-routing/qemu/router.xml").read_text()
VERSIONS = "qemu 7.2.22, libvirt 9.0.0"
NS = "{https://vnetlab.dev/xmlns/lab/1}"

# What libvirt 9.0 saved of a warm tiny guest (its save image's header, from a real save).
SAVED = """<domain type='qemu'>
  <name>vnl-lab.warm0</name>
  <uuid>594e2998-cc13-4093-a4dc-1e6d10c41399</uuid>
  <genid>5d9e549a-4706-44db-a739-9d967e303e29</genid>
  <metadata xmlns:ns0="https://vnetlab.dev/xmlns/lab/1">
    <ns0:lab name="lab" warm-image="728beeae3188af6a"/>
  </metadata>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <resource>
    <partition>/machine</partition>
  </resource>
  <sysinfo type='fwcfg'>
    <entry name='opt/vnetlab/secrets' file='/var/lib/vnetlab/images/.warm-728beeae3188af6a.3c5sp675/identity.zero'/>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/var/lib/vnetlab/images/tiny-a6e8dab1dd504a42/vmlinux</kernel>
    <initrd>/var/lib/vnetlab/images/tiny-a6e8dab1dd504a42/initrd.img</initrd>
    <cmdline>console=ttyS0 loglevel=3 panic=-1 ipv6.disable=1 cryptomgr.notests no_timer_check vnl.warm</cmdline>
    <boot dev='hd'/>
  </os>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='none'/>
    <interface type='ethernet'>
      <mac address='52:54:00:ff:ff:00'/>
      <target dev='vnl86625e-w0' managed='no'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </interface>
    <interface type='ethernet'>
      <mac address='52:54:00:ff:ff:01'/>
      <target dev='vnl86625e-w1' managed='no'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <serial type='pty'>
      <log file='/var/lib/vnetlab/images/.warm-728beeae3188af6a.3c5sp675/console.log' append='off'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <log file='/var/lib/vnetlab/images/.warm-728beeae3188af6a.3c5sp675/console.log' append='off'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='virtio' freePageReporting='on'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </memballoon>
  </devices>
</domain>
"""

GUEST = HostSide(
    "vnl-two-vm-ping-vm1", ("vnla-0", "vnla-1"), ("52:54:00:28:70:2a", "52:54:00:76:cc:f4"), "/labs/x/guests/vm1/console.log",
    fw_cfg="/labs/x/guests/vm1/identity.tar",
)


def _without(root: ET.Element, *paths: str) -> str:
    """The XML with the elements at `paths` and every host-side attribute taken out (what must not change)."""
    for path in paths:
        parent_path, _, tag = path.rpartition("/")
        for parent in root.findall(parent_path) if parent_path else [root]:
            for child in parent.findall(tag):
                parent.remove(child)
    for element in root.iter():
        for attribute in ("file", "dev", "address"):
            if element.tag in ("entry", "log", "target", "mac") and attribute in element.attrib:
                element.set(attribute, "…")
        element.tail = (element.tail or "").strip() or None
        element.text = (element.text or "").strip() or None
    return ET.tostring(root, encoding="unicode")


def test_guests_of_one_shape_share_a_warm_image_and_any_guest_abi_difference_makes_another():
    key = warm_key(VM1, VERSIONS)
    assert key == warm_key(VM2, VERSIONS)  # other names, MACs, taps, files, addresses
    assert len(key) == 16
    assert warm_key(VM1.replace("<memory unit='MiB'>128</memory>", "<memory unit='MiB'>256</memory>"), VERSIONS) != key
    assert warm_key(VM1.replace("<vcpu>1</vcpu>", "<vcpu>2</vcpu>"), VERSIONS) != key
    assert warm_key(ROUTER, VERSIONS) != key  # three NICs
    assert warm_key(VM1, "qemu 9.2.0, libvirt 10.10.0") != key
    assert warm_key(VM1.replace("images/golden/initrd.img", "images/tiny-other/initrd.img"), VERSIONS) != key  # another image
    assert warm_key(VM1.replace("domain type='qemu'", "domain type='kvm'"), VERSIONS) != key


def test_a_disk_guests_warm_image_depends_on_its_base_disk_not_on_its_overlay():
    key = warm_key(DEBIAN, VERSIONS)
    assert key == warm_key(DEBIAN.replace("guests/vm1/disk.qcow2", "guests/vm2/disk.qcow2"), VERSIONS)
    assert key != warm_key(DEBIAN.replace("images/debian/root.qcow2", "images/debian-other/root.qcow2"), VERSIONS)


def test_a_guest_with_host_folders_has_no_warm_image():
    with_share = VM1.replace("<serial type='pty'>", "<filesystem type='mount' accessmode='mapped'><source dir='/srv'/><target dir='s'/></filesystem>\n    <serial type='pty'>")
    with pytest.raises(WarmError, match="filesystem devices is not restored"):
        warm_key(with_share, VERSIONS)


def test_the_warm_guest_boots_with_no_identity_and_a_vmgenid_device():
    host = HostSide("vnl-lab.warm0", ("vnla-w0", "vnla-w1"), (warm_mac(0), warm_mac(1)), "/cache/.b/console.log", fw_cfg="/cache/.b/identity.zero")
    metadata = "<metadata><vnetlab:lab xmlns:vnetlab='https://vnetlab.dev/xmlns/lab/1' name='lab' warm-image='k'/></metadata>"
    root = ET.fromstring(warm_domain_xml(VM1, host, metadata))
    assert root.findtext("name") == "vnl-lab.warm0"
    assert root.find("genid") is not None and not root.findtext("genid")
    assert root.find("title") is None
    assert root.find(f"metadata/{NS}lab").attrib == {"name": "lab", "warm-image": "k"}
    assert root.findtext("os/cmdline") == "console=ttyS0 loglevel=3 panic=-1 ipv6.disable=1 cryptomgr.notests no_timer_check vnl.warm"
    assert [(i.find("mac").get("address"), i.find("target").get("dev")) for i in root.iter("interface")] == [
        ("52:54:00:ff:ff:00", "vnla-w0"), ("52:54:00:ff:ff:01", "vnla-w1")]
    assert root.find("sysinfo/entry").get("file") == "/cache/.b/identity.zero"
    assert root.find("devices/serial/log").get("file") == "/cache/.b/console.log"
    assert _without(root, "name", "genid", "metadata", "os/cmdline") == _without(ET.fromstring(VM1), "name", "title", "metadata", "os/cmdline")


def test_a_restored_guest_has_the_warm_images_abi_and_its_own_identity_and_host_side_parts():
    xml = restore_xml(SAVED, VM1, GUEST, uuid="11111111-2222-3333-4444-555555555555", warm_image="728beeae3188af6a")
    root = ET.fromstring(xml)
    assert root.findtext("name") == "vnl-two-vm-ping-vm1"
    assert root.findtext("uuid") == "11111111-2222-3333-4444-555555555555"
    assert root.find("genid") is not None and not root.findtext("genid")  # libvirt makes a new one for the restore
    assert root.findtext("title") == "vnetlab two-vm-ping: vm1"
    assert root.find(f"metadata/{NS}lab").attrib == {
        "name": "two-vm-ping", "scenario": "two-vm-ping", "vm": "vm1", "namespace": "vnl-two-vm-ping", "warm-image": "728beeae3188af6a"}
    assert [(i.find("mac").get("address"), i.find("target").get("dev")) for i in root.iter("interface")] == [
        ("52:54:00:28:70:2a", "vnla-0"), ("52:54:00:76:cc:f4", "vnla-1")]
    assert [log.get("file") for log in root.iter("log")] == ["/labs/x/guests/vm1/console.log"] * 2
    assert root.find("sysinfo/entry").get("file") == "/labs/x/guests/vm1/identity.tar"
    # everything else is libvirt's saved XML as it was: addresses, machine, CPU, the warm command line
    assert _without(root, "name", "uuid", "genid", "title", "metadata") == _without(ET.fromstring(SAVED), "name", "uuid", "genid", "metadata")


def test_a_guest_unlike_the_warm_image_is_refused():
    with pytest.raises(WarmError, match="the warm image has 2 NIC\\(s\\), the guest 3"):
        restore_xml(SAVED, ROUTER, GUEST)
    with pytest.raises(WarmError, match="NIC model virtio is not the guest's e1000"):
        restore_xml(SAVED, VM1.replace("<model type='virtio'/>", "<model type='e1000'/>"), GUEST)
    with pytest.raises(WarmError, match="2 NIC\\(s\\) in the XML, 1 tap"):
        restore_xml(SAVED, VM1, HostSide("x", ("t0",), ("52:54:00:00:00:01",), "/c", fw_cfg="/f"))


def test_a_restored_disk_guest_writes_its_own_overlay_on_the_warm_disk():
    warm = HostSide("vnl-lab.warm0", ("w0", "w1"), (warm_mac(0), warm_mac(1)), "/c", fw_cfg="/z", disk="/cache/.b/disk.qcow2", backing=("/images/debian/root.qcow2",))
    saved = warm_domain_xml(DEBIAN, warm)
    guest = HostSide("vnl-d-vm1", ("t0", "t1"), ("52:54:00:00:00:01", "52:54:00:00:00:02"), "/c1", fw_cfg="/f1",
                     disk="/labs/d/guests/vm1/disk.qcow2", backing=("/cache/warm-k/disk.qcow2", "/images/debian/root.qcow2"))
    disk = ET.fromstring(restore_xml(saved, DEBIAN, guest)).find("devices/disk")
    assert disk.find("source").get("file") == "/labs/d/guests/vm1/disk.qcow2"
    chain, store = [], disk.find("backingStore")
    while store is not None and store.find("source") is not None:
        assert store.find("format").get("type") == "qcow2"
        assert store.find("source/seclabel").attrib == {"model": "dac", "relabel": "no"}  # shared, read only: never relabelled
        chain.append(store.find("source").get("file"))
        store = store.find("backingStore")
    assert chain == ["/cache/warm-k/disk.qcow2", "/images/debian/root.qcow2"]
    assert store is not None and len(store) == 0  # the chain ends there
    assert disk.find("target").get("dev") == "vda"


def test_the_warm_command_line_drops_the_identity_and_keeps_the_rest():
    assert warm_cmdline("console=ttyS0 rdinit=/sbin/vnl-root vnl.host=vm1 vnl.mgmt=52:54:00:00:00:01,10.0.0.2/24") == "console=ttyS0 rdinit=/sbin/vnl-root vnl.warm"
    assert warm_cmdline("") == ""  # a guest booted by its own bootloader has none


# The shells that run boot.sh: busybox's ash in the initramfs (tiny guests, and every booted
# guest's first steps), bash on the debian disk (a restored debian guest's identity steps).
SHELLS = {"busybox ash": ["busybox", "sh", "-c"], "bash": ["bash", "-c"]}


def _shell(script: str, shell: str = "busybox ash") -> str:
    if shutil.which(SHELLS[shell][0]) is None:
        pytest.skip(f"{SHELLS[shell][0]} is not installed on this host")
    # In a network namespace of its own when root: the guest's init renames and re-addresses NICs, and
    # a real `ip` reached by mistake (the fake is a shell function) must never touch the host's. Once,
    # during warm start's development, the host's eth0 became vnltmp0 with a guest's MAC.
    isolated = ["unshare", "--net"] if os.geteuid() == 0 and shutil.which("unshare") else []
    return subprocess.run([*isolated, *SHELLS[shell], script], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("shell", SHELLS)
def test_the_identity_words_are_what_the_guests_init_reads(tmp_path, shell):
    words = identity_words("vm1", "52:54:00:28:70:2A", "172.30.255.2/24", [("52:54:00:76:cc:f4", "eth0"), ("52:54:00:76:cc:f5", "lan1")])
    assert words == ("vnl.host=vm1 vnl.mgmt=52:54:00:28:70:2a,172.30.255.2/24 vnl.nics=52:54:00:76:cc:f4:eth0,52:54:00:76:cc:f5:lan1 "
                     "vnl.macs=52:54:00:ff:ff:00>52:54:00:28:70:2a,52:54:00:ff:ff:01>52:54:00:76:cc:f4,52:54:00:ff:ff:02>52:54:00:76:cc:f5\n")
    identity = tmp_path / "identity"
    identity.write_text(words)
    read = _shell(f". {RECIPE_DIR / 'guest/lib/vnetlab/boot.sh'}; read_command_line {identity}; echo \"$host|$mgmt|$nics|$macs\"", shell)
    assert read.strip() == ("vm1|52:54:00:28:70:2a,172.30.255.2/24|52:54:00:76:cc:f4:eth0 52:54:00:76:cc:f5:lan1|"
                            "52:54:00:ff:ff:00>52:54:00:28:70:2a 52:54:00:ff:ff:01>52:54:00:76:cc:f4 52:54:00:ff:ff:02>52:54:00:76:cc:f5")
    with pytest.raises(ValueError, match="invalid guest hostname"):
        identity_words("vm 1; reboot", "52:54:00:28:70:2a", "172.30.255.2/24", [])


FILES = {"/root/.ssh/authorized_keys": (b"ssh-ed25519 AAAA lab\n", 0o600), "/etc/vnetlab/identity": (b"vnl.host=vm1\n", 0o644)}
FOLDERS = {"/root/.ssh": 0o700, "/etc/vnetlab": 0o755}


def test_the_identity_archive_has_the_fixed_size_and_its_files_owned_by_root():
    data = identity_archive(FILES, FOLDERS)
    assert len(data) == IDENTITY_SIZE
    assert data[:1] != b"\0"  # the warm guest waits for its first byte to be something
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {m.name: (m.mode, m.uid, m.gid, m.isdir()) for m in archive.getmembers()}
        assert archive.extractfile("etc/vnetlab/identity").read() == b"vnl.host=vm1\n"
    assert members == {"root/.ssh": (0o700, 0, 0, True), "etc/vnetlab": (0o755, 0, 0, True),
                       "root/.ssh/authorized_keys": (0o600, 0, 0, False), "etc/vnetlab/identity": (0o644, 0, 0, False)}
    with pytest.raises(WarmError, match="more than the 8192 of its fw_cfg file"):
        identity_archive({"/big": (b"x" * IDENTITY_SIZE, 0o600)})
    with pytest.raises(ValueError, match="invalid path inside the guest"):
        identity_archive({"/etc/../../x": (b"", 0o600)})


@pytest.mark.parametrize("tar", [["busybox", "tar"], ["tar"]], ids=["busybox (tiny guest)", "GNU tar (debian guest)"])
def test_both_guests_tars_unpack_the_identity_silently(tmp_path, tar):
    if shutil.which(tar[0]) is None:
        pytest.skip(f"{tar[0]} is not installed on this host")
    archive = tmp_path / "raw"
    archive.write_bytes(identity_archive(FILES, FOLDERS))
    root = tmp_path / "root"
    root.mkdir()
    done = subprocess.run([*tar, "-x", "-C", str(root), "-f", str(archive)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert (root / "root/.ssh/authorized_keys").read_bytes() == b"ssh-ed25519 AAAA lab\n"
    assert (root / "root/.ssh").stat().st_mode & 0o777 == 0o700


def _nics(tmp_path: Path, macs: dict[str, str]) -> Path:
    net = tmp_path / "net"
    for name, mac in macs.items():
        (net / name).mkdir(parents=True)
        (net / name / "address").write_text(mac + "\n")
    return net


# ip as a shell function (busybox's ash runs its own applets before anything on PATH): logs its commands.
FAKE_IP = 'ip() { if [ "$1" = -batch ]; then cat >> "$IP_LOG"; else echo "$*" >> "$IP_LOG"; fi; }; '


@pytest.mark.parametrize("shell, batch", [("busybox ash", False), ("bash", True)], ids=["tiny: busybox ip, one by one", "debian: iproute2's ip -batch"])
def test_a_restored_guest_gives_each_nic_its_own_mac_before_naming_it_and_bringing_mgmt0_up(tmp_path, shell, batch):
    """boot.sh's name_nics, with the identity a restored guest reads: the warm image's NICs (found by
    the warm MACs) take the guest's MACs and names in the commands that rename them; a booted guest's
    NICs are only renamed."""
    net = _nics(tmp_path, {"eth0": warm_mac(0), "eth1": warm_mac(1), "eth2": warm_mac(2)})
    identity = tmp_path / "identity"
    identity.write_text(identity_words("r1", "52:54:00:00:00:0a", "10.0.0.2/24", [("52:54:00:00:00:0b", "eth0"), ("52:54:00:00:00:0c", "lan")]))
    log = tmp_path / "ip.log"
    _shell(
        f"export IP_LOG={log}; . {RECIPE_DIR / 'guest/lib/vnetlab/boot.sh'}; {FAKE_IP}sys_net={net}; "
        f"{'ip_batch=yes; ' if batch else ''}read_command_line {identity}; name_nics",
        shell,
    )
    assert log.read_text().splitlines() == [
        "link set dev eth0 address 52:54:00:00:00:0a name vnltmp0",
        "link set dev eth1 address 52:54:00:00:00:0b name vnltmp1",
        "link set dev eth2 address 52:54:00:00:00:0c name vnltmp2",
        "link set dev vnltmp0 name mgmt0",
        "link set dev vnltmp1 name eth0",
        "link set dev vnltmp2 name lan",
        "link set lo up",
        "addr add 10.0.0.2/24 dev mgmt0",
        "link set mgmt0 up",
    ]


def test_a_booted_guests_nics_are_only_renamed(tmp_path):
    net = _nics(tmp_path, {"eth0": "52:54:00:00:00:0b", "eth1": "52:54:00:00:00:0a"})
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 vnl.host=vm1 vnl.mgmt=52:54:00:00:00:0a,10.0.0.2/24 vnl.nics=52:54:00:00:00:0b:eth0\n")
    log = tmp_path / "ip.log"
    _shell(f"export IP_LOG={log}; . {RECIPE_DIR / 'guest/lib/vnetlab/boot.sh'}; {FAKE_IP}sys_net={net}; read_command_line {cmdline}; name_nics")
    assert log.read_text().splitlines() == [
        "link set dev eth1 name vnltmp0", "link set dev eth0 name vnltmp1", "link set dev vnltmp0 name mgmt0", "link set dev vnltmp1 name eth0",
        "link set lo up", "addr add 10.0.0.2/24 dev mgmt0", "link set mgmt0 up",
    ]


def test_a_restored_guests_lo_is_not_brought_up_again(tmp_path):
    """The warm guest brought lo up before its save (IFF_UP in its flags): one exec fewer after each restore."""
    net = _nics(tmp_path, {"eth0": "52:54:00:00:00:0a"})
    (net / "lo").mkdir()
    (net / "lo" / "flags").write_text("0x9\n")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("vnl.host=vm1 vnl.mgmt=52:54:00:00:00:0a,10.0.0.2/24\n")
    log = tmp_path / "ip.log"
    _shell(f"export IP_LOG={log}; . {RECIPE_DIR / 'guest/lib/vnetlab/boot.sh'}; {FAKE_IP}sys_net={net}; read_command_line {cmdline}; name_nics")
    assert log.read_text().splitlines() == ["link set dev eth0 name vnltmp0", "link set dev vnltmp0 name mgmt0", "addr add 10.0.0.2/24 dev mgmt0", "link set mgmt0 up"]


TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


@pytest.mark.parametrize(
    "sockets, listens",
    [
        (["   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1"], True),
        (["   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
          "   1: 0A00000F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1"], True),
        (["   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1"], False),  # port 2222
        (["   0: 0A00000F:0016 0A000001:C350 06 00000000:00000000 00:00000000 00000000     0        0 0 1"], False),  # port 22, TIME_WAIT
        (["   0: 0A000001:0016 0A00000F:0016 01 00000000:00000000 00:00000000 00000000     0        0 0 1"], False),  # established, not listening
        ([], False),
    ],
    ids=["listening", "listening on an address", "another port", "time-wait", "established", "no socket"],
)
@pytest.mark.parametrize("shell", ["busybox ash", "bash"])
def test_sshd_listens_reads_proc_net_tcp_for_a_listening_port_22(tmp_path, sockets, listens, shell):
    tcp = tmp_path / "tcp"
    tcp.write_text(TCP_HEADER + "".join(line + "\n" for line in sockets))
    out = _shell(f". {RECIPE_DIR / 'guest/lib/vnetlab/boot.sh'}; proc_net_tcp={tcp}; if sshd_listens; then echo yes; else echo no; fi", shell)
    assert out.strip() == ("yes" if listens else "no")
