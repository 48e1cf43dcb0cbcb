"""What a run keeps so that its checks can be judged again later, by anyone, from its folder alone.

A run folder (`vnetlab judge RUN_DIR` reads it; an exercise keeps one per task checked):

    scenario.yaml   the scenario file the lab was built from, as it was
    judging.json    the plan's options and which checks ran (RunSetting)
    evidence.json   each check's evidence by its index among the checks run, and each capture
                    point's pcap with its SHA-256 and frame counts
    <point>.pcap    the captures (bridges, VM.NIC links, uplinks)

The plan is a pure function of the scenario and its options, so judging again re-makes it
instead of trusting a copy. The files may come from somewhere else (a student's bundle):
they are read with bounds, pcaps only from the folder itself and only when their SHA-256
matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vnetlab.checks.base import Evidence
from vnetlab.checks.capture import Frames, read_frames
from vnetlab.errors import VnetlabError
from vnetlab.files import write_private
from vnetlab.plan.planner import LAB_NAME, Plan
from vnetlab.printable import printable_json

EVIDENCE_FILE = "evidence.json"
JUDGING_FILE = "judging.json"
SCENARIO_COPY = "scenario.yaml"
FORMAT = 1
MAX_JSON_BYTES = 64 << 20  # evidence.json: outputs are kept bounded (checks.ping.kept_output), so a real one is far smaller
_PCAP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.pcap")
_PATH_PART = re.compile(r"([a-z][a-z0-9_]*)|\[([0-9]{1,4})\]")


class EvidenceError(VnetlabError):
    """A run folder (or bundle) that does not hold what judging needs, or holds it altered."""


@dataclass
class Collected:
    """What a check phase saw: each check's evidence (by its index; a capture has some only when what
    was to make its traffic happen failed: see vnetlab.checks.base.Stimulus), the frames
    each capture kept and its pcap; `wire`: graded on the wire (an exercise)."""

    evidence: dict[int, Evidence] = field(default_factory=dict)
    frames: dict[str, Frames] = field(default_factory=dict)
    pcaps: dict[str, Path] = field(default_factory=dict)
    wire: bool = False


@dataclass(frozen=True)
class RunSetting:
    """Besides the scenario, what the plan a run judged with depends on, and which checks it ran."""

    scenario_file: str  # where the scenario was read from: relative paths in it are found from there
    lab: str
    domain_type: str
    kernel: str
    layout: str
    host_kernel: tuple[str, ...] = ()
    student: str | None = None  # whose params the scenario was drawn with (None: student `demo`)
    checks: str = "checks"  # where in the scenario the checks run are, e.g. exercise.tasks[0].checks
    only: str | None = None  # `vnetlab check --only NAME`: that check alone
    allow_host_paths: bool = False  # the lab was brought up with --allow-host-paths: reading its scenario again needs it too

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self), "host_kernel": list(self.host_kernel)}

    @classmethod
    def from_json(cls, raw: Any) -> RunSetting:
        if not isinstance(raw, dict):
            raise EvidenceError(f"{JUDGING_FILE} is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            setting = cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:
            raise EvidenceError(f"{JUDGING_FILE}: {exc}") from None
        texts = (setting.scenario_file, setting.lab, setting.domain_type, setting.kernel, setting.layout, setting.checks)
        if not all(isinstance(t, str) for t in texts) or not isinstance(setting.host_kernel, (list, tuple)) or not all(isinstance(k, str) for k in setting.host_kernel):
            raise EvidenceError(f"{JUDGING_FILE}: unexpected values")
        if not isinstance(setting.student, (str, type(None))) or not isinstance(setting.only, (str, type(None))) or not isinstance(setting.allow_host_paths, bool):
            raise EvidenceError(f"{JUDGING_FILE}: unexpected values")
        if not re.fullmatch(LAB_NAME, setting.lab) or setting.domain_type not in ("qemu", "kvm"):
            raise EvidenceError(f"{JUDGING_FILE}: lab {setting.lab[:40]!r} or domain type {setting.domain_type[:10]!r} is none vnetlab makes")
        return dataclasses.replace(setting, host_kernel=tuple(setting.host_kernel))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    """A JSON file of a run folder or bundle, bounded in size; EvidenceError when missing or unreadable."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise EvidenceError(f"{path} is {size} bytes; at most {MAX_JSON_BYTES}")
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvidenceError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvidenceError(f"{path} is unreadable: {exc}") from None


def write_json(path: Path, data: Any) -> None:
    """Exactly the data (a judge reads it again), in text that shows a guest's escape sequences as JSON escapes (vnetlab.printable)."""
    write_private(path, (printable_json(data, indent=2) + "\n").encode(), atomic=True)


def keep_setting(run_dir: Path, setting: RunSetting, scenario_text: str) -> None:
    """The scenario as run and the plan's options, beside the evidence."""
    write_private(run_dir / SCENARIO_COPY, scenario_text.encode())
    write_json(run_dir / JUDGING_FILE, setting.to_json())


def read_setting(run_dir: Path) -> tuple[RunSetting, str]:
    setting = RunSetting.from_json(read_json(run_dir / JUDGING_FILE))
    try:
        text = (run_dir / SCENARIO_COPY).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvidenceError(f"{run_dir / SCENARIO_COPY} is missing: the run did not keep the scenario it ran") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvidenceError(f"{run_dir / SCENARIO_COPY} is unreadable: {exc}") from None
    return setting, text


