"""Export one opened input: probe/limits -> mask -> Doppler check -> frames streamed to PNG in
staging [-> analysis] -> OCR check of masked samples -> content re-check -> manifest -> atomic
commit.

The same :class:`Exporter` serves the batch command and the daemon (through
:func:`radiomicsd.daemon.attempt.attempt`). It raises for every refusal (an
:class:`~radiomicsd.pipeline.errors.InputError`, an output-side
:class:`~radiomicsd.pipeline.errors.OutputUnavailable`, :class:`Cancelled`) and returns an
:class:`Outcome` for what it did. Nothing here logs.
"""

from __future__ import annotations

import enum
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, closing, nullcontext
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd import version
from radiomicsd.daemon.frames import FrameWriter, Slots
from radiomicsd.daemon.output import AlreadyExported, StagedOutput
from radiomicsd.daemon.pins import Pins
from radiomicsd.daemon.send import Outbox
from radiomicsd.daemon.settings import Settings
from radiomicsd.daemon.sources import OpenedInput
from radiomicsd.pipeline.deid.mask import (
    Mask,
    MaskSettings,
    NeedsReview,
    build_mask,
    confine,
)
from radiomicsd.pipeline.deid.preview import preview
from radiomicsd.pipeline.deid.profile import ProfileSettings
from radiomicsd.pipeline.deid.pseudonym import pseudonym
from radiomicsd.pipeline.deid.verify import (
    Sampler,
    Verifier,
    VerifySettings,
    check_engine,
    header_tokens,
    raise_found,
)
from radiomicsd.pipeline.dicom_sniff import is_dicom
from radiomicsd.pipeline.doppler import DopplerSettings, is_doppler
from radiomicsd.pipeline.errors import ContentChanged
from radiomicsd.pipeline.video import Limits, VideoStream

if TYPE_CHECKING:
    from radiomicsd.pipeline.dicom import DicomStream

SOFTWARE = "radiomicsd"

#: results.json of a video that is not colour Doppler (the pilot's first check).
NOT_DOPPLER: dict[str, Any] = {"status": "not_doppler", "reason": "not_doppler"}


class Cancelled(Exception):
    """Processing was abandoned on request (shutdown); nothing was committed."""


class Status(str, enum.Enum):
    """What one attempt at one input came to."""

    DONE = "done"          #: output committed
    SKIPPED = "skipped"    #: nothing to do (duplicate, already exported, not Doppler)
    FAILED = "failed"      #: refused or failed; ``Outcome.reason`` says why
    ABANDONED = "abandoned"  #: stopped before commit (shutdown)


@dataclass
class Outcome:
    """What happened to one input.

    ``transient``: worth retrying; ``output_side``: the output could not take the commit (pause,
    never the input's fault).
    """

    status: Status
    reason: str | None = None
    pseudonym: str | None = None
    digest: str | None = None
    frames: int = 0
    seconds: float = 0.0
    output: Path | None = None
    detail: str | None = None
    transient: bool = False
    output_side: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReviewMaterial:
    """What a person needs to decide on a ``needs_review`` refusal: the proposed mask (uint8
    (H, W), 255 = kept), its preview (uint8 BGR (H, W, 3), :func:`preview`: pixelated, no
    legible text), the input's non-identifying facts and the detector's method."""

    keep: NDArray[np.uint8]
    preview: NDArray[np.uint8]
    facts: dict[str, Any]
    method: str


