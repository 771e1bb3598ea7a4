"""The live-image detector: where on a screen nobody configured the ultrasound image lies.

From the look-ahead frames of a clip (or its one frame):

1. **Noise** (:mod:`.noise`): what the capture adds to a static screen, in its quietest corner.
2. **Evidence** (:mod:`.evidence`): motion above that noise, and speckle texture of the
   temporal mean (flat UI fills, ramps and glyph strokes are not texture; noise averages
   out, persistent speckle does not). One frame has texture only. A screen with less dark
   ground than ``1 - max_fraction`` has no screen around an image (a cut-out): refused.
3. **Regions**: connected parts of the evidence together with the *lit* extent they touch
   (above the screen's background in the mean or the maximum; in a noise-free digital cine,
   changing too, so that compression ringing around static text is not lit), holes filled: a
   dark far field or dark corner that gave no evidence belongs to its image. Lit parts without
   evidence are UI panels; lit runs across the whole width are bands (header, footer, ECG
   strip) and are cut off. The largest region is the image; a second of similar height
   beside it makes a dual display; any other region of at least a quarter of the image's
   size makes the layout ambiguous: refused.
4. **Geometry** (:mod:`.geometry`): a fan, an annular sector or a rectangle is fitted to each
   region cut to its sharply lit extent and checked; no fit, refused. Its edges are then
   moved onto the image's own edge: sides where the mean falls below a quarter of the image's
   level along its rim, the far edge where even the maximum does (a dark far field is kept).
5. **Plausibility**: an image larger than ``max_fraction`` of an unbounded frame is more than a
   probe draws on a screen with its UI around: refused.
6. **Text inside** (:mod:`.glyphs`): burned-in strokes inside the kept area (and in its margin)
   are blacked out; an area with more text-like strokes than annotations have, or text
   running into image that clips at white, is refused.

Refusals carry the proposed keep-mask; everything inside the keep-mask is exactly as decoded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.deid import evidence, geometry
from radiomicsd.pipeline.deid.geometry import Shape
from radiomicsd.pipeline.deid.glyphs import MAX_GLYPH_SHARE, Glyphs, find_glyphs
from radiomicsd.pipeline.deid.noise import (
    MEAN_ABS_DIFF_PER_SIGMA,
    Running,
    frame_noise,
    median,
    spatial_noise,
    temporal_noise,
)
from radiomicsd.pipeline.frame import box_around

U8 = NDArray[np.uint8]
#: A second region at least this share of the largest one's size is an image too, or a rival.
RIVAL_SHARE = 0.25
#: A region is an image when evidence covers at least this share of it (the rest may be a
#: dark far field that is lit but neither moves nor shows texture, as on a dark sector).
EVIDENCE_SHARE = 0.1
#: A region is cut to its lit extent when at least this share of it is lit.
TIGHT_SHARE = 0.8
#: A band spans at least this share of the frame's (or the bounds') width.
BAND_WIDTH = 0.9
#: More pixels than this (at 480 rows) beside found strokes where the image clips: refused.
HIDDEN_PX = 4
#: A quietest corner changing less than this (mean absolute change, grey levels) is a
#: noise-free digital capture: there, any change at all is the image's.
DIGITAL_NOISE = 0.5
#: A screen puts its image on a dark ground (black; an analogue capture's grey ~20): mean
#: levels at or below this are ground. A frame with less ground than ``1 - max_fraction``
#: has no screen around an image (a cut-out of one): refused.
DARK_LEVEL = 40
#: Lit: this many noise sigmas above the background beside the image (at least 1 level).
LIT_SIGMAS = 3.0


@dataclass(frozen=True)
class LiveImage:
    """The detector's answer. ``keep`` uint8 (H, W): 255 where pixels are kept; ``evidence``
    ``motion`` (several frames) or ``structure`` (one); ``geometry`` ``fan``, ``curved``,
    ``linear``, ``convex`` or ``dual`` (two side by side); ``glyph_pixels``: stroke pixels
    of burned-in text blacked out inside; ``refusal``: why a person must look (``keep`` is
    then the proposal), or None."""

    keep: U8
    evidence: str
    geometry: str
    shapes: tuple[Shape, ...]
    glyph_pixels: int = 0
    refusal: str | None = None


@dataclass(frozen=True)
class Thresholds:
    """The settings the detector takes from :class:`~.mask.MaskSettings`."""

    motion_floor: float = 1.5
    margin_px: int = 3
    min_fraction: float = 0.05
    max_fraction: float = 0.8


def _above(image: U8, background: float, noise: float | None = None) -> NDArray[np.bool_]:
    """Bool (H, W): pixels above ``background`` by ``LIT_SIGMAS`` of ``image``'s own noise
    (at least 1 grey level; ``noise``: its :func:`spatial_noise`, if known already).

    The level is compared as float32 (as the grey levels converted to float32 were): a uint8
    level reaches it when it reaches its float32 value rounded up, compared without the
    conversion."""
    sigma = spatial_noise(image) if noise is None else noise
    level = math.ceil(float(np.float32(background + max(1.0, LIT_SIGMAS * sigma))))
    if level > 255:
        return np.zeros(image.shape, bool)
    out: NDArray[np.bool_] = image >= max(0, level)
    return out


@dataclass(frozen=True)
class Views:
    """What the look-ahead shows per pixel: the temporal ``mean`` and maximum (``high``) grey,
    uint8 (H, W); ``stirs`` bool (H, W), pixels that change at all over the frames, when the
    capture is noise-free (a digital export: its static screen, compression ringing around
    text included, never changes), else None."""

    mean: U8
    high: U8
    stirs: NDArray[np.bool_] | None = None
    #: the spatial noise of ``mean`` and ``high`` (by name), measured once (:meth:`noise`)
    known_noise: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    #: what :meth:`above` found, by view and background: the detector asks for the same
    #: level of the same view more than once (the faint and the sharp lit extent)
    _lit_cache: dict[tuple[str, float], NDArray[np.bool_]] = field(
        default_factory=dict, compare=False, repr=False)

    def noise(self, which: str) -> float:
        """:func:`spatial_noise` of the ``mean`` or the ``high`` view, computed once."""
        if which not in self.known_noise:
            self.known_noise[which] = spatial_noise(getattr(self, which))
        return self.known_noise[which]

    def above(self, which: str, background: float) -> NDArray[np.bool_]:
        """:func:`_above` of the ``mean`` or the ``high`` view (computed once per level; do
        not modify the answer)."""
        key = (which, background)
        if key not in self._lit_cache:
            self._lit_cache[key] = _above(getattr(self, which), background, self.noise(which))
        return self._lit_cache[key]

    def lit(self, background: tuple[float, float], *, faint: bool = True) -> NDArray[np.bool_]:
        """Bool (H, W): above the ``background`` level of the mean (see :func:`_above`) or,
        with ``faint``, of the maximum (dark fresh speckle, rarely above 0, but also a
        codec's ringing beside a moving edge); in a digital cine, changing too."""
        lit = self.above("mean", background[0])
        if faint:
            lit = lit | self.above("high", background[1])
        elif self.stirs is None:
            lit = lit.copy()
        return lit if self.stirs is None else lit & self.stirs


def _regions(strong: U8, support: U8, area: int, box: tuple[int, int, int, int],
             min_fraction: float) -> tuple[list[NDArray[np.bool_]], str | None]:
    """The image region(s), and a refusal reason or None.

    A region is a connected part of the ``strong`` evidence together with the lit
    ``support`` it touches (dark far fields and static corners hold little evidence), holes
    filled; it must cover at least ``min_fraction`` of ``area`` (the pixels the image may lie
    in, within ``box`` (x0, y0, x1, y1)) and hold evidence on ``EVIDENCE_SHARE`` of it (a lit
    UI panel holds none). Bands across the screen's width at the box's top or bottom are UI."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(strong | support, connectivity=8)
    weight = np.bincount(labels[strong > 0], minlength=n)
    x0, y0, x1, y1 = box
    candidates = []
    for i in range(1, n):
        x, y, w, h, size = (int(v) for v in stats[i])
        band = w >= BAND_WIDTH * strong.shape[1] and h <= 0.2 * (y1 - y0) and \
            (y <= y0 + 1 or y + h >= y1 - 1)
        if size >= min_fraction * area and weight[i] >= EVIDENCE_SHARE * size and not band:
            candidates.append((size, i, x, y, w, h))
    if not candidates:
        return [], None
    candidates.sort(reverse=True)
    size, i, x, y, w, h = candidates[0]
    chosen = [i]
    rivals = [c for c in candidates[1:] if c[0] >= RIVAL_SHARE * size]
    if len(rivals) == 1:
        _, j, xj, yj, wj, hj = rivals[0]
        overlap = min(y + h, yj + hj) - max(y, yj)
        beside = xj >= x + w or xj + wj <= x
        if beside and overlap >= 0.6 * min(h, hj) and 0.7 <= hj / h <= 1.0 / 0.7:
            chosen.append(j)
            rivals = []
    regions = [geometry.filled((labels == k).astype(np.uint8) * 255) > 0 for k in chosen]
    if rivals:
        return regions, f"{len(rivals) + 1} image-like regions and no side-by-side pair"
    return regions, None


def _ring(model: NDArray[np.bool_], allowed: NDArray[np.bool_], u: float) -> NDArray[np.bool_]:
    """Bool (H, W): the ring 4-10 px (scaled) outside ``model``: the screen beside the image."""
    ring: NDArray[np.bool_] = evidence.grown(model, 10 * u) & ~evidence.grown(model, 4 * u)
    return ring & allowed


def _lit(views: Views, model: NDArray[np.bool_], allowed: NDArray[np.bool_], u: float, *,
         faint: bool, ring: NDArray[np.bool_] | None = None) -> NDArray[np.bool_]:
    """Bool (H, W): lit pixels (:meth:`Views.lit`) above the background found in a ring 4-10
    px (scaled) outside ``model`` (its median). Sharp (not ``faint``) lit pixels must also
    reach ``geometry.EDGE_SHARE`` of the image's median level along its rim (6 px inside): a codec's
    ringing beside a moving edge stays below that, a dark corner of the image does not."""
    if ring is None:
        ring = _ring(model, allowed, u)
    ground = (median(views.mean[ring]), median(views.high[ring])) \
        if ring.any() else (0.0, 0.0)
    lit = views.lit(ground, faint=faint) & allowed
    if not faint:
        rim = model & ~evidence.shrunk(model, 6 * u) & allowed
        if rim.any():
            level = median(views.mean[rim]) - ground[0]
            lit &= views.mean.astype(np.float32) >= ground[0] + geometry.EDGE_SHARE * level
    return lit


def _refined(fits: list[geometry.Fitted], lit: geometry.Lit) -> list[geometry.Shape]:
    """Each fitted shape moved onto the image's edge; two rectangles side by side do not grow
    into each other (at most half the gap between them)."""
    shapes = [f.shape for f in fits]
    if len(shapes) == 2 and all(isinstance(s, geometry.Rect) for s in shapes):
        a, b = sorted(cast(list[geometry.Rect], shapes), key=lambda r: r.x0)
        gap = max(0.0, (b.x0 - a.x1) / 2)
        return [geometry.refine_rect(a, lit, x_room=(8, min(8, gap))),
                geometry.refine_rect(b, lit, x_room=(min(8, gap), 8))]
    return [geometry.refine(s, lit) for s in shapes]


def _modes(views: Views, allowed: NDArray[np.bool_]) -> tuple[float, float]:
    """The most common level of the mean and of the maximum view within ``allowed``: the
    screen's background."""
    where = allowed.astype(np.uint8)

    def mode(image: U8) -> float:
        counts = cv2.calcHist([image], [0], where, [256], [0, 256])  # a bincount over allowed
        return float(np.argmax(np.ravel(counts)))

    return mode(views.mean), mode(views.high)


def _support(views: Views, allowed: NDArray[np.bool_], u: float, *, faint: bool = True,
             background: tuple[float, float] | None = None) -> U8:
    """uint8 0/255: the lit extent of everything on the screen, strokes and full-width bands
    removed. Lit is above the screen's most common level (its background, :func:`_modes`,
    unless given), as in :func:`_lit`; rows lit without a break across ``BAND_WIDTH`` of the
    screen's width are UI bands; an opening wider than strokes drops text and traces. Regions
    of it that hold no evidence are UI panels, never kept."""
    if background is None:
        background = _modes(views, allowed)
    lit = views.lit(background, faint=faint) & allowed
    out = lit.astype(np.uint8) * 255
    # a band is one unbroken lit run across the width (an image row beside UI has gaps)
    span = max(1, int(BAND_WIDTH * allowed.shape[1]))  # across the screen, not the bounds
    out[_has_run(lit, span)] = 0
    return evidence.opened(out > 0, 3 * u).astype(np.uint8) * 255


def _has_run(lit: NDArray[np.bool_], span: int) -> NDArray[np.bool_]:
    """Bool (H,): rows of ``lit`` with ``span`` lit pixels in a row (an erosion by a 1 x
    ``span`` line, by running sums: its cost does not grow with ``span``)."""
    h, w = lit.shape
    found = np.zeros(h, bool)
    if span > w:
        return found
    # only rows with ``span`` lit pixels in all can hold such a run (on a screen: few)
    rows = np.nonzero(np.count_nonzero(lit, axis=1) >= span)[0]
    if rows.size:
        sums = np.zeros((rows.size, w + 1), np.int32)
        np.cumsum(lit[rows], axis=1, dtype=np.int32, out=sums[:, 1:])
        found[rows] = ((sums[:, span:] - sums[:, :-span]) == span).any(axis=1)
    return found


def _evidence(frames: Sequence[U8], motion_floor: float,
              within: tuple[slice, slice] | None = None) -> tuple[NDArray[np.bool_], Views,
                                                                   float]:
    """Motion and texture evidence (bool (H, W)); the :class:`Views`; the frame-to-frame noise
    sigma (grey levels; for one frame its spatial noise). ``within``: the box (rows, columns)
    the image may lie in: texture is looked for there only."""
    first = cast(U8, cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY))
    if len(frames) == 1:
        sigma = spatial_noise(first)
        return evidence.texture(first, sigma=sigma, within=within), \
            Views(first, first, known_noise={"mean": sigma, "high": sigma}), sigma
    stats = Running(first)
    for f in frames[1:]:  # one grey at a time: memory does not grow with the look-ahead
        stats.add(cast(U8, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)))
    # texture of the temporal mean: noise falls by sqrt(N), persistent speckle stays
    mean = cast(U8, np.round(stats.mean).astype(np.uint8))
    mean_noise = spatial_noise(mean)
    found = evidence.texture(mean, sigma=mean_noise, within=within)
    change = stats.change()
    noise = temporal_noise(change)
    found |= evidence.motion(change, noise=noise, floor=motion_floor)
    stirs = stats.high > stats.low if noise < DIGITAL_NOISE else None
    return found, Views(mean, stats.high, stirs, known_noise={"mean": mean_noise}), \
        noise / MEAN_ABS_DIFF_PER_SIGMA


