"""A submission: the result bundle a student hands in, and reading one back for grading.

    <exercise>-<student>-<time>/
      result.json       student id, exercise name and the SHA-256 of its file, params, per task its
                        state, points, hints used, answer, times and check details, the vnetlab version
      result.json.sig   HMAC-SHA256 of result.json with this host's key: an edit after submit shows
      junit.xml         one testcase per task
      exercise.yaml     the exercise file the lab was built from
      tasks/<n>/        the last check of task n: evidence.json, judging.json, scenario.yaml, pcaps

result.json lists the SHA-256 of every other file. What a bundle claims is never what grading
believes: `grade` judges each task again from the evidence, with the teacher's exercise file
and the params recomputed from the student id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from vnetlab.checks.evidence import EVIDENCE_FILE, JUDGING_FILE, SCENARIO_COPY, read_json, sha256_file
from vnetlab.exercise.state import ExerciseError, ExerciseState, task_points
from vnetlab.files import write_private
from vnetlab.paths import Layout
from vnetlab.plan.planner import Plan
from vnetlab.printable import printable_json
from vnetlab.run.state import make_private_dir
from vnetlab.tools.junit import junit_xml

RESULT_FILE = "result.json"
SIGNATURE_FILE = "result.json.sig"
JUNIT_FILE = "junit.xml"
EXERCISE_COPY = "exercise.yaml"
KEY_FILE = "exercise-signing.key"  # in the layout's root: HMAC key of the bundles this host writes
FORMAT = 1
_EVIDENCE_NAME = re.compile(rf"(?:{re.escape(EVIDENCE_FILE)}|{re.escape(JUDGING_FILE)}|{re.escape(SCENARIO_COPY)}|[A-Za-z0-9][A-Za-z0-9._-]{{0,80}}\.pcap)")


def vnetlab_version() -> str:
    try:
        return version("vnetlab")
    except PackageNotFoundError:
        return "unknown"


def signing_key(layout: Layout, *, create: bool) -> bytes | None:
    """This host's key for bundle signatures (made on first use, 0600); None when there is none and `create` is False."""
    path = layout.root / KEY_FILE
    if not path.exists():
        if not create:
            return None
        layout.root.mkdir(parents=True, exist_ok=True)
        write_private(path, secrets.token_bytes(32), atomic=True)
    return path.read_bytes()


