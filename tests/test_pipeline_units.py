"""Fast unit tests of the anonymise path's stages: mask, Doppler check, PNG, pseudonym, video
limits, config validation, and the synthetic generator's ground truth."""

from __future__ import annotations

import hashlib
import hmac
import io
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pngread import chunks, png_rgb

from radiomicsd.pipeline.deid.mask import (
    PILOT_REGION,
    MaskSettings,
    NeedsReview,
    NoScanSector,
    Region,
    build_mask,
    regions_keep,
)
from radiomicsd.pipeline.deid.pseudonym import content_digest, pseudonym
from radiomicsd.pipeline.doppler import DopplerSettings, doppler_pixels, is_doppler
from radiomicsd.pipeline.errors import (
    NoFrames,
    TooLarge,
    Truncated,
    UnreadableContainer,
)
from radiomicsd.pipeline.png import encode_png
from radiomicsd.pipeline.video import Limits, Probe, VideoStream, check_limits
from radiomicsd.testing.synthetic import render_clip

# ---------------------------------------------------------------------------------------------
# mask.py


def test_region_fraction_and_pixels():
    shape = (480, 640)
    assert Region(0.25, 0.5, 0.75, 1.0).pixels(shape) == (160, 240, 480, 480)
    assert Region(10, 20, 30, 40, unit="pixels").pixels(shape) == (10, 20, 30, 40)
    # Boxes reaching past the frame are clipped to it.
    assert Region(-5, -5, 9999, 9999, unit="pixels").pixels(shape) == (0, 0, 640, 480)
    assert Region(-0.1, 0.9, 1.5, 2.0).pixels(shape) == (0, 432, 640, 480)


def test_pilot_region_is_the_top_right_box():
    # ORIGINAL.md: rows 0 .. h/6, columns from 2w/3 to w.
    assert PILOT_REGION.pixels((480, 640)) == (427, 0, 640, 80)
    keep = regions_keep((480, 640), [PILOT_REGION])
    assert not keep[:80, 427:].any()
    assert (keep[80:, :] == 255).all() and (keep[:, :427] == 255).all()


def test_regions_method_blacks_out_exactly_the_boxes():
    rng = np.random.default_rng(0)
    frame = rng.integers(1, 256, (60, 80, 3), dtype=np.uint8)
    settings = MaskSettings(method="regions", allow_text_outside_regions=True,
                            regions=(Region(0, 0, 10, 5, unit="pixels"), Region(0.5, 0.5, 1, 1)))
    mask = build_mask([frame], settings)
    expected = frame.copy()
    out = mask.apply(frame.copy())
    expected[0:5, 0:10] = 0
    expected[30:60, 40:80] = 0
    np.testing.assert_array_equal(out, expected)
    assert mask.method == "regions"
    assert mask.masked_fraction == pytest.approx((50 + 30 * 40) / (60 * 80))


