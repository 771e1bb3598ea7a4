"""Burned-in text and markers inside the kept area: found stroke by stroke and blacked out
with a small margin, so the image around them stays as decoded.

Annotations typed over an image (labels, measurements, calipers), depth numbers and markers
that hug its edge are drawn in a bright ink (white, yellow, green: the brightest channel is
what is looked at) in thin strokes, and they stay put while the image moves. A candidate
stroke pixel stands out of its neighbourhood (a white top-hat wider than strokes) in the
per-pixel *minimum* over the look-ahead frames (moving speckle's minimum is dark and smooth,
static ink keeps its brightness) and in their mean, and it is *static*: its mean change from
frame to frame is within the noise, or far smaller than the median change around it (an
anti-aliased stroke pixel shows the moving image through its partial coverage).

What is then blacked out depends on how much the evidence says:

- in the margin band (kept, but outside the fitted probe geometry: background, if the fit is
  right), every static stroke that stands out of the background and is not joined to the
  image, with the faint static pixels around it: nothing lit belongs there but UI (a stroke
  just beyond the band counts too: only its fringe may reach into it);
- over an image that moves (most of what stands out in its first frame changes over the
  look-ahead), every static stroke of a few pixels that is thin (not a blob) and is not white
  tissue that clips (:func:`_unclipped`); then, grown along weak pixels (bright in the
  minimum, not static) by a few pixels, and within each text line's box: a glyph's parts
  over bright or flickering image;
- over an image that does not move (one frame, a nearly static cine), only strokes that form
  *text lines* (:func:`_text_lines`), which bright speckle grains do not.

The strokes are grown by :data:`GLYPH_MARGIN` pixels (scaled with the frame) to take the
anti-aliased fringe with them. The caller refuses a kept area in which this finds more than
:data:`MAX_GLYPH_SHARE` of its pixels (not an image with annotations on it), or strokes that
run into image clipping at white (:attr:`Glyphs.hidden`: ink and image look alike there).

Blacked out stroke by stroke, a line of text would stay legible as its black silhouette on
the image. So the blackout is closed along the line before it is grown (:data:`JOIN_PX` wide,
:data:`JOIN_ROWS` high): the gaps between a line's glyphs and the counters within them go
with the strokes, and holes the closing leaves (counters of larger glyphs; at most a text
line's height squared) are filled: a line becomes one black bar, while the image above and
below it, and between lines and words, stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.deid.evidence import odd, unit
from radiomicsd.pipeline.deid.noise import (
    MEAN_ABS_DIFF_PER_SIGMA,
    Running,
    corners,
    median,
    spatial_noise,
)
from radiomicsd.pipeline.deid.rank import median_bounds
from radiomicsd.pipeline.frame import box_around, brightest

#: A stroke stands at least this many grey levels above its neighbourhood (and 8 noise
#: sigmas): annotation inks are drawn to be read over the image.
MIN_CONTRAST = 40
#: Strokes are grown by this many pixels (at 480 rows) to take their anti-aliased fringe.
GLYPH_MARGIN = 1
#: Weak stroke pixels (bright in the minimum, not static) are taken up to this many pixels
#: (at 480 rows) along weak pixels from a static stroke.
HYSTERESIS_PX = 3
#: An image moves when at least this share of its first frame's bright grains changes.
MOVING_SHARE = 0.6
#: More text-like pixels than this share of the kept area: not annotations, refuse.
MAX_GLYPH_SHARE = 0.03
#: A pixel clips (at white) when every channel reaches this level.
CLIP_LEVEL = 250
#: A static stroke whose next neighbours clip (>= 250) in more than this share of the frames
#: lies in clipping tissue (measured: such speckle's neighbours clip in 57-79% of frames, an
#: anti-aliased glyph's in 0-55%).
MAX_CLIPPED = 0.5
#: A stroke white in every frame must stand this far above the mean image around it (a
#: quarter of the grey range): ink is drawn to be read, tissue that clips is bright around.
MEAN_CONTRAST = 64
#: A static stroke has at least this many pixels (8-connected).
MIN_STROKE_PX = 3
#: Inside a moving image, a static bright blob with a pixel deeper than this (px at 480 rows)
#: inside it is saturated tissue, not a stroke (strokes are 1-3 px wide, 5 with their fringe).
MAX_HALF_WIDTH = 3.0
#: Found strokes are joined (a morphological closing) over gaps up to this many pixels wide
#: (at 480 rows): a glyph's counters and the spaces between a line's glyphs (2-6 px).
JOIN_PX = 7
#: ... and this many rows high: a glyph's parts one above the other, not two lines.
JOIN_ROWS = 3
#: A run's box reaches this many rows (at 480 rows) above and below its static strokes.
RUN_ROWS_PAD = 2
#: Memory bound of the stationary-change test (its result does not depend on it): open pixels
#: whose windows are copied at once.
OPEN_CHUNK = 1 << 15
#: A text line is at most this high (share of the frame's rows, plus 8 px).
MAX_LINE_HEIGHT = 0.06
#: The work is done on the frames cut to the kept area and this many pixels (at 480 rows)
#: around it: more than the widest filter (a 7 px top-hat opening reaches 6 px, the 7 px
#: median 3) and the widest join of strokes (9 px) reach.
CUT_PAD = 16


@dataclass(frozen=True)
class Glyphs:
    """What :func:`find_glyphs` found: ``blackout`` bool (H, W), the strokes with their margin;
    ``strokes`` the stroke pixel count; ``lines`` the text lines found by shape (0 when the
    image moves and every static stroke counts); ``hidden`` the pixels next to strokes where
    the image clips (>= 250) in most frames, where a stroke may continue unseen."""

    blackout: NDArray[np.bool_]
    strokes: int
    lines: int
    hidden: int = 0


def _clipped(frames: Sequence[NDArray[np.uint8]], high: NDArray[np.uint8],
             near: tuple[slice, slice] | None) -> NDArray[np.float32]:
    """float32 (H, W): the share of the BGR (H, W, 3) ``frames`` in which every channel of a
    pixel reaches :data:`CLIP_LEVEL` (white: colour flow does not clip to white, tissue does),
    within the box ``near`` only (0 elsewhere; None: nowhere), where it is asked (beside
    strokes). ``high``: the brightest channel's maximum over the frames, uint8 (H, W): a pixel
    that never reaches the level there never clips, and only the box of those that do is
    looked at (a fraction of the frames, if any)."""
    share = np.zeros(high.shape, np.float32)
    reaching = np.zeros(high.shape, bool)
    if near is not None:
        reaching[near] = high[near] >= CLIP_LEVEL
    box = box_around(reaching)
    if box is None:
        return share
    count = np.zeros(share[box].shape, np.float32)
    for frame in frames:  # 255 where a pixel clips
        cv2.accumulate(cv2.inRange(frame[box], (CLIP_LEVEL,) * 3, (255,) * 3), count)
    share[box] = count / np.float32(255 * len(frames))
    return share


def _text_lines(strokes: NDArray[np.bool_], low: NDArray[np.uint8], u: float,
                height: int) -> tuple[NDArray[np.bool_], int]:
    """The stroke pixels that form text lines, and how many lines.

    Strokes joined side by side (gaps of up to 5 px at 480 rows) make a run; a run is a text
    line when it is glyph-high (4 px .. ``MAX_LINE_HEIGHT``), at least 1.5 times wider than
    high, its strokes cover 8-65% of its box, at least three of its strokes reach half its
    height and end on one baseline (within a quarter of its height: characters have height
    and stand on a line; speckle grains, elongated sideways, do neither), and at least 30% of
    its stroke pixels lie within a tenth of its brightest (one ink). ``u``: the frame's
    :func:`unit`; ``height``: its rows (the arrays may be a cut-out of it)."""
    h = height
    joined = cv2.dilate(strokes.astype(np.uint8), np.ones((1, odd(5 * u)), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    _, parts, part_stats, _ = cv2.connectedComponentsWithStats(strokes.astype(np.uint8),
                                                               connectivity=8)
    out = np.zeros_like(strokes)
    lines = 0
    for i in range(1, n):
        x, y, bw, bh, _ = (int(v) for v in stats[i])
        if not (4 <= bh <= MAX_LINE_HEIGHT * h + 8 and bw >= 1.5 * bh):
            continue
        box = (slice(y, y + bh), slice(x, x + bw))
        mine = (labels[box] == i) & strokes[box]
        ids = np.flatnonzero(np.bincount(parts[box][mine]))  # the parts in it, in order
        tall = ids[part_stats[ids, cv2.CC_STAT_HEIGHT] >= max(4, bh // 2)]
        bottoms = part_stats[tall, cv2.CC_STAT_TOP] + part_stats[tall, cv2.CC_STAT_HEIGHT]
        on_line = tall.size >= 3 and int(np.ptp(bottoms)) <= max(2, bh // 4)
        fill = np.count_nonzero(mine) / float(bw * bh)
        values = low[box][mine].astype(np.int32)
        one_ink = np.count_nonzero(values >= 0.9 * values.max()) >= 0.3 * values.size
        if 0.08 <= fill <= 0.65 and one_ink and on_line:
            out[box] |= mine
            lines += 1
    return out, lines


def _top_hat(image: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """White top-hat with a ``size`` square: what stands out of its surroundings, brighter."""
    square = np.ones((size, size), np.uint8)  # separable: fast at any size
    return cast(NDArray[np.uint8], cv2.subtract(image, cv2.morphologyEx(image, cv2.MORPH_OPEN,
                                                                         square)))


def _in_runs(strokes: NDArray[np.bool_], weak: NDArray[np.bool_], u: float, height: int, *,
             seeds: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The ``weak`` pixels inside the box of each text-line-shaped run of strokes side by side
    (gaps up to a glyph's width, 9 px at 480 rows, so that a glyph found faintly between its
    neighbours is inside; glyph-high, wider than high): a glyph's faint parts lie within its
    line's box. A run is side by side when it holds two or more separate ``seeds`` (the static
    strokes before they were grown, a subset of ``strokes``): one static speck in bright
    tissue is not a line of text, and its box would take the tissue around it. The box is as
    high as the run's seeds and :data:`RUN_ROWS_PAD` px (at 480 rows) above and below them."""
    width = odd(9 * u)
    out = np.zeros_like(strokes)
    # the runs lie within the strokes' box grown by the joining: found there, the same runs
    near = box_around(strokes, 1, width // 2)
    if near is None:
        return out
    joined = cv2.dilate(strokes[near].astype(np.uint8), np.ones((3, width), np.uint8))
    n, runs, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    held = seeds[near]
    _, parts = cv2.connectedComponents(held.astype(np.uint8), connectivity=8)
    # per run, the number of separate seeds in it (pairs of run and seed label, counted once)
    side_by_side = np.bincount([run for run, _ in set(zip(runs[held].tolist(),
                                                           parts[held].tolist()))],
                               minlength=n) >= 2
    # per run, the rows its seeds span: grown strokes reach into bright image above and
    # below the line, and a box as high as they are would take that image's weak pixels
    rows, _ = np.nonzero(held)
    owners = cast(NDArray[np.int32], runs[held])
    first = np.full(n, joined.shape[0], np.int64)
    last = np.zeros(n, np.int64)
    np.minimum.at(first, owners, rows)
    np.maximum.at(last, owners, rows)
    pad = int(round(RUN_ROWS_PAD * u))
    out_near, weak_near = out[near], weak[near]  # views
    for i in np.flatnonzero(side_by_side):
        x, y, w, h, _ = (int(v) for v in stats[i])
        if h <= MAX_LINE_HEIGHT * height + 8 and w >= h:  # a line of text
            box = (slice(max(y, int(first[i]) - pad), min(y + h, int(last[i]) + 1 + pad)),
                   slice(x, x + w))
            out_near[box] |= weak_near[box]
    return out


def _filled(mask: NDArray[np.uint8], max_area: float) -> NDArray[np.uint8]:
    """uint8 (H, W) 0/1 ``mask`` with its holes of at most ``max_area`` px filled."""
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return mask
    holes = [c for c, (_, _, _, parent) in zip(contours, hierarchy[0].tolist())
             if parent >= 0 and cv2.contourArea(c) <= max_area]
    out: NDArray[np.uint8] = mask.copy()
    cv2.drawContours(out, holes, -1, 1, thickness=cv2.FILLED)  # in place
    return out


def _reconstruct(seeds: NDArray[np.bool_], weak: NDArray[np.bool_],
                 steps: int) -> NDArray[np.bool_]:
    """``seeds`` grown by up to ``steps`` pixels through ``weak`` pixels (8-connected).

    Nothing grows farther than ``steps`` px from the seeds' box: the work is done there."""
    out = np.zeros(seeds.shape, bool)
    near = box_around(seeds, steps, steps)
    if near is None:
        return out
    grown = seeds[near].astype(np.uint8)
    allowed = weak[near].astype(np.uint8)
    for _ in range(steps):
        wider = cast(NDArray[np.uint8], cv2.dilate(grown, np.ones((3, 3), np.uint8)))
        grown = wider & allowed | grown
    out[near] = grown > 0
    return out


def _changing(change: NDArray[np.float32], floor: float, ratio: float, size: int, *,
              asked: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Bool (H, W): pixels whose mean change (float32 (H, W), grey levels per frame pair) is
    above ``floor`` and above ``ratio`` times the median change in the ``size`` x ``size``
    window around them (``cv2.medianBlur`` of the change clipped to uint8: edges replicated).

    Exact where ``asked`` (bool (H, W)) and wherever the answer is True; elsewhere pixels the
    bounds below leave open are False. The median of a window lies between the least and the
    greatest median of its rows (each row holds more than half its values on either side of
    its own): those bounds (a median of ``size`` values per pixel by a sorting network, then
    a minimum and a maximum over ``size`` rows) settle most pixels, and the median itself is
    only compared, for the asked pixels they leave open (the static strokes, the margin's lit
    pixels, the image's bright grains: a fraction of the frame), by counting the window's
    values below the least median that would make the pixel not change. OpenCV's median over
    7 x 7 or more is ~30 ns a pixel (5 x 5: 1.4 ns); this is a few.
    """
    above = change > floor
    if ratio < 1e-3:  # (a look-ahead of 6 frames or fewer) the bounds do not help
        nearby = cv2.medianBlur(np.clip(change, 0, 255).astype(np.uint8), size)
        exact: NDArray[np.bool_] = above & (change > ratio * nearby.astype(np.float32))
        return exact
    grey = np.minimum(change, np.float32(255)).astype(np.uint8)  # the change is >= 0
    least, most = median_bounds(grey, size)
    # ratio times each grey level, as the product over the whole frame would have it
    times = ratio * np.arange(256, dtype=np.float32)
    sure = above & (change > cv2.LUT(most, times))
    open_ = above & ~sure & asked & (change > cv2.LUT(least, times))
    ys, xs = np.nonzero(open_)
    if ys.size:
        r = size // 2
        padded = cv2.copyMakeBorder(grey, r, r, r, r, cv2.BORDER_REPLICATE)
        view = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
        # a chunk of open pixels at a time: their windows are copied (size * size bytes each)
        for at in range(0, ys.size, OPEN_CHUNK):
            y, x = ys[at:at + OPEN_CHUNK], xs[at:at + OPEN_CHUNK]
            values = change[y, x]
            # the least v with not (change > ratio * v): the pixel changes iff its median is
            # below it
            base = np.floor(values.astype(np.float64) / ratio)
            lowest = np.clip(base - 3, 0, 249).astype(np.int32)
            limit = lowest.copy()
            for step in range(8):
                v = lowest + step
                limit += (v <= 255) & (values > ratio * v.astype(np.float32))
            below = np.count_nonzero(view[y, x].reshape(y.size, -1) < limit[:, None], axis=1)
            sure[y, x] = below >= (size * size + 1) // 2
    return sure


def _apart(strokes: NDArray[np.bool_], model: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The stroke pixels whose 8-connected stroke does not touch ``model``: UI in the margin
    band stands apart from the image; bright speckle at the image's own edge touches it."""
    if not strokes.any():
        return np.zeros(strokes.shape, bool)
    n, labels = cv2.connectedComponents(strokes.astype(np.uint8), connectivity=8)
    edge = cv2.dilate(model.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ok = np.ones(n, bool)
    ok[labels[edge & strokes]] = False
    ok[0] = False
    out: NDArray[np.bool_] = ok[labels]
    return out


def _blobs(static: NDArray[np.bool_], max_half_width: float) -> NDArray[np.bool_]:
    """The parts of the ``static`` bright pixels that are thick somewhere (deeper than
    ``max_half_width`` px): a flat colour fill, clipped tissue; a stroke that runs into one
    is its edge, not ink."""
    mask = static.astype(np.uint8)
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    thick = np.zeros(n, bool)
    thick[labels[depth > max_half_width]] = True
    thick[0] = False
    out: NDArray[np.bool_] = thick[labels]
    return out


def _unclipped(strokes: NDArray[np.bool_], clipped: NDArray[np.float32],
               mean: NDArray[np.uint8], max_half_width: float) -> NDArray[np.bool_]:
    """The static strokes that are ink rather than image that clips at white.

    A stroke is kept when it has ``MIN_STROKE_PX`` pixels or more (a pixel that stays by
    chance is alone), is thin (nowhere deeper than ``max_half_width`` px), its next neighbours
    are white (>= 250) in at most ``MAX_CLIPPED`` of the frames (``clipped``: that share per
    pixel; tissue that clips is static because it clips, and so do its neighbours; ink's
    neighbours show the moving image through its anti-aliased edge), and, when the stroke
    itself is white in every frame, the image two pixels around it is on average
    ``MEAN_CONTRAST`` darker (``mean``: the frames' mean brightest channel): white ink is
    drawn to be read, clipped tissue is bright around."""
    mask = strokes.astype(np.uint8)
    n, full_labels = cv2.connectedComponents(mask, connectivity=8)
    answer = np.zeros(strokes.shape, bool)
    # everything below looks at most 4 px beyond a stroke (a 5 x 5 ring, owned through another
    # 5 x 5): it is done in the strokes' box grown by that, with the frame's labels
    box = box_around(strokes, 4, 4)
    if box is None:
        return answer
    mask, strokes, labels = mask[box], strokes[box], full_labels[box]
    clipped, mean = clipped[box], mean[box]
    near = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
    ring = near & ~strokes
    ring2 = (cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0) & ~near
    # each ring pixel is given to the stroke it touches (the largest label next to it)
    as_image = cast(NDArray[np.integer[Any] | np.floating[Any]],  # what dilate takes
                    labels.astype(np.uint16 if n <= 1 << 16 else np.float32))
    owner = cv2.dilate(as_image, np.ones((3, 3), np.uint8))
    owner2 = cv2.dilate(as_image, np.ones((5, 5), np.uint8))

    def ring_mean(where: NDArray[np.bool_], who: NDArray[Any],
                  values: NDArray[Any]) -> NDArray[np.float64]:
        # only the ring's pixels are converted (bincount adds the weights as float64 alike)
        ids = who[where].astype(np.intp)
        total = np.bincount(ids, weights=values[where], minlength=n)
        return total / np.maximum(np.bincount(ids, minlength=n), 1)

    # per stroke (label >= 1; the background's counts are never used): its pixels, and
    # whether all of them are white in every frame
    ids = labels[strokes]
    size = np.bincount(ids, minlength=n)
    white = np.bincount(ids, weights=clipped[strokes] >= 1, minlength=n) >= size
    dark_around = ring_mean(ring2, owner2, mean) <= 255 - MEAN_CONTRAST
    ok = (ring_mean(ring, owner, clipped) <= MAX_CLIPPED) & (size >= MIN_STROKE_PX) & \
        (dark_around | ~white)
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    ok[labels[depth > max_half_width]] = False
    ok[0] = False
    answer[box] = ok[labels]
    return answer


def find_glyphs(frames: Sequence[NDArray[np.uint8]], keep: NDArray[np.bool_],
                model: NDArray[np.bool_], *, sigma: float) -> Glyphs:
    """Burned-in strokes within ``keep``.

    Parameters
    ----------
    frames : the look-ahead frames, BGR (H, W, 3), at least one.
    keep : bool (H, W), the kept area (the fitted geometry grown by the margin).
    model : bool (H, W), the fitted probe geometry itself.
    sigma : the clip's frame-to-frame noise, grey levels (0 for one frame).

    Returns
    -------
    glyphs : the pixels to black out, see :class:`Glyphs`.

    Everything this looks at lies in ``keep`` or within a few pixels of it (filters of at
    most ``7 * unit`` px, runs joined over ``9 * unit`` px), so the work is done on the cut-out
    of the frames around ``keep`` (:data:`CUT_PAD` ``* unit`` px beyond it): the same answer,
    for the share of the frame the image covers. The noise is measured in the frame's corners,
    as everywhere (:func:`~.noise.spatial_noise`).
    """
    shape = keep.shape
    u = unit(shape)
    blackout = np.zeros(shape, bool)
    if not keep.any():
        return Glyphs(blackout, 0, 0, 0)
    pad = int(np.ceil(CUT_PAD * u))
    cut = box_around(keep, pad, pad)
    assert cut is not None  # keep has a set pixel
    noise = spatial_noise(_corner_low(frames, shape))
    found = _find([f[cut] for f in frames], keep[cut], model[cut], sigma=sigma, noise=noise,
                  u=u, height=shape[0])
    blackout[cut] = found.blackout
    return Glyphs(blackout, found.strokes, found.lines, found.hidden)


def _corner_low(frames: Sequence[NDArray[np.uint8]], shape: tuple[int, int]) -> NDArray[np.uint8]:
    """uint8 (H, W): the per-pixel minimum over ``frames`` of the brightest channel where
    :func:`~.noise.spatial_noise` looks (the corner patches and the pixels beside them), 0
    elsewhere."""
    h, w = shape
    low = np.zeros(shape, np.uint8)
    for rows, cols in corners(shape):
        area = (slice(max(0, rows.start - 1), min(h, rows.stop + 1)),
                slice(max(0, cols.start - 1), min(w, cols.stop + 1)))
        # the patch of every frame stacked into one image: one channel maximum for all (per
        # call, OpenCV's overhead is most of the cost of a patch this small), then the minimum
        # over the frames
        stacked = np.concatenate([frame[area] for frame in frames])
        bright = brightest(stacked)
        low[area] = bright.reshape(len(frames), -1, bright.shape[1]).min(axis=0)
    return low


def _find(frames: Sequence[NDArray[np.uint8]], keep: NDArray[np.bool_],
          model: NDArray[np.bool_], *, sigma: float, noise: float, u: float,
          height: int) -> Glyphs:
    """:func:`find_glyphs` on a cut-out of the frames; ``noise`` the frame's spatial noise of
    the minimum brightest channel, ``u`` its :func:`unit`, ``height`` its rows."""
    first = brightest(frames[0])
    stats = Running(first)
    for frame in frames[1:]:
        stats.add(brightest(frame))
    low = stats.low
    mean = np.round(stats.mean).astype(np.uint8)
    contrast = max(MIN_CONTRAST, 8.0 * noise)
    top = _top_hat(low, odd(7 * u))
    # bright in the minimum (ink is there in every frame) and in the mean
    standing = (top >= contrast) & (_top_hat(mean, odd(7 * u)) >= contrast)
    # an anti-aliased stroke pixel shows the moving image through (1 - coverage): static is
    # no change beyond the noise, or a mean change far smaller than the median change beside
    # it (7 px at 480 rows), by three spreads of such a mean: over 16 frames, 42% of it (ink
    # of 58% coverage or more); over 6 frames, nothing but no change
    margin = keep & ~model
    ground = median(low[margin]) if margin.any() else 0.0
    lit_margin = (low > ground + max(1.0, 3.0 * noise)) & margin
    # staticness tells ink from image only where the image's own bright grains change: in
    # the first frame, most of what stands out must change over the look-ahead
    grains = (_top_hat(first, odd(7 * u)) >= contrast) & model
    bright = (low >= contrast) & model
    if len(frames) > 1:
        # the mean of n changes varies by ~0.75 / sqrt(n): "far smaller" is 3 of that below
        ratio = max(0.0, 1.0 - 3.0 * 0.75 / np.sqrt(len(frames) - 1))
        # exact wherever it is asked below (all of it is and-ed with one of these)
        changing = _changing(stats.change(), max(0.5, 2.0 * MEAN_ABS_DIFF_PER_SIGMA * sigma),
                             ratio, odd(7 * u),
                             asked=(standing & keep) | lit_margin | grains | bright)
    else:
        changing = np.zeros(low.shape, bool)
    strokes = standing & ~changing & keep
    # the margin band is background if the fit is right: whatever is lit there, static, and
    # not joined to the image is UI (text, a marker's disc, their faintest fringe)
    faint = lit_margin & ~changing
    # seeds also beyond the kept area: UI a few pixels outside it (text near the image's
    # edge) may reach into the band with its faint fringe only (resampled captures spread it)
    band = _apart((low >= ground + contrast) & (faint | ~keep), model)
    inside = strokes & model
    moves = len(frames) > 1 and int(np.count_nonzero(grains & changing)) >= \
        MOVING_SHARE * max(1, int(np.count_nonzero(grains)))
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(2 * GLYPH_MARGIN * u + 1),) * 2)
    # white in how many frames, where it is asked: 4 px around the strokes (the rings of
    # _unclipped) and as far as they are grown
    reach = max(4, grow.shape[0] // 2)
    clipped = _clipped(frames, stats.high, box_around(inside, reach, reach))
    lines = 0
    if moves:
        inside = _unclipped(inside, clipped, mean, MAX_HALF_WIDTH * u)
        inside &= ~_blobs(~changing & bright, MAX_HALF_WIDTH * u)
    else:
        inside, lines = _text_lines(inside, low, u, height)
    # where ink meets image that clips at the ceiling, ink and image look alike: the strokes'
    # extent there is not certain
    beside = cv2.dilate(inside.astype(np.uint8), grow) > 0
    hidden = int(np.count_nonzero(beside & ~inside & (clipped > MAX_CLIPPED) & model))
    # a glyph's parts over bright or flickering image are not static, but stand out of the
    # minimum beside the static parts: taken with them (hysteresis)
    if moves:
        weak = (top >= contrast) & model
        seeds = inside
        inside = _reconstruct(seeds, weak, int(round(HYSTERESIS_PX * u)))
        inside |= _in_runs(inside, weak, u, height, seeds=seeds)
    # the faint rest of band UI (anti-aliased fringes, compression halos) goes with it
    band = _reconstruct(band, faint, int(round(HYSTERESIS_PX * u))) & keep
    found = band | inside
    # closed along the line: no legible black silhouette of a text line on the image
    along = np.ones((odd(JOIN_ROWS * u), odd(JOIN_PX * u)), np.uint8)
    closed = cast(NDArray[np.uint8],
                  cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_CLOSE, along))
    blackout = cv2.dilate(_filled(closed, (MAX_LINE_HEIGHT * height + 8) ** 2), grow) > 0
    return Glyphs(blackout & keep, int(np.count_nonzero(found)), lines, hidden)
