"""Texture features of the Doppler pixels: the 2019 pilot's radiomics, vectorised.

Per frame, the masked Doppler image becomes 64 grey levels ``Z``; 19 grey-level co-occurrence
(GLCM) features, 7 first-order statistics and 2 velocities describe it (28 values, order
``FRAME_FEATURE_NAMES``). Per video, the frames' NaN-aware mean and median and the largest
velocity make 57 values (order ``VIDEO_FEATURE_NAMES``, identical to the RHD model's).

Conventions that follow the pilot (``reference/ORIGINAL.md``):

- ``Z = round(grey / 4)`` of OpenCV's BGR2GRAY, rounded as numpy rounds (half to even: grey 2
  gives level 0, grey 6 gives 2, grey 10 gives 2). The pilot rounded a numpy array, which numpy
  does half to even under Python 2 and 3 alike. Level 0 is "no Doppler" and becomes NaN.
- GLCM at distance 1, angles 0, 45, 90, 135 degrees, 64 levels, not symmetric, each angle
  normalised on its own, pairs touching a NaN skipped. Offsets follow scikit-image's
  ``graycomatrix``: angle ``a`` pairs pixel ``(r, c)`` with ``(r + round(sin a), c + round(cos
  a))``. Features use 1-based grey levels ``i = level + 1`` and natural logarithms, ``0 ln 0 =
  0``; correlation is 1 when a marginal's standard deviation is below 1e-15 (as scikit-image).
- First-order statistics over the non-NaN levels: Pearson kurtosis (not excess) and skewness
  from population moments (scipy.stats' defaults with ``bias=True``), population std, numpy's
  linear-interpolation percentiles. Both are NaN when the levels are constant (as scipy).
- Velocities with 0.64 m/s at full scale: ``Zblur`` is OpenCV's 3x3 Gaussian blur, sigma
  ``8 / sqrt(8 ln 2)``, default border (reflect 101), of ``Z`` with zeros, not NaN, where there
  is no Doppler: the pilot blurred before turning zeros into NaN, since a NaN blur followed by a
  plain maximum would be NaN for every frame, yet the pilot model's maxVelocity statistics are
  finite. ``maxVelocity = 0.64 max(Zblur) / 64``, ``meanVelocity = 0.64 mean(Z) / 64``.

Fixes of pilot defects:

- grey 254 and 255 round to 64, outside the 64 levels 0..63: they are clipped to level 63
  (this also bounds the velocities at 0.63 m/s instead of 0.64).
- the video's ``max_maxVelocity`` is the largest maxVelocity over frames; the pilot took it
  from the lexicographically largest frame vector, i.e. the frame with the largest
  autoCorrelation.
- a video without any textured frame raises ``NoDopplerTexture`` instead of crashing.
- an angle without any valid pair (isolated pixels) yields NaN features for that angle, which
  the NaN-aware mean over angles then ignores, instead of a division by zero.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.errors import NoDopplerTexture
from radiomicsd.pipeline.frame import check_bgr

LEVELS = 64
VELOCITY_SCALE_M_S = 0.64
BLUR_SIGMA = 8.0 / np.sqrt(8.0 * np.log(2.0))
ANGLE_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 1), (1, 0), (1, -1))
"""(row, column) offsets of the angles 0, 45, 90 and 135 degrees at distance 1."""

GLCM_FEATURE_NAMES: tuple[str, ...] = (
    "autoCorrelation", "clusterProminence", "clusterShade", "contrast", "correlation",
    "differenceEntropy", "differenceVariance", "dissimilarity", "energy", "entropy",
    "homogeneity", "informationMeasureOfCorrelation1", "informationMeasureOfCorrelation2",
    "inverseDifference", "maximumProbability", "sumAverage", "sumEntropy",
    "sumOfSquaresVariance", "sumVariance",
)  # fmt: skip
FRAME_FEATURE_NAMES: tuple[str, ...] = GLCM_FEATURE_NAMES + (
    "kurtosis", "skewness", "mean", "std", "median", "p25", "p75", "maxVelocity", "meanVelocity",
)  # fmt: skip
VIDEO_FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"mean_{n}" for n in FRAME_FEATURE_NAMES)
    + tuple(f"median_{n}" for n in FRAME_FEATURE_NAMES)
    + ("max_maxVelocity",)
)
_MAX_VELOCITY = FRAME_FEATURE_NAMES.index("maxVelocity")


def grey_levels(doppler_bgr: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Quantise a masked Doppler image to the pilot's 64 grey levels.

    Parameters
    ----------
    doppler_bgr : ndarray, shape (H, W, 3), uint8
        Doppler pixels of one frame in BGR order, black (0) elsewhere.

    Returns
    -------
    ndarray, shape (H, W), float64
        Levels 1..63 where there is Doppler, NaN where the level rounds to 0.
    """
    check_bgr(doppler_bgr)
    grey = cv2.cvtColor(doppler_bgr, cv2.COLOR_BGR2GRAY)
    z: NDArray[np.float64] = np.minimum(np.rint(grey / 4.0), LEVELS - 1)
    z[z == 0] = np.nan
    return z