def _moving_fan(n: int, shape=(120, 160), seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames with fresh speckle inside a disc and fixed white text outside it."""
    rng = np.random.default_rng(seed)
    disc = np.zeros(shape, np.uint8)
    cv2.circle(disc, (80, 70), 40, 1, -1)
    frames = []
    for _ in range(n):
        grey = np.where(disc > 0, rng.integers(20, 255, shape), 0).astype(np.uint8)
        frame = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        cv2.putText(frame, "DOE^JANE", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (255, 255, 255), 1)
        frames.append(frame)
    return frames, disc > 0


def test_motion_keeps_the_moving_disc_and_drops_static_text():
    frames, disc = _moving_fan(6)
    mask = build_mask(frames, MaskSettings(method="auto"))
    assert mask.method == "auto(motion)"
    assert (mask.keep[disc] == 255).all()  # with the margin, every disc pixel is kept
    out = mask.apply(frames[0].copy())
    assert not out[:14, :60].any()
    np.testing.assert_array_equal(out[disc], frames[0][disc])


def test_mask_applies_in_place_and_refuses_another_frame_size():
    frames, _ = _moving_fan(4)
    mask = build_mask(frames, MaskSettings())
    frame = frames[0].copy()
    assert mask.apply(frame) is frame and not frame[:14, :60].any()
    with pytest.raises(ValueError, match="80x60 after frames of 160x120"):
        mask.apply(np.zeros((60, 80, 3), np.uint8))


def test_single_frame_falls_back_to_structure():
    frames, disc = _moving_fan(1)
    mask = build_mask(frames[:1], MaskSettings())
    assert mask.method == "auto(structure)+regions"
    assert not mask.apply(frames[0])[:14, :60].any()


def test_frames_without_a_sector_are_refused():
    black = [np.zeros((60, 80, 3), np.uint8)] * 3
    with pytest.raises(NoScanSector) as err:
        build_mask(black, MaskSettings(method="auto"))
    assert err.value.reason == "no_scan_sector"
    # A sector smaller than min_sector_fraction is not a sector either.
    frames, _ = _moving_fan(4)
    with pytest.raises(NoScanSector):
        build_mask(frames, MaskSettings(method="auto", min_sector_fraction=0.9))


def test_image_regions_without_an_image_are_refused_for_review():
    """A DICOM file's image regions say where its image is; when too little of it shows to
    fit a geometry (a dark sector), a person looks at the regions (needs_review with them as
    the proposal) rather than the clip failing with nothing to look at."""
    black = [np.zeros((60, 80, 3), np.uint8)] * 3
    bounds = np.zeros((60, 80), np.uint8)
    bounds[10:50, 20:70] = 255
    with pytest.raises(NeedsReview) as err:
        build_mask(black, MaskSettings(method="auto"), bounds=bounds)
    assert err.value.reason == "needs_review"
    assert err.value.proposed is not None
    assert np.array_equal(err.value.proposed.keep, bounds)


def test_unknown_mask_method_refused():
    with pytest.raises(ValueError, match="not a valid MaskMethod"):
        build_mask([np.zeros((8, 8, 3), np.uint8)], MaskSettings(method="magic"))


# ---------------------------------------------------------------------------------------------
# doppler.py


def _hsv_patch(hue: int, sat: int = 255, val: int = 230, n: int = 100) -> np.ndarray:
    """A (10, n // 10, 3) BGR patch whose OpenCV hue is exactly ``hue``."""
    hsv = np.zeros((10, n // 10, 3), np.uint8)
    hsv[...] = (hue, sat, val)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    got = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[0, 0]
    assert abs(int(got[0]) - hue) <= 1 and abs(int(got[1]) - sat) <= 2, (hue, sat, got)
    return bgr


def _frame_with(patch: np.ndarray) -> np.ndarray:
    frame = np.full((40, 40, 3), 90, np.uint8)
    frame[5:5 + patch.shape[0], 5:5 + patch.shape[1]] = patch
    return frame


@pytest.mark.parametrize("hue", [0, 3, 9, 169, 175, 179, 110, 120, 130])
def test_flow_hues_detected_on_both_sides_of_the_wrap(hue):
    assert doppler_pixels(_frame_with(_hsv_patch(hue))) == 100
    assert is_doppler(_frame_with(_hsv_patch(hue)))


@pytest.mark.parametrize("hue", [12, 30, 60, 90, 105, 135, 160, 166])
def test_other_hues_not_flow(hue):
    assert doppler_pixels(_frame_with(_hsv_patch(hue))) == 0


def test_pilot_red_range_misses_the_wrap():
    pilot = DopplerSettings(red_hue=(169, 179))
    assert doppler_pixels(_frame_with(_hsv_patch(5)), pilot) == 0
    assert doppler_pixels(_frame_with(_hsv_patch(5))) == 100


def test_custom_wrapping_range_both_ways():
    wrap = DopplerSettings(red_hue=(175, 4), blue_hue=(110, 110))
    inside = [175, 179, 0, 4]
    outside = [170, 174, 6, 20]
    assert all(doppler_pixels(_frame_with(_hsv_patch(h)), wrap) == 100 for h in inside)
    assert all(doppler_pixels(_frame_with(_hsv_patch(h)), wrap) == 0 for h in outside)


def test_saturation_value_and_count_thresholds():
    s = DopplerSettings()
    assert doppler_pixels(_frame_with(_hsv_patch(120, sat=s.min_saturation + 5))) == 100
    assert doppler_pixels(_frame_with(_hsv_patch(120, sat=s.min_saturation - 10))) == 0
    dark = _frame_with(_hsv_patch(120, val=s.min_value - 10))
    assert doppler_pixels(dark) == 0
    assert s.min_pixels == 98  # the pilot's 25000 / 255
    frame = np.full((40, 40, 3), 90, np.uint8)
    blue = _hsv_patch(120, n=200).reshape(-1, 3)
    frame.reshape(-1, 3)[:97] = blue[:97]
    assert doppler_pixels(frame) == 97 and not is_doppler(frame)
    frame.reshape(-1, 3)[97] = blue[97]
    assert is_doppler(frame)


def test_where_restricts_the_count():
    frame = _frame_with(_hsv_patch(0))
    where = np.zeros(frame.shape[:2], bool)
    where[:10, :] = True  # rows 5..9 of the patch: 5 rows x 10 columns
    assert doppler_pixels(frame, where=where) == 50


# ---------------------------------------------------------------------------------------------
# png.py


@pytest.fixture(scope="module")
def colour_frame() -> np.ndarray:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    frame[:8, :8] = (0, 0, 255)  # pure red in BGR
    frame[8:16, :8] = (255, 0, 0)  # pure blue in BGR
    return frame


def test_png_is_lossless_rgb_without_metadata(colour_frame):
    data = encode_png(colour_frame)
    assert [k for k, _ in chunks(data)][0] == b"IHDR"
    assert {k for k, _ in chunks(data)} == {b"IHDR", b"IDAT", b"IEND"}
    rgb = png_rgb(data)
    np.testing.assert_array_equal(rgb, colour_frame[..., ::-1])
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[8, 0]) == (0, 0, 255)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_png_compression_levels_stay_lossless(colour_frame, level):
    data = encode_png(colour_frame, level)
    np.testing.assert_array_equal(png_rgb(data), colour_frame[..., ::-1])
    assert {k for k, _ in chunks(data)} == {b"IHDR", b"IDAT", b"IEND"}


def test_png_level_changes_size():
    smooth = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (64, 1, 3))
    assert len(encode_png(smooth, 3)) < len(encode_png(smooth, 0))


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (7, 1), (5, 3), (480, 640)])
def test_png_odd_shapes_round_trip(shape):
    """Sub filtering at the row edges: 1-pixel rows and columns, and a full-size frame."""
    frame = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(png_rgb(encode_png(frame)), frame[..., ::-1])
    decoded = cv2.imdecode(np.frombuffer(encode_png(frame), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded, frame)  # libpng agrees with our reader


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.uint16),
                                 np.zeros((4, 4, 4), np.uint8)])
