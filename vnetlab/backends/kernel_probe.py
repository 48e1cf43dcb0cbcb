"""What the host kernel can do for a lab's network, probed once per host boot.

Some kernels are built without parts that bridging lessons use (802.1Q devices, bridge VLAN
filtering, the netem qdisc …), and a kernel without loadable modules cannot gain them. The probe
asks the kernel itself: inside a scratch network namespace it creates and deletes, it tries each
capability through netlink (pyroute2) and records whether the kernel did it, or its answer when
it refused. Nothing is created outside that namespace.

The result is cached in CACHE_FILE, keyed by the host's boot id (/proc/sys/kernel/random/boot_id):
the kernel cannot change without a reboot, so one probe per boot is enough. `vnetlab doctor` shows
it; `run`/`up`/`plan` give its keys to the plan (PlanOptions.host_kernel), where features choose
their path by it (a switch guest for VLAN filtering, netem on the host or in the guests).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vnetlab.backends import netns
from vnetlab.backends.host_netem import add_redirect
from vnetlab.backends.keys import make_dirs

CACHE_FILE = Path("/run/vnetlab/kernel-probe.json")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
CACHE_MAX_BYTES = 64 * 1024  # the cache is a few hundred bytes; a larger file is not ours to trust
NAMESPACE_PREFIX = "vnlprobe-"  # never a lab's: labs' namespaces are vnl-<lab> and vnl-<lab>.<node>

# (key, what it is): in the order doctor shows them
CAPABILITIES: tuple[tuple[str, str], ...] = (
    ("vlan_filtering", "bridge VLAN filtering"),
    ("vlan", "802.1Q VLAN devices"),
    ("vxlan", "VXLAN devices"),
    ("netem", "netem qdisc"),
    ("ifb", "ifb devices"),
    ("mirred", "tc mirred redirect (u32 filter)"),
    ("tbf", "tbf qdisc"),
    ("stp", "bridge STP"),
    ("mtu_9000", "veth MTU 9000"),
)
LABELS = dict(CAPABILITIES)


@dataclass(frozen=True)
class Capability:
    key: str
    ok: bool
    error: str = ""  # why not: the kernel's answer (empty when ok)

    @property
    def label(self) -> str:
        return LABELS.get(self.key, self.key)


@dataclass(frozen=True)
class KernelProbe:
    boot_id: str  # "" when the boot id could not be read (then nothing was cached)
    capabilities: tuple[Capability, ...]
    cached: bool = False  # read back from CACHE_FILE: probed earlier in this host boot

    def get(self, key: str) -> Capability | None:
        return next((c for c in self.capabilities if c.key == key), None)


Prober = Callable[[], tuple[Capability, ...]]


# -- the probe itself (root: it creates a network namespace) -------------------------------------


def _kernel_error(exc: BaseException, qdisc: bool = False) -> str:
    """The kernel's answer as words: 'Operation not supported, errno 95'."""
    code = getattr(exc, "code", None) if isinstance(exc, NetlinkError) else getattr(exc, "errno", None)
    if not isinstance(code, int):
        return str(exc) or type(exc).__name__
    text = f"{os.strerror(code)}, errno {code}"
    return f"no such qdisc in this kernel: {text}" if qdisc and code == errno.ENOENT else text


def _info_data(ipr: IPRoute, name: str) -> object:
    link = ipr.get_links(ipr.link_lookup(ifname=name)[0])[0]
    return link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")


def _attempt(fn: Callable[[], str | None], *, qdisc: bool = False) -> tuple[bool, str]:
    """(True, "") when fn ran and found what it asked for; (False, why) when the kernel refused or
    fn returned a reason (it accepted the request but did not do it)."""
    try:
        why = fn()
    except (NetlinkError, OSError) as exc:
        return False, _kernel_error(exc, qdisc)
    return (False, why) if why else (True, "")


