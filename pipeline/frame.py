"""The one frame check every stage uses (decoded frames are uint8 BGR arrays of shape
(H, W, 3)), the padded box of a mask's set pixels that several stages crop to, and the
brightest channel that the text searches look at."""

from __future__ import annotations

from typing import Any, cast

import cv2
import numpy as np
from numpy.typing import NDArray


def check_bgr(frame: Any, *, allow_grey: bool = False, min_side: int = 1) -> NDArray[np.uint8]:
    """Return ``frame`` as a uint8 (H, W, 3) BGR array, or raise ValueError saying what it is.

    Parameters
    ----------
    frame : the candidate array.
    allow_grey : also accept a uint8 (H, W) grey frame.
    min_side : smallest height and width accepted, in pixels.
    """
    shaped = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and (
        (frame.ndim == 3 and frame.shape[2] == 3) or (allow_grey and frame.ndim == 2))
    if not shaped:
        kind = "(H, W, 3) BGR or (H, W) grey" if allow_grey else "(H, W, 3) BGR"
        got = (f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray)
               else type(frame).__name__)
        raise ValueError(f"expected a uint8 {kind} frame, got {got}")
    if min(frame.shape[:2]) < min_side:
        raise ValueError(f"frame too small: {frame.shape[1]}x{frame.shape[0]}")
    return frame  # type: ignore[no-any-return]  # checked above


def box_around(mask: NDArray[np.bool_] | NDArray[np.uint8], rows: int = 0, cols: int = 0
               ) -> tuple[slice, slice] | None:
    """The box of the set (non-zero) pixels of a bool or uint8 (H, W) ``mask``, grown by
    ``rows`` and ``cols`` px and clipped to the array, as slices; None when none is set."""
    image: NDArray[np.uint8] = mask.view(np.uint8)  # bool and uint8: the same bytes
    x, y, w, h = cv2.boundingRect(image)
    if w == 0 or h == 0:
        return None
    return (slice(max(0, y - rows), min(mask.shape[0], y + h + rows)),
            slice(max(0, x - cols), min(mask.shape[1], x + w + cols)))


def brightest(bgr: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Per-pixel maximum of B, G, R of a uint8 (H, W, 3) frame (or a cut-out of one), uint8
    (H, W), contiguous: HSV's V, which OpenCV computes ~5x faster than splitting the channels
    and ~30x faster than numpy's maximum over the channel axis (measured at 800x600)."""
    return cast(NDArray[np.uint8], cv2.extractChannel(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), 2))
