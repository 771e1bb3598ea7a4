"""The 2019 pilot's per-video analysis, written the straightforward way: the bench's baseline.

What it does, per ``reference/ORIGINAL.md``:

- segmentation: k-means with 10 restarts on every frame's Lab pixels
  (:func:`pipeline.rhd.segmentation.segment_frame_pilot`, the reference kept in the package);
- view: each anatomic frame preprocessed as the pilot did and classified on its own, one CNN
  call per frame, then the majority vote. The pilot rebuilt the model and reloaded its weights
  for every video; that cost is left out here (the model is loaded once, before timing), and a
  direct model call is used rather than Keras' ``predict`` with its per-call overhead, so the
  baseline is, if anything, faster than the pilot was;
- textures: the co-occurrence matrix counted with Python loops over every pixel pair of every
  angle, skipping pairs with a NaN, and the 19 GLCM features summed with Python loops over its
  cells, as a direct port of the usual MATLAB GLCM feature scripts would be; first-order
  statistics with numpy / scipy.stats;
- the 57 per-video values (NaN-aware mean and median over frames and the largest maxVelocity)
  and the RHD logistic regression.

To make the comparison about speed and about our segmentation change only, the pilot's three
result-changing defects that our pipeline fixes are fixed here as well: colours go to
``rgb2lab`` in RGB order, grey levels 254 and 255 are clipped to level 63, and
``max_maxVelocity`` is the largest maxVelocity rather than the lexicographic maximum's. The
remaining conventions (NaN handling, offsets, rounding) are those documented in
``pipeline/rhd/texture.py``, so that the same frames give the same numbers.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from radiomicsd.pipeline.rhd import segmentation, view
from radiomicsd.pipeline.rhd.texture import ANGLE_OFFSETS, BLUR_SIGMA, LEVELS, VELOCITY_SCALE_M_S


def levels_of(doppler_bgr: np.ndarray) -> np.ndarray:
    """64 grey levels of the masked Doppler image: float (H, W), NaN where level 0."""
    grey = cv2.cvtColor(doppler_bgr, cv2.COLOR_BGR2GRAY)
    z = np.round(grey / 4.0)
    z[z > LEVELS - 1] = LEVELS - 1
    z[z == 0] = np.nan
    return z


def glcm_loops(z: np.ndarray) -> list[np.ndarray]:
    """Co-occurrence counts (64, 64) per angle, pixel pair by pixel pair, NaN pairs skipped."""
    rows, cols = z.shape
    out = []
    for dr, dc in ANGLE_OFFSETS:
        counts = np.zeros((LEVELS, LEVELS))
        for r in range(rows):
            for c in range(cols):
                r2, c2 = r + dr, c + dc
                if r2 < 0 or r2 >= rows or c2 < 0 or c2 >= cols:
                    continue
                a, b = z[r, c], z[r2, c2]
                if np.isnan(a) or np.isnan(b):
                    continue
                counts[int(a), int(b)] += 1
        out.append(counts)
    return out


def glcm_features_loops(counts: np.ndarray) -> list[float]:
    """The 19 GLCM features of one angle's counts, cell by cell (1-based levels, natural log)."""
    n = counts.shape[0]
    total = counts.sum()
    if total == 0:
        return [math.nan] * 19
    p = counts / total
    px = [sum(p[i, j] for j in range(n)) for i in range(n)]
    py = [sum(p[i, j] for i in range(n)) for j in range(n)]
    ux = sum((i + 1) * px[i] for i in range(n))
    uy = sum((j + 1) * py[j] for j in range(n))
    sx = math.sqrt(sum((i + 1 - ux) ** 2 * px[i] for i in range(n)))
    sy = math.sqrt(sum((j + 1 - uy) ** 2 * py[j] for j in range(n)))
    autoc = prom = shade = contrast = diss = energy = entropy = 0.0
    homog = invdiff = maxp = sosv = hxy1 = hxy2 = cov = 0.0
    psum = [0.0] * (2 * n + 1)
    pdiff = [0.0] * n
    for i0 in range(n):
        for j0 in range(n):
            i, j = i0 + 1, j0 + 1
            v = p[i0, j0]
            q = px[i0] * py[j0]
            if q > 0:
                hxy2 -= q * math.log(q)
            if v == 0:
                continue
            autoc += i * j * v
            prom += (i + j - ux - uy) ** 4 * v
            shade += (i + j - ux - uy) ** 3 * v
            contrast += (i - j) ** 2 * v
            diss += abs(i - j) * v
            energy += v * v
            entropy -= v * math.log(v)
            homog += v / (1 + (i - j) ** 2)
            invdiff += v / (1 + abs(i - j))
            maxp = max(maxp, v)
            psum[i + j] += v
            pdiff[abs(i - j)] += v
            sosv += (i - ux) ** 2 * v
            hxy1 -= v * math.log(q)
            cov += (i - ux) * (j - uy) * v
    correlation = 1.0 if sx < 1e-15 or sy < 1e-15 else cov / (sx * sy)
    sum_avg = sum(k * psum[k] for k in range(2, 2 * n + 1))
    sum_ent = -sum(psum[k] * math.log(psum[k]) for k in range(2, 2 * n + 1) if psum[k] > 0)
    sum_var = sum((k - sum_avg) ** 2 * psum[k] for k in range(2, 2 * n + 1))
    diff_ent = -sum(pdiff[k] * math.log(pdiff[k]) for k in range(n) if pdiff[k] > 0)
    diff_var = sum((k - diss) ** 2 * pdiff[k] for k in range(n))
    hx = -sum(v * math.log(v) for v in px if v > 0)
    hy = -sum(v * math.log(v) for v in py if v > 0)
    imc1 = (entropy - hxy1) / max(hx, hy) if max(hx, hy) > 0 else math.nan
    imc2 = math.sqrt(1 - math.exp(-2 * max(hxy2 - entropy, 0.0)))
    return [
        autoc, prom, shade, contrast, correlation, diff_ent, diff_var, diss, energy, entropy,
        homog, imc1, imc2, invdiff, maxp, sum_avg, sum_ent, sosv, sum_var,
    ]  # fmt: skip


