"""Sanity of the hand-drawn ground truth in tests/data/us_dicom_truth.json.

The boxes and live areas were drawn by looking at pydicom's bundled ultrasound files; these tests
check the drawing against the files themselves: every box lies in its frame, the 'where' tags
agree with the live area, every text box holds glyph-like pixels, and whatever no box and no live
area covers is background (black or the flat UI colours listed for the file) in every frame.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", minversion="3.0")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.pixels import apply_color_lut, get_decoder  # noqa: E402

TRUTH_PATH = Path(__file__).resolve().parent / "data" / "us_dicom_truth.json"
TRUTH: dict = json.loads(TRUTH_PATH.read_text())
FILES = sorted(k for k in TRUTH if k.endswith(".dcm"))
#: 'edge' boxes touch the live area or lie at most this many pixels from it.
EDGE_PX = 8
#: An outside 'text' box is tight when each side's outermost this many rows/columns hold ink.
TIGHT_PX = 2


def polygon_mask(polygon: list[list[float]], rows: int, columns: int) -> np.ndarray:
    """Pixels whose centre lies inside ``polygon`` (even-odd rule), shape (rows, columns)."""
    p = np.asarray(polygon, dtype=float)
    yy, xx = np.mgrid[0:rows, 0:columns] + 0.5
    inside = np.zeros((rows, columns), dtype=bool)
    for (xa, ya), (xb, yb) in zip(p, np.roll(p, -1, axis=0)):
        if ya == yb:
            continue
        crosses = (ya > yy) != (yb > yy)
        inside ^= crosses & (xx < xa + (yy - ya) * (xb - xa) / (yb - ya))
    return inside


def live_mask(entry: dict) -> np.ndarray:
    """Union of the live parts (boxes and polygons) of one file, shape (rows, columns)."""
    rows, columns = entry["frame"]["rows"], entry["frame"]["columns"]
    mask = np.zeros((rows, columns), dtype=bool)
    for part in entry["live"]["parts"]:
        if "box" in part:
            x0, y0, x1, y1 = part["box"]
            mask[y0:y1, x0:x1] = True
        else:
            mask |= polygon_mask(part["polygon"], rows, columns)
    return mask


def image_mask(entry: dict) -> np.ndarray:
    """The live area without the boxes of text typed over it (labels): the image under a
    label is the label's, as in the layout tests (there, under and within 2 px of a glyph)."""
    shape = (entry["frame"]["rows"], entry["frame"]["columns"])
    mask = live_mask(entry)
    for item in entry["text"]:
        if item["kind"] == "text" and item["where"] == "inside":
            mask &= ~box_mask(item["box"], shape)
    return mask


def box_mask(box: list[int], shape: tuple[int, int], grow: int = 0) -> np.ndarray:
    """The end-exclusive ``box`` grown by ``grow`` px on each side, as a mask of ``shape``."""
    x0, y0, x1, y1 = box
    mask = np.zeros(shape, dtype=bool)
    mask[max(0, y0 - grow):y1 + grow, max(0, x0 - grow):x1 + grow] = True
    return mask


@cache
def frames_rgb(name: str) -> np.ndarray:
    """All frames of a bundled file as uint8 RGB, shape (frames, rows, columns, 3)."""
    ds = pydicom.dcmread(get_testdata_file(name))
    if not get_decoder(ds.file_meta.TransferSyntaxUID).is_available:
        pytest.skip(f"no pydicom pixel decoder for {ds.file_meta.TransferSyntaxUID.name}")
    arr = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        if arr.dtype != np.uint8:
            arr = (arr >> 8).astype(np.uint8)
    frames = arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[None]
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
    return frames


def glyph_distance(img: np.ndarray, colours: list[list[int]]) -> np.ndarray:
    """Per pixel of ``img`` (rows, columns, 3), grey levels to the nearest of ``colours``."""
    bg = np.asarray(colours, dtype=np.int16)
    diff = np.abs(img.astype(np.int16)[:, :, None, :] - bg[None, None]).max(axis=-1)
    return diff.min(axis=-1)


def test_truth_file_says_how_it_was_made() -> None:
    assert TRUTH["comment"].startswith("drawn by hand by looking at the decoded frames")
    assert "end-exclusive" in TRUTH["comment"]
    assert len(FILES) == 6  # pydicom's five and pydicom-data's SonoSite cine