def signature(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "student"


def _new_folder(root: Path, name: str) -> Path:
    make_private_dir(root)
    path, n = root / name, 1
    while True:
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            n += 1
            path = root / f"{name}-{n}"


def write_bundle(state: ExerciseState, plan: Plan, exercise_text: str, out: Path, layout: Layout) -> tuple[Path, dict[str, Any]]:
    """The bundle of the exercise as it stands, in a new folder under `out` (an earlier one is never
    touched). Returns the folder and result.json's content."""
    ex = plan.scenario.exercise
    now = time.time()
    folder = _new_folder(out, f"{state.exercise}-{_slug(state.student)}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}")
    digests: dict[str, str] = {}
    write_private(folder / EXERCISE_COPY, exercise_text.encode())
    digests[EXERCISE_COPY] = sha256_file(folder / EXERCISE_COPY)
    tasks = []
    for k, (task, rec) in enumerate(zip(ex.tasks, state.tasks)):
        evidence = None
        if rec.run and Path(rec.run).is_dir():
            evidence = f"tasks/{k + 1}"
            dest = make_private_dir(folder / "tasks" / str(k + 1))
            for src in sorted(Path(rec.run).iterdir()):
                if src.is_file() and _EVIDENCE_NAME.fullmatch(src.name):
                    shutil.copyfile(src, dest / src.name)
                    os.chmod(dest / src.name, 0o600)
                    digests[f"{evidence}/{src.name}"] = sha256_file(dest / src.name)
        tasks.append({
            "number": k + 1, "name": task.name, "state": rec.state, "points": task_points(task, rec), "max_points": task.points,
            "hints_used": rec.hints_used, "hint_cost": task.hint_cost, "answer": rec.answer, "checked_at": rec.checked_at,
            "first_passed_at": rec.first_passed_at, "evidence": evidence, "checks": rec.checks,
        })
    result = {
        "format": FORMAT,
        "vnetlab": vnetlab_version(),
        "exercise": {"name": state.exercise, "title": state.title, "file": state.file, "sha256": state.sha256},
        "student": state.student,
        "lab": state.lab,
        "params": state.params,
        "started": state.started,
        "submitted": now,
        "time_used_s": round(now - state.started, 1),
        "time_limit_s": state.time_limit_s,
        "resets": state.resets,
        "points": sum(t["points"] for t in tasks),
        "max_points": sum(t.points for t in ex.tasks),
        "tasks": tasks,
        "files": digests,
    }
    data = (printable_json(result, indent=2) + "\n").encode()  # a student's answer and the checks' words, exactly, shown inert
    write_private(folder / RESULT_FILE, data)
    key = signing_key(layout, create=True)
    assert key is not None
    write_private(folder / SIGNATURE_FILE, (signature(key, data) + "\n").encode())
    write_private(folder / JUNIT_FILE, junit_xml(junit_report(result)).encode())
    return folder, result


def junit_report(result: dict[str, Any]) -> dict[str, Any]:
    """result.json as the run report tools.junit writes: one testcase per task."""
    checks = []
    for t in result["tasks"]:
        failed = [c for c in t["checks"] if not c.get("ok")]
        detail = (
            f"{t['points']:g}/{t['max_points']} point(s), {t['hints_used']} hint(s) used"
            + ("; never checked" if t["state"] == "untried" else "")
            + "".join(f"; ✗ {c.get('name')}: {c.get('detail')}" for c in failed)
        )
        checks.append({"name": f"{t['number']}. {t['name']}", "kind": "task", "ok": t["state"] == "passed", "detail": detail, "data": {"state": t["state"], "checks": len(t["checks"])}})
    return {"scenario": result["exercise"]["name"], "lab": result["lab"], "accel": None, "accel_detail": None, "error": None, "steps": [], "checks": checks, "artifacts": {}}


# -- reading a bundle back (it may come from anywhere) ---------------------------------------------------------------------


def read_result(folder: Path) -> tuple[dict[str, Any], bytes]:
    """result.json of a bundle, as parsed and as bytes (for its signature); ExerciseError when it is not one."""
    try:
        data = (folder / RESULT_FILE).read_bytes()
    except OSError as exc:
        raise ExerciseError(f"{folder} is not a bundle: {exc.strerror or exc} ({RESULT_FILE})") from None
    result = read_json(folder / RESULT_FILE)
    if not isinstance(result, dict) or not isinstance(result.get("tasks"), list) or not isinstance(result.get("exercise"), dict):
        raise ExerciseError(f"{folder / RESULT_FILE} is not a result of `vnetlab exercise submit`")
    return result, data


def signature_state(folder: Path, data: bytes, layout: Layout) -> str:
    """valid, INVALID (result.json was edited after submit), or unknown (no signature, or another host's key)."""
    key = signing_key(layout, create=False)
    try:
        claimed = (folder / SIGNATURE_FILE).read_text().strip()
    except OSError:
        return "unsigned"
    if key is None:
        return "unknown (signed by another host)"
    return "valid" if hmac.compare_digest(claimed, signature(key, data)) else "INVALID"


def altered_files(folder: Path, result: dict[str, Any]) -> list[str]:
    """Files the bundle lists whose SHA-256 is not the listed one (or that are missing, or named outside it)."""
    listed = result.get("files")
    if not isinstance(listed, dict):
        return ["result.json lists no files"]
    bad = []
    for name, digest in sorted(listed.items()):
        path = folder / str(name)
        inside = re.fullmatch(r"(?:tasks/[0-9]{1,4}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,80}", str(name)) is not None
        if not inside or not path.is_file() or sha256_file(path) != digest:
            bad.append(str(name))
    return bad
