"""Wiring of the RHD analysis into the daemon and the ``analyse`` command.

Models load once per process (the view CNN through ``pipeline.rhd.view``'s cache, the RHD model
here) and only when analysis is enabled, so TensorFlow never loads on the anonymise path.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from radiomicsd.daemon.settings import AnalysisOptions, Settings
from radiomicsd.pipeline.errors import ConfigError

RESULTS = "results.json"
FEATURES_CSV = "features.csv"


class _Analyser:
    """Adapter for :mod:`daemon.process`: ``feed(frame)``, ``finish() -> dict``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def feed(self, frame: Any) -> None:
        self.inner.feed(frame)

    def finish(self) -> dict[str, Any]:
        return self.inner.finish().to_dict()


def _import_tensorflow() -> None:
    """Import TensorFlow with the lines its native libraries print at load kept off stderr.

    Those lines ("All log messages before absl::InitializeLog() ...", oneDNN notes) go straight
    to file descriptor 2 whatever ``TF_CPP_MIN_LOG_LEVEL`` says (tensorflow#100442), and in a
    JSON log stream they are lines no consumer can parse. Called before any worker or server
    thread starts, so no log line of ours can be lost meanwhile.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def analyser_factory(options: AnalysisOptions) -> Any:
    """Load the models now (fail early on a bad path) and return a per-video factory."""
    try:
        _import_tensorflow()
        from radiomicsd.pipeline.rhd.analysis import AnalysisSettings, VideoAnalyser
        from radiomicsd.pipeline.rhd.grade import RhdModel, default_rhd_model_path
        from radiomicsd.pipeline.rhd.view import get_view_classifier
    except ImportError as exc:
        raise ConfigError(f"analysis needs the 'analysis' extra (pip install "
                          f"'radiomicsd[analysis]'): {exc}") from None

    a = options
    settings = AnalysisSettings(palette_frames=a.palette_frames, batch_size=a.batch_size,
                                view_every=a.view_every, kmeans_restarts=a.kmeans_restarts)
    view = get_view_classifier(a.view_weights)
    rhd_path = a.rhd_model or default_rhd_model_path()
    try:
        rhd = RhdModel.from_json(rhd_path)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load analysis.rhd_model: {exc}") from None
    models = {"rhd": {"name": rhd_path.name, "version": _sha_prefix(rhd_path)}}
    return lambda: _Analyser(VideoAnalyser(settings, view, rhd, models))


def _sha_prefix(path: Path) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def write_features_csv(out_dir: Path) -> Path:
    """Collect every ``OUT/<pseudonym>/results.json`` into ``OUT/features.csv`` (atomic)."""
    from radiomicsd.pipeline.rhd.texture import VIDEO_FEATURE_NAMES

    header = ["pseudonym", "status", "reason", "view", "doppler_fraction", "label",
              "probability", *VIDEO_FEATURE_NAMES]
    tmp = out_dir / f".{FEATURES_CSV}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for results in sorted(out_dir.glob(f"*/{RESULTS}")):
            doc = json.loads(results.read_text())
            grade = doc.get("grade") or {}
            feats = doc.get("features") or {}
            writer.writerow([doc.get("pseudonym"), doc.get("status"), doc.get("reason"),
                             doc.get("view"), doc.get("doppler_fraction"), grade.get("label"),
                             grade.get("probability"),
                             *(feats.get(n) for n in VIDEO_FEATURE_NAMES)])
        f.flush()
        os.fsync(f.fileno())
    target = out_dir / FEATURES_CSV
    os.replace(tmp, target)
    return target


def run_analyse(settings: Settings, in_dir: Path, console: TextIO = sys.stdout) -> int:
    """``radiomicsd analyse``: results only (``OUT/<pseudonym>/results.json`` + manifest, no
    frames) for every video, Doppler or not, then the features table of all results."""
    from radiomicsd.daemon.batch import run_batch

    settings = dataclasses.replace(settings, select="all")
    code = run_batch(settings, in_dir, analyser_factory=analyser_factory(settings.analysis),
                     write_frames=False, console=console)
    table = write_features_csv(settings.output_dir)
    console.write(f"features table: {table}\n")
    return code

