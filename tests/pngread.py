"""An independent PNG reader for tests: chunks and 8-bit RGB pixels with ``zlib`` only.

It shares no code with OpenCV or ``pipeline.png``, so it can tell whether a file really holds
RGB (not BGR) and nothing but image chunks.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG, checking signature, CRCs and the end."""
    assert data[:8] == PNG_SIGNATURE
    out, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        payload = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + payload) == crc, f"bad CRC in {kind!r}"
        out.append((kind, payload))
        pos += 12 + length
    assert pos == len(data), "bytes after the last chunk"
    return out


def _unfilter_row(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    cur = line.astype(np.int64)
    if kind == 0:
        return cur
    if kind == 2:
        return (cur + prev) % 256
    if kind == 1:
        for c in range(bpp):
            cur[c::bpp] = np.cumsum(cur[c::bpp]) % 256
        return cur
    out = np.zeros_like(cur)
    for i in range(cur.size):
        a = int(out[i - bpp]) if i >= bpp else 0
        b = int(prev[i])
        if kind == 3:
            out[i] = (cur[i] + (a + b) // 2) % 256
            continue
        c = int(prev[i - bpp]) if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out[i] = (cur[i] + pred) % 256
    return out


def png_rgb(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB, non-interlaced PNG with zlib only; returns (H, W, 3) in file order."""
    parts = chunks(data)
    kind, ihdr = parts[0]
    assert kind == b"IHDR"
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert (depth, colour, interlace) == (8, 2, 0), "expected 8-bit truecolour RGB"
    raw = zlib.decompress(b"".join(p for k, p in parts if k == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + 3 * w)
    out = np.zeros((h, 3 * w), np.int64)
    prev = np.zeros(3 * w, np.int64)
    for y in range(h):
        prev = out[y] = _unfilter_row(int(rows[y, 0]), rows[y, 1:], prev, 3)
    return out.reshape(h, w, 3).astype(np.uint8)
