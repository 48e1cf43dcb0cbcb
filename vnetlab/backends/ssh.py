"""SSH into guests from inside a lab namespace (paramiko over a namespaced socket).

The TCP socket is created by a thread that has entered the lab namespace, so
the connection reaches the guest on the lab's bridge while the rest of the
process stays in the root namespace. Host keys are pinned per guest (the lab
generated them), so there is no known_hosts file and no trust-on-first-use.
"""

from __future__ import annotations

import base64
import binascii
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from vnetlab.errors import VnetlabError
from vnetlab.printable import printable
from vnetlab.backends.netns import run_in_namespace
from vnetlab.lazy import LazyModule

paramiko = LazyModule("paramiko")  # imported at the first SSH use, or while the guests boot (vnetlab.lazy)

MAX_OUTPUT = 8 << 20
"""Bytes kept per output stream of one command (the guest is hostile: `yes` must not fill host memory).

Past it, run() keeps the first MAX_OUTPUT/2 bytes and the last ones (the rest of the budget, less
a line marking the cut), drops the middle and sets CommandResult.truncated. Both ends matter: a
command's header and the start of structured output come first, while its summary (ping's
statistics) and the error that made it fail come last, which is also what SSHError quotes.
Output beyond the cap is still read and discarded, so the command runs to its real exit status
instead of stalling on a full SSH window. 8 MiB is far above what vnetlab parses (ping, iperf3
JSON, ip, wg) and still lets `cat` echo a few MiB of stdin back whole.
"""

_CONNECT_ATTEMPT_TIMEOUT = 3.0  # a fresh SYN beats waiting out TCP's backoff while a guest boots
_KEEPALIVE_INTERVAL = 5  # seconds idle before a keepalive: an idle connection to a dead guest never errors
_RECV_CHUNK = 65536
_IDLE_POLL = 0.05  # longest wait for output on stderr alone (stdout and EOF wake run() at once)
_CUT_MARKER_ROOM = 128  # bytes of MAX_OUTPUT reserved for the "[... dropped ...]" line
_RETRY_PAUSE = 0.25
_SEND_CHUNK = 32768
_SEND_STALL = 0.05  # longest wait for send window before draining output again
_TAIL_LINES = 20
_TAIL_CHARS = 2000


class SSHError(VnetlabError):
    """Connecting, authenticating or running a command on a guest failed. Its message may quote the
    guest (output tails, an sshd's banner in paramiko's exception): VnetlabError makes it printable."""


class NotYetTrusted(SSHError):
    """The guest answered with another host key, or refused the lab's key: final for a guest whose
    init installs them before sshd starts, only "not yet" for one that cloud-init configures."""


@dataclass
class CommandResult:
    command: str
    exit_code: int  # -1 when the command was killed by a signal (no exit status)
    stdout: str
    stderr: str
    truncated: bool = False  # stdout or stderr exceeded MAX_OUTPUT and lost its middle
    signal: str | None = None  # the signal that killed it, without "SIG" (TERM, KILL, SEGV), when one did

    @property
    def ended(self) -> str:
        """How it ended, for people: 'exit 1', or 'killed by signal TERM'."""
        return f"killed by signal {self.signal}" if self.signal else f"exit {self.exit_code}"

    @property
    def exited(self) -> str:
        """The same as a verb: 'exited 1', or 'was killed by signal TERM'."""
        return f"was killed by signal {self.signal}" if self.signal else f"exited {self.exit_code}"


EXIT_SIGNAL = "exit-signal"  # RFC 4254 6.10: the command was killed by a signal (paramiko's client drops it)
_SIGNAL_NAME = 32  # characters of a signal name kept (the guest sends it)


def _handle_request(channel: paramiko.Channel, m: paramiko.Message) -> None:
    """The transport's handler of channel requests, which also keeps an exit-signal's name on the
    channel (`vnetlab_signal`), then lets paramiko handle the request as it does."""
    position = m.packet.tell()
    try:
        if m.get_text() == EXIT_SIGNAL:
            m.get_boolean()  # want reply
            name = m.get_text()[:_SIGNAL_NAME]
            channel.vnetlab_signal = name if name.isascii() and name.isalnum() else "?"
    except Exception:  # noqa: BLE001 — a malformed request is paramiko's to refuse below
        pass
    m.packet.seek(position)
    paramiko.Channel._handle_request(channel, m)


