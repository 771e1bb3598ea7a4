"""Median filters from sorting networks (pipeline.deid.rank) against numpy's median."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from radiomicsd.pipeline.deid import rank


def _windows(grey: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(H, W, rows, cols): each pixel's window, the image's edges replicated."""
    padded = np.pad(grey, ((rows // 2,) * 2, (cols // 2,) * 2), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, (rows, cols))


@pytest.mark.parametrize("n", [3, 5, 7, 9, 11])
def test_sorting_network_sorts_every_binary_input(n: int) -> None:
    # the 0-1 principle: a comparator network that sorts every 0/1 input sorts every input
    network = rank.sorting_network(n)
    for bits in itertools.product((0, 1), repeat=n):
        values = list(bits)
        for i, j in network:
            values[i], values[j] = min(values[i], values[j]), max(values[i], values[j])
        assert values == sorted(bits)


def test_row_column_and_separable_medians_match_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    monkeypatch.setattr(rank, "STRIP_PIXELS", 97)  # many strips, some of one row
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        size = int(rng.choice([3, 5, 7, 9, 11]))
        grey = rng.integers(0, 256, (h, w)).astype(np.uint8)
        if rng.random() < 0.5:
            grey = (grey // 64 * 64).astype(np.uint8)  # many ties
        rows = np.median(_windows(grey, 1, size), axis=(2, 3)).astype(np.uint8)
        columns = np.median(_windows(grey, size, 1), axis=(2, 3)).astype(np.uint8)
        assert (rank.row_medians(grey, size) == rows).all()
        assert (rank.column_medians(grey, size) == columns).all()
        separable = np.median(_windows(rows, size, 1), axis=(2, 3)).astype(np.uint8)
        assert (rank.separable_median(grey, size) == separable).all()
        least, most = rank.median_bounds(grey, size)
        exact = cv2.medianBlur(grey, size) if size <= 5 else \
            np.median(_windows(grey, size, size), axis=(2, 3)).astype(np.uint8)
        assert ((least <= exact) & (exact <= most)).all()
        assert ((least <= separable) & (separable <= most)).all()
