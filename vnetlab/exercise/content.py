"""What an exercise says, read from its model: the intro (inline or a file), the time limit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DURATION = r"(?=[0-9])(?:[0-9]{1,3}h)?(?:[0-9]{1,4}m)?(?:[0-9]{1,6}s)?"  # 45m, 1h30m, 90s
INTRO_FILE = re.compile(r"[^\n]{1,255}\.(?:md|markdown|txt)")  # an intro that is one line ending like this names a file


def duration_seconds(text: str | None) -> int | None:
    """'1h30m' → 5400; None stays None."""
    if text is None:
        return None
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in re.findall(r"([0-9]+)([hms])", text))


def intro_file(scenario: Any) -> Path | None:
    """The intro's file when it names one (relative to the scenario), else None (it is the markdown itself)."""
    intro = scenario.exercise.intro.strip() if scenario.exercise else ""
    if not INTRO_FILE.fullmatch(intro):
        return None
    return (Path(scenario.source or ".").resolve().parent / intro).resolve()


def intro_text(scenario: Any) -> str:
    path = intro_file(scenario)
    return path.read_text(encoding="utf-8") if path is not None else scenario.exercise.intro
