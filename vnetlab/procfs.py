"""/proc, read in one place: from /proc/PID/stat whether a process is a zombie, its parent, its
group, its CPU time; from /proc/PID/ns/net which processes live in a network namespace."""

from __future__ import annotations

import os
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (the state first: field 3 in proc(5));
    None when the process is gone. The name, in parentheses, may hold spaces and ')' itself, so
    the fields start after the last ')'."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    _, closing, fields = text.rpartition(")")
    return fields.split() if closing else None


def is_zombie(fields: list[str]) -> bool:
    """Exited, with only its parent's wait() missing."""
    return fields[0] == "Z"


def parent_pid(fields: list[str]) -> int:
    return int(fields[1])


def group_alive(group: int) -> list[int]:
    """The processes of process group `group` that have not exited (its zombies left out: they
    write nothing, and an orphan's zombie waits for a PID 1 that may reap late)."""
    alive = []
    for entry in os.listdir("/proc"):
        fields = stat_fields(int(entry)) if entry.isdigit() else None
        if fields is not None and int(fields[2]) == group and not is_zombie(fields):
            alive.append(int(entry))
    return alive


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds the process (all its threads) has used; None when it is gone."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime, fields 14 and 15 in proc(5)


def net_namespace_members(namespace_file: str) -> list[int]:
    """The processes whose network namespace is the one `namespace_file` (a /run/netns file, or a
    /proc/PID/ns/net link) refers to, by PID. /proc/PID/ns/net is the namespace of a process's
    main thread; a zombie has none, and a process gone meanwhile is skipped."""
    try:
        target = os.stat(namespace_file)
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                pids.append(int(entry))
    return pids
