"""Multi-host planning, pure: which hypervisor runs what, the VXLAN ports and their forwarding
entries, the staged paths in a remote guest's domain XML, the per-host commands, the MTU policy."""

from __future__ import annotations

import pytest

from vnetlab.compose import load_scenario
from vnetlab.features.hypervisors import host_commands
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import make_plan, tap_prefix


def plan_of(name: str):
    return make_plan(load_scenario(SCENARIOS_DIR / f"{name}.yaml"), name)


def test_each_guest_runs_where_on_says_and_a_remote_one_boots_from_staged_files():
    plan = plan_of("two-hosts-ping")
    vm1, vm2 = plan.vms
    assert (vm1.host, vm1.uri) == (None, None)
    assert vm2.host == "hv2" and vm2.uri.startswith("qemu+ssh://root@192.0.2.2/system?keyfile=") and "&command=" in vm2.uri
    assert f"<initrd>/var/lib/vnetlab/hosted/two-hosts-ping.hv2/{vm2.boot.initrd.parent.name}.initrd</initrd>" in vm2.xml  # one per image there
    assert "<entry name='opt/vnetlab/secrets' file='/var/lib/vnetlab/hosted/two-hosts-ping.hv2/vm2/secrets.cpio'/>" in vm2.xml
    assert "<kernel>/var/lib/vnetlab/hosted/two-hosts-ping.hv2/vmlinux</kernel>" in vm2.xml
    assert "<log file='/var/lib/vnetlab/hosted/two-hosts-ping.hv2/vm2/console.log'" in vm2.xml
    assert f"<initrd>{vm1.boot.initrd}</initrd>" in vm1.xml and f"file='{vm1.secrets}'" in vm1.xml
    kinds = [r.kind for r in plan.resources]
    assert kinds.count("domain") == 2 and kinds.count("tap") == 2 and kinds.count("host-tap") == 2  # vm2's taps are on hv2


def test_every_stretched_bridge_gets_a_vxlan_port_per_hypervisor_with_peers_and_remote_macs():
    plan = plan_of("three-hosts-vxlan")
    part = plan.part("hypervisors")
    br0 = {t.host: t for t in part.tunnels if t.bridge == "br0"}
    assert set(br0) == {"hv1", "hv2", "hv3"}
    assert {t.vni for t in br0.values()} == {100001} and {t.device for t in br0.values()} == {f"{tap_prefix('three-hosts-vxlan')}x1"}
    assert br0["hv2"].local_ip == "192.0.2.2" and br0["hv2"].peers == ("192.0.2.1", "192.0.2.3")
    macs = {plan.vm(v).nics[0].mac: v for v in ("vm1", "vm2", "vm3")}
    assert sorted(macs[m] for m, _ in br0["hv2"].macs) == ["vm1", "vm3"]  # every guest not on hv2, towards its own hypervisor
    assert dict(br0["hv2"].macs)[plan.vm("vm3").nics[0].mac] == "192.0.2.3"
    assert {t.mtu for t in part.tunnels} == {1500} and part.underlay_mtu == 1550  # underlay-jumbo
    assert part.guest_mtu == {}


def test_guest_1450_lowers_the_guests_nics_on_stretched_bridges_not_the_underlay():
    part = plan_of("two-hosts-ping").part("hypervisors")
    assert {t.mtu for t in part.tunnels} == {1450} and part.underlay_mtu == 1500
    assert part.guest_mtu == {"vm1": ("eth0",), "vm2": ("eth0",)}


def test_a_remote_hypervisor_gets_only_the_bridges_its_guests_use_and_its_commands_say_so():
    plan = plan_of("two-hosts-ping")
    part = plan.part("hypervisors")
    hv2 = part.host("hv2")
    assert [b for b, _ in hv2.bridges] == ["vnl-mgmt", "br0"]
    commands = host_commands(part, hv2)
    vx1 = f"{tap_prefix('two-hosts-ping')}x1"
    assert commands[:2] == ["mkdir -p /var/lib/vnetlab/hosted && chmod 0711 /var/lib/vnetlab/hosted", "mkdir -m 0711 /var/lib/vnetlab/hosted/two-hosts-ping.hv2"]
    assert "ip netns add vnl-two-hosts-ping.hv2-lab" in commands
    assert f"ip link add {vx1} type vxlan id 100001 local 192.0.2.2 dev ul0 dstport 4789 nolearning" in commands
    assert f"bridge -n vnl-two-hosts-ping.hv2-lab fdb append 00:00:00:00:00:00 dev {vx1} dst 192.0.2.1" in commands


