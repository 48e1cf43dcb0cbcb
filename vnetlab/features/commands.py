"""Users' own labs: files copied into guests, host folders shared with them, startup commands on
any node, and command checks with expected exit status and output.

- `files:` (VMs) are sent over the existing SSH connection as one tar stream (dropbear has no
  SFTP), binary-safe, modes kept, before any command runs.
- `shares:` (VMs) are host folders the hypervisor exports (virtio-9p in the domain XML; read-only
  enforced by QEMU, so a guest that remounts read-write still cannot write), mounted before exec.
- `exec:` runs in order after addressing (and after the other features' configuration), on VMs
  over SSH and on namespace nodes (containers, hosts) in their namespace; each must exit 0 within
  its timeout. Their output is kept in the run's artifacts folder, one log per node.
- `command` checks run a command on a node and judge its exit status and output, retrying until
  it passes or the time is up.

Commands, check commands and files marked `template: true` may use template variables
(vnetlab.model.templates): every node's addresses and MACs, every bridge's subnet and gateway.
"""

from __future__ import annotations

import concurrent.futures
import io
import posixpath
import re
import shlex
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from vnetlab.backends.ssh import CommandResult, GuestSSH
from vnetlab.checks.base import CheckContext, CheckResult, LabNode, NamespaceNode, lab_node
from vnetlab.checks.parse import excerpt
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import NAME, VM_NAME_MAX, ModelExtension, decl
from vnetlab.model.templates import TemplateError, node_variables, render, scenario_variables
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, feature_nodes, node_names
from vnetlab.plan.planner import Plan, PlanContext, PlannedShare, PlanPart
from vnetlab.tools.explain import Section, guest_line, ssh_line

MAX_FILES_BYTES = 64 * 1024 * 1024  # per VM: what `files:` may send in all
MAX_SHARES = 8
DEFAULT_TIMEOUT = 60
MAX_MATCHED = 256 * 1024  # an expected-output regex sees at most this much of the output (its end)
SHARE_TAG = "vnlshare{}"
ABSOLUTE = r"/.*"  # an absolute path in the guest (normalisation is a rule of its own)


# -- the scenario keys -------------------------------------------------------------------


@dataclass(frozen=True)
class FileCopy:
    src: str = spec("file on the host: relative to the scenario's folder (and inside it), or absolute")
    dest: str = spec("absolute path in the guest", pattern=ABSOLUTE, max_length=4096)
    mode: str | None = spec('permissions in octal, e.g. "0755" (default: the source file\'s)', default=None, pattern=r"0?[0-7]{3}")
    template: bool = spec("render the file's contents with the template variables (node addresses, …)", default=False)


@dataclass(frozen=True)
class Share:
    src: str = spec("host folder: relative to the scenario's folder (and inside it), or absolute")
    dest: str = spec("absolute mount point in the guest", pattern=ABSOLUTE, max_length=4096)
    readonly: bool = spec("the hypervisor refuses every write (default); false lets the guest write to the host folder", default=True)


@dataclass(frozen=True)
class ExecStep:
    run: str = spec("shell command (template variables allowed)")
    timeout: int = spec("seconds it may take", default=DEFAULT_TIMEOUT, minimum=1, maximum=3600)


@dataclass(frozen=True)
class Expect:
    exit: int | Literal["nonzero"] = spec("exit status, or nonzero", default=0, minimum=0, maximum=255)
    stdout: str | None = spec("regular expression the standard output must contain (re.search)", default=None, max_length=1000)
    stderr: str | None = spec("regular expression the standard error must contain (re.search)", default=None, max_length=1000)


@dataclass(frozen=True)
class Retry:
    for_: int = spec("seconds to keep running the command until it passes", key="for", minimum=1, maximum=600)
    every: int = spec("seconds between attempts", default=1, minimum=1, maximum=60)


@dataclass(frozen=True)
class CommandCheck:
    node: str = spec("VM, container or host the command runs on (not `on:`: YAML 1.1 readers such as PyYAML read a bare `on` key as true)", pattern=NAME, max_length=VM_NAME_MAX)
    run: str = spec("shell command (template variables allowed)")
    expect: Expect = spec("what the command must give", default_factory=Expect)
    retry: Retry | None = spec("run again until it passes or the time is up", default=None)
    timeout: int = spec("seconds one attempt may take", default=30, minimum=1, maximum=600)
    name: str | None = spec("a name for this check in the summary, the report and JUnit", default=None, max_length=120)


