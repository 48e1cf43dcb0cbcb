"""The `vnetlab` command line. Exit codes: 0 all good, 1 a check or step failed, 2 bad input, 130 interrupted."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vnetlab.typed_yaml import ValidationError

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = """\
examples:
  vnetlab run two-vm-ping              boot, configure, check, tear down
  vnetlab run two-vm-ping --keep       ... and leave the lab up afterwards
  vnetlab up two-vm-ping --name lab1   bring a lab up and leave it running
  vnetlab check lab1                   run its checks again
  vnetlab down lab1                    remove it (idempotent; also after a crash)
  vnetlab plan two-vm-ping --xml       show names, MACs and domain XML without touching the system
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
        sp.add_argument("--name", metavar="LAB", help="lab name (default: the scenario's name)")
        sp.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto", help="kvm, tcg (software emulation), or auto: probe whether KVM really boots a guest (default)")
        sp.add_argument("--boot-timeout", type=float, default=180.0, metavar="S", help="seconds a guest may take to become reachable (default 180)")
        sp.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report here (it is always kept in the run's artifact folder too)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the summary")

    run = sub.add_parser("run", help="run a scenario end to end and tear it down", description="Bring the lab up, run its checks, print a summary, tear everything down. Exit 0 iff every check passed.")
    lab_options(run)
    run.add_argument("--keep", action="store_true", help="leave the lab up after the checks (remove it with `vnetlab down`)")

    up = sub.add_parser("up", help="bring a lab up and leave it running", description="Bring the lab up (network, guests, addresses) without running checks; it stays up until `vnetlab down`.")
    lab_options(up)

    chk = sub.add_parser("check", help="run the checks of a lab that is up")
    chk.add_argument("lab", metavar="LAB")
    chk.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report here")
    chk.add_argument("-q", "--quiet", action="store_true")

    down = sub.add_parser("down", help="tear a lab down (idempotent)", description="Remove everything the lab's state file records: domains, taps, bridges, namespace.")
    target = down.add_mutually_exclusive_group(required=True)
    target.add_argument("lab", metavar="LAB", nargs="?")
    target.add_argument("--all", action="store_true", help="every lab vnetlab knows of")

    sub.add_parser("status", help="labs that exist on this host, and whether their owner is alive")
    sub.add_parser("list", help="scenarios and their descriptions")

    plan = sub.add_parser("plan", help="show what a lab would create, touching nothing")
    plan.add_argument("scenario", metavar="SCENARIO")
    plan.add_argument("--name", metavar="LAB")
    plan.add_argument("--accel", choices=["kvm", "tcg"], default="tcg", help="domain type to render (default tcg)")
    plan.add_argument("--xml", action="store_true", help="also print each domain's XML")

    image = sub.add_parser("image", help="guest image commands")
    image_sub = image.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)
    build = image_sub.add_parser("build", help="build the guest image offline from Debian packages (cached)")
    build.add_argument("--rebuild", action="store_true", help="build even if a current image is cached")

    sub.add_parser("doctor", help="check this host for what labs need, with fixes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        return COMMANDS[args.command](args, out, err)
    except ValidationError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/] {problem}", soft_wrap=True)
        return EXIT_INPUT
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 — the CLI's last line of defence: one readable message
        from vnetlab.lab import Interrupted

        if isinstance(exc, Interrupted):
            err.print(f"interrupted ({exc}): the lab was torn down")
            return EXIT_INTERRUPTED
        if os.environ.get("VNETLAB_DEBUG"):
            traceback.print_exc()
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        if not _is_expected(exc):
            err.print("[dim](unexpected error; set VNETLAB_DEBUG=1 for a traceback)[/]")
        return EXIT_FAIL


def _is_expected(exc: Exception) -> bool:
    from vnetlab.accel import AccelError
    from vnetlab.backends.libvirt_domains import HypervisorError
    from vnetlab.backends.linux_bridge import LinkError
    from vnetlab.configure import GuestError
    from vnetlab.image import ImageError
    from vnetlab.lab import LabError
    from vnetlab.netns import NamespaceError
    from vnetlab.ssh import SSHError

    return isinstance(exc, (AccelError, HypervisorError, LinkError, GuestError, ImageError, LabError, NamespaceError, SSHError))


def _runner(args, err: Console):
    from vnetlab.lab import LabRunner, Options
    from vnetlab.progress import Progress

    options = Options(lab=getattr(args, "name", None), accel=getattr(args, "accel", "auto"), boot_timeout=getattr(args, "boot_timeout", 180.0))
    return LabRunner(options, Progress(err, quiet=getattr(args, "quiet", False)))


def _finish(runner, outcome, args, out: Console) -> int:
    from vnetlab.report import print_summary, report_json, write_report

    data = report_json(outcome, runner.progress.steps)
    if outcome.artifacts.get("dir"):
        write_report(Path(str(outcome.artifacts["dir"])) / "report.json", data)
    if args.report:
        write_report(args.report, data)
    print_summary(out, outcome, runner.progress.steps)
    return EXIT_OK if outcome.ok else EXIT_FAIL


