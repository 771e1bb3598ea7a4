"""A cheap look at a video file's structure before FFmpeg reads it.

FFmpeg trusts the sizes a container declares. An mp4 whose ``ftyp`` box claims to span a 2 GB
file (8 bytes of header, the rest holes) is read into memory whole: 3.9 GB peak RSS opened by
path, 5.8 GB through OpenCV's stream reader, before FFmpeg gives up. :func:`sniff_container`
refuses such files by reading box and chunk *headers* only, seeking from one to the next: a few
bytes each (a buffered stream reads at most its 8 KiB buffer per header), never a payload.

What is refused, and with which reason:

- ``sparse_file``: more than half of a file of 1 MiB or more is holes (``SEEK_DATA`` /
  ``SEEK_HOLE``), or under 1/64 of it is allocated on disk (``st_blocks``, for file systems that
  do not report holes; transparent compression reaches at most 1/32 on btrfs and ZFS).
- ISO BMFF (mp4, mov, 3gp): ``lying_container`` for a box smaller than its header, a box that
  overruns the box holding it, an ``ftyp``/``styp`` over 4 KiB (a brand list is tens of bytes),
  a box FFmpeg parses into memory (anything but ``mdat``, ``free``, ``skip``, ``wide``) over
  :data:`MAX_HEADER_BYTES`, or a sample table with more entries than its box holds;
  ``truncated`` for a file that ends inside a box (an ``mdat`` claiming more than the file
  is what a cut copy looks like, with ``moov`` before or after it), or has no ``moov`` (nor a
  ``meta``, as image files have) at all. Bytes after a complete ``moov`` that do not form a
  box are ignored, as FFmpeg ignores them.
- RIFF AVI: ``unreadable_container`` without ``LIST hdrl``/``avih``; ``truncated`` for a file
  that ends inside a chunk, or before its ``idx1`` index (written last) while the RIFF size
  claims more; ``lying_container`` for a chunk that overruns its list, a header list over
  :data:`MAX_HEADER_BYTES`, or a RIFF size past the end of a file whose chunks, ``idx1``
  included, are all complete (by more than :data:`RIFF_SLACK` bytes: some writers count the
  RIFF header in).
- Both: ``too_large`` when the declared frame size or video frame count exceeds the limits
  passed in (the same limits :func:`~radiomicsd.pipeline.video.check_limits` applies later).

Any other format (Matroska, MPEG-TS, raw streams, ...) passes unchanged after the hole check.
Details never contain header values, names or paths.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import BinaryIO

from radiomicsd.pipeline.errors import (
    LyingContainer,
    SparseFile,
    TooLarge,
    Truncated,
    UnreadableContainer,
)

#: Files smaller than this are not checked for holes (their metadata may be inline).
SPARSE_MIN_BYTES = 1 << 20
#: Transitions hole/data counted before the rest of the file is taken as data.
MAX_EXTENTS = 1024
#: Largest ``ftyp``/``styp`` box (a brand list: 16 bytes + 4 per compatible brand).
MAX_BRAND_BYTES = 4096
#: Largest box or list a demuxer parses into memory (``moov``, ``hdrl``, ...). An hour at 30 fps
#: needs at most ~2 MB of mp4 sample tables per track (~20 bytes per sample); 30x room.
MAX_HEADER_BYTES = 64 << 20
#: Top-level boxes or chunks walked; fragmented mp4 has two per fragment (one per second: 7200
#: an hour).
MAX_BOXES = 100_000
#: Boxes inside one ``moov`` or ``hdrl``.
MAX_INDEX_BOXES = 10_000
#: Bytes a RIFF size may claim beyond the end of a complete AVI.
RIFF_SLACK = 8

_BULK = frozenset({b"mdat", b"free", b"skip", b"wide"})
_BMFF_FIRST = frozenset({b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide",
                         b"pnot"})
_DESCEND = frozenset({b"trak", b"mdia", b"minf", b"stbl"})
#: Sample tables: bytes per entry after the 8-byte version/flags + entry count.
_TABLES = {b"stts": 8, b"ctts": 8, b"stss": 4, b"stsc": 12, b"stco": 4, b"co64": 8}


@dataclass(frozen=True)
class ContainerFacts:
    """What the headers declare. ``kind`` is ``iso_bmff``, ``avi`` or ``other``.

    ``data_bytes`` is the file's size without holes (None when unknown, e.g. an in-memory
    stream); ``width``, ``height`` (pixels) and ``frames`` are the video's declared values, 0
    when unknown or for ``other``.
    """

    kind: str
    data_bytes: int | None = None
    width: int = 0
    height: int = 0
    frames: int = 0


def sniff_container(stream: BinaryIO, *, size: int, fd: int | None = None,
                    max_frame_pixels: int = 0, max_frames: int = 0) -> ContainerFacts:
    """Check holes and container headers of a seekable ``stream`` of ``size`` bytes.

    Parameters
    ----------
    stream : the input, seekable; its position is restored afterwards.
    size : its length in bytes.
    fd : its file descriptor for the hole check; None tries ``stream.fileno()``, and a stream
        without one (bytes in memory) has no holes to check.
    max_frame_pixels, max_frames : declared limits (0: no limit).

    Raises
    ------
    SparseFile, LyingContainer, Truncated, UnreadableContainer, TooLarge
        See the module docstring.
    """
    if fd is None:
        with suppress(AttributeError, OSError, ValueError):  # io.UnsupportedOperation too
            fd = stream.fileno()
    data = _check_holes(fd, size) if fd is not None else None
    origin = stream.tell()
    try:
        head = _read(stream, 0, 12)
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            facts = _sniff_avi(stream, size)
        elif len(head) >= 8 and head[4:8] in _BMFF_FIRST:
            facts = _sniff_bmff(stream, size)
        else:
            facts = ContainerFacts("other")
    finally:
        stream.seek(origin)
    if max_frame_pixels and facts.width * facts.height > max_frame_pixels:
        raise TooLarge(f"declared frame of {facts.width}x{facts.height} exceeds "
                       "max_frame_pixels")
    if max_frames and facts.frames > max_frames:
        raise TooLarge(f"{facts.frames} declared frames exceed max_frames")
    return ContainerFacts(facts.kind, data, facts.width, facts.height, facts.frames)


def _check_holes(fd: int, size: int) -> int | None:
    """Raise :class:`SparseFile` for a mostly-hole file; return its data bytes (None: unknown)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or size < SPARSE_MIN_BYTES:
        return None
    data = _data_bytes(fd, size)
    if data is not None and 2 * data < size:
        raise SparseFile(f"{size - data} of {size} bytes are holes")
    if 64 * st.st_blocks * 512 < size:
        raise SparseFile(f"{st.st_blocks * 512} of {size} bytes are allocated")
    return data


