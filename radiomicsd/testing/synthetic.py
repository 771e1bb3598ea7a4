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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.testing import phantoms

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
    datum, all outside the sector.
    """

    path: Path | None
    n_frames: int
    size: tuple[int, int]
    fps: float
    fourcc: str
    doppler: bool
    view: str
    sector: Sector
    phi_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def sector_mask(self) -> NDArray[np.bool_]:
        """Boolean (H, W) mask of the scan sector."""
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
) -> ClipInfo:
    """Render a clip and encode it with OpenCV's writer; see :func:`render_clip`."""
    path = Path(path)
    frames, info = render_clip(n_frames, size, fps=fps, doppler=doppler, view=view, seed=seed)
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


def main(argv: list[str] | None = None) -> int:
    """Write a named set of sample clips into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write clips into")
    parser.add_argument("--set", default="sample", choices=sorted(SETS), help="which clips")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed, clip in enumerate(SETS[args.set]):
        target = args.out / f"{clip.name}{CODECS[clip.fourcc]}"
        if not target.exists():
            write_clip(target, clip.n_frames, clip.size, fourcc=clip.fourcc, doppler=clip.doppler,
                       view=clip.view, seed=seed)
        print(f"sample clip: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
