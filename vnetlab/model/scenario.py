"""The scenario language: the core's own fields, and the model composed from the features' parts.

A scenario file is read into frozen dataclasses. Bridges, VMs, NICs, pings, checks
and the scenario itself are *composed*: the core declares its fields here and every
feature adds its own (a top-level section, a field on bridges or VMs, a kind of
check, a capture expectation) through a `ModelExtension`. `compose_model` builds the
dataclasses once per set of features, so the loader (typed_yaml) and the JSON Schema
(schema) see one ordinary dataclass tree, unknown keys are still rejected with their
line, and the core never names a feature.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vnetlab.model.addressing import NO_ADDRESSES, NO_SUBNETS, NicAddresses, Subnets
from vnetlab.model.params import params_field
from vnetlab.model.typed_yaml import spec

NAME = r"[a-z][a-z0-9-]*"
LINK = r"[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*"  # VM.NIC
IFACE_MAX = 15  # IFNAMSIZ - 1: the kernel's limit for interface names
VM_NAME_MAX = 20
NODE_NAME_MAX = IFACE_MAX - 3  # a node's lab-side link is named with a 3-character prefix (e.g. ve-<name>)
RESERVED_IFACES = {"lo", "mgmt0"}
# The guest init (images/guest/etc/init.d/rcS) first renames every NIC to vnltmp<N>, then to its
# wanted name: a wanted name starting like that could be taken by another NIC mid-rename.
RESERVED_IFACE_PREFIX = "vnltmp"
DEFAULT_MANAGEMENT_SUBNET = "172.30.255.0/24"
NO_DESCRIPTION = "(no description)"
CORE_EXPECTATIONS = ("arp", "icmp-echo", "ndp", "icmp6-echo")  # judged by vnetlab.checks.runner

FieldDecl = tuple[str, Any, Any]  # (attribute name, type, spec(...)): one field of a composed dataclass


def decl(name: str, tp: Any, field_spec: Any) -> FieldDecl:
    return (name, tp, field_spec)


# -- fixed parts of the language (not extended by features) ----------------------


@dataclass(frozen=True)
class ImageSpec:
    """A guest image: a kind (with extra Debian packages for debian) or a user's own disk image file."""

    kind: Literal["tiny", "debian"] | None = spec("tiny (busybox initramfs, the default) or debian (Debian 12 with systemd)", default=None)
    packages: list[str] = spec("extra Debian packages on the debian kind (each set is built and cached once)", default_factory=list)
    file: str | None = spec("a BIOS-bootable qcow2 or raw cloud image (cloud-init), relative to the scenario file", default=None, max_length=4096)


IMAGE_DOC = "guest image: tiny, debian, {kind: debian, packages: [...]} or {file: PATH}"


@dataclass(frozen=True)
class Management:
    subnet: str = spec("management subnet inside the lab namespace (SSH to guests)", default=DEFAULT_MANAGEMENT_SUBNET)


# -- what a feature may add --------------------------------------------------------


@dataclass(frozen=True)
class NodeDecl:
    """A lab node that is not a VM (a container, an outside host), as the model sees it."""

    name: str
    kind: str
    path: str  # where the scenario declares it, e.g. containers[0]
    interfaces: tuple[tuple[str, str], ...]  # (segment, address with prefix): a bridge name or another segment
    spec: Any = None  # its entry in the scenario (carries the node fields other features add, e.g. exec)
    nics: tuple[tuple[str, str | None], ...] = ()  # (interface name in the node, address with prefix)


@dataclass(frozen=True)
class NodeSection:
    """A top-level list of nodes a feature brings (containers, hosts); its class also gets every
    feature's `node_fields`, like the VMs do."""

    key: str
    class_name: str
    fields: tuple[FieldDecl, ...]
    doc: str  # of the section
    class_doc: str = ""


@dataclass(frozen=True)
class Overlay:
    """An interface inside member VMs that pings may go `via` (e.g. a WireGuard tunnel)."""

    name: str
    kind: str  # for messages: "WireGuard tunnel"
    members: Mapping[str, str]  # VM name → its address on the overlay, with prefix
    underlay: str | None = None  # the bridge its carrier datagrams cross (a ping through it is seen there, encrypted)
    port: int | None = None  # the carrier's UDP port


