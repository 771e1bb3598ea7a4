"""The one frame check every stage uses: decoded frames are uint8 BGR arrays of shape (H, W, 3)."""

from __future__ import annotations

from typing import Any

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
