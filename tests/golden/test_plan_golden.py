"""Golden files pin the plan and the rendered domain XML of every shipped scenario.

Regenerate after an intended change with `VNETLAB_UPDATE_GOLDEN=1 make test-fast` (the
rewriting run fails on purpose), review the diff like code, then run again without it.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vnetlab.compose import load_scenario, parse_scenario
from vnetlab.paths import scenario_files
from vnetlab.plan.planner import METADATA_NS, PlanOptions, make_plan
from vnetlab.plan.dump import plan_summary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared golden helper
from goldens import compare_goldens  # noqa: E402

GOLDEN = Path(__file__).parent
KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")


@pytest.mark.parametrize("scenario_file", scenario_files(), ids=lambda p: p.stem)
@pytest.mark.parametrize("domain_type", ["qemu", "kvm"])
def test_plan_and_xml_match_golden(scenario_file: Path, domain_type: str):
    scenario = load_scenario(scenario_file)
    plan = make_plan(scenario, scenario.name, PlanOptions(domain_type=domain_type, kernel=KERNEL))
    folder = GOLDEN / scenario.name / domain_type

    def here(text: str) -> str:  # host paths of `files:`/`shares:` depend on where the checkout is
        return text.replace(str(scenario_file.parent.resolve()), "$SCENARIOS")

    compare_goldens({folder / "plan.yaml": here(plan_summary(plan)), **{folder / f"{vm.name}.xml": here(vm.xml) for vm in plan.vms}})


def two_vm(lab: str = "lab", **options):
    scenario = load_scenario(scenario_files()[0].parent / "two-vm-ping.yaml")
    return make_plan(scenario, lab, PlanOptions(**{"kernel": KERNEL, **options}))


def test_plan_is_deterministic_and_names_fit_the_kernel():
    a, b = two_vm(), two_vm()
    assert a == b
    names = [n.tap for vm in a.vms for n in vm.all_nics] + [br.name for br in a.bridges]
    assert all(len(n) <= 15 for n in names)
    assert len(set(names)) == len(names)
    macs = [n.mac for vm in a.vms for n in vm.all_nics] + [br.mac for br in a.bridges]
    assert len(set(macs)) == len(macs)


def test_two_labs_share_no_host_visible_name_or_mac():
    a, b = two_vm("lab-a"), two_vm("lab-b")
    assert a.namespace != b.namespace
    assert not {n.tap for v in a.vms for n in v.all_nics} & {n.tap for v in b.vms for n in v.all_nics}
    assert not {v.domain for v in a.vms} & {v.domain for v in b.vms}
    assert not {n.mac for v in a.vms for n in v.all_nics} & {n.mac for v in b.vms for n in v.all_nics}


def test_resources_are_ordered_for_creation():
    kinds = [r.kind for r in two_vm().resources]
    assert kinds[0] == "namespace"
    assert kinds.index("tap") > max(i for i, k in enumerate(kinds) if k == "bridge")
    # each domain comes after its own taps
    plan = two_vm()
    for vm in plan.vms:
        order = [r.name for r in plan.resources]
        assert all(order.index(n.tap) < order.index(vm.domain) for n in vm.all_nics)


def test_xml_is_escaped_and_carries_lab_metadata():
    plan = two_vm(kernel=Path("/tmp/it's <a> & \"b\"/vmlinux"))
    root = ET.fromstring(plan.vms[0].xml)
    assert root.findtext("os/kernel") == "/tmp/it's <a> & \"b\"/vmlinux"
    meta = root.find(f"metadata/{{{METADATA_NS}}}lab")
    assert meta is not None and meta.get("name") == "lab" and meta.get("vm") == "vm1"
    assert root.get("type") == "qemu"
    assert [i.find("target").get("dev") for i in root.findall("devices/interface")] == [n.tap for n in plan.vms[0].all_nics]
    assert all(i.find("target").get("managed") == "no" for i in root.findall("devices/interface"))


def test_kvm_xml_differs_only_in_accelerator_parts():
    tcg = ET.fromstring(two_vm(domain_type="qemu").vms[0].xml)
    kvm = ET.fromstring(two_vm(domain_type="kvm").vms[0].xml)
    assert tcg.get("type") == "qemu" and kvm.get("type") == "kvm"
    assert tcg.find("features/tcg") is not None and kvm.find("features/tcg") is None
    assert kvm.find("cpu").get("mode") == "host-passthrough"


def test_unaddressed_nic_is_planned_without_address():
    text = (scenario_files()[0].parent / "two-vm-ping.yaml").read_text().replace("        address: 10.1.1.3/24\n", "")
    text = text.split("checks:")[0]
    plan = make_plan(parse_scenario(text, "x.yaml"), "lab", PlanOptions(kernel=KERNEL))
    assert plan.vm("vm2").nics[0].cidr is None
