"""Libraries imported at first use, or in the background while the guests boot."""

from __future__ import annotations

import subprocess
import sys


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_a_lazy_module_is_imported_at_its_first_attribute_read_with_its_companions_first():
    out = _fresh(
        "import sys\n"
        "from vnetlab.lazy import LazyModule\n"
        "m = LazyModule('email.mime.text', 'email.mime.image')\n"
        "print('email.mime.text' in sys.modules, 'email.mime.image' in sys.modules)\n"
        "m.MIMEText\n"
        "print('email.mime.text' in sys.modules, 'email.mime.image' in sys.modules)\n"
    )
    assert out.splitlines() == ["False False", "True True"]


def test_a_run_imports_neither_paramiko_nor_scapy_before_its_guests_boot():
    out = _fresh("import sys, vnetlab.cli, vnetlab.compose, vnetlab.run.lab\nprint(sorted(m for m in ('paramiko', 'scapy') if m in sys.modules))")
    assert out == "[]"


def test_preload_imports_in_a_background_thread_and_survives_a_missing_module():
    out = _fresh(
        "import sys\n"
        "from vnetlab.lazy import preload\n"
        "preload(('email.mime.text', 'no_such_module_here', 'email.mime.image')).join(30)\n"
        "print('email.mime.text' in sys.modules, 'email.mime.image' in sys.modules)\n"
    )
    assert out == "True False"  # stops at the first failure: its first real use reports it
