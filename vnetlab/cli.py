"""The `vnetlab` command line. Exit codes: 0 all good, 1 a check or step failed, 2 bad input, 130 interrupted."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Callable, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from vnetlab.errors import InputError, Interrupted
from vnetlab.printable import printable, printable_json
from vnetlab.model.typed_yaml import ValidationError

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
STUDENT_HELP = "draw the scenario's params (if it has any) for this student id (default: demo)"
EXPLAIN_HELP = "first print, step by step, the ip/bridge/tunctl/virsh/wg/ovs-vsctl commands that do the same by hand"
HOST_PATHS_HELP = (
    "let the scenario's files: and shares: come from anywhere on this host, not only its own folder (never /, /etc, /root, "
    "/boot, /dev, /proc, /sys, /run, /var/lib/vnetlab, /var/lib/libvirt); only for a scenario you trust: a scenario is code run as root"
)

EPILOG = """\
examples:
  vnetlab run two-vm-ping              boot, configure, check, tear down
  vnetlab run two-vm-ping --keep       ... and leave the lab up afterwards
  vnetlab up two-vm-ping --name lab1   bring a lab up and leave it running
  vnetlab check lab1                   run its checks again
  vnetlab down lab1                    remove it (idempotent; also after a crash)
  vnetlab plan two-vm-ping --xml       show names, MACs and domain XML without touching the system
  vnetlab exec lab1 vm1 -- ip route    run a command on any node of a lab
  vnetlab init mylab                   a starter lab folder: cd mylab && vnetlab run lab.yaml
  vnetlab setup                        install the host packages and start libvirtd (as root)
  vnetlab classroom start ex-two-vm-ping --seats 20
                                       a lab per student in the browser, a live teacher view
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vnetlab",
        description="Labs of real KVM/QEMU guests on Linux bridges, each inside its own network namespace, from one YAML scenario.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def lab_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("scenario", metavar="SCENARIO", help="scenario name (see `vnetlab list`) or path to a YAML file")
        sp.add_argument("--name", metavar="LAB", help="lab name (default: the scenario's name); `auto`: <scenario>-<random>, printed first, for labs side by side")
        sp.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto", help="kvm, tcg (software emulation), or auto: probe whether KVM really boots a guest (default)")
        sp.add_argument("--boot-timeout", type=float, default=180.0, metavar="S", help="seconds a guest may take to become reachable (default 180)")
        sp.add_argument("--boot-parallel", type=int, default=None, metavar="N", help="boot at most N guests at a time, the next when one's console says it is ready; 0: all at once (default: the host's cores + 1, the fastest measured; see docs/benchmark.md)")
        sp.add_argument("--cold", action="store_true", help="boot every guest instead of restoring it from a warm image (a guest of the same image, memory and NICs booted once and saved, made on first use; see docs/architecture.md)")
        sp.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report here (it is always kept in the run's artifact folder too)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the summary")
        sp.add_argument("--junit", type=Path, metavar="PATH", help="also write a JUnit XML report here (one testcase per check; always kept in the artifact folder)")
        sp.add_argument("--scenarios", type=Path, action="append", default=[], metavar="DIR", help="look for scenarios by name in DIR first (repeatable; then $VNETLAB_PATH, then the built-in ones)")
        sp.add_argument("--allow-host-paths", action="store_true", help=HOST_PATHS_HELP)
        sp.add_argument("--student", metavar="ID", help=STUDENT_HELP)

    run = sub.add_parser("run", help="run a scenario end to end and tear it down", description="Bring the lab up, run its checks, print a summary, tear everything down. Exit 0 iff every check passed.")
    lab_options(run)
    run.add_argument("--keep", action="store_true", help="leave the lab up after the checks (remove it with `vnetlab down`)")
    run.add_argument("--explain", action="store_true", help=EXPLAIN_HELP)

    up = sub.add_parser("up", help="bring a lab up and leave it running", description="Bring the lab up (network, guests, addresses) without running checks; it stays up until `vnetlab down`.")
    lab_options(up)
    up.add_argument("--explain", action="store_true", help=EXPLAIN_HELP)

    chk = sub.add_parser("check", help="run the checks of a lab that is up")
    chk.add_argument("lab", metavar="LAB")
    chk.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report here")
    chk.add_argument("-q", "--quiet", action="store_true")
    chk.add_argument("--junit", type=Path, metavar="PATH", help="also write a JUnit XML report here")
    chk.add_argument("--only", metavar="NAME", help="run only the check with this `name:`")

    judge = sub.add_parser(
        "judge", help="judge a run's checks again from what its folder kept",
        description="Re-make the plan from the scenario as run and its options (RUN_DIR/scenario.yaml, judging.json), and judge every check "
        "again from its evidence alone (evidence.json and the pcaps, each pcap checked against its SHA-256), as `run`, `check` or "
        "`exercise check` judged it then. A folder of an exercise check holds one run per task: each is judged. Exit 0 iff every check passes.",
    )
    judge.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run's artifact folder (printed by run/check as `artifacts:`)")
    judge.add_argument("--format", choices=["table", "json"], default="table")

    down = sub.add_parser("down", help="tear a lab down (idempotent)", description="Remove everything the lab's state file records: domains, taps, bridges, namespace.")
    target = down.add_mutually_exclusive_group(required=True)
    target.add_argument("lab", metavar="LAB", nargs="?")
    target.add_argument("--all", action="store_true", help="every lab vnetlab knows of")
    down.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only what was removed")

    sub.add_parser("status", help="labs that exist on this host, and whether their owner is alive")
    lst = sub.add_parser("list", help="scenarios and their descriptions: your folders' and the built-in ones", description="The scenarios of the search path: --scenarios DIR (repeatable), then $VNETLAB_PATH (folders separated by ':'), then the built-in ones. A name found in several folders is run from the first.")
    lst.add_argument("--scenarios", type=Path, action="append", default=[], metavar="DIR", help="a folder of labs to list first (repeatable)")

    plan = sub.add_parser("plan", help="show what a lab would create, touching nothing")
    plan.add_argument("scenario", metavar="SCENARIO")
    plan.add_argument("--name", metavar="LAB")
    plan.add_argument("--scenarios", type=Path, action="append", default=[], metavar="DIR", help="look for SCENARIO by name in DIR first (repeatable)")
    plan.add_argument("--accel", choices=["kvm", "tcg"], default="tcg", help="domain type to render (default tcg)")
    plan.add_argument("--xml", action="store_true", help="also print each domain's XML: one more YAML document per domain, {domain, xml} (read them with yaml.safe_load_all)")
    plan.add_argument("--xml-dir", type=Path, metavar="DIR", help="write each domain's XML to DIR/<domain>.xml, byte for byte as libvirt gets it")
    plan.add_argument("--explain", action="store_true", help="print the equivalent shell commands instead of the plan")
    plan.add_argument("--allow-host-paths", action="store_true", help=HOST_PATHS_HELP)
    plan.add_argument("--student", metavar="ID", help=STUDENT_HELP + "; the plan shows them")

    image = sub.add_parser("image", help="guest image commands")
    image_sub = image.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)
    build = image_sub.add_parser(
        "build", help="build guest images from Debian packages into the cache (mmdebstrap; no host packages)",
        description="Build (or find in the cache) the tiny image, and with --kind/--package or SCENARIOs the debian images and imported files they name. "
        "Prints JSON: the tiny image's files, and one entry per image built.",
    )
    build.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="build every image these scenarios' VMs name (names or YAML paths)")
    build.add_argument("--kind", choices=["tiny", "debian"], default="tiny", help="the image kind to build (default tiny; debian builds tiny too, for its kernel)")
    build.add_argument("--package", action="append", default=[], metavar="PKG", help="an extra Debian package for --kind debian (repeatable)")
    build.add_argument("--scenarios-dir", dest="scenario_dirs", type=Path, action="append", default=[], metavar="DIR", help="look for SCENARIO by name in DIR first (repeatable)")
    build.add_argument("--rebuild", action="store_true", help="build again even if a current image is cached (takes the mirror's current package versions)")
    listing = image_sub.add_parser("list", help="the cached images: kind, size, whether current, build time, locked packages")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    prune = image_sub.add_parser("prune", help="remove cached images that are not current (old recipes, changed files, interrupted builds)")
    prune.add_argument("--all", action="store_true", help="remove every cached image, current ones too")

    sub.add_parser("doctor", help="check this host for what labs need, with fixes")

    init = sub.add_parser("init", help="make a starter lab folder (scenario, schema, pytest file, README, CI workflow)", description="Write a new lab folder that runs as it is: lab.yaml (with the JSON Schema beside it for editors), test_lab.py for the pytest plugin, a README for students and a CI workflow. Then: cd DIR && sudo vnetlab run lab.yaml")
    init.add_argument("dir", type=Path, metavar="DIR", help="the folder to create (must not exist, or be empty)")
    init.add_argument("--from", dest="source", metavar="SCENARIO", help="start from this scenario (a name from `vnetlab list`, or a YAML file) instead of the starter lab")
    init.add_argument("--scenarios", type=Path, action="append", default=[], metavar="DIR", help="look for --from SCENARIO by name in DIR first (repeatable)")

    setup = sub.add_parser("setup", help="install the host packages labs need and start libvirtd/virtlogd (as root; idempotent)", description="Install the distribution's packages labs need (Debian 12 and 13, Ubuntu 22.04 and 24.04, and derivatives naming one of them), start virtlogd and libvirtd if they are not running (systemd units, or directly without systemd) and wait until libvirt answers. Says what it changed; safe to run again.")
    setup_what = setup.add_mutually_exclusive_group()
    setup_what.add_argument("--no-packages", action="store_true", help="only start the daemons")
    setup_what.add_argument("--packages-only", action="store_true", help="only install the packages; start no daemon, and keep the packages' install scripts from starting theirs (for chroots, containers and image-building CI steps)")
    add_tool_commands(sub)
    add_feature_commands(sub)
    from vnetlab.classroom.commands import add_commands as add_classroom_commands

    add_classroom_commands(sub)
    return p


