"""Run a daemon in the foreground and reap every orphan it leaves, at once.

On a host with systemd, PID 1 reaps qemu the moment it exits. On hosts without
systemd (containers, CI sandboxes) PID 1 may reap late, and libvirt then waits
~2 s per guest for the zombie to go. As a child subreaper this process inherits
libvirtd's double-forked qemu processes and reaps them immediately.
Usage: python -m vnetlab.tools.reaper LOGFILE COMMAND [ARGS...]   (detaches itself; `vnetlab setup` runs it)
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> None:
    log, command = argv[0], argv[1:]
    if os.fork():
        sys.exit(0)  # the caller returns at once; the supervisor lives on in its own session
    os.setsid()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    daemon = os.fork()
    if daemon == 0:
        os.execvp(command[0], command)
    while True:
        pid, _ = os.wait()  # every exiting orphan lands here
        if pid == daemon:
            sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