Validator = Callable[[Any], None]  # (vnetlab.model.validate.Rules) → problems added to it
CheckValidator = Callable[[Any, Any, str], None]  # (rules, check spec, path)


@dataclass(frozen=True)
class Expectation:
    """A capture expectation (`expect: [name]`) and what makes it valid in a scenario."""

    name: str
    validate: CheckValidator | None = None  # (rules, capture check, path) → problems via rules.add
    node_scoped: bool = False  # judged on an uplink or with non-VM nodes (validated on the node path)
    one_node: bool = False  # judged for one node (`between: [d1]`: its DHCP exchange, the router advertisements it takes); its validator decides the rest
    across_segments: bool = False  # the two nodes need not share the captured segment (e.g. a routed path): its validator decides


@dataclass(frozen=True)
class ModelExtension:
    """A feature's part of the scenario language: its keys, its rules, the nodes and routes it brings."""

    sections: tuple[FieldDecl, ...] = ()  # top-level keys
    node_sections: tuple[NodeSection, ...] = ()  # top-level lists of nodes (before its other sections)
    bridge_fields: tuple[FieldDecl, ...] = ()
    vm_fields: tuple[FieldDecl, ...] = ()
    nic_fields: tuple[FieldDecl, ...] = ()  # on each VM NIC
    node_fields: tuple[FieldDecl, ...] = ()  # on VMs and on every node section's entries
    ping_fields: tuple[FieldDecl, ...] = ()
    checks: tuple[FieldDecl, ...] = ()  # kinds of check: (key, spec dataclass | None, spec(doc, default=None))
    check_validators: Mapping[str, CheckValidator] = field(default_factory=dict)
    expectations: tuple[Expectation, ...] = ()
    bridge_types: tuple[str, ...] = ()  # switch backends besides "linux"
    node_kinds: tuple[str, ...] = ()  # e.g. ("container", "host"), for messages
    validate: Validator | None = None  # cross-field rules, after the core's bridges and VMs
    normalise: Callable[[Any], Any] | None = None  # (scenario) → the scenario with its canonical values (e.g. DHCP reservations), before any rule runs: lenient, the rules report what is wrong
    nodes: Callable[[Any], Iterable[NodeDecl]] | None = None
    lab_interfaces: Callable[[Any], Iterable[str]] | None = None  # interfaces of the lab namespace besides bridges
    nic_addresses: Callable[[Any], Iterable[str]] | None = None  # a VM's NIC → addresses with prefix it carries besides its own (a trunk's sub-interfaces)
    route: Callable[[Any, str, str], Any] | None = None  # (scenario, source, target) → target's IPv4Interface reached beyond a shared segment, or None (IPv4 only)
    overlays: Callable[[Any], Iterable[Overlay]] | None = None
    overlay_kind: str = ""  # what its overlays are called in messages, e.g. "WireGuard tunnel"
    sections_with_checks: Callable[[type], tuple[FieldDecl, ...]] | None = None  # top-level keys whose types hold checks: given the composed Check class (an exercise's tasks)
    check_lists: Callable[[Any], Iterable[tuple[str, list[Any]]]] | None = None  # (path, checks) of the lists of checks those sections hold: validated like the scenario's
    guests: Callable[[Any], Iterable[str]] | None = None  # guests it adds to every lab of the scenario (a switch guest for `in: guest`): commands may name them
    maybe_guests: Callable[[Any], Iterable[str]] | None = None  # guests it adds where the host needs them (a switch guest for a bridge this kernel cannot run): a link action may name their NICs


# -- the core's fields of the composed classes -------------------------------------


def _internal(doc: str, default: Any) -> Any:
    """A field the loader sets (never read from YAML): the canonical form of what the user wrote."""
    return field(default=default, compare=False, metadata={"internal": True, "doc": doc})


ADDRESS_DOC = "IPv4 or IPv6 address with prefix (10.1.1.2/24, fd00:1::2/64), dhcp (the bridge's DHCP server gives it) or slaac (formed from the bridge's router advertisements)"


