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
import os
import posixpath
import shlex
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from vnetlab.backends.ssh import CommandResult, GuestSSH
from vnetlab.checks.base import CheckContext, CheckKind, CheckResult, Evidence, LabNode, NamespaceNode, lab_node
from vnetlab.checks.parse import MAX_MATCHED, PatternError, PatternTimeout, compile_pattern, excerpt, pattern_found
from vnetlab.checks.ping import guest_of, recorded
from vnetlab.errors import VnetlabError
from vnetlab.features.base import Feature
from vnetlab.model.scenario import NAME, VM_NAME_MAX, ModelExtension, decl
from vnetlab.model.templates import TemplateError, render, scenario_variables
from vnetlab.model.typed_yaml import spec
from vnetlab.model.validate import Rules, feature_nodes, node_names
from vnetlab.plan.planner import Plan, PlanContext, PlannedShare, PlannedVM, PlanPart
from vnetlab.plan.variables import plan_variables
from vnetlab.tools.explain import Section, comment, guest_line, sh, ssh_line

MAX_FILES_BYTES = 64 * 1024 * 1024  # per VM: what `files:` may send in all
MAX_SHARES = 8
DEFAULT_TIMEOUT = 60
SHARE_TAG = "vnlshare{}"
ABSOLUTE = r"/.*"  # an absolute path in the guest (normalisation is a rule of its own)


# -- the scenario keys -------------------------------------------------------------------


@dataclass(frozen=True)
class FileCopy:
    src: str = spec("file on the host, in the scenario's folder (relative to it); elsewhere only with --allow-host-paths")
    dest: str = spec("absolute path in the guest", pattern=ABSOLUTE, max_length=4096)
    mode: str | None = spec('permissions in octal, e.g. "0755" (default: the source file\'s)', default=None, pattern=r"0?[0-7]{3}")
    template: bool = spec("render the file's contents with the template variables (node addresses, …)", default=False)


@dataclass(frozen=True)
class Share:
    src: str = spec("host folder, in the scenario's folder (relative to it); elsewhere only with --allow-host-paths")
    dest: str = spec("absolute mount point in the guest", pattern=ABSOLUTE, max_length=4096)
    readonly: bool = spec("the hypervisor refuses every write (default); false lets the guest write to the host folder", default=True)


@dataclass(frozen=True)
class ExecStep:
    run: str = spec("shell command (template variables allowed)")
    timeout: int = spec("seconds it may take", default=DEFAULT_TIMEOUT, minimum=1, maximum=3600)


@dataclass(frozen=True)
class Expect:
    exit: int | Literal["nonzero"] = spec("exit status, or nonzero", default=0, minimum=0, maximum=255)
    stdout: str | None = spec("regular expression the standard output must contain (Python's re syntax, searched in its last 256 KiB for at most 2 s)", default=None, max_length=1000)
    stderr: str | None = spec("regular expression the standard error must contain (Python's re syntax, searched in its last 256 KiB for at most 2 s)", default=None, max_length=1000)


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


# Where a scenario's files: and shares: may come from (docs/reliability.md, "Trust model"): its own folder,
# symbolic links resolved first; elsewhere only when the user says --allow-host-paths; and never from these,
# whatever the flag (the host's configuration and secrets, the kernel's views, vnetlab's and libvirt's state).
NEVER_SHARED = tuple(Path(p) for p in ("/etc", "/root", "/boot", "/dev", "/proc", "/sys", "/run", "/var/lib/vnetlab", "/var/lib/libvirt"))
ALLOW_HOST_PATHS = "--allow-host-paths"


def _base_dir(rules: Rules) -> Path:
    return Path(rules.file).resolve().parent


def host_path(base: Path, src: str) -> Path:
    """The host file or folder a `src:` names (relative to the scenario's folder), symbolic links resolved."""
    return (base / src).resolve()


def source_refusal(base: Path, src: str, allow_host_paths: bool) -> str | None:
    """Why a scenario may not read `src` (None: it may), by where it really is once links are resolved."""
    try:
        path = host_path(base, src)
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a loop of symbolic links
        return f"{src!r} is not a usable path: {exc}"
    via = f" (through a symbolic link: {src!r} resolves to {path})" if path != Path(os.path.normpath(base / src)) else ""
    if path == Path("/"):
        return f"{src!r} is the host's whole file system{via}: never copied or shared, even with {ALLOW_HOST_PATHS}"
    inside = path.is_relative_to(base)
    for never in NEVER_SHARED:
        # a scenario kept in its own folder below one of these (e.g. /root/labs/x) may still read its own files
        if path.is_relative_to(never) and not (inside and base.is_relative_to(never) and base != never):
            return f"{src!r} is {path}, in {never}{via}: vnetlab never copies or shares {never} into a guest, even with {ALLOW_HOST_PATHS}"
    if not inside and not allow_host_paths:
        return (
            f"{src!r} is {path}, outside the scenario's folder {base}{via}: a scenario reads files from its own folder only "
            f"(a scenario is code: see the trust model); move it there, or run with {ALLOW_HOST_PATHS} if you trust this scenario with {path}"
        )
    return None


