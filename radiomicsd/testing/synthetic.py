"""Synthetic echocardiography clips: the project's only source of test and sample videos.

A clip looks like a screen recording of an ultrasound device: a fan-shaped scan sector with
changing speckle and a beating heart phantom, optional colour-Doppler blobs (reds on both sides
of the hue wrap-around and blues) inside the sector, and burned-in *fake* patient data outside it:
name, ID, birth date, hospital, a running clock, a colour bar and a sweeping ECG trace.
The generator returns the ground truth (sector mask, burned-in text boxes) so tests can check
that de-identification removed exactly what it should.

Run ``python -m radiomicsd.testing.synthetic --out DIR --set sample`` to write a small sample set.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.testing import phantoms
from radiomicsd.testing.layouts import Layout, LayoutTruth, render_layout

#: Codecs OpenCV's bundled FFmpeg can both write and read here, by file extension.
CODECS = {"MJPG": ".avi", "XVID": ".avi", "FFV1": ".avi", "mp4v": ".mp4"}

FAKE_PATIENT_LINES = ("NAME: DOE^JANE Q", "ID: 4711-0815-23", "DOB: 2011-04-05")
FAKE_HOSPITAL = "ST. EXAMPLE HOSPITAL"


@dataclass(frozen=True)
class Sector:
    """Geometry of the fan: apex (x, y) in pixels, radius in pixels, half opening angle (deg)."""

    apex: tuple[int, int]
    radius: int
    half_angle: float

    def mask(self, shape: tuple[int, int]) -> NDArray[np.bool_]:
        """Boolean (H, W) mask of the fan."""
        return phantoms.sector_mask(shape, self.apex, self.radius, self.half_angle)


@dataclass
class ClipInfo:
    """Ground truth of a generated clip.

    ``phi_boxes`` are (x0, y0, x1, y1) pixel boxes (exclusive ends) of every burned-in patient
    datum, all outside the sector. A clip of a screen layout (``write_clip(layout=...)``)
    carries the layout's truth in ``layout`` (live image, every text box, glyph pixels); its
    ``sector`` is None and ``phi_boxes`` are its text boxes outside the image.
    """

    path: Path | None
    n_frames: int
    size: tuple[int, int]
    fps: float
    fourcc: str
    doppler: bool
    view: str
    sector: Sector | None
    phi_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    layout: LayoutTruth | None = None

    @property
    def sector_mask(self) -> NDArray[np.bool_]:
        """Boolean (H, W) mask of the scan sector (of a layout: its live image)."""
        if self.layout is not None:
            return self.layout.live
        if self.sector is None:
            raise ValueError("a clip without a sector or a layout")
        w, h = self.size
        return self.sector.mask((h, w))


def default_sector(size: tuple[int, int]) -> Sector:
    """A fan centred horizontally that leaves the corners and the bottom strip free."""
    w, h = size
    half = 36.0
    apex = (w // 2, int(0.07 * h))
    radius = int(min(0.86 * h, 0.44 * w / math.sin(math.radians(half))))
    return Sector(apex, radius, half)


def _text_layout(size: tuple[int, int]) -> tuple[float, int, list[tuple[str, tuple[int, int]]]]:
    """Font scale, thickness and (text, bottom-left origin) of the static burned-in lines."""
    w, h = size
    scale = max(0.28, w / 1600)
    thick = 1
    line = int(28 * scale / 0.5) + 2
    x0 = 4
    lines = [(t, (x0, line * (i + 1))) for i, t in enumerate(FAKE_PATIENT_LINES)]
    lines.append((FAKE_HOSPITAL, (x0, h - line - int(0.06 * h))))
    return scale, thick, lines


def _box_of(
    text: str, origin: tuple[int, int], scale: float, thick: int
) -> tuple[int, int, int, int]:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = origin
    return (x - 1, y - th - 2, x + tw + 2, y + base + 2)


def render_clip(
    n_frames: int = 60,
    size: tuple[int, int] = (640, 480),
    *,
    fps: float = 25.0,
    doppler: bool = True,
    view: str = "plax",
    seed: int = 0,
) -> tuple[Iterator[NDArray[np.uint8]], ClipInfo]:
    """Render a clip lazily.

    Parameters
    ----------
    n_frames : number of frames.
    size : (width, height) in pixels.
    fps : frames per second (drives the burned-in clock).
    doppler : add colour-Doppler blobs inside the sector and a colour bar outside.
    view : heart phantom, one of ``radiomicsd.testing.phantoms.VIEWS``.
    seed : all randomness derives from it.

    Returns
    -------
    frames : iterator of uint8 BGR arrays (H, W, 3), generated one at a time.
    info : the clip's ground truth (``path`` is None).
    """
    w, h = size
    sector = default_sector(size)
    fan = sector.mask((h, w))
    scale, thick, lines = _text_layout(size)
    boxes = [_box_of(t, o, scale, thick) for t, o in lines]
    clock_origin = (int(0.74 * w), int(28 * scale / 0.5) + 2)
    boxes.append(_box_of("00:00:00", clock_origin, scale, thick))
    bar = (4, int(0.3 * h), 4 + max(6, w // 60), int(0.6 * h))
    ecg_y0, ecg_y1 = int(0.94 * h) + 2, h - 2
    info = ClipInfo(None, n_frames, size, fps, "", doppler, view, sector, boxes)
    for box in boxes:
        x0, y0, x1, y1 = (max(0, v) for v in box)
        if fan[y0:y1, x0:x1].any():
            raise ValueError(f"frame size {size} too small for the synthetic layout")

    def frames() -> Iterator[NDArray[np.uint8]]:
        rng = np.random.default_rng(seed)
        anatomy_rng = np.random.default_rng(seed + 1)
        anatomy_state = anatomy_rng.bit_generator.state
        for i in range(n_frames):
            phase = (i / fps) % 1.0
            anatomy_rng.bit_generator.state = anatomy_state  # same heart, beating
            grey = phantoms.render_view(view, (h, w), anatomy_rng, phase).astype(np.float32)
            speckle = rng.rayleigh(18.0, (h, w)).astype(np.float32)
            img = np.clip(0.8 * grey + speckle, 1, 255).astype(np.uint8)
            img[~fan] = 0
            # cv2's stubs return any numeric array; grey to BGR keeps uint8
            frame = cast(NDArray[np.uint8], cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
            if doppler:
                _draw_doppler(frame, sector, phase)
                _draw_colour_bar(frame, bar)
            for text, origin in lines:
                cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale,
                            (255, 255, 255), thick, cv2.LINE_AA)
            secs = 9 * 3600 + 41 * 60 + int(i / fps)
            clock = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
            cv2.putText(frame, clock, clock_origin, cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (255, 255, 255), thick, cv2.LINE_AA)
            _draw_ecg(frame, ecg_y0, ecg_y1, i)
            yield frame

    return frames(), info


def _draw_doppler(frame: NDArray[np.uint8], sector: Sector, phase: float) -> None:
    """Blobs of flow colour inside the fan: red with hue near 0 and near 179, and blue."""
    ax, ay = sector.apex
    r = sector.radius
    size = max(4, r // 10)
    wobble = math.sin(2 * math.pi * phase)
    blobs = [  # (angle deg, depth fraction, BGR colour)
        (-12 + 4 * wobble, 0.55, (35, 20, 230)),   # red, hue ~ 178
        (-4 + 3 * wobble, 0.62, (0, 40, 210)),     # red-orange, hue ~ 6
        (10 - 4 * wobble, 0.50, (230, 60, 20)),    # blue, hue ~ 114
    ]
    for angle, depth, colour in blobs:
        a = math.radians(angle)
        cx = int(ax + depth * r * math.sin(a))
        cy = int(ay + depth * r * math.cos(a))
        axes = (int(size * (1.2 + 0.3 * wobble)), size)
        cv2.ellipse(frame, (cx, cy), axes, angle, 0, 360, colour, -1)


def _draw_colour_bar(frame: NDArray[np.uint8], box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    t = np.linspace(0.0, 1.0, y1 - y0)[:, None]
    red = np.array([0, 0, 255], np.float32)
    blue = np.array([255, 0, 0], np.float32)
    column = np.where(t < 0.5, (1 - 2 * t) * red[None], (2 * t - 1) * blue[None])
    frame[y0:y1, x0:x1] = column[:, None, :].astype(np.uint8)


def _draw_ecg(frame: NDArray[np.uint8], y0: int, y1: int, i: int) -> None:
    h, w = frame.shape[:2]
    if y1 - y0 < 4:
        return
    xs = np.arange(w)
    beat = ((xs + 7 * i) % 90) / 90.0
    spike = np.exp(-((beat - 0.3) ** 2) / 0.0008)
    ys = (y1 - 2 - spike * (y1 - y0 - 4)).astype(np.int32)
    visible = xs < (9 * i) % w + 40
    pts = np.stack([xs[visible], ys[visible]], axis=1).reshape(-1, 1, 2)
    cv2.polylines(frame, [pts], False, (40, 220, 40), 1)


def write_clip(
    path: str | Path,
    n_frames: int = 60,
    size: tuple[int, int] = (640, 480),
    *,
    fourcc: str = "MJPG",
    fps: float = 25.0,
    doppler: bool = True,
    view: str = "plax",
    seed: int = 0,
    layout: Layout | str | None = None,
) -> ClipInfo:
    """Render a clip and encode it with OpenCV's writer; see :func:`render_clip`.

    ``layout``: render that screen layout instead (a :class:`~.layouts.Layout` or a name in
    :data:`~.layouts.LAYOUTS`; B-mode, ``doppler`` is ignored), see
    :func:`~.layouts.render_layout`.
    """
    path = Path(path)
    if layout is None:
        frames, info = render_clip(n_frames, size, fps=fps, doppler=doppler, view=view,
                                   seed=seed)
    else:
        frames, truth = render_layout(layout, n_frames, size, fps=fps, view=view, seed=seed)
        outside = [b.box for b in truth.boxes if b.where == "outside"]
        info = ClipInfo(None, n_frames, size, fps, "", False, view, None, outside, truth)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    info.path, info.fourcc = path, fourcc
    return info


@dataclass(frozen=True)
class SampleClip:
    """One clip of a sample set: its file name stem and the :func:`write_clip` arguments."""

    name: str
    n_frames: int
    size: tuple[int, int]
    fourcc: str
    doppler: bool = True
    view: str = "plax"


SETS: dict[str, list[SampleClip]] = {
    "sample": [
        SampleClip("echo_doppler_plax", n_frames=40, size=(640, 480), fourcc="MJPG"),
        SampleClip("echo_doppler_a4c", n_frames=40, size=(1016, 708), fourcc="mp4v", view="a4c"),
        SampleClip("echo_bmode_psax", n_frames=30, size=(640, 480), fourcc="XVID",
                   doppler=False, view="psax"),
    ],
}


@dataclass(frozen=True)
class NewClips:
    """The options of ``--count`` clips; the defaults are what an option left out means."""

    seed: int = 0
    size: tuple[int, int] = (640, 480)
    codec: str = "MJPG"
    frames: int = 40
    fps: float = 25.0
    view: str = "plax"
    doppler: bool = True


#: Largest ``--size`` side: frames are rendered whole, 8192 x 8192 is ~200 MB a frame.
MAX_SIDE = 8192


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    """An argparse ``type``: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _frame_size(text: str) -> tuple[int, int]:
    """An argparse ``type``: ``WxH`` in pixels -> (width, height), both even and large enough.

    Odd sizes are refused: the 4:2:0 encoders here silently drop the odd last row or column.
    """
    w_text, sep, h_text = text.lower().partition("x")
    if not (sep and w_text.isdigit() and h_text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels (640x480), not {text!r}")
    size = (int(w_text), int(h_text))
    if max(size) > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"{text}: at most {MAX_SIDE} pixels a side")
    if size[0] % 2 or size[1] % 2:
        raise argparse.ArgumentTypeError(f"{text}: width and height must be even (the encoders "
                                         "drop an odd last row or column)")
    try:
        render_clip(1, size)  # checks the layout at once; frames are rendered lazily
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is too small for the synthetic layout "
                                         "(480x360 fits)") from None
    return size


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m radiomicsd.testing.synthetic``."""
    d = NewClips()
    parser = argparse.ArgumentParser(
        prog="python -m radiomicsd.testing.synthetic",
        description="Write synthetic echocardiography clips (fan-shaped sector, beating heart "
        "phantom, optional colour Doppler, burned-in FAKE patient text) into a folder: a named "
        "sample set (the default) or, with --count, any number of new clips.",
        epilog="Examples: --out samples/in --set sample;  --out in --count 20 --seed 100 "
        "--size 1016x708 --codec FFV1 --frames 60 --no-doppler")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="folder to write clips into (created if missing)")
    parser.add_argument("--set", choices=sorted(SETS),
                        help="write this named set of fixed clips (default: sample, unless "
                        "--count is given); files already there are kept")
    new = parser.add_argument_group(
        "new clips", "With --count, N clips are written; clip i uses seed S+i, so every clip "
        "has its own content. The name records every option (echo_<view>_<doppler|bmode>_<W>x"
        "<H>_<frames>f_<fps>fps_<codec>_seed<seed>.<ext>); a file of that name already there "
        "is kept, since the same options give the same bytes. Each clip appears in DIR by an "
        "atomic rename, so DIR may be a watched input folder. The options below need --count.")
    new.add_argument("--count", type=_int_at_least(1), metavar="N",
                     help="number of new clips to write")
    new.add_argument("--seed", type=_int_at_least(0), metavar="S",
                     help=f"seed of the first clip, >= 0 (default {d.seed}); the same seed "
                     "and options reproduce the same files")
    new.add_argument("--size", type=_frame_size, metavar="WxH",
                     help="frame width x height in pixels, both even, at least about 480x360 "
                     "(default 640x480)")
    new.add_argument("--codec", choices=sorted(CODECS),
                     help="encoder and container: MJPG Motion JPEG (.avi), FFV1 lossless "
                     "(.avi), XVID MPEG-4 Part 2 (.avi), mp4v MPEG-4 Part 2 (.mp4); OpenCV "
                     f"reports both MPEG-4 ones as FMP4 when reading (default {d.codec})")
    new.add_argument("--frames", type=_int_at_least(1), metavar="N",
                     help=f"frames per clip (default {d.frames})")
    new.add_argument("--fps", type=_positive_float, metavar="F",
                     help=f"frame rate, drives the burned-in clock and the heart beat (default "
                     f"{d.fps:g})")
    new.add_argument("--view", choices=phantoms.VIEWS,
                     help=f"heart phantom's echo view (default {d.view})")
    new.add_argument("--doppler", action=argparse.BooleanOptionalAction,
                     help="--doppler (default): colour-Doppler flow blobs in the sector and a "
                     "colour bar beside it; --no-doppler: a B-mode clip without colour")
    return parser


def _new_clip_name(*, view: str, doppler: bool, size: tuple[int, int], frames: int, fps: float,
                   codec: str, seed: int) -> str:
    mode = "doppler" if doppler else "bmode"
    return (f"echo_{view}_{mode}_{size[0]}x{size[1]}_{frames}f_{fps:g}fps_{codec}_seed{seed}"
            f"{CODECS[codec]}")


def write_new_clips(out: Path, count: int, *, seed: int, size: tuple[int, int], codec: str,
                    frames: int, fps: float, view: str, doppler: bool) -> list[Path]:
    """Write ``count`` clips with seeds ``seed``, ``seed + 1``, ... into ``out``; their paths.

    Each clip is encoded under a hidden name (``.partial-...``, which the daemon ignores) and
    renamed into place; a clip whose name exists already is kept.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip_seed in range(seed, seed + count):
        name = _new_clip_name(view=view, doppler=doppler, size=size, frames=frames, fps=fps,
                              codec=codec, seed=clip_seed)
        target = out / name
        if not target.exists():
            partial = out / f".partial-{name}"
            try:
                write_clip(partial, frames, size, fourcc=codec, fps=fps, doppler=doppler,
                           view=view, seed=clip_seed)
                partial.replace(target)
            finally:
                partial.unlink(missing_ok=True)
        paths.append(target)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Write a named set of sample clips, or ``--count`` new clips, into ``--out``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out: Path = args.out
    given = {f.name: getattr(args, f.name) for f in fields(NewClips)
             if getattr(args, f.name) is not None}
    count: int | None = args.count
    if count is None:
        if given:
            names = ", ".join(f"--{name}" for name in given)
            parser.error(f"{names}: only with --count (a named set has fixed clips)")
        set_name: str = args.set or "sample"
        out.mkdir(parents=True, exist_ok=True)
        for seed, clip in enumerate(SETS[set_name]):
            target = out / f"{clip.name}{CODECS[clip.fourcc]}"
            if not target.exists():
                write_clip(target, clip.n_frames, clip.size, fourcc=clip.fourcc,
                           doppler=clip.doppler, view=clip.view, seed=seed)
            print(f"sample clip: {target}")
        return 0
    if args.set is not None:
        parser.error("--set and --count exclude each other")
    o = NewClips(**given)
    try:
        paths = write_new_clips(out, count, seed=o.seed, size=o.size, codec=o.codec,
                                frames=o.frames, fps=o.fps, view=o.view, doppler=o.doppler)
    except (RuntimeError, OSError) as exc:
        parser.exit(1, f"error: {exc}\n")
    for path in paths:
        print(f"synthetic clip: {path}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
