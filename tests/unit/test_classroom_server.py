"""The classroom's HTTP API without VMs: who may call what (the token matrix), bounded bodies, the
queue of Check runs per seat, and that tokens never reach the log. The exercise engine is a fake
here (it answers as `vnetlab exercise …` would); tests/e2e/test_classroom.py runs the real one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path

import httpx
import pytest

from vnetlab.classroom import limits
from vnetlab.classroom.app import Classroom, Tokens, build_app, redact
from vnetlab.classroom.engine import Done, Engine
from vnetlab.classroom.record import ClassFolder, ClassRecord, Seat, new_token
from vnetlab.classroom.seats import UP, Seats
from vnetlab.paths import Layout

STATUS = {  # what vnetlab.classroom.ops.read_seat gives
    "exercise": {"name": "ex-two-vm-ping", "title": "Two VMs on a bridge", "intro": "Make them **talk** <script>alert(1)</script>", "students_reach": ["vm1", "vm2"]},
    "tasks": [
        {"name": "address vm2", "text": "Give vm2 the address `10.1.2.3/24`.", "points_max": 2, "earned": 0, "state": "untried", "hints_used": 0, "hints_total": 2, "hints": []},
        {"name": "whose MAC", "text": "Which MAC answered? [x](javascript:alert(1))", "points_max": 1, "earned": 0, "state": "untried", "answer": True},
    ],
}


class FakeEngine(Engine):
    """Answers as the engine's operations would (vnetlab.classroom.ops); records every call (op and
    its arguments); a check takes `check_seconds`."""

    def __init__(self, check_seconds: float = 0.0) -> None:
        super().__init__(runner=self._answer, reader=lambda lab: self.status_of.get(lab, STATUS))
        self.calls: list[list[str]] = []
        self.check_seconds = check_seconds
        self.status_of: dict[str, dict] = {}

    async def _answer(self, args: list[str], **_: object) -> Done:
        op = [a for a in args[args.index("--root") + 2 :] if a != "--"]
        self.calls.append(op)
        if op[0] == "check":
            await asyncio.sleep(self.check_seconds)
            return Done(0, json.dumps({"passed": False, "tasks": [{"name": "address vm2", "passed": False, "checks": [{"name": "ping vm1 → vm2", "ok": False, "detail": "no echo reply crossed br0"}]}]}), "")
        if op[0] == "hint":
            return Done(0, json.dumps({"hint": "`ip addr add` takes an address with its prefix.", "new": True, "left": 1}), "")
        return Done(0, json.dumps({}), "")

    def checks_of(self, lab: str) -> int:
        return sum(1 for c in self.calls if c[0] == "check" and lab in c)


@pytest.fixture
def classroom(tmp_path: Path):
    layout = Layout(tmp_path / "root")
    seats = [Seat("s01", "alice", "Alice", "cls-s01", new_token()), Seat("s02", "bob", "Bob", "cls-s02", new_token())]
    record = ClassRecord("cls", str(tmp_path / "ex.yaml"), seats, new_token())
    folder = ClassFolder(layout, "cls")
    folder.create(record)
    engine = FakeEngine()
    room = Classroom(record, folder, Seats(record, folder, engine), web=tmp_path / "web")
    for run in room.seats.runs.values():
        run.phase, run.status = UP, json.loads(json.dumps(STATUS))
    return room


def client(room: Classroom) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(room)), base_url="http://127.0.0.1:8470")


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def test_tokens_are_long_random_and_told_apart(classroom):
    tokens = Tokens(classroom.record)
    alice, bob = classroom.record.seats
    assert len(alice.token) >= 43 and alice.token != bob.token != classroom.record.teacher_token  # 32 random bytes, base64
    assert tokens.who(alice.token).seat == "s01" and tokens.who(bob.token).seat == "s02"
    assert tokens.who(classroom.record.teacher_token).role == "teacher"
    for wrong in (None, "", alice.token[:-1], alice.token + "x", "x" * 10_000, "\udcff"):
        assert tokens.who(wrong) is None


def test_the_class_folder_is_root_only(classroom):
    folder = classroom.folder
    assert stat.S_IMODE(folder.dir.stat().st_mode) == 0o700
    for name in ("class.json", "urls.txt"):
        assert stat.S_IMODE((folder.dir / name).stat().st_mode) == 0o600
    lines = folder.urls_file.read_text().splitlines()
    assert lines[0] == f"s01 http://127.0.0.1:8470/s/{classroom.record.seats[0].token}"
    assert lines[-1] == f"teacher http://127.0.0.1:8470/t/{classroom.record.teacher_token}"


ROUTES = [
    ("GET", "/api/seat", None),
    ("POST", "/api/seat/check", {}),
    ("POST", "/api/seat/hint", {"task": "address vm2"}),
    ("POST", "/api/seat/answer", {"task": "whose MAC", "value": "52:54:00:00:00:01"}),
    ("POST", "/api/seat/submit", {}),
    ("GET", "/api/seat/links", None),
    ("GET", "/api/class", None),
    ("POST", "/api/class/reset", {"seat": "s02"}),
    ("GET", "/api/class/grades.csv", None),
]


def test_no_token_or_a_wrong_one_is_401_on_every_route_and_nothing_changes(classroom):
    async def go():
        async with client(classroom) as c:
            for method, path, body in ROUTES:
                for headers in ({}, bearer("not-a-token"), bearer(classroom.record.seats[0].token[:-2]), {"Authorization": "Basic " + classroom.record.teacher_token}):
                    answer = await c.request(method, path, json=body, headers=headers)
                    assert answer.status_code == 401, (method, path, headers, answer.text)
                    assert answer.headers["www-authenticate"].startswith("Bearer")

    asyncio.run(go())
    assert classroom.seats.engine.calls == []


def test_a_student_reaches_only_their_own_seat_and_no_teacher_route(classroom):
    alice, bob = classroom.record.seats
    engine = classroom.seats.engine

    async def go():
        async with client(classroom) as c:
            assert (await c.get("/api/seat?seat=s02", headers=bearer(alice.token))).status_code == 403
            assert (await c.get("/api/seat?seat=bob", headers=bearer(alice.token))).status_code == 403
            assert (await c.get("/api/seat/links?seat=s02", headers=bearer(alice.token))).status_code == 403
            for path, body in (("/api/seat/check", {"seat": "s02"}), ("/api/seat/hint", {"seat": "s02", "task": "address vm2"}), ("/api/seat/answer", {"seat": "bob", "task": "whose MAC", "value": "x"}), ("/api/seat/submit", {"seat": "s02"})):
                answer = await c.post(path, json=body, headers=bearer(alice.token))
                assert answer.status_code == 403, (path, answer.text)
            for method, path, body in ROUTES[-3:]:
                answer = await c.request(method, path, json=body, headers=bearer(alice.token))
                assert answer.status_code == 403, (path, answer.text)
            for method, path, body in ROUTES[1:5]:  # the teacher does not act in a student's place
                answer = await c.request(method, path, json=body, headers=bearer(classroom.record.teacher_token))
                assert answer.status_code == 403, (path, answer.text)
            own = await c.get("/api/seat", headers=bearer(bob.token))
            assert own.status_code == 200 and own.json()["seat"] == "s02"

    asyncio.run(go())
    assert engine.calls == []
    assert all(run.phase == UP for run in classroom.seats.runs.values())  # the reset was refused: nothing rebuilt


def test_a_wrong_token_on_a_terminal_is_refused_before_anything_opens(classroom):
    from starlette.testclient import TestClient

    with TestClient(build_app(classroom)) as c:
        for hello, code in (({"token": "nope", "node": "vm2"}, 4401), ({"token": classroom.record.teacher_token, "node": "vm2"}, 4403), ("not json", 4400)):
            with c.websocket_connect("/ws/terminal") as ws:
                ws.send_text(hello if isinstance(hello, str) else json.dumps(hello))
                said = json.loads(ws.receive_text())
                assert said["closed"] is True
                closing = ws.receive()
                assert closing["type"] == "websocket.close" and closing["code"] == code
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect) as refused:  # another site's page: closed before it is accepted
            with c.websocket_connect("/ws/terminal", headers={"Origin": "http://evil.example"}):
                pass
        assert refused.value.code == 1008
    assert classroom.terminals.count() == 0


def test_the_teacher_sees_every_seat_and_views_one(classroom):
    teacher = bearer(classroom.record.teacher_token)

    async def go():
        async with client(classroom) as c:
            whole = (await c.get("/api/class", headers=teacher)).json()
            assert [s["seat"] for s in whole["seats"]] == ["s01", "s02"]
            assert whole["exercise"]["tasks"] == ["address vm2", "whose MAC"]
            assert (await c.get("/api/seat?seat=bob", headers=teacher)).json()["seat"] == "s02"
            assert (await c.get("/api/seat", headers=teacher)).status_code == 400
            assert (await c.get("/api/seat?seat=s09", headers=teacher)).status_code == 404

    asyncio.run(go())


def test_bodies_are_bounded_and_must_be_json_objects(classroom):
    alice = classroom.record.seats[0]

    async def go():
        async with client(classroom) as c:
            big = await c.post("/api/seat/answer", content=b'{"task": "whose MAC", "value": "' + b"a" * (limits.MAX_BODY + 10) + b'"}', headers={**bearer(alice.token), "Content-Type": "application/json"})
            assert big.status_code == 413
            form = await c.post("/api/seat/check", content=b"task=x", headers={**bearer(alice.token), "Content-Type": "application/x-www-form-urlencoded"})
            assert form.status_code == 415
            listed = await c.post("/api/seat/check", json=[1, 2], headers=bearer(alice.token))
            assert listed.status_code == 400
            long_answer = await c.post("/api/seat/answer", json={"task": "whose MAC", "value": "a" * (limits.MAX_ANSWER + 1)}, headers=bearer(alice.token))
            assert long_answer.status_code == 400
            unknown = await c.post("/api/seat/check", json={"task": "no such task"}, headers=bearer(alice.token))
            assert unknown.status_code == 404

    asyncio.run(go())
    assert classroom.seats.engine.calls == []


def test_twenty_checks_at_once_queue_on_their_seat_and_the_other_seat_still_answers(classroom):
    """Presses of one Check while one runs join the next run: 20 presses make at most 2 runs, and
    the other seat's Check is answered while they wait."""
    engine = classroom.seats.engine
    engine.check_seconds = 1.0
    alice, bob = classroom.record.seats

    async def go():
        async with client(classroom) as c:
            hammering = [asyncio.ensure_future(c.post("/api/seat/check", json={}, headers=bearer(alice.token))) for _ in range(20)]
            await asyncio.sleep(0.2)
            loop = asyncio.get_running_loop()
            started = loop.time()
            other = await c.post("/api/seat/check", json={"task": "address vm2"}, headers=bearer(bob.token))
            other_took = loop.time() - started
            answers = await asyncio.gather(*hammering)
            return other, other_took, answers

    other, other_took, answers = asyncio.run(go())
    assert other.status_code == 200 and other.json()["result"]["task"] == "address vm2"
    assert other_took < 2.5, f"the other seat waited {other_took:.1f} s"
    assert all(a.status_code == 200 for a in answers)
    assert engine.checks_of("cls-s01") <= 2, engine.calls
    assert engine.checks_of("cls-s02") == 1


