"""Echocardiographic view classification: the pilot's CNN, its preprocessing and a per-video vote.

Each anatomic frame is reduced to the pilot's 320 x 240 x 1 input (``preprocess``), a small CNN
gives per-frame probabilities of A4C / PSAX / PLAX (``ViewClassifier``), and the video's view is
the majority of per-frame decisions (``ViewVote``). The architecture is the pilot's, so any Keras
weights file trained for it loads; the shipped weights were trained on synthetic phantoms only.

TensorFlow is imported inside functions only: importing this module stays cheap, so the
de-identification path never pays for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.errors import InvalidModel
from radiomicsd.pipeline.frame import check_bgr

#: Class names in the order of the CNN's outputs (0 = A4C, 1 = PSAX, 2 = PLAX).
CLASSES = ("A4C", "PSAX", "PLAX")
#: Input of the CNN: rows, columns, channels.
INPUT_SHAPE = (320, 240, 1)
#: Shipped weights, inside the ``classifiers`` package.
SHIPPED_WEIGHTS = "view_cnn.weights.h5"

_FILTERS = (32, 64, 128, 256, 512)
_BATCH = 8  # frames per forward pass: bounds activation memory (~80 MB at 8)


@cache
def pilot_facts() -> dict[str, Any]:
    """The pilot's constants (normalisation, label boxes), from ``classifiers``' JSON file."""
    facts = resources.files("radiomicsd.classifiers").joinpath("view_classifier_pilot.json")
    text = facts.read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def label_boxes(shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Regions blacked out before classification, scaled to a frame of ``shape``.

    The pilot's boxes are (x1, y1, x2, y2) with y measured from the bottom of a 240 x 320
    (w x h) frame; they become rows ``h - y2 .. h - y1`` and columns ``x1 .. x2`` (ends
    exclusive). Starts are rounded down and ends up, so a scaled box never shrinks. The last 8
    columns (scaled the same way) are the final region.

    Parameters
    ----------
    shape : (H, W) of the frame in pixels.

    Returns
    -------
    boxes : list of (row0, row1, col0, col1), ends exclusive, clipped to the frame.
    """
    h, w = int(shape[0]), int(shape[1])
    facts = pilot_facts()["text_boxes_before_cnn"]
    ref_w, ref_h = facts["reference_size"]["width"], facts["reference_size"]["height"]
    sx, sy = w / ref_w, h / ref_h
    out = []
    for x1, y1, x2, y2 in facts["boxes"]:
        r0, r1 = math.floor((ref_h - y2) * sy), math.ceil((ref_h - y1) * sy)
        c0, c1 = math.floor(x1 * sx), math.ceil(x2 * sx)
        out.append((max(0, r0), min(h, r1), max(0, c0), min(w, c1)))
    out.append((0, h, max(0, w - math.ceil(facts["last_columns"] * sx)), w))
    return out