def _probe_inside() -> tuple[Capability, ...]:
    """Each capability tried in the calling thread's (scratch) namespace."""
    results: dict[str, tuple[bool, str]] = {}
    with IPRoute() as ipr:

        def bridge(name: str, attr: str, **options: int) -> str | None:
            ipr.link("add", ifname=name, kind="bridge", **options)
            value = _info_data(ipr, name).get_attr(attr)  # type: ignore[attr-defined]
            return None if value == 1 else f"the kernel accepted the bridge but reads {attr} back as {value}"

        def veth() -> None:
            ipr.link("add", ifname="kp-v0", kind="veth", peer="kp-v1")

        def ifb() -> None:
            ipr.link("add", ifname="kp-ifb", kind="ifb")

        results["vlan_filtering"] = _attempt(lambda: bridge("kp-vf", "IFLA_BR_VLAN_FILTERING", br_vlan_filtering=1))
        results["stp"] = _attempt(lambda: bridge("kp-stp", "IFLA_BR_STP_STATE", br_stp_state=1))
        results["ifb"] = _attempt(ifb)
        veth_ok, veth_error = _attempt(veth)
        if not veth_ok:  # everything below needs a link to work on
            for key in ("vlan", "vxlan", "netem", "tbf", "mtu_9000", "mirred"):
                results[key] = (False, f"no veth to try it on: {veth_error}")
            return tuple(Capability(key, *results[key]) for key, _ in CAPABILITIES)
        v0, v1 = ipr.link_lookup(ifname="kp-v0")[0], ipr.link_lookup(ifname="kp-v1")[0]

        def vlan() -> None:
            ipr.link("add", ifname="kp-v0.10", kind="vlan", link=v0, vlan_id=10)

        def vxlan() -> None:
            ipr.link("add", ifname="kp-vx", kind="vxlan", vxlan_id=42, vxlan_port=4789)

        def netem() -> None:
            ipr.tc("add", "netem", index=v0, handle="1:", delay=1000)

        def tbf() -> None:
            ipr.tc("add", "tbf", index=v1, handle="1:", rate="1mbit", burst=10240, latency=50000)

        def mtu() -> str | None:
            ipr.link("set", index=v0, mtu=9000)
            value = ipr.get_links(v0)[0].get_attr("IFLA_MTU")
            return None if value == 9000 else f"the kernel accepted MTU 9000 but reads back {value}"

        results["vlan"] = _attempt(vlan)
        results["vxlan"] = _attempt(vxlan)
        results["netem"] = _attempt(netem, qdisc=True)
        results["tbf"] = _attempt(tbf, qdisc=True)
        results["mtu_9000"] = _attempt(mtu)

        # what host netem does to a tap: its ingress redirected (to the other veth end here)
        results["mirred"] = _attempt(lambda: add_redirect(ipr, v1, v0), qdisc=True)
    return tuple(Capability(key, *results[key]) for key, _ in CAPABILITIES)


def run_probe() -> tuple[Capability, ...]:
    """Every capability, tried in a scratch namespace created here and deleted afterwards."""
    name = f"{NAMESPACE_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    netns.create_namespace(name)  # NamespaceError if it cannot (not root); it removes a half-made one itself
    try:
        return netns.run_in_namespace(name, _probe_inside)
    finally:
        netns.delete_namespace(name)


# -- once per host boot ------------------------------------------------------------------------------


def read_boot_id(path: Path = BOOT_ID_FILE) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def load_cache(path: Path, boot_id: str) -> tuple[Capability, ...] | None:
    """The cached capabilities if the file is this boot's and names every capability, else None."""
    try:
        with path.open("rb") as f:
            raw = f.read(CACHE_MAX_BYTES + 1)
        data = json.loads(raw) if len(raw) <= CACHE_MAX_BYTES else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not boot_id or data.get("boot_id") != boot_id or not isinstance(data.get("capabilities"), list):
        return None
    found: dict[str, Capability] = {}
    for item in data["capabilities"]:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not isinstance(item.get("ok"), bool) or not isinstance(item.get("error", ""), str):
            return None
        found[item["key"]] = Capability(item["key"], item["ok"], item.get("error", ""))
    if any(key not in found for key, _ in CAPABILITIES):
        return None  # probed by a version that knew fewer capabilities: probe again
    return tuple(found[key] for key, _ in CAPABILITIES)


def save_cache(path: Path, probe: KernelProbe) -> None:
    """Write atomically, readable by all (nothing in it is secret; doctor may run unprivileged)."""
    make_dirs(path.parent, 0o755)
    data = {"boot_id": probe.boot_id, "capabilities": [asdict(c) for c in probe.capabilities]}
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as f:
            json.dump(data, f, indent=1)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def host_capabilities() -> frozenset[str]:
    """The keys of what this host's kernel can do; empty (assume nothing) when the probe cannot run."""
    try:
        return frozenset(c.key for c in probe_kernel().capabilities if c.ok)
    except netns.NamespaceError:
        return frozenset()


def probe_kernel(*, cache: Path = CACHE_FILE, boot_id_file: Path = BOOT_ID_FILE, prober: Prober = run_probe) -> KernelProbe:
    """This boot's answer from the cache, or a new probe (cached when the boot id is known).
    Raises vnetlab.backends.netns.NamespaceError when a probe is needed and cannot run (not root)."""
    boot_id = read_boot_id(boot_id_file)
    cached = load_cache(cache, boot_id) if boot_id else None
    if cached is not None:
        return KernelProbe(boot_id, cached, cached=True)
    probe = KernelProbe(boot_id, prober())
    if boot_id:
        try:
            save_cache(cache, probe)
        except OSError:
            pass  # the cache only saves the next probe; the answer stands without it
    return probe