def test_a_hint_and_a_check_answer_with_the_seat_as_it_is_now(classroom):
    alice = classroom.record.seats[0]
    engine = classroom.seats.engine
    engine.status_of["cls-s01"] = {**STATUS, "tasks": [{**STATUS["tasks"][0], "hints_used": 1, "hints": ["`ip addr add` takes an address with its prefix."]}, STATUS["tasks"][1]]}

    async def go():
        async with client(classroom) as c:
            return (await c.post("/api/seat/hint", json={"task": "address vm2"}, headers=bearer(alice.token))).json()

    answer = asyncio.run(go())
    assert answer["hint"] == "`ip addr add` takes an address with its prefix."
    task = answer["seat"]["tasks"][0]
    assert task["hints"] == ["<p><code>ip addr add</code> takes an address with its prefix.</p>\n"] and task["hints_left"] == 1
    assert ["hint", "cls-s01", "address vm2"] in engine.calls


def test_markdown_is_rendered_without_raw_html_or_script_links(classroom):
    view = classroom.view(classroom.seats.runs["s01"])
    assert "<strong>talk</strong>" in view["exercise"]["intro_html"]
    assert "<script>" not in view["exercise"]["intro_html"] and "&lt;script&gt;" in view["exercise"]["intro_html"]
    assert "href" not in view["tasks"][1]["html"]  # markdown-it refuses the javascript: link: it stays text


