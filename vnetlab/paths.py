"""Where vnetlab finds its templates and scenarios, and where it keeps lab state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_DIR / "templates"
SCENARIOS_DIR = PROJECT_DIR / "scenarios"


@dataclass(frozen=True)
class Layout:
    """The on-disk layout under one root (default /var/lib/vnetlab)."""

    root: Path = Path("/var/lib/vnetlab")

    @property
    def labs(self) -> Path:
        return self.root / "labs"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def lab_dir(self, lab: str) -> Path:
        return self.labs / lab


def resolve_scenario(ref: str) -> Path:
    """A scenario is named (two-vm-ping) or given as a path to a YAML file."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or "/" in ref:
        return path
    return SCENARIOS_DIR / f"{ref}.yaml"


def scenario_files() -> list[Path]:
    return sorted(SCENARIOS_DIR.glob("*.yaml"))
