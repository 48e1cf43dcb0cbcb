"""CLI commands that need root and the host's services but no guest: `doctor`, `image build
[--rebuild]`, and teardown's metadata guard (`down` never removes a domain another lab owns).

`image build` runs in a private mount namespace with an empty folder bound over the image cache,
so the builds here never replace the cache entry that other labs on this host are booting from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from vnetlab.backends.image import cached_image
from vnetlab.paths import Layout
from vnetlab.plan.planner import METADATA_NS
from vnetlab.run.state import LabState, RecordedResource, make_private_dir

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

VNETLAB = [sys.executable, "-m", "vnetlab"]
ENV = {**os.environ, "COLUMNS": "250"}
MARKS = {"✓": "ok", "!": "warn", "✗": "fail"}


def vnetlab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*VNETLAB, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


# -- doctor ---------------------------------------------------------------------------------


def doctor_rows(stdout: str) -> list[tuple[str, str, str]]:
    """(status, what, detail) of each row of doctor's table."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 5 and cells[1] in MARKS:
            rows.append((MARKS[cells[1]], cells[2], cells[3]))
    return rows


def test_doctor_lists_what_labs_need_with_a_status_that_matches_the_host():
    result = vnetlab("doctor")
    rows = doctor_rows(result.stdout)
    assert rows, result.stdout + result.stderr
    by_name: dict[str, list[tuple[str, str]]] = {}
    for status, what, detail in rows:
        by_name.setdefault(what, []).append((status, detail))
    for needed in ("qemu-system-x86_64", "libvirtd", "virtlogd", "mmdebstrap", "guest image", "KVM"):
        assert needed in by_name, f"no {needed} row in:\n{result.stdout}"

    # Each status says what is true of this host, checked here independently.
    qemu = shutil.which("qemu-system-x86_64")
    assert (by_name["qemu-system-x86_64"] == [("ok", qemu)]) if qemu else (by_name["qemu-system-x86_64"][0][0] == "fail")
    for daemon, socket in (("libvirtd", "/run/libvirt/libvirt-sock"), ("virtlogd", "/run/libvirt/virtlogd-sock")):
        [socket_row] = [r for r in by_name[daemon] if socket in r[1]]  # the other row is the installed binary
        assert socket_row[0] == ("ok" if os.path.exists(socket) else "fail"), socket_row
    mmdebstrap = shutil.which("mmdebstrap")
    assert (by_name["mmdebstrap"] == [("ok", f"{mmdebstrap} (guest image build)")]) if mmdebstrap else (by_name["mmdebstrap"][0][0] == "fail")
    image = cached_image(Layout().images)
    assert by_name["guest image"][0][0] == ("ok" if image else "fail") and (image is None or str(image.entry) in by_name["guest image"][0][1])
    [(kvm, kvm_detail)] = by_name["KVM"]
    if not os.path.exists("/dev/kvm"):
        assert kvm == "warn" and "/dev/kvm missing" in kvm_detail
    elif os.path.exists("/sys/module/kvm_pvm"):
        assert kvm == "warn" and "kvm_pvm" in kvm_detail, kvm_detail  # this host: KVM hangs ordinary guests
    else:
        assert kvm == "ok"

    # Exit 1 exactly when something needed is missing; this host has everything.
    assert result.returncode == (1 if any(s == "fail" for s, _, _ in rows) else 0), result.stdout
    assert result.returncode == 0, result.stdout
    assert "Traceback" not in result.stderr


# -- image build --rebuild ------------------------------------------------------------------


def image_build(cache: Path, *args: str) -> subprocess.CompletedProcess:
    """`vnetlab image build ARGS` with `cache` bound over /var/lib/vnetlab/images (private mount namespace)."""
    images = Layout().images
    images.mkdir(parents=True, exist_ok=True)  # the mount point
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", str(cache), str(images), *VNETLAB, "image", "build", *args],
        capture_output=True, text=True, timeout=300, env=ENV,
    )


