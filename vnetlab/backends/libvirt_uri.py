"""What a scenario may write as another hypervisor's libvirt URI (docs/reliability.md, "Trust model").

libvirt's ssh transport reads parameters from the URI's query, and some of them act on this
machine as root: `command=` runs a local program in place of ssh, `netcat=`, `socket=` and
`proxy=` change what runs at either end, `no_verify=1` turns off the host-key check, `sshauth=`
picks password or agent authentication. vnetlab needs none of them: a URI names a user, a host, an
optional port and the system instance, with at most `keyfile`, `no_tty` and `known_hosts`. Every
refusal says which URI to write instead.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

SCHEME = "qemu+ssh"
ALLOWED = ("keyfile", "no_tty", "known_hosts")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_PATH = re.compile(r"/[A-Za-z0-9_.,/+@-]*")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_WHY = {
    "no_verify": "it turns off the check of the hypervisor's host key; vnetlab pins that key: give the hypervisor `host-key:` (or add its key to /root/.ssh/known_hosts)",
    "command": "it runs a program of this machine, as root, in place of ssh",
    "netcat": "it names the program run on the hypervisor to reach libvirtd",
    "socket": "it names the socket reached on the hypervisor",
    "proxy": "it picks how libvirtd is reached on the hypervisor",
    "sshauth": "it picks password or agent logins; vnetlab logs in with the key file",
}


def _suggested(user: str | None, host: str, port: int | None, params: list[tuple[str, str]]) -> str:
    kept = list({k: v for k, v in reversed(params) if k in ALLOWED}.items())[::-1]  # the first of each
    where = f"{user + '@' if user else ''}{'[' + host + ']' if ':' in host else host}{f':{port}' if port else ''}"
    return f"{SCHEME}://{where}/system" + (f"?{urlencode(kept, safe='/')}" if kept else "")


def uri_problems(uri: str) -> list[str]:
    """Why `uri` may not name a hypervisor (empty: it may). Only for qemu+ssh:// URIs."""
    if not uri.isprintable() or any(c.isspace() for c in uri):
        return ["the URI has blanks or control characters"]
    parts = urlsplit(uri)
    if parts.scheme != SCHEME:
        return [f"expected a {SCHEME}:// URI"]
    try:
        port = parts.port
    except ValueError:
        return [f"the port in {parts.netloc!r} is not a number from 1 to 65535"]
    host = parts.hostname or ""
    try:
        params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        return [f"the query {parts.query!r} is not key=value pairs joined by &"]
    problems = []
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST.fullmatch(host):
            problems.append(f"{host!r} is neither an IP address nor a host name" if host else "no host")
            host = "HOST"
    user = parts.username
    if user is not None and not _USER.fullmatch(user):
        problems.append(f"{user!r} is not a user name")
        user = "USER"
    instead = f"write {_suggested(user, host, port, params)}"
    problems = [f"{p}: {instead}" for p in problems]
    if parts.password is not None:
        problems.append(f"no password in the URI (vnetlab logs in with a key file): {instead}")
    if parts.path != "/system":
        problems.append(f"the path must be /system (libvirt's system instance, where vnetlab makes guests), not {parts.path or 'empty'!r}: {instead}")
    if parts.fragment:
        problems.append(f"no fragment (#{parts.fragment}): {instead}")
    seen: set[str] = set()
    for key, value in params:
        if key not in ALLOWED:
            why = _WHY.get(key, "vnetlab needs only keyfile, no_tty and known_hosts")
            problems.append(f"URI parameter {key}={value} is refused ({why}): {instead}")
        elif key in seen:
            problems.append(f"URI parameter {key} is given twice: {instead}")
        elif key in ("keyfile", "known_hosts") and not _PATH.fullmatch(value):
            problems.append(f"{key} must be an absolute path of letters, digits and _.,/+@-, got {value!r}")
        elif key == "no_tty" and value not in ("0", "1"):
            problems.append(f"no_tty is 0 or 1, got {value!r}")
        seen.add(key)
    return problems