def test_pages_carry_a_strict_policy_and_tokens_never_reach_the_log(classroom, caplog):
    alice = classroom.record.seats[0]
    teacher = classroom.record.teacher_token
    caplog.set_level(logging.INFO, logger="vnetlab.classroom")

    async def go():
        async with client(classroom) as c:
            page = await c.get(f"/s/{alice.token}")
            assert page.status_code == 200 and "student.js" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"] and page.headers["referrer-policy"] == "no-referrer"
            assert (await c.get(f"/t/{teacher}")).status_code == 200
            assert (await c.get(f"/t/{alice.token}")).status_code == 404  # a student's token is no teacher's page
            assert (await c.get(f"/s/{teacher}")).status_code == 404
            await c.get("/api/seat", headers=bearer(alice.token))

    asyncio.run(go())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /s/… 200" in logged and "GET /t/… 404" in logged
    assert alice.token not in logged and teacher not in logged
    assert redact(f"/s/{alice.token}/x") == "/s/…/x"


def test_a_page_waits_for_news_and_is_told_at_once(classroom):
    alice = classroom.record.seats[0]

    async def go():
        async with client(classroom) as c:
            first = (await c.get("/api/seat", headers=bearer(alice.token))).json()
            waiting = asyncio.ensure_future(c.get(f"/api/seat?after={first['version']}", headers=bearer(alice.token)))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            run = classroom.seats.runs["s01"]
            run.progress = "changed"
            classroom.seats.touch(run)
            answer = await asyncio.wait_for(waiting, 5)
            return first, answer.json()

    first, newer = asyncio.run(go())
    assert newer["version"] > first["version"] and newer["progress"] == "changed"