@pytest.mark.parametrize("name", FILES)
def test_boxes_and_live_lie_inside_the_frame(name: str) -> None:
    entry = TRUTH[name]
    ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    rows, columns = int(ds.Rows), int(ds.Columns)
    assert (entry["frame"]["rows"], entry["frame"]["columns"]) == (rows, columns)
    for item in entry["text"]:
        x0, y0, x1, y1 = item["box"]
        assert 0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows, item["label"]
    for part in entry["live"]["parts"]:
        points = [part["box"][:2], part["box"][2:]] if "box" in part else part["polygon"]
        for x, y in points:
            assert 0 <= x <= columns and 0 <= y <= rows, part["what"]
    live = live_mask(entry)
    assert live.any()
    ys, xs = np.nonzero(live)
    bx0, by0, bx1, by1 = entry["live"]["bbox"]
    assert bx0 <= xs.min() and by0 <= ys.min() and xs.max() < bx1 and ys.max() < by1


@pytest.mark.parametrize("name", FILES)
def test_where_tags_agree_with_the_live_area(name: str) -> None:
    entry = TRUTH[name]
    live = live_mask(entry)
    bbox = box_mask(entry["live"]["bbox"], live.shape)
    for item in entry["text"]:
        box = box_mask(item["box"], live.shape)
        meets = bool((box & live).any())
        near = bool((box_mask(item["box"], live.shape, grow=EDGE_PX) & live).any())
        expected = {"outside": not meets, "inside": meets, "edge": near}[item["where"]]
        assert expected, f"{item['label']}: tagged {item['where']}"
        assert item["in_live_bbox"] == bool((box & bbox).any()), item["label"]


@pytest.mark.parametrize("name", FILES)
def test_text_boxes_hold_glyph_pixels(name: str) -> None:
    entry = TRUTH[name]
    dist = glyph_distance(frames_rgb(name)[0], entry["glyph"]["background"])
    glyph = dist > entry["glyph"]["threshold"]
    for item in entry["text"]:
        x0, y0, x1, y1 = item["box"]
        count = int(glyph[y0:y1, x0:x1].sum())
        assert count >= 3, f"{item['label']}: {count} glyph-like pixels"
        if item["where"] == "outside" and item["kind"] == "text":
            # tight: no side of the box has more than TIGHT_PX empty rows or columns (glyph
            # fringes at half the threshold count, as decoders differ by a few grey levels)
            ink = dist[y0:y1, x0:x1] > entry["glyph"]["threshold"] // 2
            k = TIGHT_PX
            sides = (ink[:k].any(), ink[-k:].any(), ink[:, :k].any(), ink[:, -k:].any())
            assert all(sides), f"{item['label']}: loose side (top, bottom, left, right) {sides}"


@pytest.mark.parametrize("name", FILES)
def test_nothing_but_background_outside_boxes_and_live(name: str) -> None:
    entry = TRUTH[name]
    frames = frames_rgb(name)
    live = live_mask(entry)
    covered = live.copy()
    background = list(entry["glyph"]["background"])
    for item in entry["text"]:
        if "fill" in item:
            # a flat panel: its fill is background, and each glyph on it has a box of its own
            background.append(item["fill"])
        else:
            covered |= box_mask(item["box"], live.shape)
    free = ~covered
    threshold = entry["glyph"]["threshold"]
    brightest = glyph_distance(frames.max(axis=0), background)
    if not free.any():
        # a cut-out of the image: no dark surround at all, not even in the corners
        assert min(brightest[0, 0], brightest[0, -1], brightest[-1, 0], brightest[-1, -1]) > 100
        return
    darkest = glyph_distance(frames.min(axis=0), background)
    stray = (np.maximum(brightest, darkest) > threshold) & free
    # JPEG ringing may put a lone pixel just above the threshold beside a glyph
    assert stray.sum() <= max(2, free.sum() // 10_000), np.argwhere(stray)[:10].tolist()
    rows, columns = live.shape
    for cy, cx in ((0, 0), (0, columns - 8), (rows - 8, 0), (rows - 8, columns - 8)):
        corner = (slice(cy, cy + 8), slice(cx, cx + 8))
        if free[corner].all():
            assert brightest[corner].max() <= threshold, (cx, cy)
