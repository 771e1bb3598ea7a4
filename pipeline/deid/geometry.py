"""Probe geometries: fit the shape of a live image to the pixels found to be live, check the
fit, and move its edges onto the image's own edge.

Ultrasound images have few shapes. A phased array draws a fan from a virtual apex (two
straight sides, an arc at the far end); a curved (convex) array an annular sector, the same with
an arc on top, the probe's face; a linear array a rectangle; dual displays put two of these side
by side. Each is a few numbers (:class:`Fan`, :class:`Rect`), fitted here to a region of
evidence: the sides from the region's left and right edge per row (straight lines; where they
meet is the apex, parallel sides are a rectangle), the radii from the region's near and far
edge per angle. A shape that covers the region badly (intersection over union below
:data:`MIN_IOU`) is no fit. When nothing fits, the region's convex hull (:class:`Hull`) is the
shape of last resort, held to the same check (odd formats: TEE, vector, a cut-out).

The evidence of live pixels is thinnest at an image's edges (dark far field, dark corners, a
nearly static image whose speckle barely moves). :func:`refine` therefore moves each edge of a
fitted shape to where the image ends: outward while most pixels just beyond it are lit (above
the screen's background next to the image), inward while most just inside are not. Sides move
by at most a few degrees or pixels (UI can sit beside an image); the far edge (depth) may
follow a dark far field to the frame's border.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.deid.noise import median

#: A fit whose intersection over union with the region's pixels is lower is no fit. The
#: region is evidence grown by morphology: its edges are a few pixels off, which costs a
#: shape of 200 px about 0.05; 0.85 leaves room for that and for dark notches, and is above
#: what the wrong shape scores (a rectangle over the SonoSite fan's region: 0.77; over a disc:
#: 0.79, so a disc falls back to its hull).
MIN_IOU = 0.85
#: A region is a fan with dark parts when at least this share of it lies within the fan
#: fitted to its convex hull and that fan and the hull overlap this much (intersection over
#: union): a fan's hull is the fan but for a few pixels of edge; a rectangle's, a disc's or
#: a notched rectangle's fan is far from it.
HULL_FAN_IOU = 0.95
#: ... and when the fan opens at least this many degrees: phased arrays open 60-90, convex
#: probes 40-75; a narrower trapezoid is too close to a rectangle (a linear image, whose hull
#: a fan of ~12 degrees also matches) for its hull to tell them apart.
HULL_FAN_OPENING = 30.0
#: The share of lit pixels along an edge that makes it part of the image.
LIT_SHARE = 0.5
#: An image's edge is where it falls below this share of its level just inside (a codec's
#: ringing beside a moving edge stays below it, a dark far field or corner does not).
EDGE_SHARE = 0.25


@dataclass(frozen=True)
class Fan:
    """An annular sector around ``apex`` (x, y) in pixels: angles ``left`` < ``right`` in
    degrees from the downward vertical (negative: left of it), radii ``inner`` < ``outer`` in
    pixels (``inner`` ~0 for a phased array's fan, the probe face's radius for a curved one).
    """

    apex: tuple[float, float]
    left: float
    right: float
    inner: float
    outer: float

    @property
    def kind(self) -> str:
        return "curved" if self.inner > 0.15 * self.outer else "fan"

    def mask(self, shape: tuple[int, int]) -> NDArray[np.bool_]:
        """Bool (H, W): pixel centres inside the sector.

        The test runs on the sector's box (:meth:`box`) only, with the same float32
        arithmetic per pixel as over the whole frame: the same pixels, for its share of it.
        """
        h, w = shape
        x0, y0, x1, y1 = self.box(shape)
        out = np.zeros(shape, bool)
        if x0 >= x1 or y0 >= y1:
            return out
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(self.apex[0])
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(self.apex[1])
        r2 = dx * dx + dy * dy
        inside = (r2 <= np.float32(self.outer) ** 2) & (r2 >= np.float32(self.inner) ** 2)
        # angle from the downward vertical within [left, right]: the two half-planes
        lo, hi = math.radians(self.left), math.radians(self.right)
        inside &= dx * np.float32(math.cos(lo)) - dy * np.float32(math.sin(lo)) >= 0
        inside &= dx * np.float32(math.cos(hi)) - dy * np.float32(math.sin(hi)) <= 0
        out[y0:y1, x0:x1] = inside
        return out

    def box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end exclusive, within an (H, W) frame: a box that holds every
        pixel of the sector, 2 px to spare (the whole frame for negative radii, or unless
        0 < right - left < 180 degrees: otherwise the two half-planes are not the angles
        between them)."""
        h, w = shape
        values = (*self.apex, self.left, self.right, self.inner, self.outer)
        if not all(math.isfinite(v) for v in values) or not 0 < self.right - self.left < 180 \
                or self.inner < 0 or self.outer < 0:
            return 0, 0, w, h
        # the extremes of an annular sector lie at its corners or where an arc crosses a
        # multiple of 90 degrees
        angles = [self.left, self.right] + [a for a in range(-360, 361, 90)
                                            if self.left < a < self.right]
        xs, ys = [], []
        for radius in (self.inner, self.outer):
            for angle in angles:
                xs.append(self.apex[0] + radius * math.sin(math.radians(angle)))
                ys.append(self.apex[1] + radius * math.cos(math.radians(angle)))
        pad = 2.0 + 1e-3 * abs(self.outer)
        return (max(0, math.floor(min(xs) - pad)), max(0, math.floor(min(ys) - pad)),
                min(w, math.ceil(max(xs) + pad) + 1), min(h, math.ceil(max(ys) + pad) + 1))


