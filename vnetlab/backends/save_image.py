"""libvirt's save image: read its header, write one for another domain, feed it to libvirt through a pipe.

A file `virDomainSave` writes is a header, the domain XML, a cookie (the guest CPU as QEMU runs
it), zero padding, then QEMU's migration stream. libvirt restores the domain its header's XML
names, and refuses another name, UUID or MAC in a replacement XML (docs/architecture.md, "Warm
start"). So one saved guest restores as many guests when each gets a save image of its own: its
own XML in the header, the same stream after it. That image is a named pipe: the header is
written into it and the stream spliced from the saved file's page cache, so no guest copies the
stream (tens of MiB) and nothing of it is kept per guest.

libvirt 9.0 opens the image once: it reads the header, then hands the same descriptor to QEMU.
libvirt 11.2 and later open it twice (qemuSaveImageGetMetadata reads the header and closes, then
qemuSaveImageOpen opens it again, reads the header again and hands that descriptor to QEMU). A
pipe keeps what was written into it while its writer holds it open, whoever reads: so the feeder
never closes it between the two readers and writes the header once per opening, then the stream
(`header_reads`). Written once, the second opening read the stream's first bytes ("image magic is
incorrect").
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vnetlab.errors import VnetlabError

MAGIC = b"LibvirtQemudSave"
VERSION = 2
# magic, version, length of the XML block, was_running, compressed, the cookie's offset in the block, 14 unused
_HEADER = struct.Struct("<16s5I14I")
RAW = 0  # `compressed`: libvirt's QEMU_SAVE_FORMAT_RAW (a compressed stream would need libvirt's decompressor)
ALIGN = 4096  # the stream starts on a page boundary of the image, as libvirt's own images pad it
HEADER_MAX = 16 * 1024 * 1024  # an XML block larger than this is no save image vnetlab wrote or reads
_F_SETPIPE_SZ = 1031  # <fcntl.h>
PIPE_SIZE = 1 << 20  # bytes a pipe buffers: the writer splices in larger pieces (0.45 against 0.53 s a restore, measured)


class SaveImageError(VnetlabError):
    pass


@dataclass(frozen=True)
class SaveHeader:
    """What a save image's header says; `stream_offset` is where QEMU's migration stream starts."""

    xml: str
    cookie: str
    was_running: bool
    stream_offset: int


def parse_header(data: bytes) -> SaveHeader:
    """The header at the start of `data` (which must hold the whole XML block)."""
    if len(data) < _HEADER.size:
        raise SaveImageError(f"not a libvirt save image: {len(data)} bytes, the header alone is {_HEADER.size}")
    magic, version, block_len, was_running, compressed, cookie_offset, *_unused = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SaveImageError(f"not a libvirt save image (magic {magic!r})")
    if version != VERSION:
        raise SaveImageError(f"libvirt save image version {version}, only {VERSION} is read")
    if compressed != RAW:
        raise SaveImageError(f"the save image is compressed (format {compressed}); vnetlab writes and reads raw ones")
    if block_len > HEADER_MAX or _HEADER.size + block_len > len(data):
        raise SaveImageError(f"the save image's XML block ({block_len} bytes) is not all there ({len(data)} bytes read)")
    if cookie_offset > block_len:
        raise SaveImageError(f"the save image's cookie offset {cookie_offset} lies beyond its XML block ({block_len} bytes)")
    block = data[_HEADER.size : _HEADER.size + block_len]
    xml_end = cookie_offset if cookie_offset else block_len
    xml = block[:xml_end].split(b"\0", 1)[0]
    cookie = block[cookie_offset:].split(b"\0", 1)[0] if cookie_offset else b""
    if not xml.strip():
        raise SaveImageError("the save image's header holds no domain XML")
    return SaveHeader(xml.decode(), cookie.decode(), bool(was_running), _HEADER.size + block_len)


def read_header(path: Path) -> SaveHeader:
    """The header of the save image at `path` (read up to its stream, never the stream)."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEADER.size)
            if len(head) == _HEADER.size and head[:16] == MAGIC:
                block_len = _HEADER.unpack_from(head)[2]
                head += f.read(min(block_len, HEADER_MAX))
    except OSError as exc:
        raise SaveImageError(f"cannot read the save image {path}: {exc.strerror}") from None
    return parse_header(head)


