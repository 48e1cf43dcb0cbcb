"""The benchmark table's rows per host release, and the QMP count read from libvirtd's debug log:
pure functions of bench/, tested without libvirt."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import qmp_per_start  # noqa: E402 — bench/ is scripts, not a package
import results  # noqa: E402
import table  # noqa: E402

LEGACY_PAGE = """
| benchmark | vnetlab | raw qemu | ratio (median, range) | rounds | date | machine | note |
|---|---|---|---|---|---|---|---|
| two-vm-ping vs one raw boot | 3.89 s | 2.16 s | 1.79× (1.65–1.82×) | 5 | 2026-12-01 | 2 cores, 24 GiB | accel tcg |
"""


def _entry(host: str, measured: str) -> dict:
    return {"name": "two-vm-ping vs one raw boot", "host": host, "measured": measured, "raw": "2 s", "ratio": "1.5×", "rounds": 3, "note": "", "date": "2026-12-07", "machine": "2 cores"}


def test_a_row_from_before_the_host_column_was_measured_on_debian_12():
    rows = table.rows_on_page(LEGACY_PAGE)
    assert list(rows) == ["two-vm-ping vs one raw boot @ Debian 12"]
    assert rows["two-vm-ping vs one raw boot @ Debian 12"]["measured"] == "3.89 s"


def test_a_debian_13_figure_joins_the_debian_12_row_and_a_new_debian_12_figure_replaces_it():
    d13 = _entry("Debian 13, libvirt 11.3.0, QEMU 10.0.13", "4.1 s")
    rows = table.rows_on_page(LEGACY_PAGE) | {results.key(d13["name"], d13["host"]): d13}
    published = table.table(rows)
    assert "| Debian 12 | 3.89 s |" in published and "| Debian 13, libvirt 11.3.0, QEMU 10.0.13 | 4.1 s |" in published
    d12 = _entry("Debian 12, libvirt 9.0.0, QEMU 7.2.22", "3.7 s")
    again = table.rows_on_page(published) | {results.key(d12["name"], d12["host"]): d12}
    assert sorted(r["measured"] for r in again.values()) == ["3.7 s", "4.1 s"]
    assert table.rows_on_page(table.table(again)) == table.rows_on_page(table.table(table.rows_on_page(table.table(again))))  # stable


def test_the_host_names_the_release_and_the_two_programs(tmp_path: Path):
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\nID=debian\n')
    host = results.host_release(os_release)
    assert host.startswith("Debian 13, libvirt ") and ", QEMU " in host
    assert results.key("x", host) == "x @ Debian 13"


def _line(tid: int, text: str) -> str:
    return f"2026-12-07 10:35:37.337+0000: {tid}: info : fn:1 : {text}"


def _send(mon: str, command: str) -> str:
    return _line(9, f'QEMU_MONITOR_SEND_MSG: mon={mon} msg={{"execute":"{command}","id":"libvirt-1"}}\r\n fd=-1')


LOG = "\n".join([
    _line(1, "Connect monitor to vm=0x1 name='vnl-lab-vm1'"),
    _line(2, "Connect monitor to vm=0x2 name='someone-elses'"),
    _line(2, "QEMU_MONITOR_NEW: mon=0xbb fd=33"),  # the other thread's monitor: not vm1's
    _line(1, "QEMU_MONITOR_NEW: mon=0xaa fd=31"),
    _send("0xaa", "qmp_capabilities"),
    _send("0xbb", "qom-get"),
    *[_send("0xaa", "qom-get") for _ in range(5)],
    _send("0xaa", "query-balloon"),
    _send("0xaa", "cont"),
    _send("0xaa", "qom-get"),  # after the resume: not the start's
])


def test_commands_are_counted_per_domain_up_to_the_resume():
    found = qmp_per_start.commands_per_start(LOG, {"vnl-lab-vm1", "vnl-lab-vm2"})
    assert found == {"vnl-lab-vm1": {"qmp_capabilities": 1, "qom-get": 5, "query-balloon": 1}}


def test_a_domain_that_was_never_resumed_is_not_counted():
    unresumed = "\n".join(line for line in LOG.split("\n") if '"cont"' not in line)
    assert qmp_per_start.commands_per_start(unresumed, {"vnl-lab-vm1"}) == {}


@pytest.mark.parametrize("line", ['QEMU_MONITOR_SEND_MSG: mon=0xaa msg={"execute":"qom-get"}', 'QEMU_MONITOR_SEND_MSG: mon=0xaa msg={"execute":"qom-get","id":"libvirt-9"}\r\n fd=-1'])
def test_both_forms_of_the_send_line_are_read(line: str):
    log = "\n".join([_line(1, "Connect monitor to vm=0x1 name='d'"), _line(1, "QEMU_MONITOR_NEW: mon=0xaa fd=3"), _line(9, line), _send("0xaa", "cont")])
    assert qmp_per_start.commands_per_start(log, {"d"}) == {"d": {"qom-get": 1}}


def test_the_proof_says_how_each_guest_started_from_its_report(tmp_path):
    import json

    import prove_labs  # bench/prove_labs.py: it imports bench/soak.py and the suite's labtools, so only here

    report = tmp_path / "report.json"
    report.write_text(json.dumps({
        "steps": [{"name": "warm", "seconds": 6.44}, {"name": "boot", "seconds": 1.0}],
        "guests": {"server": {"start": "boot"}, "client": {"start": "restore"}},
        "timeline": {"guests": {"client": [{"stage": "restoring", "at": 6.5}, {"stage": "restored", "at": 7.71}, {"stage": "SSH", "at": 8.0}]}},
    }))
    assert prove_labs.starts(report) == "client restored in 1.21 s, server booted (warm image(s) made first: 6.4 s)"
    assert prove_labs.starts(tmp_path / "missing.json") == ""