def _data_bytes(fd: int, size: int) -> int | None:
    """Bytes of ``fd`` outside holes, or None where the OS cannot tell; the offset is kept."""
    if not hasattr(os, "SEEK_DATA"):
        return None
    origin = os.lseek(fd, 0, os.SEEK_CUR)
    data = pos = 0
    try:
        for _ in range(MAX_EXTENTS):
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                return data if exc.errno == errno.ENXIO else None  # ENXIO: holes to the end
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            data += max(0, end - start)
            pos = end
            if pos >= size:
                return data
        return data + size - pos
    finally:
        os.lseek(fd, origin, os.SEEK_SET)


def _read(stream: BinaryIO, pos: int, n: int) -> bytes:
    stream.seek(pos)
    return stream.read(n)


def _boxes(stream: BinaryIO, start: int, end: int,
           limit: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, header bytes, size) of the ISO boxes in [start, end).

    A size of 0 runs to ``end``. The walk stops after a box that overruns ``end`` or is smaller
    than its header; the caller decides what that means.
    """
    pos = start
    for _ in range(limit):
        if end - pos < 8:  # nothing left, or a QuickTime 32-bit terminator
            return
        head = _read(stream, pos, 16)
        size, kind = struct.unpack(">I4s", head[:8])
        hlen = 8
        if size == 1:
            if len(head) < 16:
                raise Truncated("the file ends inside a box header")
            size, hlen = struct.unpack(">Q", head[8:16])[0], 16
        elif size == 0:
            size = end - pos
        yield kind, pos, hlen, size
        if size < hlen or pos + size > end:
            return
        pos += size
    raise LyingContainer(f"more than {limit} boxes in one level")


def _sniff_bmff(stream: BinaryIO, size: int) -> ContainerFacts:
    moov: ContainerFacts | None = None
    meta = False
    for kind, pos, hlen, box in _boxes(stream, 0, size, MAX_BOXES):
        bad = box < hlen or pos + box > size
        if moov is not None and bad and kind != b"mdat":
            break  # trailing bytes after a complete index
        if box < hlen:
            raise LyingContainer("a box is smaller than its own header")
        if kind in (b"ftyp", b"styp") and box > MAX_BRAND_BYTES:
            raise LyingContainer(f"a brand box of {box} bytes")
        if kind not in _BULK and box > MAX_HEADER_BYTES:
            raise LyingContainer(f"a header box of {box} bytes")
        if pos + box > size:  # with moov complete: mdat, as in a cut copy of a faststart file
            where = "a box before a complete moov index" if moov is None else "its mdat"
            raise Truncated(f"the file ends inside {where}, {pos + box - size} bytes early")
        if kind == b"moov" and moov is None:
            moov = _sniff_moov(stream, pos + hlen, pos + box)
        meta = meta or kind == b"meta"
    if moov is None and not meta:
        raise Truncated("no moov index: the recording was not finalised")
    return moov or ContainerFacts("iso_bmff")


def _tree(stream: BinaryIO, start: int, end: int,
          budget: list[int]) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of every box below [start, end), depth first."""
    for kind, pos, hlen, box in _boxes(stream, start, end, MAX_INDEX_BOXES):
        budget[0] -= 1
        if budget[0] < 0:
            raise LyingContainer(f"more than {MAX_INDEX_BOXES} boxes in one index")
        if box < hlen:
            raise LyingContainer("a box is smaller than its own header")
        if pos + box > end:
            raise LyingContainer("a box overruns the box that holds it")
        yield kind, pos + hlen, pos + box
        if kind in _DESCEND:
            yield from _tree(stream, pos + hlen, pos + box, budget)


