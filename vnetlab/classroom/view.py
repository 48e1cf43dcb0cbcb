"""What the pages show of a seat and of the class: JSON built from the engine's status, with the
exercise's markdown rendered to HTML.

Markdown is rendered by markdown-it (CommonMark) with raw HTML off, so a `<script>` in a task's
text shows as text, and its link check refuses javascript: and data: URLs. Anything that came
from a guest (a check's details, a command's output) stays plain text here and is put into the
page with textContent, never as HTML.
"""

from __future__ import annotations

import time
from typing import Any

from markdown_it import MarkdownIt

from vnetlab.classroom.seats import SeatRun

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
TEXT_MAX = 20000  # characters of one text shown (a check's output is cut to its end)


def markdown(text: str) -> str:
    return _MARKDOWN.render(text or "")


def _first(data: dict, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in data and data[key] is not None:
            return data[key]
    return default


def _state(task: dict) -> str:
    state = str(_first(task, "state", "status", default="untried"))
    return {"passed": "passed", "ok": "passed", "failed": "failed", "fail": "failed"}.get(state, "untried" if state in ("untried", "not tried", "") else state)


def _hint_texts(task: dict) -> list[str]:
    hints = _first(task, "hints_shown", "hints_revealed", "hints", default=[])
    return [str(h) for h in hints] if isinstance(hints, list) else []


def task_view(task: dict) -> dict[str, Any]:
    hints = _hint_texts(task)
    used = int(_first(task, "hints_used", default=len(hints)) or 0)
    total = _first(task, "hints_total", "hints_available", default=None)
    return {
        "name": str(task.get("name", "")),
        "html": markdown(str(_first(task, "text", "description", default=""))),
        "points": _first(task, "points_max", "max_points", "points", default=None),
        "earned": _first(task, "earned", "points_earned", "score", default=None),
        "state": _state(task),
        "hints": [markdown(h) for h in hints],
        "hints_used": used,
        "hints_left": None if total is None else max(0, int(total) - used),
        "answer": bool(_first(task, "answer", "asks_answer", "is_answer", default=False)),
        "details": str(_first(task, "detail", "details", default=""))[-TEXT_MAX:] if not isinstance(task.get("details"), list) else
        "\n".join(f"{'✓' if d.get('ok') else '✗'} {d.get('name', d.get('check', ''))}: {d.get('detail', '')}" for d in task["details"] if isinstance(d, dict))[-TEXT_MAX:],
        "checked_at": _first(task, "checked_at", "last_check", "passed_at", default=None),
    }


def exercise_view(status: dict) -> dict[str, Any]:
    exercise = status.get("exercise") if isinstance(status.get("exercise"), dict) else status
    return {
        "name": str(_first(exercise, "name", default="")),
        "title": str(_first(exercise, "title", default=_first(exercise, "name", default="Exercise"))),
        "intro_html": markdown(str(_first(exercise, "intro", default=""))),
        "time_limit": _first(exercise, "time_limit", "time-limit", default=None),
        "started": _first(status, "started", "started_at", default=None),
        "time_used": _first(status, "time_used", "elapsed", default=None),
    }


def seat_view(run: SeatRun, *, terminals: list[str], idle_timeout: float, evidence: list[str], teacher: bool = False) -> dict[str, Any]:
    status = run.status or {}
    tasks = status.get("tasks") if isinstance(status.get("tasks"), list) else []
    return {
        "seat": run.seat.id,
        "student": run.seat.name,
        "phase": run.phase,
        "progress": run.progress,
        "error": run.error if teacher else ("your lab could not be started: tell your teacher" if run.error and run.phase == "failed" else ""),
        "version": run.version,
        "exercise": exercise_view(status),
        "tasks": [task_view(t) for t in tasks if isinstance(t, dict)],
        "checking": run.checking,
        "last_check": {k: v for k, v in run.last_check.items() if k in ("task", "at", "passed", "output", "error")},
        "terminals": terminals,
        "idle_timeout_s": idle_timeout,
        "evidence": evidence,
        "now": time.time(),
    }


def class_row(run: SeatRun) -> dict[str, Any]:
    status = run.status or {}
    tasks = status.get("tasks") if isinstance(status.get("tasks"), list) else []
    views = [task_view(t) for t in tasks if isinstance(t, dict)]
    earned = [v["earned"] for v in views if isinstance(v["earned"], (int, float))]
    return {
        "seat": run.seat.id,
        "student": run.seat.student,
        "name": run.seat.name,
        "phase": run.phase,
        "progress": run.progress,
        "error": run.error,
        "tasks": [{"name": v["name"], "state": v["state"], "hints_used": v["hints_used"], "earned": v["earned"], "points": v["points"]} for v in views],
        "hints_used": sum(v["hints_used"] for v in views),
        "points": round(sum(earned), 2) if earned else _first(status, "points", "total_points", default=None),
        "last_activity": run.last_activity,
        "checking": run.checking is not None,
        "version": run.version,
    }
