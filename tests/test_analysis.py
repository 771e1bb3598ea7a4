"""The per-video analysis end to end on generated clips, with the shipped models."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from radiomicsd.pipeline.errors import NoFrames
from radiomicsd.pipeline.rhd import texture
from radiomicsd.pipeline.rhd.analysis import (
    STATUS_GRADED,
    STATUS_NO_DOPPLER_TEXTURE,
    STATUS_NOT_PLAX,
    AnalysisSettings,
    VideoAnalyser,
    analyse_frames,
)
from radiomicsd.pipeline.rhd.grade import RhdModel, default_rhd_model_path
from radiomicsd.pipeline.rhd.view import CLASSES, get_view_classifier
from radiomicsd.testing.synthetic import render_clip

SIZE = (240, 320)  # the pilot's frame size, W x H
SETTINGS = AnalysisSettings(palette_frames=4, sample_pixels=8000, batch_size=5)


@pytest.fixture(scope="module")
def classifier():
    return get_view_classifier()  # TensorFlow loads once for the module


@pytest.fixture(scope="module")
def rhd() -> RhdModel:
    return RhdModel.from_json(default_rhd_model_path())


def clip(n: int, *, view: str = "plax", doppler: bool = True, seed: int = 0, in_fan=False):
    """Frames of a generated clip; ``in_fan`` blacks out everything outside the scan sector."""
    frames, info = render_clip(n, SIZE, view=view, doppler=doppler, seed=seed)
    if not in_fan:
        return list(frames)
    fan = info.sector_mask
    return [np.where(fan[..., None], f, 0).astype(np.uint8) for f in frames]


@pytest.fixture(scope="module")
def plax_frames() -> list[np.ndarray]:
    return clip(12, seed=5)


@pytest.fixture(scope="module")
def plax_result(plax_frames, classifier, rhd):
    return analyse_frames(plax_frames, SETTINGS, classifier, rhd)


def test_plax_doppler_clip_is_graded_with_all_57_features(plax_result, classifier) -> None:
    r = plax_result
    assert (r.status, r.reason, r.view) == (STATUS_GRADED, None, "PLAX")
    assert r.frames == 12 and r.textured_frames == 12
    assert r.view_frames == 4  # frames 0, 3, 6, 9 vote (view_every=3)
    assert set(r.view_fractions) == set(CLASSES)
    assert sum(r.view_fractions.values()) == pytest.approx(1.0)
    assert r.view_fractions["PLAX"] > 0.5
    assert 0.005 < r.doppler_fraction < 0.2
    assert list(r.features) == list(texture.VIDEO_FEATURE_NAMES)
    assert all(np.isfinite(v) for v in r.features.values())
    assert r.grade is not None and r.grade.label in (0, 1)
    assert 0.0 <= r.grade.probability <= 1.0
    assert r.grade.name == {0: "normal", 1: "RHD"}[r.grade.label]
    assert r.models["view"] == {"name": classifier.name, "version": classifier.version}


def test_result_dict_is_strict_json(plax_result) -> None:
    d = plax_result.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["status"] == "graded" and back["reason"] is None
    assert len(back["features"]) == 57
    assert set(back["grade"]) == {"label", "name", "probability"}
    assert set(back["models"]) == {"view", "rhd"}
    assert back["frames"] == 12


def test_streaming_feed_equals_the_function(plax_frames, plax_result, classifier, rhd) -> None:
    analyser = VideoAnalyser(SETTINGS, classifier, rhd)
    for frame in plax_frames:
        analyser.feed(frame)
    assert analyser.finish().to_dict() == plax_result.to_dict()
    assert analyser.finish() is analyser.finish()  # idempotent
    with pytest.raises(RuntimeError):
        analyser.feed(plax_frames[0])


def test_buffered_frames_are_copies(plax_frames, plax_result, classifier, rhd) -> None:
    # The daemon may decode into a reused buffer: frames kept for the look-ahead must be copies.
    analyser = VideoAnalyser(SETTINGS, classifier, rhd)
    buffer = np.empty_like(plax_frames[0])
    for frame in plax_frames:
        buffer[...] = frame
        analyser.feed(buffer)
    assert analyser.finish().to_dict() == plax_result.to_dict()


def test_every_frame_can_vote_and_textures_do_not_depend_on_it(
    plax_frames, plax_result, classifier, rhd
) -> None:
    every = AnalysisSettings(palette_frames=4, sample_pixels=8000, batch_size=5, view_every=1)
    r = analyse_frames(plax_frames, every, classifier, rhd)
    assert r.view_frames == 12 and r.view == plax_result.view
    assert r.features == plax_result.features and r.grade == plax_result.grade


def test_fewer_frames_than_the_lookahead(plax_frames, classifier, rhd) -> None:
    r = analyse_frames(plax_frames[:3], AnalysisSettings(palette_frames=8), classifier, rhd)
    assert r.frames == 3 and r.status == STATUS_GRADED


def test_a4c_doppler_clip_is_not_plax(classifier, rhd) -> None:
    r = analyse_frames(clip(8, view="a4c", seed=2), SETTINGS, classifier, rhd)
    assert (r.status, r.reason) == (STATUS_NOT_PLAX, "not_plax")
    assert r.view == "A4C"
    assert r.features is None and r.grade is None
    d = r.to_dict()
    assert d["grade"] is None and d["features"] is None and d["frames"] == 8


def test_plax_clip_without_doppler_texture(classifier, rhd) -> None:
    frames = clip(8, doppler=False, seed=3, in_fan=True)  # grey anatomy only, nothing outside
    r = analyse_frames(frames, SETTINGS, classifier, rhd)
    assert r.view == "PLAX"
    assert (r.status, r.reason) == (STATUS_NO_DOPPLER_TEXTURE, "no_doppler_texture")
    assert r.textured_frames == 0 and r.doppler_fraction == 0.0
    assert r.grade is None and r.features is None


def test_no_frames_is_an_error(classifier, rhd) -> None:
    with pytest.raises(NoFrames):
        analyse_frames([], SETTINGS, classifier, rhd)


def test_memory_does_not_grow_with_the_clip(classifier, rhd) -> None:
    frames, _ = render_clip(40, SIZE, view="plax", seed=4)
    analyser = VideoAnalyser(SETTINGS, classifier, rhd)
    held = []
    tracemalloc.start()
    try:
        for i, frame in enumerate(frames, start=1):
            analyser.feed(frame)
            if i in (10, 40):
                held.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # 30 more frames of 230 kB each went through; what stays is 28 floats a frame.
    assert held[1] - held[0] < 100_000
    assert analyser.finish().frames == 40


@pytest.mark.parametrize(
    "kw",
    [
        {"palette_frames": 0},
        {"sample_pixels": 4},
        {"batch_size": 0},
        {"view_every": 0},
        {"kmeans_restarts": -1},
        {"seed": -1},
        {"batch_size": 2.5},
    ],
)
def test_settings_are_validated(kw) -> None:
    with pytest.raises(ValueError):
        AnalysisSettings(**kw)