def _sniff_moov(stream: BinaryIO, start: int, end: int) -> ContainerFacts:
    """Check the index's boxes and sample tables; the declared size and frames of its video."""
    width = height = frames = 0
    video = False
    for kind, a, b in _tree(stream, start, end, [MAX_INDEX_BOXES]):
        if kind == b"trak":
            video = False
        elif kind == b"hdlr":
            video = video or _read(stream, a + 8, 4) == b"vide"  # QuickTime: 2nd in minf
        elif kind in _TABLES or kind in (b"stsz", b"stz2"):
            head = _read(stream, a, 12)
            if len(head) < 12 and kind in (b"stsz", b"stz2") or len(head) < 8:
                raise LyingContainer("a sample table shorter than its header")
            if kind in _TABLES:
                count, need = struct.unpack(">I", head[4:8])[0], 8
                need += count * _TABLES[kind]
            else:
                fixed, count = struct.unpack(">II", head[4:12])
                bits = 32 if kind == b"stsz" else head[7]
                need = 12 + (0 if kind == b"stsz" and fixed else -(-count * bits // 8))
                frames = max(frames, count) if video else frames
            if need > b - a:
                raise LyingContainer("a sample table claims more entries than its box holds")
        elif kind == b"stsd" and video and b - a >= 44:
            w, h = struct.unpack(">HH", _read(stream, a + 40, 4))
            width, height = max(width, w), max(height, h)
    return ContainerFacts("iso_bmff", None, width, height, frames)


def _chunks(stream: BinaryIO, start: int, end: int,
            limit: int) -> Iterator[tuple[bytes, int, int]]:
    """(id, offset, size with header and pad byte) of the RIFF chunks in [start, end)."""
    pos = start
    for _ in range(limit):
        if end - pos < 8:
            return
        cid, n = struct.unpack("<4sI", _read(stream, pos, 8))
        yield cid, pos, 8 + n + (n & 1)
        pos += 8 + n + (n & 1)
    raise LyingContainer(f"more than {limit} chunks in one list")


def _sniff_avi(stream: BinaryIO, size: int) -> ContainerFacts:
    riff_end = 8 + struct.unpack("<I", _read(stream, 4, 4))[0]
    end = min(riff_end, size)
    facts: ContainerFacts | None = None
    index = False
    for cid, pos, n in _chunks(stream, 12, end, MAX_BOXES):
        if pos + n > end + 1:  # the pad byte of the last chunk may be missing
            if pos + n > size + 1:
                raise Truncated("the file ends inside a chunk")
            raise LyingContainer("a chunk overruns its RIFF list")
        if cid == b"LIST" and n >= 12 and _read(stream, pos + 8, 4) == b"hdrl":
            if n > MAX_HEADER_BYTES:
                raise LyingContainer(f"a header list of {n} bytes")
            facts = _sniff_hdrl(stream, pos + 12, pos + n)
        index = index or cid == b"idx1"
    if facts is None:
        raise UnreadableContainer("no AVI header list")
    if riff_end > size + RIFF_SLACK:
        if not index:  # the index is written last: a copy cut before it
            raise Truncated("the file ends before the AVI index")
        raise LyingContainer(f"the RIFF size claims {riff_end - size} bytes past the end of "
                             "a file whose index is complete")
    for cid, pos, n in _chunks(stream, riff_end + (riff_end & 1), size, MAX_BOXES):
        if cid != b"RIFF":  # trailing bytes after the (OpenDML) RIFF lists: ignored
            break
        if pos + n > size + RIFF_SLACK:
            raise Truncated("the file ends inside an AVIX list")
    return facts


def _sniff_hdrl(stream: BinaryIO, start: int, end: int) -> ContainerFacts:
    """Declared size and frame count from ``avih``, ``strl``/``strh``+``strf`` and ``dmlh``."""
    lists = [(start, end)]
    budget = MAX_INDEX_BOXES
    avih: tuple[int, ...] | None = None
    width = height = frames = 0
    video = False
    while lists:
        a, b = lists.pop()
        for cid, pos, n in _chunks(stream, a, b, budget):
            budget -= 1
            if pos + n > b + 1:  # the pad byte of the last chunk may sit outside its list
                raise LyingContainer("a chunk overruns the list that holds it")
            body = pos + 8
            if cid == b"LIST" and n >= 12:
                if _read(stream, body, 4) in (b"strl", b"odml"):
                    lists.append((body + 4, pos + n))
            elif cid == b"avih":
                if n < 48:
                    raise LyingContainer("an AVI main header shorter than its fields")
                avih = struct.unpack("<10I", _read(stream, body, 40))
            elif cid == b"strh" and n >= 44:
                head = _read(stream, body, 36)
                video = head[:4] == b"vids"
                if video:
                    frames = max(frames, struct.unpack("<I", head[32:36])[0])
            elif cid == b"strf" and video and n >= 20:
                w, h = struct.unpack("<ii", _read(stream, body + 4, 8))
                width, height = max(width, abs(w)), max(height, abs(h))
            elif cid == b"dmlh" and n >= 12:
                frames = max(frames, struct.unpack("<I", _read(stream, body, 4))[0])
    if avih is None:
        raise UnreadableContainer("no AVI main header")
    if not width * height:
        width, height = avih[8], avih[9]
    return ContainerFacts("avi", None, width, height, max(frames, avih[4]))
