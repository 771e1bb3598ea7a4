"""The glyph search's text-line boxes: only strokes side by side make a line, and only a line's
box lends its weak pixels (a glyph's faint parts) to the blackout."""

from __future__ import annotations

import numpy as np

from radiomicsd.pipeline.deid.glyphs import _in_runs

SHAPE = (60, 80)


def bright_tissue() -> np.ndarray:
    """Bool (H, W): weak everywhere, as bright tissue is in the look-ahead's minimum."""
    return np.ones(SHAPE, bool)


def test_one_static_speck_takes_no_box_of_tissue() -> None:
    speck = np.zeros(SHAPE, bool)
    speck[30:32, 40:42] = True  # a 2 x 2 static speck: not a line of text
    assert not _in_runs(speck, bright_tissue(), 1.0, 480, seeds=speck).any()


def test_strokes_side_by_side_lend_their_line_box() -> None:
    strokes = np.zeros(SHAPE, bool)
    strokes[26:34, 30] = True  # two glyph-high strokes, 5 px apart: a line
    strokes[26:34, 35] = True
    out = _in_runs(strokes, bright_tissue(), 1.0, 480, seeds=strokes)
    assert out[26:34, 30:36].all()  # the faint parts between them go with the line
    assert not out[:20].any() and not out[40:].any()  # nothing far above or below it


def test_grown_strokes_still_count_their_seeds() -> None:
    # strokes grown through weak pixels into one blob are still two glyphs side by side
    seeds = np.zeros(SHAPE, bool)
    seeds[26:34, 30] = True
    seeds[26:34, 35] = True
    grown = seeds.copy()
    grown[26:34, 30:36] = True
    assert _in_runs(grown, bright_tissue(), 1.0, 480, seeds=seeds)[26:34, 30:36].all()
    # and one seed grown into a blob is still one speck
    one = np.zeros(SHAPE, bool)
    one[30, 40] = True
    blob = np.zeros(SHAPE, bool)
    blob[28:33, 38:43] = True
    assert not _in_runs(blob, bright_tissue(), 1.0, 480, seeds=one).any()


def test_line_box_is_as_high_as_its_seeds() -> None:
    # two static strokes side by side, one grown 4 px up through bright tissue above the
    # line: the box lends the weak pixels of the seeds' rows and 2 px around (to the run's
    # own edge, 1 px below), not those the growth reaches
    seeds = np.zeros(SHAPE, bool)
    seeds[26:34, 30] = True
    seeds[26:34, 35] = True
    grown = seeds.copy()
    grown[22:26, 30] = True
    out = _in_runs(grown, bright_tissue(), 1.0, 480, seeds=seeds)
    assert out[24:35, 30:36].all()
    assert not out[:24].any() and not out[35:].any()
