"""libvirt's save image: its header read and written byte for byte as libvirt 9.0 lays it out, and
a per-guest save image fed through a named pipe (backends/save_image.py)."""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path

import pytest

from vnetlab.backends import save_image
from vnetlab.backends.save_image import PipeFeeder, SaveImageError, build_header, make_fifo, parse_header, read_header

XML = "<domain type='qemu'>\n  <name>vnl-lab-vm1</name>\n</domain>\n"
COOKIE = "<cookie>\n  <cpu mode='custom'/>\n</cookie>\n"


def libvirt_header(xml: str, cookie: str, padding: int) -> bytes:
    """A header as libvirt 9.0 writes one (qemu_saveimage.c): magic, version 2, the XML block's length,
    was_running, compressed, the cookie's offset, 14 unused; then XML, cookie, zero padding."""
    block = xml.encode() + b"\0" + cookie.encode() + b"\0" + b"\0" * padding
    return b"LibvirtQemudSave" + struct.pack("<5I14I", 2, len(block), 1, 0, len(xml.encode()) + 1, *([0] * 14)) + block


def test_a_header_libvirt_wrote_is_read_with_where_its_stream_starts():
    head = libvirt_header(XML, COOKIE, 65817)  # libvirt leaves ~64 KiB for later edits: the stream need not be aligned
    header = parse_header(head + b"QEVM\0\0\0\3")
    assert (header.xml, header.cookie, header.was_running) == (XML, COOKIE, True)
    assert header.stream_offset == len(head) == 92 + len(XML) + 1 + len(COOKIE) + 1 + 65817


def test_a_header_written_for_another_domain_is_read_back_and_pads_the_stream_to_a_page():
    head = build_header(XML, COOKIE)
    header = parse_header(head)
    assert (header.xml, header.cookie, header.was_running, header.stream_offset) == (XML, COOKIE, True, len(head))
    assert len(head) % save_image.ALIGN == 0
    assert head == libvirt_header(XML, COOKIE, len(head) - 92 - len(XML) - len(COOKIE) - 2)  # libvirt's layout, field by field


def test_a_header_without_a_cookie_has_offset_zero():
    header = parse_header(build_header(XML, "", was_running=False))
    assert (header.xml, header.cookie, header.was_running) == (XML, "", False)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"LibvirtQemudSave", "the header alone is"),
        (b"NotLibvirtSave!!" + bytes(76), "not a libvirt save image (magic"),
        (b"LibvirtQemudSave" + struct.pack("<5I14I", 3, 0, 0, 0, 0, *([0] * 14)), "version 3"),
        (b"LibvirtQemudSave" + struct.pack("<5I14I", 2, 8, 1, 1, 0, *([0] * 14)) + b"<x/>\0\0\0\0", "compressed"),
        (b"LibvirtQemudSave" + struct.pack("<5I14I", 2, 4096, 1, 0, 0, *([0] * 14)) + b"<x/>", "is not all there"),
        (b"LibvirtQemudSave" + struct.pack("<5I14I", 2, 8, 1, 0, 9, *([0] * 14)) + b"<x/>\0\0\0\0", "cookie offset 9 lies beyond"),
        (b"LibvirtQemudSave" + struct.pack("<5I14I", 2, 8, 1, 0, 0, *([0] * 14)) + bytes(8), "holds no domain XML"),
    ],
)
def test_what_is_not_a_readable_save_image_is_refused_with_the_reason(data, reason):
    with pytest.raises(SaveImageError, match=reason.replace("(", r"\(")):
        parse_header(data)


def test_read_header_reads_the_header_of_a_file_and_not_its_stream(tmp_path):
    path = tmp_path / "warm.save"
    head = libvirt_header(XML, COOKIE, 100)
    path.write_bytes(head + b"QEVM" + os.urandom(1 << 16))
    assert read_header(path).stream_offset == len(head)
    with pytest.raises(SaveImageError, match="cannot read the save image"):
        read_header(tmp_path / "missing.save")


def _read_all(fifo: Path, out: list[bytes], limit: int | None = None) -> None:
    with fifo.open("rb") as f:
        out.append(f.read() if limit is None else f.read(limit))


def _feeding(tmp_path: Path, saved_bytes: bytes, header: bytes, *, header_reads: int = 1) -> tuple[Path, PipeFeeder]:
    """A warm save of `saved_bytes` (its stream at offset 0), a fresh pipe, and a feeder started on them."""
    saved = tmp_path / "warm.save"
    saved.write_bytes(saved_bytes)
    fifo = tmp_path / "vm1.save"
    make_fifo(fifo)
    return fifo, PipeFeeder(fifo, header, saved, 0, header_reads=header_reads).start()


def test_the_pipe_gets_the_new_header_then_the_saved_stream_unchanged(tmp_path):
    saved = tmp_path / "warm.save"
    stream = b"QEVM" + os.urandom(3 << 20)
    saved.write_bytes(libvirt_header("<domain><name>warm</name></domain>", COOKIE, 517) + stream)
    offset = read_header(saved).stream_offset
    fifo = tmp_path / "vm1.save"
    make_fifo(fifo)
    assert fifo.is_fifo() and fifo.stat().st_mode & 0o777 == 0o600
    header = build_header(XML, COOKIE)
    feeder = PipeFeeder(fifo, header, saved, offset).start()
    out: list[bytes] = []
    _read_all(fifo, out)
    feeder.stop()
    assert feeder.error is None
    assert out[0] == header + stream
    assert feeder.written == len(header) + len(stream)