def _core_nic() -> list[FieldDecl]:
    return [
        decl("bridge", str, spec("name of the bridge this vNIC is a port of", pattern=NAME, max_length=IFACE_MAX)),
        decl("address", str | None, spec(ADDRESS_DOC, default=None, max_length=64)),
        decl("addresses", list[str], spec("several addresses, at most one per family (dual-stack), e.g. [10.1.1.2/24, fd00:1::2/64] or [dhcp, slaac]; instead of address", default_factory=list)),
        decl("name", str | None, spec("interface name inside the guest (default eth0, eth1, …)", default=None, pattern=NAME, max_length=IFACE_MAX)),
        decl("addrs", NicAddresses, _internal("its addresses by family, canonicalised by the loader", NO_ADDRESSES)),
    ]


def _core_vm(nic: type) -> list[FieldDecl]:
    return [
        decl("name", str, spec("VM name (also its hostname)", pattern=NAME, max_length=VM_NAME_MAX)),
        decl("nics", list[nic], spec("data NICs, each a tap on a bridge", min_items=1)),
        decl("memory", int | None, spec("guest RAM in MiB (default: 128 for tiny, 256 for debian, 512 for a file image)", default=None, minimum=64, maximum=4096)),
        decl("image", Literal["tiny", "debian"] | ImageSpec | None, spec(IMAGE_DOC + " (default: the scenario's image)", default=None)),
        decl("vcpus", int, spec("virtual CPUs", default=1, minimum=1, maximum=8)),
    ]


def _core_bridge(types: tuple[str, ...]) -> list[FieldDecl]:
    return [
        decl("name", str, spec("bridge name inside the lab namespace", pattern=NAME, max_length=IFACE_MAX)),
        decl("type", Literal[types], spec("switch backend", default="linux")),  # type: ignore[valid-type]
        decl("subnet", str | None, spec("subnet of the bridge's segment, IPv4 (10.1.1.0/24) or IPv6 (fd00:1::/64); addresses on it must fit", default=None, max_length=64)),
        decl("subnets", list[str], spec("one IPv4 and one IPv6 subnet (dual-stack), e.g. [10.1.1.0/24, fd00:1::/64]; instead of subnet", default_factory=list)),
        decl("nets", Subnets, _internal("its subnets by family, canonicalised by the loader", NO_SUBNETS)),
    ]


CHECK_NAME_DOC = "a name for this check in the summary, the report and JUnit (default: made from what it checks)"


def _check_name() -> FieldDecl:
    return decl("name", str | None, spec(CHECK_NAME_DOC, default=None, max_length=120))


def _named(tp: Any) -> Any:
    """A kind of check's spec class with the optional `name` every check has (unless it declares one)."""
    if any(f.name == "name" for f in dataclasses.fields(tp)):
        return tp
    named = dataclasses.make_dataclass(tp.__name__, [_check_name()], bases=(tp,), frozen=True, kw_only=True)
    named.__module__ = tp.__module__
    named.__doc__ = tp.__doc__ if tp.__doc__ and not tp.__doc__.startswith(f"{tp.__name__}(") else ""
    return named


def _check_decl(field_decl: FieldDecl) -> FieldDecl:
    """(kind, Spec | None, spec) → the same with the named Spec."""
    name, tp, field_spec = field_decl
    spec_cls = next(a for a in typing.get_args(tp) if a is not type(None))
    return decl(name, _named(spec_cls) | None, field_spec)


def _core_ping() -> list[FieldDecl]:
    return [
        decl("source", str, spec("VM, container or host that sends the pings", key="from", pattern=NAME, max_length=VM_NAME_MAX)),
        decl("to", str, spec("target: a VM, container or host name (behind a router: its first address), NODE.NIC (web.eth0), or an IPv4 or IPv6 address; may be a template ({{ web.ip }})")),
        decl("family", Literal[4, 6] | None, spec("with a node name as target: ping its IPv4 (4) or IPv6 (6) address (default: IPv4 when the two share an IPv4 subnet, else IPv6); an address says its family itself", default=None)),
        decl("count", int, spec("echo requests to send, 100 a second (20 a second with measure: recovery)", default=3, minimum=1, maximum=1000)),
        decl("expect", Literal["success", "failure", "no-reply"], spec("success; failure: no reply, or no route from the source (the detail says which); no-reply: the requests must leave the source and get no reply (a route that sends them on the wire)", default="success")),
        decl("rtt_min_ms", int | None, spec("the average round-trip time must be at least this many ms (e.g. a netem delay took effect)", key="rtt-min-ms", default=None, minimum=0, maximum=600000)),
        decl("rtt_max_ms", int | None, spec("the average round-trip time must be at most this many ms", key="rtt-max-ms", default=None, minimum=0, maximum=600000)),
        decl("loss_max", int | None, spec("pass with up to this share of echo requests lost, in percent (default: none may be lost)", key="loss-max", default=None, minimum=0, maximum=100)),
        _check_name(),
    ]