def glcm(
    levels: NDArray[np.float64], angle_offsets: tuple[tuple[int, int], ...] = ANGLE_OFFSETS
) -> NDArray[np.float64]:
    """Normalised, non-symmetric grey-level co-occurrence matrices, one per angle.

    Parameters
    ----------
    levels : ndarray, shape (H, W), float
        Integer grey levels 0..63, NaN where a pixel is excluded.
    angle_offsets : tuple of (int, int)
        (row, column) offset of the neighbour for each angle.

    Returns
    -------
    ndarray, shape (64, 64, n_angles), float64
        ``P[i, j, a]``: fraction of valid pairs at angle ``a`` whose first pixel has level ``i``
        and neighbour level ``j``. An angle without any valid pair is all NaN.
    """
    if levels.ndim != 2:
        raise ValueError(f"expected a 2-D level image, got shape {levels.shape}")
    finite = levels[np.isfinite(levels)]
    if finite.size and (finite.min() < 0 or finite.max() > LEVELS - 1):
        raise ValueError(f"grey levels must lie in 0..{LEVELS - 1}")
    h, w = levels.shape
    out = np.empty((LEVELS, LEVELS, len(angle_offsets)))
    for a, (dr, dc) in enumerate(angle_offsets):
        first = levels[max(0, -dr) : h - max(0, dr), max(0, -dc) : w - max(0, dc)]
        second = levels[max(0, dr) : h - max(0, -dr), max(0, dc) : w - max(0, -dc)]
        valid = np.isfinite(first) & np.isfinite(second)
        pairs = first[valid].astype(np.intp) * LEVELS + second[valid].astype(np.intp)
        counts = np.bincount(pairs, minlength=LEVELS * LEVELS).reshape(LEVELS, LEVELS)
        out[:, :, a] = counts / counts.sum() if pairs.size else np.nan
    return out


def _neg_plogp(p: NDArray[np.float64], axis: tuple[int, ...] | int) -> NDArray[np.float64]:
    """``-sum p ln p`` over ``axis`` with ``0 ln 0 = 0``."""
    logp = np.log(p, where=p > 0, out=np.zeros_like(p))
    entropy: NDArray[np.float64] = -np.sum(p * logp, axis=axis)
    return entropy


def _sum_by(
    index: NDArray[np.intp], P: NDArray[np.float64], n_bins: int
) -> NDArray[np.float64]:
    """Sum each angle of ``P`` (N, N, A) over cells sharing ``index`` (N, N): (n_bins, A)."""
    flat, index = P.reshape(index.size, -1), index.ravel()
    sums = [np.bincount(index, weights=w, minlength=n_bins) for w in flat.T]
    return np.stack(sums, axis=1)