class TextCheck:
    """The OCR check of one clip: its samples are taken from the masked frames as they stream
    past (:class:`Sampler`) and each is read (:class:`Verifier`) on a thread of its own as soon
    as it is complete, while the worker goes on writing frames (Tesseract and OpenCV release
    the GIL). Every sample is read before commit: :meth:`finish` waits for all and raises
    :class:`~radiomicsd.pipeline.deid.verify.ResidualText`. Use as a context manager: leaving
    it drops what was not started and waits for what was."""

    def __init__(self, verifier: Verifier, settings: VerifySettings, frame_count: int,
                 header_values: Iterable[str], *, keep: NDArray[np.uint8] | None = None) -> None:
        self.verifier = verifier
        self.sampler = Sampler(frame_count, settings, keep=keep)
        self.tokens = header_tokens(header_values)
        #: CPU seconds of the check: taking the samples (on the worker, :meth:`feed`) and
        #: reading them (on the reading thread; Tesseract runs in the calling thread): its
        #: cost, which a busy machine does not stretch as it stretches its wall time
        self._sampling = 0.0
        self._reading = 0.0
        self._taken = 0
        self._reads: list[Future[set[str]]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr")

    def feed(self, masked_bgr: NDArray[np.uint8]) -> None:
        """Take the next masked uint8 BGR (H, W, 3) frame; start reading a completed sample."""
        started = time.thread_time()
        self.sampler.feed(masked_bgr)
        self._sampling += time.thread_time() - started
        self._take(self.sampler.samples)

    def _take(self, samples: list[NDArray[np.uint8]]) -> None:
        for sample in samples[self._taken:]:
            self._reads.append(self._pool.submit(self._read, sample))
        self._taken = len(samples)

    def _read(self, sample: NDArray[np.uint8]) -> set[str]:
        started = time.thread_time()
        try:
            return self.verifier.kinds(sample, self.tokens)
        finally:
            self._reading += time.thread_time() - started

    def close_samples(self) -> None:
        """After the last frame: start reading the last sample."""
        self._take(self.sampler.finish())

    def finish(self) -> float:
        """Wait for every read; raise ResidualText naming what was found; return the CPU
        seconds of the check (sampling and reading)."""
        self.close_samples()
        raise_found(set().union(*(read.result() for read in self._reads)))
        return self._sampling + self._reading

    def __enter__(self) -> TextCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


#: Analysis hook: returns an object with feed(frame) and finish() -> dict for results.json.
AnalyserFactory = Callable[[], Any]


@dataclass(frozen=True, kw_only=True)
class Exporter:
    """Everything an export needs besides the input; built once per run."""

    key: bytes
    out_dir: Path
    select: str
    limits: Limits
    mask: MaskSettings
    doppler: DopplerSettings
    png_level: int
    verify: VerifySettings = VerifySettings()
    verifier: Verifier | None = None
    pins: Pins | None = None
    output_format: str = "png"
    dicom_profile: ProfileSettings = ProfileSettings()
    outbox: Outbox | None = None
    analyser_factory: AnalyserFactory | None = None
    write_frames: bool = True
    slots: Slots | None = None
    replica: str = ""  #: names this process's staging folders (replicas share the output)

    @classmethod
    def from_settings(cls, settings: Settings, *, key: bytes, **kw: Any) -> Exporter:
        """The exporter of ``settings``; :class:`ConfigError` when OCR is required and absent."""
        verifier = Verifier(settings.verify).warm() if check_engine(settings.verify) else None
        return cls(key=key, out_dir=settings.output_dir, select=settings.select,
                   limits=settings.limits, mask=settings.mask, doppler=settings.doppler,
                   png_level=settings.png.compression, verify=settings.verify,
                   verifier=verifier, pins=Pins(settings.state_dir),
                   output_format=settings.output_format, dicom_profile=settings.dicom_profile,
                   **kw)

    def pseudonym(self, opened: OpenedInput) -> str:
        return pseudonym(self.key, opened.digest)

    def export(self, opened: OpenedInput, name: str | None = None, *, started: float,
               cancel: threading.Event | None = None) -> Outcome:
        """Write ``opened``'s masked frames and manifest under ``OUT/<name>/``.

        ``name`` None: the pseudonym of ``opened``'s digest, asked for once the mask is found
        (a digest deferred by :func:`~radiomicsd.daemon.sources.open_input` is computed while
        the look-ahead frames are decoded and searched), before anything is staged; an output
        that exists already is looked for as soon as the digest is known.
        ``cancel``, when set, abandons the video between frames with :class:`Cancelled`.
        """
        if name is None and opened.digest_ready:
            name = self.pseudonym(opened)
        if name is not None and (self.out_dir / name).exists():
            return Outcome(Status.SKIPPED, "already_exported", name, opened.digest.hex())
        with open_frames(opened, self.limits) as video, ExitStack() as stack:
            frames = iter(video)
            lookahead = [f for _, f in zip(range(self.mask.lookahead_frames), frames)]
            if not lookahead:
                video.check_complete()  # raises NoFrames
            detect_started = time.monotonic()
            mask = self._mask(lambda: opened.digest.hex(), video, lookahead)
            detect_seconds = time.monotonic() - detect_started
            digest = opened.digest.hex()
            if name is None:
                name = self.pseudonym(opened)
                if (self.out_dir / name).exists():
                    return Outcome(Status.SKIPPED, "already_exported", name, digest)
            base = Outcome(Status.SKIPPED, pseudonym=name, digest=digest)
            doppler = is_doppler(lookahead[0], self.doppler, where=mask.keep > 0)
            if self.select == "doppler" and not doppler:
                base.reason = "not_doppler"
                base.seconds = time.monotonic() - started
                return base
            factory = self.analyser_factory
            analyser = factory() if factory is not None and doppler else None
            text = None
            if self.verifier is not None:
                values = () if isinstance(video, VideoStream) else video.identifying_values
                text = stack.enter_context(TextCheck(self.verifier, self.verify,
                                                     video.probe.frame_count, values,
                                                     keep=mask.keep))
            with StagedOutput(self.out_dir, replica=self.replica) as staged, \
                    FrameWriter(staged, self.png_level, self.slots) as writer, \
                    self._dicom_writer(staged, video, digest) as dicom:
                sinks = [s.feed for s in (text, analyser) if s is not None]
                sinks += [s.put for s in (dicom, writer if self._pngs else None)
                          if s is not None]
                n = _stream(chain(_drain(lookahead), frames), mask, sinks, cancel)
                video.check_complete()
                unchanged = opened.unchanged_later()  # re-hashed while the last work runs
                if text is not None:
                    text.close_samples()
                writer.finish()
                waited = time.monotonic()
                verify_seconds = text.finish() if text is not None else 0.0
                waited = time.monotonic() - waited
                models: dict[str, Any] = {}
                if factory is not None:
                    results = analyser.finish() if analyser is not None else NOT_DOPPLER
                    models = results.get("models", {})
                    staged.write_json("results.json", {"pseudonym": name, **results,
                                                       "software": software_info()})
                if not unchanged():
                    raise ContentChanged("the input changed while it was processed")
                probe = video.probe
                manifest = {
                    "width": probe.width,
                    "height": probe.height,
                    "fps": probe.fps,
                    "frames": n,
                    "frames_written": staged.frames,
                    "doppler": doppler,
                    "masking": {"method": mask.method, "geometry": mask.geometry,
                                "masked_fraction": round(mask.masked_fraction, 6)},
                    "png": {"encoder": "isal-deflate", "filter": "sub", "level": self.png_level},
                    "verification": self._verification(text),
                    "dicom": None if dicom is None else dicom.finish(),
                    "source": source_facts(video),
                    "software": software_info(),
                    "models": models,
                    "processing_seconds": round(time.monotonic() - started, 3),
                    "timing": {"detect_seconds": round(detect_seconds, 4),
                               "verify_seconds": round(verify_seconds, 4),
                               "verify_wait_seconds": round(waited, 4)},
                }
                target = self._commit(staged, name, manifest, send=dicom is not None)
                if target is None:
                    base.reason = "already_exported"
                    return base
        return Outcome(Status.DONE, None, name, digest, n, time.monotonic() - started, target,
                       extra={"doppler": doppler, "analysed": analyser is not None})

    def _commit(self, staged: StagedOutput, name: str, manifest: dict[str, Any], *,
                send: bool) -> Path | None:
        """Commit ``staged`` as ``OUT/<name>`` (None: it exists already); with ``send``, its
        image.dcm is queued in the outbox if and only if the commit happened."""
        outbox = self.outbox if send else None
        if outbox is not None:
            from radiomicsd.daemon.dicom_output import IMAGE

            outbox.stage(staged.path / IMAGE, name)
        try:
            return staged.commit(name, manifest)
        except AlreadyExported:
            return None
        finally:
            if outbox is not None:
                if staged.committed is None:
                    outbox.drop(name)
                else:
                    outbox.ready(name)

    def _dicom_writer(self, staged: StagedOutput, video: VideoStream | DicomStream,
                      digest: str) -> AbstractContextManager[Any]:
        """The image.dcm writer when the output format asks for DICOM (and frames are
        written), else nothing."""
        if not self.write_frames or self.output_format == "png":
            return nullcontext()
        from radiomicsd.daemon.dicom_output import DicomWriter  # pydicom only for DICOM out

        header = None if isinstance(video, VideoStream) else video.header
        return closing(DicomWriter(staged.path, key=self.key, profile=self.dicom_profile,
                                   header=header, digest=digest, fps=video.probe.fps))

    def _mask(self, digest: Callable[[], str], video: VideoStream | DicomStream,
              lookahead: list[NDArray[np.uint8]]) -> Mask:
        """The pinned mask of this content or device (bounded by DICOM image regions, the
        configured boxes blacked out), else the detector's. A ``needs_review`` refusal gets its
        review material: the proposed mask and its preview (:class:`ReviewMaterial`)."""
        shape = lookahead[0].shape[:2]
        facts = source_facts(video)
        pinned = self.pins.for_input(digest, facts, shape) if self.pins is not None else None
        if pinned is not None:
            return Mask(confine(pinned.keep, self.mask, bounds=image_bounds(video)), pinned.by)
        try:
            return live_image_mask(video, lookahead, self.mask)
        except NeedsReview as exc:
            if exc.proposed is not None:
                keep = exc.proposed.keep
                exc.review = ReviewMaterial(keep=keep, preview=preview(lookahead[0], keep),
                                            facts=facts, method=exc.proposed.method)
            raise

    def _verification(self, text: TextCheck | None) -> dict[str, Any]:
        """The manifest's account of the OCR check."""
        if self.verifier is None or text is None:
            return {"ocr": "off" if self.verify.ocr.value == "off" else "unavailable"}
        return {"ocr": self.verifier.engine(), "samples": len(text.sampler.samples),
                "window_frames": self.verify.window, "result": "no patient data read"}

    @property
    def _pngs(self) -> bool:
        return self.write_frames and self.output_format != "dicom"


def _stream(frames: Iterable[NDArray[np.uint8]], mask: Mask,
            sinks: list[Callable[[NDArray[np.uint8]], None]],
            cancel: threading.Event | None) -> int:
    """Mask each frame (in place) and hand it to every sink in turn; return the count.
    ``cancel``, when set, abandons the video between frames with :class:`Cancelled`."""
    n = 0
    for frame in frames:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        masked = mask.apply(frame)
        for sink in sinks:
            sink(masked)
        n += 1
    return n


def open_frames(opened: OpenedInput, limits: Limits) -> VideoStream | DicomStream:
    """The frame reader for ``opened``, chosen by content: DICOM (pydicom, frame by frame;
    FFmpeg never sees a DICOM file) or any container OpenCV's FFmpeg reads."""
    if is_dicom(opened.stream):
        from radiomicsd.pipeline.dicom import DicomStream  # pydicom only when there is DICOM

        return DicomStream(opened.stream, limits, opened.size)
    return VideoStream(opened.stream, limits, opened.size)


def live_image_mask(video: VideoStream | DicomStream, lookahead: list[NDArray[np.uint8]],
                    settings: MaskSettings) -> Mask:
    """The clip's mask from the live-image detector; a DICOM file's image regions bound it.

    A DICOM file without usable regions goes through the same detector as a video of its
    frames, one frame included: the detector itself refuses (``needs_review``) what it cannot
    vouch for.
    """
    return build_mask(lookahead, settings, bounds=image_bounds(video))


def image_bounds(video: VideoStream | DicomStream) -> NDArray[np.uint8] | None:
    """uint8 (H, W), 255 inside a DICOM file's ultrasound image regions; None for a video or a
    file without regions that fit its frame."""
    regions = None if isinstance(video, VideoStream) else video.image_regions_mask()
    return None if regions is None else regions.astype(np.uint8) * 255


def source_facts(video: VideoStream | DicomStream) -> dict[str, Any]:
    """Non-identifying facts of the input for the manifest: its format and, for DICOM, the
    acquisition facts (modality, manufacturer and model, geometry, encoding)."""
    if isinstance(video, VideoStream):
        return {"format": "video", "width": video.probe.width, "height": video.probe.height}
    return {"format": "dicom", **video.facts}


def _drain(frames: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield and release the look-ahead frames one by one (memory drops as they are written)."""
    frames.reverse()
    while frames:
        yield frames.pop()


def software_info() -> dict[str, str]:
    """Versions that shaped an output (no host names, no times)."""
    return {"name": SOFTWARE, "version": version(), "opencv": cv2.__version__,
            "numpy": np.__version__, "python": platform.python_version()}