def _base_dir(rules: Rules) -> Path:
    return Path(rules.file).resolve().parent


def host_path(base: Path, src: str) -> tuple[Path, str | None]:
    """The host path of a `src`, and why it is not usable (None: fine as far as its place goes)."""
    path = Path(src)
    if path.is_absolute():
        return path, None
    resolved = (base / path).resolve()
    try:
        resolved.relative_to(base)
    except ValueError:
        return resolved, f"{src!r} leads outside the scenario's folder {base} (give an absolute path to mean it)"
    return resolved, None


def _host_source(rules: Rules, path: str, base: Path, text: str, *, folder: bool) -> Path | None:
    """The host file (or folder) a `src:` names, if it is usable; else a located problem and None."""
    src, why = host_path(base, text)
    if why:
        rules.add(path, why)
    elif folder and not src.is_dir():
        rules.add(path, f"no folder {src}")
    elif not folder and not src.is_file():
        rules.add(path, f"no file {src}" + (" (it is a folder: use shares:)" if src.is_dir() else ""))
    else:
        return src
    return None


def _guest_path(rules: Rules, path: str, text: str) -> None:
    if posixpath.normpath(text) != text.rstrip("/") or not text.startswith("/"):
        rules.add(path, f"{text!r} is not a plain absolute path (no '..', '.', '//')")


def _validate_template(rules: Rules, path: str, text: str, variables: dict[str, Any]) -> None:
    try:
        render(text, variables)
    except TemplateError as exc:
        rules.add(path, str(exc))


def _validate(rules: Rules) -> None:
    scenario = rules.scenario
    base = _base_dir(rules)
    variables = scenario_variables(scenario)
    for i, vm in enumerate(scenario.vms):
        total = 0
        for k, f in enumerate(vm.files):
            path = f"vms[{i}].files[{k}]"
            _guest_path(rules, f"{path}.dest", f.dest)
            src = _host_source(rules, f"{path}.src", base, f.src, folder=False)
            if src is not None:
                total += src.stat().st_size
                if f.template:
                    try:
                        _validate_template(rules, f"{path}.src", src.read_text(), variables)
                    except (OSError, UnicodeDecodeError) as exc:
                        rules.add(f"{path}.src", f"template: true needs a UTF-8 text file: {exc}")
        if total > MAX_FILES_BYTES:
            rules.add(f"vms[{i}].files", f"{total} bytes in all; at most {MAX_FILES_BYTES} per VM")
        if len(vm.shares) > MAX_SHARES:
            rules.add(f"vms[{i}].shares", f"at most {MAX_SHARES} shares per VM")
        for k, s in enumerate(vm.shares):
            path = f"vms[{i}].shares[{k}]"
            _guest_path(rules, f"{path}.dest", s.dest)
            _host_source(rules, f"{path}.src", base, s.src, folder=True)
    for node_path, node in [(f"vms[{i}]", vm) for i, vm in enumerate(scenario.vms)] + [(n.path, n.spec) for n in feature_nodes(scenario)]:
        for k, step in enumerate(node.exec):
            text = step if isinstance(step, str) else step.run
            _validate_template(rules, f"{node_path}.exec[{k}]" + ("" if isinstance(step, str) else ".run"), text, variables)


def _validate_check(rules: Rules, check: CommandCheck, path: str) -> None:
    if check.node not in node_names(rules.scenario):
        rules.add(f"{path}.node", f"no {rules.node_words()} named {check.node!r}")
    _validate_template(rules, f"{path}.run", check.run, scenario_variables(rules.scenario))
    for key in ("stdout", "stderr"):
        pattern = getattr(check.expect, key)
        if pattern is None:
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            rules.add(f"{path}.expect.{key}", f"not a regular expression: {exc}")
    if check.retry is not None and check.retry.every > check.retry.for_:
        rules.add(f"{path}.retry.every", f"every {check.retry.every} s is longer than for {check.retry.for_} s: one attempt only")


