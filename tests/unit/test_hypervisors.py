"""Multi-host planning, pure: which hypervisor runs what, the VXLAN ports and their forwarding
entries, the staged paths in a remote guest's domain XML, the per-host commands, the MTU policy."""

from __future__ import annotations

from vnetlab.compose import load_scenario
from vnetlab.features.hypervisors import host_commands
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.planner import make_plan


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
    assert kinds.count("domain") == 2 and kinds.count("tap") == 2 and kinds.count("host-taps") == 1  # vm2's taps are on hv2


def test_every_stretched_bridge_gets_a_vxlan_port_per_hypervisor_with_peers_and_remote_macs():
    plan = plan_of("three-hosts-vxlan")
    part = plan.part("hypervisors")
    br0 = {t.host: t for t in part.tunnels if t.bridge == "br0"}
    assert set(br0) == {"hv1", "hv2", "hv3"}
    assert {t.vni for t in br0.values()} == {100001} and {t.device for t in br0.values()} == {"vnl-vx1"}
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
    assert commands[0] == "mkdir -p /var/lib/vnetlab/hosted/two-hosts-ping.hv2"
    assert "ip netns add vnl-two-hosts-ping.hv2-lab" in commands
    assert "ip link add vnl-vx1 type vxlan id 100001 local 192.0.2.2 dev ul0 dstport 4789 nolearning" in commands
    assert "bridge -n vnl-two-hosts-ping.hv2-lab fdb append 00:00:00:00:00:00 dev vnl-vx1 dst 192.0.2.1" in commands


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
