"""Screen layouts of ultrasound devices nobody configured, with their ground truth.

The default synthetic clip (:func:`radiomicsd.testing.synthetic.render_clip`) is one phased-array
fan on black with fresh speckle. Real devices differ: a linear probe's rectangle, a curved
probe's annular sector (arc on top), two images side by side, a dark sector (low gain), a
nearly static cine, a lit header band with text on it, text typed over the image, markers a few
pixels from its edge, an analogue frame grabber's grey, noisy background, speckle that persists
and drifts rather than being fresh in every frame, thick ECG traces. A :class:`Layout` combines
those traits; :data:`LAYOUTS` names one layout per trait.

:func:`render_layout` renders frames lazily and returns the :class:`LayoutTruth`: the live-image
mask (what a clinician calls the image), every burned-in text or graphic as a box tagged
``outside`` / ``edge`` (within :data:`EDGE_PX` of the image) / ``inside`` (over the image), and
the glyph mask: every pixel that any text or graphic drawing touched in any frame, anti-aliased
fringes included. A de-identified frame must be black on every glyph pixel and equal to the
decoded frame on the live image (glyph pixels over the image are not image).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.testing import phantoms

GEOMETRIES = ("fan", "curved", "linear", "dual")
SPECKLES = ("fresh", "drift", "still")
#: A box closer to the live image than this (pixels), without meeting it, is tagged ``edge``.
EDGE_PX = 8
#: The phantom's gain scaled so that tissue rarely clips at white (~0.3% of the image's pixels,
#: 99th percentile ~200), as on the real devices' frames in tests/data (the SonoSite cine's
#: 99th percentile is 109); ``Layout.gain`` 2 makes bright tissue clip (~6%).
ECHO_GAIN = 0.5
#: The header band's fill (BGR): a lit blue-grey, as Philips draws it.
BAND_BGR = (110, 92, 70)
WHITE = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX

Box = tuple[int, int, int, int]
Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class Layout:
    """The traits of one device's screen.

    ``geometry``: ``fan`` (phased array), ``curved`` (annular sector, arc on top), ``linear``
    (rectangle) or ``dual`` (two rectangles side by side). ``gain`` scales the echo amplitude
    (0.7 with ``far_field_loss``: a dark sector; 2: tissue clips at white); ``far_field_loss``
    adds attenuation (nepers over the imaging depth: 3 leaves the far field nearly black).
    ``speckle``: ``fresh`` every frame,
    ``drift`` (persists and moves ~0.5 px a frame, 10% renewed) or ``still`` (a nearly static
    cine: 0.04 px a frame, 0.5% renewed, no heart beat). ``background``: the screen's grey level
    outside the image (an analogue capture's black level lifts the image too);
    ``noise_sigma``: Gaussian noise (grey levels) added to every pixel of every frame.
    ``header_band``: a lit band across the top with patient text on it; ``inside_text``:
    labels and calipers typed over the image; ``edge_text``: depth numbers, ticks and an
    orientation marker 2-3 px outside the image's edge; ``ecg_thickness``: the ECG trace's
    line width in pixels (at 640 px wide; scaled with the frame).
    """

    geometry: str = "fan"
    gain: float = 1.0
    far_field_loss: float = 0.0
    speckle: str = "fresh"
    background: int = 0
    noise_sigma: float = 0.0
    header_band: bool = False
    inside_text: bool = False
    edge_text: bool = False
    ecg_thickness: int = 1

    def __post_init__(self) -> None:
        if self.geometry not in GEOMETRIES or self.speckle not in SPECKLES:
            raise ValueError(f"geometry in {GEOMETRIES}, speckle in {SPECKLES}")
        if not (0 < self.gain <= 4 and self.far_field_loss >= 0 and 0 <= self.background < 128
                and self.noise_sigma >= 0 and self.ecg_thickness >= 1):
            raise ValueError("gain in (0, 4], far_field_loss >= 0, background in [0, 128), "
                             "noise_sigma >= 0, ecg_thickness >= 1")


#: One layout per trait (and the device mixes found in the field).
LAYOUTS: dict[str, Layout] = {
    "phased": Layout(),
    "linear": Layout(geometry="linear"),
    "curved": Layout(geometry="curved"),
    "dual": Layout(geometry="dual"),
    "dark_sector": Layout(geometry="curved", gain=0.7, far_field_loss=3.0),
    "still_cine": Layout(geometry="linear", speckle="still", gain=0.8, far_field_loss=1.5),
    "header_band": Layout(header_band=True),
    "inside_text": Layout(inside_text=True),
    "edge_text": Layout(edge_text=True),
    "noisy_grey": Layout(background=20, noise_sigma=6.0),
    "drifting_speckle": Layout(speckle="drift"),
    "thick_ecg": Layout(ecg_thickness=4),
    # mixes: the GE dual screen, the Philips single frame, an analogue linear capture
    "dual_header_band": Layout(geometry="dual", header_band=True, edge_text=True),
    "curved_dark_band": Layout(geometry="curved", gain=0.7, far_field_loss=3.0,
                               header_band=True),
    "noisy_linear_still": Layout(geometry="linear", speckle="still", background=20,
                                 noise_sigma=6.0),
    "inside_edge_drift": Layout(speckle="drift", inside_text=True, edge_text=True),
    "text_over_clipping": Layout(gain=2.0, speckle="drift", inside_text=True),
    "still_inside_text": Layout(geometry="linear", speckle="still", inside_text=True),
}


@dataclass(frozen=True)
class TextBox:
    """One burned-in text or graphic: its ink's box (x0, y0, x1, y1, end exclusive, pixels),
    ``where`` it lies (``outside`` / ``edge`` / ``inside``), its ``kind`` (``text`` or
    ``graphic``) and a ``label``."""

    box: Box
    where: str
    kind: str
    label: str


@dataclass
class LayoutTruth:
    """Ground truth of a rendered layout: ``live`` and ``glyphs`` are bool (H, W)."""

    layout: Layout
    size: tuple[int, int]
    n_frames: int
    live: Mask
    glyphs: Mask
    boxes: list[TextBox] = field(default_factory=list)
    geometry: str = ""


@dataclass(frozen=True)
class _Part:
    """One live image: its bounding box in the frame, its mask within that box, and the fan
    the phantom is drawn in (apex in box coordinates, radius, half angle; 90 deg for a
    rectangle)."""

    box: Box
    mask: Mask
    apex: tuple[float, float]
    radius: float
    half_angle: float


@dataclass(frozen=True)
class _Ink:
    """A piece of UI: ``draw(canvas, frame_index)`` draws it at coverage 255 onto a uint8
    (H, W) canvas (anti-aliased edges in between); ``colour`` is its BGR; ``static`` when it is
    the same in every frame."""

    label: str
    kind: str
    colour: tuple[int, int, int]
    draw: Callable[[NDArray[np.uint8], int], None]
    static: bool = True


def _text(text: str, origin: tuple[int, int], scale: float,
          thick: int = 1) -> Callable[[NDArray[np.uint8], int], None]:
    def draw(canvas: NDArray[np.uint8], _i: int) -> None:
        cv2.putText(canvas, text, origin, FONT, scale, 255, thick, cv2.LINE_AA)
    return draw


def _scale(size: tuple[int, int]) -> float:
    """Font scale of a (W, H) screen: its UI grows with the screen's shorter side (a 4:3
    screen's width, a wide screen's height)."""
    w, h = size
    return max(0.3, min(w / 1600, h / 1200))


def _line(scale: float) -> int:
    return int(28 * scale / 0.5) + 2


def _parts(layout: Layout, size: tuple[int, int], top: int) -> list[_Part]:
    """The live image(s) of ``layout`` in a (W, H) frame whose rows above ``top`` hold UI."""
    w, h = size
    bottom = int(0.84 * h)
    if layout.geometry == "fan":
        half = 38.0
        apex_y = top + int(0.02 * h) if layout.header_band else top
        radius = min(bottom - apex_y, 0.36 * w / math.sin(math.radians(half)))
        mask = phantoms.sector_mask((h, w), (w / 2, apex_y), radius, half)
        return [_Part((0, 0, w, h), mask, (w / 2, apex_y), radius, half)]
    if layout.geometry == "curved":
        half, r0 = 28.0, 0.3 * h
        cy = top + 4 - r0 * math.cos(math.radians(half))
        radius = bottom - cy
        mask = phantoms.sector_mask((h, w), (w / 2, cy), radius, half, inner_radius=r0)
        return [_Part((0, 0, w, h), mask, (w / 2, cy), radius, half)]
    if layout.geometry == "linear":
        boxes = [(int(0.2 * w), top + 8, int(0.8 * w), bottom)]
    else:
        y0 = max(top + 8, int(0.2 * h))
        boxes = [(int(0.06 * w), y0, int(0.485 * w), int(0.78 * h)),
                 (int(0.515 * w), y0, int(0.94 * w), int(0.78 * h))]
    parts = []
    for x0, y0, x1, y1 in boxes:
        bw, bh = x1 - x0, y1 - y0
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = True
        parts.append(_Part((x0, y0, x1, y1), mask, (bw / 2, -2.0), math.hypot(bw, bh) + 4, 90.0))
    return parts


def _ui(layout: Layout, size: tuple[int, int], band: int, fps: float) -> list[_Ink]:
    """Every piece of text and graphics outside the image: patient lines, clock, hospital,
    parameter column, grey-scale bar, ECG, the header band's text."""
    w, h = size
    scale = _scale(size)
    line = _line(scale)
    inks: list[_Ink] = []
    if layout.header_band:
        y = band - max(4, band // 3)
        inks.append(_Ink("header band: patient", "text", WHITE, _text(
            "DOE^JANE Q  4711-0815-23  2011-04-05", (6, y), scale)))
        inks.append(_Ink("header band: hospital", "text", WHITE, _text(
            "ST. EXAMPLE HOSPITAL", (int(0.62 * w), y), scale)))
    lines = ("NAME: DOE^JANE Q", "ID: 4711-0815-23", "DOB: 2011-04-05")
    for i, text in enumerate(lines):
        inks.append(_Ink(f"patient line {i}", "text", WHITE,
                         _text(text, (4, band + line * (i + 1)), scale)))
    inks.append(_Ink("hospital", "text", WHITE,
                     _text("ST. EXAMPLE HOSPITAL", (4, int(0.895 * h)), scale)))
    clock_at = (int(0.8 * w), band + line)

    def clock(canvas: NDArray[np.uint8], i: int) -> None:
        secs = 9 * 3600 + 41 * 60 + int(i / fps)
        text = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        cv2.putText(canvas, text, clock_at, FONT, scale, 255, 1, cv2.LINE_AA)

    inks.append(_Ink("clock", "text", WHITE, clock, static=False))
    params = ("MI 1.1", "TIS 0.4", "Gn 60", "28Hz")
    for i, text in enumerate(params):
        if layout.geometry == "dual":  # no room beside the images: in the header, right
            origin = (int((0.42 + 0.14 * (i % 2)) * w), band + line * (1 + i // 2))
        else:
            origin = (int(0.885 * w), int(0.2 * h) + line * i)
        inks.append(_Ink(f"parameter {text}", "text", WHITE, _text(text, origin, scale)))
    if layout.geometry != "dual":
        bar = (w - max(8, w // 80) - 4, int(0.5 * h), w - 4, int(0.8 * h))

        def grey_bar(canvas: NDArray[np.uint8], _i: int) -> None:
            x0, y0, x1, y1 = bar
            canvas[y0:y1, x0:x1] = np.linspace(255, 40, y1 - y0).astype(np.uint8)[:, None]

        inks.append(_Ink("grey-scale bar", "graphic", WHITE, grey_bar))
    inks.append(_ecg(layout, size))
    return inks


def _ecg(layout: Layout, size: tuple[int, int]) -> _Ink:
    """The ECG trace across the bottom, sweeping in as the clip runs."""
    w, h = size
    thick = max(1, round(layout.ecg_thickness * w / 640))
    y0, y1 = int(0.93 * h) + thick, h - 2 - thick

    def draw(canvas: NDArray[np.uint8], i: int) -> None:
        xs = np.arange(w)
        beat = ((xs + 7 * i) % 90) / 90.0
        spike = np.exp(-((beat - 0.3) ** 2) / 0.0008)
        ys = (y1 - spike * (y1 - y0)).astype(np.int32)
        visible = xs < (9 * i) % w + 40
        pts = np.stack([xs[visible], ys[visible]], axis=1).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, 255, thick, cv2.LINE_AA)

    return _Ink("ECG trace", "graphic", (40, 220, 40), draw, static=False)


def _inside(parts: list[_Part], size: tuple[int, int]) -> list[_Ink]:
    """Labels and a caliper measurement typed over the (first) image."""
    w, _ = size
    scale = _scale(size)
    x0, y0, x1, y1 = _bbox(parts[0].mask)
    cx, span, depth = (x0 + x1) // 2, x1 - x0, y1 - y0
    inks = [
        _Ink("inside: label LV", "text", WHITE,
             _text("LV", (cx - span // 6, y0 + int(0.45 * depth)), scale * 1.2)),
        _Ink("inside: measurement", "text", WHITE,
             _text("+ Dist 1.06 cm", (cx - span // 8, y0 + int(0.68 * depth)), scale)),
    ]
    a, b = (cx + span // 10, y0 + int(0.3 * depth)), (cx + span // 5, y0 + int(0.42 * depth))

    def calipers(canvas: NDArray[np.uint8], _i: int) -> None:
        for x, y in (a, b):
            cv2.drawMarker(canvas, (x, y), 255, cv2.MARKER_CROSS, max(7, w // 70), 1,
                           cv2.LINE_AA)
        n = 8
        for k in range(1, n):
            t = k / n
            p = (round(a[0] + t * (b[0] - a[0])), round(a[1] + t * (b[1] - a[1])))
            cv2.circle(canvas, p, 1, 255, -1, cv2.LINE_AA)

    inks.append(_Ink("inside: calipers", "graphic", WHITE, calipers))
    return inks


def _edge(parts: list[_Part], size: tuple[int, int]) -> list[_Ink]:
    """Depth numbers 3 px outside the (last) image's right edge, ticks 2 px outside its left
    edge, an orientation marker 3 px beside its top right: UI that hugs the image."""
    w, _ = size
    scale = _scale(size)
    mask = parts[-1].mask
    x0, y0, x1, y1 = _bbox(mask)
    inks = []
    for k, label in enumerate(("5", "10", "15")):
        y = y0 + int((0.25 + 0.3 * k) * (y1 - y0))
        row = np.nonzero(mask[y])[0]
        if row.size:
            inks.append(_hugging(f"edge: depth {label}", "text", WHITE, mask, 3, +1,
                                 partial(_text_at, label, int(row.max()), y, scale)))
    for k in range(1, 12):
        y = y0 + int(k * (y1 - y0) / 12)
        row = np.nonzero(mask[y])[0]
        if row.size:
            inks.append(_hugging(f"edge: depth tick {k}", "graphic", WHITE, mask, 2, -1,
                                 partial(_square_at, int(row.min()), y)))
    row = np.nonzero(mask[y0])[0]
    r = max(3, w // 160)
    inks.append(_hugging("edge: orientation marker", "graphic", (80, 200, 60), mask, 3, +1,
                         partial(_disc_at, int(row.max()), y0 + r, r)))
    return inks


def _text_at(text: str, x: int, y: int, scale: float,
             dx: int) -> Callable[[NDArray[np.uint8], int], None]:
    return _text(text, (x + dx, y), scale)


def _square_at(x: int, y: int, dx: int) -> Callable[[NDArray[np.uint8], int], None]:
    return _square(x + dx, y)


def _disc_at(x: int, y: int, r: int, dx: int) -> Callable[[NDArray[np.uint8], int], None]:
    return _disc(x + dx, y, r)


def _square(x: int, y: int) -> Callable[[NDArray[np.uint8], int], None]:
    def draw(canvas: NDArray[np.uint8], _i: int) -> None:
        canvas[y - 1:y + 1, x - 1:x + 1] = 255
    return draw


def _disc(x: int, y: int, r: int) -> Callable[[NDArray[np.uint8], int], None]:
    def draw(canvas: NDArray[np.uint8], _i: int) -> None:
        cv2.circle(canvas, (x, y), r, 255, -1, cv2.LINE_AA)
    return draw


def _hugging(label: str, kind: str, colour: tuple[int, int, int], live: Mask, gap: int,
             side: int, at: Callable[[int], Callable[[NDArray[np.uint8], int], None]]) -> _Ink:
    """The ink ``at(dx)`` moved sideways (``side`` +1 right, -1 left) until ``gap`` pixels
    separate its ink from ``live``, no more."""
    canvas = np.zeros(live.shape, np.uint8)
    at(0)(canvas, 0)
    ys, xs = np.nonzero(canvas)
    grown = cv2.dilate(live.astype(np.uint8), np.ones((2 * gap + 1,) * 2, np.uint8)) > 0
    for step in range(live.shape[1]):
        moved = xs + side * step
        if moved.min() < 0 or moved.max() >= live.shape[1]:
            break
        if not grown[ys, moved].any():
            return _Ink(label, kind, colour, at(side * step))
    raise ValueError(f"no room for {label}")


def _bbox(mask: Mask) -> Box:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _where(box: Box, live: Mask) -> str:
    x0, y0, x1, y1 = box
    if live[y0:y1, x0:x1].any():
        return "inside"
    h, w = live.shape
    e = EDGE_PX
    near = live[max(0, y0 - e):min(h, y1 + e), max(0, x0 - e):min(w, x1 + e)]
    return "edge" if near.any() else "outside"


def _truth_of(inks: list[_Ink], live: Mask, n_frames: int) -> tuple[Mask, list[TextBox]]:
    """The glyph mask (every pixel any ink covers in any frame) and one box per ink."""
    glyphs = np.zeros(live.shape, bool)
    boxes = []
    canvas = np.zeros(live.shape, np.uint8)
    for ink in inks:
        canvas[:] = 0
        for i in range(1 if ink.static else n_frames):
            ink.draw(canvas, i)
        covered = canvas > 0
        if not covered.any():
            continue
        glyphs |= covered
        box = _bbox(covered)
        boxes.append(TextBox(box, _where(box, live), ink.kind, ink.label))
    return glyphs, boxes


def _phantom(part: _Part, view: str, rng: np.random.Generator,
             layout: Layout) -> phantoms.Phantom:
    """A heart phantom drawn in ``part``'s box, cut by nothing but the part's own mask."""
    x0, y0, x1, y1 = part.box
    shape = (y1 - y0, x1 - x0)
    p = phantoms.sample_phantom(view, shape, rng)
    ax, ay = part.apex
    depth = part.radius * 0.52
    region = part.mask[y0:y1, x0:x1]
    ys, xs = np.nonzero(region)
    centre = (float(xs.mean()), float(ys.mean())) if part.half_angle >= 90 else (ax, ay + depth)
    unit = 0.32 * min(part.radius, float(xs.max() - xs.min()), float(ys.max() - ys.min()) * 1.6)
    return replace(p, apex=(ax, ay), radius=part.radius, half_angle_deg=part.half_angle,
                   centre=centre, unit=unit, gain=p.gain * layout.gain * ECHO_GAIN,
                   attenuation=p.attenuation + layout.far_field_loss)


def render_layout(
    layout: Layout | str = "phased",
    n_frames: int = 16,
    size: tuple[int, int] = (640, 480),
    *,
    fps: float = 25.0,
    view: str = "plax",
    seed: int = 0,
    overlays: bool = True,
) -> tuple[Iterator[NDArray[np.uint8]], LayoutTruth]:
    """Render a clip of ``layout`` lazily.

    Parameters
    ----------
    layout : a :class:`Layout` or a name in :data:`LAYOUTS`.
    n_frames : number of frames.
    size : (width, height) in pixels, at least 320x240.
    fps : frames per second (the clock and the heart beat).
    view : heart phantom, one of ``radiomicsd.testing.phantoms.VIEWS``.
    seed : all randomness derives from it.
    overlays : False renders the same clip without its text and graphics (the same pixels
        elsewhere, noise included): where a frame differs from its twin is where its text and
        graphics are visible, frame by frame.

    Returns
    -------
    frames : iterator of uint8 BGR arrays (H, W, 3), generated one at a time.
    truth : the layout's :class:`LayoutTruth`.
    """
    if isinstance(layout, str):
        layout = LAYOUTS[layout]
    w, h = size
    if w < 320 or h < 240:
        raise ValueError(f"frame size {size} too small for the layouts (320x240 fits)")
    band = int(0.09 * h) if layout.header_band else 0
    top = band + (int(0.08 * h) if layout.geometry == "fan" else int(0.17 * h))
    parts = _parts(layout, size, top)
    live = np.zeros((h, w), bool)
    for part in parts:
        live |= part.mask
    ui = _ui(layout, size, band, fps)
    over = (_inside(parts, size) if layout.inside_text else []) + \
        (_edge(parts, size) if layout.edge_text else [])
    glyphs, boxes = _truth_of(ui + over, live, n_frames)
    for box in boxes:
        if not box.label.startswith(("inside:", "edge:")) and box.where != "outside":
            raise ValueError(f"frame size {size} too small: {box.label} lies {box.where}")
    truth = LayoutTruth(layout, size, n_frames, live, glyphs, boxes, layout.geometry)
    inks = ui + over if overlays else []
    return _frames(layout, parts, inks, truth, fps=fps, view=view, seed=seed), truth


def _frames(layout: Layout, parts: list[_Part], inks: list[_Ink], truth: LayoutTruth, *,
            fps: float, view: str, seed: int) -> Iterator[NDArray[np.uint8]]:
    w, h = truth.size
    rng = np.random.default_rng(seed)
    shapes = [(p.box[3] - p.box[1], p.box[2] - p.box[0]) for p in parts]
    models = [_phantom(p, view, rng, layout) for p in parts]
    speckles: list[Iterator[NDArray[np.float32]] | None] = []
    for shape, model in zip(shapes, models):
        if layout.speckle == "fresh":
            speckles.append(None)
        else:
            drift, renewal = ((0.45, 0.3), 0.1) if layout.speckle == "drift" else \
                ((0.04, 0.03), 0.005)
            speckles.append(phantoms.DriftingSpeckle(shape, model.speckle_px, rng,
                                                     drift=drift, renewal=renewal))
    lift = layout.background / 255.0
    colours = sorted({ink.colour for ink in inks})
    still = {c: np.zeros((h, w), np.uint8) for c in colours}  # static inks, drawn once
    for ink in inks:
        if ink.static:
            ink.draw(still[ink.colour], 0)
    for i in range(truth.n_frames):
        phase = (i / fps) % 1.0 if layout.speckle != "still" else 0.0
        grey = np.full((h, w), float(layout.background), np.float32)
        for part, model, speckle in zip(parts, models, speckles):
            x0, y0, x1, y1 = part.box
            field = None if speckle is None else next(speckle)
            echo = phantoms.render_phantom(model, phase, rng, speckle=field)
            region = part.mask[y0:y1, x0:x1]
            tile = grey[y0:y1, x0:x1]
            tile[region] = layout.background + echo[region] * np.float32(1 - lift)
        frame = cast(NDArray[np.uint8], cv2.cvtColor(  # cv2's stubs: any array; BGR uint8
            np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))
        if layout.header_band:
            band = int(0.09 * h)
            frame[:band] = BAND_BGR
        for colour in colours:
            canvas = still[colour].copy()
            for ink in inks:
                if not ink.static and ink.colour == colour:
                    ink.draw(canvas, i)
            _blend(frame, canvas, colour)
        if layout.noise_sigma:
            noise = rng.normal(0.0, layout.noise_sigma, (h, w)).astype(np.float32)
            frame = np.clip(frame + noise[..., None], 0, 255).astype(np.uint8)
        yield frame


def _blend(frame: NDArray[np.uint8], coverage: NDArray[np.uint8],
           colour: tuple[int, int, int]) -> None:
    """Draw ``colour`` over ``frame`` (in place) with per-pixel ``coverage`` 0..255."""
    ys, xs = np.nonzero(coverage)
    if not ys.size:
        return
    a = coverage[ys, xs].astype(np.float32)[:, None] / np.float32(255)
    ink = np.asarray(colour, np.float32)[None, :]
    mixed = frame[ys, xs].astype(np.float32) * (1 - a) + ink * a
    frame[ys, xs] = np.round(mixed).astype(np.uint8)