def test_the_listen_address_rules():
    from vnetlab.classroom.record import ClassroomError
    from vnetlab.classroom.server import check_exposure, parse_listen

    check_exposure("127.0.0.1:8470", False, False)
    check_exposure("[::1]:8470", False, False)
    check_exposure("0.0.0.0:8470", True, False)
    check_exposure("0.0.0.0:8470", False, True)
    with pytest.raises(ClassroomError, match="without TLS.*clear text.*--tls-cert FILE --tls-key FILE.*--insecure-http"):
        check_exposure("0.0.0.0:8470", False, False)
    for bad in ("localhost:8470", "0.0.0.0", "1.2.3.4:0", "1.2.3.4:70000", "x:y"):
        with pytest.raises(ClassroomError, match="ADDRESS:PORT"):
            parse_listen(bad)


def test_the_memory_refusal_shows_the_arithmetic():
    from vnetlab.classroom.capacity import capacity

    room = capacity(40, [128, 128], available_mib=8000)
    assert not room.fits
    assert room.refusal().startswith("not enough memory for 40 seat(s): 40 seat(s) × 2 guest(s) a seat × 156 MiB measured per guest = 12480 MiB, against MemAvailable 8000 MiB less 1024 MiB kept for the host = 6976 MiB. This host holds at most 22 seat(s)")
    assert capacity(2, [128, 512], available_mib=8000).mib_per_seat == 156 + 156 + 384


