"""Open vSwitch bridges for a lab, on the userspace datapath, with daemons private to the lab.

The host kernel may have no openvswitch module, so bridges use
`datapath_type=netdev` (ovs-vswitchd forwards the frames itself). Each lab runs
its own ovsdb-server and ovs-vswitchd inside its network namespace, with the
database, sockets, pid files and logs under <lab>/ovs/, so labs never share a
switch and the host's own OVS (if any) is never touched.

An OVS bridge's internal port only sees frames flooded to it, not unicast
between two other ports; each bridge therefore gets a mirror (select-all) whose
output is a dedicated internal port, and captures listen there.

The daemons run as every lab daemon does (vnetlab.backends.daemon): recorded as `process`
resources "<program>:" before they start and "<program>:<pid>" once forked; `stop_process` ends
exactly that PID, after checking it is still the daemon of this lab (a PID can be reused after a
crash), or finds it in the lab namespace when its PID was never recorded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vnetlab.backends import daemon, linux_bridge

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovsdb-server", "ovs-vswitchd")
_START_TIMEOUT = 15.0


class OvsError(linux_bridge.LinkError):
    """An OVS daemon or ovs-vsctl failed (names the command and its error output)."""


def ovs_dir(lab_dir: Path) -> Path:
    return lab_dir / "ovs"


@dataclass(frozen=True)
class OvsPaths:
    dir: Path

    @property
    def db(self) -> Path:
        return self.dir / "conf.db"

    @property
    def socket(self) -> Path:
        return self.dir / "db.sock"

    def pidfile(self, program: str) -> Path:
        return self.dir / f"{program}.pid"

    def log(self, program: str) -> Path:
        return self.dir / f"{program}.log"

    def ctl(self, program: str) -> Path:
        return self.dir / f"{program}.ctl"

    @property
    def env(self) -> dict[str, str]:
        """Keep every OVS default path (run, db, log, sysconf) inside the lab's folder."""
        d = str(self.dir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d, "OVS_PKGDATADIR": str(SCHEMA.parent)}


def daemon_argv(paths: OvsPaths, program: str) -> list[str]:
    """Command line of one lab daemon (also shown by `--explain`)."""
    common = [f"--pidfile={paths.pidfile(program)}", f"--log-file={paths.log(program)}", f"--unixctl={paths.ctl(program)}", "--no-chdir"]
    if program == "ovsdb-server":
        return [program, str(paths.db), f"--remote=punix:{paths.socket}", *common]
    return [program, f"unix:{paths.socket}", *common]


def vsctl_argv(paths: OvsPaths, *args: str) -> list[str]:
    return ["ovs-vsctl", f"--db=unix:{paths.socket}", "--timeout=10", *args]


def bridge_args(name: str, mac: str) -> list[str]:
    """ovs-vsctl arguments that create a userspace-datapath bridge with a fixed MAC."""
    return ["add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", f"other-config:hwaddr={mac}"]


def mirror_args(bridge: str, port: str) -> list[str]:
    """ovs-vsctl arguments that copy every frame of `bridge` to a new internal port `port`."""
    return [
        "add-port", bridge, port, "--", "set", "interface", port, "type=internal",
        "--", "--id=@p", "get", "port", port,
        "--", "--id=@m", "create", "mirror", f"name={port}", "select-all=true", "output-port=@p",
        "--", "set", "bridge", bridge, "mirrors=@m",
    ]


def _in_namespace(ns: str, argv: list[str]) -> list[str]:
    # Not netns.run_in_namespace: ovs-vswitchd reads its ports from /sys/class/net, which only
    # `ip netns exec` remounts for the namespace (a setns()'d thread still sees the host's sysfs).
    return ["ip", "netns", "exec", ns, *argv]