def test_png_refuses_other_arrays(bad):
    with pytest.raises(ValueError, match="uint8"):
        encode_png(bad)


def test_png_refuses_unknown_level(colour_frame):
    with pytest.raises(ValueError, match="level"):
        encode_png(colour_frame, 9)


# ---------------------------------------------------------------------------------------------
# pseudonym.py


def test_pseudonym_known_answer():
    key = bytes(range(32))
    digest = hashlib.sha256(b"echo").digest()
    expected = hmac.new(key, digest, hashlib.sha256).hexdigest()[:32]
    assert pseudonym(key, digest) == expected == "bb4e61303164d1027a4b667dcdc97583"


def test_pseudonym_depends_on_key_and_content():
    d1, d2 = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    k1, k2 = b"k" * 16, b"K" * 16
    assert pseudonym(k1, d1) == pseudonym(k1, d1)
    assert len({pseudonym(k1, d1), pseudonym(k1, d2), pseudonym(k2, d1)}) == 3


def test_short_key_refused():
    digest = hashlib.sha256(b"x").digest()
    with pytest.raises(ValueError, match="16"):
        pseudonym(b"k" * 15, digest)
    assert len(pseudonym(b"k" * 16, digest)) == 32


def test_content_digest_streams_in_chunks():
    data = np.random.default_rng(2).bytes(10_000)
    assert content_digest(io.BytesIO(data), chunk_bytes=333) == hashlib.sha256(data).digest()


# ---------------------------------------------------------------------------------------------
# video.py


def test_check_limits_each_limit_and_zero_disables():
    probe = Probe(width=640, height=480, fps=25.0, frame_count=150)
    check_limits(probe, Limits(), file_bytes=10**6)
    for limits, size in [(Limits(max_file_bytes=999_999), 10**6),
                         (Limits(max_frame_pixels=640 * 480 - 1), None),
                         (Limits(max_frames=149), None)]:
        with pytest.raises(TooLarge) as err:
            check_limits(probe, limits, size)
        assert err.value.reason == "too_large"
    check_limits(probe, Limits(max_file_bytes=0, max_frame_pixels=0, max_frames=0), 10**12)
    check_limits(probe, Limits(max_frame_pixels=640 * 480, max_frames=150), None)


@pytest.fixture(scope="module")
def small_clip(clip_factory):
    return clip_factory("unit.avi", n_frames=6, fourcc="MJPG")


def test_video_stream_probe_and_frames(small_clip):
    with VideoStream(small_clip.path) as video:
        assert (video.probe.width, video.probe.height) == small_clip.size
        assert video.probe.frame_count == 6 and video.probe.fps == pytest.approx(25.0)
        frames = list(video)
        video.check_complete()
    assert len(frames) == 6 and frames[0].shape == (240, 400, 3)