def test_the_roster_says_what_is_wrong_and_where(tmp_path):
    from vnetlab.classroom.roster import read_roster
    from vnetlab.model.typed_yaml import ValidationError

    good = tmp_path / "good.csv"
    good.write_text("id,name\nalice@example.org,Alice Martin\n# a comment\n\n20231234,Bob Chen\ncarol\n")
    assert [(s.id, s.name) for s in read_roster(good)] == [("alice@example.org", "Alice Martin"), ("20231234", "Bob Chen"), ("carol", "carol")]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\nalice,A\nalice,B\nbad id,C\n")
    with pytest.raises(ValidationError) as caught:
        read_roster(bad)
    assert [str(p) for p in caught.value.problems] == [
        f"{bad}:3: id: student 'alice' is on line 2 already",
        f"{bad}:4: id: student id 'bad id': expected [A-Za-z0-9][A-Za-z0-9._@+-]{{0,63}} (letters, digits and . _ @ + -, at most 64 characters)",
    ]
    headless = tmp_path / "headless.csv"
    headless.write_text("alice,Alice\n")
    with pytest.raises(ValidationError, match=r"headless.csv:1: header: the first row must name the columns"):
        read_roster(headless)


def test_the_web_files_name_only_what_is_served():
    from vnetlab.classroom.app import LIBRARY_FILES, PAGE_FILES, WEB_DIR

    for page in ("student.html", "teacher.html"):
        text = (WEB_DIR / page).read_text()
        for ref in __import__("re").findall(r'(?:src|href)="/static/([^"]+)"', text):
            assert ref in PAGE_FILES or ref in LIBRARY_FILES, ref
        assert "<script>" not in text and "style=" not in text  # no inline script or style: the policy forbids them
    lock = json.loads((WEB_DIR / "package-lock.json").read_text())
    assert all(entry.get("integrity", "").startswith("sha512-") for where, entry in lock["packages"].items() if where)
    assert os.path.basename(LIBRARY_FILES["xterm.js"][0]) == "xterm.js"


def test_a_terminal_bucket_lets_its_rate_through_and_delays_the_rest():
    from vnetlab.classroom.limits import TokenBucket

    bucket = TokenBucket(1000)
    assert bucket.delay(1000) == 0.0  # a second's worth at once (the burst)
    assert bucket.delay(500) == pytest.approx(0.5, abs=0.05)  # then the rate
    assert bucket.delay(1000) == pytest.approx(1.5, abs=0.05)


def test_seats_are_numbered_and_their_labs_fit_a_lab_name():
    from vnetlab.classroom.record import CLASS_NAME_MAX, check_class_name
    from vnetlab.classroom.roster import numbered_students, seat_id
    from vnetlab.plan.planner import LAB_NAME_MAX

    assert [s.id for s in numbered_students(3)] == ["s01", "s02", "s03"] and seat_id(100) == "s100"
    assert CLASS_NAME_MAX + len("-s100") <= LAB_NAME_MAX
    check_class_name("ex-two-vm-ping")
    from vnetlab.classroom.record import ClassroomError

    with pytest.raises(ClassroomError, match="at most 15 characters"):
        check_class_name("a-much-too-long-class")


def test_tls_files_are_checked_before_anything_starts(tmp_path):
    import shutil
    import subprocess

    from vnetlab.classroom.record import ClassroomError
    from vnetlab.classroom.server import check_tls

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=labhost", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    check_tls(str(cert), str(key))
    with pytest.raises(ClassroomError, match="go together"):
        check_tls(str(cert), None)
    with pytest.raises(ClassroomError, match=f"cannot use the TLS certificate {cert} with the key {cert}"):
        check_tls(str(cert), str(cert))


