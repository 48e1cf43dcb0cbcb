"""GuestSSH.run() against a hostile guest: the student is root in it and controls its sshd; and
a hypervisor's SFTP (remote_host.HostShell) that stops answering.

The "guest" is a paramiko server in this process, listening on 127.0.0.1 only; the namespace
switch is patched out so GuestSSH makes its socket in the current (root) namespace. Each
scenario is one behaviour of the server's exec handler: never answer, flood, a large but
finite answer, and plain commands. Nothing waits on a fixed sleep: the server side reports
through events, and every client call runs in a worker thread joined with a bound, so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import paramiko
import paramiko.pipe
import pytest

from vnetlab.backends import ssh
from vnetlab.backends.keys import generate_client_key
from vnetlab.backends.ssh import CommandResult, GuestSSH, SSHError

CAP: int = getattr(ssh, "MAX_OUTPUT", 8 << 20)  # the documented bound on kept output per stream
MARGIN = 1.5  # seconds a bounded call may overrun its timeout (thread wake-ups, channel close)
FLOOD = b"y\n" * 32768  # 64 KiB per write, as `yes` would


def _ed25519(pem: str | None = None) -> paramiko.Ed25519Key:
    pem = pem or generate_client_key("vnetlab-test").private_openssh.decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


Handler = Callable[["Guest", paramiko.Channel, str], bool]


@dataclass
class Guest:
    """What the fake sshd saw, and the events the test uses to release it."""

    handler: Handler
    client_key: paramiko.PKey
    subsystem: Callable[[Guest, paramiko.Channel], bool] | None = None  # how it answers a subsystem request (SFTP)
    release: threading.Event = field(default_factory=threading.Event)  # set at teardown: stop everything
    exec_seen: threading.Event = field(default_factory=threading.Event)
    keepalive_seen: threading.Event = field(default_factory=threading.Event)
    sent: int = 0  # bytes of output the flooding command got out
    threads: list[threading.Thread] = field(default_factory=list)

    def spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name="fake-guest-writer", daemon=True)
        self.threads.append(thread)
        thread.start()


class _Interface(paramiko.ServerInterface):
    def __init__(self, guest: Guest) -> None:
        self.guest = guest

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key.asbytes() == self.guest.client_key.asbytes()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.guest.exec_seen.set()
        return self.guest.handler(self.guest, channel, command.decode())

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        return name == "sftp" and self.guest.subsystem is not None and self.guest.subsystem(self.guest, channel)

    def check_global_request(self, kind: str, msg: paramiko.Message) -> bool:
        if kind == "keepalive@lag.net":
            self.guest.keepalive_seen.set()
        return False


def _send_all(channel: paramiko.Channel, *chunks: bytes, stderr: bytes = b"", exit_status: int = 0) -> None:
    """Write a command's whole output and exit like a well-behaved sshd."""
    try:
        if stderr:
            channel.sendall_stderr(stderr)
        for chunk in chunks:
            channel.sendall(chunk)
        channel.send_exit_status(exit_status)
        channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the client closed the channel


def _answer_ok(guest: Guest, channel: paramiko.Channel, command: str) -> bool:
    guest.spawn(lambda: _send_all(channel, b"ok\n"))
    return True


@dataclass
class Lab:
    guest: Guest
    client: GuestSSH
    port: int = 0
    host_key: str = ""  # "type base64"
    client_pem: str = ""  # the client's private key (OpenSSH format)


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Handler], Lab]]:
    """Start a fake guest with a given exec handler and a connected GuestSSH to it."""
    monkeypatch.setattr(ssh, "run_in_namespace", lambda ns, fn, *a, **k: fn(*a, **k))
    started: list[tuple[Guest, GuestSSH, socket.socket, list[paramiko.Transport], threading.Thread]] = []

    def start(handler: Handler, subsystem: Callable[[Guest, paramiko.Channel], bool] | None = None) -> Lab:
        client_pem = generate_client_key("vnetlab-test").private_openssh.decode()
        host_key, client_key = _ed25519(), _ed25519(client_pem)
        guest = Guest(handler, client_key, subsystem)
        listener = socket.create_server(("127.0.0.1", 0))
        transports: list[paramiko.Transport] = []

        def accept() -> None:
            while True:  # every connection made to it, until the listener closes
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                transport = paramiko.Transport(conn)
                transports.append(transport)
                transport.add_server_key(host_key)
                try:
                    transport.start_server(server=_Interface(guest))
                except (OSError, EOFError, paramiko.SSHException):
                    pass

        acceptor = threading.Thread(target=accept, name="fake-guest-accept", daemon=True)
        acceptor.start()
        port = listener.getsockname()[1]
        client = GuestSSH("unused", "127.0.0.1", client_key, f"{host_key.get_name()} {host_key.get_base64()}", port=port)
        started.append((guest, client, listener, transports, acceptor))
        client.connect(time.monotonic() + 10)
        return Lab(guest, client, port, f"{host_key.get_name()} {host_key.get_base64()}", client_pem)

    yield start
    for guest, client, listener, transports, acceptor in started:
        guest.release.set()
        client.close()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the acceptor's accept() (close alone does not)
        except OSError:
            pass
        listener.close()
        acceptor.join(5)
        for transport in transports:
            transport.close()
        for thread in guest.threads:
            thread.join(5)


