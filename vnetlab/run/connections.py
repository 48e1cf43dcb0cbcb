"""libvirt connections by hypervisor URI, opened on first use and closed together.

A lab may span hypervisors (a guest's `uri`); one connection per URI serves every guest there. A
failure to connect is remembered per URI: every later use fails at once with the same reason (no
15 s wait per guest), and guests on other hypervisors are unaffected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import libvirt

from vnetlab.backends import libvirt_domains as hv


def _connect(uri: str) -> libvirt.virConnect:
    # Looked up at each call, and this machine's with no argument (tests replace hv.connect).
    return hv.connect() if uri == hv.DEFAULT_URI else hv.connect(uri)


class Connections:
    def __init__(self, connect: Callable[[str], libvirt.virConnect] = _connect) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._open: dict[str, libvirt.virConnect] = {}
        self._errors: dict[str, str] = {}

    def get(self, uri: str | None = None) -> libvirt.virConnect:
        uri = uri or hv.DEFAULT_URI
        with self._lock:
            if uri in self._errors:  # a new exception per caller: they fail in parallel threads
                raise hv.HypervisorError(self._errors[uri])
            if uri not in self._open:
                try:
                    self._open[uri] = self._connect(uri)
                except Exception as exc:
                    self._errors[uri] = str(exc)
                    raise
            return self._open[uri]

    def close(self) -> None:
        with self._lock:
            for conn in self._open.values():
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 — the daemon may have died meanwhile; nothing to keep
                    pass
            self._open.clear()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
