"""RHD grade of a video from its 57 texture features: the pilot's logistic regression, as JSON.

The model is plain numbers (``classifiers/rhd_logreg_pilot.json``): ``z = (x - mean) / std``,
``d = coef . z + intercept``, RHD when ``d > 0``, probability of RHD ``1 / (1 + exp(-d))``.
No pickle is read or written. ``fit_rhd`` refits the same model family with scikit-learn
(imported only when fitting) and produces the same JSON format.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.errors import NoDopplerTexture
from radiomicsd.pipeline.rhd.texture import VIDEO_FEATURE_NAMES

PILOT_MODEL_FILE = "rhd_logreg_pilot.json"
CLASSES = {0: "normal", 1: "RHD"}
_DECISION = (
    "label = 1 (RHD) if coef . z + intercept > 0 else 0 (normal); "
    "probability = 1 / (1 + exp(-(coef . z + intercept)))"
)
_LABEL_WORDS = {"0": 0, "normal": 0, "1": 1, "rhd": 1}


def default_rhd_model_path() -> Path:
    """Path of the shipped pilot model, ``classifiers/rhd_logreg_pilot.json``."""
    from radiomicsd import classifiers

    return Path(classifiers.__file__).resolve().parent / PILOT_MODEL_FILE


def _finite(key: str, value: object, length: int | None) -> NDArray[np.float64]:
    """``value`` as float64 of ``length`` finite numbers (a scalar when ``length`` is None)."""
    shape = () if length is None else (length,)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.array(np.nan)
    if array.shape != shape or not np.all(np.isfinite(array)):
        what = "a finite number" if length is None else f"{length} finite numbers"
        raise ValueError(f"RHD model '{key}' must be {what}")
    return array


@dataclass(frozen=True)
class Grade:
    """Outcome for one video: ``label`` 0/1, its class ``name``, ``probability`` of RHD."""

    label: int
    name: str
    probability: float


@dataclass(frozen=True)
class RhdModel:
    """Standardisation and binary logistic regression over the 57 video texture features.

    Attributes
    ----------
    feature_names : tuple of str, length 57
        Must equal ``texture.VIDEO_FEATURE_NAMES``: inputs are taken by position.
    mean, std : ndarray, shape (57,)
        Standardisation ``z = (x - mean) / std``; ``std`` finite and positive.
    coef : ndarray, shape (57,)
        Weights of the linear decision on ``z``.
    intercept : float
    classes : dict of int to str
        ``{0: "normal", 1: "RHD"}``.
    description : str
        Where the numbers come from.
    """

    feature_names: tuple[str, ...]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    coef: NDArray[np.float64]
    intercept: float
    classes: dict[int, str]
    description: str = ""

    def __post_init__(self) -> None:
        if tuple(self.feature_names) != VIDEO_FEATURE_NAMES:
            raise ValueError(
                "RHD model feature_names must be the 57 video texture features in "
                "pipeline.texture.VIDEO_FEATURE_NAMES order"
            )
        n = len(VIDEO_FEATURE_NAMES)
        for key in ("mean", "std", "coef"):
            object.__setattr__(self, key, _finite(key, getattr(self, key), n))
        if not np.all(self.std > 0):
            raise ValueError("RHD model 'std' must be positive")
        object.__setattr__(self, "intercept", float(_finite("intercept", self.intercept, None)))
        if set(self.classes) != {0, 1}:
            raise ValueError("RHD model 'classes' must name exactly the labels 0 and 1")

    @classmethod
    def from_json(cls, path: str | Path) -> RhdModel:
        """Load a model written by ``to_json`` or shipped as the pilot's JSON."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        try:
            return cls(
                feature_names=tuple(doc["feature_names"]),
                mean=doc["standardisation"]["mean"],
                std=doc["standardisation"]["std"],
                coef=doc["coef"],
                intercept=doc["intercept"],
                classes={int(k): str(v) for k, v in doc["classes"].items()},
                description=str(doc.get("description", "")),
            )
        except KeyError as exc:
            raise ValueError(f"RHD model JSON lacks the key {exc}") from exc
        except (AttributeError, TypeError) as exc:
            raise ValueError(f"RHD model JSON has a mistyped entry: {exc}") from exc

    def to_json(self, path: str | Path) -> None:
        """Write the model as JSON (same layout as the pilot's file)."""
        doc = {
            "description": self.description,
            "classes": {str(k): v for k, v in sorted(self.classes.items())},
            "feature_names": list(self.feature_names),
            "standardisation": {
                "mean": self.mean.tolist(),
                "std": self.std.tolist(),
                "note": "z = (x - mean) / std before the linear model",
            },
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "decision": _DECISION,
        }
        Path(path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    def decision(self, x57: NDArray[np.float64]) -> float:
        """Signed distance ``coef . (x - mean) / std + intercept``; positive means RHD.

        Raises
        ------
        NoDopplerTexture
            When a feature is NaN (too little Doppler texture to define it).
        """
        x = np.asarray(x57, dtype=np.float64)
        if x.shape != self.coef.shape:
            raise ValueError(f"expected {self.coef.size} features, got shape {x.shape}")
        undefined = int(np.count_nonzero(~np.isfinite(x)))
        if undefined:
            raise NoDopplerTexture(f"{undefined} of {x.size} texture features are undefined")
        return float(self.coef @ ((x - self.mean) / self.std) + self.intercept)

    def predict(self, x57: NDArray[np.float64]) -> Grade:
        """Grade one video from its 57 features (``VIDEO_FEATURE_NAMES`` order)."""
        d = self.decision(x57)
        label = int(d > 0)
        e = math.exp(-abs(d))  # logistic function without overflow
        probability = 1.0 / (1.0 + e) if d >= 0 else e / (1.0 + e)
        return Grade(label=label, name=self.classes[label], probability=probability)


def fit_rhd(
    features: NDArray[np.float64],
    labels: NDArray[np.integer[Any]],
    feature_names: Sequence[str] = VIDEO_FEATURE_NAMES,
) -> RhdModel:
    """Fit the pilot's model family: standardise, then L2 logistic regression (liblinear, C=1).

    Parameters
    ----------
    features : ndarray, shape (n_videos, 57)
        Video texture features, columns in ``feature_names`` order.
    labels : ndarray, shape (n_videos,)
        0 = normal, 1 = RHD; both must occur.
    feature_names : sequence of str, length 57
        Must be ``VIDEO_FEATURE_NAMES``.

    Returns
    -------
    RhdModel
    """
    from sklearn import __version__ as sklearn_version
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise ValueError(f"features must be (n_videos, {len(feature_names)}), got {x.shape}")
    if y.shape != (x.shape[0],) or not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be one 0 (normal) or 1 (RHD) per row of features")
    y = y.astype(int)
    if len(set(y.tolist())) != 2:
        raise ValueError("training needs videos of both classes, normal (0) and RHD (1)")
    bad_rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad_rows.size:
        raise ValueError(f"{bad_rows.size} rows have missing features, first at row {bad_rows[0]}")
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(solver="liblinear", C=1.0).fit(scaler.transform(x), y)
    n_rhd = int(y.sum())
    return RhdModel(
        feature_names=tuple(feature_names),
        mean=scaler.mean_,
        std=scaler.scale_,
        coef=clf.coef_[0],
        intercept=float(clf.intercept_[0]),
        classes=dict(CLASSES),
        description=(
            f"RHD texture classifier refitted by radiomicsd with scikit-learn {sklearn_version}: "
            f"StandardScaler + LogisticRegression (liblinear, L2, C=1.0) on {len(y)} videos "
            f"({len(y) - n_rhd} normal, {n_rhd} RHD)."
        ),
    )


def fit_rhd_from_csv(csv_path: str | Path) -> RhdModel:
    """Fit from a CSV whose header holds the 57 feature names and ``label`` (0/1, normal/RHD).

    Columns may come in any order; other columns (e.g. ``pseudonym``) are ignored. Empty
    feature cells are missing values and make the fit refuse the table.
    """
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (*VIDEO_FEATURE_NAMES, "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"CSV lacks columns: {', '.join(missing[:5])} ({len(missing)} total)")
        rows, labels = [], []
        for line, row in enumerate(reader, start=2):
            word = (row["label"] or "").strip().lower()
            if word not in _LABEL_WORDS:
                raise ValueError(f"CSV line {line}: label must be 0, 1, normal or RHD")
            labels.append(_LABEL_WORDS[word])
            cells = [(row[n] or "").strip() for n in VIDEO_FEATURE_NAMES]
            try:
                rows.append([float(c) if c else np.nan for c in cells])
            except ValueError as exc:
                raise ValueError(f"CSV line {line}: {exc}") from exc
    if not rows:
        raise ValueError("CSV has no data rows")
    x = np.array(rows)
    bad_rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad_rows.size:
        raise ValueError(f"CSV line {bad_rows[0] + 2}: missing or non-finite feature values")
    return fit_rhd(x, np.array(labels))