def _host_source(rules: Rules, path: str, base: Path, text: str, *, folder: bool) -> Path | None:
    """The host file (or folder) a `src:` names, if it is usable; else a located problem and None."""
    why = source_refusal(base, text, rules.allow_host_paths)
    if why:
        rules.add(path, why)
        return None
    src = host_path(base, text)
    if folder and not src.is_dir():
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
            compile_pattern(pattern)
        except PatternError as exc:
            rules.add(f"{path}.expect.{key}", str(exc))
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
        files = tuple(PlannedFile(host_path(base, f.src), f.dest, int(f.mode, 8) if f.mode else None, f.template) for f in vm.files)
        mounts = tuple(PlannedMount(SHARE_TAG.format(k), s.dest, s.readonly) for k, s in enumerate(vm.shares))
        if vm.shares:
            shares[vm.name] = tuple(PlannedShare(host_path(base, s.src), SHARE_TAG.format(k), s.readonly) for k, s in enumerate(vm.shares))
        if files or mounts or vm.exec:
            work.append(NodeWork(vm.name, files, mounts, _steps(vm)))
    work += [NodeWork(n.name, steps=_steps(n.spec)) for n in feature_nodes(ctx.scenario) if n.spec.exec]
    return tuple(work), shares


def mount_command(mount: PlannedMount) -> str:
    options = "trans=virtio,version=9p2000.L" + (",ro" if mount.readonly else "")
    return f"modprobe 9pnet_virtio && modprobe 9p && mkdir -p {shlex.quote(mount.dest)} && mount -t 9p -o {options} {mount.tag} {shlex.quote(mount.dest)}"


# -- configure ---------------------------------------------------------------------------


class CommandError(VnetlabError):
    """A startup command failed: the lab is not what the scenario describes."""


def tar_of(files: tuple[PlannedFile, ...], variables: dict[str, Any]) -> bytes:
    """The files as one tar stream for `tar -x -C /` in the guest (modes kept, contents rendered where asked).

    The cap is checked before a file is read, and no file is read beyond it: a source that grew
    since the scenario was validated (a log, /dev/zero) costs at most MAX_FILES_BYTES of memory."""
    out = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for f in files:
            room = MAX_FILES_BYTES - total
            with f.src.open("rb") as src:
                if os.fstat(src.fileno()).st_size > room:
                    raise CommandError(f"files for one guest exceed {MAX_FILES_BYTES} bytes (at {f.src})")
                data = src.read(room + 1)  # one byte more than fits tells it is too big (a size the file did not say)
            if f.template and len(data) <= room:
                data = render(data.decode(), variables).encode()
            total += len(data)
            if total > MAX_FILES_BYTES:
                raise CommandError(f"files for one guest exceed {MAX_FILES_BYTES} bytes (at {f.src})")
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
        log.write(f"$ {command}\n{result.stdout}{result.stderr}[{result.ended}]\n")


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
            raise CommandError(f"{work.node}: exec `{command}` {result.exited}; last output: {excerpt(result.stdout + result.stderr)}")


# -- the command check -------------------------------------------------------------------


def shown(pattern: str) -> str:
    """A regular expression as the scenario spells it, quoted: repr() would double its backslashes."""
    if "'" not in pattern and pattern.isprintable():
        return f"'{pattern}'"
    if '"' not in pattern and pattern.isprintable():
        return f'"{pattern}"'
    return repr(pattern)


def _expected(expect: Expect) -> str:
    parts = ["a nonzero exit" if expect.exit == "nonzero" else f"exit {expect.exit}"]
    parts += [f"{key} matching {shown(pattern)}" for key, pattern in (("stdout", expect.stdout), ("stderr", expect.stderr)) if pattern is not None]
    return " and ".join(parts)


def judge_output(expect: Expect, result: CommandResult) -> tuple[bool, list[str]]:
    """Whether the result is what `expect` says, and why not when a pattern could not be searched to its end
    (it took too long: the check fails, with that said, rather than stall the run)."""
    ok = result.exit_code != 0 if expect.exit == "nonzero" else result.exit_code == expect.exit
    problems = []
    for key, pattern, text in (("stdout", expect.stdout, result.stdout), ("stderr", expect.stderr, result.stderr)):
        if pattern is None:
            continue
        try:
            ok = pattern_found(pattern, text) and ok
        except PatternTimeout as exc:
            ok = False
            problems.append(f"{key}: {exc}")
    return ok, problems