def test_a_pipe_nobody_opens_is_given_up_at_once_when_stopped(tmp_path):
    fifo, feeder = _feeding(tmp_path, build_header(XML, COOKIE) + b"QEVM", b"header")
    time.sleep(0.05)
    started = time.monotonic()
    feeder.stop()
    assert time.monotonic() - started < 1.0
    assert feeder.error is None and feeder.written == 0


def test_a_reader_that_goes_away_ends_the_feeder_with_its_error(tmp_path):
    fifo, feeder = _feeding(tmp_path, b"QEVM" + os.urandom(8 << 20), b"header")  # more than a pipe holds
    out: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(fifo, out, 10))
    reader.start()
    reader.join()
    feeder._thread.join(5.0)  # it ends by itself; stop() at once could end it first, with no error to see
    feeder.stop()
    assert out[0] == b"headerQEVM"
    assert isinstance(feeder.error, BrokenPipeError)


def _read_exactly(fifo: Path, sizes: tuple[int, ...], out: list[bytes], hold: float = 0.0) -> None:
    """One opening of the pipe that reads `sizes` bytes, each exactly, as libvirt's saferead() does
    (unbuffered: a buffered reader would take more from the pipe than it returns); -1: to the end.
    `hold`: s it keeps the pipe open after its reads."""
    with fifo.open("rb", buffering=0) as f:
        for size in sizes:
            data = b""
            while size < 0 or len(data) < size:
                piece = f.read(1 << 20 if size < 0 else size - len(data))
                if not piece:
                    break
                data += piece
            out.append(data)
        time.sleep(hold)


def _read_as_libvirt_11(fifo: Path, header_len: int, out: list[bytes], pause: float) -> None:
    """What libvirt 11.2+ does with a save image (qemu_saveimage.c): qemuSaveImageGetMetadata opens it,
    reads the header and XML block and closes it; qemuSaveImageOpen opens it again, reads the header
    again and hands the descriptor on (here: reads the rest)."""
    _read_exactly(fifo, (header_len,), out)
    time.sleep(pause)  # libvirt parses the XML, checks the ACL, adds the domain
    _read_exactly(fifo, (header_len, -1), out)


@pytest.mark.parametrize("pause", [0.0, 0.2])
def test_a_reader_that_opens_the_pipe_twice_reads_the_header_each_time_then_the_stream(tmp_path, pause):
    stream = b"QEVM" + os.urandom(4 << 20)  # more than the pipe holds: the feeder is blocked when the first reader leaves
    header = build_header(XML, COOKIE)
    fifo, feeder = _feeding(tmp_path, stream, header, header_reads=2)
    out: list[bytes] = []
    _read_as_libvirt_11(fifo, len(header), out, pause)
    feeder.stop()
    assert feeder.error is None
    assert out == [header, header, stream]
    assert feeder.written == 2 * len(header) + len(stream)


def test_a_header_written_once_is_not_there_for_a_second_opening(tmp_path):
    """Why libvirt 11.3 said 'image magic is incorrect': what the feeder wrote after the first
    reader's header stays in the pipe, and the second opening reads the stream's first bytes."""
    header = build_header(XML, COOKIE)
    fifo, feeder = _feeding(tmp_path, b"QEVM" + os.urandom(4 << 20), header)
    with fifo.open("rb", buffering=0) as first:
        head = first.read(len(header))
        second = fifo.open("rb", buffering=0)  # libvirt's second opening, before the feeder saw the first go
    with second:
        again = second.read(16)
    feeder.stop()
    assert head[:16] == save_image.MAGIC
    assert again[:4] == b"QEVM"


def test_a_reader_that_goes_away_after_the_last_header_ends_the_feeder_with_its_error(tmp_path):
    fifo, feeder = _feeding(tmp_path, b"QEVM" + os.urandom(8 << 20), b"header", header_reads=2)
    out: list[bytes] = []
    _read_exactly(fifo, (6,), out)  # its header
    _read_exactly(fifo, (6, 4), out, hold=0.2)  # its header again and 4 bytes of the stream, then QEMU failed
    feeder._thread.join(5.0)
    assert out == [b"header", b"header", b"QEVM"]
    assert isinstance(feeder.error, BrokenPipeError)
    feeder.stop()


def test_a_feeder_waiting_for_the_second_reader_is_given_up_when_stopped(tmp_path):
    fifo, feeder = _feeding(tmp_path, b"QEVM" + os.urandom(4 << 20), b"header", header_reads=2)
    out: list[bytes] = []
    _read_exactly(fifo, (6,), out)  # libvirt refused the image after its first read: no second opening
    time.sleep(0.05)
    started = time.monotonic()
    feeder.stop()
    assert time.monotonic() - started < 1.0
    assert not feeder._thread.is_alive() and feeder.error is None


def test_a_header_is_read_at_least_once(tmp_path):
    with pytest.raises(ValueError, match="at least once"):
        PipeFeeder(tmp_path / "vm1.save", b"header", tmp_path / "warm.save", 0, header_reads=0)