@pytest.mark.parametrize("cold", [False, True])
def test_a_seat_starts_warm_unless_the_class_was_started_cold(tmp_path, cold):
    """`classroom start --cold` is kept in the class record, and each seat's start asks the engine's
    start operation for it (`--cold`: its guests booted, not restored from warm images)."""
    layout = Layout(tmp_path / "root")
    record = ClassRecord("cls", str(tmp_path / "ex.yaml"), [Seat("s01", "alice", "Alice", "cls-s01", new_token())], new_token(), cold=cold)
    folder = ClassFolder(layout, "cls")
    folder.create(record)
    assert ClassFolder(layout, "cls").load().cold is cold
    seats = Seats(record, folder, FakeEngine())
    asyncio.run(seats._bring_up(seats.runs["s01"]))
    assert seats.runs["s01"].phase == UP
    assert seats.engine.calls == [["start", *(["--cold"] if cold else []), str(tmp_path / "ex.yaml"), "alice", "cls-s01"]]


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b1m\u202eexit"
FORBIDDEN = {chr(c) for c in range(0x20) if chr(c) not in "\n\t"} | {chr(c) for c in range(0x7F, 0xA0)} | {"\u202e"}


def shown(answer: httpx.Response) -> str:
    """The answer's JSON as the page gets it (decoded: a JSON escape of ESC would be an ESC again), with no character a terminal or bidi would act on."""
    text = json.dumps(answer.json(), ensure_ascii=False)
    assert {c for c in text if c in FORBIDDEN} == set(), answer.text
    return text


def test_the_api_returns_a_guests_and_a_students_text_escaped(classroom):
    """A check's details (a guest's output), the engine's errors and a seat's failure reach the pages
    as visible escapes, never as escape sequences (the pages then set them as textContent)."""
    alice, teacher = classroom.record.seats[0].token, classroom.record.teacher_token
    engine = classroom.seats.engine
    status = json.loads(json.dumps(STATUS))
    status["tasks"][0].update(state="failed", details=[{"name": "ping vm1 → vm2", "ok": False, "detail": "got " + HOSTILE}])
    engine.status_of["cls-s01"] = status
    classroom.seats.runs["s01"].status = status
    classroom.seats.runs["s02"].error = "boot failed: " + HOSTILE

    async def answer(args: list[str], **_: object) -> Done:
        op = [a for a in args[args.index("--root") + 2 :] if a != "--"]
        if op[0] == "check":
            return Done(0, json.dumps({"passed": False, "tasks": [{"name": "address vm2", "passed": False, "checks": [{"name": "ping", "ok": False, "detail": HOSTILE}]}]}), "")
        return Done(1, json.dumps({"error": "the guest said " + HOSTILE}), "Traceback …\n" + HOSTILE)

    engine._run = answer

    async def go():
        async with client(classroom) as c:
            seat = await c.get("/api/seat", headers=bearer(alice))
            assert seat.status_code == 200 and "got \\\\x1b]0;owned\\\\x07\\\\x1b[2J\\\\x9b1m\\\\u202eexit" in shown(seat)
            checked = await c.post("/api/seat/check", json={}, headers=bearer(alice))
            assert checked.status_code == 200 and "\\\\x1b]0;owned" in json.dumps(checked.json()["result"]) and shown(checked)
            hint = await c.post("/api/seat/hint", json={"task": "address vm2"}, headers=bearer(alice))
            assert hint.status_code == 502 and hint.json()["error"] == "the guest said \\x1b]0;owned\\x07\\x1b[2J\\x9b1m\\u202eexit" and shown(hint)
            whole = await c.get("/api/class", headers=bearer(teacher))
            assert whole.status_code == 200 and "boot failed: \\\\x1b]0;owned" in shown(whole)

    asyncio.run(go())