def build_header(xml: str, cookie: str, *, was_running: bool = True) -> bytes:
    """A header for `xml` (another domain's, restored from the same stream): the XML, then the cookie,
    each NUL-terminated, padded so that the stream after it starts on a page boundary."""
    xml_bytes = xml.encode() + b"\0"
    block = xml_bytes + (cookie.encode() + b"\0" if cookie else b"")
    block += b"\0" * (-(_HEADER.size + len(block)) % ALIGN)
    cookie_offset = len(xml_bytes) if cookie else 0
    return _HEADER.pack(MAGIC, VERSION, len(block), int(was_running), RAW, cookie_offset, *([0] * 14)) + block


class PipeFeeder:
    """Writes a save image into a named pipe while libvirt restores from it: `header` once for each
    of the `header_reads` times the reader opens the pipe and reads it, then the stream of the
    saved image `source` from `offset` on.

    The pipe is opened without blocking, so a restore libvirt refused before it opened the pipe
    never leaves this thread waiting; `stop()` ends it. When more than one header is read, a reader
    that goes away before it read into the stream is waited for to open the pipe again (what it did
    not read stays in the pipe); a reader that goes away once it read into the stream (QEMU failed),
    or at all when the header is read once, ends it with the error kept in `error`."""

    OPEN_POLL = 0.005  # s between attempts to open the pipe until libvirt has opened it for reading

    def __init__(self, fifo: Path, header: bytes, source: Path, offset: int, header_reads: int = 1):
        if header_reads < 1:
            raise ValueError(f"a save image's header is read at least once, not {header_reads} times")
        self.fifo, self.header, self.source, self.offset, self.header_reads = fifo, header, source, offset, header_reads
        self.error: BaseException | None = None
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"save image {fifo.name}", daemon=True)

    def start(self) -> PipeFeeder:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _open(self) -> int | None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody reads the pipe yet
                    raise
                time.sleep(self.OPEN_POLL)
                continue
            os.set_blocking(fd, True)
            try:
                fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # a smaller pipe (pipe-max-size) only means smaller pieces
            return fd
        return None

    def _reader_back(self, fd: int) -> bool:
        """After the reader went away: whether one opened the pipe again (before `stop()`). The pipe
        says POLLERR to its writer while nobody has it open for reading."""
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while not self._stop.is_set():
            if not any(events & select.POLLERR for _fd, events in poller.poll(0)):
                return True
            time.sleep(self.OPEN_POLL)
        return False

    _AGAIN = -1  # _moved: the reader went away and another opened the pipe; nothing was written

    def _moved(self, fd: int, move: Callable[[], int]) -> int | None:
        """`move()`'s bytes written into the pipe; _AGAIN when a reader went away before the stream
        and another opened the pipe, None when stopped meanwhile. A reader that goes away when the
        header is read once, or once the stream was being read, raises BrokenPipeError.

        What was read is what was written less what the pipe still holds: counted, not told by
        which reader went away when (a reader may leave and the next open the pipe before this
        thread wakes; libvirt's next reader reads headers only, QEMU reads the stream much later)."""
        try:
            return move()
        except BrokenPipeError:
            read = self.written - struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            if self.header_reads == 1 or read > self.header_reads * len(self.header):
                raise
        return self._AGAIN if self._reader_back(fd) else None

    def _run(self) -> None:
        try:
            fd = self._open()
            if fd is None:
                return
            try:
                for _ in range(self.header_reads):
                    view = memoryview(self.header)
                    while view:
                        moved = self._moved(fd, lambda: os.write(fd, view))
                        if moved is None:
                            return
                        if moved != self._AGAIN:
                            view = view[moved:]
                            self.written += moved
                with self.source.open("rb") as src:
                    size = os.fstat(src.fileno()).st_size
                    position = self.offset
                    while position < size and not self._stop.is_set():
                        moved = self._moved(fd, lambda: os.splice(src.fileno(), fd, size - position, offset_src=position))
                        if moved is None or moved == 0:
                            return
                        if moved == self._AGAIN:
                            continue
                        position += moved
                        self.written += moved
            finally:
                os.close(fd)
        except BaseException as exc:  # noqa: BLE001 — kept for the restoring thread to report
            self.error = exc


def make_fifo(path: Path) -> None:
    """A named pipe at `path` (0600), replacing a stale one."""
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)
