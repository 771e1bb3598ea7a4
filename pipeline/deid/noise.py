"""The clip's own noise, measured where no live image is: the frame's corners.

A probe's image never fills all four corners of a screen (a fan leaves the top corners free, a
rectangle sits between the header and the footer, beside the parameter column), so the
quietest corner shows what the capture adds to a static screen: nothing in a digital export,
a few grey levels of noise in every frame of an analogue frame grabber's capture, codec
flicker. The live-image detector puts its motion and texture thresholds above that level, so
noise never widens the kept area.

Each corner is a patch of a tenth of the frame's width and height; the estimate is the median
over the patch (robust to text in the corner) and the minimum over the four corners (robust to
an image, a clock or an ECG trace reaching one corner).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

#: E|a - b| of two independent N(0, s^2) samples is s * 2 / sqrt(pi).
MEAN_ABS_DIFF_PER_SIGMA = 2.0 / float(np.sqrt(np.pi))
#: Immerkaer's kernel: its response to a smooth surface is ~0, to N(0, s^2) noise N(0, 36 s^2).
_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_MAD_PER_SIGMA = 0.6745


def corners(shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    """The four corner patches of an (H, W) frame, each a tenth of its sides (at least 8 px)."""
    h, w = shape
    ch, cw = max(8, h // 10), max(8, w // 10)
    return [(rows, cols) for rows in (slice(0, ch), slice(h - ch, h))
            for cols in (slice(0, cw), slice(w - cw, w))]


class Running:
    """Per-pixel statistics of uint8 (H, W) frames fed one at a time (nothing but the last
    frame is held): ``high`` and ``low`` (uint8), the ``mean`` (float32) and the mean absolute
    change between consecutive frames (:meth:`change`, float32, grey levels per pair)."""

    def __init__(self, first: NDArray[np.uint8]) -> None:
        self.n = 1
        self.high, self.low = first.copy(), first.copy()
        self.total = first.astype(np.float32)
        self.moved = np.zeros(first.shape, np.float32)
        self._last = first

    def add(self, frame: NDArray[np.uint8]) -> None:
        cv2.max(self.high, frame, dst=self.high)
        cv2.min(self.low, frame, dst=self.low)
        cv2.accumulate(frame, self.total)
        cv2.accumulate(cv2.absdiff(self._last, frame), self.moved)
        self._last = frame
        self.n += 1

    @property
    def mean(self) -> NDArray[np.float32]:
        mean: NDArray[np.float32] = self.total / np.float32(self.n)
        return mean

    def change(self) -> NDArray[np.float32]:
        if self.n < 2:
            raise ValueError("a change needs two frames")
        change: NDArray[np.float32] = self.moved / np.float32(self.n - 1)
        return change


def median(values: ArrayLike) -> float:
    """The median of ``values`` (any shape), as :func:`numpy.median` gives it (the mean of the
    two middle values of an even count, in the values' float type), without its check for
    masked arrays: on float values that imports ``numpy.ma`` at the first call (~15 ms of a
    first clip) and is slower on every later one. No NaN is expected."""
    flat = np.ravel(values)
    k = flat.size // 2
    if flat.size % 2:
        return float(np.mean(np.partition(flat, k)[k:k + 1]))
    return float(np.mean(np.partition(flat, (k - 1, k))[k - 1:k + 1]))


def mean_abs_change(greys: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """Per pixel, the mean absolute grey-level change between consecutive frames.

    Parameters
    ----------
    greys : at least two grey (H, W) uint8 frames.

    Returns
    -------
    change : float32 (H, W), grey levels per frame pair.
    """
    if len(greys) < 2:
        raise ValueError("a change needs two frames")
    stats = Running(greys[0])
    for g in greys[1:]:
        stats.add(g)
    return stats.change()


def temporal_noise(change: NDArray[np.float32]) -> float:
    """The capture's frame-to-frame noise as a mean absolute change (grey levels): the
    quietest corner's median of ``change`` (see :func:`mean_abs_change`). 0 for a digital
    export whose static screen does not change at all."""
    return min(median(change[c]) for c in corners(change.shape[:2]))


def frame_noise(frames: Sequence[NDArray[np.uint8]]) -> float:
    """The frame-to-frame noise sigma (grey levels) of BGR (H, W, 3) ``frames`` (for one
    frame, its spatial noise): :func:`temporal_noise` of their change, computed on the corner
    patches only (all it looks at)."""
    def grey(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
        return cast(NDArray[np.uint8], cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))

    if len(frames) == 1:
        return spatial_noise(grey(frames[0]))
    quietest = min(median(mean_abs_change([grey(f[rows, cols]) for f in frames]))
                   for rows, cols in corners(frames[0].shape[:2]))
    return quietest / MEAN_ABS_DIFF_PER_SIGMA


def spatial_noise(grey: NDArray[np.uint8]) -> float:
    """The noise standard deviation of one grey (H, W) frame, grey levels: Immerkaer's
    Laplacian-difference estimate, as a median (robust to text), in the quietest corner."""
    h, w = grey.shape[:2]
    sigmas = []
    for rows, cols in corners((h, w)):
        # the patch and the ring of pixels beside it inside the frame: the filter's response
        # on the patch is then the same as over the whole frame (at the frame's own border
        # both reflect), at a fraction of its cost
        y0, y1 = max(0, rows.start - 1), min(h, rows.stop + 1)
        x0, x1 = max(0, cols.start - 1), min(w, cols.stop + 1)
        around = grey[y0:y1, x0:x1].astype(np.float32)
        patch = cv2.filter2D(around, -1, _LAPLACE, borderType=cv2.BORDER_REFLECT_101)
        inner = patch[rows.start - y0:rows.stop - y0, cols.start - x0:cols.stop - x0]
        sigmas.append(median(np.abs(inner)) / (6.0 * _MAD_PER_SIGMA))
    return min(sigmas)


def box_mean(image: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    """Mean over a ``size`` x ``size`` window, float32, edges replicated."""
    return cast(NDArray[np.float32], cv2.boxFilter(image, cv2.CV_32F, (size, size),
                                                   borderType=cv2.BORDER_REPLICATE))
