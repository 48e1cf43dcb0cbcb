"""The vlan feature without guests: the model (list forms, id range at load time), its rules, how
pings find a trunk's addresses, its plan part and YAML, `--explain`, the graph labels, the guest
script, the inspect rows with a stand-in OVS, and the vlan-tagged judge on synthetic frames."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vnetlab.checks.base import CaptureSubject
from vnetlab.compose import load_scenario
from vnetlab.features import vlan
from vnetlab.model.validate import route_to
from vnetlab.paths import SCENARIOS_DIR
from vnetlab.plan.dump import plan_data
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.tools import explain as ex
from vnetlab.tools.graph import topology
from scenario_helpers import checks_appended, problems
from scenario_helpers import plan_of as plan_in

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")

BASE = """\
name: vlan-lab
bridges:
  - name: br0
    type: ovs
    vlans:
      - {vlan: 10, subnet: 10.0.10.0/24}
      - {vlan: 20, subnet: 10.0.20.0/24}
vms:
  - name: vm1
    nics: [{bridge: br0, vlan: 10, address: 10.0.10.2/24}]
  - name: vm2
    nics: [{bridge: br0, vlan: 20, address: 10.0.20.3/24}]
  - name: vm3
    nics: [{bridge: br0, trunk: [{vlan: 10, address: 10.0.10.5/24}, {vlan: 20, address: 10.0.20.5/24}]}]
