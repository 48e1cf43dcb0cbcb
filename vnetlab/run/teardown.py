"""Remove a lab from its state file, newest resource first.

Works from the record alone (no plan, no scenario), so it also cleans up after
a crash or kill -9. Each removal is idempotent; one failing removal does not
stop the others, and the state file is kept if anything could not be removed.
"""

from __future__ import annotations

import concurrent.futures
import shutil
from pathlib import Path

from collections.abc import Callable, Mapping
from typing import Any

from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import linux_bridge, netns
from vnetlab.errors import VnetlabError
from vnetlab.plan.planner import METADATA_NS
from vnetlab.run.state import LabState, RecordedResource

Remover = Callable[[RecordedResource, LabState, Path], None]


class TeardownError(VnetlabError):
    pass


def _remove(resource: RecordedResource, state: LabState, conn_factory, lab_dir: Path, links_ns: str | None, removers: Mapping[str, Remover]) -> None:
    """`links_ns`: where links recorded in the lab namespace are deleted one by one; None when the
    namespace itself is removed (last), since the kernel then destroys them with it."""
    if resource.kind == "domain":
        conn = conn_factory()
        dom = hv.lookup(conn, resource.name)
        # Only a domain whose metadata names this lab: a same-named domain of someone else stays.
        if dom is not None and hv.lab_of(dom, METADATA_NS) == state.lab:
            hv.remove(conn, resource.name)
    elif resource.kind == "tap":
        # Wherever the crash left it: still in the root namespace, or moved into the lab's.
        if links_ns is not None:
            linux_bridge.delete_link(links_ns, resource.name)  # a no-op once the namespace is gone
        linux_bridge.delete_link(None, resource.name)
    elif resource.kind in ("bridge", "veth"):
        # A veth is the lab end of a container's or host's pair; deleting it, or either
        # namespace, takes the peer along.
        if links_ns is not None:
            linux_bridge.delete_link(links_ns, resource.name)
    elif resource.kind in removers:  # kinds a feature adds (e.g. a switch's daemons and bridges)
        removers[resource.kind](resource, state, lab_dir)
    elif resource.kind == "namespace":
        netns.delete_namespace(resource.name)
    else:
        raise TeardownError(f"unknown resource kind {resource.kind!r} in the state file")


def teardown(lab_dir: Path, state: LabState, removers: Mapping[str, Remover] | None = None, *, keep_files: bool = False) -> list[str]:
    """Remove everything recorded; returns the problems (empty when all is gone).

    `removers`: how to remove the resource kinds features add, by kind."""
    removers = removers or {}
    conn = None

    def conn_factory():
        nonlocal conn
        if conn is None:
            conn = hv.connect()
        return conn

    state.set_phase(lab_dir, "tearing-down")
    problems: list[str] = []

    # Deleting each link costs 15-40 ms in the kernel; with the namespace, they go in one batch.
    namespace_goes = any(r.kind == "namespace" and r.name == state.namespace for r in state.resources)
    links_ns = None if namespace_goes else state.namespace

    def remove(resource: RecordedResource) -> None:
        try:
            _remove(resource, state, conn_factory, lab_dir, links_ns, removers)
        except Exception as exc:  # noqa: BLE001 — keep removing the rest, report every failure
            problems.append(f"{resource.kind} {resource.name}: {exc}")

    newest_first = list(reversed(state.resources))
    # Domains are independent of each other and libvirt takes ~1-2 s to reap each one:
    # destroy them together, then the rest newest first.
    domains = [r for r in newest_first if r.kind == "domain"]
    if domains:
        conn_factory()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(domains)) as pool:
            list(pool.map(remove, domains))
    for resource in newest_first:
        if resource.kind != "domain":
            remove(resource)
    if conn is not None:
        conn.close()
    if not problems and not keep_files:
        shutil.rmtree(lab_dir, ignore_errors=True)
    return problems
