"""`vnetlab init DIR [--from SCENARIO]`: a starter lab folder that runs as it is.

The folder holds the scenario (`lab.yaml`, pointing editors at the JSON Schema written beside
it), a pytest file using the plugin, a README for students and a CI workflow. `cd DIR && sudo
vnetlab run lab.yaml` passes as written; `--from` starts from a shipped or own scenario instead
(with the folder of files it refers to, when it has one).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from vnetlab.model.scenario import NAME
from vnetlab.paths import Resolved, resolve_scenario, search_path
from vnetlab.run.lab import LabError

SCHEMA_LINE = "# yaml-language-server: $schema=scenario.schema.json\n"

STARTER = """\
{schema}# A starter lab: two VMs on bridge br0. vm1 leaves a greeting with a startup command (exec:),
# the checks ping across the bridge, read the greeting back and watch br0 carry the exchange.
# Change it, then: sudo vnetlab run lab.yaml   (every key: vnetlab schema, or the docs' Scenario syntax)
name: {name}
description: Two VMs on br0 — a starter lab made by vnetlab init.
bridges:
  - {{name: br0, subnet: 10.1.1.0/24}}
vms:
  - name: vm1
    nics: [{{bridge: br0, address: 10.1.1.2/24}}]
    exec: ["echo hello from vm1 > /tmp/greeting"]
  - name: vm2
    nics: [{{bridge: br0, address: 10.1.1.3/24}}]
checks:
  - ping: {{from: vm1, to: vm2, name: vm1 reaches vm2 over br0}}
  - command: {{name: vm1 kept its greeting, node: vm1, run: cat /tmp/greeting, expect: {{stdout: hello from vm1}}}}
  - capture: {{bridge: br0, between: [vm1, vm2], expect: [arp, icmp-echo], name: br0 carried ARP and the pings}}
"""

TEST = '''\
"""This lab as pytest tests: `sudo python -m pytest` here (the vnetlab pytest plugin brings the lab
up once for the module and tears it down afterwards)."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.vnetlab_scenario(str(Path(__file__).with_name("lab.yaml")))


def test_the_scenario_checks_pass(vnetlab_lab):
    for check in vnetlab_lab.plan.scenario.checks:
        if check.ping is not None:
            result = vnetlab_lab.ping(check.ping.source, check.ping.to)
            assert result.ok, result.detail


def test_a_command_of_your_own(vnetlab_lab):
    first = vnetlab_lab.plan.vms[0].name
    assert vnetlab_lab.exec(first, "hostname").stdout.strip() == first
'''

README = """\
# {name}

A vnetlab lab: real virtual machines on Linux bridges, built from `lab.yaml`, checked, and torn
down again. Run it as root on a machine with vnetlab installed (`sudo vnetlab setup` once):

```sh
sudo vnetlab run lab.yaml             # bring it up, run the checks, print a summary, tear it down
sudo vnetlab run lab.yaml --keep      # ... and leave it up to look around:
sudo vnetlab ssh {name} {vm}           #   a shell on {vm}
sudo vnetlab shell {name} -c 'bridge link'   #   the bridge's ports, seen from the lab's namespace
sudo vnetlab down {name}              #   remove it
sudo vnetlab plan lab.yaml --explain  # the same lab as the commands you would type by hand
sudo python -m pytest                 # test_lab.py: the lab as pytest tests
```

`scenario.schema.json` lets an editor with the YAML language server complete and check
`lab.yaml` as you type. The report of every run (JSON and JUnit, pcaps, console logs) is kept in
`/var/lib/vnetlab/runs/`.
"""

WORKFLOW = """\
# Run this lab in CI (GitHub Actions, on a self-hosted Debian runner with nested virtualization
# labelled `kvm`; without KVM vnetlab uses TCG, slower but the same). Install vnetlab from its
# wheel first (see vnetlab's documentation).
#
# Trust: a scenario is code. `sudo vnetlab run` gives whoever wrote lab.yaml (and test_lab.py)
# root on this runner (exec: on containers and hosts runs the runner's shell as root), so this
# workflow never runs a pull request from a fork: it runs on pushes, on pull requests from this
# repository's own branches (the `if:` below) and by hand. Never use pull_request_target here. To
# test a fork's change, review it, then push it to a branch of your own. (vnetlab's docs, "Trust model")
name: lab
on:
  push:
  pull_request:
  workflow_dispatch:
jobs:
  lab:
    if: github.event_name != 'pull_request' || github.event.pull_request.head.repo.full_name == github.repository
    runs-on: [self-hosted, kvm]
    timeout-minutes: 30
    steps:
      - uses: actions/checkout@v4
      - run: sudo vnetlab setup && sudo vnetlab image build lab.yaml   # every image the lab names (debian, your cloud image), tiny for its kernel
      - run: sudo vnetlab run lab.yaml --name ci-$GITHUB_RUN_ID --junit junit.xml
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: lab-report
          path: junit.xml
"""


def lab_name_for(folder: Path) -> str:
    """The folder's name as a scenario name (lowercase letters, digits, '-'), or my-lab."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")[:40].rstrip("-")
    return name if re.fullmatch(NAME, name) else "my-lab"


def _first_vm(scenario: str) -> str:
    """The first VM's name in a scenario's text (for the README's examples)."""
    found = re.search(r"^vms:\s*\n\s*-\s*\{?\s*name:\s*([a-z][a-z0-9-]*)", scenario, re.M)
    return found[1] if found else "vm1"


def _with_local_schema(text: str) -> str:
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("# yaml-language-server:")]
    return SCHEMA_LINE + "".join(lines)


def init_lab(folder: Path, schema_text: str, source: str | None = None, dirs: list[Path] | None = None) -> list[Path]:
    """Write the starter folder; returns the files written. Refuses a folder that is not empty."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise LabError(f"{folder} exists and is not an empty folder: vnetlab init writes a new lab folder")
    name = lab_name_for(folder)
    if source is None:
        scenario = STARTER.format(schema=SCHEMA_LINE, name=name)
        extra: Path | None = None
    else:
        resolved: Resolved = resolve_scenario(source, search_path(dirs or []))
        if not resolved.path.is_file():
            raise LabError(f"no scenario {source!r} (see `vnetlab list`)")
        scenario = _with_local_schema(resolved.path.read_text())
        name = re.search(r"^name:\s*(\S+)", scenario, re.M)[1] if re.search(r"^name:\s*(\S+)", scenario, re.M) else name  # type: ignore[index]
        sibling = resolved.path.with_suffix("")
        extra = sibling if sibling.is_dir() else None
    folder.mkdir(parents=True, exist_ok=True)
    written = {
        folder / "lab.yaml": scenario,
        folder / "scenario.schema.json": schema_text,
        folder / "test_lab.py": TEST,
        folder / "README.md": README.format(name=name, vm=_first_vm(scenario)),
        folder / ".github" / "workflows" / "lab.yml": WORKFLOW,
    }
    for path, text in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    paths = list(written)
    if extra is not None:  # the files the scenario refers to (files:, shares:), kept beside it as they were
        shutil.copytree(extra, folder / extra.name)
        paths.append(folder / extra.name)
    return paths