def _run(ns: str, paths: OvsPaths, argv: list[str]) -> str:
    try:
        done = subprocess.run(_in_namespace(ns, argv), env=paths.env, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OvsError(f"`{' '.join(argv)}` in namespace {ns!r}: {exc}") from exc
    if done.returncode != 0:
        raise OvsError(f"`{' '.join(argv)}` in namespace {ns!r} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout


@dataclass(frozen=True)
class OvsSwitch:
    """The OVS of one lab: the same small interface as the Linux bridge backend, plus its daemons."""

    ns: str
    paths: OvsPaths

    @classmethod
    def for_lab(cls, ns: str, lab_dir: Path) -> OvsSwitch:
        return cls(ns, OvsPaths(ovs_dir(lab_dir)))

    def daemon(self, program: str) -> daemon.Daemon:
        return daemon.Daemon(program, daemon_argv(self.paths, program), self.ns, str(self.paths.dir), env=self.paths.env)

    def start(self, records: daemon.Records) -> None:
        """Create the database and start both daemons, each recorded before it starts and then with its PID."""
        missing = [p for p in ("ovsdb-tool", "ovs-vsctl", *DAEMONS) if shutil.which(p) is None]
        if missing or not SCHEMA.exists():
            raise OvsError(f"bridges of type ovs need Open vSwitch ({', '.join(missing) or SCHEMA} missing): apt-get install -y openvswitch-switch")
        self.paths.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.paths.db.exists():
            _run(self.ns, self.paths, ["ovsdb-tool", "create", str(self.paths.db), str(SCHEMA)])
        self._start("ovsdb-server", self.paths.socket, records)
        _run(self.ns, self.paths, vsctl_argv(self.paths, "--no-wait", "init"))
        self._start("ovs-vswitchd", self.paths.ctl("ovs-vswitchd"), records)

    def _start(self, program: str, ready: Path, records: daemon.Records) -> None:
        d = self.daemon(program)
        try:
            pid = daemon.start(d, records)
            daemon.wait_until(ready.exists, d, pid, _START_TIMEOUT, f"ready ({ready.name}); see {self.paths.log(program)}")
        except daemon.DaemonError as exc:
            raise OvsError(str(exc)) from None

    def create_bridge(self, name: str, mac: str) -> None:
        _run(self.ns, self.paths, vsctl_argv(self.paths, *bridge_args(name, mac)))

    def add_mirror(self, bridge: str, port: str) -> None:
        _run(self.ns, self.paths, vsctl_argv(self.paths, *mirror_args(bridge, port)))
        linux_bridge.set_link_up(self.ns, port)

    def attach_port(self, port: str, bridge: str) -> None:
        _run(self.ns, self.paths, vsctl_argv(self.paths, "add-port", bridge, port))
        linux_bridge.set_link_up(self.ns, port)

    def vsctl(self, *args: str) -> str:
        """Run ovs-vsctl against this lab's database (e.g. `set port P tag=10`); its output."""
        return _run(self.ns, self.paths, vsctl_argv(self.paths, *args))

    def delete_bridge(self, name: str) -> None:
        """Idempotent: without running daemons the bridge is gone with them (its database is in the lab folder)."""
        if all(self._running(program) for program in DAEMONS):
            _run(self.ns, self.paths, vsctl_argv(self.paths, "--if-exists", "del-br", name))

    def _running(self, program: str) -> bool:
        try:
            pid = int(self.paths.pidfile(program).read_text().strip())
        except (OSError, ValueError):
            return False
        return daemon.is_running(pid, program, str(self.paths.dir))


def stop_process(lab_dir: Path, name: str, namespace: str | None = None) -> None:
    """Stop the recorded daemon "<program>:<pid>" (SIGTERM, then SIGKILL); gone already is fine. A
    record without its PID ("<program>:") stops that daemon of this lab found in `namespace`."""
    program = name.rpartition(":")[0]
    if program not in DAEMONS:
        raise OvsError(f"unexpected process record {name!r}")
    try:
        daemon.stop(name, program, str(ovs_dir(lab_dir)), namespace)
    except daemon.DaemonError as exc:
        raise OvsError(str(exc)) from None
