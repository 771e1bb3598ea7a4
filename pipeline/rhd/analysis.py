"""The per-video RHD analysis, streaming: segmentation -> view -> textures -> grade.

The pilot's ``main`` held a whole video, segmented every frame with ten k-means runs, classified
the view frame by frame, measured textures and graded the video. :class:`VideoAnalyser` does the
same work on frames fed one at a time, as the daemon decodes them:

1. the first ``palette_frames`` frames are buffered and the video's colour palette is fitted on
   them (:func:`pipeline.rhd.segmentation.fit_doppler_palette`); the buffered frames are then
   processed and every later frame is processed on arrival;
2. each frame is segmented into its Doppler and anatomic images;
3. every ``view_every``-th anatomic frame (the first always) is preprocessed for the view CNN,
   classified ``batch_size`` at a time, and only the vote counts are kept;
4. the Doppler image of every frame gives the 28 texture features (a frame without Doppler
   texture gives none), kept as one small vector per frame: the view is only known at the end,
   and keeping vectors instead of images is what keeps memory flat;
5. at the end, a PLAX video's 57 per-video features are graded by the RHD model; any other
   view, or a video without Doppler texture, gets a result that says why.

Memory held per video: the look-ahead frames until the palette is fitted, one batch of CNN
inputs (``batch_size`` x 320 x 240 float32, 4.9 MB at 16), and 28 floats per textured frame.

The Doppler check happens before, in the caller: frames given here belong to a Doppler video.

Why the view vote may skip frames: the CNN is by far the largest cost left (about 55 ms of the
70 ms a 240 x 320 frame takes here when every frame votes), while consecutive frames of one clip
show the same view, so a vote over every third frame (still 8 to 20 votes a second of video)
decides the same view at a third of the cost. ``view_every=1`` gives the pilot's vote over every
frame; ``bench/analysis.py`` measures both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.errors import NoDopplerTexture, NoFrames
from radiomicsd.pipeline.rhd import segmentation, texture, view
from radiomicsd.pipeline.rhd.grade import Grade

__all__ = [
    "STATUS_GRADED",
    "STATUS_NOT_PLAX",
    "STATUS_NO_DOPPLER_TEXTURE",
    "AnalysisResult",
    "AnalysisSettings",
    "VideoAnalyser",
    "analyse_frames",
    "model_identity",
]

STATUS_GRADED = "graded"
STATUS_NOT_PLAX = "not_plax"
STATUS_NO_DOPPLER_TEXTURE = "no_doppler_texture"

PLAX = "PLAX"


class ViewModel(Protocol):
    """What the analysis needs of a view classifier (``pipeline.rhd.view.ViewClassifier``)."""

    name: str
    version: str

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]: ...


class GradeModel(Protocol):
    """What the analysis needs of an RHD model (``radiomicsd.pipeline.rhd.grade.RhdModel``)."""

    def predict(self, x57: NDArray[np.float64]) -> Grade: ...


@dataclass(frozen=True)
class AnalysisSettings:
    """Knobs of the per-video analysis.

    Attributes
    ----------
    palette_frames : int
        Frames buffered before the video's colour palette is fitted (look-ahead), >= 1.
    sample_pixels : int
        Pixels sampled from those frames for the palette's k-means, >= 8.
    batch_size : int
        Anatomic frames per view-CNN call, >= 1.
    view_every : int
        Frames 0, k, 2k, ... vote on the view (k >= 1; 1: every frame, as the pilot did).
    seed : int
        Seeds the palette's pixel sample and every k-means start: same frames, same result.
    kmeans_restarts : int
        k-means++ starts per frame besides the palette (see
        :func:`radiomicsd.pipeline.rhd.segmentation.segment_frame`), >= 0.
    """

    palette_frames: int = 8
    sample_pixels: int = 20000
    batch_size: int = 16
    view_every: int = 3
    seed: int = 0
    kmeans_restarts: int = 3

    def __post_init__(self) -> None:
        for name, low in (
            ("palette_frames", 1),
            ("sample_pixels", segmentation.K),
            ("batch_size", 1),
            ("view_every", 1),
            ("kmeans_restarts", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"analysis setting {name} must be an integer >= {low}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError("analysis setting seed must be a non-negative integer")


@dataclass(frozen=True)
class AnalysisResult:
    """Outcome of one video's analysis.

    Attributes
    ----------
    status : str
        ``"graded"``, ``"not_plax"`` or ``"no_doppler_texture"``.
    reason : str or None
        None when graded, else a stable reason code (equal to the status).
    view : str
        Majority view, one of ``radiomicsd.pipeline.rhd.view.CLASSES``.
    view_fractions : dict of str to float
        Share of voting frames for each view.
    frames : int
        Frames analysed.
    view_frames : int
        Frames that voted on the view (every ``view_every``-th).
    textured_frames : int
        Frames with Doppler texture (those that gave the 28 features).
    doppler_fraction : float
        Mean over frames of the fraction of pixels in the Doppler mask.
    features : dict of str to float, or None
        The 57 per-video features by name (``pipeline.rhd.texture.VIDEO_FEATURE_NAMES``), NaN where
        undefined; None when not computed (not PLAX, or no textured frame).
    grade : Grade or None
        The RHD grade when graded.
    models : dict
        ``{"view": {"name", "version"}, "rhd": {"name", "version"}}``.
    """

    status: str
    reason: str | None
    view: str
    view_fractions: dict[str, float]
    frames: int
    view_frames: int
    textured_frames: int
    doppler_fraction: float
    features: dict[str, float] | None
    grade: Grade | None
    models: dict[str, dict[str, str | None]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``results.json``: plain types, NaN and infinities as None."""
        return {
            "status": self.status,
            "reason": self.reason,
            "view": self.view,
            "view_fractions": {k: _json_float(v) for k, v in self.view_fractions.items()},
            "frames": self.frames,
            "view_frames": self.view_frames,
            "textured_frames": self.textured_frames,
            "doppler_fraction": _json_float(self.doppler_fraction),
            "features": None
            if self.features is None
            else {k: _json_float(v) for k, v in self.features.items()},
            "grade": None
            if self.grade is None
            else {
                "label": int(self.grade.label),
                "name": str(self.grade.name),
                "probability": _json_float(self.grade.probability),
            },
            "models": {k: dict(v) for k, v in self.models.items()},
        }


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def model_identity(model: object) -> dict[str, str | None]:
    """``{"name", "version"}`` of a model, from its ``name`` / ``version`` attributes if any."""
    name = getattr(model, "name", None)
    version = getattr(model, "version", None)
    return {
        "name": None if name is None else str(name),
        "version": None if version is None else str(version),
    }