def _core_capture(expectations: tuple[str, ...]) -> list[FieldDecl]:
    return [
        decl("between", list[str], spec("the two nodes (VMs, containers, hosts) whose exchange must be seen; one node for what one node does (dhcp, ra)", min_items=1)),
        decl("expect", list[Literal[expectations]], spec("what must be seen between them", min_items=1)),  # type: ignore[valid-type]
        decl("bridge", str | None, spec("bridge to capture on for the whole check phase", default=None, pattern=NAME, max_length=IFACE_MAX)),
        decl("interface", str | None, spec("an uplink of the lab namespace to capture on instead of a bridge", default=None, pattern=NAME, max_length=IFACE_MAX)),
        decl("link", str | None, spec("one VM NIC's link to its bridge to capture on instead of a bridge, as VM.NIC (e.g. vm3.eth0): its tap sees that NIC's frames only, as they enter and leave the guest", default=None, pattern=LINK, max_length=VM_NAME_MAX + 1 + IFACE_MAX)),
        _check_name(),
    ]


def feature_nodes(scenario: Any) -> list[NodeDecl]:
    """Nodes the features add (containers, outside hosts …), in declaration order."""
    return [n for e in scenario.model.extensions if e.nodes for n in e.nodes(scenario)]


def split_link(link: str) -> tuple[str, str]:
    """'vm3.eth0' → ('vm3', 'eth0'): a capture's link names a VM and one of its NICs."""
    vm, _, nic = link.partition(".")
    return vm, nic


class _VMMethods:
    def nic_name(self, index: int) -> str:
        return self.nics[index].name or f"eth{index}"  # type: ignore[attr-defined]


class _CaptureMethods:
    one_node: frozenset[str] = frozenset()  # expectations judged for one node (set on the composed class)

    def check_shape(self) -> list[str]:
        single = bool(self.expect) and all(e in self.one_node for e in self.expect)  # type: ignore[attr-defined]
        if single:
            problems = [] if len(self.between) == 1 else [f"between: {', '.join(self.expect)} is judged for one node: expected exactly one node name, got {len(self.between)}"]  # type: ignore[attr-defined]
        else:
            problems = [] if len(self.between) == 2 else [f"between: expected exactly two node names, got {len(self.between)}"]  # type: ignore[attr-defined]
        given = [x for x in (self.bridge, self.interface, self.link) if x is not None]  # type: ignore[attr-defined]
        return problems + ([] if len(given) == 1 else ["expected exactly one of: bridge, interface, link"])

    @property
    def on(self) -> str:
        """What is captured on: a bridge, an uplink, or a link (VM.NIC)."""
        return self.bridge or self.interface or self.link or ""  # type: ignore[attr-defined]


class _CheckMethods:
    def check_shape(self) -> list[str]:
        kinds = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        given = [k for k in kinds if getattr(self, k) is not None]
        return [] if len(given) == 1 else [f"expected exactly one of: {', '.join(kinds)}"]

    @property
    def kind(self) -> str:
        """The one field that is set (each field of Check is one kind of check)."""
        return next(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None)  # type: ignore[arg-type]

    @property
    def spec(self) -> Any:
        return getattr(self, self.kind)


class _ScenarioMethods:
    model: ScenarioModel  # set on the composed class

    def vm(self, name: str) -> Any:
        return next(v for v in self.vms if v.name == name)  # type: ignore[attr-defined]


def compose_class(name: str, fields: list[FieldDecl], base: type = object, doc: str | None = None, **namespace: Any) -> type:
    """A frozen dataclass of these fields, as the composed model's own (for a feature's section that holds composed classes)."""
    return _compose(name, fields, base, doc, **namespace)


