"""Where a Linux bridge runs, decided from the kernel probe's answers: on the host, or in a switch
guest (planned like any guest, its members joined to it by point-to-point links). No root, no VMs:
the plan, the commands made in the guest, their explain/graph/dump views, and the read-back parser."""

from __future__ import annotations

import pytest

from vnetlab.compose import load_scenario, parse_scenario
from vnetlab.features import switch_guest as sg
from vnetlab.features import vlan
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.dump import plan_data
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.run.state import LabState
from vnetlab.tools import explain as ex
from vnetlab.tools.graph import topology
from scenario_helpers import KERNEL, checks_appended

THIS_HOST = frozenset({"vxlan", "tbf", "stp", "mtu_9000"})  # what the probe finds on this machine's kernel
LAPTOP = THIS_HOST | {"vlan_filtering", "vlan", "netem"}

LAB = (SCENARIOS_DIR / "vlan-trunk.yaml").read_text()
PLAIN = """\
name: plain
bridges:
  - {name: br0, subnet: 10.1.1.0/24}
vms:
  - {name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}
  - {name: vm2, nics: [{bridge: br0, address: 10.1.1.3/24}]}
"""


def plan(text: str = LAB, kernel: frozenset[str] = THIS_HOST, lab: str = "sg"):
    return make_plan(parse_scenario(text, "lab.yaml"), lab, PlanOptions(kernel=KERNEL, host_kernel=kernel))


def test_without_vlan_filtering_the_bridge_runs_in_a_switch_guest_joined_by_point_to_point_links():
    p = plan()
    assert p.notes == ("bridge br0 runs in switch guest sw-br0: this host's kernel lacks bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)",)
    switch = p.vm("sw-br0")
    assert (switch.role, switch.memory, switch.image.kind, switch.domain) == ("switch", sg.SWITCH_MEMORY, "tiny", "vnl-sg-sw-br0")
    assert [(n.guest_name, n.bridge, n.cidr) for n in switch.nics] == [("p1", "sw0_p1", None), ("p2", "sw0_p2", None), ("p3", "sw0_p3", None)]
    assert "vnl.nics=" in switch.cmdline and ":p1," in switch.cmdline  # the guest names its ports by MAC, like any NIC
    members = [p.vm(name).nics[0] for name in ("vm1", "vm2", "vm3")]
    assert [(n.bridge, n.port_of) for n in members] == [("br0", "sw0_p1"), ("br0", "sw0_p2"), ("br0", "sw0_p3")]
    assert p.bridge("br0").guest == "sw-br0"
    kinds = [(r.kind, r.name) for r in p.resources]
    assert ("bridge", "br0") not in kinds and [n for k, n in kinds if k == "bridge"] == ["vnl-mgmt", "sw0_p1", "sw0_p2", "sw0_p3"]
    assert ("domain", "vnl-sg-sw-br0") in kinds
    macs = [n.mac for v in p.vms for n in v.all_nics] + [b.mac for b in p.bridges]
    assert len(set(macs)) == len(macs)
    assert [v.mgmt.ip for v in p.vms] == ["172.30.255.2", "172.30.255.3", "172.30.255.4", "172.30.255.5"]


def test_with_vlan_filtering_the_same_scenario_runs_on_the_host_and_its_kernel_tags():
    p = plan(kernel=LAPTOP)
    assert p.notes == () and [v.name for v in p.vms] == ["vm1", "vm2", "vm3"]
    assert p.bridge("br0").guest is None and all(n.attach is None for v in p.vms for n in v.nics)
    assert {vlan.tagger(p, port) for port in p.part("vlan").ports} == {"host"}
    section = next(s for s in ex.sections(p) if s.title.startswith("VLANs on the bridge ports"))
    tap1, tap3 = p.vm("vm1").nics[0].tap, p.vm("vm3").nics[0].tap
    assert "ip -n vnl-sg link set br0 type bridge vlan_filtering 1" in section.lines
    assert f"bridge -n vnl-sg vlan add dev {tap1} vid 10 pvid untagged    # vm1 eth0, access port of VLAN 10: untagged in the guest" in section.lines
    assert f"bridge -n vnl-sg vlan add dev {tap3} vid 20    # vm3 eth0, trunk of VLANs 10,20: tagged in the guest" in section.lines
    assert f"bridge -n vnl-sg vlan del dev {tap3} vid 1    # vm3 eth0, trunk of VLANs 10,20: tagged in the guest" in section.lines
    assert not any(s.title.startswith("Bridge br0 in switch guest") for s in ex.sections(p))


def test_in_guest_forces_a_switch_guest_and_in_host_refuses_a_kernel_without_the_feature():
    forced = plan(PLAIN.replace("{name: br0, subnet", "{name: br0, in: guest, subnet"), kernel=LAPTOP)
    assert forced.notes == ("bridge br0 runs in switch guest sw-br0: in: guest",)
    assert [s.ports for s in forced.part("switch-guest").switches][0][0].access is None
    assert plan(PLAIN.replace("{name: br0, subnet", "{name: br0, in: host, subnet"), kernel=frozenset()).vms[-1].name == "vm2"
    text = LAB.replace("  - name: br0\n", "  - name: br0\n    in: host\n")
    assert plan(text, kernel=LAPTOP).notes == ()
    with pytest.raises(sg.PlacementError, match=r"bridge 'br0' has in: host, but this host's kernel lacks bridge VLAN filtering \(CONFIG_BRIDGE_VLAN_FILTERING\)"):
        plan(text, kernel=THIS_HOST)