def preprocess(anatomic_bgr: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Turn one anatomic frame into the CNN's input, as the pilot did.

    Last columns and the pilot's label boxes black, grey, resize to 240 x 320 (w x h), min-max
    to [0, 1] (a constant frame becomes all zeros), then ``(x - mean) / std`` with the pilot's
    constants.

    Parameters
    ----------
    anatomic_bgr : uint8 (H, W, 3) BGR frame, or uint8 (H, W) grey.

    Returns
    -------
    x : float32 (320, 240, 1).
    """
    frame = check_bgr(np.asarray(anatomic_bgr), allow_grey=True, min_side=2)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame.copy()
    for r0, r1, c0, c1 in label_boxes(grey.shape):
        grey[r0:r1, c0:c1] = 0
    rows, cols = INPUT_SHAPE[:2]
    small = cv2.resize(grey, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)
    lo, hi = float(small.min()), float(small.max())
    x: NDArray[np.float32] = (small - lo) / (hi - lo) if hi > lo else np.zeros_like(small)
    norm = pilot_facts()["normalisation"]
    x = (x - np.float32(norm["mean"])) / np.float32(norm["std"])
    return x[..., None].astype(np.float32)


def build_model() -> Any:
    """The pilot's CNN, untrained.

    Five blocks of Conv2D 3x3 'same' (32, 64, 128, 256, 512 filters) + ReLU + MaxPool 2x2, then
    Flatten and Dense(3) with softmax. Input (320, 240, 1); 1,675,523 parameters.

    Returns
    -------
    model : keras.Model mapping (n, 320, 240, 1) float32 to (n, 3) probabilities.
    """
    import keras

    inputs = keras.Input(shape=INPUT_SHAPE, name="frame")
    x = inputs
    for i, filters in enumerate(_FILTERS, start=1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"block{i}_conv"
        )(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="view")(x)
    return keras.Model(inputs, outputs, name="view_cnn")


def shipped_weights_path() -> Path:
    """Path of the weights trained on synthetic phantoms and shipped with the package."""
    return Path(str(resources.files("radiomicsd.classifiers").joinpath(SHIPPED_WEIGHTS)))


class ViewClassifier:
    """The CNN with loaded weights; ``predict`` is safe to call from several threads.

    Attributes
    ----------
    name : file name of the weights.
    version : ``<file name>@sha256:<first 12 hex digits of the file's SHA-256>``.
    """

    def __init__(self, model: Any, name: str, version: str) -> None:
        self._model = model
        self._lock = threading.Lock()
        self.name = name
        self.version = version

    @classmethod
    def load(cls, weights_path: str | Path | None = None) -> ViewClassifier:
        """Build the CNN and load weights into it.

        Parameters
        ----------
        weights_path : Keras weights for the pilot's architecture: a ``.weights.h5`` file, a
            legacy Keras 2 HDF5 file (``.h5`` / ``.hdf5``, weights only or a whole saved model),
            or a ``.keras`` archive (only its weights are read, no code or config is run).
            None loads the shipped weights.

        Raises
        ------
        InvalidModel : the file is missing, unreadable or made for another architecture.
        """
        path = Path(weights_path) if weights_path is not None else shipped_weights_path()
        if not path.is_file():
            raise InvalidModel(f"view weights file not found: {path}")
        if path.suffix.lower() not in (".h5", ".hdf5", ".keras"):
            raise InvalidModel(f"view weights must be .weights.h5, .h5, .hdf5 or .keras: {path}")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        model = build_model()
        try:
            model.load_weights(str(path))
        except Exception as exc:  # keras raises ValueError, OSError, KeyError, ... by format
            raise InvalidModel(
                f"cannot load view weights {path.name}: {type(exc).__name__}: {exc}"
            ) from exc
        return cls(model, path.name, f"{path.name}@sha256:{digest.hexdigest()[:12]}")

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Per-frame class probabilities.

        Parameters
        ----------
        batch : float32 (n, 320, 240, 1), frames from ``preprocess``.

        Returns
        -------
        probs : float32 (n, 3), rows sum to 1, columns in the order of ``CLASSES``.
        """
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected (n, {', '.join(map(str, INPUT_SHAPE))}), got {x.shape}")
        out = np.empty((x.shape[0], len(CLASSES)), np.float32)
        for start in range(0, x.shape[0], _BATCH):
            chunk = x[start : start + _BATCH]
            with self._lock:  # one forward pass at a time: it uses every core already
                out[start : start + len(chunk)] = np.asarray(self._model(chunk, training=False))
        return out

    def classify(self, frames: Iterable[NDArray[np.uint8]]) -> ViewResult:
        """Vote over a stream of anatomic frames, holding at most a few frames at once.

        Parameters
        ----------
        frames : uint8 BGR (H, W, 3) or grey (H, W) frames.

        Returns
        -------
        result : the majority view; raises ValueError when ``frames`` is empty.
        """
        vote = ViewVote()
        pending: list[NDArray[np.float32]] = []
        for frame in frames:
            pending.append(preprocess(frame))
            if len(pending) == _BATCH:
                vote.add(self.predict(np.stack(pending)))
                pending.clear()
        if pending:
            vote.add(self.predict(np.stack(pending)))
        return vote.result()


_cache: dict[str, ViewClassifier] = {}
_cache_lock = threading.Lock()


def get_view_classifier(weights_path: str | Path | None = None) -> ViewClassifier:
    """The process-wide classifier for ``weights_path`` (None = shipped), loaded on first use.

    Loading builds the model and reads the weights once per process and path, not once per
    video as the pilot did. Thread-safe.
    """
    path = Path(weights_path) if weights_path is not None else shipped_weights_path()
    key = str(path.resolve())
    with _cache_lock:
        classifier = _cache.get(key)
        if classifier is None:
            classifier = ViewClassifier.load(path)
            _cache[key] = classifier
        return classifier


@dataclass(frozen=True)
class ViewResult:
    """A video's view.

    Attributes
    ----------
    view : one of ``CLASSES``.
    fractions : share of frames whose argmax is each class (sums to 1).
    frames : number of frames that voted.
    """

    view: str
    fractions: dict[str, float]
    frames: int


class ViewVote:
    """Majority vote over frames of the per-frame argmax.

    Ties go to the class with the larger summed probability, then to the earlier class.
    """

    def __init__(self) -> None:
        self._counts = np.zeros(len(CLASSES), np.int64)
        self._mass = np.zeros(len(CLASSES), np.float64)

    @property
    def frames(self) -> int:
        """Frames added so far."""
        return int(self._counts.sum())

    def add(self, probs: NDArray[np.floating[Any]]) -> None:
        """Add per-frame probabilities, shape (n, 3)."""
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(CLASSES):
            raise ValueError(f"expected probabilities (n, {len(CLASSES)}), got {p.shape}")
        if not np.isfinite(p).all():
            raise ValueError("probabilities must be finite")
        self._counts += np.bincount(p.argmax(axis=1), minlength=len(CLASSES))
        self._mass += p.sum(axis=0)

    def result(self) -> ViewResult:
        """The majority view; raises ValueError when no frame was added."""
        n = self.frames
        if n == 0:
            raise ValueError("no frames to vote on")
        winner = max(range(len(CLASSES)), key=lambda i: (self._counts[i], self._mass[i], -i))
        fractions = {c: float(k) / n for c, k in zip(CLASSES, self._counts, strict=True)}
        return ViewResult(CLASSES[winner], fractions, n)