@dataclass(frozen=True)
class Rect:
    """A rectangle, columns ``x0`` .. ``x1`` and rows ``y0`` .. ``y1`` (end exclusive), pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    kind = "linear"

    def mask(self, shape: tuple[int, int]) -> NDArray[np.bool_]:
        out = np.zeros(shape, bool)
        x0, y0, x1, y1 = (int(round(v)) for v in (self.x0, self.y0, self.x1, self.y1))
        out[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
        return out


@dataclass(frozen=True)
class Hull:
    """The convex hull of a region: (N, 2) int32 points (x, y), the shape of last resort."""

    points: NDArray[np.int32]

    kind = "convex"

    def mask(self, shape: tuple[int, int]) -> NDArray[np.bool_]:
        out = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(out, self.points, 1)
        return out > 0


Shape = Fan | Rect | Hull


@dataclass(frozen=True)
class Lit:
    """Where the image is lit, bool (H, W) each: ``sharp`` (its temporal mean above the
    background: the sides' edge, where a codec's ringing beside a moving edge is not) and
    ``faint`` (its maximum too: a dark far field's rare speckle, for the depth)."""

    sharp: NDArray[np.bool_]
    faint: NDArray[np.bool_]
    #: the per-pixel maximum above the background beside the image, float32 (H, W): the far
    #: edge ends where it falls below ``EDGE_SHARE`` of its level a few pixels inside
    level: NDArray[np.float32] | None = None

    def deep(self, xs: NDArray[np.float64], ys: NDArray[np.float64],
             inside: tuple[NDArray[np.float64], NDArray[np.float64]]) -> float:
        """Share of faintly lit points (xs, ys) that also reach ``EDGE_SHARE`` of the level at
        the ``inside`` points (-1 when none is in the frame)."""
        if self.level is None:
            return _share(self.faint, xs, ys)
        h, w = self.faint.shape
        xi, yi = (np.clip(np.round(v).astype(np.intp), 0, n - 1)
                  for v, n in ((inside[0], w), (inside[1], h)))
        floor = EDGE_SHARE * median(self.level[yi, xi]) if xi.size else 0.0
        return _share(self.faint & (self.level >= floor), xs, ys)


@dataclass(frozen=True)
class Fitted:
    """A shape and how well it covers the region it was fitted to (intersection over union)."""

    shape: Shape
    iou: float


def iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Intersection over union of two bool masks of one shape (0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b)) / union if union else 0.0


def _edges(region: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp],
                                               NDArray[np.intp]]:
    """Rows holding the region, and its first and last column on each of them."""
    rows = np.nonzero(region.any(axis=1))[0]
    sub = region[rows]
    left = sub.argmax(axis=1)
    right = region.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    return rows, left, right