def _compose(name: str, fields: list[FieldDecl], base: type = object, doc: str | None = None, **namespace: Any) -> type:
    seen: set[str] = set()
    for attr, _, _ in fields:
        if attr in seen:
            raise ValueError(f"two features declare the field {name}.{attr}")
        seen.add(attr)
    cls = dataclasses.make_dataclass(name, fields, bases=(base,), frozen=True, kw_only=True, namespace=namespace)
    cls.__module__ = __name__
    cls.__doc__ = doc or ""
    return cls


@dataclass(frozen=True)
class ScenarioModel:
    """The composed classes of one set of features, and those features' model hooks."""

    extensions: tuple[ModelExtension, ...]
    features: tuple[Any, ...]  # the features that composed it, opaque here: planning uses the same set
    Scenario: type
    Bridge: type
    VM: type
    Nic: type
    PingCheck: type
    CaptureCheck: type
    Check: type

    def check_kinds(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.Check)]

    def node_kinds(self) -> list[str]:
        return ["VM", *(k for e in self.extensions for k in e.node_kinds)]


def _node_section(section: NodeSection, node_fields: list[FieldDecl]) -> FieldDecl:
    cls = _compose(section.class_name, list(section.fields) + node_fields, doc=section.class_doc)
    return decl(section.key, list[cls], spec(section.doc, default_factory=list))


def compose_model(extensions: Iterable[ModelExtension], features: tuple[Any, ...] = ()) -> ScenarioModel:
    """Build the scenario dataclasses from the core's fields plus every extension's, in order."""
    exts = tuple(extensions)
    node_fields = [f for e in exts for f in e.node_fields]
    nic = _compose("Nic", _core_nic() + [f for e in exts for f in e.nic_fields])
    vm = _compose("VM", _core_vm(nic) + [f for e in exts for f in e.vm_fields] + node_fields, _VMMethods)
    bridge_types = ("linux", *(t for e in exts for t in e.bridge_types))
    bridge = _compose("Bridge", _core_bridge(bridge_types) + [f for e in exts for f in e.bridge_fields])
    ping = _compose("PingCheck", _core_ping() + [f for e in exts for f in e.ping_fields])
    expectations = (*CORE_EXPECTATIONS, *(x.name for e in exts for x in e.expectations))
    one_node = frozenset(x.name for e in exts for x in e.expectations if x.one_node)
    capture = _compose("CaptureCheck", _core_capture(expectations), _CaptureMethods, one_node=one_node)
    check = _compose(
        "Check",
        [
            decl("ping", ping | None, spec("ping from one VM to another", default=None)),
            decl("capture", capture | None, spec("assert what crossed a bridge", default=None)),
            *(_check_decl(f) for e in exts for f in e.checks),
        ],
        _CheckMethods,
    )
    scenario = _compose(
        "Scenario",
        [
            decl("name", str, spec("scenario name", pattern=NAME, max_length=40)),
            decl("description", str, spec("one line shown by `vnetlab list`", default=NO_DESCRIPTION, max_length=200)),
            decl("bridges", list[bridge], spec("bridges (switches) of the lab", min_items=1)),
            decl("vms", list[vm], spec("virtual machines", min_items=1)),
            decl("checks", list[check], spec("what must hold once the lab is up", default_factory=list)),
            decl("image", Literal["tiny", "debian"] | ImageSpec, spec(IMAGE_DOC + " for every VM that names none", default="tiny")),
            decl("management", Management, spec("management network settings", default_factory=Management)),
            params_field(),
            *(f for e in exts for f in (*(_node_section(n, node_fields) for n in e.node_sections), *e.sections)),
            *(f for e in exts if e.sections_with_checks is not None for f in e.sections_with_checks(check)),
            decl("source", str, field(default="", compare=False, metadata={"internal": True, "doc": "the file it was read from (set by the loader)"})),
            decl("student", str | None, field(default=None, compare=False, metadata={"internal": True, "doc": "whose params were drawn (set by the loader; None: student demo)"})),
            decl("param_values", dict[str, Any], field(default_factory=dict, compare=False, metadata={"internal": True, "doc": "the params' values for that student (set by the loader)"})),
        ],
        _ScenarioMethods,
    )
    model = ScenarioModel(exts, features, scenario, bridge, vm, nic, ping, capture, check)
    scenario.model = model  # each scenario finds its features' model hooks (nodes, routes, overlays)
    return model