MODEL = ModelExtension(
    vm_fields=(
        decl("files", list[FileCopy], spec("files copied into the guest before exec (src relative to the scenario file)", default_factory=list)),
        decl("shares", list[Share], spec("host folders mounted in the guest before exec (virtio-9p)", default_factory=list)),
    ),
    node_fields=(decl("exec", list[str | ExecStep], spec("commands run in order after addressing; each must exit 0 (on VMs over SSH, on containers and hosts in their namespace)", default_factory=list)),),
    checks=(decl("command", CommandCheck | None, spec("run a command on a node and judge its exit status and output", default=None)),),
    check_validators={"command": _validate_check},
    validate=_validate,
)


# -- plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedFile:
    src: Path
    dest: str
    mode: int | None
    template: bool


@dataclass(frozen=True)
class PlannedMount:
    tag: str
    dest: str
    readonly: bool


@dataclass(frozen=True)
class PlannedStep:
    template: str  # rendered against the plan's variables when it runs (and when explained)
    timeout: int


@dataclass(frozen=True)
class NodeWork:
    """What one node gets: files and mounts (VMs), then its commands."""

    node: str
    files: tuple[PlannedFile, ...] = ()
    mounts: tuple[PlannedMount, ...] = ()
    steps: tuple[PlannedStep, ...] = ()


def _steps(node: Any) -> tuple[PlannedStep, ...]:
    return tuple(PlannedStep(s, DEFAULT_TIMEOUT) if isinstance(s, str) else PlannedStep(s.run, s.timeout) for s in node.exec)


def plan_work(ctx: PlanContext) -> tuple[tuple[NodeWork, ...], dict[str, tuple[PlannedShare, ...]]]:
    base = Path(ctx.scenario.source or ".").resolve().parent
    work: list[NodeWork] = []
    shares: dict[str, tuple[PlannedShare, ...]] = {}
    for vm in ctx.scenario.vms:
        files = tuple(PlannedFile(host_path(base, f.src)[0], f.dest, int(f.mode, 8) if f.mode else None, f.template) for f in vm.files)
        mounts = tuple(PlannedMount(SHARE_TAG.format(k), s.dest, s.readonly) for k, s in enumerate(vm.shares))
        if vm.shares:
            shares[vm.name] = tuple(PlannedShare(host_path(base, s.src)[0], SHARE_TAG.format(k), s.readonly) for k, s in enumerate(vm.shares))
        if files or mounts or vm.exec:
            work.append(NodeWork(vm.name, files, mounts, _steps(vm)))
    work += [NodeWork(n.name, steps=_steps(n.spec)) for n in feature_nodes(ctx.scenario) if n.spec.exec]
    return tuple(work), shares


def plan_variables(plan: Plan) -> dict[str, Any]:
    """Template variables with the plan's real MACs."""
    variables = scenario_variables(plan.scenario, {(n.vm, n.guest_name): n.mac for vm in plan.vms for n in vm.nics})
    for node in plan.nodes:
        variables[node.name] = variables["nodes"][node.name] = node_variables([(node.iface, node.cidr, node.mac)])
    return variables


def mount_command(mount: PlannedMount) -> str:
    options = "trans=virtio,version=9p2000.L" + (",ro" if mount.readonly else "")
    return f"modprobe 9pnet_virtio && modprobe 9p && mkdir -p {shlex.quote(mount.dest)} && mount -t 9p -o {options} {mount.tag} {shlex.quote(mount.dest)}"


# -- configure ---------------------------------------------------------------------------


class CommandError(VnetlabError):
    """A startup command failed: the lab is not what the scenario describes."""