def _line(ys: NDArray[np.intp], xs: NDArray[np.intp]) -> tuple[float, float] | None:
    """x = a + b * y through (ys, xs), least squares, twice dropping points more than 2 px
    (or 2.5 median deviations) off; None with fewer than 8 points."""
    y, x = ys.astype(np.float64), xs.astype(np.float64)
    for _ in range(3):
        if y.size < 8:
            return None
        b, a = np.polyfit(y, x, 1)
        off = np.abs(x - (a + b * y))
        keep = off <= max(2.0, 2.5 * median(off))
        if keep.all():
            break
        y, x = y[keep], x[keep]
    return float(a), float(b)


def fit_rect(region: NDArray[np.bool_]) -> Rect | None:
    """The rectangle whose sides are the region's median edges over its central rows and
    columns (the middle 80%): notches and bumps at the edge do not move it."""
    rows, left, right = _edges(region)
    cols, top, bottom = _edges(region.T)
    if rows.size < 4 or cols.size < 4:
        return None
    r = slice(rows.size // 10, rows.size - rows.size // 10)
    c = slice(cols.size // 10, cols.size - cols.size // 10)
    return Rect(median(left[r]), median(top[c]), median(right[r]) + 1, median(bottom[c]) + 1)


def fit_fan(region: NDArray[np.bool_]) -> Fan | None:
    """The annular sector whose sides are lines through the region's left and right edges
    (from its top to its widest row) and whose radii are the median near and far edge over
    24 angles; None where the sides do not converge below 2 degrees of opening."""
    rows, left, right = _edges(region)
    if rows.size < 16:
        return None
    width = right - left
    widest = rows[width >= 0.98 * width.max()]
    top, wide = int(rows[0]), int(median(widest))
    span = wide - top
    use = (rows >= top + 0.08 * span) & (rows <= wide - 0.08 * span)
    left_side, right_side = _line(rows[use], left[use]), _line(rows[use], right[use] + 1)
    if left_side is None or right_side is None:
        return None
    (al, bl), (ar, br) = left_side, right_side
    if br - bl < 2 * math.tan(math.radians(1.0)):
        return None  # parallel sides: a rectangle, or no apex at all
    ay = -(ar - al) / (br - bl)
    ax = al + bl * ay
    lo, hi = math.degrees(math.atan(bl)), math.degrees(math.atan(br))
    ys, xs = np.nonzero(region[::2, ::2])
    dx, dy = xs * 2.0 - ax, ys * 2.0 - ay
    rho, phi = np.hypot(dx, dy), np.degrees(np.arctan2(dx, dy))
    bins = np.linspace(lo, hi, 25)
    near, far = [], []
    for b0, b1 in zip(bins[:-1], bins[1:]):
        sel = rho[(phi >= b0) & (phi < b1)]
        if sel.size:
            near.append(float(sel.min()))
            far.append(float(sel.max()))
    if len(far) < 12:
        return None
    inner = max(0.0, median(near) - 1.0)
    outer = median(far) + 1.0
    if outer <= inner:
        return None
    return Fan((float(ax), float(ay)), lo, hi, inner, outer)


def _outline_score(region: NDArray[np.bool_], seen: NDArray[np.bool_], fan: Fan,
                   drawn: NDArray[np.bool_]) -> float:
    """A fan with dark parts (its sides, a cavity open to the far arc) gives evidence of its
    outline only. When it opens wide (:data:`HULL_FAN_OPENING`) around an apex no farther
    from the image than the image is deep (a convex probe's face, 40-60 mm, is shorter than
    the 150-250 mm it images; an apex far above makes a flat annulus that matches the outline
    of a rectangle, or of two side by side), the bool (H, W) ``region`` lies within its
    ``drawn`` mask and the region's hull ``seen`` is that fan (both :data:`HULL_FAN_IOU`): the
    hull's intersection over union with it; else 0."""
    if fan.right - fan.left < HULL_FAN_OPENING or fan.inner > fan.outer - fan.inner:
        return 0.0
    if np.count_nonzero(region & drawn) < HULL_FAN_IOU * np.count_nonzero(region):
        return 0.0
    score = iou(seen, drawn)
    return score if score >= HULL_FAN_IOU else 0.0


def fit(region: NDArray[np.bool_], within: NDArray[np.bool_] | None = None) -> Fitted | None:
    """The best of a fan, an annular sector and a rectangle for a bool (H, W) region (holes
    filled), or its convex hull when neither reaches :data:`MIN_IOU`; None when nothing does.
    ``within``: bool (H, W), where the image can be seen (DICOM image regions cut it); shapes
    are scored there only.
    """
    best: Fitted | None = None
    fan = fit_fan(region)
    for shape in (fit_rect(region), fan):
        best = _better(best, shape, region, within)
    if best is not None and best.iou >= MIN_IOU:
        return best
    ys, xs = np.nonzero(region)
    if xs.size < 3:
        return None
    hull = Hull(cast(NDArray[np.int32],  # cv2's stubs: any array; the hull keeps int32
                     cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32))))
    convex = hull.mask(region.shape)
    seen = convex if within is None else convex & within
    # a fan's sides fitted to the region's hull: a dark stretch along one side (no evidence
    # there) notches the region's edge over many rows, which drags the line fitted to that
    # edge, not the hull's; and a fan with dark parts may be judged by its outline
    for shape in (fan, fit_fan(convex)):
        best = _better(best, shape, region, within, seen=seen)
    if best is not None and best.iou >= MIN_IOU:
        return best
    score = iou(region, convex)
    return Fitted(hull, score) if score >= MIN_IOU else None