def _bounded(call: Callable[[], CommandResult], limit: float) -> tuple[float, CommandResult | BaseException]:
    """Run `call` in a worker thread; (seconds taken, result or exception). Fails if it overruns `limit`."""
    outcome: list[CommandResult | BaseException] = []

    def body() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    start = time.monotonic()
    worker = threading.Thread(target=body, name="guestssh-run", daemon=True)
    worker.start()
    worker.join(limit)
    elapsed = time.monotonic() - start
    assert not worker.is_alive(), f"run() still blocked after {elapsed:.1f}s (bound {limit:g}s)"
    return elapsed, outcome[0]


# --- the exec request is never answered -------------------------------------------


def _never_answer(guest: Guest, channel: paramiko.Channel, command: str) -> bool:
    guest.release.wait()  # a silent sshd: the reply to the exec request never comes
    return False


def test_unanswered_exec_request_times_out(lab):
    env = lab(_never_answer)
    elapsed, outcome = _bounded(lambda: env.client.run("uname -a", timeout=2), 2 + MARGIN + 3)
    assert isinstance(outcome, SSHError), outcome
    assert env.guest.exec_seen.is_set()
    assert elapsed < 2 + MARGIN
    message = str(outcome)
    assert "'uname -a'" in message and "127.0.0.1" in message and "2s" in message


# --- the command floods stdout --------------------------------------------------------


def _flood(guest: Guest, channel: paramiko.Channel, command: str) -> bool:
    """`yes` floods stdout until the client goes away; anything else prints "ok"."""
    if command != "yes":
        return _answer_ok(guest, channel, command)

    def write() -> None:
        try:
            while not guest.release.is_set():
                channel.sendall(FLOOD)
                guest.sent += len(FLOOD)
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the client closed the channel: `yes` gets SIGPIPE

    guest.spawn(write)
    return True