def cmd_run(args, out: Console, err: Console, *, check: bool = True) -> int:
    from vnetlab.lab import Interrupted, Outcome
    from vnetlab.report import report_json, write_report

    runner = _runner(args, err)
    keep = args.keep if check else True
    try:
        outcome = runner.run(args.scenario, keep=keep, check=check)
    except (Interrupted, KeyboardInterrupt):
        if runner.outcome is not None and args.report:
            write_report(args.report, report_json(runner.outcome, runner.progress.steps))
        raise
    except ValidationError:
        raise
    except Exception:
        if runner.outcome is None:  # failed before the lab existed: the message alone says it
            raise
        _finish(runner, runner.outcome, args, out)
        return EXIT_FAIL
    if not check:
        outcome = Outcome(outcome.scenario, outcome.lab, outcome.accel, artifacts=outcome.artifacts, kept=True)
        _finish(runner, outcome, args, out)
        return EXIT_OK
    return _finish(runner, outcome, args, out)


def cmd_up(args, out: Console, err: Console) -> int:
    return cmd_run(args, out, err, check=False)


def cmd_check(args, out: Console, err: Console) -> int:
    runner = _runner(args, err)
    outcome = runner.check(args.lab)
    return _finish(runner, outcome, args, out)


def cmd_down(args, out: Console, err: Console) -> int:
    from vnetlab.lab import lab_statuses

    runner = _runner(args, err)
    labs = [s.lab for s in lab_statuses(runner.options.layout)] if args.all else [args.lab]
    for lab in labs:
        out.print(f"lab {lab}: removed" if runner.down(lab) else f"lab {lab}: nothing to remove")
    if args.all and not labs:
        out.print("no labs")
    return EXIT_OK


def cmd_status(args, out: Console, err: Console) -> int:
    from vnetlab.lab import lab_statuses
    from vnetlab.paths import Layout

    statuses = lab_statuses(Layout())
    if not statuses:
        out.print("no labs")
        return EXIT_OK
    table = Table(title="Labs")
    for col in ("lab", "scenario", "phase", "owner", "namespace", "domains"):
        table.add_column(col)
    for s in statuses:
        owner = "n/a" if s.phase == "up" else ("alive" if s.owner_alive else "[red]dead: run `vnetlab down " + s.lab + "`[/]")
        table.add_row(s.lab, s.scenario, s.phase, owner, "present" if s.namespace else "missing", ", ".join(f"{d} ({st})" for d, st in s.domains.items()))
    out.print(table)
    return EXIT_OK


def cmd_list(args, out: Console, err: Console) -> int:
    from vnetlab.model import load_scenario
    from vnetlab.paths import scenario_files

    table = Table(title="Scenarios", title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for path in scenario_files():
        try:
            s = load_scenario(path)
            table.add_row(s.name, s.description)
        except ValidationError as exc:
            table.add_row(path.stem, f"[red]invalid: {exc.problems[0]}[/]")
    out.print(table)
    return EXIT_OK


def cmd_plan(args, out: Console, err: Console) -> int:
    from vnetlab.lab import check_lab_name, load
    from vnetlab.plan import PlanOptions, make_plan
    from vnetlab.plan_dump import plan_summary

    _, scenario = load(args.scenario)
    lab = args.name or scenario.name
    check_lab_name(lab)
    plan = make_plan(scenario, lab, PlanOptions(domain_type="kvm" if args.accel == "kvm" else "qemu"))
    out.print(plan_summary(plan), markup=False, highlight=False)
    if args.xml:
        for vm in plan.vms:
            out.print(f"--- {vm.domain}.xml", markup=False)
            out.print(vm.xml, markup=False, highlight=False)
    return EXIT_OK


def cmd_image(args, out: Console, err: Console) -> int:
    from vnetlab.image import ensure_image
    from vnetlab.paths import Layout

    image = ensure_image(Layout().images, rebuild=args.rebuild, progress=lambda m: err.print(f"  [dim]{m}[/]"))
    out.print(json.dumps({"kernel": str(image.kernel), "initrd": str(image.initrd), "kernel_version": image.kernel_version, "recipe_hash": image.recipe_hash}, indent=2), markup=False)
    return EXIT_OK


def cmd_doctor(args, out: Console, err: Console) -> int:
    from vnetlab.doctor import diagnose

    findings = diagnose()
    table = Table(title="vnetlab doctor")
    for col in ("", "what", "detail", "fix"):
        table.add_column(col)
    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    for f in findings:
        table.add_row(marks[f.status], f.name, f.detail, f.fix)
    out.print(table)
    return EXIT_FAIL if any(f.status == "fail" for f in findings) else EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "up": cmd_up,
    "check": cmd_check,
    "down": cmd_down,
    "status": cmd_status,
    "list": cmd_list,
    "plan": cmd_plan,
    "image": cmd_image,
    "doctor": cmd_doctor,
}

if __name__ == "__main__":
    sys.exit(main())