def _better(best: Fitted | None, shape: Fan | Rect | None, region: NDArray[np.bool_],
            within: NDArray[np.bool_] | None, *,
            seen: NDArray[np.bool_] | None = None) -> Fitted | None:
    """``best`` or ``shape`` fitted to the bool (H, W) ``region``, whichever covers it better
    (seen ``within``; a fan also by its outline when the region's hull ``seen`` is given)."""
    if shape is None:
        return best
    drawn = shape.mask(region.shape)
    if within is not None:
        drawn &= within
    score = iou(region, drawn)
    if seen is not None and isinstance(shape, Fan):
        score = max(score, _outline_score(region, seen, shape, drawn))
    # a fan must beat the rectangle clearly: a trapezoid of tiny opening is a rectangle
    if best is None or score > best.iou + 0.01:
        return Fitted(shape, score)
    return best


def _share(lit: NDArray[np.bool_], xs: NDArray[np.float64], ys: NDArray[np.float64]) -> float:
    """Share of lit pixels at the in-frame points (xs, ys); -1 when no point is in the frame."""
    h, w = lit.shape
    xi, yi = np.round(xs).astype(np.intp), np.round(ys).astype(np.intp)
    ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    if not ok.any():
        return -1.0
    return float(np.count_nonzero(lit[yi[ok], xi[ok]])) / int(np.count_nonzero(ok))


def _walk(share_at: Callable[[float], float], start: float, step: float, limit_out: float,
          limit_in: float) -> float:
    """The edge position along one parameter: from ``start``, outward by ``step`` while the
    share just beyond stays lit, at most ``limit_out``; if the share at ``start`` is not lit,
    inward instead, at most ``limit_in``."""
    at = start
    if share_at(at) >= LIT_SHARE:
        while abs(at + step - start) <= limit_out and share_at(at + step) >= LIT_SHARE:
            at += step
        return at
    while abs(at - step - start) <= limit_in:
        at -= step
        if share_at(at) >= LIT_SHARE:
            return at
    return start


def _arc(fan: Fan, r: float, lit: NDArray[np.bool_]) -> float:
    n = max(8, int(r * math.radians(fan.right - fan.left)))
    phi = np.radians(np.linspace(fan.left, fan.right, n)[1:-1])
    return _share(lit, fan.apex[0] + r * np.sin(phi), fan.apex[1] + r * np.cos(phi))


def _deep_arc(fan: Fan, r: float, lit: Lit) -> float:
    n = max(8, int(r * math.radians(fan.right - fan.left)))
    phi = np.radians(np.linspace(fan.left, fan.right, n)[1:-1])
    sx, sy = np.sin(phi), np.cos(phi)
    ax, ay = fan.apex
    inside = (ax + (r - 8) * sx, ay + (r - 8) * sy)
    return lit.deep(ax + r * sx, ay + r * sy, inside)