class VideoAnalyser:
    """Analyse one Doppler video from frames fed one at a time.

    Parameters
    ----------
    settings : AnalysisSettings
    view_classifier : ViewModel
        E.g. ``pipeline.rhd.view.get_view_classifier()``: ``predict((n, 320, 240, 1)) -> (n, 3)``.
    rhd_model : GradeModel
        E.g. ``radiomicsd.pipeline.rhd.grade.RhdModel.from_json(...)``: ``predict((57,)) -> Grade``.
    models : mapping, optional
        Identities for the result, ``{"view": {...}, "rhd": {...}}``; by default read from the
        models' ``name`` and ``version`` attributes (None when absent).

    Examples
    --------
    >>> analyser = VideoAnalyser(AnalysisSettings(), classifier, rhd)  # doctest: +SKIP
    >>> for frame in frames:  # doctest: +SKIP
    ...     analyser.feed(frame)
    >>> result = analyser.finish()  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: AnalysisSettings,
        view_classifier: ViewModel,
        rhd_model: GradeModel,
        models: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> None:
        self.settings = settings
        self._classifier = view_classifier
        self._rhd = rhd_model
        self._models = {
            "view": model_identity(view_classifier),
            "rhd": model_identity(rhd_model),
        }
        if models is not None:
            self._models.update({k: dict(v) for k, v in models.items()})
        self._lookahead: list[NDArray[np.uint8]] = []
        self._palette: segmentation.DopplerPalette | None = None
        self._batch = np.empty((settings.batch_size, *view.INPUT_SHAPE), np.float32)
        self._batched = 0
        self._vote = view.ViewVote()
        self._features: list[NDArray[np.float64]] = []
        self._frames = 0
        self._doppler_sum = 0.0
        self._result: AnalysisResult | None = None

    @property
    def frames(self) -> int:
        """Frames fed so far (including look-ahead frames not yet processed)."""
        return self._frames + len(self._lookahead)

    def feed(self, frame_bgr: NDArray[np.uint8]) -> None:
        """Add the next frame, uint8 BGR (H, W, 3). The frame is copied if it must be kept."""
        if self._result is not None:
            raise RuntimeError("the analysis is finished; start a new VideoAnalyser")
        if self._palette is None:
            segmentation.blackout_boxes(frame_bgr)  # validates the frame before buffering it
            self._lookahead.append(np.array(frame_bgr, copy=True))
            if len(self._lookahead) >= self.settings.palette_frames:
                self._fit_palette()
        else:
            self._process(frame_bgr)

    def finish(self) -> AnalysisResult:
        """Process what is pending and return the video's result (idempotent).

        Raises
        ------
        NoFrames
            When no frame was fed.
        """
        if self._result is not None:
            return self._result
        if self._palette is None and self._lookahead:
            self._fit_palette()
        if self._frames == 0:
            raise NoFrames("no frames to analyse")
        self._classify_batch()
        views = self._vote.result()
        status, reason = STATUS_GRADED, None
        features: dict[str, float] | None = None
        grade: Grade | None = None
        if views.view != PLAX:
            status, reason = STATUS_NOT_PLAX, STATUS_NOT_PLAX
        else:
            try:
                rows = np.asarray(self._features, dtype=np.float64).reshape(
                    -1, len(texture.FRAME_FEATURE_NAMES)
                )
                x = texture.video_features(rows)
                features = dict(zip(texture.VIDEO_FEATURE_NAMES, map(float, x), strict=True))
                grade = self._rhd.predict(x)
            except NoDopplerTexture as exc:
                status, reason = STATUS_NO_DOPPLER_TEXTURE, exc.reason
        self._result = AnalysisResult(
            status=status,
            reason=reason,
            view=views.view,
            view_fractions=dict(views.fractions),
            frames=self._frames,
            view_frames=views.frames,
            textured_frames=len(self._features),
            doppler_fraction=self._doppler_sum / self._frames,
            features=features,
            grade=grade,
            models=self._models,
        )
        return self._result

    def _fit_palette(self) -> None:
        s = self.settings
        self._palette = segmentation.fit_doppler_palette(
            self._lookahead, sample_pixels=s.sample_pixels, seed=s.seed
        )
        pending, self._lookahead = self._lookahead, []
        for frame in pending:
            self._process(frame)

    def _process(self, frame_bgr: NDArray[np.uint8]) -> None:
        assert self._palette is not None
        s = self.settings
        seg = segmentation.segment_frame(
            frame_bgr, self._palette, restarts=s.kmeans_restarts, seed=s.seed
        )
        if self._frames % s.view_every == 0:
            self._batch[self._batched] = view.preprocess(seg.anatomic_bgr)
            self._batched += 1
            if self._batched == s.batch_size:
                self._classify_batch()
        self._frames += 1
        self._doppler_sum += segmentation.doppler_fraction(seg.mask)
        features = texture.frame_features(seg.doppler_bgr)
        if features is not None:
            self._features.append(features)

    def _classify_batch(self) -> None:
        if self._batched:
            self._vote.add(self._classifier.predict(self._batch[: self._batched]))
            self._batched = 0


def analyse_frames(
    frames: Iterable[NDArray[np.uint8]],
    settings: AnalysisSettings,
    view_classifier: ViewModel,
    rhd_model: GradeModel,
    models: Mapping[str, Mapping[str, str | None]] | None = None,
) -> AnalysisResult:
    """Analyse a video's frames (an iterable consumed once, lazily); see :class:`VideoAnalyser`."""
    analyser = VideoAnalyser(settings, view_classifier, rhd_model, models)
    for frame in frames:
        analyser.feed(frame)
    return analyser.finish()