def add_feature_commands(sub) -> None:
    """The commands the registered features bring (their `cli_commands` hook): cli.py names none of them."""
    for feature in registry().features:
        for command in feature.cli_commands():
            parser = sub.add_parser(command.name, help=command.help, description=command.description)
            command.arguments(parser)
            parser.set_defaults(feature_command=command)


def add_tool_commands(sub) -> None:
    """inspect, graph, ssh, console, shell, capture, schema: looking into and around labs."""
    ins = sub.add_parser("inspect", help="the live chain of a lab: domain → qemu PID → tun fd → tap → bridge → guest NIC", description="Read the running lab from the system (libvirt, /proc/<pid>/fd and fdinfo, netlink in the lab namespace, the guests over SSH) and flag every broken link of the chain. Exit 1 if something is broken.")
    ins.add_argument("lab", metavar="LAB")
    ins.add_argument("--format", choices=["table", "json"], default="table")
    ins.add_argument("--no-guest", action="store_true", help="do not SSH into the guests (host side only)")

    graph = sub.add_parser("graph", help="draw the topology (SVG, DOT or Mermaid)", description="Draw bridges, VMs, taps and addresses of a scenario, or of a running lab (then with its real names).")
    graph.add_argument("target", metavar="SCENARIO|LAB", help="a running lab's name, else a scenario name or YAML file")
    graph.add_argument("--format", choices=["svg", "dot", "mermaid"], default="svg")
    graph.add_argument("--scenarios", type=Path, action="append", default=[], metavar="DIR", help="look for SCENARIO by name in DIR first (repeatable)")
    graph.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")
    graph.add_argument("--no-management", action="store_true", help="leave out vnetlab's management bridge and NICs")

    ssh = sub.add_parser("ssh", help="SSH into a guest (interactive, or run a command after --)", description="Without a command: an interactive session through the system ssh client inside the lab namespace (pinned host key). With `-- COMMAND`: run it over paramiko and exit with its status.")
    ssh.add_argument("lab", metavar="LAB")
    ssh.add_argument("vm", metavar="VM")
    ssh.add_argument("remote_command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="command to run in the guest")
    ssh.add_argument("--timeout", type=float, default=60.0, metavar="S", help="for a command: seconds it may take (default 60)")

    ex = sub.add_parser("exec", help="run a command on any node of a lab (VM, container, host) and exit with its status", description="Run COMMAND with sh -c on a node of a running lab: a VM over SSH, a container or outside host inside its namespace (as the scenario's exec: runs). Its output is printed as it is, and vnetlab exits with its status.")
    ex.add_argument("lab", metavar="LAB")
    ex.add_argument("node", metavar="NODE")
    ex.add_argument("remote_command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command (one shell line)")
    ex.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds it may take (default 60)")

    ne = sub.add_parser(
        "netem", help="show, change or clear the impairment of a guest NIC on a running lab (delay, jitter, loss, rate)",
        description="Without options, print the netem qdisc of NIC inside VM as the guest's tc shows it. With --delay/--jitter/--loss/--rate, "
        "replace it (the options not given are left out, not kept); with --clear, remove it. Runs where the lab's netem runs: on the host "
        "(the tap's ingress, redirected to an ifb device) for a NIC impaired there, else inside the guest.",
    )
    ne.add_argument("lab", metavar="LAB")
    ne.add_argument("vm", metavar="VM")
    ne.add_argument("nic", metavar="NIC", help="the interface name inside the guest, e.g. eth0")
    ne.add_argument("--delay", metavar="TIME", help="added delay, e.g. 40ms")
    ne.add_argument("--jitter", metavar="TIME", help="variation of the delay, e.g. 5ms (needs --delay)")
    ne.add_argument("--loss", metavar="PERCENT", help="frames dropped, e.g. 10%%")
    ne.add_argument("--rate", metavar="RATE", help="rate limit, e.g. 20mbit")
    ne.add_argument("--clear", action="store_true", help="remove the impairment")

    con = sub.add_parser("console", help="the guest's serial console (Ctrl-] to leave)", description="Attach to the guest's serial console through libvirt (a root shell runs on it). When stdin is not a terminal, send stdin and print what comes back until the console is quiet.")
    con.add_argument("lab", metavar="LAB")
    con.add_argument("vm", metavar="VM")
    con.add_argument("--quiet-for", type=float, default=1.0, metavar="S", help="non-interactive: stop after S seconds without output (default 1)")

    sh = sub.add_parser("shell", help="a shell inside the lab's network namespace", description="Your shell inside the lab namespace, where `bridge link`, `ip link`, `tcpdump -i br0` see the lab.")
    sh.add_argument("lab", metavar="LAB")
    sh.add_argument("-c", dest="shell_command", metavar="COMMAND", help="run this command instead of an interactive shell")

    cap = sub.add_parser("capture", help="live capture on a lab bridge or interface", description="Capture in the lab namespace. `-w FILE` writes pcap (`-w -`: pcap to stdout, e.g. | wireshark -k -i -); otherwise one line per packet. Stops after -c packets, --timeout seconds or Ctrl-C.")
    cap.add_argument("lab", metavar="LAB")
    cap.add_argument("iface", metavar="BRIDGE|IFACE")
    cap.add_argument("-w", dest="write", metavar="FILE", help="pcap file, or - for stdout")
    cap.add_argument("-c", dest="count", type=int, metavar="COUNT", help="stop after COUNT packets")
    cap.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")

    schema = sub.add_parser("schema", help="print the JSON Schema of scenario files (for editors)")
    schema.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")


def make_console(*, stderr: bool = False) -> Console:
    """Human output: no emoji codes (`:cd:` in a MAC stays text), no highlighting, and on a pipe
    no hard wrapping at 80 columns (CI logs are grepped). Machine output never goes through it."""
    probe = Console(stderr=stderr)
    columns = os.environ.get("COLUMNS", "")
    width = None if probe.is_terminal or columns.isdigit() else 10_000  # COLUMNS, when set, is the reader's choice
    return PrintableConsole(stderr=stderr, highlight=False, emoji=False, width=width)


class PrintableConsole(Console):
    """Every string printed (and every string cell of a table) goes through vnetlab.printable first:
    errors, inspect rows, capture lines and check details may quote guests and remote hosts, whose
    escape sequences must reach the terminal as text. Text objects are made printable where they are
    built (so that tables lay them out at their shown width); whatever is missed there is escaped
    when the rendered text is written, all but rich's own cursor and style codes."""

    def render_str(self, text: str, **kwargs):  # type: ignore[no-untyped-def, override]
        return super().render_str(printable(text), **kwargs)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(s if s.control else Segment(printable(s.text), s.style) for s in buffer)


def write_exact(text: str | bytes) -> None:
    """Machine-readable output (YAML, XML, JSON, DOT, commands): the bytes as they are."""
    data = text.encode() if isinstance(text, str) else text
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def registry():
    from vnetlab.compose import registry as composed

    return composed()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = make_console()
    err = make_console(stderr=True)
    try:
        feature_command = getattr(args, "feature_command", None)
        if feature_command is not None:
            from vnetlab.features.base import CliContext

            return feature_command.run(args, CliContext(out, err, registry(), write_exact))
        return COMMANDS[args.command](args, out, err)
    except ValidationError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/] {escape(str(problem))}", soft_wrap=True)
        return EXIT_INPUT
    except InputError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_INPUT
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except Interrupted as exc:
        err.print(f"interrupted ({exc}): {escape(exc.consequence)}", soft_wrap=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 — the CLI's last line of defence: one readable message
        if os.environ.get("VNETLAB_DEBUG"):
            traceback.print_exc()
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        if not _is_expected(exc):
            err.print("[dim](unexpected error; set VNETLAB_DEBUG=1 for a traceback)[/]")
        return EXIT_FAIL


def entry() -> NoReturn:
    """The `vnetlab` command (and `python -m vnetlab`).

    Freezing the garbage collector first cuts the interpreter's shutdown from ~0.1 s to
    ~0.015 s after a run (it no longer sweeps the ~70,000 objects scapy and friends leave).
    Nothing depends on their finalizers: labs are torn down and reports closed by now.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


def _is_expected(exc: Exception) -> bool:
    from vnetlab.errors import VnetlabError

    return isinstance(exc, VnetlabError)


def _runner(args, err: Console):
    from vnetlab.run.lab import LabRunner, Options
    from vnetlab.run.progress import Progress

    before_apply = _print_explain if getattr(args, "explain", False) else None
    options = Options(
        lab=getattr(args, "name", None), accel=getattr(args, "accel", "auto"), boot_timeout=getattr(args, "boot_timeout", 180.0),
        boot_parallel=None if getattr(args, "boot_parallel", None) is None else max(0, args.boot_parallel), before_apply=before_apply,
        scenario_dirs=getattr(args, "scenarios", []), allow_host_paths=getattr(args, "allow_host_paths", False), student=getattr(args, "student", None),
        cold=getattr(args, "cold", False),
    )
    return LabRunner(options, Progress(err, quiet=getattr(args, "quiet", False)), registry())


def _print_explain(plan) -> None:
    from vnetlab.tools.explain import explain

    write_exact(explain(plan))


def _finish(runner, outcome, args, out: Console) -> int:
    from vnetlab.tools.report import print_summary, save_reports

    save_reports(outcome, runner.progress.steps, runner.progress.events, report=args.report, junit=args.junit)
    print_summary(out, outcome, runner.progress.steps, runner.model)
    return EXIT_OK if outcome.ok else EXIT_FAIL


def _reported(runner, args, out: Console, command: Callable[[], int]) -> int:
    """Run a lab command; once a lab exists, a failure still writes the reports and the summary."""
    from vnetlab.tools.report import save_reports

    try:
        return command()
    except (Interrupted, KeyboardInterrupt):
        if runner.outcome is not None:
            save_reports(runner.outcome, runner.progress.steps, runner.progress.events, report=args.report, junit=args.junit)
        raise
    except ValidationError:
        raise
    except Exception:
        if runner.outcome is None:  # failed before the lab existed (or: no such lab): the message alone says it
            raise
        _finish(runner, runner.outcome, args, out)
        return EXIT_FAIL


def cmd_run(args, out: Console, err: Console, *, check: bool = True) -> int:
    runner = _runner(args, err)

    def run() -> int:
        outcome = runner.run(args.scenario, keep=args.keep if check else True, check=check)
        if not check:  # `up`: no checks ran, so nothing failed; how each guest came up is reported
            _finish(runner, dataclasses.replace(outcome, checks=[], kept=True), args, out)
            return EXIT_OK
        return _finish(runner, outcome, args, out)

    return _reported(runner, args, out, run)


def cmd_up(args, out: Console, err: Console) -> int:
    return cmd_run(args, out, err, check=False)


def cmd_check(args, out: Console, err: Console) -> int:
    runner = _runner(args, err)
    return _reported(runner, args, out, lambda: _finish(runner, runner.check(args.lab, only=args.only), args, out))


def cmd_judge(args, out: Console, err: Console) -> int:
    from vnetlab.checks.evidence import EVIDENCE_FILE, EvidenceError
    from vnetlab.checks.runner import judge_run
    from vnetlab.tools.report import tally_text

    folders = [args.run_dir] if (args.run_dir / EVIDENCE_FILE).exists() else sorted(p.parent for p in args.run_dir.glob(f"*/{EVIDENCE_FILE}"))
    if not folders:
        raise EvidenceError(f"{args.run_dir} holds no {EVIDENCE_FILE} (nor a folder of one): not a run folder that kept its evidence")
    judged = [judge_run(folder, registry()) for folder in folders]
    ok = all(r.ok for j in judged for r in j.results)
    if args.format == "json":
        write_exact(printable_json([{"run_dir": str(f), "lab": j.setting.lab, "scenario": j.plan.scenario.name, "checks": j.setting.checks, "wire": j.collected.wire, "ok": all(r.ok for r in j.results), "results": [r.to_json() for r in j.results]} for f, j in zip(folders, judged)], indent=2) + "\n")
        return EXIT_OK if ok else EXIT_FAIL
    for folder, j in zip(folders, judged):
        table = Table(title=f"Judged again — {folder}", title_justify="left")
        table.add_column("", width=2)
        table.add_column("check")
        table.add_column("detail", overflow="fold")
        for r in j.results:
            table.add_row("[green]✓[/]" if r.ok else "[red]✗[/]", Text(printable(r.name)), Text(printable(r.detail)))  # the evidence may be a student's bundle
        out.print(table)
        passed = sum(r.ok for r in j.results)
        wire = ", graded on the wire" if j.collected.wire else ""
        out.print(Text(f"{'PASS' if passed == len(j.results) else 'FAIL'} {j.plan.scenario.name} (lab {j.setting.lab}, {j.setting.checks}{wire}): {tally_text(j.results)}"), soft_wrap=True)
    return EXIT_OK if ok else EXIT_FAIL


def cmd_down(args, out: Console, err: Console) -> int:
    """Every lab is taken as far down as it goes, whatever the others do; per lab, what was removed
    and what is left (kept in its state file). Exit 1 if anything is left."""
    from vnetlab.run.lab import TeardownIncomplete, lab_statuses

    runner = _runner(args, err)
    labs = [s.lab for s in lab_statuses(runner.options.layout)] if args.all else [args.lab]
    if args.all and not labs:
        out.print("no labs")
    unfinished: list[str] = []
    for lab in labs:
        try:
            report = runner.down(lab)
        except TeardownIncomplete as exc:
            unfinished.append(lab)
            removed = ", ".join(f"{r.kind} {r.name}" for r in exc.result.removed) or "nothing"
            left = ", ".join(f"{r.kind} {r.name}" for r in exc.result.left)
            out.print(Text(printable(f"lab {lab}: removed {removed}; left {left} (kept in its state file)")), soft_wrap=True)
            for problem in exc.result.problems:
                err.print(Text(printable(f"  {problem}")), soft_wrap=True)
            continue
        except Exception as exc:  # noqa: BLE001 — with --all, one lab that fails does not stop the others
            if not args.all:
                raise
            unfinished.append(lab)
            out.print(Text(printable(f"lab {lab}: not removed: {exc}")), soft_wrap=True)
            continue
        out.print(f"lab {lab}: removed" if report.existed else f"lab {lab}: nothing to remove")
    if unfinished:
        again = f"vnetlab down {unfinished[0]}" if len(unfinished) == 1 else "vnetlab down LAB"
        err.print(Text.assemble(("error:", "red"), f" not everything was removed ({', '.join(unfinished)}): fix the cause above, then run `{again}` again"), soft_wrap=True)
        return EXIT_FAIL
    return EXIT_OK


def cmd_status(args, out: Console, err: Console) -> int:
    from vnetlab.run.lab import lab_statuses
    from vnetlab.paths import Layout

    statuses = lab_statuses(Layout())
    if not statuses:
        out.print("no labs")
        return EXIT_OK
    table = Table(title="Labs")
    for col in ("lab", "scenario", "phase", "owner", "namespace", "domains"):
        table.add_column(col)
    for s in statuses:
        if s.phase == "up" and not s.held:
            owner = "n/a"  # handed over by `up` / `run --keep`: it outlives the command that built it
        elif s.owner_alive:
            owner = f"alive (pid {s.pid})"
        else:  # the command died mid-way (kill -9, crash, reboot): only `down` finishes the job
            owner = f"[red]dead[/] (pid {s.pid or '?'}): run `vnetlab down {s.lab}`"
        table.add_row(s.lab, Text(s.scenario), s.phase, owner, "present" if s.namespace else "missing", Text(", ".join(f"{d} ({st})" for d, st in s.domains.items())))
    out.print(table)
    problem = next((s.libvirt_problem for s in statuses if s.libvirt_problem), None)
    if problem:
        out.print(Text(printable(f"domains unknown: libvirtd is not answering ({problem})")), soft_wrap=True)
    return EXIT_OK


def cmd_list(args, out: Console, err: Console) -> int:
    from vnetlab.model.validate import load_scenario
    from vnetlab.paths import find_scenarios, search_path

    model = registry()
    table = Table(title="Scenarios", title_justify="left")
    for column in ("name", "kind", "description", "where"):
        table.add_column(column)
    taken: set[str] = set()
    for found in find_scenarios(search_path(args.scenarios)):
        where = "built in" if found.builtin else str(found.path)
        if found.name in taken:
            where += f" (hidden: `{found.name}` runs the one above)"
        taken.add(found.name)
        try:
            s = load_scenario(found.path, model)
            kind = "exercise" if s.exercise is not None else "lab"  # an exercise: the student does the work (`vnetlab exercise start`)
            table.add_row(Text(found.name), Text(kind), Text(s.description), Text(where))
        except ValidationError as exc:
            table.add_row(Text(found.name), Text("?"), Text(f"invalid: {exc.problems[0]}", style="red"), Text(where))
    out.print(table)
    return EXIT_OK


def cmd_plan(args, out: Console, err: Console) -> int:
    from vnetlab.run.lab import check_lab_name, load
    from vnetlab.plan.planner import PlanOptions, make_plan
    from vnetlab.plan.dump import plan_summary

    _, scenario = load(args.scenario, registry(), args.scenarios, lambda note: err.print(escape(note), soft_wrap=True), args.student, allow_host_paths=args.allow_host_paths)
    lab = args.name or scenario.name
    check_lab_name(lab)
    from vnetlab.backends.kernel_probe import host_capabilities

    plan = make_plan(scenario, lab, PlanOptions(domain_type="kvm" if args.accel == "kvm" else "qemu", host_kernel=host_capabilities()))
    for note in plan.notes:
        err.print(escape(note), soft_wrap=True)
    if args.explain:
        from vnetlab.tools.explain import explain

        write_exact(explain(plan))
        return EXIT_OK
    if args.xml_dir:
        args.xml_dir.mkdir(parents=True, exist_ok=True)
        for vm in plan.vms:
            (args.xml_dir / f"{vm.domain}.xml").write_text(vm.xml)
        err.print(f"wrote {len(plan.vms)} domain XML file(s) to {escape(str(args.xml_dir))}", soft_wrap=True)
    text = plan_summary(plan)
    if args.xml:  # the plan, then one document per domain: a YAML stream that loads back exactly
        text += "".join("---\n" + domain_document(vm.domain, vm.xml) for vm in plan.vms)
    write_exact(text)
    return EXIT_OK


def domain_document(domain: str, xml: str) -> str:
    """{domain, xml} as YAML with the XML as a literal block: readable, and yaml.safe_load gives it back unchanged."""
    import yaml

    class LiteralDumper(yaml.SafeDumper):
        pass

    LiteralDumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None))
    return yaml.dump({"domain": domain, "xml": xml}, Dumper=LiteralDumper, sort_keys=False, allow_unicode=True, width=float("inf"))


def cmd_image(args, out: Console, err: Console) -> int:
    from vnetlab.paths import Layout
    from vnetlab.tools import images

    cache = Layout().images
    if args.image_command == "list":
        rows = images.list_images(cache)
        if args.format == "json":
            write_exact(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
            return EXIT_OK
        table = Table(title=f"Images in {cache}", title_justify="left")
        for column in ("image", "kind", "current", "size", "built", "build", "packages / source"):
            table.add_column(column)
        for r in rows:
            build_time = f"{r.seconds:.0f} s" if r.seconds is not None else ""
            detail = r.detail + (f" ({r.locked} locked)" if r.locked else "")
            table.add_row(r.name, r.kind, "yes" if r.current else "no", f"{r.size / 2**20:.0f} MiB", r.built, build_time, escape(detail))
        out.print(table if rows else f"no images in {cache}: `vnetlab image build` makes the tiny one")
        return EXIT_OK
    if args.image_command == "prune":
        removed = images.prune_images(cache, everything=args.all)
        for path in removed:
            out.print(f"removed {escape(str(path))}", soft_wrap=True)
        out.print(f"{len(removed)} removed" if removed else "nothing to remove")
        return EXIT_OK

    from vnetlab.backends.image import ensure_image
    from vnetlab.backends.image_kinds import ImageRef
    from vnetlab.model.validate import vm_image
    from vnetlab.run.lab import load

    if args.package and args.kind != "debian":
        err.print("[red]error:[/] --package needs --kind debian")
        return EXIT_INPUT
    refs = [ImageRef(args.kind, tuple(sorted(set(args.package))))] if args.kind != "tiny" else []
    for ref in args.scenarios:
        _, scenario = load(ref, registry(), args.scenario_dirs, lambda note: err.print(escape(note), soft_wrap=True))
        refs += [vm_image(scenario, vm) for vm in scenario.vms]
    say = lambda m: err.print(f"  [dim]{escape(m)}[/]", soft_wrap=True)  # noqa: E731
    image = ensure_image(cache, rebuild=args.rebuild, progress=say)
    built = images.build_images(refs, cache, say, rebuild=args.rebuild) if refs else []
    write_exact(json.dumps({
        "kernel": str(image.kernel), "initrd": str(image.initrd), "kernel_version": image.kernel_version, "recipe_hash": image.recipe_hash,
        "images": [{"image": r.ref.label(), "kind": r.ref.kind, **({"disk": str(r.disk)} if r.disk else {})} for r in built],
    }, indent=2) + "\n")
    return EXIT_OK


def cmd_init(args, out: Console, err: Console) -> int:
    from vnetlab.model.schema import schema_text
    from vnetlab.tools.init import init_lab

    written = init_lab(args.dir, schema_text(registry()), args.source, args.scenarios)
    for path in written:
        out.print(str(path), markup=False, soft_wrap=True)
    err.print(f"next: cd {escape(str(args.dir))} && sudo vnetlab run lab.yaml", soft_wrap=True)
    return EXIT_OK


def cmd_setup(args, out: Console, err: Console) -> int:
    from vnetlab.tools.setup import setup

    report = setup(lambda m: err.print(f"  [dim]{escape(m)}[/]", soft_wrap=True), packages=not args.no_packages, daemons=not args.packages_only)
    for line in report.lines():
        out.print(line, markup=False, soft_wrap=True)
    return EXIT_OK


def cmd_doctor(args, out: Console, err: Console) -> int:
    from vnetlab.tools.doctor import diagnose

    findings = diagnose()
    table = Table(title="vnetlab doctor")
    for col in ("", "what", "detail", "fix"):
        table.add_column(col)
    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    for f in findings:
        table.add_row(marks[f.status], Text(f.name), Text(f.detail), Text(f.fix))
    out.print(table)
    return EXIT_FAIL if any(f.status == "fail" for f in findings) else EXIT_OK


def cmd_inspect(args, out: Console, err: Console) -> int:
    from vnetlab.tools.inspect import inspect_lab

    report = inspect_lab(args.lab, registry(), guests=not args.no_guest)
    if args.format == "json":
        write_exact(printable_json(report.to_json(), indent=2) + "\n")  # rows may quote a guest or another host
        return EXIT_OK if report.ok else EXIT_FAIL
    ns = "present" if report.namespace_present else "[red]missing[/]"
    out.print(f"lab [bold]{report.lab}[/] (scenario {report.scenario}), namespace {report.namespace}: {ns}")
    bridges = Table(title="Bridges", title_justify="left")
    for col in ("bridge", "type", "state", "addresses", "ports"):
        bridges.add_column(col)
    for b in report.bridges:
        state = b["state"] if not b["problems"] else f"[red]{b['state'] or 'missing'}[/]"
        bridges.add_row(b["name"], b["type"], state, ", ".join(b["addresses"]), ", ".join(b["ports"]))
    out.print(bridges)
    chain = Table(title="Chain per vNIC: domain (warm: restored from that warm image; cold: booted) → qemu PID → tun fd → tap → bridge (port state) → guest NIC", title_justify="left")
    for col in ("", "vm", "start", "pid", "fd", "tap", "bridge", "guest", "mac", "addresses"):
        chain.add_column(col, overflow="fold")
    problems: list[str] = []
    for vm in report.vms:
        problems += [f"{vm.name}: {p}" for p in vm.problems]
        for index, nic in enumerate(vm.nics):
            problems += [f"{vm.name} {nic.guest_name}: {p}" for p in nic.problems]
            bad = bool(nic.problems or vm.problems)
            chain.add_row(
                "[red]✗[/]" if bad else "[green]✓[/]",
                vm.name if vm.state == "running" else f"{vm.name} [red]({vm.state})[/]",
                (vm.start or "—") if index == 0 else "",
                str(vm.pid) if vm.pid else (f"[dim]on {vm.host}[/]" if vm.host else "[red]—[/]"),
                str(nic.tun_fd) if nic.tun_fd is not None else ("[dim]there[/]" if vm.host else "[red]none[/]"),
                nic.tap + ("" if (nic.tap_state, nic.tap_oper) == ("up", "UP") or (vm.host and nic.tap_state == "up") else f" [red]({nic.tap_state or 'missing'}/{nic.tap_oper or '—'})[/]"),
                (nic.bridge or "[red]none[/]") + ("" if nic.port_state in (None, "forwarding") else f" [red]({nic.port_state})[/]") + ("" if nic.bridge in (None, nic.bridge_planned) else f" [red]≠ {nic.bridge_planned}[/]"),
                nic.guest_iface or nic.guest_name,
                nic.mac,
                ", ".join(nic.guest_addresses) or (f"[dim]{nic.address_planned} (planned)[/]" if nic.address_planned else ""),
            )
    out.print(chain)
    if report.others:
        others = Table(title="Other nodes", title_justify="left")
        for col in ("", "what", "planned", "state"):
            others.add_column(col)
        for row in report.others:
            others.add_row("[red]✗[/]" if row.problems else "[green]✓[/]", Text(printable(row.what)), Text(printable(row.planned)), Text(printable(row.state)))
            problems += [f"{row.what}: {p}" for p in row.problems]
        out.print(others)
    for b in report.bridges:
        problems += b["problems"]
    if not report.namespace_present:
        problems.insert(0, f"namespace {report.namespace} is missing")
    for p in problems:
        out.print(f"[red]✗[/] {escape(p)}", soft_wrap=True)
    out.print("[green]every link of the chain is in place[/]" if report.ok else f"[red]{len(problems)} broken link(s)[/]")
    return EXIT_OK if report.ok else EXIT_FAIL


def _lab_exists(name: str) -> bool:
    from vnetlab.run.lab import LabError, check_lab_name
    from vnetlab.paths import Layout
    from vnetlab.run.state import STATE_FILE

    try:
        check_lab_name(name)
    except LabError:
        return False
    return (Layout().lab_dir(name) / STATE_FILE).exists()


def cmd_graph(args, out: Console, err: Console) -> int:
    from vnetlab.tools.graph import to_dot, to_mermaid, to_svg, topology

    if _lab_exists(args.target):
        from vnetlab.run.lab import running_plan

        plan = running_plan(args.target, registry())
    else:
        from vnetlab.plan.planner import PlanOptions, make_plan
        from vnetlab.run.lab import check_lab_name, load

        _, scenario = load(args.target, registry(), args.scenarios, lambda note: err.print(escape(note), soft_wrap=True))
        check_lab_name(scenario.name)
        plan = make_plan(scenario, scenario.name, PlanOptions())
    topo = topology(plan, management=not args.no_management)
    text = to_mermaid(topo) if args.format == "mermaid" else to_dot(topo)
    data = to_svg(text) if args.format == "svg" else text.encode()
    if args.output:
        args.output.write_bytes(data)
        err.print(f"wrote {args.output} ({args.format}, {len(topo.nodes)} node(s), {len(topo.bridges)} bridge(s), {len(topo.edges)} link(s))")
    else:
        write_exact(data)
    return EXIT_OK


def cmd_ssh(args, out: Console, err: Console) -> int:
    from vnetlab.tools import interactive

    command = args.remote_command[1:] if args.remote_command[:1] == ["--"] else args.remote_command
    plan = _live_plan(args.lab)
    if not command:
        return interactive.ssh_interactive(plan, args.vm)
    stdin = None if sys.stdin.isatty() else sys.stdin.buffer.read()
    code, stdout, stderr = interactive.ssh_command(plan, args.vm, " ".join(command), timeout=args.timeout, stdin=stdin)
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return code


def cmd_exec(args, out: Console, err: Console) -> int:
    from vnetlab.tools.node_exec import exec_on

    command = args.remote_command[1:] if args.remote_command[:1] == ["--"] else args.remote_command
    if not command:
        err.print("error: no command (vnetlab exec LAB NODE -- COMMAND)")
        return EXIT_INPUT
    stdin = None if sys.stdin.isatty() else sys.stdin.buffer.read()
    result = exec_on(_live_plan(args.lab), args.node, " ".join(command), timeout=args.timeout, stdin=stdin)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.signal:  # as a shell reports it: 128 + the signal's number
        import signal

        err.print(f"the command was killed by signal {escape(result.signal)}", soft_wrap=True)
        number = getattr(signal, f"SIG{result.signal}", None)
        return 128 + int(number) if number is not None else EXIT_FAIL
    return result.exit_code


def cmd_netem(args, out: Console, err: Console) -> int:
    from vnetlab.tools.netem import NetemValueError, change_live, parse_netem

    given = [args.delay, args.jitter, args.loss, args.rate]
    if args.clear and any(v is not None for v in given):
        err.print("[red]error:[/] --clear takes no --delay, --jitter, --loss or --rate")
        return EXIT_INPUT
    try:
        netem = parse_netem(*given) if any(v is not None for v in given) else None
    except NetemValueError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_INPUT
    write_exact(change_live(_live_plan(args.lab), args.vm, args.nic, netem, clear=args.clear) + "\n")
    return EXIT_OK


def cmd_console(args, out: Console, err: Console) -> int:
    from vnetlab.tools import interactive

    plan = _live_plan(args.lab)
    if sys.stdin.isatty():
        return interactive.console_interactive(plan, args.vm)
    interactive.console_exchange(plan, args.vm, sys.stdin.buffer.read(), sys.stdout.buffer, quiet_for=args.quiet_for)
    return EXIT_OK


def cmd_shell(args, out: Console, err: Console) -> int:
    from vnetlab.tools import interactive

    return interactive.shell(_live_plan(args.lab), args.shell_command)


def cmd_capture(args, out: Console, err: Console) -> int:
    from vnetlab.tools.live_capture import live_capture

    to_stdout = args.write == "-"

    def show(packet) -> None:
        out.print(f"{packet.time:.6f} {packet.summary()}", markup=False, highlight=False, soft_wrap=True)

    def ready() -> None:  # said once the socket is open, so a script may start its traffic on this line
        if not to_stdout:
            err.print(escape(f"capturing on {args.iface} in lab {args.lab}" + (f", writing {args.write}" if args.write else "") + " (Ctrl-C to stop)"), soft_wrap=True)

    stats = live_capture(_live_plan(args.lab), args.iface, pcap=args.write, count=args.count, timeout=args.timeout, on_packet=None if to_stdout else show, on_ready=ready)
    err.print(stats.line())
    return EXIT_OK


def cmd_schema(args, out: Console, err: Console) -> int:
    from vnetlab.model.schema import schema_text

    if args.output:
        args.output.write_text(schema_text(registry()))
        err.print(f"wrote {args.output}")
    else:
        write_exact(schema_text(registry()))
    return EXIT_OK


def cmd_classroom(args, out: Console, err: Console) -> int:
    from vnetlab.classroom.commands import run_command

    return run_command(args, out, err, registry())


def _live_plan(lab: str):
    from vnetlab.run.lab import running_plan

    return running_plan(lab, registry())


COMMANDS = {
    "run": cmd_run,
    "up": cmd_up,
    "check": cmd_check,
    "judge": cmd_judge,
    "down": cmd_down,
    "status": cmd_status,
    "list": cmd_list,
    "plan": cmd_plan,
    "image": cmd_image,
    "doctor": cmd_doctor,
    "setup": cmd_setup,
    "init": cmd_init,
    "inspect": cmd_inspect,
    "graph": cmd_graph,
    "ssh": cmd_ssh,
    "exec": cmd_exec,
    "netem": cmd_netem,
    "console": cmd_console,
    "shell": cmd_shell,
    "capture": cmd_capture,
    "schema": cmd_schema,
    "classroom": cmd_classroom,
}

if __name__ == "__main__":
    entry()
