"""The preview of a proposed mask, for a person deciding on a ``needs_review`` refusal.

The frame is pixelated into blocks of at least 8 px (a sixtieth of its short side when that is
larger) before anything is drawn: no glyph of burned-in text stays legible, while the layout
(where the fan, the bands of text, the colour bar lie) still shows. The kept area is drawn at
full brightness with its outline in green, the rest dimmed to a third. The PNG carries no
metadata; the mask itself is stored beside it as a 0/255 grey PNG.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

#: Outline colour (BGR) and width of the kept area.
OUTLINE = (0, 255, 0)
OUTLINE_PX = 2


def block_size(shape: tuple[int, int]) -> int:
    """Side (px) of the preview's pixel blocks for an (H, W) frame."""
    return max(8, min(shape) // 60)


def preview(frame_bgr: NDArray[np.uint8], keep: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """uint8 BGR (H, W, 3): ``frame_bgr`` pixelated, dimmed outside ``keep`` (uint8 (H, W),
    255 = kept), the kept area outlined."""
    h, w = keep.shape
    block = block_size((h, w))
    small = cv2.resize(frame_bgr, (max(1, w // block), max(1, h // block)),
                       interpolation=cv2.INTER_AREA)
    out = cast(NDArray[np.uint8], cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST))
    outside = keep == 0
    out[outside] = out[outside] // 3
    contours, _ = cv2.findContours(keep, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, OUTLINE, OUTLINE_PX)
    return out


def encode_png(image: NDArray[np.uint8]) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, 3) BGR image (OpenCV writes no text chunks)."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return bytes(data.tobytes())


def decode_mask(data: bytes, shape: tuple[int, int] | None = None) -> NDArray[np.uint8] | None:
    """A stored mask back as uint8 (H, W) 0/255; None when it does not decode or is not of
    ``shape`` (when given)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None or (shape is not None and image.shape != shape):
        return None
    return cast(NDArray[np.uint8], np.where(image > 127, 255, 0).astype(np.uint8))
