"""daemon._stop collects a child of vnetlab that it stopped, even one caught between running its
program and being a zombie (make test saw that zombie once: /proc/PID was still there)."""

from __future__ import annotations

import os
import subprocess
import sys

from vnetlab.backends import daemon

# Exits 0.3 s after SIGTERM: long enough that the stop sees it neither running nor a zombie.
SLOW_EXIT = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.3), sys.exit(0)))\nprint('up', flush=True)\ntime.sleep(30)\n"


def test_a_stopped_child_that_exits_slowly_is_reaped_not_left_a_zombie(monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EXIT], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\n"  # its handler is in place
    answers = iter([True])  # running when the stop looks first; then, signalled, it no longer runs its program
    monkeypatch.setattr(daemon, "is_running", lambda pid, program, marker: next(answers, False))
    daemon._stop(proc.pid, "python3", "")
    try:
        os.waitpid(proc.pid, os.WNOHANG)
        reaped = False
    except ChildProcessError:
        reaped = True
    if not reaped:
        proc.kill()
        proc.wait()
    assert reaped, "the stopped child was left for someone else to reap (a zombie while vnetlab runs)"
    proc.returncode = 0  # collected by the stop: Popen must not wait for it again
