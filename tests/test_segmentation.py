"""Doppler colour segmentation: the pilot's per-frame k-means and the fast per-video palette."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from radiomicsd.pipeline.rhd import segmentation as seg
from radiomicsd.testing.phantoms import sector_mask

SHAPE = (160, 120)  # rows, columns: half the pilot's 320 x 240
KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def speckle(rng: np.random.Generator, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Grey speckle inside a fan, black outside: uint8 BGR (H, W, 3)."""
    h, w = shape
    grey = np.clip(rng.rayleigh(40.0, shape) + 20, 0, 255).astype(np.uint8)
    grey[~sector_mask(shape, (w / 2, 4), 0.9 * h, 40)] = 0
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def add_flow(frame: np.ndarray, centre: tuple[int, int], radius: int, towards: bool) -> np.ndarray:
    """Paint a disc of flow, brightest in its centre (red towards the probe, blue away).

    Returns the disc's bool mask (H, W).
    """
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - centre[0], yy - centre[1]) / radius
    disc = r <= 1.0
    level = 255 - 110 * r  # 255 in the centre, 145 at the rim
    channel = 2 if towards else 0
    frame[disc] = 0
    frame[..., channel][disc] = level[disc].astype(np.uint8)
    frame[..., 1][disc] = (40 * (1 - r[disc])).astype(np.uint8)  # a little green: aliasing
    return disc


