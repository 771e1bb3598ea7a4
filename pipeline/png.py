"""Lossless PNG encoding of BGR frames, true RGB in the file, no metadata chunks.

OpenCV's encoder converts its BGR arrays to RGB order in the file (the pilot handed BGR arrays to
PIL as RGB, swapping red and blue) and writes only IHDR, IDAT and IEND. With no explicit level,
OpenCV uses zlib level 1 with the RLE strategy, which measured fastest here (see bench/).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np


def encode_png(frame_bgr: np.ndarray, compression: int | None = None) -> bytes:
    """Encode a uint8 BGR (H, W, 3) frame as PNG bytes.

    ``compression`` None keeps OpenCV's default (level 1, RLE strategy); 0..9 sets the zlib level.
    """
    params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
    ok, buf = cv2.imencode(".png", frame_bgr, params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def png_chunks(data: bytes) -> list[bytes]:
    """Chunk types of a PNG byte string, in file order."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    types, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        types.append(kind)
        pos += 12 + length
    return types
