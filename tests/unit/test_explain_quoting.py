"""`--explain` prints commands meant to be pasted into a root shell, and much of them comes from a
scenario (issue 23, finding 10): every word is quoted, so a hostile `dest:`, source file name,
command or URI parses back, with shlex, into exactly the argv vnetlab means — never into extra
commands on the host or in the guest."""

from __future__ import annotations

import json
import posixpath
import shlex
from pathlib import Path

from vnetlab.compose import parse_scenario
from vnetlab.features.commands import explain_lines
from vnetlab.plan.planner import PlanOptions, make_plan
from vnetlab.tools import explain as ex

KERNEL = Path("/var/lib/vnetlab/images/golden/vmlinux")
HOSTILE_DEST = "/etc/motd; rm -rf / #'\"$(id)`id`"
HOSTILE_SRC = "notes; touch PWNED $(id) 'x'.txt"
TWO_LINES = "echo first\nrm -rf /tmp/never-on-the-host"

SCENARIO = f"""\
name: quoting
bridges: [{{name: br0, subnet: 10.1.1.0/24}}]
vms:
  - name: vm1
    nics: [{{bridge: br0, address: 10.1.1.2/24}}]
    files:
      - {{src: {json.dumps(HOSTILE_SRC)}, dest: {json.dumps(HOSTILE_DEST)}, mode: "0644"}}
    exec:
      - {json.dumps(TWO_LINES)}
containers:
  - name: c1
    nic: {{bridge: br0, address: 10.1.1.9/24}}
    exec:
      - {json.dumps(TWO_LINES)}
"""


def commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at its control operators (&&, ;, |, <, >) as a shell would."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", ";", "|", "||", "&"):
            out.append([])
        else:
            out[-1].append(token)
    return out


def planned(tmp_path: Path):
    (tmp_path / HOSTILE_SRC).write_text("hello\n")
    (tmp_path / "lab.yaml").write_text(SCENARIO)
    scenario = parse_scenario(SCENARIO, str(tmp_path / "lab.yaml"))
    return make_plan(scenario, "quoting", PlanOptions(kernel=KERNEL))


def test_a_hostile_dest_and_source_parse_back_into_exactly_the_intended_argv(tmp_path: Path) -> None:
    plan = planned(tmp_path)
    line = next(line for line in explain_lines(plan) if "cat >" in line)
    vm = plan.vm("vm1")
    key = str(plan.lab_dir / "secrets" / "id_ed25519")
    host = commands(line)
    assert len(host) == 1, host  # one command on the host: nothing after a ';' or '&&'
    *ssh, remote, redirect, source = host[0]
    assert ssh == ["ip", "netns", "exec", plan.namespace, "ssh", "-i", key, f"root@{vm.mgmt.ip}"]
    assert (redirect, source) == ("<", str(tmp_path / HOSTILE_SRC))
    # the guest's shell parses the remote command: it makes the folder, writes the file, sets its mode
    assert commands(remote) == [["mkdir", "-p", posixpath.dirname(HOSTILE_DEST)], ["cat", ">", HOSTILE_DEST], ["chmod", "0644", HOSTILE_DEST]]


def test_a_command_over_several_lines_is_one_quoted_word_for_the_guest_or_the_namespace(tmp_path: Path) -> None:
    text = ex.explain(planned(tmp_path))
    guest = "vm1$ " + shlex.join(["sh", "-c", TWO_LINES])
    container = shlex.join(["ip", "netns", "exec", "vnl-quoting.c1", "sh", "-c", TWO_LINES])
    assert f"\n{guest}\n" in text and f"\n{container}\n" in text
    # its second line appears only inside those quoted words: never a line of its own for the host's shell
    assert text.count("rm -rf /tmp/never-on-the-host") == 2


def test_every_word_of_the_core_lines_is_quoted() -> None:
    assert ex.sh("virsh", "-c", "qemu+ssh://root@h/system?keyfile=/k&no_tty=1", "destroy", "d") == "virsh -c 'qemu+ssh://root@h/system?keyfile=/k&no_tty=1' destroy d"
    assert shlex.split(ex.sh("x", "it's; rm -rf /")) == ["x", "it's; rm -rf /"]
    assert ex.comment("a\nrm -rf /") == "# a\\nrm -rf /"  # a comment stays one line
    assert ex.guest_line("vm1", ["ip", "addr", "add", "10.1.1.2/24", "dev", "eth 0"]) == "vm1$ ip addr add 10.1.1.2/24 dev 'eth 0'"


def test_a_remote_domains_virsh_lines_quote_its_uri() -> None:
    text = """\
name: remote
hypervisors:
  here: {}
  far: {simulate: true}
bridges: [{name: br0, subnet: 10.1.1.0/24}]
vms:
  - {name: a, nics: [{bridge: br0, address: 10.1.1.2/24}]}
  - {name: b, on: far, nics: [{bridge: br0, address: 10.1.1.3/24}]}
"""
    plan = make_plan(parse_scenario(text, "remote.yaml"), "remote", PlanOptions(kernel=KERNEL))
    uri = plan.vm("b").uri
    assert uri and "&" in uri  # a URI with shell metacharacters: the test means something
    lines = [line for line in ex.explain(plan).splitlines() if line.startswith("virsh -c")]
    assert lines, "no virsh -c line"
    for line in lines:
        for argv in commands(line.split("    #")[0]):
            assert argv[:3] == ["virsh", "-c", uri], (line, argv)
