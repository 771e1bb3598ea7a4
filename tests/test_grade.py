"""RHD grade: the pilot's JSON model reproduces its decision; refitting writes the same format."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from radiomicsd.pipeline.errors import NoDopplerTexture
from radiomicsd.pipeline.rhd.grade import (
    Grade,
    RhdModel,
    default_rhd_model_path,
    fit_rhd,
    fit_rhd_from_csv,
)
from radiomicsd.pipeline.rhd.texture import VIDEO_FEATURE_NAMES


@pytest.fixture(scope="module")
def pilot_doc() -> dict:
    return json.loads(default_rhd_model_path().read_text(encoding="utf-8"))


def plain_decision(doc: dict, x: list[float]) -> float:
    """The JSON's 'decision' text with plain Python sums: coef . (x - mean) / std + intercept."""
    mean, std = doc["standardisation"]["mean"], doc["standardisation"]["std"]
    total = 0.0
    for k in range(len(doc["coef"])):
        total += doc["coef"][k] * (x[k] - mean[k]) / std[k]
    return total + doc["intercept"]


def fixed_vectors(doc: dict) -> list[list[float]]:
    std, coef = doc["standardisation"]["std"], doc["coef"]
    rng = np.random.default_rng(7)
    mean, b = doc["standardisation"]["mean"], doc["intercept"]
    l1 = sum(abs(c) for c in coef)
    near = [  # decision exactly +0.25 and -0.25: the threshold is 0, not a probability of 0.5
        [m + s * (t if c > 0 else -t) for m, s, c in zip(mean, std, coef, strict=True)]
        for t in ((0.25 - b) / l1, (-0.25 - b) / l1)
    ]
    return near + [
        [0.0] * 57,
        list(std),
        [s * (1.0 if c > 0 else -1.0) for s, c in zip(std, coef, strict=True)],  # RHD side
        [s * g for s, g in zip(std, rng.normal(size=57), strict=True)],
    ]


def test_pilot_model_reproduces_decision_function(pilot_doc):
    model = RhdModel.from_json(default_rhd_model_path())
    assert model.feature_names == VIDEO_FEATURE_NAMES
    assert model.classes == {0: "normal", 1: "RHD"}
    for x in fixed_vectors(pilot_doc):
        expected = plain_decision(pilot_doc, x)
        assert model.decision(np.array(x)) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        grade = model.predict(np.array(x))
        assert isinstance(grade, Grade)
        assert grade.label == (1 if expected > 0 else 0)
        assert grade.name == ("RHD" if expected > 0 else "normal")
        assert grade.probability == pytest.approx(1 / (1 + math.exp(-expected)), rel=1e-12)
    labels = [model.predict(np.array(x)).name for x in fixed_vectors(pilot_doc)]
    assert labels[:2] == ["RHD", "normal"] and labels[3:5] == ["normal", "RHD"]
    assert model.decision(np.array(fixed_vectors(pilot_doc)[0])) == pytest.approx(0.25)


def test_probability_does_not_overflow(pilot_doc):
    model = RhdModel.from_json(default_rhd_model_path())
    far = np.array(fixed_vectors(pilot_doc)[4]) * -1e6
    grade = model.predict(far)
    assert grade.label == 0 and 0.0 <= grade.probability < 1e-300


def test_undefined_feature_is_no_texture():
    model = RhdModel.from_json(default_rhd_model_path())
    x = np.zeros(57)
    x[3] = np.nan
    with pytest.raises(NoDopplerTexture) as info:
        model.predict(x)
    assert info.value.reason == "no_doppler_texture"
    with pytest.raises(ValueError):
        model.predict(np.zeros(56))