def test_endless_output_is_bounded_in_time_and_memory(lab):
    env = lab(_flood)
    tracemalloc.start()
    try:
        elapsed, outcome = _bounded(lambda: env.client.run("yes", timeout=3, check=False), 3 + MARGIN + 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 3 + MARGIN
    assert env.guest.sent > 4 * CAP  # the flood did go far beyond the cap ...
    assert peak < 8 * CAP  # ... and the host kept a bounded share (the old code grew with the flood)
    assert isinstance(outcome, SSHError), outcome
    message = str(outcome)
    assert "'yes'" in message and "did not finish within 3s" in message
    assert len(message) < 4000  # readable: the tail of the output, not all of it
    assert env.client.run("echo ok", timeout=5).stdout == "ok\n"  # the connection survives


def _large_then_exit(guest: Guest, channel: paramiko.Channel, command: str) -> bool:
    """Three caps' worth on stdout and one and a half on stderr, then exit 0: large but finite."""
    stdout = [FLOOD] * (3 * CAP // len(FLOOD))
    stderr = b"warning: " + b"e" * (CAP * 3 // 2) + b"\ndone on stderr\n"
    guest.spawn(lambda: _send_all(channel, b"FIRST\n", *stdout, b"LAST\n", stderr=stderr))
    return True


def test_large_output_is_capped_head_and_tail_kept(lab):
    env = lab(_large_then_exit)
    _, outcome = _bounded(lambda: env.client.run("cat big", timeout=20), 25)
    assert isinstance(outcome, CommandResult), outcome
    assert outcome.exit_code == 0
    assert len(outcome.stdout) <= CAP and len(outcome.stdout.encode()) <= CAP
    assert len(outcome.stderr) <= CAP
    assert outcome.truncated is True
    assert outcome.stdout.startswith("FIRST\ny\ny\n") and outcome.stdout.endswith("y\ny\nLAST\n")
    assert outcome.stderr.startswith("warning: eee") and outcome.stderr.endswith("e\ndone on stderr\n")
    assert "bytes of output" in outcome.stdout  # the cut is marked where it happened


# --- keepalive ---------------------------------------------------------------------


def test_keepalive_reaches_an_idle_guest(lab, monkeypatch):
    monkeypatch.setattr(ssh, "_KEEPALIVE_INTERVAL", 0.2, raising=False)  # 5 s in production
    env = lab(_answer_ok)
    assert env.guest.keepalive_seen.wait(3), "no keepalive sent to an idle guest"


# --- ordinary commands are unchanged -------------------------------------------------


def _shell(guest: Guest, channel: paramiko.Channel, command: str) -> bool:
    """`greet` writes both streams and exits 3; `cat` echoes stdin back."""

    def serve() -> None:
        if command == "greet":
            _send_all(channel, b"hello\n", "grüße\n".encode(), stderr=b"oops\n", exit_status=3)
        elif command == "cat":
            received = bytearray()
            while data := channel.recv(65536):
                received.extend(data)
            _send_all(channel, bytes(received))
        else:
            _send_all(channel, exit_status=127)

    guest.spawn(serve)
    return True


def test_normal_commands_are_unchanged(lab):
    env = lab(_shell)
    result = env.client.run("greet", timeout=5, check=False)
    assert result == CommandResult("greet", 3, "hello\ngrüße\n", "oops\n")
    assert result.truncated is False
    with pytest.raises(SSHError, match=r"(?s)'greet'.*exited with 3.*hello.*oops"):
        env.client.run("greet", timeout=5)
    data = bytes(range(32, 127)) * 4096  # ~380 KiB through stdin and back, below the cap
    echoed = env.client.run("cat", stdin=data, timeout=10)
    assert (echoed.exit_code, echoed.stdout.encode(), echoed.truncated) == (0, data, False)
    assert env.client.run("true", timeout=5, check=False).exit_code == 127


def test_run_never_creates_the_channel_fileno_pipe(lab, monkeypatch):
    """select() on a channel needs its fileno() pipe, which paramiko closes in Channel.close() while
    its transport thread may still write to it for output in flight (paramiko issue #1700): after
    a timeout on a flooding guest, that killed the whole connection with EBADF, or could write a
    byte into whatever file reused the descriptor."""

    def no_pipe() -> None:
        raise AssertionError("GuestSSH.run() created a channel fileno() pipe")

    monkeypatch.setattr(paramiko.pipe, "make_pipe", no_pipe)
    env = lab(_flood)
    assert env.client.run("echo ok", timeout=5).stdout == "ok\n"
    _, outcome = _bounded(lambda: env.client.run("yes", timeout=1), 1 + MARGIN + 5)
    assert isinstance(outcome, SSHError), outcome


# --- the cap itself ------------------------------------------------------------------


ROOM = getattr(ssh, "_CUT_MARKER_ROOM", 128)


@pytest.mark.parametrize("size", [0, 5, CAP // 2, CAP - ROOM, CAP - ROOM + 1, CAP, 3 * CAP + 7])
@pytest.mark.parametrize("chunk", [4096, 65536, 1 << 24])
def test_capped_output_keeps_head_and_tail(size, chunk):
    data = (bytes(range(251)).replace(b"\n", b".") * (size // 251 + 1))[:size]
    kept = ssh.CappedOutput()
    for start in range(0, size, chunk):
        kept.add(data[start : start + chunk])
    text = kept.text()
    if size <= CAP - ROOM:  # fits: nothing dropped, nothing added
        assert (kept.dropped, text) == (0, data.decode(errors="replace"))
        return
    head, tail = CAP // 2, CAP - CAP // 2 - ROOM
    assert kept.dropped == size - head - tail
    assert len(text) <= CAP
    marker = f"\n[... vnetlab dropped {kept.dropped} bytes of output here ...]\n"
    assert text == data[:head].decode(errors="replace") + marker + data[-tail:].decode(errors="replace")


# --- a command killed by a signal -------------------------------------------------


def _killed_by(name: str) -> Handler:
    """An sshd whose command dies of a signal: stderr, then an exit-signal request (RFC 4254 6.10), no exit status."""

    def handler(guest: Guest, channel: paramiko.Channel, command: str) -> bool:
        def die() -> None:
            time.sleep(0.2)  # after the reply to the exec request, as a real command dies
            channel.sendall_stderr(b"Terminated\n")
            m = paramiko.Message()
            m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
            m.add_int(channel.remote_chanid)
            m.add_string("exit-signal")
            m.add_boolean(False)
            m.add_string(name)
            m.add_boolean(False)
            m.add_string("")
            m.add_string("")
            channel.transport._send_user_message(m)
            channel.close()

        guest.spawn(die)
        return True

    return handler


def test_a_command_killed_by_a_signal_says_which(lab):
    result = lab(_killed_by("TERM")).client.run("sleep 5", timeout=10, check=False)
    assert (result.exit_code, result.signal, result.ended, result.exited) == (-1, "TERM", "killed by signal TERM", "was killed by signal TERM")
    with pytest.raises(SSHError, match="'sleep 5' on .* was killed by signal TERM:\nTerminated"):
        lab(_killed_by("TERM")).client.run("sleep 5", timeout=10)
    odd = lab(_killed_by("X; rm -rf /")).client.run("sleep 5", timeout=10, check=False)
    assert odd.signal == "?" and odd.ended == "killed by signal ?"  # the guest names it: only a plain name is shown
# --- a hypervisor's SFTP stops answering (issue 23, finding 3) ---------------------------


SFTP_BOUND = 1.5  # s: remote_host.SFTP_TIMEOUT for these tests (20 s in production)


def _sftp_never_answers_the_request(guest: Guest, channel: paramiko.Channel) -> bool:
    guest.release.wait()  # the subsystem request is never answered
    return False


def _sftp_never_starts(guest: Guest, channel: paramiko.Channel) -> bool:
    return True  # accepted, but no sftp-server behind it: the version exchange never ends


def _sftp_stops_after_hello(guest: Guest, channel: paramiko.Channel) -> bool:
    """Answers SFTP's INIT with VERSION 3, then reads every request and answers none (a SIGSTOPped sftp-server)."""

    def serve() -> None:
        try:
            length = int.from_bytes(channel.recv(4), "big")
            while length > 0:
                length -= len(channel.recv(length))
            channel.sendall((5).to_bytes(4, "big") + bytes([2]) + (3).to_bytes(4, "big"))  # SSH_FXP_VERSION 3
            while not guest.release.is_set() and channel.recv(65536):
                pass
        except (OSError, EOFError, paramiko.SSHException):
            pass

    guest.spawn(serve)
    return True


@pytest.fixture
def hypervisor(lab, tmp_path, monkeypatch):
    """A HostShell connected to a fake hypervisor whose SFTP behaves as the test says."""
    from vnetlab.backends import remote_host

    monkeypatch.setattr(remote_host, "SFTP_TIMEOUT", SFTP_BOUND)
    shells = []

    def start(subsystem) -> remote_host.HostShell:
        env = lab(_answer_ok, subsystem)
        key = tmp_path / f"key{len(shells)}"
        key.write_text(env.client_pem)
        access = remote_host.HostAccess("hv2", "127.0.0.1", None, str(key), env.host_key, "qemu+ssh://root@127.0.0.1/system", port=env.port)
        shells.append(remote_host.HostShell(access).connect(10))
        return shells[-1]

    yield start
    for shell in shells:
        shell.close()


@pytest.mark.parametrize("subsystem", [_sftp_never_answers_the_request, _sftp_never_starts, _sftp_stops_after_hello])
def test_a_copy_to_a_hypervisor_whose_sftp_does_not_answer_fails_in_bounded_time(hypervisor, tmp_path, subsystem):
    from vnetlab.backends.remote_host import HostError

    shell = hypervisor(subsystem)
    local = tmp_path / "kernel"
    local.write_bytes(b"k" * 100_000)
    elapsed, outcome = _bounded(lambda: shell.put(local, "/var/lib/vnetlab/hosted/x/vmlinux"), 2 * SFTP_BOUND + MARGIN + 5)
    assert isinstance(outcome, HostError), outcome
    assert elapsed < 2 * SFTP_BOUND + MARGIN
    assert str(outcome).startswith("hypervisor hv2: SFTP stopped answering while ") and "sftp-server hung" in str(outcome), outcome
    if subsystem is not _sftp_never_answers_the_request:  # (that fake server stalls the whole connection)
        assert shell.run("echo ok", timeout=5) == "ok\n"  # its shell still works: teardown can reach it
    again, outcome = _bounded(lambda: shell.put(local, "/var/lib/vnetlab/hosted/x/vmlinux"), 1)
    assert isinstance(outcome, HostError) and again < 0.5  # the stalled session is not waited for twice


@pytest.mark.parametrize("subsystem", [_sftp_never_starts, _sftp_stops_after_hello])
def test_a_console_read_on_a_hypervisor_whose_sftp_does_not_answer_fails_in_bounded_time(hypervisor, subsystem):
    """The boot wait and the artifact step read a remote guest's serial log this way."""
    from vnetlab.backends.remote_host import HostError
    from vnetlab.run.configure import ConsoleFollower, console_tail

    shell = hypervisor(subsystem)
    elapsed, outcome = _bounded(lambda: ConsoleFollower(lambda: shell.open("/var/lib/vnetlab/hosted/x/vm2/console.log")).new_text(), SFTP_BOUND + MARGIN + 5)
    assert isinstance(outcome, HostError), outcome
    assert elapsed < SFTP_BOUND + MARGIN
    assert str(outcome).startswith("hypervisor hv2: SFTP stopped answering while opening "), outcome
    tail = console_tail(lambda: shell.open("/var/lib/vnetlab/hosted/x/vm2/console.log"))  # in an error message: says why, at once
    assert tail.startswith("(the console cannot be read: hypervisor hv2: SFTP stopped answering"), tail
