"""A dead or wedged libvirtd fails within the stated bound, with a message that names it.

The real libvirtd is never touched: the tests point libvirt's client at unix sockets they own
(missing, not listening, or listening but never answering).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vnetlab.backends import libvirt_domains as hv

pytestmark = pytest.mark.root


def uri_for(sock: Path) -> str:
    return f"qemu+unix:///system?socket={sock}"


def test_a_missing_daemon_socket_fails_at_once_and_says_so(tmp_path):
    start = time.monotonic()
    with pytest.raises(hv.HypervisorError) as caught:
        hv.connect(uri_for(tmp_path / "libvirt-sock"), timeout=5)
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert message.startswith(f"connecting to {uri_for(tmp_path / 'libvirt-sock')}: ")
    assert "No such file or directory" in message


def test_a_socket_nobody_listens_on_is_refused_at_once(tmp_path):
    path = tmp_path / "libvirt-sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))  # bound, never listening: connect() is refused
        start = time.monotonic()
        with pytest.raises(hv.HypervisorError) as caught:
            hv.connect(uri_for(path), timeout=5)
    assert time.monotonic() - start < 5
    assert "Connection refused" in str(caught.value)


def test_a_daemon_that_never_answers_fails_within_the_bound(tmp_path):
    path = tmp_path / "libvirt-sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(4)  # accepts connections (the kernel does) and never says a word
        start = time.monotonic()
        with pytest.raises(hv.HypervisorError) as caught:
            hv.connect(uri_for(path), timeout=2)
        waited = time.monotonic() - start
    assert 1.9 < waited < 4, waited
    assert str(caught.value) == f"connecting to {uri_for(path)}: libvirtd did not answer within 2 s (is it wedged? `vnetlab doctor`)"


def test_the_process_still_exits_after_abandoning_a_wedged_call(tmp_path):
    """The abandoned call must not keep the interpreter alive at exit (a joined pool thread would)."""
    path = tmp_path / "libvirt-sock"
    code = (
        "import sys\n"
        "from vnetlab.backends import libvirt_domains as hv\n"
        "try:\n"
        f"    hv.connect({uri_for(path)!r}, timeout=1)\n"
        "except hv.HypervisorError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(4)
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        elapsed = time.monotonic() - start
    assert result.returncode == 3, result.stdout + result.stderr
    assert "did not answer within 1 s" in result.stdout
    assert elapsed < 10, f"the process took {elapsed:.1f} s to exit after a 1 s bound"


def test_a_call_that_raises_is_reported_with_what_was_attempted():
    def boom():
        raise ValueError("not libvirt's")

    with pytest.raises(ValueError, match="not libvirt's"):
        hv.bounded("anything", boom, timeout=5)
    assert hv.bounded("a quick call", lambda: 42, timeout=5) == 42