def test_the_plan_is_pure():
    assert plan_of("three-hosts-vxlan").resources == plan_of("three-hosts-vxlan").resources


def test_a_disk_guest_elsewhere_gets_an_overlay_made_there_over_a_staged_base(tmp_path):
    from vnetlab.features.hypervisors import guest_file_commands, guest_files, staged_images

    path = tmp_path / "lab.yaml"
    path.write_text(
        "name: elsewhere\ndescription: d\nhypervisors: {hv1: {}, hv2: {simulate: true}}\nbridges: [{name: br0, subnet: 10.1.1.0/24}]\n"
        "vms:\n  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}\n"
        "  - {name: vm2, on: hv2, image: debian, memory: 256, nics: [{bridge: br0, address: 10.1.1.3/24}]}\n"
    )
    plan = make_plan(load_scenario(path), "elsewhere")
    vm2 = plan.vm("vm2")
    folder = "/var/lib/vnetlab/hosted/elsewhere.hv2"
    base = f"{folder}/{vm2.boot.disk.parent.name}.qcow2"
    assert f"<source file='{folder}/vm2/disk.qcow2'/>" in vm2.xml and f"<source file='{base}'>" in vm2.xml
    assert guest_file_commands(vm2) == [f"qemu-img create -q -f qcow2 -F qcow2 -b {base} {folder}/vm2/disk.qcow2", f"chmod 0600 {folder}/vm2/disk.qcow2"]
    initramfs = f"{folder}/{vm2.boot.initrd.parent.name}.initrd"
    assert {str(p) for p in staged_images(plan, plan.part("hypervisors").host("hv2")).values()} == {f"{folder}/vmlinux", initramfs, base}
    assert [str(p) for p in guest_files(vm2).values()] == [f"{folder}/vm2/secrets.cpio"]


# -- issue 23: names that must differ between labs, the remote host's port and known_hosts, odd JSON


def test_the_folder_on_a_hypervisor_is_named_with_the_lab_instance(tmp_path):
    """Finding 2: two instances of one lab name (two controllers sharing a hypervisor, or one after
    a `down` that left its folder there) never share a folder."""
    from vnetlab.plan.planner import PlanOptions

    scenario = load_scenario(SCENARIOS_DIR / "two-hosts-ping.yaml")
    a, b = (make_plan(scenario, "lab", PlanOptions(instance=i)) for i in ("0a1b2c3d", "4e5f6a7b"))
    folder = "/var/lib/vnetlab/hosted/lab.hv2.0a1b2c3d"
    assert str(a.part("hypervisors").host("hv2").folder) == folder and f"<log file='{folder}/vm2/console.log'" in a.vm("vm2").xml
    assert a.part("hypervisors").host("hv2").folder != b.part("hypervisors").host("hv2").folder
    assert ("host-files", f"hv2:{folder}") in [(r.kind, r.name) for r in a.resources]
    assert make_plan(scenario, "lab", PlanOptions(instance="0a1b2c3d")) == a  # re-planned from the state: the same


def test_each_remote_tap_is_a_record_of_its_own():
    """Finding 2: a tap the hypervisor refuses is un-recorded alone, the VM's other taps stay."""
    plan = plan_of("two-hosts-ping")
    taps = [n.tap for n in plan.vm("vm2").all_nics]
    assert [(r.kind, r.name) for r in plan.resources if r.kind.startswith("host-tap")] == [("host-tap", f"hv2:{t}") for t in taps]


def test_vxlan_devices_are_named_per_lab_and_fit_the_kernel():
    """Finding 6: the devices live in a root namespace before they move (this machine's, a real
    host's): two labs at once must not share a name, and teardown must not remove another lab's."""
    def devices(lab: str) -> set[str]:
        return {t.device for t in make_plan(load_scenario(SCENARIOS_DIR / "three-hosts-vxlan.yaml"), lab).part("hypervisors").tunnels}

    a, b = devices("lab-a"), devices("lab-b")
    assert len(a) == 2 and not a & b
    assert all(len(d) <= 15 and d.startswith(tap_prefix("lab-a")) for d in a)


REAL = """\
name: real
description: d
hypervisors:
  hv1: {underlay: {address: 198.51.100.1, device: eth1}}
  hv2:
    uri: qemu+ssh://admin@198.51.100.2:2222/system?keyfile=/root/.ssh/vnetlab&no_tty=1
    underlay: {address: 198.51.100.2, device: eth1}
    host-key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOdDTuWm1eQ6U0l3QHwsyCv8xBFm5UjPJqM0ydkRyaZ0
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}
  - {name: vm2, on: hv2, nics: [{bridge: br0, address: 10.1.1.3/24}]}
"""


