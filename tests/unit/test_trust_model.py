"""A scenario is code (issue 23, finding 5; docs/reliability.md, "Trust model"): what need not be
open is closed. `files:` and `shares:` come from the scenario's own folder, symbolic links resolved
first, unless the user says --allow-host-paths, and never from /, /etc, /root or vnetlab's own
state even then; a hypervisor's URI takes only keyfile, no_tty and known_hosts. Each refusal is a
validation problem (file:line: field: message, exit 2, no traceback) that says what to write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vnetlab.cli import main
from vnetlab.compose import parse_scenario
from vnetlab.features.commands import source_refusal
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.run.state import LabState
from vnetlab.tools.init import WORKFLOW

REPO = Path(__file__).resolve().parents[2]
HEAD = "name: trust\nbridges: [{name: br0, subnet: 10.1.1.0/24}]\nvms:\n  - name: vm1\n    nics: [{bridge: br0, address: 10.1.1.2/24}]\n"


def lab_with(folder: Path, lines: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lab.yaml"
    path.write_text(HEAD + lines)
    return path


def problems(path: Path, *, allow_host_paths: bool = False) -> list[str]:
    try:
        parse_scenario(path.read_text(), str(path), allow_host_paths=allow_host_paths)
    except ValidationError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A host file outside the scenario's folder, standing for any file root can read."""
    path = tmp_path / "elsewhere" / "secret.txt"
    path.parent.mkdir()
    path.write_text("not the scenario's\n")
    return path


def test_an_absolute_source_outside_the_folder_needs_allow_host_paths(tmp_path: Path, outside: Path) -> None:
    path = lab_with(tmp_path / "lab", f"    files: [{{src: {outside}, dest: /tmp/x}}]\n")
    assert problems(path) == [
        f"{path}:6: vms[0].files[0].src: '{outside}' is {outside}, outside the scenario's folder {tmp_path / 'lab'}: a scenario reads files "
        f"from its own folder only (a scenario is code: see the trust model); move it there, or run with --allow-host-paths if you trust this scenario with {outside}"
    ]
    assert problems(path, allow_host_paths=True) == []


def test_a_relative_source_leaving_the_folder_needs_it_too(tmp_path: Path, outside: Path) -> None:
    path = lab_with(tmp_path / "lab", "    files: [{src: ../elsewhere/secret.txt, dest: /tmp/x}]\n")
    assert "outside the scenario's folder" in problems(path)[0] and problems(path, allow_host_paths=True) == []


def test_a_symbolic_link_in_the_folder_is_judged_by_where_it_leads(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "shadow").symlink_to("/etc/shadow")
    (folder / "notes.txt").symlink_to(outside)
    path = lab_with(folder, "    files:\n      - {src: shadow, dest: /tmp/a}\n      - {src: notes.txt, dest: /tmp/b}\n")
    found = problems(path, allow_host_paths=True)  # even with the flag: /etc never
    assert found == [
        f"{path}:7: vms[0].files[0].src: 'shadow' is /etc/shadow, in /etc (through a symbolic link: 'shadow' resolves to /etc/shadow): "
        "vnetlab never copies or shares /etc into a guest, even with --allow-host-paths"
    ]
    assert f"'notes.txt' is {outside}, outside the scenario's folder" in problems(path)[1] and "through a symbolic link" in problems(path)[1]


@pytest.mark.parametrize("src", ["/", "/etc", "/root", "/var/lib/vnetlab", "/var/lib/vnetlab/images", "/run/vnetlab", "/proc"])
def test_the_hosts_own_folders_are_never_shared_even_with_the_flag(tmp_path: Path, src: str) -> None:
    path = lab_with(tmp_path / "lab", f"    shares: [{{src: {src}, dest: /mnt/host, readonly: false}}]\n")
    found = problems(path, allow_host_paths=True)
    assert len(found) == 1 and found[0].startswith(f"{path}:6: vms[0].shares[0].src: '{src}' is ")
    assert found[0].endswith("even with --allow-host-paths")


def test_a_scenario_kept_below_root_reads_its_own_folder_but_not_roots_files() -> None:
    assert source_refusal(Path("/root/labs/web"), "www/index.html", False) is None
    assert "in /root" in (source_refusal(Path("/root"), ".ssh/id_ed25519", True) or "")
    assert "in /etc" in (source_refusal(Path("/"), "etc/shadow", True) or "")


def test_files_inside_the_folder_need_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    (folder / "www").mkdir(parents=True)
    (folder / "www" / "index.html").write_text("hi\n")
    path = lab_with(folder, "    files: [{src: www/index.html, dest: /www/index.html}]\n    shares: [{src: www, dest: /mnt/www}]\n")
    assert problems(path) == []


URI_REFUSED = {
    "command=/tmp/run-me": "URI parameter command=/tmp/run-me is refused (it runs a program of this machine, as root, in place of ssh): write qemu+ssh://root@192.0.2.12/system?keyfile=/root/.ssh/vnetlab&no_tty=1",
    "no_verify=1": "URI parameter no_verify=1 is refused (it turns off the check of the hypervisor's host key; vnetlab pins that key: give the hypervisor `host-key:` (or add its key to /root/.ssh/known_hosts)): write qemu+ssh://root@192.0.2.12/system?keyfile=/root/.ssh/vnetlab&no_tty=1",
    "socket=/var/run/x": "URI parameter socket=/var/run/x is refused (it names the socket reached on the hypervisor): write qemu+ssh://root@192.0.2.12/system?keyfile=/root/.ssh/vnetlab&no_tty=1",
    "sshauth=password": "URI parameter sshauth=password is refused (it picks password or agent logins; vnetlab logs in with the key file): write qemu+ssh://root@192.0.2.12/system?keyfile=/root/.ssh/vnetlab&no_tty=1",
}