def test_an_automatic_switch_guest_refuses_at_plan_time_what_it_cannot_run_yet():
    text = checks_appended(LAB.split("checks:")[0], "capture: {bridge: br0, between: [vm1, vm3], expect: [vlan-tagged]}")
    assert plan(text, kernel=LAPTOP).part("switch-guest", None) is None  # on the host, a capture on the bridge is fine
    with pytest.raises(sg.PlacementError, match=r"bridge 'br0' must run in a switch guest \(this host's kernel lacks .*\), but: checks\[0\]: .*link: VM\.NIC"):
        plan(text)


def test_the_bridge_is_made_in_the_guest_with_each_ports_vlans():
    s = plan().part("switch-guest").switches[0]
    assert sg.bridge_commands(s) == [
        "modprobe bridge",
        "ip link add name br0 type bridge",
        "echo 1 > /sys/class/net/br0/bridge/vlan_filtering",
        "ip link set p1 master br0", "ip link set p1 up", "bridge vlan add dev p1 vid 10 pvid untagged", "bridge vlan del dev p1 vid 1",
        "ip link set p2 master br0", "ip link set p2 up", "bridge vlan add dev p2 vid 20 pvid untagged", "bridge vlan del dev p2 vid 1",
        "ip link set p3 master br0", "ip link set p3 up", "bridge vlan add dev p3 vid 10", "bridge vlan add dev p3 vid 20", "bridge vlan del dev p3 vid 1",
        "ip link set br0 up",
    ]
    stp = plan(PLAIN.replace("{name: br0, subnet", "{name: br0, in: guest, stp: true, subnet")).part("switch-guest").switches[0]
    assert "echo 1 > /sys/class/net/br0/bridge/stp_state" in sg.bridge_commands(stp) and not any("vlan" in c for c in sg.bridge_commands(stp))


def test_explain_graph_and_plan_dump_show_the_switch_guest():
    p = plan()
    section = next(s for s in ex.sections(p) if s.title == "Bridge br0 in switch guest sw-br0")
    assert section.stage == "configure"
    assert f"# sw0_p3: vm3 eth0's tap {p.vm('vm3').nics[0].tap} <-> sw-br0 p3" in section.lines
    assert "sw-br0$ bridge vlan add dev p3 vid 20" in section.lines
    bridges = next(s for s in ex.sections(p) if s.title.startswith("Bridges"))
    assert "# br0: runs inside switch guest sw-br0 (see its section below)" in bridges.lines
    assert not any(line.startswith("ip -n vnl-sg link add br0 ") for line in bridges.lines)
    topo = topology(p)
    assert [b.label[0] for b in topo.bridges] == ["vnl-mgmt", "br0"] and "in switch guest sw-br0" in topo.bridges[1].label
    assert "sw-br0" not in {n.label[0] for n in topo.nodes}
    data = plan_data(p)
    assert data["switch-guests"][0]["ports"][0] == {"port": "p1", "member": "vm1 eth0", "link": "sw0_p1"}
    assert next(b for b in data["bridges"] if b["name"] == "br0")["in_guest"] == "sw-br0"
    assert next(v for v in data["vms"] if v["name"] == "sw-br0")["role"] == "switch"


def test_the_lesson_scenario_goes_to_a_switch_guest_here_and_stays_on_the_host_elsewhere():
    scenario = load_scenario(SCENARIOS_DIR / "vlan-trunk.yaml")
    here = make_plan(scenario, "vlan-trunk", PlanOptions(kernel=KERNEL, host_kernel=THIS_HOST))
    there = make_plan(scenario, "vlan-trunk", PlanOptions(kernel=KERNEL, host_kernel=LAPTOP))
    assert [v.name for v in here.vms] == ["vm1", "vm2", "vm3", "sw-br0"] and [v.name for v in there.vms] == ["vm1", "vm2", "vm3"]
    assert [v.mgmt.mac for v in here.vms[:3]] == [v.mgmt.mac for v in there.vms]  # the scenario's guests are the same


def test_bridge_vlan_show_is_read_back_per_port():
    text = (
        "port              vlan-id  \n"
        "p1                10 PVID Egress Untagged\n"
        "p2                20 PVID Egress Untagged\n"
        "p3                10\n"
        "                  20\n"
        "br0               1 PVID Egress Untagged\n"
    )
    assert sg.parse_vlan_show(text) == {"p1": ["10 PVID Egress Untagged"], "p2": ["20 PVID Egress Untagged"], "p3": ["10", "20"], "br0": ["1 PVID Egress Untagged"]}
    s = plan().part("switch-guest").switches[0]
    assert [sg.want_vlans(port) for port in s.ports] == [["10 PVID Egress Untagged"], ["20 PVID Egress Untagged"], ["10", "20"]]


def test_the_state_keeps_the_probe_answers_the_plan_was_made_with(tmp_path):
    state = LabState("sg", "vlan-trunk", "/x.yaml", "vnl-sg", "qemu", "/k", 1, host_kernel=sorted(THIS_HOST))
    state.save(tmp_path)
    assert frozenset(LabState.load(tmp_path).host_kernel) == THIS_HOST
