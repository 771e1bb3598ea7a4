"""Verify before commit: OCR over the kept area of masked frames, independent of the mask.

The mask detector decides which pixels are the live image; this check asks a different question
of the frames it let through: does any of them still read as patient data? It runs a real OCR
engine (Tesseract, in process through tesserocr: nothing forks, as SCONE requires) over a few
*samples* of the masked clip and refuses the clip with ``residual_text`` when the text it reads
holds a PHI pattern (a date, a clock time, a run of six or more digits) or one of the header
values the caller passes (DICOM: patient name parts, IDs, birth date, institution, dates).

A sample is the brightest channel of the per-pixel, per-channel minimum of a short window of
consecutive masked frames (coloured text counts as bright): burned-in text is static over a
window and survives the minimum, moving speckle and colour flow do not. Tesseract reads clean
text well but not text over speckle, so each sample is read twice: whole, and as text *lines*
cut out of it (thin bright strokes that stand out of their surroundings by a white top-hat,
grouped into rows of glyph height), each binarised and scaled to a glyph height Tesseract
reads, one line at a time.

What is found is reported by kind only (``date``, ``time``, ``digits``, ``header``): the text
itself is never logged, stored or returned.
"""

from __future__ import annotations

import enum
import queue
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from radiomicsd.pipeline.errors import ConfigError, InputError
from radiomicsd.pipeline.frame import box_around, brightest
from radiomicsd.pipeline.settings import setting

#: Where Debian's tesseract-ocr-eng (and most distributions) put the English model.
TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                 "/usr/share/tessdata", "/usr/local/share/tessdata")

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
#: PHI patterns, over upper-cased OCR text. A date: three numbers with - / . between them, or a
#: day, month name and year. A time: hh:mm[:ss]. Digits: six or more, with - . / between.
PATTERNS = {
    "date": re.compile(rf"\b\d{{1,4}}\s?[-/.]\s?\d{{1,2}}\s?[-/.]\s?\d{{2,4}}\b"
                       rf"|\b\d{{1,2}}[ -]?(?:{_MONTHS})[A-Z]*[ -]?\d{{2,4}}\b"),
    "time": re.compile(r"\b[0-2]?\d\s?[:.]\s?[0-5]\d(?:\s?[:.]\s?[0-5]\d)?\b(?![-/.]\d)"),
    "digits": re.compile(r"\d(?:[-./]?\d){5,}"),
}
#: Tesseract variables: no word lists (they bend IDs and dates towards words).
_NO_DICTIONARIES = {name: "0" for name in ("load_system_dawg", "load_freq_dawg",
                                           "load_punc_dawg", "load_number_dawg",
                                           "load_unambig_dawg", "load_bigram_dawg")}
#: Black pixels kept around the part of a sample that is not black, when it is read (more
#: than the 7 px top-hat of :func:`text_lines` reaches: its lines are the same).
READ_BORDER = 16
#: Pixels around the strokes' box in which :func:`text_lines` looks for lines: more than the
#: closing (4 px out and back) and a crop's 2 px margin reach.
LINE_PAD = 12
_TIME_COLON = re.compile(r"\b[0-2]?\d\s?:\s?[0-5]\d")


class OcrMode(str, enum.Enum):
    """Whether the check runs."""

    AUTO = "auto"          #: where the engine and its English model are installed
    REQUIRED = "required"  #: always; start-up fails without the engine
    OFF = "off"            #: never (the operator accepts the risk)


class ResidualText(InputError):
    """Text that reads as patient data was found in the kept area of the masked frames."""

    reason = "residual_text"


@dataclass(frozen=True)
class VerifySettings:
    """The OCR check of masked frames before commit (see the module docstring)."""

    ocr: OcrMode = setting(
        OcrMode.AUTO, "auto: on where Tesseract (tesserocr + tesseract-ocr-eng) is installed | "
        "required: start-up fails without it | off", live=True)
    samples: int = setting(3, "samples read per clip (start, middle, end)", ge=1, le=32,
                           live=True)
    window: int = setting(8, "consecutive frames per sample (per-pixel minimum)", ge=1, le=64,
                          live=True)
    max_lines: int = setting(24, "text-line candidates read per sample, most text-like first",
                             ge=0, le=256, live=True)
    tessdata: Path | None = setting(None, "folder of eng.traineddata; null = the usual places")

    def __post_init__(self) -> None:
        object.__setattr__(self, "ocr", OcrMode(self.ocr))


