"""The classroom end to end: a two-seat class of ex-two-vm-ping on real guests, its server in the
background, a real browser (Debian's Chromium, headless, driven by Playwright; never a downloaded
one) on the student's and the teacher's pages, the token matrix over HTTP, a 100 MB paste, 20
Check presses at once, kill -9 of the server mid-check then `resume`, and `stop` leaving nothing.

The tests share one class (booting two seats takes a minute or two under TCG) and run in order.
Screenshots of both pages are kept in the test's artifact folder (VNETLAB_ARTIFACTS, default
/var/lib/vnetlab/test-artifacts/classroom); with VNETLAB_DOC_SCREENSHOTS=1 they also replace the
ones in docs/img/ that docs/classroom.md shows.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from labtools import leftovers, starts_of, vnetlab

from vnetlab.classroom.record import ClassFolder
from vnetlab.classroom.seats import lab_ready
from vnetlab.paths import Layout
from vnetlab.run.lab import cold_by_environment

pytestmark = pytest.mark.e2e

EXERCISE = "ex-two-vm-ping"
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("VNETLAB_ARTIFACTS", "/var/lib/vnetlab/test-artifacts")) / "classroom"
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"
CHECK_WAIT = 240.0  # a check pings and captures under TCG, maybe beside another seat's


@dataclass
class Class:
    name: str
    base: str
    teacher: str
    tokens: dict[str, str]  # seat → token
    labs: dict[str, str]  # seat → lab

    @property
    def folder(self) -> ClassFolder:
        return ClassFolder(Layout(), self.name)

    def server_pid(self) -> int | None:
        return self.folder.server_pid()

    def client(self, token: str | None, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def klass():
    name = f"c{os.getpid() % 100000}"
    port = free_port()
    started = vnetlab("classroom", "start", EXERCISE, "--seats", "2", "--name", name, "--listen", f"127.0.0.1:{port}", timeout=1200)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        urls = vnetlab("classroom", "urls", name)
        assert urls.returncode == 0, urls.stderr
        lines = dict(line.split(" ", 1) for line in urls.stdout.splitlines())
        tokens = {seat: url.rsplit("/", 1)[1] for seat, url in lines.items() if seat != "teacher"}
        yield Class(name, f"http://127.0.0.1:{port}", lines["teacher"].rsplit("/", 1)[1], tokens, {seat: f"{name}-{seat}" for seat in tokens})
    finally:
        stopped = vnetlab("classroom", "stop", name, timeout=900)
        labs = [f"{name}-s01", f"{name}-s02"]
        left = {lab: leftovers(lab) for lab in labs}
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert left == {lab: [] for lab in labs}
        assert not ClassFolder(Layout(), name).dir.exists()
        with socket.socket() as s:  # the server is gone: its port is free again (its closed connections may linger in TIME_WAIT)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))


def seat(klass: Class, seat_id: str) -> dict:
    answer = klass.client(klass.tokens[seat_id]).get("/api/seat")
    assert answer.status_code == 200, answer.text
    return answer.json()


def class_view(klass: Class) -> dict:
    answer = klass.client(klass.teacher).get("/api/class")
    assert answer.status_code == 200, answer.text
    return answer.json()


def exercise_files(klass: Class) -> dict[str, bytes]:
    return {s: (Layout().lab_dir(lab) / "exercise.json").read_bytes() for s, lab in klass.labs.items()}


def test_every_seats_guests_are_restored_from_warm_images(klass: Class):
    """The seats start as `vnetlab exercise start` does: warm (the first seat to need a warm image makes
    it, the others wait for it and restore); `classroom start --cold` boots them (a unit test pins it)."""
    how = "cold" if cold_by_environment() else "warm"
    assert {seat: starts_of(lab) for seat, lab in klass.labs.items()} == {seat: {"vm1": how, "vm2": how} for seat in klass.labs}


def test_start_printed_the_urls_and_keeps_them_for_root_only(klass: Class):
    folder = klass.folder
    assert stat.S_IMODE(folder.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.urls_file.stat().st_mode) == 0o600
    text = folder.urls_file.read_text()
    assert re.fullmatch(rf"s01 {klass.base}/s/[A-Za-z0-9_-]{{43}}\ns02 {klass.base}/s/[A-Za-z0-9_-]{{43}}\nteacher {klass.base}/t/[A-Za-z0-9_-]{{43}}\n", text)
    assert all(lab_ready(Layout(), lab) == "ready" for lab in klass.labs.values())
    log = folder.log_file.read_text()
    assert "serving class" in log and not any(t in log for t in [*klass.tokens.values(), klass.teacher])


def test_the_token_matrix_refuses_and_changes_nothing(klass: Class):
    a, b = klass.tokens["s01"], klass.tokens["s02"]
    before_files, before_class = exercise_files(klass), class_view(klass)
    routes = [("GET", "/api/seat", None), ("POST", "/api/seat/check", {}), ("POST", "/api/seat/hint", {"task": "address vm2"}),
              ("POST", "/api/seat/answer", {"task": "whose MAC", "value": "00:00:00:00:00:00"}), ("POST", "/api/seat/submit", {}),
              ("GET", "/api/class", None), ("POST", "/api/class/reset", {"seat": "s02"}), ("GET", "/api/class/grades.csv", None)]
    for method, path, body in routes:
        for token in (None, "wrong-token", a[:-1], a + "A"):
            with klass.client(token) as c:
                assert c.request(method, path, json=body).status_code == 401, (method, path, token)
    with klass.client(a) as c:
        assert c.get("/api/seat", params={"seat": "s02"}).status_code == 403
        for path, body in (("/api/seat/check", {"seat": "s02"}), ("/api/seat/hint", {"seat": "s02", "task": "address vm2"}), ("/api/seat/answer", {"seat": "s02", "task": "whose MAC", "value": "x"}), ("/api/seat/submit", {"seat": "s02"})):
            assert c.post(path, json=body).status_code == 403, path
        for method, path, body in routes[-3:]:
            assert c.request(method, path, json=body).status_code == 403, path
    with klass.client(klass.teacher) as c:
        for method, path, body in routes[1:5]:
            assert c.request(method, path, json=body).status_code == 403, path
    with klass.client(b) as c:
        assert c.get("/api/seat").json()["seat"] == "s02"
    assert exercise_files(klass) == before_files
    after = class_view(klass)
    assert [(s["seat"], s["phase"], s["tasks"], s["hints_used"]) for s in after["seats"]] == [(s["seat"], s["phase"], s["tasks"], s["hints_used"]) for s in before_class["seats"]]


def _browser(playwright):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`vnetlab setup` installs it on Debian)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)


def _keep(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("VNETLAB_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / name)
    return path


def test_a_student_solves_the_first_task_in_the_browser_and_the_teacher_sees_it(klass: Class):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            student = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            student.on("pageerror", lambda e: errors.append(str(e)))
            student.goto(f"{klass.base}/s/{klass.tokens['s01']}")
            task = student.locator('li.task[data-task="address vm2"]')
            expect(task).to_have_attribute("data-state", "untried", timeout=30_000)
            address = re.search(r"\b(\d+\.\d+\.\d+\.\d+/\d+)\b", task.locator(".text").inner_text()).group(1)  # the student's own value
            student.locator('.tab[data-node="vm2"]').click()
            terminal = student.locator("#term-vm2")
            expect(terminal).to_have_attribute("data-status", re.compile("connected to vm2"), timeout=60_000)
            expect(terminal.locator(".xterm-rows")).to_contain_text("vm2:~#", timeout=60_000)  # the shell's prompt: it reads what is typed now
            terminal.click()
            student.keyboard.type(f"ip addr add {address} dev eth0", delay=20)  # key presses, as a student types
            student.keyboard.press("Enter")
            expect(terminal.locator(".xterm-rows")).to_contain_text(re.compile(r"vm2:~#[\s\S]*vm2:~#"), timeout=30_000)  # the next prompt
            student.keyboard.type("ip -4 addr show dev eth0", delay=20)
            student.keyboard.press("Enter")
            expect(terminal.locator(".xterm-rows")).to_contain_text(address, timeout=30_000)
            task.locator("button.check").click()
            expect(task).to_have_attribute("data-state", "passed", timeout=CHECK_WAIT * 1000)
            expect(task.locator(".state")).to_have_text("✓")
            passed_at = time.monotonic()
            task.locator("button.hint").click()
            expect(task.locator(".hints li")).to_have_count(1, timeout=30_000)
            expect(task.locator(".hints li").first).to_contain_text("ip addr add")

            teacher = browser.new_page(viewport={"width": 1400, "height": 700})
            teacher.goto(f"{klass.base}/t/{klass.teacher}")
            cell = teacher.locator('td.mark[data-seat="s01"][data-task="address vm2"]')
            expect(cell).to_have_attribute("data-state", "passed", timeout=10_000)
            expect(cell).to_contain_text("✓")
            seen_after = time.monotonic() - passed_at
            expect(teacher.locator('td.mark[data-seat="s02"][data-task="address vm2"]')).to_have_attribute("data-state", "untried")
            expect(student.locator("#drawing svg")).to_have_count(1, timeout=30_000)
            expect(student.locator("#links tbody tr")).to_have_count(2, timeout=30_000)
            student_png = _keep(student, "classroom-student.png")
            teacher_png = _keep(teacher, "classroom-teacher.png")
            assert errors == []
        finally:
            browser.close()
    print(f"the teacher's page showed s01's ✓ {seen_after:.1f} s after the student's page did")
    assert seen_after < 15, f"the teacher's page showed the ✓ {seen_after:.1f} s after the student's"
    assert student_png.stat().st_size > 10_000 and teacher_png.stat().st_size > 5_000


def test_a_submission_lands_in_the_teachers_gradebook(klass: Class):
    with klass.client(klass.teacher) as c:
        assert c.get("/api/class/grades.csv").status_code == 404  # nobody submitted yet: said, not an empty file
    with klass.client(klass.tokens["s01"], timeout=CHECK_WAIT) as c:
        submitted = c.post("/api/seat/submit", json={})
    assert submitted.status_code == 200, submitted.text
    with klass.client(klass.teacher, timeout=CHECK_WAIT) as c:
        book = c.get("/api/class/grades.csv")
    assert book.status_code == 200 and book.headers["content-type"].startswith("text/csv"), book.text
    header, *rows = [line.split(",") for line in book.text.splitlines()]
    assert header[:4] == ["student", "exercise", "1. address vm2", "2. whose MAC"]
    assert len(rows) == 1 and rows[0][:4] == ["s01", EXERCISE, "1.5", "0"]  # 2 points less one hint's 0.5
    assert header[header.index("mismatch")] and rows[0][header.index("mismatch")] == ""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_100_mb_paste_is_bounded_and_the_other_seat_still_answers(klass: Class):
    """A script pasting 100 MB into s02's terminal: the server takes it at the terminal's rate (its
    reading stops, so the sender is held back by TCP), its memory does not grow with it, and
    s01's page answers meanwhile. A message above the frame limit closes the terminal."""
    from websockets.sync.client import connect

    pid = klass.server_pid()
    assert pid is not None
    rss_before = _rss_kib(pid)
    url = klass.base.replace("http://", "ws://") + "/ws/terminal"
    chunk = b"".join(base64.b64encode(os.urandom(750)) + b"\n" for _ in range(60))  # 60 KB of text that does not compress, within the 64 KiB frame limit
    sent = 0
    stop = threading.Event()
    ended: list[str] = []

    def paste() -> None:
        nonlocal sent
        with connect(url, max_size=None, open_timeout=30, compression=None) as ws:  # what crosses the wire is what is pasted
            ws.send(json.dumps({"token": klass.tokens["s02"], "node": "vm1", "cols": 80, "rows": 24}))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "connected" not in str(ws.recv(timeout=30)):
                pass
            try:
                while sent < 100_000_000 and not stop.is_set():
                    ws.send(chunk)
                    sent += len(chunk)
            except Exception as exc:  # noqa: BLE001 — the server closed the terminal: said below
                ended.append(repr(exc))

    sender = threading.Thread(target=paste, daemon=True)
    sender.start()
    time.sleep(20)
    with klass.client(klass.tokens["s01"], timeout=10) as c:
        started = time.monotonic()
        answered = c.get("/api/seat")
        took = time.monotonic() - started
    rss_after = _rss_kib(pid)
    stop.set()
    print(f"100 MB paste: {sent} bytes taken in 20 s, server RSS {rss_before // 1024} → {rss_after // 1024} MiB, s01 answered in {took:.2f} s")
    assert ended == [], "the server closed the terminal instead of taking the paste at its pace"
    assert answered.status_code == 200 and took < 3, f"s01 waited {took:.1f} s"
    assert sent < 20_000_000, f"{sent} bytes were taken in 20 s: nothing held the paste back"
    assert rss_after - rss_before < 64 * 1024, f"the server grew by {(rss_after - rss_before) // 1024} MiB"
    sender.join(30)

    with connect(url, max_size=None, open_timeout=30) as ws:  # one message above the limit: closed (1009), nothing buffered
        ws.send(json.dumps({"token": klass.tokens["s02"], "node": "vm2", "cols": 80, "rows": 24}))
        ws.send(b"x" * (100 * 1024))
        with pytest.raises(Exception):
            while True:
                ws.recv(timeout=30)
        assert ws.close_code == 1009


