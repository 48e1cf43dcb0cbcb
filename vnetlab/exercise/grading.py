"""Grading bundles: each task judged again from its evidence, the claims only compared with that.

For each bundle, with the teacher's copy of the exercise (by the bundle's exercise name in the
search path, or the file given): the params recomputed from the student id, every task's last
check re-made (the plan from the teacher's file and the student's params) and judged from the
bundle's evidence (pcaps for the wire, recorded outputs for the rest), every file's SHA-256 and
result.json's signature checked. The gradebook's `mismatch` column lists every place where the
bundle's claims and the evidence disagree; `from guests` lists the checks whose evidence a
program in a guest printed (the student, root there, could have shaped it) with no capture to
confirm it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vnetlab.checks.evidence import EvidenceError, load_collected, read_setting
from vnetlab.checks.runner import check_kinds, judge_checks, setting_plan
from vnetlab.exercise.bundle import altered_files, read_result, signature_state
from vnetlab.exercise.lab import file_sha256
from vnetlab.exercise.state import ExerciseError, task_points
from vnetlab.model.params import ParamError, check_student
from vnetlab.model.scenario import ScenarioModel
from vnetlab.model.typed_yaml import ValidationError
from vnetlab.model.validate import parse_scenario
from vnetlab.paths import Layout, resolve_scenario, search_path
from vnetlab.printable import printable


@dataclass
class GradedTask:
    number: int
    name: str
    passed: bool  # judged again from the evidence
    points: float  # what that gives, less the hints
    max_points: int
    hints_used: int
    claimed_points: float | None
    from_guests: list[str] = field(default_factory=list)  # checks judged on a guest's word alone
    problem: str | None = None  # why it could not be judged (missing or altered evidence)


@dataclass
class GradedBundle:
    folder: Path
    student: str
    exercise: str
    tasks: list[GradedTask]
    points: float
    max_points: int
    hints_used: int
    time_used_s: float | None
    signature: str
    params_fit: bool
    mismatch: list[str]
    error: str | None = None  # the bundle could not be graded at all

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["folder"] = str(self.folder)
        return out


@dataclass
class Gradebook:
    rows: list[GradedBundle]

    def task_names(self) -> list[str]:
        names: list[str] = []
        for row in self.rows:
            for t in row.tasks:
                label = f"{t.number}. {t.name}"
                if label not in names:
                    names.append(label)
        return names

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows, as the terminal table and the CSV show them: every cell printable
        (a bundle's student, names and evidence come from the student, a detail from a guest)."""
        tasks = self.task_names()
        header = ["student", "exercise", *tasks, "points", "max", "hints", "time", "signature", "from guests", "mismatch", "bundle"]
        rows = []
        for b in self.rows:
            by_label = {f"{t.number}. {t.name}": t for t in b.tasks}
            cells = [f"{by_label[n].points:g}" if n in by_label else "" for n in tasks]
            time_used = "" if b.time_used_s is None else f"{int(b.time_used_s // 60)}m{int(b.time_used_s % 60):02d}s"
            guests = "; ".join(g for t in b.tasks for g in t.from_guests)
            mismatch = "; ".join(b.mismatch + ([b.error] if b.error else []))
            row = [b.student, b.exercise, *cells, f"{b.points:g}", str(b.max_points), str(b.hints_used), time_used, b.signature, guests, mismatch, str(b.folder)]
            rows.append([printable(cell) for cell in row])
        return [printable(h) for h in header], rows

    def csv(self) -> str:
        """The table as CSV for a spreadsheet, which would obey a cell that starts like a formula
        (`=HYPERLINK(…)` as a student id): such a cell gets a leading apostrophe, shown as text."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header, rows = self.table()
        writer.writerow([spreadsheet_text(h) for h in header])
        writer.writerows([spreadsheet_text(cell) for cell in row] for row in rows)
        return out.getvalue()

    def to_json(self) -> list[dict[str, Any]]:
        return [b.to_json() for b in self.rows]


FORMULA_START = ("=", "+", "-", "@")


def spreadsheet_text(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that would start a formula is quoted with an
    apostrophe (OWASP's advice against CSV injection); a number such as -1.5 stays a number."""
    if cell.startswith(FORMULA_START):
        try:
            float(cell)
        except ValueError:
            return "'" + cell
    return cell


def _teacher_file(name: str, exercise: Path | None, dirs: list[Path]) -> Path:
    if exercise is not None:
        return exercise
    if not isinstance(name, str) or not name:
        raise ExerciseError("result.json names no exercise")
    path = resolve_scenario(name, search_path(dirs)).path
    if not path.is_file():
        raise ExerciseError(f"no exercise named {name!r} in the search path (give the teacher's file with --exercise)")
    return path