def built(result: subprocess.CompletedProcess, cache: Path) -> tuple[dict, Path]:
    """The JSON `image build` printed (nothing else on stdout) and the cache entry it names, seen from here."""
    assert result.returncode == 0, result.stdout + result.stderr
    info = json.loads(result.stdout)
    assert set(info) >= {"kernel", "initrd", "kernel_version", "recipe_hash"}, info
    entry = Path(info["kernel"]).parent
    assert entry == Path(info["initrd"]).parent == Layout().images / f"tiny-{info['recipe_hash']}"
    return info, cache / f"tiny-{info['recipe_hash']}"


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_image_build_uses_the_cache_and_rebuild_builds_again(tmp_path):
    cache = tmp_path / "images"
    cache.mkdir(mode=0o755)
    info, entry = built(image_build(cache), cache)  # an empty cache: a build
    kernel, initrd = entry / "vmlinux", entry / "initrd.img"
    assert kernel.is_file() and initrd.is_file()
    first = {p: stamp(p) for p in (kernel, initrd)}
    sums = {p: digest(p) for p in (kernel, initrd)}

    again = image_build(cache)
    assert built(again, cache)[0] == info
    assert {p: stamp(p) for p in (kernel, initrd)} == first, "a plain `image build` rebuilt a current image"
    assert "building guest image" not in again.stderr

    time.sleep(0.01)  # mtimes have ns resolution, but make "later" unambiguous on coarse file systems
    rebuilt = image_build(cache, "--rebuild")
    assert built(rebuilt, cache)[0] == info
    assert f"building guest image tiny-{info['recipe_hash']}" in rebuilt.stderr, rebuilt.stderr
    for path, (ino, mtime) in first.items():
        now_ino, now_mtime = stamp(path)
        assert now_mtime > mtime and (now_ino, now_mtime) != (ino, mtime), f"{path.name} was not rebuilt"
    # the recipe is reproducible: the same inputs give the same bytes
    assert {p: digest(p) for p in (kernel, initrd)} == sums
    assert sorted(p.name for p in cache.iterdir()) == [f"tiny-{info['recipe_hash']}"]  # no build folder left behind


# -- teardown's metadata guard --------------------------------------------------------------

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <metadata><vnetlab:lab xmlns:vnetlab='{ns}' name='{lab}' scenario='two-vm-ping' vm='{vm}'/></metadata>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
</domain>"""


def _domain_lab(conn: libvirt.virConnect, name: str) -> str | None:
    """The lab named in the domain's vnetlab metadata; None when there is no such domain."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)


def test_down_removes_only_the_domains_whose_metadata_names_the_lab():
    """The state of a lab records two domains; libvirt's metadata of one names another lab (a
    same-named domain someone else defined after this lab's record was written). `down` removes
    the lab's own domain and leaves the other one exactly as it was."""
    lab = f"rt{os.getpid() % 10000}-guard"
    ours, foreign = f"vnl-{lab}-vm1", f"vnl-{lab}-vm2"
    lab_dir = Layout().lab_dir(lab)
    assert not lab_dir.exists()
    conn = libvirt.open("qemu:///system")
    try:
        for name in (ours, foreign):
            assert _domain_lab(conn, name) is None, f"a domain {name} already exists"
        conn.defineXML(DOMAIN_XML.format(name=ours, ns=METADATA_NS, lab=lab, vm="vm1"))
        conn.defineXML(DOMAIN_XML.format(name=foreign, ns=METADATA_NS, lab="someone-else", vm="vm2"))
        foreign_xml = conn.lookupByName(foreign).XMLDesc(0)
        make_private_dir(lab_dir)
        state = LabState(lab, "two-vm-ping", "/nonexistent/two-vm-ping.yaml", f"vnl-{lab}", "qemu", "/nonexistent/vmlinux", 0)
        state.resources = [RecordedResource("domain", ours, "vm1"), RecordedResource("domain", foreign, "vm2")]
        state.save(lab_dir)

        down = vnetlab("down", lab)
        assert "Traceback" not in down.stderr, down.stderr
        assert _domain_lab(conn, ours) is None, f"down left the lab's own domain {ours}: {down.stdout}{down.stderr}"
        assert "someone-else" in (_domain_lab(conn, foreign) or ""), f"down removed {foreign}, whose metadata names another lab"
        assert conn.lookupByName(foreign).XMLDesc(0) == foreign_xml  # untouched, not redefined
        assert down.returncode == 0 and down.stdout.strip() == f"lab {lab}: removed", down.stdout + down.stderr
        assert not lab_dir.exists()
    finally:
        for name in (ours, foreign):  # ours only if down failed; the foreign one is this test's own decoy
            try:
                conn.lookupByName(name).undefine()
            except libvirt.libvirtError:
                pass
        conn.close()
        shutil.rmtree(lab_dir, ignore_errors=True)