class CappedOutput:
    """One output stream, kept within MAX_OUTPUT bytes: the head, the latest tail, and a count of the rest
    (a guest's over SSH, a container's or an outside host's through a pipe)."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self._head_limit = limit // 2
        self._tail_limit = max(0, limit - self._head_limit - _CUT_MARKER_ROOM)
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        self._tail += data
        excess = len(self._tail) - self._tail_limit
        if excess > 0:
            del self._tail[:excess]  # the oldest bytes of the tail: at most one tail-sized copy per chunk
            self.dropped += excess

    def text(self) -> str:
        if not self.dropped:
            return (self._head + self._tail).decode(errors="replace")
        marker = f"\n[... vnetlab dropped {self.dropped} bytes of output here ...]\n"
        return self._head.decode(errors="replace") + marker + self._tail.decode(errors="replace")


def _tail(*texts: str) -> str:
    # Only the last _TAIL_CHARS characters are shown, and a line break ("\r\n" at most) shrinks to one
    # "\n", so nothing before the last 2 * _TAIL_CHARS characters of each text can reach the result:
    # cutting there first keeps a flood's error message from splitting megabytes into lines.
    keep = 2 * _TAIL_CHARS + 2
    lines = "\n".join(t.rstrip("\n")[-keep:] for t in texts if t and not t.isspace()).splitlines()
    return printable("\n".join(lines[-_TAIL_LINES:])[-_TAIL_CHARS:])  # the guest's words, shown not obeyed


def _answered_by(deadline: float, channel: paramiko.Channel, request: Callable[[], None]) -> bool:
    """Send a channel request (exec, subsystem); False if the server has not answered it by `deadline`.

    paramiko waits for the reply without a bound. Closing the channel is the public way to end
    that wait, so a timer does it at the deadline.
    """
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        try:
            channel.close()  # wakes the waiting request before it sends the close to the server
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the transport went down meanwhile: the channel is closed all the same

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        request()
    except (OSError, EOFError, paramiko.SSHException):
        if expired.is_set():
            return False
        raise
    finally:
        watchdog.cancel()
    return not expired.is_set()  # the timer may have fired just after the reply


def _parse_host_key_line(line: str) -> tuple[str, bytes]:
    """(key type, key blob) from "ssh-ed25519 AAAA... [comment]", optionally preceded by host names
    as in known_hosts."""
    tokens = line.split()
    for key_type, blob in zip(tokens, tokens[1:]):
        if key_type.startswith(("ssh-", "ecdsa-")):
            try:
                return key_type, base64.b64decode(blob, validate=True)
            except binascii.Error:
                break
    raise SSHError(f"not a public host key line: {line!r}")


class GuestSSH:
    """One SSH connection to one guest; run() opens a channel per command."""

    def __init__(
        self,
        ns: str | None,
        host: str,
        pkey: paramiko.PKey,
        host_key_line: str,
        *,
        port: int = 22,
        user: str = "root",
    ) -> None:
        self.ns = ns
        self.host = host
        self.port = port
        self.user = user
        self._pkey = pkey
        self._host_key_type, self._host_key_blob = _parse_host_key_line(host_key_line)
        try:
            self._addrinfo = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0]
        except socket.gaierror:
            raise SSHError(f"guest address must be an IP address, not {host!r}") from None
        self._transport: paramiko.Transport | None = None

    def __repr__(self) -> str:
        return f"GuestSSH({self._where})"

    @property
    def _where(self) -> str:
        return f"{self.user}@{self.host}:{self.port} in namespace {self.ns!r}"

    def __enter__(self) -> GuestSSH:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self, deadline: float, *, patient: bool = False) -> None:
        """Connect and authenticate, retrying until `deadline` (a time.monotonic() value).

        Refused or timed-out connections and broken handshakes are retried (the
        guest may still be booting); a wrong host key or a rejected client key
        is final at once, unless `patient` (cloud-init installs both some time after
        sshd first answers). A missing namespace raises NamespaceError.
        """
        self.close()
        attempts = 0
        last_error: BaseException | None = None
        while True:
            attempts += 1
            try:
                self._transport = self._attempt(deadline)
                return
            except (OSError, EOFError, paramiko.SSHException) as exc:
                last_error = exc
            except NotYetTrusted as exc:
                if not patient:
                    raise
                last_error = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SSHError(
                    f"cannot connect to {self._where} after {attempts} attempts: {last_error!r}"
                ) from last_error
            time.sleep(min(_RETRY_PAUSE, remaining))

    def _attempt(self, deadline: float) -> paramiko.Transport:
        family, kind, proto, _, address = self._addrinfo
        sock = run_in_namespace(self.ns, socket.socket, family, kind, proto) if self.ns else socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(0.01, min(_CONNECT_ATTEMPT_TIMEOUT, deadline - time.monotonic())))
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        transport = paramiko.Transport(sock)
        # One handler per transport (its table shadows the class's): keep what killed a command.
        transport._channel_handler_table = {**transport._channel_handler_table, paramiko.common.MSG_CHANNEL_REQUEST: _handle_request}
        try:
            remaining = max(0.01, deadline - time.monotonic())
            transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = remaining
            options = transport.get_security_options()
            options.key_types = self._host_key_algorithms(options.key_types)
            try:
                transport.start_client(timeout=remaining)
            except paramiko.IncompatiblePeer as exc:  # e.g. no host key of the pinned type: final
                raise SSHError(
                    f"host key mismatch or incompatible server at {self._where} "
                    f"(pinned a {self._host_key_type} key): {exc}"
                ) from exc
            try:
                server_key = transport.get_remote_server_key()
            except paramiko.SSHException:
                raise socket.timeout("SSH handshake did not finish in time") from None
            if server_key.asbytes() != self._host_key_blob:
                raise NotYetTrusted(
                    f"host key mismatch for {self._where}: expected {self._host_key_type} "
                    f"{base64.b64encode(self._host_key_blob).decode()}, got {server_key.get_name()} "
                    f"{server_key.get_base64()}"
                )
            try:
                transport.auth_publickey(self.user, self._pkey)
            except paramiko.AuthenticationException as exc:
                raise NotYetTrusted(f"authentication failed for {self._where}: {exc}") from exc
            transport.set_keepalive(_KEEPALIVE_INTERVAL)
            return transport
        except BaseException:
            transport.close()
            raise

    def _host_key_algorithms(self, available: tuple[str, ...]) -> tuple[str, ...]:
        """Only offer the pinned key's algorithms, so a guest with several host keys shows the pinned one."""
        wanted = {"rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"} if self._host_key_type == "ssh-rsa" else {self._host_key_type}
        algorithms = tuple(a for a in available if a in wanted)
        if not algorithms:
            raise SSHError(f"host key type {self._host_key_type!r} for {self._where} is not supported by paramiko")
        return algorithms

    def run(
        self, command: str, *, timeout: float = 30.0, stdin: bytes | None = None, check: bool = True
    ) -> CommandResult:
        """Run a shell command; stdin (if given) is sent and then closed.

        Output is read while stdin is being sent, so large transfers such as
        `cat > file` cannot deadlock on SSH window sizes. The whole of it (opening
        the channel, the exec request, the exchange) is bounded by `timeout`,
        since the guest's sshd may be hostile; each stream keeps at most
        MAX_OUTPUT bytes. A non-zero exit raises SSHError when `check`.
        """
        deadline = time.monotonic() + timeout
        channel = self._session(command, deadline, timeout, "running")
        out, err = CappedOutput(), CappedOutput()
        try:
            self._exec_or_raise(channel, command, deadline, timeout)
            finished = self._exchange(channel, stdin or b"", out, err, deadline)
            if not finished:
                raise SSHError(
                    f"command {command!r} on {self._where} did not finish within {timeout:g}s; "
                    f"output so far:\n{_tail(out.text(), err.text())}"
                )
            exit_code = channel.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"command {command!r} on {self._where} failed: {exc}") from exc
        finally:
            channel.close()
        killed = getattr(channel, "vnetlab_signal", None) if exit_code == -1 else None
        result = CommandResult(command, exit_code, out.text(), err.text(), bool(out.dropped or err.dropped), killed)
        if check and exit_code != 0:
            raise SSHError(
                f"command {command!r} on {self._where} {'was killed by signal ' + killed if killed else f'exited with {exit_code}'}:\n{_tail(result.stdout, result.stderr)}"
            )
        return result

    def start(self, command: str, *, timeout: float = 5.0) -> None:
        """Start a shell command and return once the guest has accepted it, without waiting for it to
        end: for a command after which no exit status ever comes (the guest powering itself off)."""
        deadline = time.monotonic() + timeout
        channel = self._session(command, deadline, timeout, "starting")
        try:
            self._exec_or_raise(channel, command, deadline, timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"cannot start {command!r} on {self._where}: {exc}") from exc

    def _session(self, command: str, deadline: float, timeout: float, doing: str) -> paramiko.Channel:
        """A new channel for `command`, opened by `deadline` (`timeout` after the call began)."""
        if self._transport is None or not self._transport.is_active():
            raise SSHError(f"not connected to {self._where} ({doing} {command!r})")
        try:
            return self._transport.open_session(timeout=max(0.0, deadline - time.monotonic()))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(
                f"cannot open a session to {self._where} for {command!r} within {timeout:g}s: {exc}"
            ) from exc

    def _exec_or_raise(self, channel: paramiko.Channel, command: str, deadline: float, timeout: float) -> None:
        if not self._exec(channel, command, deadline):
            raise SSHError(f"command {command!r} on {self._where}: no answer to the exec request within {timeout:g}s")

    @staticmethod
    def _exec(channel: paramiko.Channel, command: str, deadline: float) -> bool:
        """Send the exec request; False if the guest has not answered it by `deadline`."""
        return _answered_by(deadline, channel, lambda: channel.exec_command(command))

    def open_sftp(self, timeout: float) -> paramiko.SFTPClient:
        """An SFTP session whose every request must be answered within `timeout` seconds: opening
        it (channel, subsystem request, version exchange) and each read, write or stat after it
        raise socket.timeout (an OSError) instead of waiting for a server that stopped answering."""
        if self._transport is None or not self._transport.is_active():
            raise SSHError(f"not connected to {self._where}")
        deadline = time.monotonic() + timeout
        try:
            channel = self._transport.open_session(timeout=timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SSHError(f"cannot open an SFTP session to {self._where} within {timeout:g}s: {exc}") from exc
        try:
            if not _answered_by(deadline, channel, lambda: channel.invoke_subsystem("sftp")):
                raise socket.timeout(f"no answer to the SFTP subsystem request within {timeout:g}s")
            channel.settimeout(timeout)  # every recv and send of the session from here on
            return paramiko.SFTPClient(channel)
        except BaseException:
            channel.close()
            raise

    @staticmethod
    def _exchange(
        channel: paramiko.Channel, stdin: bytes, out: CappedOutput, err: CappedOutput, deadline: float
    ) -> bool:
        """Feed stdin and collect output until the command's exit status arrives; False on timeout."""
        pending = memoryview(stdin)
        if not pending:
            channel.shutdown_write()

        def drain() -> bool:
            """Take what has arrived; False at the deadline (a flooding guest never lets it run dry).

            Both streams are taken in turn, so a flood on one cannot starve the other.
            """
            while channel.recv_ready() or channel.recv_stderr_ready():
                if time.monotonic() >= deadline:
                    return False
                if channel.recv_ready():
                    out.add(channel.recv(_RECV_CHUNK))
                if channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(_RECV_CHUNK))
            return True

        while not (channel.eof_received or channel.closed):
            if not drain():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if not pending:
                # Not select() on the channel: its fileno() pipe is closed by channel.close() while
                # the transport thread may still write to it for output in flight (paramiko #1700),
                # which kills the transport with EBADF or writes into a reused descriptor. A blocking
                # recv() wakes at once for stdout and EOF; stderr alone waits out a short poll.
                channel.settimeout(min(remaining, _IDLE_POLL))
                try:
                    out.add(channel.recv(_RECV_CHUNK))
                except socket.timeout:
                    pass
                continue
            # send() wakes up as soon as the server opens its window; the short timeout
            # gets us back to draining output in case the command is blocked writing it.
            channel.settimeout(min(remaining, _SEND_STALL))
            try:
                sent = channel.send(bytes(pending[:_SEND_CHUNK]))
            except socket.timeout:
                continue
            pending = pending[sent:] if sent else pending[:0]  # 0: the channel is closing
            if not pending:
                channel.shutdown_write()
        if not drain():  # data may still come after EOF from a guest that ignores the protocol
            return False
        return channel.status_event.wait(max(0.0, deadline - time.monotonic()))

    def open_terminal(self, cols: int, rows: int, *, term: str = "xterm-256color", timeout: float = 10.0) -> paramiko.Channel:
        """An interactive login shell on a PTY (the classroom's browser terminals): the channel, for
        the caller to pump both ways and resize (`resize_pty`). Opening it is bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        channel = self._session("a terminal", deadline, timeout, "opening")
        try:
            opened = _answered_by(deadline, channel, lambda: channel.get_pty(term=term, width=cols, height=rows)) and _answered_by(deadline, channel, channel.invoke_shell)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            channel.close()
            raise SSHError(f"cannot open a terminal on {self._where}: {exc}") from exc
        if not opened:
            raise SSHError(f"cannot open a terminal on {self._where}: no answer within {timeout:g}s")
        return channel

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
