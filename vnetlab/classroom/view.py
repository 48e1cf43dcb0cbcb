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


def task_view(task: dict) -> dict[str, Any]:
    details = task.get("details") or []
    return {
        "name": str(task.get("name", "")),
        "html": markdown(str(task.get("text", ""))),
        "points": task.get("points_max"),
        "earned": task.get("earned"),
        "state": str(task.get("state", "untried")),
        "hints": [markdown(str(h)) for h in task.get("hints") or []],
        "hints_used": int(task.get("hints_used") or 0),
        "hints_total": int(task.get("hints_total") or 0),
        "hints_left": max(0, int(task.get("hints_total") or 0) - int(task.get("hints_used") or 0)),
        "answer": bool(task.get("answer")),
        "details": "\n".join(f"{'✓' if d.get('ok') else '✗'} {d.get('name', '')}: {d.get('detail', '')}" for d in details if isinstance(d, dict))[-TEXT_MAX:],
        "checked_at": task.get("checked_at"),
    }


def exercise_view(status: dict) -> dict[str, Any]:
    exercise = status.get("exercise") or {}
    return {
        "name": str(exercise.get("name", "")),
        "title": str(exercise.get("title") or exercise.get("name") or "Exercise"),
        "intro_html": markdown(str(exercise.get("intro", ""))),
        "time_limit": exercise.get("time_limit"),
        "started": status.get("started"),
        "time_used": status.get("time_used"),
        "points": status.get("points"),
        "max_points": status.get("max_points"),
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
        "points": round(sum(earned), 2) if earned else status.get("points"),
        "last_activity": run.last_activity,
        "checking": run.checking is not None,
        "version": run.version,
    }
