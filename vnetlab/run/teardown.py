"""Remove a lab from its state file, newest resource first.

Works from the record alone (no plan, no scenario), so it also cleans up after
a crash or kill -9. Before a namespace the lab made is deleted, every process still in it is
ended (found by its /proc/PID/ns/net), so nothing the lab started there runs on as root. Each removal is idempotent; one failing removal does not
stop the others (libvirtd being down leaves the domains, not the namespace, the
taps or the switch daemons). What could not be removed stays in the state file,
and only that, so a later `vnetlab down` finishes the job.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from collections.abc import Callable, Mapping

from vnetlab.backends import libvirt_domains as hv
from vnetlab.backends import linux_bridge, netns
from vnetlab.errors import VnetlabError
from vnetlab.plan.planner import METADATA_NS
from vnetlab.run.connections import Connections
from vnetlab.run.state import LabState, RecordedResource

Remover = Callable[[RecordedResource, LabState, Path], None]

# Links a lab namespace holds: when the namespace goes, the kernel destroys them with it (a tap
# may still be in the root namespace after a crash: it is deleted there explicitly as well).
_LINKS_OF_LAB_NAMESPACE = ("tap", "bridge", "veth")


class TeardownError(VnetlabError):
    pass


class KeepsLabNamespace(TeardownError):
    """A resource that could not be removed and is reached only through the lab namespace (e.g. a
    simulated hypervisor on the lab's underlay): the namespace stays too, so a later `down` can."""


@dataclass
class TeardownResult:
    """What a teardown removed, and what it could not (kept in the state file), with why."""

    removed: list[RecordedResource] = field(default_factory=list)
    left: list[RecordedResource] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _remove(resource: RecordedResource, state: LabState, conn_factory, lab_dir: Path, links_ns: str | None, removers: Mapping[str, Remover]) -> None:
    """`links_ns`: where links recorded in the lab namespace are deleted one by one; None when the
    namespace itself is removed (last), since the kernel then destroys them with it."""
    if resource.kind == "domain":
        conn = conn_factory(resource.uri)
        # Only a domain whose metadata names this lab: a same-named domain of someone else stays
        # (and is no longer ours to track). "Could not tell" raises, and the record stays.
        try:
            dom = hv.lookup_of_lab(conn, resource.name, state.lab, METADATA_NS)
        except hv.ForeignDomain:
            return
        if dom is not None:
            hv.remove(conn, resource.name, dom)
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
        netns.end_processes(resource.name)  # a command started in the background there (exec:) must not outlive the lab
        netns.delete_namespace(resource.name)
    else:
        raise TeardownError(f"unknown resource kind {resource.kind!r} in the state file")


def teardown_lab(lab_dir: Path, state: LabState, removers: Mapping[str, Remover] | None = None, *, keep_files: bool = False) -> TeardownResult:
    """Remove everything recorded, as much as can be. The state file is then rewritten to hold
    only what is left (the lab folder goes when nothing is left, unless `keep_files`).

    `removers`: how to remove the resource kinds features add, by kind."""
    removers = removers or {}
    conn = Connections()
    conn_factory = conn.get

    state.set_phase(lab_dir, "tearing-down")
    result = TeardownResult()
    failed: list[RecordedResource] = []
    lock = threading.Lock()

    # Deleting each link costs 15-40 ms in the kernel; with the namespace, they go in one batch.
    lab_ns = next((r for r in state.resources if r.kind == "namespace" and r.name == state.namespace), None)
    links_ns = None if lab_ns is not None else state.namespace

    needed_by: list[str] = []  # what is left behind and reached only through the lab namespace

    def remove(resource: RecordedResource) -> None:
        try:
            if resource is lab_ns and needed_by:
                raise TeardownError(f"kept: {', '.join(needed_by)} could not be removed and can only be reached through it")
            _remove(resource, state, conn_factory, lab_dir, links_ns, removers)
        except Exception as exc:  # noqa: BLE001 — keep removing the rest, report every failure
            with lock:
                failed.append(resource)
                result.problems.append(f"{resource.kind} {resource.name}: {exc}")
                if isinstance(exc, KeepsLabNamespace):
                    needed_by.append(f"{resource.kind} {resource.name}")

    newest_first = list(reversed(state.resources))
    # Domains are independent of each other and libvirt takes ~1-2 s to reap each one:
    # destroy them together, then the rest newest first.
    domains = [r for r in newest_first if r.kind == "domain"]
    if domains:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(domains)) as pool:
            list(pool.map(remove, domains))
    for resource in newest_first:
        if resource.kind != "domain":
            remove(resource)
    conn.close()

    left = {id(r) for r in failed}
    if lab_ns is not None and id(lab_ns) in left:
        # The links were left to go with the namespace, which stays: so do they.
        left |= {id(r) for r in state.resources if r.kind in _LINKS_OF_LAB_NAMESPACE}
    result.left = [r for r in state.resources if id(r) in left]
    result.removed = [r for r in state.resources if id(r) not in left]
    if result.left or keep_files:
        state.keep_only(lab_dir, result.left)
    else:
        shutil.rmtree(lab_dir, ignore_errors=True)
    return result


def teardown(lab_dir: Path, state: LabState, removers: Mapping[str, Remover] | None = None, *, keep_files: bool = False) -> list[str]:
    """Remove everything recorded; returns the problems (empty when all is gone)."""
    return teardown_lab(lab_dir, state, removers, keep_files=keep_files).problems