def remote_lab(uri: str) -> str:
    return (
        "name: trust\nhypervisors:\n  here: {underlay: {address: 192.0.2.11, device: eth1}}\n"
        f"  far: {{uri: {json.dumps(uri)}, underlay: {{address: 192.0.2.12, device: eth1}}}}\n"
        "bridges: [{name: br0, subnet: 10.1.1.0/24}]\nvms:\n  - {name: a, nics: [{bridge: br0, address: 10.1.1.2/24}]}\n"
        "  - {name: b, on: far, nics: [{bridge: br0, address: 10.1.1.3/24}]}\n"
    )


@pytest.mark.parametrize("extra", URI_REFUSED)
def test_a_uri_parameter_that_runs_or_trusts_more_is_refused_saying_what_to_write(extra: str) -> None:
    uri = f"qemu+ssh://root@192.0.2.12/system?keyfile=/root/.ssh/vnetlab&no_tty=1&{extra}"
    with pytest.raises(ValidationError) as refused:
        parse_scenario(remote_lab(uri), "lab.yaml")
    assert [str(p) for p in refused.value.problems] == [f"lab.yaml:4: hypervisors.far.uri: {URI_REFUSED[extra]}"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("qemu+ssh://-oProxyCommand=x/system", "'-oproxycommand=x' is neither an IP address nor a host name: write qemu+ssh://HOST/system"),
        ("qemu+ssh://root:secret@192.0.2.12/system", "no password in the URI (vnetlab logs in with a key file): write qemu+ssh://root@192.0.2.12/system"),
        ("qemu+ssh://root@192.0.2.12/session", "the path must be /system (libvirt's system instance, where vnetlab makes guests), not '/session': write qemu+ssh://root@192.0.2.12/system"),
        ("qemu+ssh://root@192.0.2.12/system?keyfile=k", "keyfile must be an absolute path of letters, digits and _.,/+@-, got 'k'"),
    ],
)
def test_a_uri_names_a_user_a_host_and_the_system_instance(uri: str, expected: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_scenario(remote_lab(uri), "lab.yaml")
    assert [str(p) for p in refused.value.problems] == [f"lab.yaml:4: hypervisors.far.uri: {expected}"]


def test_the_documented_uris_still_load() -> None:
    for uri in ("qemu+ssh://root@192.0.2.12/system?keyfile=/root/.ssh/vnetlab&no_tty=1", "qemu+ssh://admin@hv2.example.org:2222/system?known_hosts=/root/.ssh/known_hosts"):
        parse_scenario(remote_lab(uri), "lab.yaml")


def test_the_cli_says_it_with_exit_2_and_no_traceback(tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = lab_with(tmp_path / "lab", f"    files: [{{src: {outside}, dest: /tmp/x}}]\n")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}:6: vms[0].files[0].src: '{outside}' is {outside}, outside the scenario's folder" in err.replace("\n", "")
    assert "Traceback" not in err
    assert main(["plan", str(path), "--allow-host-paths"]) == 0


def test_a_lab_up_with_the_flag_is_read_back_with_it(tmp_path: Path) -> None:
    state = LabState("l", "s", "/x/lab.yaml", "vnl-l", "qemu", "/k", 1, allow_host_paths=True)
    state.save(tmp_path)
    assert LabState.load(tmp_path).allow_host_paths
    raw = json.loads((tmp_path / "state.json").read_text())
    del raw["allow_host_paths"]  # a lab an older vnetlab made
    (tmp_path / "state.json").write_text(json.dumps(raw))
    assert LabState.load(tmp_path).allow_host_paths is False


def test_the_ci_workflows_never_run_a_forks_pull_request() -> None:
    """A scenario's author gets root on the runner: a workflow runs pushes, pull requests from this
    repository's own branches and manual runs, never a fork's pull request (nor pull_request_target)."""
    texts = {"vnetlab init's lab.yml": WORKFLOW, **{str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "examples").rglob("*.yml"))}}
    assert len(texts) >= 3
    for name, text in texts.items():
        workflow = yaml.safe_load(text)
        triggers = workflow.get("on", workflow.get(True))  # PyYAML reads a bare `on` as True
        assert "pull_request_target" not in triggers, name
        if "pull_request" in triggers:
            for job in workflow["jobs"].values():
                assert job.get("if") == "github.event_name != 'pull_request' || github.event.pull_request.head.repo.full_name == github.repository", name
        assert "trust" in text.lower(), name  # the file says why


def test_the_trust_model_is_written_where_users_meet_it() -> None:
    reliability = (REPO / "docs" / "reliability.md").read_text()
    section = reliability.split("## Trust model", 1)[1].split("\n## ", 1)[0]
    for needle in ("A scenario is code", "exec:", "--allow-host-paths", "no_verify", "students never supply scenarios", "pull request from a fork"):
        assert needle in section, needle
    assert "Trust model" in (REPO / "README.md").read_text()
