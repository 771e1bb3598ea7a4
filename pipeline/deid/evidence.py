"""Per-pixel evidence of the live image: motion above the clip's noise, and speckle texture.

Two kinds of evidence, each measured against the clip's own noise (:mod:`.noise`):

motion
    The mean absolute frame-to-frame change, averaged over a small window (its spread over a
    static, noisy screen is then a few percent of its level), above both the configured floor
    (``change_threshold * changed_share``: the old rule's least mean change) and twice the
    quietest corner's level. Noise alone never reaches it; fresh or drifting speckle does.

texture
    Ultrasound speckle is grainy everywhere: almost every pixel differs from the median of its
    neighbourhood. A screen's UI is flat fills, smooth ramps (a grey-scale bar: a ramp's
    median is its centre value) and thin strokes on a flat ground (text: the median is the
    ground, only the strokes differ). So a pixel is *busy* when it differs from its
    neighbourhood's median by more than the noise allows (three standard deviations), and
    texture is where at least half of a window is busy: text lines and ECG traces stay far
    below that (strokes cover a third of a text line at most), speckle far above it.

Window sizes grow with the frame (:func:`unit`): at 480 rows and below, a 5 px median and a
15 px density window (above 480 rows, the median is separable: :mod:`.rank`).
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.deid.noise import box_mean
from radiomicsd.pipeline.deid.rank import separable_median

#: Motion must exceed the quietest corner's mean change by this factor (window-averaged over
#: 25 pixels and >= 1 frame pair, the noise level's spread is <= 20%: 2x is >= 5 spreads).
NOISE_FACTOR = 2.0
#: A busy pixel differs from its neighbourhood's median by more than this many noise sigmas.
BUSY_SIGMAS = 3.0
#: Texture: at least this share of the window's pixels is busy.
TEXTURE_SHARE = 0.5
#: Texture asked for within part of a frame is computed this many px (at 480 rows) around it:
#: more than its median (2 px) and its window (7 px) reach.
TEXTURE_PAD = 16


def unit(shape: tuple[int, int]) -> float:
    """Scale of the frame against 480 rows (at least 1): speckle grains, strokes and margins
    grow with the screen's resolution."""
    return max(1.0, min(shape) / 480.0)


def odd(size: float) -> int:
    """The odd integer at or just above ``size`` (at least 3)."""
    n = max(3, int(np.ceil(size)))
    return n if n % 2 else n + 1


def motion(change: NDArray[np.float32], *, noise: float, floor: float) -> NDArray[np.bool_]:
    """Bool (H, W): pixels whose window-averaged mean change (grey levels per frame pair, from
    :func:`~.noise.mean_abs_change`) exceeds ``floor`` and ``NOISE_FACTOR * noise``."""
    smoothed = box_mean(change, odd(5 * unit(change.shape[:2])))
    moving: NDArray[np.bool_] = smoothed > max(floor, NOISE_FACTOR * noise)
    return moving


def busy(grey: NDArray[np.uint8], *, sigma: float, u: float | None = None) -> NDArray[np.bool_]:
    """Bool (H, W): pixels of a grey (H, W) frame that differ from the median of their
    neighbourhood by more than ``BUSY_SIGMAS * sigma`` (at least 1 grey level). ``u``: the
    :func:`unit` of the frame ``grey`` is cut from (default: of ``grey``).

    The neighbourhood is 5 x 5 px at 480 rows; from 7 x 7 on (frames above 480 rows) its
    median is the separable one (:func:`~.rank.separable_median`), ~6x faster there than
    OpenCV's exact median and the same masks on every layout and real file we have."""
    size = odd(5 * (unit(grey.shape) if u is None else u))
    median = cv2.medianBlur(grey, size) if size <= 5 else separable_median(grey, size)
    out: NDArray[np.bool_] = cv2.absdiff(grey, median) > max(1.0, BUSY_SIGMAS * sigma)
    return out


