"""Lossless PNG encoding of BGR frames: true RGB in the file, no metadata chunks.

Each frame becomes exactly three chunks, IHDR, one IDAT and IEND; nothing else is ever written
(no tEXt/zTXt/iTXt/tIME/eXIf). Rows are stored with PNG filter type 1 (Sub: each byte minus the
byte of the same channel one pixel to the left, modulo 256), computed with numpy, and the filtered
rows are deflated by ISA-L (``isal``), whose level-1 deflate is several times faster than zlib's.
Both numpy and ISA-L release the GIL, so frames of different videos encode in parallel threads.

Measured on masked generated frames (``bench/anonymise.py`` prints the sweep): at 640x480,
level 1 took 1.4-2.0 ms and 188-195 KiB per frame, ``cv2.imencode`` at its defaults 5.3-6.0 ms
and 236-239 KiB; at 1016x708, 2.9-3.1 ms against 11.3-12.1 ms. Level 0 is no faster and ~23%
larger; level 2 is ~7% smaller for 5-15% more time; level 3 is slower and no smaller than 2.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
from isal import isal_zlib
from numpy.typing import NDArray

from radiomicsd.pipeline.frame import check_bgr

SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVELS = (0, 1, 2, 3)  # ISA-L deflate levels
DEFAULT_LEVEL = 1
_SUB = 1  # PNG filter type Sub
_RGB8 = (8, 2, 0, 0, 0)  # bit depth 8, colour type 2 (truecolour), deflate, adaptive, no interlace


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = isal_zlib.crc32(data, isal_zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


_IEND = _chunk(b"IEND", b"")


def encode_png(frame_bgr: NDArray[np.uint8], level: int = DEFAULT_LEVEL) -> bytes:
    """Encode a uint8 BGR (H, W, 3) frame as PNG bytes (8-bit RGB) at ISA-L ``level`` 0..3."""
    check_bgr(frame_bgr)
    if level not in LEVELS:
        raise ValueError(f"PNG level must be one of {LEVELS}, got {level!r}")
    h, w = frame_bgr.shape[:2]
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB).reshape(h, 3 * w)
    rows = np.empty((h, 1 + 3 * w), np.uint8)  # one filter-type byte, then the filtered row
    rows[:, 0] = _SUB
    rows[:, 1:4] = rgb[:, :3]
    np.subtract(rgb[:, 3:], rgb[:, :-3], out=rows[:, 4:])  # uint8 arithmetic wraps mod 256
    header = struct.pack(">II5B", w, h, *_RGB8)
    idat = isal_zlib.compress(rows, level)
    return b"".join((SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", idat), _IEND))