def tar_of(files: tuple[PlannedFile, ...], variables: dict[str, Any]) -> bytes:
    """The files as one tar stream for `tar -x -C /` in the guest (modes kept, contents rendered where asked)."""
    out = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for f in files:
            data = f.src.read_bytes()
            if f.template:
                data = render(data.decode(), variables).encode()
            total += len(data)
            if total > MAX_FILES_BYTES:
                raise CommandError(f"files for one guest exceed {MAX_FILES_BYTES} bytes")
            info = tarfile.TarInfo(str(PurePosixPath(f.dest).relative_to("/")))
            info.size = len(data)
            info.mode = f.mode if f.mode is not None else stat.S_IMODE(f.src.stat().st_mode)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _log(run_dir: Path | None, node: str, command: str, result: CommandResult) -> None:
    if run_dir is None:
        return
    folder = run_dir / "exec"
    folder.mkdir(mode=0o700, exist_ok=True)
    with (folder / f"{node}.log").open("a") as log:
        log.write(f"$ {command}\n{result.stdout}{result.stderr}[exit {result.exit_code}]\n")


def run_step(node: LabNode, command: str, timeout: int) -> CommandResult:
    """A shell command on any node: `sh -c` in the guest over SSH, or the host's sh in the node's namespace."""
    return node.run(["sh", "-c", command], timeout=float(timeout))


def configure_node(plan: Plan, work: NodeWork, sessions: dict[str, GuestSSH], run_dir: Path | None, variables: dict[str, Any]) -> None:
    ssh = sessions.get(work.node)
    if work.files and ssh is not None:
        ssh.run("tar -x -f - -C /", stdin=tar_of(work.files, variables), timeout=120.0)
    for mount in work.mounts:
        if ssh is not None:
            result = ssh.run(mount_command(mount), timeout=30.0, check=False)
            if result.exit_code != 0:
                raise CommandError(f"{work.node}: mounting share {mount.tag} at {mount.dest} failed (exit {result.exit_code}): {excerpt(result.stderr + result.stdout)} — the qemu user must be able to read the host folder")
    node = lab_node(plan, sessions, work.node)
    for step in work.steps:
        command = render(step.template, variables)
        result = run_step(node, command, step.timeout)
        _log(run_dir, work.node, command, result)
        if result.exit_code != 0:
            raise CommandError(f"{work.node}: exec `{command}` exited {result.exit_code}; last output: {excerpt(result.stdout + result.stderr)}")


# -- the command check -------------------------------------------------------------------


def _expected(expect: Expect) -> str:
    parts = ["a nonzero exit" if expect.exit == "nonzero" else f"exit {expect.exit}"]
    parts += [f"{key} matching {pattern!r}" for key, pattern in (("stdout", expect.stdout), ("stderr", expect.stderr)) if pattern is not None]
    return " and ".join(parts)


def judge_output(expect: Expect, result: CommandResult) -> bool:
    exit_ok = result.exit_code != 0 if expect.exit == "nonzero" else result.exit_code == expect.exit
    out_ok = expect.stdout is None or re.search(expect.stdout, result.stdout[-MAX_MATCHED:]) is not None
    err_ok = expect.stderr is None or re.search(expect.stderr, result.stderr[-MAX_MATCHED:]) is not None
    return exit_ok and out_ok and err_ok


def run_command_check(ctx: CheckContext, check: CommandCheck) -> CheckResult:
    command = render(check.run, plan_variables(ctx.plan))
    node = ctx.node(check.node)
    deadline = time.monotonic() + (check.retry.for_ if check.retry else 0)
    attempts = 0
    while True:
        attempts += 1
        result = run_step(node, command, check.timeout)
        ok = judge_output(check.expect, result)
        if ok or check.retry is None or time.monotonic() + check.retry.every > deadline:  # no retry: one attempt, whatever the clock says
            break
        time.sleep(check.retry.every)
    tries = f" after {attempts} attempt(s)" if check.retry else ""
    detail = (
        f"ran `{command}` on {check.node}: expected {_expected(check.expect)}; got exit {result.exit_code}{tries}"
        + (f", stdout: '{excerpt(result.stdout, 200)}'" if result.stdout.strip() else ", no stdout")  # excerpt shows escapes once: no repr on top
        + (f", stderr: '{excerpt(result.stderr, 200)}'" if result.stderr.strip() else "")
    )
    data = {"command": command, "exit": result.exit_code, "attempts": attempts, "stdout_tail": excerpt(result.stdout, 2000), "stderr_tail": excerpt(result.stderr, 2000)}
    return CheckResult(check.name or f"command on {check.node}: {command}", "command", ok, detail, data=data)