BYTES_STREAM = """
import gc, sys
from radiomicsd.pipeline.video import VideoStream
data = open(sys.argv[1], "rb").read()
video = VideoStream(data)
gc.collect()
n = sum(1 for _ in video)
video.check_complete()
video.close()
print(n)
"""


def test_video_stream_from_bytes(small_clip):
    """Decrypted bytes in memory take the same path as a file (in a child: a crash is a fail).

    OpenCV's stream capture does not hold a reference to the Python stream it reads from, so
    the stream VideoStream wraps around ``bytes`` must be kept alive by VideoStream itself.
    """
    proc = subprocess.run([sys.executable, "-c", BYTES_STREAM, str(small_clip.path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-500:]}"
    assert proc.stdout.split() == ["6"]


def test_video_stream_limits(small_clip):
    with pytest.raises(TooLarge):
        VideoStream(small_clip.path, Limits(max_frame_pixels=1000))
    with pytest.raises(TooLarge):
        VideoStream(small_clip.path, Limits(max_frames=5))
    with pytest.raises(TooLarge):
        VideoStream(small_clip.path, Limits(max_file_bytes=10), file_bytes=11)


def test_video_stream_truncated_and_empty(small_clip):
    data = small_clip.path.read_bytes()
    half = io.BytesIO(data[: len(data) // 2])
    with pytest.raises(Truncated, match="ends inside"):  # the container check sees it first
        VideoStream(half)
    with VideoStream(half, sniff=False) as video:  # the decoder's own count still tells
        decoded = sum(1 for _ in video)
        assert 0 < decoded < 6
        with pytest.raises(Truncated):
            video.check_complete()
    with VideoStream(small_clip.path) as video, pytest.raises(NoFrames):
        video.check_complete()  # nothing decoded yet


def test_is_video_by_content(small_clip):
    with VideoStream(small_clip.path) as video:
        assert next(iter(video)).ndim == 3
    with pytest.raises(UnreadableContainer):
        VideoStream(io.BytesIO(b"just some text\n" * 100))
    with pytest.raises(UnreadableContainer):
        VideoStream(io.BytesIO(b"\x00" * 4096))


# ---------------------------------------------------------------------------------------------
# synthetic.py: the ground truth the end-to-end tests rely on


def test_synthetic_doppler_has_red_on_both_sides_of_the_wrap_and_blue():
    frames, info = render_clip(1, (400, 240), seed=0)
    hsv = cv2.cvtColor(next(frames), cv2.COLOR_BGR2HSV)
    vivid = info.sector_mask & (hsv[..., 1] >= 50) & (hsv[..., 2] >= 50)
    hue = hsv[..., 0][vivid]
    assert np.count_nonzero(hue >= 169) >= 98, "no red above the wrap (hue 169..179)"
    assert np.count_nonzero(hue <= 9) >= 98, "no red below the wrap (hue 0..9)"
    assert np.count_nonzero((hue >= 110) & (hue <= 130)) >= 98, "no blue"


def test_synthetic_phi_boxes_lie_outside_the_sector():
    for size in [(400, 240), (640, 480), (1016, 708)]:
        _, info = render_clip(1, size)
        w, h = size
        for x0, y0, x1, y1 in info.phi_boxes:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert not info.sector_mask[y0:y1, x0:x1].any()


def test_bounds_limit_what_the_detector_sees_and_keeps():
    """Motion outside the bounds (a clock, a lit header band larger than the image) never
    widens or replaces the kept area."""
    rng = np.random.default_rng(3)
    frames = [np.zeros((160, 160, 3), np.uint8) for _ in range(6)]
    for f in frames:
        f[70:150, 40:120] = rng.integers(20, 255, (80, 80, 3), dtype=np.uint8)  # live image
        f[0:50, :] = rng.integers(20, 255, (50, 160, 3), dtype=np.uint8)  # a moving header
    bounds = np.zeros((160, 160), np.uint8)
    bounds[60:, :] = 255
    settings = MaskSettings(method="auto", margin_px=0)
    # unbounded, the moving header band is a rival of the image: refused, not guessed (the
    # old detector kept the header, the larger region, and lost the image)
    with pytest.raises(NeedsReview, match="image-like regions"):
        build_mask(frames, settings)
    mask = build_mask(frames, settings, bounds=bounds)
    assert not mask.keep[:60].any() and mask.keep[75:145, 45:115].all()
    assert mask.method == "auto(motion)+bounded"