def grade_bundle(folder: Path, model: ScenarioModel, *, exercise: Path | None = None, scenario_dirs: list[Path] | None = None, layout: Layout | None = None) -> GradedBundle:
    layout = layout or Layout()
    try:
        result, data = read_result(folder)
    except (ExerciseError, EvidenceError) as exc:
        return GradedBundle(folder, "?", "?", [], 0.0, 0, 0, None, "?", False, [], error=str(exc))
    student = str(result.get("student", "?"))
    name = str(result["exercise"].get("name", "?"))
    signed = signature_state(folder, data, layout)
    mismatch = ["result.json was edited after submit (its signature does not match)"] if signed == "INVALID" else []
    try:
        check_student(student)
        path = _teacher_file(name, exercise, scenario_dirs or [])
        text = path.read_text(encoding="utf-8")
        scenario = parse_scenario(text, str(path), model, student=student)
    except (ParamError, ExerciseError, OSError, ValidationError) as exc:
        return GradedBundle(folder, student, name, [], 0.0, 0, 0, None, signed, False, mismatch, error=f"cannot grade: {exc}")
    if scenario.exercise is None:
        return GradedBundle(folder, student, name, [], 0.0, 0, 0, None, signed, False, mismatch, error=f"{path} has no exercise: section")
    if result["exercise"].get("sha256") != file_sha256(path):
        mismatch.append(f"the exercise file differs from the teacher's {path}")
    params_fit = result.get("params") == scenario.param_values
    if not params_fit:
        mismatch.append(f"params do not fit student id {student!r}")
    mismatch += [f"{f} altered or missing" for f in altered_files(folder, result)]
    claims = {t.get("number"): t for t in result["tasks"] if isinstance(t, dict)}
    kinds: dict[str, Any] | None = None
    tasks = []
    for k, task in enumerate(scenario.exercise.tasks):
        claim = claims.get(k + 1) or {}
        if claim and claim.get("name") != task.name:
            mismatch.append(f"task {k + 1} is {claim.get('name')!r} in the bundle, {task.name!r} in the exercise")
        hints = claim.get("hints_used", 0)
        hints = min(max(hints, 0), len(task.hints)) if isinstance(hints, int) and not isinstance(hints, bool) else 0
        graded = GradedTask(k + 1, task.name, False, 0.0, task.points, hints, claim.get("points") if isinstance(claim.get("points"), (int, float)) else None)
        task_dir = folder / "tasks" / str(k + 1)
        if task_dir.is_dir():
            try:
                setting, _ = read_setting(task_dir)
                if setting.lab != result.get("lab"):
                    mismatch.append(f"task {k + 1}: checked on lab {setting.lab!r}, the bundle's lab is {result.get('lab')!r}")
                setting = dataclasses.replace(setting, scenario_file=str(path), student=student, checks=f"exercise.tasks[{k}].checks", only=None)
                plan = setting_plan(setting, text, model)
                collected = load_collected(task_dir, plan)
                results = judge_checks(plan, collected)
                graded.passed = all(r.ok for r in results)
                kinds = kinds or check_kinds(plan)
                for i, r in enumerate(results):
                    ev = collected.evidence.get(i)
                    wire = collected.wire and kinds.get(plan.scenario.checks[i].kind) is not None and kinds[plan.scenario.checks[i].kind].wire is not None
                    if ev is not None and ev.guests and not wire:
                        graded.from_guests.append(f"{k + 1}: {r.name} ({', '.join(ev.guests)})")
            except (EvidenceError, ValidationError, OSError) as exc:
                graded.problem = str(exc)
                mismatch.append(f"task {k + 1}: evidence unusable: {exc}")
        graded.points = task_points(task, passed=graded.passed, hints_used=hints)
        if graded.claimed_points is not None and abs(graded.claimed_points - graded.points) > 1e-6:
            mismatch.append(f"task {k + 1}: claims {graded.claimed_points:g} point(s), the evidence gives {graded.points:g}")
        if claim.get("state") == "passed" and not graded.passed and graded.problem is None:
            mismatch.append(f"task {k + 1}: claims passed, the evidence fails")
        tasks.append(graded)
    time_used = result.get("time_used_s")
    return GradedBundle(
        folder, student, name, tasks, sum(t.points for t in tasks), sum(t.points for t in scenario.exercise.tasks), sum(t.hints_used for t in tasks),
        float(time_used) if isinstance(time_used, (int, float)) else None, signed, params_fit, mismatch,
    )


def grade(bundles: list[Path], model: ScenarioModel, *, exercise: Path | None = None, scenario_dirs: list[Path] | None = None, layout: Layout | None = None) -> Gradebook:
    """Every bundle graded (a folder of bundles counts as each bundle inside it)."""
    folders: list[Path] = []
    for path in bundles:
        inner = sorted(p.parent for p in path.glob("*/result.json")) if not (path / "result.json").exists() else []
        folders += inner or [path]
    return Gradebook([grade_bundle(f, model, exercise=exercise, scenario_dirs=scenario_dirs, layout=layout) for f in folders])