def glcm_features(P: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 19 Haralick-style features of a GLCM, averaged over angles ignoring NaN.

    Parameters
    ----------
    P : ndarray, shape (N, N, n_angles)
        Co-occurrence matrices; each angle is normalised here, and an angle whose sum is zero
        or not finite contributes NaN.

    Returns
    -------
    ndarray, shape (19,), float64
        Features in ``GLCM_FEATURE_NAMES`` order, NaN where no angle defines them.
    """
    if P.ndim != 3 or P.shape[0] != P.shape[1]:
        raise ValueError(f"expected a GLCM of shape (N, N, n_angles), got {P.shape}")
    n = P.shape[0]
    totals = P.sum(axis=(0, 1))
    defined = np.isfinite(totals) & (totals > 0)
    P = np.where(defined, P / np.where(defined, totals, 1.0), 0.0)
    i = np.arange(1, n + 1, dtype=np.float64)[:, None, None]
    j = i.reshape(1, n, 1)
    px, py = P.sum(axis=1), P.sum(axis=0)  # (N, A)
    ux, uy = np.sum(i[:, 0] * px, axis=0), np.sum(j[0] * py, axis=0)  # (A,)
    dx, dy = i - ux, j - uy
    var_x, var_y = np.sum(dx**2 * P, axis=(0, 1)), np.sum(dy**2 * P, axis=(0, 1))
    cov = np.sum(dx * dy * P, axis=(0, 1))
    sx, sy = np.sqrt(var_x), np.sqrt(var_y)
    p_sum = _sum_by((i + j - 2)[:, :, 0].astype(np.intp), P, 2 * n - 1)  # k = 2..2N
    p_diff = _sum_by(np.abs(i - j)[:, :, 0].astype(np.intp), P, n)  # k = 0..N-1
    k_sum = np.arange(2, 2 * n + 1, dtype=np.float64)[:, None]
    k_diff = np.arange(n, dtype=np.float64)[:, None]
    dissimilarity = np.sum(np.abs(i - j) * P, axis=(0, 1))
    sum_average = np.sum(k_sum * p_sum, axis=0)
    hxy = _neg_plogp(P, axis=(0, 1))
    pxpy = px[:, None, :] * py[None, :, :]
    hxy1 = -np.sum(P * np.log(pxpy, where=P > 0, out=np.zeros_like(P)), axis=(0, 1))
    hxy2 = _neg_plogp(pxpy, axis=(0, 1))
    hx, hy = _neg_plogp(px, axis=0), _neg_plogp(py, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = np.where((sx < 1e-15) | (sy < 1e-15), 1.0, cov / (sx * sy))
        imc1 = (hxy - hxy1) / np.maximum(hx, hy)
    # HXY2 >= HXY in exact arithmetic; the clip only absorbs rounding below zero.
    imc2 = np.sqrt(1.0 - np.exp(-2.0 * np.maximum(hxy2 - hxy, 0.0)))
    per_angle = np.stack([
        np.sum(i * j * P, axis=(0, 1)),  # autoCorrelation
        np.sum((i + j - ux - uy) ** 4 * P, axis=(0, 1)),  # clusterProminence
        np.sum((i + j - ux - uy) ** 3 * P, axis=(0, 1)),  # clusterShade
        np.sum((i - j) ** 2 * P, axis=(0, 1)),  # contrast
        correlation,
        _neg_plogp(p_diff, axis=0),  # differenceEntropy
        np.sum((k_diff - dissimilarity) ** 2 * p_diff, axis=0),  # differenceVariance
        dissimilarity,
        np.sum(P**2, axis=(0, 1)),  # energy (angular second moment)
        hxy,  # entropy
        np.sum(P / (1.0 + (i - j) ** 2), axis=(0, 1)),  # homogeneity
        imc1,
        imc2,
        np.sum(P / (1.0 + np.abs(i - j)), axis=(0, 1)),  # inverseDifference
        P.max(axis=(0, 1)),  # maximumProbability
        sum_average,
        _neg_plogp(p_sum, axis=0),  # sumEntropy
        var_x,  # sumOfSquaresVariance
        np.sum((k_sum - sum_average) ** 2 * p_sum, axis=0),  # sumVariance
    ])  # fmt: skip
    per_angle[:, ~defined] = np.nan
    return _nan_reduce(np.nanmean, per_angle, axis=1)


class _NanReduction(Protocol):
    """A numpy nan-function (``np.nanmean``, ``np.nanmedian``, ...) along one axis."""

    def __call__(self, a: NDArray[np.float64], /, *, axis: int) -> NDArray[np.float64]: ...


def _nan_reduce(
    func: _NanReduction, values: NDArray[np.float64], axis: int
) -> NDArray[np.float64]:
    """Apply a numpy nan-function to a 2-D array, quietly giving NaN where every value is NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return func(values, axis=axis)


def _first_order(z: NDArray[np.float64]) -> list[float]:
    """Kurtosis, skewness, mean, std, median, p25, p75 of the 1-D levels ``z``."""
    mean = z.mean()
    d = z - mean
    m2, m3, m4 = np.mean(d**2), np.mean(d**3), np.mean(d**4)
    constant = m2 <= (np.finfo(np.float64).resolution * mean) ** 2  # scipy's rule
    kurtosis = np.nan if constant else m4 / m2**2
    skewness = np.nan if constant else m3 / m2**1.5
    p25, median, p75 = np.percentile(z, [25, 50, 75])
    return [kurtosis, skewness, mean, np.sqrt(m2), median, p25, p75]


def frame_features(doppler_bgr: NDArray[np.uint8]) -> NDArray[np.float64] | None:
    """The 28 texture features of one masked Doppler frame.

    Parameters
    ----------
    doppler_bgr : ndarray, shape (H, W, 3), uint8
        Doppler pixels of one frame in BGR order, black elsewhere.

    Returns
    -------
    ndarray, shape (28,), float64, or None
        Features in ``FRAME_FEATURE_NAMES`` order (velocities in m/s), or None when no pixel
        reaches grey level 1.
    """
    z = grey_levels(doppler_bgr)
    doppler = np.isfinite(z)
    if not doppler.any():
        return None
    first = _first_order(z[doppler])
    blurred = cv2.GaussianBlur(np.where(doppler, z, 0.0), (3, 3), BLUR_SIGMA)
    max_velocity = VELOCITY_SCALE_M_S * float(blurred.max()) / LEVELS
    mean_velocity = VELOCITY_SCALE_M_S * first[2] / LEVELS
    return np.concatenate([glcm_features(glcm(z)), first, [max_velocity, mean_velocity]])


def video_features(frame_features: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 57-value texture vector of a video from its frames' 28-value vectors.

    Parameters
    ----------
    frame_features : ndarray, shape (n_frames, 28)
        One row per textured frame, ``FRAME_FEATURE_NAMES`` order.

    Returns
    -------
    ndarray, shape (57,), float64
        NaN-aware mean over frames (28), NaN-aware median (28), then the largest maxVelocity
        over frames; ``VIDEO_FEATURE_NAMES`` order.

    Raises
    ------
    NoDopplerTexture
        When there is no frame.
    """
    rows = np.asarray(frame_features, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(FRAME_FEATURE_NAMES):
        raise ValueError(f"expected (n_frames, {len(FRAME_FEATURE_NAMES)}), got {rows.shape}")
    if rows.shape[0] == 0:
        raise NoDopplerTexture("no frame of the video has Doppler pixels to measure")
    return np.concatenate([
        _nan_reduce(np.nanmean, rows, axis=0),
        _nan_reduce(np.nanmedian, rows, axis=0),
        _nan_reduce(np.nanmax, rows[:, _MAX_VELOCITY : _MAX_VELOCITY + 1], axis=0),
    ])  # fmt: skip
