"""Streaming video decoding with a probe and resource limits.

Frames are decoded one at a time by OpenCV's bundled FFmpeg; a clip is never held whole in
memory. The same code reads a plain file (by path) and decrypted bytes (from a file-like object
through OpenCV's stream-reader capture API), so encrypted drops never need a plaintext file.
Before FFmpeg sees a file, :func:`~radiomicsd.pipeline.container.sniff_container` checks its
holes and container headers, and FFmpeg gets at most :data:`DECODE_THREADS` decoder threads.

Memory: the peak RSS of ``radiomicsd anonymise`` on one-colour MJPG clips (the worst case: the
scan sector found spans the whole frame), 1024^2 to 4096^2 pixels, 16 look-ahead frames, was
113-115 bytes per frame pixel above a process floor of ~110 MB, and each further video in
flight added 105-108 bytes per pixel; :func:`video_memory_ceiling` bounds it.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from radiomicsd.pipeline.container import ContainerFacts, sniff_container
from radiomicsd.pipeline.errors import NoFrames, TooLarge, Truncated, UnreadableContainer
from radiomicsd.pipeline.settings import setting

#: A source is a file path or a seekable binary stream (e.g. decrypted bytes in memory).
Source = str | Path | BinaryIO


@dataclass(frozen=True)
class Limits:
    """Refuse inputs above these sizes (0 disables a limit).

    The defaults sit above what echo devices produce, and bound memory. Exports and screen
    captures of ultrasound systems are at most 1920x1080 (1920x1200 on some carts), 2.1-2.3
    Mpx; ``max_frame_pixels`` 2048 x 2048 (4.2 Mpx) also admits 2560x1600 and caps one video
    in flight at ~0.5 GB (:func:`video_memory_ceiling`; 4096 x 4096 allowed 2.0 GB, measured).
    A minute of uncompressed 1024x768 RGB at 30 fps is 4.2 GB and echo clips last seconds, so
    ``max_file_bytes`` is 4 GiB; 8 GiB only let a file cost more time and (for age drops
    decrypted in memory) memory.
    """

    max_file_bytes: int = setting(4 * 2**30, "bytes of one input file", ge=0, live=True)
    max_frame_pixels: int = setting(2048 * 2048, "width x height of one frame", ge=0,
                                    live=True)
    max_frames: int = setting(100_000, "frames of one input", ge=0, live=True)


@dataclass(frozen=True)
class Probe:
    """What the container says about a clip, before decoding it all.

    ``frame_count`` is the container's claim (0 when unknown); ``fps`` is 0.0 when unknown.
    """

    width: int
    height: int
    fps: float
    frame_count: int


#: FFmpeg decoder threads per video. OpenCV's default is the CPU count, and frame threading
#: holds a frame per thread: mp4v at 4096x4096 peaked at 355 MB with 1 thread, 398 MB with
#: 2, 503 MB with 4, 1025 MB with 16 (measured). The daemon already decodes one video per
#: worker, so 2 keeps most of the speed of one video alone (mp4v: 1.37 s vs 2.06 s for 1).
DECODE_THREADS = 2

#: Bytes per frame pixel of one video in flight besides its look-ahead frames and their greys:
#: the sector hull while the mask is built (labels, mask, coordinates: ~45), the decoder at 2
#: threads (~8), temporaries and allocator slack (~11).
_MASK_BUILD_BYTES_PER_PIXEL = 64


def video_memory_ceiling(frame_pixels: int, *, lookahead_frames: int = 16,
                         decode_threads: int = DECODE_THREADS) -> int:
    """Peak bytes one video in flight may hold, for frames of ``frame_pixels`` pixels.

    The peak is while the mask is built: ``lookahead_frames`` BGR frames (3 B/px each) and
    their greys (1 B/px each), the hull of the sector (labels, coordinates: up to ~45 B/px when
    the sector is the whole frame), the decoder (~8 B/px at 2 threads, ~3 B/px per further
    thread; 0 threads means one per CPU). Streaming afterwards holds less: the frame being
    masked plus at most 4 queued for encoding. With the defaults, 128 B/px: 0.54 GB at
    2048 x 2048, 2.1 GB at 4096 x 4096 (measured one-colour MJPG, the worst case: 113-115 B/px
    above the process floor). A process needs ~110 MB besides (interpreter, OpenCV, numpy).
    """
    threads = decode_threads or os.cpu_count() or 1
    per_pixel = (4 * lookahead_frames + _MASK_BUILD_BYTES_PER_PIXEL
                 + 3 * max(0, threads - 2))
    return per_pixel * frame_pixels


def open_capture(source: Source, *, threads: int = DECODE_THREADS) -> cv2.VideoCapture:
    """Open ``source`` with the FFmpeg backend or raise :class:`UnreadableContainer`.

    ``threads`` bounds FFmpeg's decoder threads (0: OpenCV's default, the CPU count).
    """
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads else []
    if isinstance(source, (str, Path)):
        cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
    else:
        source.seek(0)
        # OpenCV calls read(size) and seek(offset, whence) on any Python object; its stubs
        # instead spell out the C++ IStreamReader interface (read(buffer, size)).
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)  # type: ignore[call-overload]
    if not cap.isOpened():
        cap.release()
        raise UnreadableContainer("no demuxer or decoder accepts the content")
    return cap


def _probe_capture(cap: cv2.VideoCapture) -> Probe:
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return Probe(
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        fps=float(fps) if math.isfinite(fps) and 0 < fps < 1000 else 0.0,
        frame_count=int(count) if math.isfinite(count) and count > 0 else 0,
    )


def check_file_bytes(limits: Limits, file_bytes: int | None) -> None:
    """Raise :class:`TooLarge` when ``file_bytes`` exceeds ``limits.max_file_bytes``."""
    if limits.max_file_bytes and file_bytes is not None and file_bytes > limits.max_file_bytes:
        raise TooLarge(f"file of {file_bytes} bytes exceeds max_file_bytes")


def sniff_source(source: Source, limits: Limits, file_bytes: int | None = None) -> ContainerFacts:
    """:func:`~radiomicsd.pipeline.container.sniff_container` on a path or seekable stream.

    A stream's size is ``file_bytes`` if given, else found by seeking to its end.
    """
    kwargs = {"max_frame_pixels": limits.max_frame_pixels, "max_frames": limits.max_frames}
    if isinstance(source, (str, Path)):
        with open(source, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            return sniff_container(stream, size=size, **kwargs)
    if file_bytes is None:
        origin = source.tell()
        file_bytes = source.seek(0, os.SEEK_END)
        source.seek(origin)
    return sniff_container(source, size=file_bytes, **kwargs)


def check_limits(probe: Probe, limits: Limits, file_bytes: int | None = None) -> None:
    """Raise :class:`TooLarge` when the probe or file size exceeds a limit."""
    check_file_bytes(limits, file_bytes)
    if limits.max_frame_pixels and probe.width * probe.height > limits.max_frame_pixels:
        raise TooLarge(f"frame of {probe.width}x{probe.height} exceeds max_frame_pixels")
    if limits.max_frames and probe.frame_count > limits.max_frames:
        raise TooLarge(f"{probe.frame_count} frames exceed max_frames")


class VideoStream:
    """Open, probe and iterate one clip; use as a context manager.

    Iteration yields uint8 BGR frames (H, W, 3). After iteration, :meth:`check_complete`
    raises :class:`NoFrames` or :class:`Truncated` when the decode fell short of the container.

    Before FFmpeg opens it, the source's size is checked against ``limits`` and its holes and
    headers by :func:`sniff_source` (``sniff=False`` skips that, for a caller that sniffed
    already); ``container`` holds what the headers declare. ``decode_threads`` bounds FFmpeg's
    decoder threads (0: OpenCV's default, the CPU count).
    """

    def __init__(self, source: Source, limits: Limits = Limits(),
                 file_bytes: int | None = None, *, sniff: bool = True,
                 decode_threads: int = DECODE_THREADS) -> None:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        check_file_bytes(limits, file_bytes)
        self.container = sniff_source(source, limits, file_bytes) if sniff else None
        self._source = source  # OpenCV's stream capture does not keep its stream alive
        self._cap = open_capture(source, threads=decode_threads)
        self.probe = _probe_capture(self._cap)
        self.limits = limits
        self.decoded = 0
        check_limits(self.probe, limits, file_bytes)

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._cap.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                return
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            h, w = frame.shape[:2]
            if self.limits.max_frame_pixels and h * w > self.limits.max_frame_pixels:
                raise TooLarge(f"frame of {w}x{h} exceeds max_frame_pixels")
            self.decoded += 1
            if self.limits.max_frames and self.decoded > self.limits.max_frames:
                raise TooLarge("decoded frames exceed max_frames")
            yield frame

    def check_complete(self) -> None:
        """Compare decoded frames with the container's claim once iteration has ended.

        A claim may be an estimate (duration x fps) in some containers, so a shortfall of up to
        2% (and at least one frame) is tolerated.
        """
        if self.decoded == 0:
            raise NoFrames("no frame could be decoded")
        claimed = self.probe.frame_count
        if claimed and self.decoded < claimed - max(1, int(0.02 * claimed)):
            raise Truncated(f"decoded {self.decoded} of {claimed} frames")

