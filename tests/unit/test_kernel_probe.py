"""The host kernel capability probe: its cache (once per host boot) and doctor's rows, with fake
probe results; and, as root, the real probe against what this machine's kernel is known to do."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vnetlab.backends import kernel_probe as kp
from vnetlab.backends import netns
from vnetlab.tools import doctor

KEYS = [key for key, _ in kp.CAPABILITIES]
FAKE = tuple(kp.Capability(key, key not in ("vlan", "netem"), "" if key not in ("vlan", "netem") else f"{key} refused") for key in KEYS)


class Counting:
    def __init__(self, result=FAKE):
        self.calls = 0
        self.result = result

    def __call__(self):
        self.calls += 1
        return self.result


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    path = tmp_path / "boot_id"
    path.write_text("11111111-2222-3333-4444-555555555555\n")
    return path


def test_the_first_probe_of_a_boot_is_cached_and_the_next_reads_it(tmp_path, boot):
    cache = tmp_path / "run" / "vnetlab" / "kernel-probe.json"
    prober = Counting()
    first = kp.probe_kernel(cache=cache, boot_id_file=boot, prober=prober)
    assert prober.calls == 1 and not first.cached and first.capabilities == FAKE
    assert first.boot_id == "11111111-2222-3333-4444-555555555555"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o644  # doctor may read it without root
    assert json.loads(cache.read_text())["boot_id"] == first.boot_id
    again = kp.probe_kernel(cache=cache, boot_id_file=boot, prober=prober)
    assert prober.calls == 1 and again.cached and again.capabilities == FAKE
    assert again.get("netem") == kp.Capability("netem", False, "netem refused") and again.get("netem").label == "netem qdisc"


def test_a_new_boot_probes_again(tmp_path, boot):
    cache = tmp_path / "kernel-probe.json"
    prober = Counting()
    kp.probe_kernel(cache=cache, boot_id_file=boot, prober=prober)
    boot.write_text("99999999-2222-3333-4444-555555555555\n")
    result = kp.probe_kernel(cache=cache, boot_id_file=boot, prober=prober)
    assert prober.calls == 2 and not result.cached
    assert json.loads(cache.read_text())["boot_id"] == "99999999-2222-3333-4444-555555555555"


def test_without_a_boot_id_every_call_probes_and_nothing_is_cached(tmp_path):
    cache = tmp_path / "kernel-probe.json"
    prober = Counting()
    for _ in range(2):
        result = kp.probe_kernel(cache=cache, boot_id_file=tmp_path / "missing", prober=prober)
        assert not result.cached and result.boot_id == ""
    assert prober.calls == 2 and not cache.exists()


def test_a_cache_that_cannot_be_written_still_gives_the_answer(tmp_path, boot):
    (tmp_path / "file").write_text("")
    result = kp.probe_kernel(cache=tmp_path / "file" / "kernel-probe.json", boot_id_file=boot, prober=Counting())
    assert result.capabilities == FAKE and not result.cached


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"boot_id": "11111111-2222-3333-4444-555555555555"}',
        '{"boot_id": "11111111-2222-3333-4444-555555555555", "capabilities": [{"key": "vxlan", "ok": "yes"}]}',
        '{"boot_id": "11111111-2222-3333-4444-555555555555", "capabilities": [{"key": "vxlan", "ok": true}]}',  # fewer capabilities than now
        '{"boot_id": "11111111-2222-3333-4444-555555555555", "capabilities": [7]}',
        '{"boot_id": "11111111-2222-3333-4444-555555555555", "capabilities": [], "pad": "' + "x" * kp.CACHE_MAX_BYTES + '"}',
    ],
)
def test_a_cache_that_is_not_this_boots_complete_answer_is_probed_over(tmp_path, boot, content):
    cache = tmp_path / "kernel-probe.json"
    cache.write_text(content)
    assert kp.load_cache(cache, "11111111-2222-3333-4444-555555555555") is None
    prober = Counting()
    assert not kp.probe_kernel(cache=cache, boot_id_file=boot, prober=prober).cached and prober.calls == 1
    assert kp.load_cache(cache, "11111111-2222-3333-4444-555555555555") == FAKE


def test_the_cache_is_read_in_capability_order_whatever_the_files_order(tmp_path):
    cache = tmp_path / "kernel-probe.json"
    kp.save_cache(cache, kp.KernelProbe("b", tuple(reversed(FAKE))))
    assert kp.load_cache(cache, "b") == FAKE
    assert kp.load_cache(cache, "") is None and kp.load_cache(cache, "c") is None


# -- what doctor shows --------------------------------------------------------------------------------


def test_doctor_shows_one_row_per_capability():
    rows = doctor.kernel_findings(lambda: kp.KernelProbe("b", FAKE, cached=True))
    assert [r.name for r in rows] == [f"kernel: {label}" for _, label in kp.CAPABILITIES]
    by_name = {r.name: r for r in rows}
    assert by_name["kernel: VXLAN devices"] == doctor.Finding("kernel: VXLAN devices", "ok", "supported (probed in a scratch namespace earlier in this host boot)")
    assert by_name["kernel: 802.1Q VLAN devices"] == doctor.Finding(
        "kernel: 802.1Q VLAN devices", "warn",
        "not supported by this host kernel (vlan refused): 802.1Q sub-interfaces are made inside the guests only, as always",
    )
    assert by_name["kernel: netem qdisc"].detail == "not supported by this host kernel (netem refused): netem runs inside the guests"
    assert all(r.status in ("ok", "warn") for r in rows)  # a missing capability never fails doctor
    fresh = doctor.kernel_findings(lambda: kp.KernelProbe("b", FAKE))
    assert fresh[2].detail == "supported (probed in a scratch namespace just now)"


def test_doctor_says_when_the_probe_cannot_run():
    def refuse():
        raise netns.NamespaceError("cannot create namespace 'vnlprobe-1': [Errno 1] Operation not permitted")

    [row] = doctor.kernel_findings(refuse)
    assert row.name == "host kernel capabilities" and row.status == "warn"
    assert row.detail == "not probed: the probe needs a scratch network namespace (cannot create namespace 'vnlprobe-1': [Errno 1] Operation not permitted)"
    assert row.fix == ("" if os.geteuid() == 0 else "run vnetlab doctor as root")


def test_a_broken_probe_is_one_warning_not_a_crash():
    def broken():
        raise AttributeError("'NoneType' object has no attribute 'get_attr'")

    assert doctor.kernel_findings(broken) == [doctor.Finding("host kernel capabilities", "warn", "the probe failed: AttributeError: 'NoneType' object has no attribute 'get_attr'")]


def test_kernel_errors_read_as_words():
    from pyroute2.netlink.exceptions import NetlinkError

    assert kp._kernel_error(NetlinkError(95, "Operation not supported")) == "Operation not supported, errno 95"
    assert kp._kernel_error(NetlinkError(2, "No such file or directory"), qdisc=True) == "no such qdisc in this kernel: No such file or directory, errno 2"
    assert kp._kernel_error(OSError(1, "x")) == "Operation not permitted, errno 1"


# -- the real probe (root) ----------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a scratch network namespace)")
def test_the_real_probe_finds_what_this_hosts_kernel_can_do():
    """This machine's kernel (see /work/shared/notes/findings.md): no loadable modules; VXLAN, tbf,
    STP and jumbo MTUs work; bridge VLAN filtering, 802.1Q devices and netem do not."""
    result = {c.key: c for c in kp.run_probe()}
    assert [k for k in result] == KEYS
    for key in ("vxlan", "tbf", "stp", "mtu_9000"):
        assert result[key].ok and result[key].error == "", result[key]
    assert result["vlan_filtering"] == kp.Capability("vlan_filtering", False, "Operation not supported, errno 95")
    assert result["vlan"] == kp.Capability("vlan", False, "Operation not supported, errno 95")
    assert result["netem"] == kp.Capability("netem", False, "no such qdisc in this kernel: No such file or directory, errno 2")
    mine = f"{kp.NAMESPACE_PREFIX}{os.getpid()}-"
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(mine)]  # the scratch namespace is gone