def _runs_of(lab: str) -> set[str]:
    return {p.name for p in Layout().runs.glob(f"{lab}-*")}


def test_twenty_checks_at_once_queue_on_one_seat_and_the_other_seat_answers(klass: Class):
    lab = klass.labs["s02"]
    before = _runs_of(lab)
    with ThreadPoolExecutor(max_workers=21) as pool:
        hammering = [pool.submit(lambda: klass.client(klass.tokens["s02"], timeout=CHECK_WAIT * 3).post("/api/seat/check", json={})) for _ in range(20)]
        time.sleep(2)
        started = time.monotonic()
        other = klass.client(klass.tokens["s01"], timeout=CHECK_WAIT * 2).post("/api/seat/check", json={"task": "address vm2"})
        other_took = time.monotonic() - started
        answers = [f.result() for f in hammering]
        all_took = time.monotonic() - started
    runs = len(_runs_of(lab) - before)
    print(f"20 checks at once on s02: {runs} run(s), all answered in {all_took:.1f} s; s01's check meanwhile took {other_took:.1f} s")
    assert other.status_code == 200 and other.json()["result"]["passed"] is True
    assert all(a.status_code == 200 for a in answers)
    assert 1 <= runs <= 2, f"20 presses made {runs} check runs"
    assert other_took < all_took, f"s01's check ({other_took:.0f} s) waited for s02's twenty presses ({all_took:.0f} s)"


