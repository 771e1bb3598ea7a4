"""Streaming video decoding with a probe and resource limits.

Frames are decoded one at a time by OpenCV's bundled FFmpeg; a clip is never held whole in
memory. The same code reads a plain file (by path) and decrypted bytes (from a file-like object
through OpenCV's stream-reader capture API), so encrypted drops never need a plaintext file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from radiomicsd.pipeline.errors import NoFrames, TooLarge, Truncated, UnreadableContainer

#: A source is a file path or a seekable binary stream (e.g. decrypted bytes in memory).
Source = str | Path | BinaryIO


@dataclass(frozen=True)
class Limits:
    """Refuse inputs above these sizes (0 disables a limit)."""

    max_file_bytes: int = 8 * 2**30
    max_frame_pixels: int = 4096 * 4096
    max_frames: int = 100_000


@dataclass(frozen=True)
class Probe:
    """What the container says about a clip, before decoding it all.

    ``frame_count`` is the container's claim (0 when unknown); ``fps`` is 0.0 when unknown.
    """

    width: int
    height: int
    fps: float
    frame_count: int


def open_capture(source: Source) -> cv2.VideoCapture:
    """Open ``source`` with the FFmpeg backend or raise :class:`UnreadableContainer`."""
    if isinstance(source, (str, Path)):
        cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG)
    else:
        source.seek(0)
        # OpenCV calls read(size) and seek(offset, whence) on any Python object; its stubs
        # instead spell out the C++ IStreamReader interface (read(buffer, size)).
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [])  # type: ignore[call-overload]
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


def check_limits(probe: Probe, limits: Limits, file_bytes: int | None = None) -> None:
    """Raise :class:`TooLarge` when the probe or file size exceeds a limit."""
    if limits.max_file_bytes and file_bytes is not None and file_bytes > limits.max_file_bytes:
        raise TooLarge(f"file of {file_bytes} bytes exceeds max_file_bytes")
    if limits.max_frame_pixels and probe.width * probe.height > limits.max_frame_pixels:
        raise TooLarge(f"frame of {probe.width}x{probe.height} exceeds max_frame_pixels")
    if limits.max_frames and probe.frame_count > limits.max_frames:
        raise TooLarge(f"{probe.frame_count} frames exceed max_frames")


class VideoStream:
    """Open, probe and iterate one clip; use as a context manager.

    Iteration yields uint8 BGR frames (H, W, 3). After iteration, :meth:`check_complete`
    raises :class:`NoFrames` or :class:`Truncated` when the decode fell short of the container.
    """

    def __init__(self, source: Source, limits: Limits = Limits(),
                 file_bytes: int | None = None) -> None:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        self._source = source  # OpenCV's stream capture does not keep its stream alive
        self._cap = open_capture(source)
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

