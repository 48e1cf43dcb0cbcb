"""The class on disk: /var/lib/vnetlab/classrooms/<name>/, root only.

class.json holds what the class is (the exercise, the seats and their students, every token, where
the server listens); runtime.json what the server last knew of each seat (its boot phase, its last
activity); urls.txt one `SEAT URL` a line and a `teacher URL` line; server.pid the server's PID
and its start time, so a PID the kernel gave to another program is never taken for the server.
Every file is 0600 in an 0700 folder and replaced atomically: a server killed mid-write leaves
the old file or the new one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vnetlab import procfs
from vnetlab.errors import VnetlabError
from vnetlab.files import write_private
from vnetlab.paths import Layout

CLASS_FILE = "class.json"
RUNTIME_FILE = "runtime.json"
URLS_FILE = "urls.txt"
PID_FILE = "server.pid"
LOG_FILE = "server.log"
CLASS_NAME_MAX = 15  # a seat's lab is <class>-<seat> (seat s001), within the 24 characters of a lab name
CLASS_NAME = rf"[a-z][a-z0-9-]{{0,{CLASS_NAME_MAX - 1}}}"
TOKEN_BYTES = 32  # 256 random bits per token (secrets.token_urlsafe)


class ClassroomError(VnetlabError):
    """A failure the user can act on (the CLI prints it without a traceback)."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass
class Seat:
    id: str  # s001 …: the seat's name in URLs, the lab name and `classroom reset`
    student: str  # the student id the exercise's params are drawn from
    name: str  # how the teacher knows the student (the roster's name column, else the id)
    lab: str
    token: str


@dataclass
class ClassRecord:
    name: str
    exercise: str  # the exercise file, resolved when the class started
    seats: list[Seat]
    teacher_token: str
    listen: str = "127.0.0.1:8470"
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_http: bool = False
    idle_timeout: float = 1800.0  # seconds without a key press before a terminal closes
    seats_at_once: int = 2  # boot admission: seats starting at the same time
    cold: bool = False  # --cold: the seats' guests are booted, not restored from warm images
    created: float = field(default_factory=time.time)

    def seat(self, ref: str) -> Seat | None:
        """A seat by its id or its student's id."""
        return next((s for s in self.seats if ref in (s.id, s.student)), None)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    def base_url(self) -> str:
        host, _, port = self.listen.rpartition(":")
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
        return f"{self.scheme}://{shown}:{port}"

    def student_url(self, seat: Seat) -> str:
        return f"{self.base_url()}/s/{seat.token}"

    def teacher_url(self) -> str:
        return f"{self.base_url()}/t/{self.teacher_token}"

    def urls_text(self) -> str:
        lines = [f"{s.id} {self.student_url(s)}" for s in self.seats]
        return "\n".join([*lines, f"teacher {self.teacher_url()}"]) + "\n"

    @classmethod
    def from_json(cls, data: dict) -> ClassRecord:
        seats = [Seat(**s) for s in data.pop("seats")]
        return cls(seats=seats, **data)


@dataclass(frozen=True)
class ClassFolder:
    """The files of one class."""

    layout: Layout
    name: str

    @property
    def dir(self) -> Path:
        return self.layout.classrooms / self.name

    @property
    def urls_file(self) -> Path:
        return self.dir / URLS_FILE

    @property
    def log_file(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def bundles(self) -> Path:
        return self.dir / "bundles"

    def exists(self) -> bool:
        return (self.dir / CLASS_FILE).exists()

    def create(self, record: ClassRecord) -> None:
        self.layout.classrooms.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.layout.classrooms, 0o700)
        try:
            self.dir.mkdir(mode=0o700)
        except FileExistsError:
            raise ClassroomError(f"a class named {self.name!r} exists already (`vnetlab classroom status {self.name}`); stop it first or pick another --name") from None
        os.chmod(self.dir, 0o700)
        self.save(record)

    def save(self, record: ClassRecord) -> None:
        write_private(self.dir / CLASS_FILE, json.dumps(asdict(record), indent=2).encode(), atomic=True)
        write_private(self.urls_file, record.urls_text().encode(), atomic=True)

    def load(self) -> ClassRecord:
        try:
            return ClassRecord.from_json(json.loads((self.dir / CLASS_FILE).read_text()))
        except FileNotFoundError:
            raise ClassroomError(f"no class named {self.name!r} (see `vnetlab classroom status`)") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ClassroomError(f"{self.dir / CLASS_FILE} is unreadable ({exc}); inspect it by hand") from None

    def load_runtime(self) -> dict:
        try:
            return json.loads((self.dir / RUNTIME_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def save_runtime(self, runtime: dict) -> None:
        write_private(self.dir / RUNTIME_FILE, json.dumps(runtime, indent=1).encode(), atomic=True)

    # -- the server process ------------------------------------------------

    def record_server(self, pid: int) -> None:
        write_private(self.dir / PID_FILE, f"{pid} {_start_time(pid)}\n".encode(), atomic=True)

    def server_pid(self) -> int | None:
        """The server's PID while that very process runs (not a PID reused since)."""
        try:
            pid_text, started = (self.dir / PID_FILE).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        fields = procfs.stat_fields(pid)
        if fields is None or procfs.is_zombie(fields) or str(_start_time(pid)) != started:
            return None
        return pid

    def forget_server(self) -> None:
        (self.dir / PID_FILE).unlink(missing_ok=True)


def _start_time(pid: int) -> int:
    fields = procfs.stat_fields(pid)
    return int(fields[19]) if fields else 0  # starttime, field 22 in proc(5)


def class_names(layout: Layout) -> list[str]:
    root = layout.classrooms
    return sorted(p.name for p in root.iterdir() if (p / CLASS_FILE).exists()) if root.is_dir() else []


def check_class_name(name: str) -> None:
    if not re.fullmatch(CLASS_NAME, name):
        raise ClassroomError(f"class name {name!r} is not usable: expected {CLASS_NAME} (lowercase letters, digits, '-', at most {CLASS_NAME_MAX} characters; each seat's lab is <class>-s001 …)")