def find_tessdata(settings: VerifySettings) -> Path | None:
    """The folder holding ``eng.traineddata``, or None."""
    dirs = [settings.tessdata] if settings.tessdata is not None else [Path(d) for d in
                                                                       TESSDATA_DIRS]
    return next((d for d in dirs if (d / "eng.traineddata").is_file()), None)


def engine_available(settings: VerifySettings) -> bool:
    """True when tesserocr imports and the English model is found."""
    try:
        import tesserocr  # noqa: F401
    except ImportError:
        return False
    return find_tessdata(settings) is not None


def check_engine(settings: VerifySettings) -> bool:
    """Whether the check will run; :class:`ConfigError` if it is required and cannot."""
    if settings.ocr == OcrMode.OFF:
        return False
    available = engine_available(settings)
    if settings.ocr == OcrMode.REQUIRED and not available:
        raise ConfigError("verify.ocr is required but Tesseract is not installed (pip install "
                          "tesserocr; apt install tesseract-ocr-eng)")
    return available


def sample_starts(frame_count: int, settings: VerifySettings) -> list[int]:
    """First frame index of each sample window over a clip of ``frame_count`` frames: as many
    windows as fit without overlapping, at most ``samples``, the first at 0, the last at the end.
    """
    count = max(1, min(settings.samples, frame_count // settings.window))
    if count == 1:
        return [0]
    last = frame_count - settings.window
    return [round(i * last / (count - 1)) for i in range(count)]


class Sampler:
    """Collects the samples of a clip while its masked frames stream past (:meth:`feed`).

    ``keep``: the clip's keep-mask, uint8 or bool (H, W), when known: the frames are black
    outside it, so only its box and :data:`READ_BORDER` px around it (what :meth:`Verifier.read`
    reads) are sampled: the samples are cut-outs of that box, and the same page is read."""

    def __init__(self, frame_count: int, settings: VerifySettings, *,
                 keep: NDArray[np.uint8] | NDArray[np.bool_] | None = None) -> None:
        self.window = settings.window
        self.starts = sample_starts(frame_count, settings)
        self.box = None if keep is None else box_around(keep, READ_BORDER, READ_BORDER)
        self.samples: list[NDArray[np.uint8]] = []
        self._open: NDArray[np.uint8] | None = None
        self._index = 0

    def feed(self, masked_bgr: NDArray[np.uint8]) -> None:
        """Take masked uint8 BGR (H, W, 3) frame number ``n`` (counted here)."""
        n, self._index = self._index, self._index + 1
        if self.box is not None:
            masked_bgr = masked_bgr[self.box]
        if n in self.starts:
            self._close()
            self._open = masked_bgr.copy()
        elif self._open is not None:
            cv2.min(self._open, masked_bgr, dst=self._open)
            if n - max(s for s in self.starts if s <= n) + 1 >= self.window:
                self._close()

    def _close(self) -> None:
        if self._open is not None:
            self.samples.append(brightest(self._open))
            self._open = None

    def finish(self) -> list[NDArray[np.uint8]]:
        """The samples: uint8 (H, W) each, or cut-outs of the keep-mask's box."""
        self._close()
        return self.samples


def _kernel(w: int, h: int) -> NDArray[np.uint8]:
    return cast(NDArray[np.uint8], cv2.getStructuringElement(cv2.MORPH_RECT, (w, h)))


def text_lines(grey: NDArray[np.uint8], *, limit: int) -> list[NDArray[np.uint8]]:
    """Candidate text lines of a uint8 (H, W) sample as binarised crops, most text-like first.

    Lines are looked for at two stroke contrasts (60 and 120 grey levels): the lower finds dim
    type on dark ground, the higher separates bright type from the speckle it touches.
    """
    top = cast(NDArray[np.uint8],  # once for both contrasts
               cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, _kernel(7, 7)))
    found = [*_lines_at(top, 60), *_lines_at(top, 120)]
    # ties in order of position (top to bottom, left to right), not of component numbering
    found.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [crop for *_, crop in found[:limit]]


def _lines_at(top: NDArray[np.uint8], contrast: int
              ) -> list[tuple[float, int, int, NDArray[np.uint8]]]:
    """(score, top row, left column, crop) of the text lines whose strokes stand ``contrast``
    above their ground.

    Strokes: the sample's white top-hat ``top`` (structures narrower than ~5 px) above
    ``contrast``. Glyphs: their components 5..48 px high. Lines: glyphs closed horizontally by
    about one glyph width; a line holds at least three glyphs and is at most 1.8 times as high
    as its median glyph (speckle grains merge into blobs of any height, a line of type does
    not). A crop is dark strokes on white, scaled so that its glyphs are ~32 px high.
    """
    strokes = top > contrast
    # lines are looked for in the box of the strokes and LINE_PAD px around it (more than the
    # closing and a crop's margin reach): the same lines, on a fraction of the sample
    box = box_around(strokes, LINE_PAD, LINE_PAD)
    if box is None:
        return []
    strokes = np.ascontiguousarray(strokes[box])
    oy, ox = box[0].start, box[1].start
    n, labels, stats, centroids = _components(strokes.astype(np.uint8))
    heights = stats[:, cv2.CC_STAT_HEIGHT]
    glyph = (heights >= 5) & (heights <= 48) & (stats[:, cv2.CC_STAT_WIDTH] <= 64)
    glyph[0] = False
    table: NDArray[np.uint8] = glyph.astype(np.uint8) * np.uint8(255)
    glyphs: NDArray[np.uint8] = table.take(labels)  # 2x a bool index
    rows = cv2.morphologyEx(glyphs, cv2.MORPH_CLOSE, _kernel(9, 1))
    m, line_labels, line_stats, _ = _components(cast(NDArray[np.uint8], rows))
    cx, cy = centroids[glyph].round().astype(int).T
    owner = line_labels[cy, cx]
    counts = np.bincount(owner, minlength=m)
    found = []
    for i in np.nonzero(counts >= 3)[0]:
        x, y, w, h, area = (int(v) for v in line_stats[i])
        median = float(np.median(heights[glyph][owner == i]))
        if i == 0 or not (6 <= h <= 48 and w >= 2 * h and h <= 1.8 * median):
            continue
        crop = glyphs[max(0, y - 2):y + h + 2, max(0, x - 2):x + w + 2]
        scale = max(1.0, 32.0 / h)
        scaled = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        score = int(counts[i]) * min(1.0, area / (0.15 * w * h))
        found.append((score, oy + y, ox + x, cast(NDArray[np.uint8], 255 - scaled)))
    return found


def _components(binary: NDArray[np.uint8]) -> tuple[int, NDArray[Any], NDArray[np.int32],
                                                    NDArray[np.float64]]:
    """``cv2.connectedComponentsWithStats`` (8-connected) of a uint8 (H, W) image: labels
    uint16 where every possible label fits (a quarter of the pixels at most), ~1.4x faster
    than int32 labels (measured on samples), else int32."""
    h, w = binary.shape
    ltype = cv2.CV_16U if ((h + 1) // 2) * ((w + 1) // 2) < 1 << 16 else cv2.CV_32S
    n, labels, stats, centroids = cv2.connectedComponentsWithStatsWithAlgorithm(
        binary, 8, ltype, cv2.CCL_DEFAULT)
    return (int(n), cast(NDArray[Any], labels), cast(NDArray[np.int32], stats),
            cast(NDArray[np.float64], centroids))


def _fold(text: str) -> str:
    """Upper case, accents dropped: the form OCR text and header values are compared in."""
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).upper()


def header_tokens(values: Iterable[str]) -> set[str]:
    """The tokens of header values worth looking for: letters or digits, 3 or more long.

    A DICOM date (YYYYMMDD) also gives its usual printed forms' parts (the year, and the
    digits without separators are matched by :func:`findings` on digits only).
    """
    tokens: set[str] = set()
    for value in values:
        for token in re.split(r"[^0-9A-Z]+", _fold(value)):
            if len(token) >= 3 and not (token.isdigit() and len(token) < 4):
                tokens.add(token)
    return tokens


def findings(text: str, tokens: set[str]) -> set[str]:
    """Kinds of patient data in OCR ``text``: ``date``, ``time``, ``digits``, ``header``."""
    folded = _fold(text)
    kinds = {kind for kind, pattern in PATTERNS.items() if pattern.search(folded)}
    if "time" in kinds and not _TIME_COLON.search(folded):
        kinds.discard("time")  # '12.30' alone reads as a number too often; a clock has ':'
    words = set(re.split(r"[^0-9A-Z]+", folded))
    digits = re.sub(r"[^0-9]", "", folded)
    for token in tokens:
        if token in words or (token.isdigit() and len(token) >= 6 and token in digits):
            kinds.add("header")
            break
    return kinds


def raise_found(kinds: set[str]) -> None:
    """Raise :class:`ResidualText` naming ``kinds`` (never the text), if there are any."""
    if kinds:
        raise ResidualText("text in the kept area reads as " + ", ".join(sorted(kinds)))


class Verifier:
    """Reads samples with Tesseract. Engines (tesserocr's API is not thread-safe) are pooled:
    a reader takes a free one or makes one (~45 ms: the LSTM model is loaded; the legacy model
    and the dictionaries, which would "correct" digits into words, are not)."""

    def __init__(self, settings: VerifySettings) -> None:
        tessdata = find_tessdata(settings)
        if tessdata is None:
            raise ConfigError("Tesseract's eng.traineddata not found")
        self.settings = settings
        self._tessdata = str(tessdata)
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._warming: threading.Thread | None = None

    def _engine(self) -> Any:
        import tesserocr

        tesserocr.set_leptonica_log_level(tesserocr.LeptLogLevel.NONE)  # no stderr noise
        return tesserocr.PyTessBaseAPI(path=self._tessdata, lang="eng",
                                       oem=tesserocr.OEM.LSTM_ONLY, variables=_NO_DICTIONARIES)

    def warm(self) -> Verifier:
        """Start making one engine now, in the background (Tesseract releases the GIL while
        it loads), rather than at the first clip."""
        self._warming = threading.Thread(target=lambda: self._free.put(self._engine()),
                                         name="ocr-warm", daemon=True)
        self._warming.start()
        return self

    def _take(self) -> Any:
        """A free engine: the warmed one once it is made, else a new one."""
        warming = self._warming
        if warming is not None:
            warming.join()
            self._warming = None
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return self._engine()

    def _read(self, image: NDArray[np.uint8], psm: str, *, dark_on_light: bool = False) -> str:
        """Tesseract's text of a uint8 (H, W) image in page segmentation mode ``psm``.

        ``dark_on_light``: the text is known to be dark on a light ground (a line crop), so
        Tesseract does not read a line a second time with its grey levels inverted, as it does
        where the first reading has low confidence (speckle that is no text): ~40% of a line's
        time. A page is read both ways: its text may be light on dark, or dark on light."""
        import tesserocr

        api = self._take()
        try:
            api.SetPageSegMode(getattr(tesserocr.PSM, psm))
            api.SetVariable("tessedit_do_invert", "0" if dark_on_light else "1")
            image = np.ascontiguousarray(image)
            height, width = image.shape
            api.SetImageBytes(image.tobytes(), width, height, 1, width)
            return str(api.GetUTF8Text())
        finally:
            self._free.put(api)

    def read(self, sample: NDArray[np.uint8]) -> list[str]:
        """Texts read from one uint8 (H, W) sample: the whole, then each candidate line.

        A sample of masked frames is black outside the kept area: only the box around what
        is not black is read (with a black border of :data:`READ_BORDER` px), the same text
        on a smaller page. Nothing but black: nothing to read.
        """
        scale = max(1, min(4, round(600 / sample.shape[0])))
        box = box_around(sample, READ_BORDER, READ_BORDER)
        if box is None:
            return []
        sample = sample[box]
        whole = sample if scale == 1 else cv2.resize(sample, None, fx=scale, fy=scale,
                                                     interpolation=cv2.INTER_CUBIC)
        texts = [self._read(cast(NDArray[np.uint8], whole), "AUTO")]
        for crop in text_lines(sample, limit=self.settings.max_lines):
            texts.append(self._read(crop, "SINGLE_LINE", dark_on_light=True))
        return texts

    def kinds(self, sample: NDArray[np.uint8], tokens: set[str]) -> set[str]:
        """Kinds of patient data read in one uint8 (H, W) sample (see :func:`findings`;
        ``tokens`` from :func:`header_tokens`)."""
        found: set[str] = set()
        for text in self.read(sample):
            found |= findings(text, tokens)
        return found

    def check(self, samples: Sequence[NDArray[np.uint8]], header_values: Iterable[str] = ()
              ) -> None:
        """Raise :class:`ResidualText` naming the kinds found (never the text)."""
        tokens = header_tokens(header_values)
        raise_found(set().union(*(self.kinds(sample, tokens) for sample in samples)))

    @staticmethod
    def engine() -> str:
        """The engine and its version, for the manifest."""
        import tesserocr

        return "tesseract " + str(tesserocr.tesseract_version()).split()[1]