def frame_features(doppler_bgr: np.ndarray) -> np.ndarray | None:
    """The 28 per-frame features, or None when the frame has no Doppler level."""
    from scipy import stats

    z = levels_of(doppler_bgr)
    values = z[~np.isnan(z)]
    if values.size == 0:
        return None
    per_angle = np.array([glcm_features_loops(c) for c in glcm_loops(z)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns, constant levels
        glcm = np.nanmean(per_angle, axis=0)
        kurtosis = float(stats.kurtosis(values, fisher=False))
        skewness = float(stats.skew(values))
    blurred = cv2.GaussianBlur(np.nan_to_num(z, nan=0.0), (3, 3), BLUR_SIGMA)
    mean = float(np.mean(values))
    first = [
        kurtosis, skewness, mean, float(np.std(values)), float(np.median(values)),
        float(np.percentile(values, 25)), float(np.percentile(values, 75)),
        VELOCITY_SCALE_M_S * float(np.max(blurred)) / LEVELS, VELOCITY_SCALE_M_S * mean / LEVELS,
    ]  # fmt: skip
    return np.concatenate([glcm, first])


def video_features(rows: list[np.ndarray]) -> np.ndarray:
    """57 values: NaN-aware mean and median over frames, then the largest maxVelocity."""
    m = np.array(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.concatenate(
            [np.nanmean(m, axis=0), np.nanmedian(m, axis=0), [np.nanmax(m[:, -2])]]
        )


@dataclass
class PilotResult:
    """What the pilot computed for one video, with where its time went (seconds)."""

    view: str
    label: int | None
    probability: float | None
    features: np.ndarray | None
    masks: list[np.ndarray] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    frames: int = 0


def analyse(
    frames: Iterable[np.ndarray], classifier, rhd_model, keep_masks: bool = False, seed: int = 0
) -> PilotResult:
    """Run the pilot's analysis over the frames of one video.

    Parameters
    ----------
    frames : iterable of uint8 BGR (H, W, 3) frames.
    classifier : ``radiomicsd.pipeline.rhd.view.ViewClassifier`` (already loaded).
    rhd_model : ``radiomicsd.pipeline.rhd.grade.RhdModel``.
    keep_masks : keep every frame's Doppler mask (for the agreement measurement).
    seed : OpenCV RNG seed before each frame's k-means.

    Returns
    -------
    PilotResult ; ``label`` is None when the video is not PLAX or has no texture.
    """
    seconds = {"segmentation": 0.0, "view": 0.0, "texture": 0.0}
    vote = view.ViewVote()
    rows: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    n = 0
    for frame in frames:
        n += 1
        t0 = time.perf_counter()
        seg = segmentation.segment_frame_pilot(frame, seed=seed)
        t1 = time.perf_counter()
        vote.add(classifier.predict(view.preprocess(seg.anatomic_bgr)[None]))
        t2 = time.perf_counter()
        feats = frame_features(seg.doppler_bgr)
        t3 = time.perf_counter()
        if feats is not None:
            rows.append(feats)
        if keep_masks:
            masks.append(seg.mask)
        seconds["segmentation"] += t1 - t0
        seconds["view"] += t2 - t1
        seconds["texture"] += t3 - t2
    result = vote.result()
    out = PilotResult(result.view, None, None, None, masks, seconds, n)
    if result.view == "PLAX" and rows:
        out.features = video_features(rows)
        if np.isfinite(out.features).all():
            grade = rhd_model.predict(out.features)
            out.label, out.probability = grade.label, grade.probability
    return out