"""


def plan_of(text: str = BASE, lab: str = "v-lab"):
    return plan_in(text, lab)


# -- the model and its rules ---------------------------------------------------------------------


def test_vlan_ids_outside_1_to_4094_are_refused_while_loading_with_their_line():
    for bad in ("0", "4095", "5000"):
        found = problems(BASE.replace("vlan: 10, address: 10.0.10.2/24", f"vlan: {bad}, address: 10.0.10.2/24"))
        assert len(found) == 1 and found[0].startswith("lab.yaml:10: vms[0].nics[0].vlan:"), found
    found = problems(BASE.replace("{vlan: 20, subnet", "{vlan: 0, subnet"))
    assert len(found) == 1 and found[0].startswith("lab.yaml:7: bridges[0].vlans[1].vlan:"), found
    assert problems(BASE.replace("vlan: 10, address: 10.0.10.2/24", "vlan: 4094, address: 10.0.10.2/24")) == [
        "lab.yaml:10: vms[0].nics[0].vlan: VLAN 4094 is not one of bridge 'br0''s vlans (10, 20)"
    ]


MAPPED = BASE.replace(
    "    vlans:\n      - {vlan: 10, subnet: 10.0.10.0/24}\n      - {vlan: 20, subnet: 10.0.20.0/24}\n", "    vlans: {10: 10.0.10.0/24, 20: 10.0.20.0/24}\n"
).replace("trunk: [{vlan: 10, address: 10.0.10.5/24}, {vlan: 20, address: 10.0.20.5/24}]", "trunk: {10: 10.0.10.5/24, 20: 10.0.20.5/24}")


def test_vlans_and_trunks_take_the_mapping_form_too_and_mean_the_same():
    assert MAPPED != BASE and problems(MAPPED) == []
    assert plan_data(plan_of(MAPPED)) == plan_data(plan_of(BASE))
    unaddressed = MAPPED.replace("trunk: {10: 10.0.10.5/24, 20: 10.0.20.5/24}", "trunk: {10: 10.0.10.5/24, 20: null}")
    assert [t.address for t in load_scenario_text(unaddressed).vms[2].nics[0].trunk] == ["10.0.10.5/24", None]


def test_a_mapping_forms_problems_have_the_line_of_their_entry():
    bad = MAPPED.replace("vlans: {10: 10.0.10.0/24, 20: 10.0.20.0/24}", "vlans:\n      10: 10.0.10.0/24\n      twenty: 10.0.20.0/24")
    assert problems(bad) == ["lab.yaml:7: bridges[0].vlans[1].vlan: expected an integer, got 'twenty'"]
    outside = MAPPED.replace("20: 10.0.20.5/24}", "20: 10.0.21.5/24}")
    assert problems(outside) == ["lab.yaml:12: vms[2].nics[0].trunk[1].address: 10.0.21.5/24 is not in subnet 10.0.20.0/24 of VLAN 20 on bridge 'br0'"]


def load_scenario_text(text: str):
    from vnetlab.compose import parse_scenario

    return parse_scenario(text, "lab.yaml")


def test_the_base_lab_loads_on_ovs_and_on_a_linux_bridge():
    assert problems(BASE) == []
    assert problems(BASE.replace("    type: ovs\n", "")) == []  # the host kernel's VLAN filtering, or a switch guest's


def test_an_access_address_outside_its_vlan_and_a_trunk_vlan_the_bridge_lacks_are_refused_at_their_lines():
    text = BASE.replace("vlan: 10, address: 10.0.10.2/24", "vlan: 10, address: 10.0.20.2/24").replace("{vlan: 20, address: 10.0.20.5/24}", "{vlan: 30, address: 10.0.30.5/24}")
    assert problems(text) == [
        "lab.yaml:10: vms[0].nics[0].address: 10.0.20.2/24 is not in subnet 10.0.10.0/24 of VLAN 10 on bridge 'br0'",
        "lab.yaml:14: vms[2].nics[0].trunk[1].vlan: VLAN 30 is not one of bridge 'br0''s vlans (10, 20)",
    ]


# -- how the rest of vnetlab reaches VLAN addresses ------------------------------------------------


def test_pings_reach_the_trunks_address_on_the_vlan_they_share_and_none_across_vlans():
    scenario = plan_of().scenario
    assert str(route_to(scenario, "vm1", "vm3")) == "10.0.10.5/24"
    assert str(route_to(scenario, "vm2", "vm3")) == "10.0.20.5/24"
    assert str(route_to(scenario, "vm3", "vm2")) == "10.0.20.3/24"
    assert route_to(scenario, "vm1", "vm2") is None
    assert vlan.shared_vlans(scenario, "br0", "vm1", "vm3") == {10} and vlan.shared_vlans(scenario, "br0", "vm1", "vm2") == set()
    assert problems(checks_appended(BASE, "ping: {from: vm1, to: vm3}", "ping: {from: vm3, to: vm2}")) == []
    assert problems(checks_appended(BASE, "ping: {from: vm1, to: vm2}")) == ["lab.yaml:16: checks[0].ping.to: 'vm1' and 'vm2' have no addressed NICs on a common subnet"]


def test_trunk_addresses_are_claimed_like_any_other():
    text = BASE.replace("{vlan: 10, address: 10.0.10.5/24}", "{vlan: 10, address: 10.0.10.2/24}")
    assert problems(text) == ["lab.yaml:14: vms[2].nics[0].trunk[0].address: 10.0.10.2 is already used by vm1 eth0"]


# -- plan, YAML, explain, graph --------------------------------------------------------------------


def test_the_plan_sets_tag_or_trunks_per_port_and_a_sub_interface_per_trunk_vlan():
    plan = plan_of()
    part = plan.part("vlan")
    taps = [vm.nics[0].tap for vm in plan.vms]
    assert [(p.vm, p.tap, p.tag, p.trunks) for p in part.ports] == [("vm1", taps[0], 10, ()), ("vm2", taps[1], 20, ()), ("vm3", taps[2], None, (10, 20))]
    assert [(s.vm, s.name, s.cidr) for s in part.subs] == [("vm3", "eth0.10", "10.0.10.5/24"), ("vm3", "eth0.20", "10.0.20.5/24")]
    assert plan.vm("vm3").nics[0].cidr is None  # the trunk's own NIC stays unaddressed
    dumped = plan_data(plan)["vlans"]
    assert dumped["ports"][2] == {"vm": "vm3", "nic": "eth0", "port": taps[2], "bridge": "br0", "trunks": [10, 20]}
    assert dumped["sub-interfaces"][1] == {"vm": "vm3", "name": "eth0.20", "vlan": 20, "address": "10.0.20.5/24"}
    assert vlan.Vlan().configure_label(plan) == "VLANs: vm1 eth0 vlan 10, vm2 eth0 vlan 20, vm3 eth0 trunk 10,20"


def test_a_lab_without_vlans_plans_and_configures_nothing():
    plan = plan_in("name: plain\nbridges: [{name: br0, subnet: 10.1.1.0/24}]\nvms: [{name: vm1, nics: [{bridge: br0, address: 10.1.1.2/24}]}]\n", "v-plain")
    assert plan.part("vlan", None) is None and vlan.Vlan().configure_label(plan) is None
    assert vlan.explain_sections(plan) == [] and vlan.inspect_rows(plan) == [] and "vlans" not in plan_data(plan)


def test_explain_shows_ovs_vsctl_per_port_then_the_guest_commands():
    plan = plan_of()
    sections = {s.title: s for s in ex.sections(plan)}
    ports = sections["VLANs on the OVS ports"]
    assert ports.stage == "configure"
    db = f"--db=unix:{plan.lab_dir}/ovs/db.sock"
    tap3 = plan.vm("vm3").nics[0].tap
    assert ports.lines[3] == f"ovs-vsctl {db} --timeout=10 set port {tap3} trunks=10,20    # vm3 eth0, trunk of VLANs 10,20: tagged in the guest"
    assert "tag=10    # vm1 eth0, access port of VLAN 10: untagged in the guest" in ports.lines[1]
    assert sections["802.1Q sub-interfaces in the guests"].lines == (
        "vm3$ modprobe 8021q",
        "vm3$ ip link add link eth0 name eth0.10 type vlan id 10",
        "vm3$ ip addr add 10.0.10.5/24 dev eth0.10",
        "vm3$ ip link set eth0.10 up",
        "vm3$ ip link add link eth0 name eth0.20 type vlan id 20",
        "vm3$ ip addr add 10.0.20.5/24 dev eth0.20",
        "vm3$ ip link set eth0.20 up",
    )


def test_the_graph_labels_each_vlan_nic_with_its_vlans():
    topo = topology(plan_of())
    labels = {e.a: e.label for e in topo.edges if e.label and e.label[0].startswith("eth0")}
    assert labels["vm_vm1"][-1] == "vlan 10"
    assert labels["vm_vm3"][-3:] == ["trunk 10,20", "eth0.10 10.0.10.5/24", "eth0.20 10.0.20.5/24"]


def test_the_guest_script_loads_8021q_and_finds_the_nic_by_mac():
    plan = plan_of()
    script = vlan.guest_script(list(plan.part("vlan").subs))
    assert script.startswith("modprobe 8021q")
    assert f"mac={plan.vm('vm3').nics[0].mac};" in script and '[ -e "$d/device" ]' in script
    assert 'ip link add link "$dev" name "$dev".10 type vlan id 10 || exit 1' in script
    assert 'ip addr add 10.0.20.5/24 dev "$dev".20 || exit 1' in script


def test_inspect_reads_tag_and_trunks_back_from_the_labs_ovs(monkeypatch):
    plan = plan_of()
    taps = [vm.nics[0].tap for vm in plan.vms]
    live = {taps[0]: ("10", "[]"), taps[1]: ("30", "[]"), taps[2]: ("[]", "[10, 20]")}
    monkeypatch.setattr(vlan, "namespace_exists", lambda ns: True)
    monkeypatch.setattr(vlan.ovs, "ovs_dir", lambda lab_dir: Path("/"))
    monkeypatch.setattr(vlan, "read_ports", lambda plan, names: {n: live[n] for n in names})
    rows = vlan.inspect_rows(plan)
    assert [(r.planned, r.state, r.problems) for r in rows] == [
        ("tag=10 trunks=[]", "tag=10 trunks=[]", []),
        ("tag=20 trunks=[]", "tag=30 trunks=[]", [f"port {taps[1]} has tag=30 trunks=[]"]),
        ("tag=[] trunks=[10, 20]", "tag=[] trunks=[10, 20]", []),
    ]


def test_read_ports_parses_ovs_vsctl_get(monkeypatch):
    class Switch:
        def vsctl(self, *args):
            assert args[:3] == ("get", "port", "t1") and args[3:] == ("tag", "trunks")
            return "10\n[]\n"

    monkeypatch.setattr(vlan, "_switch", lambda plan: Switch())
    assert vlan.read_ports(plan_of(), ["t1"]) == {"t1": ("10", "[]")}


# -- the vlan-tagged judge -------------------------------------------------------------------------


def _judge(frames, a="vm1", b="vm3", where="bridge: br0", judge=vlan.judge_vlan_tagged):
    plan = plan_of(checks_appended(BASE, f"capture: {{{where}, between: [{a}, {b}], expect: [vlan-tagged]}}"))
    check = plan.scenario.checks[0].capture
    subject = CaptureSubject(a, plan.vm(a).nics[0], b, plan.vm(b).nics[0], frames)
    return plan, judge(plan, check, subject)


def _frames(plan, vid, a="vm1", b="vm3", n=2):
    ma, mb = plan.vm(a).nics[0].mac, plan.vm(b).nics[0].mac
    tag = [Dot1Q(vlan=vid)] if vid is not None else []

    def frame(src, dst, payload):
        head = Ether(src=src, dst=dst)
        for t in tag:
            head = head / t.copy()
        return head / payload

    return [frame(ma, mb, IP(src="10.0.10.2", dst="10.0.10.5") / ICMP()) for _ in range(n)] + [frame(mb, ma, ARP(op=2)) for _ in range(n)]


def test_frames_tagged_with_the_shared_vlan_pass():
    plan, _ = _judge([])
    other = Ether(src="02:00:00:00:00:99", dst="ff:ff:ff:ff:ff:ff") / ARP()  # neither VM's: not judged
    _, j = _judge(_frames(plan, 10) + [other])
    assert j.ok and j.seen == "4 frame(s) between them: 4 tagged VLAN 10", j.seen
    assert j.expected == "the frames between vm1 and vm3 on br0's mirror port tagged with VLAN 10 (802.1Q)"
    assert j.counts == {"vlan_frames": 4, "vlan_untagged": 0, "vlan_wrong_tag": 0}


def test_untagged_frames_a_wrong_vlan_or_no_frames_fail():
    plan, none = _judge([])
    assert not none.ok and none.seen == "no frame between them"
    _, untagged = _judge(_frames(plan, None))
    assert not untagged.ok and untagged.counts["vlan_untagged"] == 4 and untagged.seen == "4 frame(s) between them: 4 untagged"
    _, wrong = _judge(_frames(plan, 20))
    assert not wrong.ok and wrong.counts["vlan_wrong_tag"] == 4 and "4 tagged VLAN 20" in wrong.seen
    double = [Ether(src=f.src, dst=f.dst) / Dot1Q(vlan=10) / Dot1Q(vlan=10) / ARP() for f in _frames(plan, 10)]
    _, qinq = _judge(double)
    assert not qinq.ok and qinq.counts["vlan_wrong_tag"] == 4


def test_on_a_link_a_trunk_is_judged_tagged_and_an_access_port_untagged():
    plan, tagged = _judge(_frames(plan_of(), 10), where="link: vm3.eth0")
    assert tagged.ok and tagged.expected == "the frames between vm1 and vm3 on link vm3.eth0 tagged with VLAN 10 (802.1Q)"
    _, plain = _judge(_frames(plan, None), where="link: vm1.eth0", judge=vlan.judge_untagged)
    assert plain.ok and plain.expected == "the frames between vm1 and vm3 on link vm1.eth0 untagged (no 802.1Q header)"
    assert plain.seen == "4 frame(s) between them: 4 untagged"
    _, leaked = _judge(_frames(plan, 10), where="link: vm1.eth0", judge=vlan.judge_untagged)
    assert not leaked.ok and leaked.seen == "4 frame(s) between them: 4 tagged VLAN 10"
    _, nothing = _judge([], where="link: vm1.eth0", judge=vlan.judge_untagged)
    assert not nothing.ok and nothing.seen == "no frame between them"


def test_the_lesson_plans_have_access_ports_a_trunk_and_their_captures():
    plan = make_plan(load_scenario(SCENARIOS_DIR / "vlan-trunk-ovs.yaml"), "vlan-trunk-ovs", PlanOptions(kernel=KERNEL))
    assert [c.kind for c in plan.scenario.checks] == ["ping", "ping", "ping", "ping", "capture", "capture", "capture", "capture"]
    linux = make_plan(load_scenario(SCENARIOS_DIR / "vlan-trunk.yaml"), "vlan-trunk", PlanOptions(kernel=KERNEL))
    assert [(c.capture.link, c.capture.expect) for c in linux.scenario.checks if c.capture] == [
        ("vm3.eth0", ["vlan-tagged"]), ("vm3.eth0", ["vlan-tagged"]), ("vm1.eth0", ["untagged"]), ("vm2.eth0", ["untagged"]),
    ]
    assert [p.tag or p.trunks for p in plan.part("vlan").ports] == [10, 20, (10, 20)]
    assert plan.scenario.checks[3].ping.expect == "no-reply"  # the on-link route sends the ARP out in VLAN 10: the wire gives no reply