def test_json_round_trip_keeps_the_model(tmp_path, pilot_doc):
    model = RhdModel.from_json(default_rhd_model_path())
    out = tmp_path / "model.json"
    model.to_json(out)
    again = RhdModel.from_json(out)
    doc = json.loads(out.read_text())
    assert doc["feature_names"] == pilot_doc["feature_names"]
    assert doc["coef"] == pilot_doc["coef"] and doc["intercept"] == pilot_doc["intercept"]
    assert doc["classes"] == {"0": "normal", "1": "RHD"} and "decision" in doc
    x = np.array(fixed_vectors(pilot_doc)[5])
    assert again.decision(x) == model.decision(x)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["coef"].pop(), "coef"),
        (lambda d: d["standardisation"]["std"].__setitem__(4, 0.0), "std"),
        (lambda d: d["standardisation"].pop("mean"), "mean"),
        (lambda d: d["feature_names"].reverse(), "feature_names"),
        (lambda d: d.__setitem__("intercept", None), "intercept"),
        (lambda d: d.__setitem__("classes", {"0": "normal"}), "classes"),
    ],
)
def test_invalid_model_json_is_refused_clearly(tmp_path, pilot_doc, edit, message):
    doc = json.loads(json.dumps(pilot_doc))
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        RhdModel.from_json(path)


def synthetic_table(n: int = 40, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Separable on feature 0 (and 5), other features noise on very different scales."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    scales = 10.0 ** rng.uniform(-3, 4, size=57)
    x = rng.normal(size=(n, 57)) * scales
    x[:, 0] = (labels * 2 - 1) * (3 + rng.random(n)) * scales[0]
    x[:, 5] = (1 - labels * 2) * (2 + rng.random(n)) * scales[5]
    return x, labels


def test_fit_rhd_predicts_training_labels_after_json_round_trip(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = synthetic_table()
    model = fit_rhd(x, y, VIDEO_FEATURE_NAMES)
    out = tmp_path / "refit.json"
    model.to_json(out)
    loaded = RhdModel.from_json(out)
    assert [loaded.predict(row).label for row in x] == y.tolist()
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(solver="liblinear", C=1.0).fit(scaler.transform(x), y)
    expected = clf.decision_function(scaler.transform(x))
    got = [loaded.decision(row) for row in x]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert "40 videos (20 normal, 20 RHD)" in loaded.description


def test_fit_rhd_refuses_bad_tables():
    x, y = synthetic_table()
    with pytest.raises(ValueError, match="both classes"):
        fit_rhd(x, np.zeros_like(y))
    with pytest.raises(ValueError, match="labels"):
        fit_rhd(x, y + 1)
    nan_x = x.copy()
    nan_x[4, 9] = np.nan
    with pytest.raises(ValueError, match="row 4"):
        fit_rhd(nan_x, y)
    with pytest.raises(ValueError):
        fit_rhd(x[:, :56], y)


def write_csv(path, x, y, words: bool) -> None:
    columns = ["pseudonym", "label", *reversed(VIDEO_FEATURE_NAMES), "site"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for n, (row, label) in enumerate(zip(x, y, strict=True)):
            values = dict(zip(VIDEO_FEATURE_NAMES, row, strict=True))
            values.update(pseudonym=f"p{n:03d}", site="x")
            values["label"] = ("RHD" if label else "normal") if words else str(label)
            writer.writerow([repr(float(values[c])) if c in VIDEO_FEATURE_NAMES else values[c]
                             for c in columns])  # fmt: skip


@pytest.mark.parametrize("words", [True, False])
def test_fit_rhd_from_csv_matches_array_fit(tmp_path, words):
    x, y = synthetic_table()
    path = tmp_path / "features.csv"
    write_csv(path, x, y, words)
    from_csv = fit_rhd_from_csv(path)
    direct = fit_rhd(x, y)
    np.testing.assert_array_equal(from_csv.coef, direct.coef)
    assert from_csv.intercept == direct.intercept
    assert [from_csv.predict(row).label for row in x] == y.tolist()


def test_fit_rhd_from_csv_reports_missing_columns_and_bad_labels(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("label,mean_autoCorrelation\n1,2.0\n")
    with pytest.raises(ValueError, match="lacks columns"):
        fit_rhd_from_csv(path)
    x, y = synthetic_table(n=4)
    write_csv(path, x, y, words=True)
    text = path.read_text().replace(",normal,", ",borderline,", 1)
    path.write_text(text)
    with pytest.raises(ValueError, match="line 2"):
        fit_rhd_from_csv(path)
    write_csv(path, x, y, words=False)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(repr(float(x[2, 7])), "", 1)  # empty cell on CSV line 4
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 4"):
        fit_rhd_from_csv(path)