def test_kill_9_of_the_server_mid_check_then_resume_keeps_every_lab_and_exercise_state(klass: Class):
    before_s01 = seat(klass, "s01")
    assert before_s01["tasks"][0]["state"] == "passed" and before_s01["tasks"][0]["hints_used"] == 1
    pid = klass.server_pid()
    checking = threading.Thread(target=lambda: klass.client(klass.tokens["s02"], timeout=CHECK_WAIT).post("/api/seat/check", json={}), daemon=True)
    checking.start()
    deadline = time.monotonic() + 60
    while not next(s for s in class_view(klass)["seats"] if s["seat"] == "s02")["checking"]:
        assert time.monotonic() < deadline, "the check never started"
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        time.sleep(0.05)
    assert klass.server_pid() is None
    status = vnetlab("classroom", "status", klass.name)
    assert status.returncode == 0 and "not running" in status.stdout
    resumed = vnetlab("classroom", "resume", klass.name, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert klass.server_pid() not in (None, pid)
    for lab in klass.labs.values():
        assert lab_ready(Layout(), lab) == "ready"
        assert (Layout().lab_dir(lab) / "exercise.json").exists()
    after_s01 = seat(klass, "s01")  # the same tokens, the same state
    assert after_s01["tasks"][0]["state"] == "passed" and after_s01["tasks"][0]["hints_used"] == 1
    assert [t["name"] for t in after_s01["tasks"]] == [t["name"] for t in before_s01["tasks"]]
    deadline = time.monotonic() + CHECK_WAIT  # the check the killed server had started finishes on its own, and the page learns its verdict
    while seat(klass, "s02")["tasks"][0]["state"] == "untried":
        assert time.monotonic() < deadline, "the check that outlived the server never showed"
        time.sleep(1)
    with klass.client(klass.tokens["s02"], timeout=CHECK_WAIT) as c:  # the killed check's process let the lab go: a check runs again
        again = c.post("/api/seat/check", json={"task": "address vm2"})
    assert again.status_code == 200 and again.json()["result"]["passed"] is False  # s02 never solved it
    checking.join(5)


def test_a_reset_rebuilds_one_seat_for_the_same_student(klass: Class):
    before = seat(klass, "s02")
    other_lab = Layout().lab_dir(klass.labs["s01"]) / "state.json"
    other_before = other_lab.read_bytes()
    done = vnetlab("classroom", "reset", "s02", "--name", klass.name, timeout=900)
    assert done.returncode == 0 and "s02: up" in done.stdout, done.stdout + done.stderr
    after = seat(klass, "s02")
    assert after["phase"] == "up" and [t["state"] for t in after["tasks"]] == ["untried", "untried"]
    assert after["tasks"][0]["html"] == before["tasks"][0]["html"]  # the same student: the same values
    assert other_lab.read_bytes() == other_before  # s01's lab was not touched
    assert lab_ready(Layout(), klass.labs["s02"]) == "ready"
    how = "cold" if cold_by_environment() else "warm"
    assert starts_of(klass.labs["s02"]) == {"vm1": how, "vm2": how}  # restored again


def test_status_shows_the_seats(klass: Class):
    done = vnetlab("classroom", "status", klass.name)
    assert done.returncode == 0, done.stderr
    assert f"running (pid {klass.server_pid()})" in done.stdout
    assert re.search(r"s01 .* up .*✓", done.stdout) and re.search(r"s02 .* up", done.stdout)


def test_the_page_refuses_what_is_not_a_token(klass: Class):
    with httpx.Client(base_url=klass.base) as c:
        assert c.get(f"/s/{klass.teacher}").status_code == 404
        assert c.get(f"/t/{klass.tokens['s01']}").status_code == 404
        assert c.get("/s/not-a-token").status_code == 404
        page = c.get(f"/s/{klass.tokens['s01']}")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert c.get("/static/xterm.js").status_code == 200  # installed by `vnetlab setup`
        assert c.get("/static/../class.json").status_code == 404


def test_listening_beyond_loopback_needs_tls():
    done = vnetlab("classroom", "start", EXERCISE, "--seats", "1", "--name", f"x{os.getpid() % 100000}", "--listen", "0.0.0.0:1")
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0:1 without TLS" in done.stderr and "--insecure-http" in done.stderr
    assert not ClassFolder(Layout(), f"x{os.getpid() % 100000}").dir.exists()


def test_more_seats_than_memory_holds_are_refused_with_the_arithmetic():
    done = vnetlab("classroom", "start", EXERCISE, "--seats", "500", "--name", f"y{os.getpid() % 100000}")
    assert done.returncode == 1
    assert re.search(r"not enough memory for 500 seat\(s\): 500 seat\(s\) × 2 guest\(s\) a seat × 156 MiB measured per guest = 156000 MiB, against MemAvailable \d+ MiB", done.stderr)
    assert not ClassFolder(Layout(), f"y{os.getpid() % 100000}").dir.exists()


def test_the_server_process_is_in_its_own_session(klass: Class):
    pid = klass.server_pid()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(fields[3]) == pid  # session id: detached from the command that started it, as `vnetlab up` leaves a lab
    assert subprocess.run(["test", "-d", f"/proc/{pid}"]).returncode == 0
