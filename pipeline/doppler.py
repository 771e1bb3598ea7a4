"""Colour-Doppler detection on the first frame (HSV thresholds, as the pilot did).

The pilot looked for red only at OpenCV hues 169..189, which in effect is 169..179: reds just
past the wrap-around (hue 0..9) were missed. Hue ranges here are inclusive (lo, hi) pairs on
OpenCV's 0..179 scale; a range with lo > hi wraps around 0 (e.g. (169, 9)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.settings import setting


@dataclass(frozen=True)
class DopplerSettings:
    """Thresholds of the Doppler check; defaults are the pilot's, with the red wrap fixed.

    ``min_pixels`` = 98 is the pilot's 25000 / 255 (its masks held 255 per pixel).
    """

    blue_hue: tuple[int, int] = setting((110, 130), "blue hue range [lo, hi], 0..179",
                                        live=True)
    red_hue: tuple[int, int] = setting((169, 9), "red hue range; the pilot's 169..189 missed "
                                       "reds at hue 0..9", live=True)
    min_saturation: int = setting(50, "minimum HSV saturation of a colour pixel", ge=0, le=255,
                                  live=True)
    min_value: int = setting(50, "minimum HSV value of a colour pixel", ge=0, le=255, live=True)
    min_pixels: int = setting(98, "colour pixels needed: the pilot's 25000 / 255", ge=1,
                              live=True)

    def __post_init__(self) -> None:
        for name in ("blue_hue", "red_hue"):
            if not all(0 <= v <= 179 for v in getattr(self, name)):
                raise ValueError(f"{name}: hues are 0..179")


def _hue_mask(hue: NDArray[np.uint8], lo: int, hi: int) -> NDArray[np.bool_]:
    if lo <= hi:
        return (hue >= lo) & (hue <= hi)
    return (hue >= lo) | (hue <= hi)


def doppler_pixels(frame_bgr: NDArray[np.uint8], settings: DopplerSettings = DopplerSettings(),
                   where: NDArray[np.bool_] | None = None) -> int:
    """Count flow-coloured pixels of a BGR frame (H, W, 3), optionally only where ``where``."""
    # cv2's stubs return any numeric array; BGR to HSV keeps uint8 (hue 0..179)
    hsv = cast(NDArray[np.uint8], cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2HSV))
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    vivid = (sat >= settings.min_saturation) & (val >= settings.min_value)
    colour = _hue_mask(hue, *settings.blue_hue) | _hue_mask(hue, *settings.red_hue)
    hits = vivid & colour
    if where is not None:
        hits &= where
    return int(np.count_nonzero(hits))


def is_doppler(frame_bgr: NDArray[np.uint8], settings: DopplerSettings = DopplerSettings(),
               where: NDArray[np.bool_] | None = None) -> bool:
    """True when the frame has at least ``settings.min_pixels`` flow-coloured pixels."""
    return doppler_pixels(frame_bgr, settings, where) >= settings.min_pixels