def texture(grey: NDArray[np.uint8], *, sigma: float,
            within: tuple[slice, slice] | None = None) -> NDArray[np.bool_]:
    """Bool (H, W): speckle-like texture in a grey (H, W) frame with noise ``sigma`` (grey
    levels): at least ``TEXTURE_SHARE`` of the surrounding window is :func:`busy`.

    ``within``: (rows, columns), the part of the frame whose answer is wanted (False outside
    it); the work is done there and ``TEXTURE_PAD * unit`` px around it (beyond what the
    median and the window reach), with the same answer inside."""
    u = unit(grey.shape)
    if within is not None:
        h, w = grey.shape
        pad = int(np.ceil(TEXTURE_PAD * u))
        rows, cols = within
        cut = (slice(max(0, rows.start - pad), min(h, rows.stop + pad)),
               slice(max(0, cols.start - pad), min(w, cols.stop + pad)))
        out = np.zeros(grey.shape, bool)
        out[cut] = texture_at(grey[cut], sigma=sigma, u=u)
        inside = np.zeros(grey.shape, bool)
        inside[within] = True
        result: NDArray[np.bool_] = out & inside
        return result
    return texture_at(grey, sigma=sigma, u=u)


def texture_at(grey: NDArray[np.uint8], *, sigma: float, u: float) -> NDArray[np.bool_]:
    """:func:`texture` of ``grey`` (or a cut-out of a frame of :func:`unit` ``u``)."""
    share = box_mean(busy(grey, sigma=sigma, u=u).astype(np.float32), odd(15 * u))
    out: NDArray[np.bool_] = share >= TEXTURE_SHARE
    return out


def clean(evidence: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """uint8 0/255: ``evidence`` opened (drops what is thinner than a text line's strokes
    grown by the windows: stray traces, ramps' ends) and closed (joins speckle gaps)."""
    u = unit(evidence.shape[:2])
    out = closed(opened(evidence, 3 * u), 4 * u)
    return out.astype(np.uint8) * 255


def _kernel_ok(radius: float) -> bool:
    """Small discs are faster as kernels; large ones as distance transforms (linear time)."""
    return radius <= 6


def _disc(radius: float) -> NDArray[np.uint8]:
    size = 2 * int(round(radius)) + 1
    return cast(NDArray[np.uint8], cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))


def grown(mask: NDArray[np.bool_], radius: float) -> NDArray[np.bool_]:
    """Bool: ``mask`` dilated by a disc of ``radius`` px (past 6 px by a distance transform:
    linear time whatever the radius, where a disc kernel is quadratic)."""
    if not mask.any():
        return np.zeros(mask.shape, bool)
    if _kernel_ok(radius):
        wide = cast(NDArray[np.uint8], cv2.dilate(mask.astype(np.uint8), _disc(radius)))
        out: NDArray[np.bool_] = wide > 0
        return out
    far = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    out = far <= radius
    return out


def shrunk(mask: NDArray[np.bool_], radius: float) -> NDArray[np.bool_]:
    """Bool: ``mask`` eroded by a disc of ``radius`` px (pixels beyond the frame count as
    inside: an image that reaches the border is not eaten from there)."""
    if _kernel_ok(radius):
        thin = cast(NDArray[np.uint8], cv2.erode(mask.astype(np.uint8), _disc(radius),
                                                 borderType=cv2.BORDER_REPLICATE))
        out: NDArray[np.bool_] = thin > 0
        return out
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    out = depth > radius
    return out


def opened(mask: NDArray[np.bool_], radius: float) -> NDArray[np.bool_]:
    """Bool: morphological opening by a disc of ``radius`` px."""
    return grown(shrunk(mask, radius), radius)


def closed(mask: NDArray[np.bool_], radius: float) -> NDArray[np.bool_]:
    """Bool: morphological closing by a disc of ``radius`` px."""
    return shrunk(grown(mask, radius), radius)