def flow_frame(seed: int, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A frame with one red and one blue disc; returns (frame, eroded truth mask)."""
    frame = speckle(np.random.default_rng(seed))
    truth = add_flow(frame, (50 + shift, 80), 14, towards=True)
    truth |= add_flow(frame, (80 - shift, 95), 11, towards=False)
    eroded = cv2.erode(truth.view(np.uint8), KERNEL) > 0
    return frame, eroded


def test_boxes_are_the_pilots_at_its_frame_size_and_scale_with_the_frame() -> None:
    white = np.full((320, 240, 3), 255, np.uint8)
    boxed = seg.blackout_boxes(white)
    expected = white.copy()
    expected[1:150, 1:25] = 0
    expected[:, 230:] = 0
    expected[305:, 200:] = 0
    np.testing.assert_array_equal(boxed, expected)
    assert white.min() == 255  # input untouched

    big = seg.blackout_boxes(np.full((640, 480, 3), 255, np.uint8))
    assert (big[2:300, 2:50] == 0).all() and big[300, 2].all() and big[2, 50].all()
    assert (big[:, 460:] == 0).all() and big[:609, 459].all()
    assert (big[610:, 400:] == 0).all() and big[639, 399].all()


@pytest.mark.parametrize(
    ("centre", "doppler"),
    [
        ((53.0, 80.0, 67.0), True),  # red
        ((32.0, 79.0, -108.0), True),  # blue: b = -108 wraps to 148
        ((50.0, 0.3, -0.2), False),  # grey: a = 0, b = trunc(-0.2) = 0
        ((50.0, 20.9, 5.0), False),  # trunc(20.9) = 20 is not > 20
        ((50.0, 21.0, 5.0), True),
        ((50.0, -10.0, -20.0), False),  # -10 -> 246, -20 -> 236: both >= 230
        ((50.0, -26.9, 0.0), False),  # trunc -26 -> 230, not < 230
        ((50.0, -27.0, 0.0), True),  # -27 -> 229
        ((10.9, 80.0, 67.0), False),  # too dark: trunc(L) = 10
        ((11.0, 80.0, 67.0), True),
    ],
)
def test_cluster_rule_reproduces_the_pilots_uint8_cast(centre, doppler) -> None:
    assert seg.doppler_clusters(np.array([centre])).tolist() == [doppler]


def test_pilot_method_finds_the_flow_discs() -> None:
    frame, truth = flow_frame(1)
    result = seg.segment_frame_pilot(frame)
    assert seg.mask_iou(result.mask, truth) >= 0.95
    assert result.mask.dtype == bool and result.mask.shape == SHAPE
    assert result.doppler_bgr.dtype == np.uint8 and result.doppler_bgr.shape == frame.shape


def test_fast_method_finds_the_flow_discs_and_agrees_with_the_pilot() -> None:
    frames = [flow_frame(seed, shift=2 * seed) for seed in range(6)]
    palette = seg.fit_doppler_palette([f for f, _ in frames[:3]], sample_pixels=6000)
    assert palette.has_doppler
    for frame, truth in frames:
        fast = seg.segment_frame(frame, palette)
        pilot = seg.segment_frame_pilot(frame)
        assert seg.mask_iou(fast.mask, truth) >= 0.95
        assert seg.mask_iou(fast.mask, pilot.mask) >= 0.95


def test_doppler_and_anatomic_images_split_the_frame() -> None:
    frame, truth = flow_frame(2)
    result = seg.segment_frame(frame, seg.fit_doppler_palette([frame]))
    boxed = seg.blackout_boxes(frame)
    m = result.mask
    np.testing.assert_array_equal(result.doppler_bgr[m], boxed[m])
    assert not result.doppler_bgr[~m].any()
    coloured = result.anatomic_bgr.max(axis=2) != result.anatomic_bgr.min(axis=2)
    assert not coloured.any()  # no flow colour left in the anatomic image
    assert not result.anatomic_bgr[m].any()
    grey = ~cv2.dilate(truth.view(np.uint8), KERNEL, iterations=3).astype(bool)
    np.testing.assert_array_equal(result.anatomic_bgr[grey], boxed[grey])


def test_grey_frames_give_empty_masks() -> None:
    frames = [speckle(np.random.default_rng(s)) for s in range(3)]
    palette = seg.fit_doppler_palette(frames)
    assert not palette.has_doppler
    for frame in frames:
        for result in (seg.segment_frame(frame, palette), seg.segment_frame_pilot(frame)):
            assert not result.mask.any()
            assert not result.doppler_bgr.any()
            np.testing.assert_array_equal(result.anatomic_bgr, seg.blackout_boxes(frame))
            assert seg.doppler_fraction(result.mask) == 0.0


def test_flow_missing_from_the_palette_frames_is_still_found() -> None:
    # Small discs: started from a grey-only palette alone, k-means would merge them into a grey
    # cluster; the k-means++ restarts find them as the pilot's fresh starts do.
    palette = seg.fit_doppler_palette([speckle(np.random.default_rng(s)) for s in range(3)])
    frame = speckle(np.random.default_rng(7))
    truth = add_flow(frame, (50, 80), 4, towards=True) | add_flow(frame, (80, 95), 4, towards=False)
    truth = cv2.erode(truth.view(np.uint8), KERNEL) > 0
    assert seg.mask_iou(seg.segment_frame_pilot(frame).mask, truth) >= 0.95
    assert seg.mask_iou(seg.segment_frame(frame, palette).mask, truth) >= 0.95


def test_fast_method_is_deterministic() -> None:
    frames = [flow_frame(s)[0] for s in range(3)]
    a = seg.fit_doppler_palette(frames, seed=3)
    b = seg.fit_doppler_palette(frames, seed=3)
    np.testing.assert_array_equal(a.centres_lab, b.centres_lab)
    np.testing.assert_array_equal(
        seg.segment_frame(frames[1], a).doppler_bgr, seg.segment_frame(frames[1], b).doppler_bgr
    )


def test_doppler_fraction_and_iou() -> None:
    mask = np.zeros((10, 20), bool)
    mask[:5, :4] = True
    assert seg.doppler_fraction(mask) == pytest.approx(20 / 200)
    other = np.zeros_like(mask)
    other[:5, 2:6] = True
    assert seg.mask_iou(mask, other) == pytest.approx(10 / 30)
    assert seg.mask_iou(np.zeros_like(mask), np.zeros_like(mask)) == 1.0
    with pytest.raises(ValueError):
        seg.mask_iou(mask, mask.T)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)],
)
def test_rejects_frames_that_are_not_uint8_bgr(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        seg.segment_frame_pilot(bad)
    with pytest.raises(ValueError):
        seg.fit_doppler_palette([bad])


def test_palette_needs_frames() -> None:
    with pytest.raises(ValueError):
        seg.fit_doppler_palette([])


def test_lab_values_are_scikit_images() -> None:
    # The fast method must see the pilot's Lab values: centres near the rule's edges flip on
    # differences of a tenth of a unit.
    from skimage.color import rgb2lab

    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (5000, 3)).astype(np.uint8)
    bgr[:256] = np.arange(256, dtype=np.uint8)[:, None]  # the whole grey ramp, incl. the toe
    expected = rgb2lab(bgr[:, ::-1].reshape(-1, 1, 3)).reshape(-1, 3)
    np.testing.assert_allclose(seg._bgr_to_lab(bgr), expected, atol=1e-9)