def collect_command(ctx: CheckContext, check: CommandCheck) -> Evidence:
    """Run it until it passes (its judgement, applied to each attempt) or the retry time is up; the last attempt is the evidence."""
    command = render(check.run, plan_variables(ctx.plan))
    node = ctx.node(check.node)
    deadline = time.monotonic() + (check.retry.for_ if check.retry else 0)
    attempts = 0
    while True:
        attempts += 1
        result = run_step(node, command, check.timeout)
        if judge_output(check.expect, result)[0] or check.retry is None or time.monotonic() + check.retry.every > deadline:  # no retry: one attempt, whatever the clock says
            break
        time.sleep(check.retry.every)
    kept = {"command": command, "exit": result.exit_code, **({"signal": result.signal} if result.signal else {}), "stdout": result.stdout[-MAX_MATCHED:], "stderr": result.stderr[-MAX_MATCHED:], "attempts": attempts}
    return Evidence(kept, guests=guest_of(ctx.plan, check.node))


def judge_command(plan: Plan, check: CommandCheck, evidence: Evidence) -> CheckResult:
    command = render(check.run, plan_variables(plan))
    result = recorded(evidence)
    attempts = int(evidence.data.get("attempts", 1))
    ok, problems = judge_output(check.expect, result)
    tries = f" after {attempts} attempt(s)" if check.retry else ""
    detail = (
        f"ran `{command}` on {check.node}: expected {_expected(check.expect)}; got {result.ended}{tries}"
        + (f", stdout: '{excerpt(result.stdout, 200)}'" if result.stdout.strip() else ", no stdout")  # excerpt shows escapes once: no repr on top
        + (f", stderr: '{excerpt(result.stderr, 200)}'" if result.stderr.strip() else "")
        + "".join(f"; {p}" for p in problems)
    )
    data = {"command": command, "exit": result.exit_code, "attempts": attempts, "stdout_tail": excerpt(result.stdout, 2000), "stderr_tail": excerpt(result.stderr, 2000)}
    if problems:
        data["pattern_timeouts"] = problems
    return CheckResult(check.name or f"command on {check.node}: {command}", "command", ok, detail, data=data)


COMMAND = CheckKind(collect_command, judge_command)


def run_command_check(ctx: CheckContext, check: CommandCheck) -> CheckResult:
    return COMMAND.run(ctx, check)


# -- views -------------------------------------------------------------------------------


def _runs_in(plan: Plan, name: str) -> str | None:
    """The namespace a node's commands run in, None for a guest."""
    return next((n.namespace for n in plan.nodes if n.name == name), None)


def _command_line(plan: Plan, node: str, command: str) -> str:
    """How `command` (a shell line) is typed to run at `node`: `sh -c` in its namespace, or in the guest."""
    ns = _runs_in(plan, node)
    return sh("ip", "netns", "exec", ns, "sh", "-c", command) if ns else guest_line(node, command)


def copy_line(plan: Plan, vm: PlannedVM, f: PlannedFile) -> str:
    """A file copied by hand: its bytes on ssh's stdin to `cat` in the guest (every word quoted at both ends:
    the guest's shell parses the remote command, the host's shell the whole line)."""
    remote = f"{sh('mkdir', '-p', posixpath.dirname(f.dest))} && cat > {shlex.quote(f.dest)}"
    if f.mode is not None:
        remote += f" && {sh('chmod', f'{f.mode:04o}', f.dest)}"
    return f"{ssh_line(plan, vm)} {shlex.quote(remote)} < {shlex.quote(str(f.src))}"


def explain_lines(plan: Plan) -> list[str]:
    variables = plan_variables(plan)
    lines: list[str] = []
    for work in plan.part("commands"):
        lines.append(comment(work.node))
        for f in work.files:
            lines.append(copy_line(plan, plan.vm(work.node), f) + ("    # its contents rendered as a template first" if f.template else ""))
        for mount in work.mounts:
            lines.append(f"# {mount.tag} is a <filesystem> of the domain (`vnetlab plan --xml`)" + (", read-only in QEMU" if mount.readonly else ""))
            lines.append(guest_line(work.node, mount_command(mount)))
        for step in work.steps:
            try:
                lines.append(_command_line(plan, work.node, render(step.template, variables)))
            except TemplateError as exc:
                lines.append(f"{_command_line(plan, work.node, step.template)}    {comment(str(exc))}")
    return lines


def _check_commands(plan: Plan, check: CommandCheck) -> list[str]:
    line = _command_line(plan, check.node, render(check.run, plan_variables(plan)))
    return [line + f"    {comment('must give ' + _expected(check.expect))}" + (f", retried for {check.retry.for_} s" if check.retry else "")]


class Commands(Feature):
    name = "commands"
    model = MODEL
    check_kinds = {"command": COMMAND}
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