def evidence_json(plan: Plan, collected: Collected) -> dict[str, Any]:
    checks = [{"index": i, "kind": plan.scenario.checks[i].kind, **e.to_json()} for i, e in sorted(collected.evidence.items())]
    captures = {
        on: {"pcap": path.name, "sha256": sha256_file(path), "seen": getattr(collected.frames.get(on), "seen", 0), "written": getattr(collected.frames.get(on), "written", 0)}
        for on, path in sorted(collected.pcaps.items())
        if path.exists()
    }
    return {"format": FORMAT, "wire": collected.wire, "checks": checks, "captures": captures}


def save_evidence(run_dir: Path, plan: Plan, collected: Collected) -> None:
    write_json(run_dir / EVIDENCE_FILE, evidence_json(plan, collected))


def load_collected(run_dir: Path, plan: Plan) -> Collected:
    """The evidence of a run folder for the plan's checks; the pcaps read back only when their
    SHA-256 is the one recorded. EvidenceError says what is missing or altered."""
    raw = read_json(run_dir / EVIDENCE_FILE)
    if not isinstance(raw, dict) or not isinstance(raw.get("checks"), list) or not isinstance(raw.get("captures"), dict):
        raise EvidenceError(f"{run_dir / EVIDENCE_FILE}: expected {{checks: [...], captures: {{...}}}}")
    collected = Collected(wire=raw.get("wire") is True)
    by_index = {e.get("index"): e for e in raw["checks"] if isinstance(e, dict)}
    for i, check in enumerate(plan.scenario.checks):
        entry = by_index.get(i)
        if check.capture is not None:  # a capture has evidence only of what went wrong before the checks (a stimulus)
            if entry is not None and entry.get("kind") == "capture":
                try:
                    collected.evidence[i] = Evidence.from_json(entry)
                except ValueError as exc:
                    raise EvidenceError(f"{run_dir / EVIDENCE_FILE}, check {i + 1}: {exc}") from None
            continue
        if entry is None or entry.get("kind") != check.kind:
            raise EvidenceError(f"{run_dir / EVIDENCE_FILE} has no evidence for check {i + 1} ({check.kind})")
        try:
            collected.evidence[i] = Evidence.from_json(entry)
        except ValueError as exc:
            raise EvidenceError(f"{run_dir / EVIDENCE_FILE}, check {i + 1}: {exc}") from None
    for on, entry in raw["captures"].items():
        name = entry.get("pcap") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _PCAP_NAME.fullmatch(name):
            raise EvidenceError(f"{run_dir / EVIDENCE_FILE}: capture {on!r} names no pcap file of the folder")
        path = run_dir / name
        if not path.is_file():
            raise EvidenceError(f"{path} is missing")
        if sha256_file(path) != entry.get("sha256"):
            raise EvidenceError(f"{path} does not match its SHA-256 in {EVIDENCE_FILE}: the capture was altered")
        seen = entry.get("seen")
        try:
            collected.frames[on] = read_frames(path, seen=seen if isinstance(seen, int) else None)
        except (OSError, ValueError) as exc:
            raise EvidenceError(f"{path}: {exc}") from None
        collected.pcaps[on] = path
    missing = sorted({c.capture.on for c in plan.scenario.checks if c.capture is not None} - set(collected.frames))
    if missing:
        raise EvidenceError(f"{run_dir / EVIDENCE_FILE} has no capture on {', '.join(missing)}")
    return collected


class NoSuchCheck(ValueError):
    """`only` names no check of the selection."""


def checks_at(scenario: Any, path: str) -> list[Any]:
    """The list of checks at `path` in the scenario, e.g. `checks` or `exercise.tasks[0].checks`."""
    value: Any = scenario
    pos = 0
    for match in _PATH_PART.finditer(path):
        if match.start() != pos:
            break
        attr, index = match.groups()
        try:
            value = getattr(value, attr) if attr else value[int(index)]
        except (AttributeError, IndexError, TypeError, KeyError):
            raise EvidenceError(f"no list of checks at {path!r} in scenario {getattr(scenario, 'name', '?')!r}") from None
        pos = match.end() + (1 if path[match.end():match.end() + 1] == "." else 0)
    if pos != len(path) or not isinstance(value, list):
        raise EvidenceError(f"no list of checks at {path!r} in scenario {getattr(scenario, 'name', '?')!r}")
    return value


def with_checks(plan: Plan, checks: list[Any]) -> Plan:
    """The plan with these checks as its check phase (captures then judge their traffic alone)."""
    return dataclasses.replace(plan, scenario=dataclasses.replace(plan.scenario, checks=list(checks)))


def select_checks(plan: Plan, path: str = "checks", only: str | None = None) -> Plan:
    checks = plan.scenario.checks if path == "checks" else checks_at(plan.scenario, path)
    if only is not None:
        chosen = [c for c in checks if getattr(c.spec, "name", None) == only]
        if not chosen:
            raise NoSuchCheck(only)
        checks = chosen
    return plan if checks is plan.scenario.checks else with_checks(plan, checks)
