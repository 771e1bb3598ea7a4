"""De-identification masks: keep the ultrasound scan sector, black out everything else.

Two methods, combined by default:

``auto``
    The scan sector is the one large region whose pixels change from frame to frame (speckle,
    moving tissue, flow). Burned-in text, colour bars and labels are static; a clock or an ECG
    trace changes rarely per pixel. Over a look-ahead of frames we count, per pixel, how often it
    changed, keep pixels that changed in a good share of frame pairs, remove thin structures,
    take the largest connected region and fill its convex hull (a fan is convex), grown by a small
    margin. Everything outside is blacked out in every frame; everything inside is written exactly
    as decoded.

    A single-frame clip (or one in which nothing moves) has no motion to go by. Then the sector
    is found from structure: non-black pixels, closed to fill speckle gaps, opened with a kernel
    wider than text strokes, largest region, convex hull. If neither way finds a region of at
    least ``min_sector_fraction`` of the frame, the clip is refused (``no_scan_sector``) rather
    than exported with text in it.

``regions``
    Configured boxes, in pixels or fractions of the frame, are blacked out (the pilot's device
    printed patient data in the top-right box, rows 0..h/6 x columns 2w/3..w).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.errors import InputError
from radiomicsd.pipeline.settings import setting


class MaskMethod(str, enum.Enum):
    """How the kept area is found (see the module docstring)."""

    AUTO_REGIONS = "auto+regions"
    AUTO = "auto"
    REGIONS = "regions"


class NoScanSector(InputError):
    reason = "no_scan_sector"


class NeedsReview(InputError):
    """The live-image detector cannot vouch for its mask (e.g. one frame of a device whose
    file gives no image regions): refused for a person to look at, rather than guessed.

    ``proposed`` is the mask the detector would have used (None when it has none): the review
    preview draws it, and an approval exports with it.
    """

    reason = "needs_review"

    def __init__(self, message: str, *, proposed: Mask | None = None) -> None:
        super().__init__(message)
        self.proposed = proposed
        #: set by the exporter: what a reviewer needs (proposed mask, preview, facts)
        self.review: object | None = None


@dataclass(frozen=True)
class Region:
    """A box to black out: (x0, y0, x1, y1), end exclusive, in ``unit`` 'fraction' or 'pixels'."""

    x0: float
    y0: float
    x1: float
    y1: float
    unit: str = "fraction"

    def __post_init__(self) -> None:
        if self.unit not in ("fraction", "pixels"):
            raise ValueError("a region's unit is fraction or pixels")

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> Region:
        """From the config form ``{box: [x0, y0, x1, y1], unit: fraction | pixels}``."""
        box = value.get("box") if isinstance(value, Mapping) else None
        extra = set(value) - {"box", "unit"} if isinstance(value, Mapping) else set()
        if not isinstance(box, (list, tuple)) or len(box) != 4 or extra or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            raise ValueError("regions need box: [x0, y0, x1, y1] and unit: fraction | pixels")
        x0, y0, x1, y1 = (float(v) for v in box)
        return cls(x0, y0, x1, y1, unit=value.get("unit", "fraction"))

    def to_mapping(self) -> dict[str, Any]:
        return {"box": [self.x0, self.y0, self.x1, self.y1], "unit": self.unit}

    def pixels(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """Clip the box to an (H, W) frame and return integer pixel bounds."""
        h, w = shape
        sx, sy = (w, h) if self.unit == "fraction" else (1, 1)
        x0, x1 = (int(round(np.clip(v * sx, 0, w))) for v in (self.x0, self.x1))
        y0, y1 = (int(round(np.clip(v * sy, 0, h))) for v in (self.y0, self.y1))
        return x0, y0, x1, y1


#: The pilot's fixed box: the top sixth of the frame, right third (to 4 decimals, as the
#: config file writes it; the same pixels up to 4000-pixel-wide frames).
PILOT_REGION = Region(0.6667, 0.0, 1.0, 0.1667)


@dataclass(frozen=True)
class MaskSettings:
    """Settings of the de-identification mask (see the module docstring)."""

    method: MaskMethod = setting(
        MaskMethod.AUTO_REGIONS, "auto: keep only the moving scan sector | auto+regions: that, "
        "and black out the boxes too | regions: black out the boxes only (leaves any text "
        "outside them: needs allow_text_outside_regions)", live=True)
    allow_text_outside_regions: bool = setting(
        False, "must be true for method regions: the operator accepts that burned-in text "
        "outside the configured boxes is exported", live=True)
    lookahead_frames: int = setting(16, "frames used to find the sector (held in memory)",
                                    ge=1, le=1000, live=True)
    change_threshold: int = setting(6, "grey-level change that counts as motion", ge=0, le=255,
                                    live=True)
    changed_share: float = setting(
        0.25, "share of frame pairs in which a sector pixel must change", gt=0, le=1, live=True)
    margin_px: int = setting(3, "the found sector is grown by this many pixels", ge=0, le=64,
                             live=True)
    min_sector_fraction: float = setting(
        0.05, "smaller sector => refuse the clip (no_scan_sector)", gt=0, le=1, live=True)
    regions: tuple[Region, ...] = setting(
        (PILOT_REGION,), "boxes [x0, y0, x1, y1], end exclusive; unit: fraction | pixels",
        live=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", MaskMethod(self.method))  # a plain string is accepted
        if self.method == MaskMethod.REGIONS and not self.allow_text_outside_regions:
            raise ValueError("method 'regions' exports burned-in text wherever no box is "
                             "configured; set allow_text_outside_regions: true to accept that")


@dataclass(frozen=True)
class Mask:
    """``keep`` is a uint8 (H, W) array: 255 where pixels are kept, 0 where blacked out."""

    keep: NDArray[np.uint8]
    method: str

    @property
    def masked_fraction(self) -> float:
        """Share of the frame blacked out, 0..1."""
        return float(np.count_nonzero(self.keep == 0)) / self.keep.size

    @functools.cached_property
    def keep3(self) -> NDArray[np.uint8]:
        """``keep`` repeated over three channels, uint8 (H, W, 3): one AND per byte."""
        return cast(NDArray[np.uint8], cv2.merge([self.keep] * 3))

    def apply(self, frame_bgr: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Black out masked pixels of a BGR (H, W, 3) frame *in place* and return it.

        Kept pixels are left exactly as decoded (AND with 255). In place because the decoded
        frame is not needed unmasked afterwards: ~4x faster than a masked copy (measured).
        """
        if frame_bgr.shape != self.keep3.shape:
            raise ValueError(f"frame of {frame_bgr.shape[1]}x{frame_bgr.shape[0]} after "
                                   f"frames of {self.keep.shape[1]}x{self.keep.shape[0]}")
        return cast(NDArray[np.uint8], cv2.bitwise_and(frame_bgr, self.keep3, dst=frame_bgr))


