"""Median filters over uint8 images from sorting networks of per-pixel minima and maxima.

OpenCV's ``medianBlur`` is fast up to 5 x 5 (~1.4 ns a pixel) and ~30 ns a pixel from 7 x 7 on
(a histogram per pixel). The median of ``size`` values, one per shifted copy of the image (a
*lane*), is the middle lane after a sorting network of ``cv2.min`` and ``cv2.max`` over whole
lanes: a few ns a pixel at any odd ``size`` up to 11. The detector uses it two ways:

- the median of each pixel's row window (:func:`row_medians`), whose least and greatest over
  the window's rows bound the window's median (:func:`median_bounds`);
- the *separable* median (:func:`separable_median`): the median over each column window of the
  row medians, a robust local level like the true median (a pixel of speckle differs from it
  as from the median; a flat fill, a ramp and a thin stroke on a flat ground do not).

Every function replicates the image's edges, as ``cv2.medianBlur`` does, and works in strips
of :data:`STRIP_PIXELS` pixels: its lanes are as large as a strip, not the image.
"""

from __future__ import annotations

import functools
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

U8 = NDArray[np.uint8]
#: Pixels per strip: the memory of ``size`` lanes at a time stays a few MB whatever the frame.
STRIP_PIXELS = 1 << 18


@functools.cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort of ``n`` values as comparators (i, j), i < j: after
    each, the lesser value at i (the network for the next power of two, the comparators to
    values beyond ``n``, which would hold +inf, dropped)."""
    pairs = []
    size = 1 << max(0, (n - 1).bit_length())
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


@functools.cache
def _median_steps(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """The comparators of :func:`sorting_network` that the middle value depends on, as
    (i, j, the minimum is used, the maximum is used): the rest are never computed."""
    needed = {n // 2}
    steps = []
    for i, j in reversed(sorting_network(n)):
        low, high = i in needed, j in needed
        if low or high:
            steps.append((i, j, low, high))
            needed |= {i, j}
    return tuple(reversed(steps))


def _middle(lanes: list[U8]) -> U8:
    """Per pixel, the median of an odd number of equally shaped uint8 ``lanes``."""
    lanes = list(lanes)
    for i, j, low, high in _median_steps(len(lanes)):
        a, b = lanes[i], lanes[j]
        if low:
            lanes[i] = cast(U8, cv2.min(a, b))
        if high:
            lanes[j] = cast(U8, cv2.max(a, b))
    return lanes[len(lanes) // 2]


def _medians(grey: U8, size: int, *, along_rows: bool) -> U8:
    """uint8 (H, W): the median of the ``size`` pixels (odd) centred on each pixel in its row
    (``along_rows``) or its column, a strip of rows at a time."""
    r = size // 2
    h, w = grey.shape
    border = (0, 0, r, r) if along_rows else (r, r, 0, 0)
    padded = cast(U8, cv2.copyMakeBorder(grey, *border, cv2.BORDER_REPLICATE))
    out = np.empty((h, w), np.uint8)
    step = max(1, STRIP_PIXELS // max(1, w))
    for y0 in range(0, h, step):
        y1 = min(h, y0 + step)
        lanes = [padded[y0:y1, i:i + w] if along_rows else padded[y0 + i:y1 + i]
                 for i in range(size)]
        out[y0:y1] = _middle(lanes)
    return out


def row_medians(grey: U8, size: int) -> U8:
    """uint8 (H, W): the median of the ``size`` pixels (odd) centred on each pixel in its row."""
    return _medians(grey, size, along_rows=True)


def column_medians(grey: U8, size: int) -> U8:
    """uint8 (H, W): the median of the ``size`` pixels (odd) centred on each pixel in its
    column."""
    return _medians(grey, size, along_rows=False)


def separable_median(grey: U8, size: int) -> U8:
    """uint8 (H, W): per pixel, the median of the row medians (:func:`row_medians`) of its
    ``size`` x ``size`` window's rows."""
    return column_medians(row_medians(grey, size), size)


def median_bounds(grey: U8, size: int) -> tuple[U8, U8]:
    """uint8 (H, W) each: the least and the greatest median of the ``size`` rows of each
    pixel's ``size`` x ``size`` window. The window's median lies between them: each row holds
    more than half its values on either side of its own median."""
    rows = row_medians(grey, size)
    column = np.ones((size, 1), np.uint8)
    return (cast(U8, cv2.erode(rows, column, borderType=cv2.BORDER_REPLICATE)),
            cast(U8, cv2.dilate(rows, column, borderType=cv2.BORDER_REPLICATE)))
