"""netem on the host: impair the frames a guest NIC sends, at its tap, through netlink (pyroute2).

A tap's own egress carries the frames *to* the guest, so the frames a NIC sends are caught where
they enter the host: the tap's ingress, redirected (a match-all u32 filter with a mirred action)
to an ifb device, whose egress carries the netem qdisc. netem's own rate option is not in
pyroute2, so a rate is a tbf qdisc under netem (the classic netem + tbf pair). Needs the netem
qdisc, ifb devices and the mirred action in the host kernel (the kernel probe's `netem`, `ifb`,
`mirred`); the netem feature uses this only when the probe found all three.
"""

from __future__ import annotations

from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg.common import tick_in_usec

from vnetlab.backends.linux_bridge import link_index, with_netlink
from vnetlab.errors import VnetlabError



class Netem(Protocol):
    """The parsed settings (vnetlab.tools.netem.Netem)."""

    delay_us: int | None
    jitter_us: int | None
    loss_percent: float | None
    rate_bits: int | None

    def describe(self) -> str: ...

ETH_P_ALL = 0x0003
INGRESS = "ffff:"
MATCH_ALL = "0x0/0x0+0"  # u32: every frame
TBF_LATENCY_US = 400_000  # how long tbf may queue: generous, so a rate limits rather than drops
TBF_BURST_MIN = 16_000  # bytes: at least ten full frames


class HostNetemError(VnetlabError):
    """The host kernel refused part of a tap's impairment."""


def create_ifb(ns: str, name: str) -> None:
    with_netlink(ns, f"create ifb device {name!r}", lambda ipr: ipr.link("add", ifname=name, kind="ifb", state="up"), HostNetemError)


def add_redirect(ipr: IPRoute, index: int, to_index: int) -> None:
    """An ingress qdisc on link `index` whose match-all filter redirects every frame out of `to_index`
    (also what the kernel probe tries)."""
    ipr.tc("add", "ingress", index=index, handle=INGRESS)
    action = {"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": to_index}
    ipr.tc("add-filter", "u32", index=index, parent=INGRESS, protocol=ETH_P_ALL, prio=1, target=0, keys=[MATCH_ALL], action=action)


def redirect_ingress(ns: str, tap: str, ifb: str) -> None:
    """Every frame arriving on the tap (sent by the guest) goes out of the ifb device instead, and on from there."""

    def op(ipr: IPRoute) -> None:
        index = link_index(ipr, tap, ns)
        try:
            ipr.tc("del", "ingress", index=index, handle=INGRESS)
        except NetlinkError:
            pass  # none yet
        add_redirect(ipr, index, link_index(ipr, ifb, ns))

    with_netlink(ns, f"redirect the frames arriving on {tap!r} to {ifb!r}", op, HostNetemError)


def tbf_burst(rate_bits: int) -> int:
    """tbf's bucket: 4 ms of the rate, never below ten full frames."""
    return max(TBF_BURST_MIN, rate_bits // 8 // 250)


def set_netem(ns: str, ifb: str, netem: Netem) -> None:
    """A new netem qdisc at the ifb's root (the old one goes first), with tbf under it for a rate."""

    def op(ipr: IPRoute) -> None:
        index = link_index(ipr, ifb, ns)
        _delete_root(ipr, index)
        ipr.tc(
            "add", "netem", index=index, handle="1:",
            delay=netem.delay_us or 0, jitter=netem.jitter_us or 0, loss=netem.loss_percent or 0,
        )
        if netem.rate_bits is not None:
            ipr.tc("add", "tbf", index=index, parent="1:", handle="2:", rate=f"{netem.rate_bits}bit", burst=tbf_burst(netem.rate_bits), latency=TBF_LATENCY_US)

    with_netlink(ns, f"set netem ({netem.describe()}) on {ifb!r}", op, HostNetemError)


def impair(ns: str, tap: str, ifb: str, netem: Netem) -> str:
    """The tap's ingress to its ifb (again: harmless), the netem there; returns what the kernel has."""
    redirect_ingress(ns, tap, ifb)
    set_netem(ns, ifb, netem)
    return read_netem(ns, ifb) or f"{ifb}: no netem qdisc"


def clear_netem(ns: str, ifb: str) -> None:
    with_netlink(ns, f"clear netem on {ifb!r}", lambda ipr: _delete_root(ipr, link_index(ipr, ifb, ns)), HostNetemError)


def _delete_root(ipr: IPRoute, index: int) -> None:
    try:
        ipr.tc("del", index=index, handle="1:")
    except NetlinkError:
        pass  # nothing at the root but the default


def read_netem(ns: str, ifb: str) -> str | None:
    """What the kernel has on the ifb: 'netem delay 40.0ms jitter 5.0ms loss 10% · tbf rate 20000000bit', or None."""

    def op(ipr: IPRoute) -> str | None:
        parts = []
        for q in ipr.get_qdiscs(link_index(ipr, ifb, ns)):
            kind = q.get_attr("TCA_KIND")
            options = q.get_attr("TCA_OPTIONS")
            if kind == "netem" and options is not None:
                delay, jitter = options["delay"] / tick_in_usec / 1000, options["jitter"] / tick_in_usec / 1000
                loss = options["loss"] * 100 / (2**32 - 1)
                parts.insert(0, f"netem delay {delay:.1f}ms jitter {jitter:.1f}ms loss {loss:.3g}%")
            elif kind == "tbf" and options is not None:
                params = options.get_attr("TCA_TBF_PARMS")
                parts.append(f"tbf rate {params['rate'] * 8 if params else '?'}bit")
        return " · ".join(parts) if any(p.startswith("netem") for p in parts) else None

    return with_netlink(ns, f"read the qdiscs of {ifb!r}", op, HostNetemError)