def test_a_real_hypervisor_is_reached_at_the_uris_user_and_port(tmp_path):
    """Finding 11: the URI's port (and user) in explain's "over SSH to" line and in how it is reached."""
    from vnetlab.tools.explain import explain

    path = tmp_path / "real.yaml"
    path.write_text(REAL)
    plan = make_plan(load_scenario(path), "real")
    hv2 = plan.part("hypervisors").host("hv2")
    assert (hv2.user, hv2.address, hv2.port) == ("admin", "198.51.100.2", 2222)
    assert "# over SSH to admin@198.51.100.2:2222; libvirt: qemu+ssh://admin@198.51.100.2:2222/system?" in explain(plan)
    kinds = {r.kind for r in plan.resources}
    assert "overlay-vxlan" in kinds and "sim-vxlan" not in kinds  # made in the root namespace, then moved


def _known_hosts_line(names: str, key) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}"


def test_known_hosts_lookup_reads_hashed_and_port_entries(tmp_path):
    """Finding 11: `ssh-keyscan -H` and a non-22 port write entries a plain name match misses."""
    import paramiko

    from vnetlab.features.hypervisors import HypervisorError, _known_host_key

    keys = [paramiko.Ed25519Key.from_private_key_file(str(k)) for k in _make_keys(tmp_path, 3)]
    hashed = paramiko.HostKeys.hash_host("198.51.100.2")
    path = tmp_path / "known_hosts"
    path.write_text("\n".join([
        _known_hosts_line(hashed, keys[0]),
        _known_hosts_line("[198.51.100.3]:2222", keys[1]),
        _known_hosts_line("other,198.51.100.4", keys[2]),
        "# a comment, and a line that is not a key:",
        "198.51.100.9 ssh-ed25519 not-base64!",
    ]) + "\n")
    assert _known_host_key("198.51.100.2", 22, path) == f"ssh-ed25519 {keys[0].get_base64()}"
    assert _known_host_key("198.51.100.3", 2222, path) == f"ssh-ed25519 {keys[1].get_base64()}"
    assert _known_host_key("198.51.100.4", 22, path) == f"ssh-ed25519 {keys[2].get_base64()}"
    with pytest.raises(HypervisorError, match=r"no host key for 198\.51\.100\.3: give"):
        _known_host_key("198.51.100.3", 22, path)
    with pytest.raises(HypervisorError, match=r"no host key for \[198\.51\.100\.2\]:2200: .*ssh-keyscan -p 2200"):
        _known_host_key("198.51.100.2", 2200, path)


def _make_keys(tmp_path, n: int) -> list:
    from vnetlab.backends.keys import generate_client_key

    out = []
    for i in range(n):
        path = tmp_path / f"key{i}"
        path.write_bytes(generate_client_key(f"k{i}").private_openssh)
        out.append(path)
    return out


@pytest.mark.parametrize("text", [
    "", "not json", "{\"ifname\": \"x\"}", "[null, 1, \"x\", []]", "[{\"flags\": [\"UP\"]}]", "[{\"ifname\": 7}]",
    "[{\"ifname\": \"br0\", \"flags\": \"UP\", \"addr_info\": [{\"family\": \"inet\"}, 3], \"linkinfo\": [1]}]",
    "[{\"ifname\": \"br0\", \"addr_info\": {\"family\": \"inet\"}, \"linkinfo\": {\"info_kind\": 5, \"info_data\": [1]}}]",
])
def test_parse_links_takes_what_it_can_of_odd_json(text):
    """Finding 11: the text comes from another machine; `vnetlab inspect` must not crash on it."""
    from vnetlab.backends.remote_host import parse_links

    links = parse_links(text)
    assert all(isinstance(name, str) and link["name"] == name for name, link in links.items())
    if "br0" in links:
        assert links["br0"]["addresses"] == [] and links["br0"]["kind"] is None and links["br0"]["state"] == "down"


def test_parse_links_reads_iproute2s_json():
    from vnetlab.backends.remote_host import parse_links

    text = '[{"ifname":"vx1","flags":["BROADCAST","UP"],"mtu":1450,"master":"br0","linkinfo":{"info_kind":"vxlan","info_data":{"id":100001}},"addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]'
    assert parse_links(text) == {"vx1": {"name": "vx1", "state": "up", "master": "br0", "addresses": ["10.0.0.1/24"], "kind": "vxlan", "vni": 100001, "mtu": 1450}}