def _ray(fan: Fan, deg: float, lit: NDArray[np.bool_]) -> float:
    r0 = max(fan.inner, 0.1 * fan.outer)
    r = np.linspace(r0, fan.outer - 1, max(8, int(fan.outer - r0)))
    phi = math.radians(deg)
    return _share(lit, fan.apex[0] + r * math.sin(phi), fan.apex[1] + r * math.cos(phi))


def refine_fan(fan: Fan, lit: Lit) -> Fan:
    """Move the fan's sides (at most 3 degrees) and near arc (at most 10% of the depth) onto
    the edge of the sharply lit pixels, its far arc (to the frame's border) onto that of the
    faintly lit ones."""
    step = math.degrees(1.0 / fan.outer)  # one pixel at the far arc
    sharp = lit.sharp
    fan = replace(fan, left=-_walk(lambda a: _ray(fan, -a, sharp), -fan.left, step, 3.0, 3.0))
    fan = replace(fan, right=_walk(lambda a: _ray(fan, a, sharp), fan.right, step, 3.0, 3.0))
    h, w = sharp.shape
    reach = math.hypot(max(fan.apex[0], w - fan.apex[0]), max(fan.apex[1], h - fan.apex[1]))
    outer = _walk(lambda r: _deep_arc(fan, r, lit), fan.outer - 1, 1.0,
                  max(0.0, reach - fan.outer), 0.1 * fan.outer) + 1
    fan = replace(fan, outer=outer)
    if fan.inner > 1:
        inner = -_walk(lambda r: _arc(fan, -r, sharp), -(fan.inner + 1), 1.0, 0.1 * fan.outer,
                       0.1 * fan.outer) - 1
        fan = replace(fan, inner=max(0.0, inner))
    return fan


def refine_rect(rect: Rect, lit: Lit, *, x_room: tuple[float, float] = (8, 8)) -> Rect:
    """Move the rectangle's sides onto the edge of the sharply lit pixels, left and right by at
    most ``x_room`` pixels outward, the top by at most 8; the bottom (depth) onto that of the
    faintly lit ones, to the frame's border; each at most 10% of the rectangle inward."""
    sharp = lit.sharp
    h, w = sharp.shape
    x0, y0, x1, y1 = rect.x0, rect.y0, rect.x1, rect.y1
    ys = np.arange(int(y0) + 2, max(int(y0) + 3, int(y1) - 2), dtype=np.float64)
    xs = np.arange(int(x0) + 2, max(int(x0) + 3, int(x1) - 2), dtype=np.float64)
    inward_x, inward_y = 0.1 * (x1 - x0), 0.1 * (y1 - y0)

    def column(x: float) -> float:
        return _share(sharp, np.full_like(ys, x), ys)

    def row(y: float) -> float:
        return _share(sharp, xs, np.full_like(xs, y))

    def deep_row(y: float) -> float:
        return lit.deep(xs, np.full_like(xs, y), (xs, np.full_like(xs, y - 8)))

    left = -_walk(lambda x: column(-x), -x0, 1.0, x_room[0], inward_x)
    right = _walk(column, x1 - 1, 1.0, x_room[1], inward_x) + 1
    top = -_walk(lambda y: row(-y), -y0, 1.0, 8.0, inward_y)
    bottom = _walk(deep_row, y1 - 1, 1.0, max(0.0, h - y1), inward_y) + 1
    return Rect(left, top, right, bottom)


def refine(shape: Shape, lit: Lit) -> Shape:
    """:func:`refine_fan` or :func:`refine_rect`; a hull is kept as it is."""
    if isinstance(shape, Fan):
        return refine_fan(shape, lit)
    if isinstance(shape, Rect):
        return refine_rect(shape, lit)
    return shape


def filled(region: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """uint8 0/255 ``region`` with its holes (dark blood pools, shadows) filled."""
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(region)
    cv2.drawContours(out, contours, -1, 255, thickness=cv2.FILLED)
    return out