def _tight(region: NDArray[np.bool_], support: U8) -> NDArray[np.bool_]:
    """The region cut to its lit extent (the evidence's windows blur its edge outward by a few
    pixels; the lit pixels end where the image does), holes filled; the region itself where
    less than ``TIGHT_SHARE`` of it is lit (an image under noise, lit only in patches)."""
    cut = region & (support > 0)
    if np.count_nonzero(cut) < TIGHT_SHARE * np.count_nonzero(region):
        return region
    return geometry.filled(cut.astype(np.uint8) * 255) > 0


def _shapes(regions: list[NDArray[np.bool_]], views: Views, allowed: NDArray[np.bool_],
            u: float) -> list[geometry.Shape] | None:
    """The fitted, refined shape of each region; None when one of them fits no geometry."""
    fits = [geometry.fit(r, allowed) for r in regions]
    if any(f is None for f in fits):
        return None
    fitted = cast(list[geometry.Fitted], fits)
    model = np.zeros(allowed.shape, bool)
    for f in fitted:
        model |= f.shape.mask(allowed.shape)
    ring = _ring(model, allowed, u)
    ground = median(views.high[ring]) if ring.any() else 0.0
    level = views.high.astype(np.float32) - np.float32(ground)
    return _refined(fitted, geometry.Lit(_lit(views, model, allowed, u, faint=False, ring=ring),
                                         _lit(views, model, allowed, u, faint=True, ring=ring),
                                         level))


