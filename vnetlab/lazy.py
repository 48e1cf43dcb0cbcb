"""Libraries a run needs only once its guests boot (paramiko for SSH, scapy for captures), imported then.

Importing them takes ~0.2 s of a two-guest run's ~4.5 s. Importing them at start-up puts that time
before the first guest starts; a `LazyModule` defers it to first use, and `preload` imports them in
a background thread while the guests boot, so the import overlaps with the boot instead of adding
to it. Python's per-module import locks make the thread and a first use at the same time safe.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module and imports it at the first attribute read (`paramiko.Transport`).

    `together` are imported first: scapy dissects a frame only into the layers imported before it
    parses, so Ether must not be used before inet and inet6 are in.
    """

    def __init__(self, name: str, *together: str):
        self._name = name
        self._together = together
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            for name in self._together:
                importlib.import_module(name)
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}{'' if self._module is None else ' (imported)'}>"


# What `preload` imports, in the order a run first needs them: SSH, then the capture's parsers.
RUN_LATE_MODULES = ("paramiko", "scapy.arch.linux", "scapy.layers.l2", "scapy.layers.inet", "scapy.layers.inet6", "scapy.utils")


def preload(names: tuple[str, ...] = RUN_LATE_MODULES) -> threading.Thread:
    """Import `names` one after another in a daemon thread (one thread: two threads importing
    modules that share dependencies could wait on each other's import locks)."""

    def work() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 — the first real use raises it again, where it can be reported
                return

    thread = threading.Thread(target=work, name="vnetlab-preload", daemon=True)
    thread.start()
    return thread
