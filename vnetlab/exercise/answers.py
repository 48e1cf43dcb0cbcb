"""An exercise's expected answers, kept from the student in what the engine shows them.

A check's detail says what it expected and saw, and that may be another task's answer: the
capture of ex-two-vm-ping's first task names vm2's MAC, which its second task asks for. The
engine knows every answer (each answer check's `expect`, each solve step's `answer`, rendered
for the student's lab), so what it shows a student — the results `exercise check` prints and
returns, the state the status and the classroom read, result.json's check details — has each
of them replaced by HIDDEN wherever it appears, in any notation its kind allows (a MAC with
colons, dashes, dots or none, in either case). An answer check's own detail is left alone: it
only ever quotes what the student typed. The evidence (evidence.json, the pcaps) keeps
everything: `vnetlab judge RUN_DIR` and `exercise grade` judge and show it in full.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from vnetlab.checks.base import CheckResult
from vnetlab.model.templates import TemplateError, render
from vnetlab.plan.planner import Plan
from vnetlab.plan.variables import plan_variables

HIDDEN = "‹hidden: an answer›"
_HEX, _DIGIT = "0-9A-Fa-f", "0-9"


def _pattern(value: str, how: str) -> str | None:
    """What finds `value` in a text, in any notation of its kind (None: nothing to hide)."""
    text = value.strip()
    if not text:
        return None
    if how == "mac":
        digits = re.sub(r"[:.\-\s]", "", text)
        if re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
            pairs = [digits[i:i + 2] for i in range(0, 12, 2)]
            return rf"(?<![{_HEX}])" + r"[:.\-]?".join(pairs) + rf"(?![{_HEX}])"
    if how == "ip":
        try:
            address = str(ipaddress.ip_interface(text).ip)
        except ValueError:
            address = None
        if address is not None:
            return rf"(?<![{_DIGIT}.]){re.escape(address)}(?!\.?[{_DIGIT}])"
    if how == "int" and re.fullmatch(r"[-+]?[0-9]{1,18}", text):
        return rf"(?<![{_DIGIT}.]){int(text)}(?!\.?[{_DIGIT}])"
    before = r"(?<!\w)" if re.match(r"\w", text) else ""
    after = r"(?!\w)" if re.search(r"\w$", text) else ""
    return before + re.escape(text) + after


def expected_answers(plan: Plan) -> re.Pattern[str] | None:
    """One pattern finding every expected answer of the plan's exercise (a regex answer by its
    reference answer, the solve step's), or None when it asks none."""
    ex = getattr(plan.scenario, "exercise", None)
    if ex is None:
        return None
    variables = plan_variables(plan)
    patterns: list[str] = []
    for task in ex.tasks:
        kinds = [c.spec for c in task.checks if c.kind == "answer"]
        values = [(c.expect, c.normalize) for c in kinds if c.normalize != "regex"]
        values += [(s.answer, kinds[0].normalize if kinds else "exact") for s in task.solve if s.answer is not None]
        for template, how in values:
            try:
                pattern = _pattern(render(template, variables), how)
            except TemplateError:
                continue  # refused by the model already; nothing rendered, nothing to hide
            if pattern is not None:
                patterns.append(pattern)
    return re.compile("|".join(f"(?:{p})" for p in dict.fromkeys(patterns)), re.IGNORECASE) if patterns else None


def _hidden(value: Any, found: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return found.sub(HIDDEN, value)
    if isinstance(value, dict):
        return {k: _hidden(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_hidden(v, found) for v in value]
    return value


def hide_answers(results: list[CheckResult], found: re.Pattern[str] | None) -> list[CheckResult]:
    """The results as a student may see them: every expected answer hidden outside the answer checks."""
    if found is None:
        return results
    return [r if r.kind == "answer" else dataclasses.replace(r, name=_hidden(r.name, found), detail=_hidden(r.detail, found), data=_hidden(r.data, found)) for r in results]