# -- views -------------------------------------------------------------------------------


def _runs_in(plan: Plan, name: str) -> str | None:
    """The namespace a node's commands run in, None for a guest."""
    return next((n.namespace for n in plan.nodes if n.name == name), None)


def explain_lines(plan: Plan) -> list[str]:
    variables = plan_variables(plan)
    lines: list[str] = []
    for work in plan.part("commands"):
        ns = _runs_in(plan, work.node)
        lines.append(f"# {work.node}")
        if work.files:
            vm = plan.vm(work.node)
            for f in work.files:
                chmod = f" && chmod {f.mode:04o} {f.dest}" if f.mode is not None else ""
                remote = f"mkdir -p {posixpath.dirname(f.dest)} && cat > {f.dest}{chmod}"
                lines.append(f"{ssh_line(plan, vm)} {shlex.quote(remote)} < {f.src}" + ("    # its contents rendered as a template first" if f.template else ""))
        for mount in work.mounts:
            lines.append(f"# {mount.tag} is a <filesystem> of the domain (`vnetlab plan --xml`)" + (", read-only in QEMU" if mount.readonly else ""))
            lines.append(guest_line(work.node, mount_command(mount)))
        for step in work.steps:
            try:
                command = render(step.template, variables)
            except TemplateError as exc:
                command = f"{step.template}    # {exc}"
            lines.append(f"ip netns exec {ns} sh -c {shlex.quote(command)}" if ns else guest_line(work.node, command))
    return lines


def _check_commands(plan: Plan, check: CommandCheck) -> list[str]:
    command = render(check.run, plan_variables(plan))
    ns = _runs_in(plan, check.node)
    line = f"ip netns exec {ns} sh -c {shlex.quote(command)}" if ns else guest_line(check.node, command)
    return [line + f"    # must give {_expected(check.expect)}" + (f", retried for {check.retry.for_} s" if check.retry else "")]


class Commands(Feature):
    name = "commands"
    model = MODEL
    check_runners = {"command": run_command_check}
    check_commands = {"command": _check_commands}

    def plan(self, ctx: PlanContext) -> PlanPart | None:
        work, shares = plan_work(ctx)
        return PlanPart(data=work, vm_shares=shares) if work or shares else None

    def dump(self, plan: Plan) -> dict[str, Any]:
        work = plan.part("commands")
        if not work:
            return {}
        return {"commands": [
            {
                "node": w.node,
                **({"files": [{"src": str(f.src), "dest": f.dest, **({"mode": f"{f.mode:04o}"} if f.mode is not None else {}), **({"template": True} if f.template else {})} for f in w.files]} if w.files else {}),
                **({"mounts": [{"tag": m.tag, "dest": m.dest, "readonly": m.readonly} for m in w.mounts]} if w.mounts else {}),
                **({"exec": [s.template for s in w.steps]} if w.steps else {}),
            }
            for w in work
        ]}

    def configure_label(self, plan: Plan) -> str | None:
        work = plan.part("commands")
        if not work:
            return None
        return f"Files, shares and commands on {', '.join(w.node for w in work)}"

    def configure(self, plan: Plan, sessions: dict[str, GuestSSH], run_dir: Path) -> None:
        """Every node at once; a node's own steps in order. The first failure stops the run."""
        variables = plan_variables(plan)
        work = plan.part("commands")
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(work))) as pool:
            for future in [pool.submit(configure_node, plan, w, sessions, run_dir, variables) for w in work]:
                future.result()

    def explain(self, plan: Plan) -> list[Section]:
        if not plan.part("commands"):
            return []
        return [Section("Files, shares and startup commands", tuple(explain_lines(plan)), stage="configure")]


def node_runner(plan: Plan, sessions: dict[str, GuestSSH], name: str) -> LabNode:
    """For `vnetlab exec` and the pytest plugin: where a node's commands run."""
    if name in sessions:
        return lab_node(plan, sessions, name)
    ns = _runs_in(plan, name)
    if ns is None:
        raise CommandError(f"no node named {name!r} in lab {plan.lab!r}")
    return NamespaceNode(name, ns)
