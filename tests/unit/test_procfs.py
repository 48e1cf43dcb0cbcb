"""/proc/PID/stat read in one place: the fields after the command name, whatever that name holds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from vnetlab import procfs


def test_a_process_cpu_time_is_read_and_a_gone_one_is_none() -> None:
    busy = subprocess.run([sys.executable, "-c", "import os; sum(range(3_000_000)); print(os.getpid())"], capture_output=True, text=True, check=True)
    assert procfs.cpu_seconds(int(busy.stdout)) is None  # it has exited: nothing to read
    spent = procfs.cpu_seconds(os.getpid())
    assert spent is not None and spent > 0


def test_a_command_name_with_a_parenthesis_and_spaces_does_not_shift_the_fields(tmp_path: Path) -> None:
    odd = tmp_path / "x) Z (y"  # the kernel shows it as "(x) Z (y)": the fields start after the last ')'
    odd.symlink_to(sys.executable)
    with subprocess.Popen([str(odd), "-c", "print(flush=True); import time; time.sleep(30)"], stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"\n"  # it has exec'd: its name is the link's
            assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "x) Z (y"
            fields = procfs.stat_fields(child.pid)
            assert fields is not None and not procfs.is_zombie(fields) and procfs.parent_pid(fields) == os.getpid()
            child.kill()
            deadline = time.monotonic() + 10
            while not procfs.is_zombie(procfs.stat_fields(child.pid) or ["?"]) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert procfs.is_zombie(procfs.stat_fields(child.pid) or ["?"])  # killed, not yet waited for
        finally:
            child.kill()  # the context's exit waits for it
    assert procfs.stat_fields(child.pid) is None
