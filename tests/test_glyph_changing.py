"""The glyph search's "changing" test without a full-frame median: the same answer as the
median filter wherever it is asked, and never True where the median filter says False."""

from __future__ import annotations

import cv2
import numpy as np

from radiomicsd.pipeline.deid.glyphs import _changing
from radiomicsd.pipeline.deid.rank import median_bounds


def test_changing_matches_the_median_filter() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        size = int(rng.choice([3, 5, 7, 9, 11]))
        if rng.random() < 0.5:
            change = rng.gamma(2.0, rng.uniform(0.5, 20), (h, w)).astype(np.float32)
        else:
            change = rng.integers(0, 300, (h, w)).astype(np.float32)
        change[rng.random((h, w)) < 0.3] = 0
        ratio = float(rng.choice([0.0, 0.0005, 0.2, 0.419, 0.7, 1.0]))
        ratio_as = np.float64(ratio) if rng.random() < 0.5 else ratio  # both promotions
        floor = float(rng.uniform(0, 5))
        asked = rng.random((h, w)) < rng.uniform(0, 1)
        grey = np.clip(change, 0, 255).astype(np.uint8)
        nearby = cv2.medianBlur(grey, size)
        expected = (change > floor) & (change > ratio_as * nearby.astype(np.float32))
        got = _changing(change, floor, ratio_as, size, asked=asked)
        assert (got == expected)[asked].all()
        assert expected[got].all()
        least, most = median_bounds(grey, size)
        assert ((least <= nearby) & (nearby <= most)).all()
