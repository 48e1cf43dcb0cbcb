"""The classroom's server process: uvicorn serving the app, left running in the background.

`classroom start` and `resume` bind the listening socket themselves (so "address in use" or a
refused address is said at once, by the command), check the TLS files, and hand the socket to a
new process in its own session: `python -m vnetlab.classroom.server --fd N NAME`. That process
records its PID (with its start time) in the class folder, logs to server.log there (requests
with their seat, never a token), brings the seats up, and serves until SIGTERM. On SIGTERM it
closes the terminals and ends the exercise commands it started (a check stopped that way leaves
the exercise state as it was); a `kill -9` leaves them to finish on their own.

Where it listens: 127.0.0.1 unless told otherwise. Any address that is not loopback carries the
students' tokens and key presses over a network, so it needs TLS (--tls-cert and --tls-key), or
--insecure-http to say the network is trusted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from vnetlab.classroom import limits
from vnetlab.classroom.record import ClassFolder, ClassRecord, ClassroomError
from vnetlab.paths import Layout

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT ([v6]:PORT for IPv6) → (address, port); the address must be an IP address."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not sep or not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise ClassroomError(f"--listen {text!r}: expected ADDRESS:PORT with an IP address, e.g. 127.0.0.1:8470, 0.0.0.0:8470 or [::]:8470") from None
    return host, number


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def check_exposure(listen: str, tls: bool, insecure_http: bool) -> None:
    """Refuse plain HTTP beyond this machine unless told, saying why."""
    host, _ = parse_listen(listen)
    if is_loopback(host) or tls or insecure_http:
        return
    raise ClassroomError(
        f"refusing to listen on {listen} without TLS: every student's token (which is their seat) and everything they type into "
        "their terminals would cross the network in clear text, for anyone on it to read and replay. Give --tls-cert FILE --tls-key FILE "
        "(e.g. from your institution's CA, or `openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=HOST -keyout key.pem -out cert.pem`), "
        "or --insecure-http if this network is yours alone (an isolated lab room)"
    )


def check_tls(cert: str | None, key: str | None) -> None:
    if bool(cert) != bool(key):
        raise ClassroomError("--tls-cert and --tls-key go together")
    if cert and key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ClassroomError(f"cannot use the TLS certificate {cert} with the key {key}: {exc}") from None


def bind(listen: str) -> socket.socket:
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ClassroomError(f"cannot listen on {listen}: {exc.strerror or exc}{' (another server is there: pick another --listen port)' if exc.errno == 98 else ''}") from None
    return sock


def spawn(layout: Layout, record: ClassRecord) -> int:
    """Start the server process in the background; return its PID once it answers."""
    folder = ClassFolder(layout, record.name)
    check_tls(record.tls_cert, record.tls_key)
    sock = bind(record.listen)
    log = os.open(folder.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vnetlab.classroom.server", "--root", str(layout.root), "--fd", str(sock.fileno()), record.name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(sock.fileno(),), start_new_session=True, close_fds=True,
        )
    finally:
        os.close(log)
        sock.close()
    folder.record_server(proc.pid)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClassroomError(f"the classroom server ended at once (exit {proc.returncode}); its log {folder.log_file} says:\n{_tail(folder.log_file)}")
        if "serving" in _tail(folder.log_file, 5):
            return proc.pid
        time.sleep(0.1)
    raise ClassroomError(f"the classroom server did not answer within {READY_TIMEOUT:g} s (pid {proc.pid}); see {folder.log_file}")


def stop_server(folder: ClassFolder) -> bool:
    """SIGTERM the server and wait for it (SIGKILL after STOP_TIMEOUT); False if none ran."""
    pid = folder.server_pid()
    if pid is None:
        folder.forget_server()
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while folder.server_pid() == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    if folder.server_pid() == pid:
        os.kill(pid, signal.SIGKILL)
        while folder.server_pid() == pid:
            time.sleep(0.05)
    folder.forget_server()
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- the server process itself ------------------------------------------------------------


def serve(layout: Layout, name: str, fd: int) -> None:
    import uvicorn

    from vnetlab.classroom.app import build_app, make_classroom

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    log = logging.getLogger("vnetlab.classroom")
    classroom = make_classroom(layout, name)
    folder = classroom.folder
    folder.record_server(os.getpid())
    record = classroom.record
    config = uvicorn.Config(
        build_app(classroom), fd=fd, ssl_certfile=record.tls_cert, ssl_keyfile=record.tls_key,
        ws_max_size=limits.WS_MAX_FRAME, ws_max_queue=limits.WS_QUEUE, ws_ping_interval=20.0, ws_ping_timeout=20.0,
        limit_concurrency=limits.MAX_CONNECTIONS, h11_max_incomplete_event_size=limits.MAX_BODY,
        access_log=False, log_config=None, server_header=False, timeout_graceful_shutdown=5,
        lifespan="off", ws="websockets", http="h11",
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        classroom.seats.bring_up_all()
        log.info("serving class %s on %s (%s, %d seats)", name, record.listen, "TLS" if record.tls_cert else "plain HTTP", len(record.seats))
        try:
            await server.serve()
        finally:
            classroom.terminals.close_all("the classroom server is stopping")
            classroom.seats.engine.end_children()
            await classroom.seats.close()
            log.info("stopped")

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vnetlab.classroom.server", description="The classroom's server process (started by `vnetlab classroom start|resume`).")
    p.add_argument("--root", type=Path, default=Layout().root)
    p.add_argument("--fd", type=int, required=True, help="the listening socket, bound by the command that started this")
    p.add_argument("name")
    args = p.parse_args(argv)
    serve(Layout(args.root), args.name, args.fd)


if __name__ == "__main__":
    main()
