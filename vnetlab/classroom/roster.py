"""The roster: a CSV file of students, one a row, read into seats.

    id,name
    alice@example.org,Alice Martin
    20231234,Bob Chen

The header names the columns: `id` (or `student`) is required, the student id the exercise's
params are drawn from (letters, digits and . _ @ + -, as `exercise start --student` takes it);
`name` is optional, how the teacher sees the student. Every problem is reported with its line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from vnetlab.model.typed_yaml import Problem, ValidationError

STUDENT_ID = r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}"  # the exercise engine's student ids
NAME_MAX = 80
MAX_STUDENTS = 500
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Student:
    id: str
    name: str


def seat_id(index: int) -> str:
    """The n-th seat (from 1): s01, s02 … s99, s100 …"""
    return f"s{index:02d}"


def read_roster(path: Path) -> list[Student]:
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError([Problem(where, None, "roster", f"cannot read the roster: {exc.strerror or exc}")]) from None
    if len(data) > MAX_BYTES:
        raise ValidationError([Problem(where, None, "roster", f"the roster is {len(data)} bytes; at most {MAX_BYTES} are read")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError([Problem(where, None, "roster", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    return parse_roster(text, where)


def parse_roster(text: str, where: str) -> list[Student]:
    problems: list[Problem] = []
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    students: list[Student] = []
    seen: dict[str, int] = {}
    try:
        for row in rows:
            line = rows.line_num
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if header is None:
                header = [c.lower() for c in cells]
                if not ({"id", "student"} & set(header)):
                    problems.append(Problem(where, line, "header", f"the first row must name the columns, with `id` (the student id) and optionally `name`; got {', '.join(cells)!r}"))
                    break
                continue
            fields = dict(zip(header, cells))
            ident = fields.get("id") or fields.get("student") or ""
            name = fields.get("name", "") or ident
            if not re.fullmatch(STUDENT_ID, ident):
                problems.append(Problem(where, line, "id", f"student id {ident!r}: expected {STUDENT_ID} (letters, digits and . _ @ + -, at most 64 characters)"))
            elif ident in seen:
                problems.append(Problem(where, line, "id", f"student {ident!r} is on line {seen[ident]} already"))
            elif len(name) > NAME_MAX or any(ord(ch) < 32 for ch in name):
                problems.append(Problem(where, line, "name", f"the name is longer than {NAME_MAX} characters or holds control characters"))
            else:
                seen[ident] = line
                students.append(Student(ident, name))
            if len(students) > MAX_STUDENTS:
                problems.append(Problem(where, line, "roster", f"more than {MAX_STUDENTS} students"))
                break
    except csv.Error as exc:
        problems.append(Problem(where, rows.line_num, "roster", f"not CSV: {exc}"))
    if not problems and not students:
        problems.append(Problem(where, None, "roster", "no students: one row per student after the header (id,name)"))
    if problems:
        raise ValidationError(problems)
    return students


def numbered_students(count: int) -> list[Student]:
    """`--seats N`: students named after their seats (s01 …), each with its own params."""
    return [Student(seat_id(i), seat_id(i)) for i in range(1, count + 1)]