def _doubt(share: float, glyphs: Glyphs, kept: int, thresholds: Thresholds, u: float, *,
           bounded: bool) -> str | None:
    """Why the kept area cannot be vouched for, or None."""
    if not bounded and share > thresholds.max_fraction:
        return (f"the image would cover {share:.0%} of the frame, more than a probe's image "
                f"beside its screen's UI ({thresholds.max_fraction:.0%})")
    if glyphs.strokes > MAX_GLYPH_SHARE * kept:
        return "the kept area holds more text-like strokes than annotations have"
    if glyphs.hidden > HIDDEN_PX * u * u:
        return "burned-in text over image that clips at white: where its strokes end is unsure"
    return None


def find_live_image(frames: Sequence[U8], thresholds: Thresholds = Thresholds(), *,
                    bounds: U8 | None = None,
                    full: Sequence[U8] | None = None) -> LiveImage | None:
    """Find the live image in a clip's first BGR (H, W, 3) ``frames`` (at least one).

    ``bounds``: uint8 (H, W), 255 where the image may lie, or None. Returns None when no
    region of at least ``min_fraction`` of the frame holds evidence; within ``bounds``, a
    refusal that proposes the bounds (the file says an image is there).
    ``full``: the same frames at full resolution when ``frames`` are scaled down from them
    (large frames are searched at reduced resolution): the image is found on ``frames``, the
    text inside it on ``full`` (a 1 px stroke or a caliper's dot over bright tissue fades
    below any contrast when scaled down), and ``keep`` is then at full resolution, its edge
    eroded by the width of a searched pixel (a refusal before the text search keeps its
    proposal at the searched resolution).
    """
    shape = frames[0].shape[:2]
    u = evidence.unit(shape)
    allowed = np.ones(shape, bool) if bounds is None else bounds > 0
    within = None
    if bounds is not None:
        within = box_around(allowed)
    found, views, sigma = _evidence(frames, thresholds.motion_floor, within)
    found &= allowed
    if bounds is not None:
        views = Views(cast(U8, cv2.bitwise_and(views.mean, bounds)),
                      cast(U8, cv2.bitwise_and(views.high, bounds)), views.stirs)
    kind = "motion" if len(frames) > 1 else "structure"
    background = _modes(views, allowed)  # for the faint and the sharp support alike
    support = _support(views, allowed, u, background=background)
    area = int(np.count_nonzero(allowed))
    dark = int(np.count_nonzero((views.mean <= DARK_LEVEL) & allowed)) / max(1, area)
    if bounds is None and dark < 1 - thresholds.max_fraction:
        everything = allowed.astype(np.uint8) * 255
        return LiveImage(everything, kind, "none", (), refusal=(
            f"only {dark:.0%} of the frame is dark: no screen around an image (a cut-out?)"))
    if area == 0:
        raise ValueError("the bounds hold no pixel")
    x, y, w, h = cv2.boundingRect(allowed.view(np.uint8))
    box = (x, y, x + w, y + h)
    regions, rivalry = _regions(evidence.clean(found), support, area, box,
                                thresholds.min_fraction)
    if not regions:
        if bounds is None:
            return None
        # the file says where its image is, but too little of it shows to fit (a dark sector
        # lit only in its near field): a person looks at the regions, rather than a refusal
        # with nothing to look at
        return LiveImage(bounds.copy(), kind, "none", (), refusal=(
            "the DICOM image regions hold too little image to fit a probe geometry "
            "(a dark image?)"))
    sharp = _support(views, allowed, u, faint=False, background=background)
    shapes = _shapes([_tight(r, sharp) for r in regions], views, allowed, u)
    if shapes is None:
        hull = np.zeros(shape, np.uint8)
        for r in regions:
            hull |= r.astype(np.uint8) * 255
        return LiveImage(hull, kind, "none", (), refusal="no probe geometry fits the image")
    model = np.zeros(shape, bool)
    for s in shapes:
        model |= s.mask(shape)
    model &= allowed
    keep = model
    if thresholds.margin_px:
        keep = evidence.grown(model, thresholds.margin_px) & allowed
    share = np.count_nonzero(model) / float(area)
    if full is not None:  # the text inside is looked for at full resolution
        size = full[0].shape[1::-1]
        model, keep = (cv2.resize(m.view(np.uint8), size, interpolation=cv2.INTER_NEAREST)
                       for m in (model, keep))
        # scaled back, the kept area's edge is as uncertain as a searched pixel is wide: the
        # doubt goes to the blacked-out side
        side = 2 * math.ceil(size[0] / shape[1]) + 1
        keep = cv2.erode(keep, np.ones((side, side), np.uint8)) > 0
        model = model > 0
        frames, u = full, evidence.unit((size[1], size[0]))
        sigma = frame_noise(full)
    glyphs = find_glyphs(frames, keep, model, sigma=sigma)
    keep = keep & ~glyphs.blackout
    refusal = rivalry or _doubt(share, glyphs, int(np.count_nonzero(keep)), thresholds, u,
                                bounded=bounds is not None)
    name = "dual" if len(shapes) == 2 else shapes[0].kind
    return LiveImage(keep.astype(np.uint8) * 255, kind, name, tuple(shapes), glyphs.strokes,
                     refusal)
