"""Process one input: open -> fingerprint -> probe/limits -> mask -> Doppler check -> frames
streamed to PNG in staging [-> analysis] -> content re-check -> manifest -> atomic commit.

Used by both the batch command and the watching daemon. Returns an :class:`Outcome`; raises
only for errors the caller must handle (an :class:`InputError` to quarantine, a transient error
to retry). Nothing here logs input names.
"""

from __future__ import annotations

import functools
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from radiomicsd.daemon.config import Config
from radiomicsd.daemon.frames import FrameWriter, Slots
from radiomicsd.daemon.output import AlreadyExported, StagedOutput
from radiomicsd.daemon.sources import OpenedInput, open_input
from radiomicsd.pipeline.deid.mask import build_mask
from radiomicsd.pipeline.deid.pseudonym import pseudonym
from radiomicsd.pipeline.doppler import is_doppler
from radiomicsd.pipeline.errors import ContentChanged
from radiomicsd.pipeline.video import VideoStream

SOFTWARE = "radiomicsd"


#: results.json of a video that is not colour Doppler (the pilot's first check).
NOT_DOPPLER: dict[str, Any] = {"status": "not_doppler", "reason": "not_doppler"}


class Cancelled(Exception):
    """Processing was abandoned on request (shutdown); nothing was committed."""


@functools.cache
def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(SOFTWARE)
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Outcome:
    """What happened to one input. ``status`` is done | skipped."""

    status: str
    reason: str | None = None
    pseudonym: str | None = None
    digest: str | None = None
    frames: int = 0
    seconds: float = 0.0
    output: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: Analysis hook: called with the Doppler flag, returns an object with feed(frame) and
#: finish() -> dict for results.json, or None to skip analysis for this video.
AnalyserFactory = Callable[[], Any]


def process_file(path: Path, cfg: Config, key: bytes, *, age_identity: object | None = None,
                 analyser_factory: AnalyserFactory | None = None,
                 on_digest: Callable[[str, str], bool] | None = None,
                 cancel: threading.Event | None = None,
                 write_frames: bool = True, slots: Slots | None = None) -> Outcome:
    """Process the file at ``path``; see the module docstring.

    ``on_digest(digest_hex, pseudonym)`` is called once the content is fingerprinted; if it
    returns False the input is skipped as ``duplicate`` (the journal knows it already).
    ``cancel``, when set, abandons the video between frames with :class:`Cancelled`.
    ``write_frames`` False writes results and manifest only (``radiomicsd analyse``).
    ``slots``: the process's CPU slots (:mod:`daemon.frames`); this call holds one, and idle
    ones encode its frames. None encodes every frame on the calling thread.
    """
    started = time.monotonic()
    tmp = cfg["decrypt_tmp_dir"]
    with slots.held() if slots is not None else nullcontext():
        opened = open_input(path, cfg.limits.max_file_bytes, age_identity,
                            Path(tmp) if tmp else None)
        try:
            return _process_opened(opened, cfg, key, started, analyser_factory, on_digest,
                                   cancel, write_frames, slots)
        finally:
            opened.close()


def _process_opened(opened: OpenedInput, cfg: Config, key: bytes, started: float,
                    analyser_factory: AnalyserFactory | None,
                    on_digest: Callable[[str, str], bool] | None,
                    cancel: threading.Event | None, write_frames: bool,
                    slots: Slots | None) -> Outcome:
    digest_hex = opened.digest.hex()
    name = pseudonym(key, opened.digest)
    out_dir = cfg.path("output_dir")
    base = Outcome("skipped", pseudonym=name, digest=digest_hex)
    if on_digest is not None and not on_digest(digest_hex, name):
        base.reason = "duplicate"
        return base
    if (out_dir / name).exists():
        base.reason = "already_exported"
        return base
    mask_settings = cfg.mask
    with VideoStream(opened.stream, cfg.limits, opened.size) as video:
        frames = iter(video)
        lookahead = [f for _, f in zip(range(mask_settings.lookahead_frames), frames)]
        if not lookahead:
            video.check_complete()  # raises NoFrames
        mask = build_mask(lookahead, mask_settings)
        doppler = is_doppler(lookahead[0], cfg.doppler, where=mask.keep > 0)
        if cfg["select"] == "doppler" and not doppler:
            base.reason = "not_doppler"
            base.seconds = time.monotonic() - started
            return base
        analyser = analyser_factory() if analyser_factory and doppler else None
        compression = cfg["png"]["compression"]
        with StagedOutput(out_dir) as staged, FrameWriter(staged, compression, slots) as writer:
            n = 0
            for frame in chain(_drain(lookahead), frames):
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                masked = mask.apply(frame)
                if analyser is not None:
                    analyser.feed(masked)
                if write_frames:
                    writer.put(masked)
                n += 1
            writer.finish()
            video.check_complete()
            models: dict[str, Any] = {}
            if analyser_factory is not None:
                results = analyser.finish() if analyser is not None else NOT_DOPPLER
                models = results.get("models", {})
                staged.write_json("results.json", {"pseudonym": name, **results,
                                                   "software": software_info()})
            if not opened.unchanged():
                raise ContentChanged("the input changed while it was processed")
            probe = video.probe
            manifest = {
                "width": probe.width,
                "height": probe.height,
                "fps": probe.fps,
                "frames": n,
                "frames_written": staged.frames,
                "doppler": doppler,
                "masking": {"method": mask.method,
                            "masked_fraction": round(mask.masked_fraction, 6)},
                "png": {"encoder": "isal-deflate", "filter": "sub", "level": compression},
                "software": software_info(),
                "models": models,
                "processing_seconds": round(time.monotonic() - started, 3),
            }
            try:
                target = staged.commit(name, manifest)
            except AlreadyExported:
                base.reason = "already_exported"
                return base
    return Outcome("done", None, name, digest_hex, n,
                   time.monotonic() - started, target,
                   {"doppler": doppler, "analysed": analyser is not None})


def _drain(frames: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield and release the look-ahead frames one by one (memory drops as they are written)."""
    frames.reverse()
    while frames:
        yield frames.pop()


def software_info() -> dict[str, str]:
    """Versions that shaped an output (no host names, no times)."""
    return {"name": SOFTWARE, "version": software_version(), "opencv": cv2.__version__,
            "numpy": np.__version__, "python": platform.python_version()}