def _largest_hull(binary: NDArray[np.uint8], min_fraction: float) -> NDArray[np.uint8] | None:
    """Filled convex hull (uint8 0/255) of the largest region, or None if it is too small."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < min_fraction * binary.size:
        return None
    ys, xs = np.nonzero(labels == best)
    hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32))
    out = np.zeros_like(binary)
    cv2.fillConvexPoly(out, hull, 255)
    return out


def _kernel(size: int) -> NDArray[np.uint8]:
    return cast(NDArray[np.uint8], cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))


def motion_sector(
    greys: Sequence[NDArray[np.uint8]], settings: MaskSettings
) -> NDArray[np.uint8] | None:
    """Sector from frame-to-frame change over >= 2 grey (H, W) frames; None if nothing moves."""
    changes = np.zeros(greys[0].shape, np.uint16)
    for a, b in zip(greys, greys[1:]):
        changes += cv2.absdiff(a, b) > settings.change_threshold
    need = max(1, int(np.ceil(settings.changed_share * (len(greys) - 1))))
    moving: NDArray[np.uint8] = (changes >= need).astype(np.uint8) * 255
    # cv2's stubs return any numeric array; the morphology and logic calls here keep uint8
    moving = cast(NDArray[np.uint8], cv2.morphologyEx(moving, cv2.MORPH_CLOSE, _kernel(7)))
    moving = cast(NDArray[np.uint8], cv2.morphologyEx(moving, cv2.MORPH_OPEN, _kernel(5)))
    return _largest_hull(moving, settings.min_sector_fraction)


def static_sector(grey: NDArray[np.uint8], settings: MaskSettings) -> NDArray[np.uint8] | None:
    """Sector from the structure of one grey (H, W) frame; None if no large region exists.

    Opening with a kernel wider than text strokes isolates the fan but also shaves its thin
    apex; the hull is therefore taken again over the lit pixels within one kernel width of the
    opened region, which gives the apex back without reaching text further away.
    """
    lit: NDArray[np.uint8] = (grey > 12).astype(np.uint8) * 255
    lit = cast(NDArray[np.uint8], cv2.morphologyEx(lit, cv2.MORPH_CLOSE, _kernel(5)))
    stroke = max(9, (min(grey.shape) // 60) | 1)
    opened = cast(NDArray[np.uint8], cv2.morphologyEx(lit, cv2.MORPH_OPEN, _kernel(stroke)))
    core = _largest_hull(opened, settings.min_sector_fraction)
    if core is None:
        return None
    near = cast(NDArray[np.uint8], cv2.bitwise_and(lit, cv2.dilate(core, _kernel(stroke))))
    return _largest_hull(near, settings.min_sector_fraction)


def regions_keep(shape: tuple[int, int], regions: Sequence[Region]) -> NDArray[np.uint8]:
    """uint8 (H, W) keep-mask with every region set to 0."""
    keep = np.full(shape, 255, np.uint8)
    for region in regions:
        x0, y0, x1, y1 = region.pixels(shape)
        keep[y0:y1, x0:x1] = 0
    return keep


def build_mask(
    lookahead: Sequence[NDArray[np.uint8]], settings: MaskSettings = MaskSettings(), *,
    bounds: NDArray[np.uint8] | None = None,
) -> Mask:
    """Build the de-identification mask from the first frames of a clip.

    Parameters
    ----------
    lookahead : the clip's first BGR (H, W, 3) frames, at least one.
    settings : method, regions and detection thresholds.
    bounds : uint8 (H, W), 255 where the live image may lie (a DICOM file's ultrasound image
        regions), or None. The detector sees nothing outside it and the kept area never
        extends beyond it; regions are generous (they often hold parameter columns), so
        detection still runs inside.

    Raises
    ------
    NoScanSector : ``auto`` found no sector of at least ``min_sector_fraction``.
    """
    shape = lookahead[0].shape[:2]
    keep: NDArray[np.uint8] = np.full(shape, 255, np.uint8)
    method = settings.method.value
    if settings.method in (MaskMethod.AUTO, MaskMethod.AUTO_REGIONS):
        # cv2's stubs return any numeric array; these calls keep the uint8 of their input
        greys = [cast(NDArray[np.uint8], cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)) for f in lookahead]
        if bounds is not None:
            greys = [cast(NDArray[np.uint8], cv2.bitwise_and(g, bounds)) for g in greys]
        sector = motion_sector(greys, settings) if len(greys) > 1 else None
        kind = "motion"
        if sector is None:
            sector, kind = static_sector(greys[0], settings), "structure"
        if sector is None:
            raise NoScanSector("no scan sector found")
        if settings.margin_px:
            sector = cast(NDArray[np.uint8],
                          cv2.dilate(sector, _kernel(2 * settings.margin_px + 1)))
        keep = sector
        method = method.replace("auto", f"auto({kind})")
    if bounds is not None:
        keep = cast(NDArray[np.uint8], cv2.bitwise_and(keep, bounds))
        method += "+bounded"
    if settings.method in (MaskMethod.REGIONS, MaskMethod.AUTO_REGIONS):
        keep = cast(NDArray[np.uint8], cv2.bitwise_and(keep, regions_keep(shape, settings.regions)))
    return Mask(keep, method)
