"""The lab state file: the single source of truth for teardown.

A resource is recorded *before* it is created, and every write is atomic, so
whatever point vnetlab dies at, `vnetlab down` finds everything that may exist
(removal is idempotent, so a recorded-but-never-created resource costs nothing).
Nothing is ever removed because its name looks like ours.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vnetlab.files import write_private

STATE_FILE = "state.json"
_WRITE_LOCK = threading.Lock()  # guests are booted from several threads; each record is one atomic write


@dataclass
class RecordedResource:
    kind: str
    name: str
    vm: str | None = None
    uri: str | None = None  # a domain on another hypervisor: its libvirt URI (None: this machine's)


@dataclass
class LabState:
    lab: str
    scenario: str
    scenario_file: str
    namespace: str
    domain_type: str
    kernel: str
    pid: int
    created: float = field(default_factory=time.time)
    phase: str = "creating"  # creating | up | tearing-down
    resources: list[RecordedResource] = field(default_factory=list)
    held: bool = True  # its owner (pid) still has work on it: a `run` until teardown; False once `up`/`--keep` hands it over
    host_kernel: list[str] = field(default_factory=list)  # the kernel probe's capabilities the plan was made with (re-planning must match)
    instance: str = ""  # PlanOptions.instance the plan was made with (a lab made before it existed: "")
    allow_host_paths: bool = False  # --allow-host-paths was given: re-reading the scenario must allow it too
    student: str | None = None  # whose params the scenario was drawn with (re-planning must match; None: student `demo`)
    cold: bool = False  # its guests were booted, not restored (--cold or $VNETLAB_COLD): a rebuild (exercise reset) boots them too

    def record(self, lab_dir: Path, kind: str, name: str, vm: str | None = None, uri: str | None = None) -> None:
        with _WRITE_LOCK:
            if not any(r.kind == kind and r.name == name for r in self.resources):
                self.resources.append(RecordedResource(kind, name, vm, uri))
                self.save(lab_dir)

    def forget(self, lab_dir: Path, kind: str, name: str) -> None:
        """Drop a record whose creation failed because the name was someone else's (e.g. EEXIST in
        a race): teardown must never remove what another process created."""
        with _WRITE_LOCK:
            kept = [r for r in self.resources if not (r.kind == kind and r.name == name)]
            if len(kept) != len(self.resources):
                self.resources = kept
                self.save(lab_dir)

    def replace(self, lab_dir: Path, kind: str, name: str, new_name: str) -> None:
        """Rename a record in place (its place in the teardown order kept): an intent recorded
        before a thing existed becomes the thing, e.g. a process recorded before it started, then with its PID."""
        with _WRITE_LOCK:
            for r in self.resources:
                if r.kind == kind and r.name == name:
                    r.name = new_name
            self.save(lab_dir)

    def keep_only(self, lab_dir: Path, resources: list[RecordedResource]) -> None:
        """After a partial teardown: the state file lists what is left, and only that."""
        with _WRITE_LOCK:
            self.resources = list(resources)
            self.save(lab_dir)

    def release(self, lab_dir: Path) -> None:
        """The lab outlives the command that built it (`up`, `run --keep`): its owner's death is no loss."""
        with _WRITE_LOCK:
            self.held = False
            self.save(lab_dir)

    def set_phase(self, lab_dir: Path, phase: str) -> None:
        with _WRITE_LOCK:
            self.phase = phase
            self.save(lab_dir)

    def save(self, lab_dir: Path) -> None:
        write_private(lab_dir / STATE_FILE, json.dumps(asdict(self), indent=2).encode(), atomic=True)

    @classmethod
    def load(cls, lab_dir: Path) -> LabState:
        raw = json.loads((lab_dir / STATE_FILE).read_text())
        raw["resources"] = [RecordedResource(**r) for r in raw.get("resources", [])]
        return cls(**raw)


def owner_alive(state: LabState) -> bool:
    """Whether the vnetlab process that built the lab still runs (else the lab is orphaned).

    A PID the kernel has since given to another program does not count.
    """
    try:
        cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"vnetlab" in cmdline


def make_private_dir(path: Path) -> Path:
    """Lab folders hold private keys: 0700, whatever the umask."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path
