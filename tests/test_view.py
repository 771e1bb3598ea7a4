"""View classification: phantoms, preprocessing, the CNN's weights and the per-video vote."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from radiomicsd.pipeline.errors import ConfigError, InvalidModel
from radiomicsd.pipeline.rhd import view
from radiomicsd.testing import phantoms

ROOT = Path(__file__).resolve().parents[1]
NORM = view.pilot_facts()["normalisation"]
LOW = (0.0 - NORM["mean"]) / NORM["std"]
HIGH = (1.0 - NORM["mean"]) / NORM["std"]


# --- phantoms -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", phantoms.VIEWS)
@pytest.mark.parametrize("shape", [(320, 240), (480, 640)])
def test_render_view_is_dark_outside_its_sector(name, shape):
    rng = np.random.default_rng(7)
    p = phantoms.sample_phantom(name, shape, rng)
    img = phantoms.render_phantom(p, 0.3, rng)
    fan = phantoms.sector_mask(shape, p.apex, p.radius, p.half_angle_deg)
    assert img.shape == shape and img.dtype == np.uint8
    assert not img[~fan].any()
    assert img[fan].mean() > 20  # speckled tissue, not an empty fan
    assert (img[fan] > 200).mean() > 0.01  # bright myocardium is there


def test_render_view_is_a_function_of_the_rng_and_phase_animates_it():
    a = phantoms.render_view("plax", (240, 320), np.random.default_rng(3), 0.0)
    b = phantoms.render_view("plax", (240, 320), np.random.default_rng(3), 0.0)
    c = phantoms.render_view("plax", (240, 320), np.random.default_rng(3), 0.5)
    assert np.array_equal(a, b)
    changed = np.abs(a.astype(int) - c.astype(int)) > 40
    assert 0.005 < changed.mean() < 0.3  # the walls moved, the heart is still the same


def test_sector_mask_geometry():
    m = phantoms.sector_mask((200, 300), (150, 10), 150, 30)
    assert m[11, 150] and m[150, 150]  # just below the apex, on the axis
    assert not m[5, 150]  # above the apex
    assert not m[170, 150]  # beyond the radius
    assert m[100, 150 + 45] and not m[100, 150 + 60]  # tan(30 deg) * 90 = 52 px off axis
    assert np.array_equal(m[:, 150 - 100 : 150], m[:, 151 : 151 + 100][:, ::-1])


def test_phantom_rejects_unknown_view_and_tiny_shape():
    with pytest.raises(ValueError):
        phantoms.render_view("a2c", (320, 240), np.random.default_rng(0))
    with pytest.raises(ValueError):
        phantoms.render_view("a4c", (16, 240), np.random.default_rng(0))


# --- preprocessing --------------------------------------------------------------------------


def test_importing_view_does_not_import_tensorflow():
    code = "import radiomicsd.pipeline.rhd.view, sys; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_preprocess_shape_and_normalisation():
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x = view.preprocess(frame)
    assert x.shape == (320, 240, 1) and x.dtype == np.float32
    assert x.min() == pytest.approx(LOW, abs=1e-5)
    assert x.max() == pytest.approx(HIGH, abs=1e-5)


def test_preprocess_constant_frame_is_guarded():
    frame = np.zeros((480, 640, 3), np.uint8)
    for r0, r1, c0, c1 in view.label_boxes(frame.shape[:2]):
        frame[r0:r1, c0:c1] = 255  # only label content: constant once it is blacked out
    x = view.preprocess(frame)
    assert np.isfinite(x).all()
    assert np.allclose(x, LOW)


def test_preprocess_blacks_out_the_pilot_label_boxes_at_any_size():
    for h, w in [(320, 240), (480, 640), (600, 800)]:
        frame = np.full((h, w, 3), 90, np.uint8)
        for r0, r1, c0, c1 in view.label_boxes((h, w)):
            frame[r0:r1, c0:c1] = 255
        # were any label pixel left, 255 would be the maximum and the background 90 / 255
        x = view.preprocess(frame)
        assert np.median(x) == pytest.approx(HIGH, abs=1e-5), (h, w)
        assert x.min() == pytest.approx(LOW, abs=1e-5), (h, w)


def test_label_boxes_follow_the_pilot_coordinates_and_scale():
    boxes = view.label_boxes((320, 240))
    assert (2, 12, 130, 137) in boxes  # [130, 308, 137, 318]: x1, y1, x2, y2 from the bottom
    assert (308, 318, 200, 206) in boxes  # [200, 2, 206, 12]
    assert boxes[-1] == (0, 320, 232, 240)  # the last 8 columns
    doubled = view.label_boxes((640, 480))
    assert (4, 24, 260, 274) in doubled
    assert doubled[-1] == (0, 640, 464, 480)


def test_preprocess_grey_and_bgr_agree():
    grey = phantoms.render_view("a4c", (480, 640), np.random.default_rng(1))
    bgr = np.repeat(grey[..., None], 3, axis=2)
    assert np.allclose(view.preprocess(grey), view.preprocess(bgr))


def test_preprocess_rejects_bad_frames():
    with pytest.raises(ValueError):
        view.preprocess(np.zeros((320, 240, 3), np.float32))
    with pytest.raises(ValueError):
        view.preprocess(np.zeros((320, 240, 4), np.uint8))


# --- the CNN --------------------------------------------------------------------------------


def test_shipped_model_classifies_fresh_phantoms():
    from radiomicsd.classifiers.train_view import make_dataset

    card = (ROOT / "classifiers" / "view_cnn.metrics.json").read_text()
    stated = json.loads(card)["held_out_accuracy"]
    x, y = make_dataset(60, seed=20240611)  # not a seed the shipped weights were trained on
    clf = view.get_view_classifier()
    probs = clf.predict(x.astype(np.float32))
    assert probs.shape == (60, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    accuracy = float((probs.argmax(axis=1) == y).mean())
    assert accuracy >= 0.95
    assert accuracy >= stated - 0.05  # a small fresh set: within 3 errors of the card's figure


def test_classify_votes_over_a_clip_of_one_view():
    rng = np.random.default_rng(99)
    p = phantoms.sample_phantom("plax", (480, 640), rng)
    frames = (phantoms.render_phantom(p, i / 10, rng) for i in range(10))
    result = view.get_view_classifier().classify(frames)
    assert result.view == "PLAX" and result.frames == 10
    assert result.fractions["PLAX"] >= 0.8


def test_get_view_classifier_loads_once():
    a = view.get_view_classifier()
    b = view.get_view_classifier(view.shipped_weights_path())
    assert a is b
    assert a.name == "view_cnn.weights.h5"
    assert a.version.startswith("view_cnn.weights.h5@sha256:")


def test_predict_is_consistent_across_threads():
    clf = view.get_view_classifier()
    rng = np.random.default_rng(5)
    x = np.stack([view.preprocess(phantoms.render_view(v, (320, 240), rng)) for v in
                  phantoms.VIEWS])
    alone = clf.predict(x)
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda _: clf.predict(x), range(3)))
    for probs in together:
        assert np.allclose(probs, alone, atol=1e-5)
    assert clf.predict(np.zeros((0, 320, 240, 1), np.float32)).shape == (0, 3)
    with pytest.raises(ValueError):
        clf.predict(np.zeros((1, 240, 320, 1), np.float32))


def _probe_batch() -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.stack([view.preprocess(phantoms.render_view(v, (320, 240), rng))
                     for v in phantoms.VIEWS])


def test_keras3_weights_round_trip(tmp_path):
    model = view.build_model()
    path = tmp_path / "mine.weights.h5"
    model.save_weights(str(path))
    loaded = view.ViewClassifier.load(path)
    x = _probe_batch()
    assert np.allclose(loaded.predict(x), np.asarray(model(x, training=False)), atol=1e-6)
    assert loaded.name == "mine.weights.h5"


def _write_keras2_hdf5(path: Path, weights: list[np.ndarray], dense_units: int = 3) -> None:
    """Weights in the Keras 2 HDF5 layout (as the pilot's ``classifier.hdf5``), with Keras 2's
    automatic layer names, written with h5py directly."""
    import h5py

    names = []
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for i in range(6):
            name = f"conv2d_{i + 1}" if i < 5 else "dense_1"
            kernel, bias = weights[2 * i], weights[2 * i + 1]
            if i == 5:
                kernel, bias = kernel[:, :dense_units], bias[:dense_units]
            g = f.create_group(name)
            wn = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g.attrs["weight_names"] = wn
            g.create_dataset(wn[0].decode(), data=kernel)
            g.create_dataset(wn[1].decode(), data=bias)
            names.append(name.encode())
            if i < 5:
                pool = f"max_pooling2d_{i + 1}"
                f.create_group(pool).attrs["weight_names"] = np.array([], dtype="S1")
                names.append(pool.encode())
        f.attrs["layer_names"] = names


def test_keras2_hdf5_weights_of_the_same_architecture_load(tmp_path):
    model = view.build_model()
    path = tmp_path / "classifier.hdf5"
    _write_keras2_hdf5(path, model.get_weights())
    loaded = view.ViewClassifier.load(path)
    x = _probe_batch()
    assert np.allclose(loaded.predict(x), np.asarray(model(x, training=False)), atol=1e-6)


def test_weights_of_another_architecture_are_refused(tmp_path):
    bad = tmp_path / "four_classes.hdf5"
    _write_keras2_hdf5(bad, view.build_model().get_weights(), dense_units=2)
    with pytest.raises(InvalidModel) as err:
        view.ViewClassifier.load(bad)
    assert err.value.reason == "invalid_model" and isinstance(err.value, ConfigError)
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not an hdf5 file")
    with pytest.raises(InvalidModel):
        view.ViewClassifier.load(junk)
    with pytest.raises(InvalidModel):
        view.ViewClassifier.load(tmp_path / "missing.weights.h5")


# --- the vote -------------------------------------------------------------------------------


def test_view_vote_majority_and_fractions():
    vote = view.ViewVote()
    vote.add(np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))
    vote.add(np.array([[0.0, 0.1, 0.9], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1]]))
    result = vote.result()
    assert result.view == "PLAX" and result.frames == 5
    assert result.fractions == pytest.approx({"A4C": 0.2, "PSAX": 0.2, "PLAX": 0.6})


def test_view_vote_ties_go_to_the_larger_probability_mass_then_the_earlier_class():
    tie = view.ViewVote()
    tie.add(np.array([[0.5, 0.4, 0.1], [0.0, 0.9, 0.1]]))
    assert tie.result().view == "PSAX"  # one vote each; PSAX mass 1.3 > A4C 0.5
    even = view.ViewVote()
    even.add(np.array([[0.0, 0.2, 0.8], [0.8, 0.2, 0.0]]))
    assert even.result().view == "A4C"  # one vote each, equal mass: the earlier class


def test_view_vote_rejects_bad_input_and_empty_votes():
    vote = view.ViewVote()
    with pytest.raises(ValueError):
        vote.result()
    with pytest.raises(ValueError):
        vote.add(np.zeros((2, 4)))
    with pytest.raises(ValueError):
        vote.add(np.array([[np.nan, 0.5, 0.5]]))
