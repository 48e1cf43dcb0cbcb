"""Users' own labs in the model and the plan: files, shares, exec, command checks, templates.

Each bad input is a located problem (file:line: field: message), never a traceback and never an
empty string in a command.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from vnetlab.compose import parse_scenario
from vnetlab.features.commands import plan_variables, tar_of
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.plan.dump import plan_data
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.tools.explain import explain

BASE = """\
name: own
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - name: server
    nics: [{bridge: br0, address: 10.1.1.2/24}]
{server}
  - name: client
    nics: [{bridge: br0, address: 10.1.1.3/24}]
containers:
  - name: c1
    nic: {bridge: br0, address: 10.1.1.9/24}
{c1}
checks:
{checks}
"""


def lab(tmp_path: Path, server: str = "", c1: str = "", checks: str = "  - ping: {from: client, to: server}") -> Path:
    (tmp_path / "www").mkdir(exist_ok=True)
    (tmp_path / "www" / "index.html").write_text("hello from {{ server.ip }} ({{ server.eth0.mac }})\n")
    (tmp_path / "start.sh").write_text("#!/bin/sh\necho started\n")
    (tmp_path / "start.sh").chmod(0o750)
    path = tmp_path / "lab.yaml"
    path.write_text(BASE.replace("{server}", server).replace("{c1}", c1).replace("{checks}", checks))
    return path


def load(path: Path):
    return parse_scenario(path.read_text(), str(path))


def problems(path: Path) -> list[str]:
    with pytest.raises(ValidationError) as bad:
        load(path)
    return [str(p) for p in bad.value.problems]


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


GOOD_SERVER = """\
    files:
      - {src: www/index.html, dest: /www/index.html, template: true}
      - {src: start.sh, dest: /usr/local/bin/start.sh, mode: "0755"}
    shares:
      - {src: www, dest: /mnt/lab}
    exec:
      - start.sh
      - {run: "echo {{ client.ip }} > /tmp/peer", timeout: 5}"""


def test_a_complete_lab_plans_files_mounts_exec_and_the_share_in_the_domain(tmp_path):
    path = lab(tmp_path, GOOD_SERVER, '    exec: ["ip route add 10.9.0.0/24 via {{ server.ip }}"]', "  - command: {node: c1, run: 'busybox wget -qO- http://{{ server.ip }}:8080/', expect: {stdout: hello}, retry: {for: 5}}")
    plan = make_plan(load(path), "own", PlanOptions(layout=PlanOptions().layout))
    work = {w.node: w for w in plan.part("commands")}
    assert [f.dest for f in work["server"].files] == ["/www/index.html", "/usr/local/bin/start.sh"]
    assert work["server"].files[1].mode == 0o755 and work["server"].mounts[0].readonly
    server_xml = plan.vm("server").xml
    assert f"<source dir='{tmp_path / 'www'}'/>" in server_xml and "<target dir='vnlshare0'/>" in server_xml and "<readonly/>" in server_xml
    assert "<filesystem" not in plan.vm("client").xml
    text = explain(plan)
    assert "server$ echo 10.1.1.3 > /tmp/peer" in text
    assert "ip netns exec vnl-own.c1 sh -c 'ip route add 10.9.0.0/24 via 10.1.1.2'" in text
    assert "mount -t 9p -o trans=virtio,version=9p2000.L,ro vnlshare0 /mnt/lab" in text
    assert "ip netns exec vnl-own.c1 sh -c 'busybox wget -qO- http://10.1.1.2:8080/'    # must give exit 0 and stdout matching 'hello', retried for 5 s" in text
    assert plan_data(plan)["commands"][0]["exec"] == ["start.sh", "echo {{ client.ip }} > /tmp/peer"]


def test_files_go_as_one_tar_with_modes_and_rendered_templates(tmp_path):
    plan = make_plan(load(lab(tmp_path, GOOD_SERVER)), "own")
    work = next(w for w in plan.part("commands") if w.node == "server")
    variables = plan_variables(plan)
    with tarfile.open(fileobj=io.BytesIO(tar_of(work.files, variables))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["usr/local/bin/start.sh"].mode == 0o755
        page = tar.extractfile("www/index.html").read().decode()
    assert page == f"hello from 10.1.1.2 ({plan.vm('server').nic_on('br0').mac})\n"


@pytest.mark.parametrize(
    ("server", "needle", "expected"),
    [
        ("    files: [{src: nothere.txt, dest: /x}]", "nothere", "vms[0].files[0].src: no file {tmp}/nothere.txt"),
        ("    files: [{src: www, dest: /x}]", "src: www,", "vms[0].files[0].src: no file {tmp}/www (it is a folder: use shares:)"),
        ("    files: [{src: start.sh, dest: usr/bin/x}]", "dest: usr", "vms[0].files[0].dest: 'usr/bin/x' does not match /.* (absolute path in the guest)"),
        ("    files: [{src: start.sh, dest: /a/../b}]", "dest: /a", "vms[0].files[0].dest: '/a/../b' is not a plain absolute path (no '..', '.', '//')"),
        ("    files: [{src: ../outside.txt, dest: /x}]", "outside", "vms[0].files[0].src: '../outside.txt' is {tmp_parent}/outside.txt, outside the scenario's folder {tmp}: a scenario reads files from its own folder only"),
        ("    shares: [{src: start.sh, dest: /mnt}]", "src: start.sh", "vms[0].shares[0].src: no folder {tmp}/start.sh"),
        ("    exec: ['echo {{ nobody.ip }}']", "nobody", "vms[0].exec[0]: template variable 'nobody' is undefined (variables: every node by name, nodes['…'], bridges['…'])"),
        ("    exec: ['echo {{ server.eth7.ip }}']", "eth7", "vms[0].exec[0]: template variable 'dict object' has no attribute 'eth7' (variables: every node by name, nodes['…'], bridges['…'])"),
        ("    exec: [{run: 'echo {{ x', timeout: 3}]", "timeout: 3", "vms[0].exec[0].run: template syntax error: unexpected end of template, expected 'end of print statement'."),
        ("    exec: [{run: true}]", "run: true", "vms[0].exec[0].run: expected a string, got True"),
        ("    exec: [{run: ok, timeout: 0}]", "timeout: 0", "vms[0].exec[0].timeout: expected an integer from 1 to 3600, got 0"),
    ],
)
def test_bad_own_lab_input_is_located(tmp_path, server, needle, expected):
    path = lab(tmp_path, server)
    want = f"{path}:{line_of(path, needle)}: {expected.format(tmp=tmp_path, tmp_parent=tmp_path.parent)}"
    assert any(p.startswith(want) for p in problems(path)), problems(path)


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ("  - command: {node: nobody, run: 'true'}", "checks[0].command.node: no VM, container or host named 'nobody'"),
        ("  - command: {node: c1, run: 'echo {{ ghost.ip }}'}", "checks[0].command.run: template variable 'ghost' is undefined"),
        ("  - command: {node: c1, run: 'true', expect: {stdout: '('}}", "checks[0].command.expect.stdout: not a regular expression: missing ) at position 1"),
        ("  - command: {node: c1, run: 'true', expect: {exit: sometimes}}", "checks[0].command.expect.exit: expected an integer or one of: nonzero, got 'sometimes'"),
        ("  - command: {node: c1, run: 'true', retry: {for: 2, every: 5}}", "checks[0].command.retry.every: every 5 s is longer than for 2 s: one attempt only"),
    ],
)
def test_bad_command_checks_are_located(tmp_path, checks, expected):
    path = lab(tmp_path, checks=checks)
    found = problems(path)
    assert any(p.startswith(f"{path}:{line_of(path, checks.strip()[:20])}: {expected}") for p in found), found


def test_nodes_with_dashes_and_bridges_are_variables(tmp_path):
    path = lab(tmp_path, "    exec: [\"echo {{ nodes['c1'].eth0.address }} {{ bridges.br0.subnet }} {{ nodes.client.ip }}\"]")
    plan = make_plan(load(path), "own")
    assert "server$ echo 10.1.1.9/24 10.1.1.0/24 10.1.1.3" in explain(plan)


def test_every_check_may_have_a_name(tmp_path):
    path = lab(tmp_path, checks="  - ping: {from: client, to: server, name: the client reaches the server}")
    assert load(path).checks[0].ping.name == "the client reaches the server"


def test_tar_of_checks_the_cap_before_it_reads_a_file(tmp_path, monkeypatch):
    """Issue 23, finding 11: a source larger than the cap (a sparse file: no disk, no time) is
    refused before it is read, and one that says nothing of its size (/dev/zero) is read no
    further than the cap."""
    import tracemalloc

    from vnetlab.features import commands
    from vnetlab.features.commands import CommandError, PlannedFile

    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(commands.MAX_FILES_BYTES + 1)
    tracemalloc.start()
    try:
        with pytest.raises(CommandError, match=f"exceed {commands.MAX_FILES_BYTES} bytes"):
            tar_of((PlannedFile(big, "/big", 0o644, False),), {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    monkeypatch.setattr(commands, "MAX_FILES_BYTES", 1 << 20)
    with pytest.raises(CommandError, match=f"exceed {1 << 20} bytes"):
        tar_of((PlannedFile(Path("/dev/zero"), "/zero", 0o644, False),), {})
