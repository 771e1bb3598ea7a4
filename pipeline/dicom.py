"""Read DICOM ultrasound files frame by frame: the DICOM twin of :class:`.video.VideoStream`.

A file is recognised by content (:func:`is_dicom`), never by its name. :class:`DicomStream`
reads the header up to the pixel data (values over :data:`HEADER_DEFER_BYTES` are skipped, not
loaded), checks the declared geometry against the limits and against the pixel data's
structure (element length, or the fragment items of encapsulated data: headers only, seeking
from one to the next), and only then decodes, one frame at a time: memory does not grow with
the number of frames (measured in ``bench/dicom_decoders.py``). A deflated file is the one
exception: its dataset is inflated into memory first, up to :data:`MAX_INFLATED_BYTES`.

Decoders: JPEG baseline frames of YBR_FULL_422 / YBR_FULL / greyscale cines, what ultrasound
machines export most, are decoded by OpenCV's libjpeg-turbo (``fast_jpeg=True``, the default):
~900 frames/s of 640x480 against ~80 through pydicom, and it releases the GIL. Its pixels are
pydicom's with GDCM, exactly for greyscale and on the bundled SonoSite cine; for colour, its SIMD
YCbCr conversion puts the green channel of ~0.03% of pixels 1 level off (measured). Every
other compressed syntax, and JPEG baseline with ``fast_jpeg=False``, goes through pydicom's
decoders (GDCM first); uncompressed data through pydicom's native decoder. 12-bit JPEG
extended needs pylibjpeg-libjpeg (not a dependency; ultrasound stores 8 bits) and is refused
as ``dicom_unsupported_syntax`` without it.

Output is uint8 BGR (H, W, 3) in true colour: YBR is converted to RGB as pydicom does, palette
colour through pydicom's :func:`~pydicom.pixels.apply_color_lut` (entries the LUT descriptor
declares 16-bit are rounded to 8 bits, ``(v + 128) // 257``), MONOCHROME1 is inverted.
Samples with BitsStored other than 8 (e.g. 12- or 16-bit greyscale) are masked to BitsStored
bits and scaled linearly from the stored range (0 .. 2**BitsStored - 1, or the two's complement
range when signed) to 0 .. 255, rounded; no window or VOI LUT is applied.

Privacy: nothing of the header leaves this module but :attr:`DicomStream.facts` (acquisition
facts chosen to identify nobody), the probe, the ultrasound regions and
:attr:`DicomStream.identifying_values`, held in memory for the OCR check of the masked frames
(:mod:`radiomicsd.pipeline.deid.verify`) and never written. Errors carry fixed
short details of this module's own and never pydicom's messages, whose text may quote header
values; pydicom never sees the input's file name (streams are wrapped nameless).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import cv2
import numpy as np
from pydicom import uid
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, as_pixel_options, get_decoder
from pydicom.pixels.decoders.base import Decoder
from pydicom.tag import BaseTag

from radiomicsd.pipeline.dicom_sniff import _LONG_VRS, SNIFF_BYTES, _plausible_dataset
from radiomicsd.pipeline.dicom_sniff import is_dicom as is_dicom  # re-exported
from radiomicsd.pipeline.errors import (
    DicomBadGeometry,
    DicomNoPixels,
    DicomUnsupportedSyntax,
    NoFrames,
    RadiomicsError,
    TooLarge,
    Truncated,
    UnreadableContainer,
)
from radiomicsd.pipeline.video import Limits, Probe, Source, check_file_bytes, check_limits

#: Header values longer than this are skipped, not read (private blobs, icons, overlays); the
#: largest value the reader needs is a 16-bit palette LUT of 65536 entries (128 KiB).
HEADER_DEFER_BYTES = 1 << 20
#: Largest inflated dataset of a deflated file (held in memory whole).
MAX_INFLATED_BYTES = 512 << 20
#: Most fragment items one pixel data element may have.
MAX_FRAGMENTS = 1_000_000

#: RegionSpatialFormat values that are images (PS3.3 C.8.5.5.1.1): 2D, M-mode, spectral.
#: 0x0000 none, 0x0004 waveform and 0x0005 graphics are not.
IMAGE_SPATIAL_FORMATS = frozenset({0x0001, 0x0002, 0x0003})
#: RegionDataType values of grey and colour bars (0x000D, 0x000E): never image regions.
BAR_DATA_TYPES = frozenset({0x000D, 0x000E})

_NATIVE = frozenset({uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian,
                     uid.ExplicitVRBigEndian, uid.DeflatedExplicitVRLittleEndian})
_JPEG_FAMILY = frozenset([*uid.JPEGTransferSyntaxes, *uid.JPEGLSTransferSyntaxes])
_J2K = frozenset(uid.JPEG2000TransferSyntaxes)
_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
_PALETTE = "PALETTE COLOR"
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_FAST_JPEG_COLOUR = frozenset({"YBR_FULL", "YBR_FULL_422"})
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
#: JPEG start-of-frame markers (SOF0-SOF15 but DHT, JPG, DAC) and JPEG-LS SOF55.
_SOF_MARKERS = frozenset({*range(0xC0, 0xD0), 0xF7}) - {0xC4, 0xC8, 0xCC}
_FACT_TEXT = 64
_NO_LIMITS_GIVEN = Limits()  # the defaults, as VideoStream's


@dataclass(frozen=True)
class Region:
    """One SequenceOfUltrasoundRegions entry as a pixel box of the frame.

    ``x0, y0`` inclusive, ``x1, y1`` exclusive, clipped to the frame (pixels);
    ``spatial_format`` is RegionSpatialFormat, ``data_type`` RegionDataType.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    spatial_format: int
    data_type: int
    #: False when the declared box reached past the frame and was clipped: the regions were
    #: written for another frame size (a resized or cropped copy) and do not bound this one.
    fits: bool = True

    @property
    def is_image(self) -> bool:
        """2D, M-mode or spectral, and not a grey or colour bar."""
        return (self.spatial_format in IMAGE_SPATIAL_FORMATS
                and self.data_type not in BAR_DATA_TYPES)


def image_region_mask(regions: Iterable[Region], *, height: int,
                      width: int) -> np.ndarray | None:
    """Union of the image regions (:attr:`Region.is_image`) as a bool (height, width) mask.

    None when no region is an image, or when an image region reached past the frame (written
    for another frame size): the header gives no bound then. Waveform, graphics and bar
    regions never widen the union.
    """
    boxes = [r for r in regions if r.is_image]
    if not boxes or not all(r.fits for r in boxes):
        return None
    mask = np.zeros((height, width), dtype=bool)
    for r in boxes:
        mask[r.y0:r.y1, r.x0:r.x1] = True
    return mask


def image_region_box(regions: Iterable[Region]) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` (end exclusive) of the image regions, or None."""
    boxes = [r for r in regions if r.is_image]
    if not boxes:
        return None
    return (min(r.x0 for r in boxes), min(r.y0 for r in boxes),
            max(r.x1 for r in boxes), max(r.y1 for r in boxes))


class _Nameless:
    """A stream without a ``name``: pydicom puts ``fp.name`` into some warnings."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


@dataclass(frozen=True)
class _Pixels:
    """Where the pixel data lie: ``stream`` (the file, or a deflated file's inflated dataset)
    at ``offset`` (first byte of the value), ``length`` bytes (None: encapsulated)."""

    stream: BinaryIO
    offset: int
    length: int | None
    vr: str | None


def _size_of(stream: BinaryIO) -> int:
    origin = stream.tell()
    size = stream.seek(0, os.SEEK_END)
    stream.seek(origin)
    return size


def _past_meta(tag: BaseTag, vr: str | None, length: int) -> bool:  # noqa: ARG001
    return tag >> 16 != 0x0002


def _at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:  # noqa: ARG001
    return int(tag) in _PIXEL_TAGS


def _inflate(stream: BinaryIO) -> io.BytesIO:
    """The deflated dataset after the file meta, inflated (at most MAX_INFLATED_BYTES)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = io.BytesIO()
    try:
        while chunk := stream.read(1 << 20):
            out.write(inflater.decompress(chunk, MAX_INFLATED_BYTES + 1 - out.tell()))
            if out.tell() > MAX_INFLATED_BYTES or inflater.unconsumed_tail:
                raise TooLarge("inflated dataset exceeds the deflated-file limit")
        out.write(inflater.flush())
    except zlib.error:
        raise UnreadableContainer("deflated dataset does not inflate") from None
    out.seek(0)
    return out


@dataclass(frozen=True)
class _Header:
    """The dataset up to the pixel data, its transfer syntax UID and encoding, and ``body``:
    the stream (the file, or a deflated file's inflated dataset) at the pixel data tag."""

    dataset: Dataset
    ts: str
    body: BinaryIO
    implicit: bool
    little: bool


def _read_header(stream: BinaryIO) -> _Header:
    """Read the file meta and the dataset up to the pixel data."""
    stream.seek(0)
    head = stream.read(132)
    stream.seek(132 if head[128:132] == b"DICM" else 0)
    meta = read_dataset(stream, False, True, stop_when=_past_meta)
    ts = str(meta.get("TransferSyntaxUID", "") or "").strip("\0 ")
    start = stream.tell()
    if ts == uid.DeflatedExplicitVRLittleEndian:
        body: BinaryIO = _inflate(stream)
        implicit, little = False, True
    elif ts:
        body = stream
        implicit, little = ts == uid.ImplicitVRLittleEndian, ts != uid.ExplicitVRBigEndian
    else:  # a bare dataset: pydicom's reader tells implicit from explicit VR
        body = stream
        first = stream.read(2)
        stream.seek(start)
        little = first != b"\x00\x08"  # group 0x0008 big endian
        implicit = little
    origin = body.tell()
    head = body.read(SNIFF_BYTES)
    body.seek(origin)
    if not any(_plausible_dataset(head, implicit=guess, little=little) for guess in (True, False)):
        raise UnreadableContainer("no DICOM dataset after the file meta")
    header = read_dataset(body, implicit, little, stop_when=_at_pixels,
                          defer_size=HEADER_DEFER_BYTES)
    # pydicom's reader corrects a dataset that says one VR encoding and uses the other
    found_implicit = header.original_encoding[0]
    implicit = implicit if found_implicit is None else bool(found_implicit)
    if not ts:
        ts = (uid.ImplicitVRLittleEndian if implicit else
              uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)
    return _Header(header, ts, body, implicit, little)


def _pixel_element(header: _Header, *, image_like: bool) -> _Pixels:
    """Parse the pixel data element's header at the body's position."""
    body, implicit = header.body, header.implicit
    end = "<" if header.little else ">"
    raw = body.read(8)
    if len(raw) < 8:
        if image_like:
            raise Truncated("the file ends before its pixel data")
        raise DicomNoPixels("no pixel data element")
    group, elem = struct.unpack(end + "HH", raw[:4])
    if (group, elem) != (0x7FE0, 0x0010):
        raise DicomUnsupportedSyntax("float pixel data")
    vr: str | None = None
    if implicit:
        (length,) = struct.unpack(end + "L", raw[4:8])
    else:
        vr = raw[4:6].decode("ascii", "replace")
        if raw[4:6] in _LONG_VRS:
            more = body.read(4)
            if len(more) < 4:
                raise Truncated("the file ends inside its pixel data")
            (length,) = struct.unpack(end + "L", more)
        else:
            (length,) = struct.unpack(end + "H", raw[6:8])
    if length == 0:
        raise DicomNoPixels("empty pixel data element")
    return _Pixels(body, body.tell(), None if length == 0xFFFFFFFF else length, vr)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _frame_rate(header: Dataset) -> float:
    """Frames per second from FrameTime (ms), CineRate or RecommendedDisplayFrameRate."""
    candidates = []
    frame_time = header.get("FrameTime")
    try:
        if frame_time is not None and float(frame_time) > 0:
            candidates.append(1000.0 / float(frame_time))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        pass
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        try:
            candidates.append(float(header.get(keyword) or 0))
        except (TypeError, ValueError, OverflowError):
            continue
    return next((fps for fps in candidates if 0 < fps < 1000), 0.0)


def _regions(header: Dataset, *, height: int, width: int) -> tuple[Region, ...]:
    out = []
    for item in header.get("SequenceOfUltrasoundRegions") or ():
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1) + 1, int(item.RegionLocationMaxY1) + 1
            fmt, kind = int(item.RegionSpatialFormat), int(item.RegionDataType)
        except (AttributeError, TypeError, ValueError, OverflowError):
            continue
        fits = x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height
        x0, x1 = max(0, x0), min(width, x1)
        y0, y1 = max(0, y0), min(height, y1)
        if x0 < x1 and y0 < y1:
            out.append(Region(x0, y0, x1, y1, fmt, kind, fits))
    return tuple(out)


#: Attributes whose values, printed on a frame, identify a patient or a visit (besides every
#: person name, date and date-time, which are taken by their VR).
_IDENTIFYING = frozenset({
    "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "PatientAddress",
    "PatientTelephoneNumbers", "MedicalRecordLocator", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "AccessionNumber", "StudyID",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID",
    "AdmissionID", "DeviceSerialNumber", "PatientBirthTime", "StudyTime", "SeriesTime",
    "AcquisitionTime", "ContentTime",
})


def identifying_values(header: Dataset) -> tuple[str, ...]:
    """The header's identifying values as text: every PN, DA and DT value and those of
    :data:`_IDENTIFYING`, sequences included, the pixel data excluded.

    Values the reader deferred (over :data:`HEADER_DEFER_BYTES`) are skipped, never read: the
    header is read from a stream pydicom cannot go back to (loading one raised), and no name,
    date or ID is a megabyte long.
    """
    values: list[str] = []
    for tag in header.keys():  # noqa: SIM118 (iterating a Dataset loads every element)
        raw = header.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
            continue
        element = header[tag]
        if element.VR == "SQ":
            for item in element.value or ():
                values += identifying_values(item)
        elif element.VR in ("PN", "DA", "DT") or element.keyword in _IDENTIFYING:
            items = element.value if isinstance(element.value, MultiValue) else [element.value]
            values += [text for item in items if (text := str(item or "").strip())]
    return tuple(values)


def _text(value: Any) -> str:
    text = "".join(c for c in str(value if value is not None else "") if c.isprintable())
    return text.strip()[:_FACT_TEXT]


def _jpeg_geometry(data: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) of a JPEG / JPEG-LS frame's SOF segment, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
        elif marker in _SOF_MARKERS:
            if pos + 10 > len(data):
                return None
            rows, cols = struct.unpack_from(">HH", data, pos + 5)
            return rows, cols, data[pos + 9]
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
        else:
            pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return None


def _j2k_geometry(data: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) of a JPEG 2000 codestream's SIZ segment, or None."""
    pos = data.find(b"\xff\x4f\xff\x51", 0, 4096)
    if pos < 0 or pos + 42 > len(data):
        return None
    xsiz, ysiz, xo, yo = struct.unpack_from(">LLLL", data, pos + 8)
    (components,) = struct.unpack_from(">H", data, pos + 40)
    return ysiz - yo, xsiz - xo, components


def _ends_complete(data: bytes) -> bool:
    """A JPEG, JPEG-LS or JPEG 2000 frame ends with its EOI / EOC marker (0xFFD9), before
    padding (writers pad odd lengths with 0x00 or 0xFF). Their decoders fill a codestream cut
    short with grey or blur, silently: this is what tells a cut frame."""
    return data.rstrip(b"\0\xff").endswith(b"\xff\xd9")


def _level_table(*, bits_allocated: int, bits_stored: int, signed: bool,
                 invert: bool) -> np.ndarray | None:
    """uint8 table from a sample's bit pattern (as unsigned) to its 0..255 level; None when
    samples are already 8-bit levels."""
    if bits_allocated == 8 and bits_stored == 8 and not signed and not invert:
        return None
    patterns = np.arange(1 << bits_allocated, dtype=np.int64)
    values = patterns & ((1 << bits_stored) - 1)
    if signed:
        half = 1 << (bits_stored - 1)
        values = np.where(values >= half, values - (1 << bits_stored), values) + half
    span = (1 << bits_stored) - 1
    levels = (values * 255 + span // 2) // span
    if invert:
        levels = 255 - levels
    return levels.astype(np.uint8)


_LUT_DATA = tuple(f"{c}PaletteColorLookupTableData" for c in ("Red", "Green", "Blue", "Alpha"))


def _palette_table(header: Dataset, bits_allocated: int, *, big_endian: bool) -> np.ndarray:
    """(2**bits_allocated, 3) uint8 BGR colour of every stored index (pydicom's LUT).

    Entries the descriptor declares 16-bit are rounded to 8 bits; 8-bit entries (also when
    stored in 16-bit words) are taken as they are. ``big_endian``: the file's transfer
    syntax is explicit VR big endian.
    """
    index = np.arange(1 << bits_allocated, dtype=np.uint16 if bits_allocated > 8 else np.uint8)
    plain = big_endian and "RedPaletteColorLookupTableData" in header  # segmented: read right
    rgb = apply_color_lut(index, _native_luts(header) if plain else header)[..., :3]
    if int(header.RedPaletteColorLookupTableDescriptor[2]) > 8:
        rgb = (rgb.astype(np.uint32) + 128) // 257
    return np.ascontiguousarray(np.minimum(rgb, 255).astype(np.uint8)[:, ::-1])


def _native_luts(header: Dataset) -> Dataset:
    """The palette module of a big-endian ``header`` with its plain (not segmented) LUT data in
    the machine's byte order. pydicom (3.0) reads such data as words in the machine's order
    whatever the file's (segmented data it reads right): a big-endian file's 16-bit entries
    came out byte-swapped (a Philips palette frame decoded nearly black). Only the elements the
    lookup reads are copied."""
    out = Dataset()
    for keyword in header.dir("PaletteColorLookupTable"):
        value = header[keyword].value
        if keyword in _LUT_DATA and len(value) % 2 == 0:
            value = np.frombuffer(value, ">u2").astype(np.uint16).tobytes()
        setattr(out, keyword, value)
    return out


@dataclass(frozen=True)
class _Layout:
    """The validated geometry of a file's pixel data."""

    rows: int
    columns: int
    frames: int
    samples: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    signed: bool


def _layout(header: Dataset, ts: str) -> _Layout:
    """Read and check the Image Pixel module (raises before any decoding)."""
    rows, columns = _int(header.get("Rows")), _int(header.get("Columns"))
    frames_value = header.get("NumberOfFrames")
    frames = 1 if frames_value in (None, "") else _int(frames_value, -1)
    if rows <= 0 or columns <= 0 or frames <= 0:
        raise DicomBadGeometry("rows, columns or number of frames missing or not positive")
    samples = _int(header.get("SamplesPerPixel"), 1)
    photometric = _text(header.get("PhotometricInterpretation")).upper()
    bits_allocated = _int(header.get("BitsAllocated"))
    bits_stored = _int(header.get("BitsStored"), bits_allocated)
    signed = _int(header.get("PixelRepresentation")) == 1
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        raise DicomUnsupportedSyntax("bits allocated or stored outside 8/16-bit samples")
    grey = photometric in _GREY or photometric == _PALETTE
    if not ((samples == 1 and grey) or (samples == 3 and photometric in _COLOUR)):
        raise DicomUnsupportedSyntax("photometric interpretation or samples per pixel")
    if photometric in ("YBR_ICT", "YBR_RCT") and ts not in _J2K:
        raise DicomUnsupportedSyntax("YBR_ICT/YBR_RCT outside JPEG 2000")
    if photometric == "YBR_FULL_422" and ts in _NATIVE and columns % 2:
        raise DicomBadGeometry("YBR_FULL_422 with an odd number of columns")
    if ts == uid.JPEGExtended12Bit and bits_stored > 8:
        available = set(get_decoder(ts)._available)
        if available <= {"gdcm", "pillow"}:  # neither decodes 12-bit JPEG
            raise DicomUnsupportedSyntax("12-bit JPEG extended needs pylibjpeg-libjpeg")
    return _Layout(rows, columns, frames, samples, photometric, bits_allocated, bits_stored,
                   signed)


def _native_frame_bytes(layout: _Layout) -> int:
    per_sample = layout.bits_allocated // 8
    if layout.photometric == "YBR_FULL_422":
        return layout.rows * layout.columns * 2 * per_sample
    return layout.rows * layout.columns * layout.samples * per_sample


def _check_native(pixels: _Pixels, layout: _Layout, size: int) -> None:
    frame_bytes = _native_frame_bytes(layout)
    expected = frame_bytes * layout.frames
    length = pixels.length
    if length is None:
        raise UnreadableContainer("uncompressed pixel data of undefined length")
    if pixels.offset + length > size:
        raise Truncated("the file ends inside its pixel data")
    if length < expected:
        raise DicomBadGeometry("pixel data shorter than its declared frames")
    excess = length - expected
    ybr_as_full = layout.photometric == "YBR_FULL_422" and excess >= expected // 2
    if excess >= frame_bytes or ybr_as_full:
        raise DicomBadGeometry("pixel data longer than its declared frames")


def _check_encapsulated(pixels: _Pixels, layout: _Layout, size: int,
                        extended: bool) -> None:
    """Walk the fragment items (headers only) and check them against the frame count."""
    if pixels.length is not None:
        raise UnreadableContainer("encapsulated pixel data of defined length")
    stream, pos = pixels.stream, pixels.offset
    fragments, data_bytes, offsets = 0, 0, b""
    while True:
        stream.seek(pos)
        item = stream.read(8)
        if len(item) < 8:
            raise Truncated("the file ends inside its pixel data")
        group, elem, length = struct.unpack("<HHL", item)
        if (group, elem) == (0xFFFE, 0xE0DD):
            break
        if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            raise UnreadableContainer("malformed pixel data item")
        if pos + 8 + length > size:
            raise Truncated("the file ends inside a pixel data fragment")
        if pos == pixels.offset:  # the basic offset table
            if length and length != 4 * layout.frames:
                raise DicomBadGeometry("offset table and number of frames disagree")
            offsets = stream.read(length) if length else b""
        else:
            fragments += 1
            data_bytes += 8 + length
            if fragments > MAX_FRAGMENTS:
                raise DicomBadGeometry("too many pixel data fragments")
        pos += 8 + length
    if offsets:
        table = struct.unpack(f"<{layout.frames}L", offsets)
        if any(b <= a for a, b in zip(table, table[1:])) or table[-1] >= data_bytes:
            raise Truncated("fragments missing that the offset table points to")
    elif fragments < layout.frames and not extended:
        raise Truncated("fewer fragments than frames")
    if fragments == 0:
        raise Truncated("no pixel data fragment")


def _decode_options(header: Dataset, pixels: _Pixels, ts: str) -> dict[str, Any]:
    """Keyword options of pydicom's decoders for one frame of this file."""
    opts = as_pixel_options(header)
    opts["number_of_frames"] = 1  # frames are handed to the decoder one by one
    opts.pop("extended_offsets", None)
    opts["transfer_syntax_uid"] = (uid.ExplicitVRLittleEndian
                                   if ts == uid.DeflatedExplicitVRLittleEndian else uid.UID(ts))
    opts["pixel_keyword"] = "PixelData"
    if pixels.vr in ("OB", "OW"):
        opts["pixel_vr"] = pixels.vr
    return opts


class DicomStream:
    """Open, check and iterate one DICOM file; use as a context manager.

    The same surface as :class:`~radiomicsd.pipeline.video.VideoStream`: ``probe`` (frame
    size, fps from FrameTime / CineRate / RecommendedDisplayFrameRate, 0.0 when absent;
    ``frame_count`` is NumberOfFrames, 1 when absent), iteration yielding uint8 BGR frames
    (rows, columns, 3) one at a time, ``decoded``, :meth:`check_complete`; plus ``regions``
    (:class:`Region`), ``image_regions_mask()`` and ``facts``. ``fast_jpeg`` decodes JPEG
    baseline YBR and greyscale frames with OpenCV (see the module's docstring); False gives
    pydicom's pixels exactly, ten times slower.

    Everything that can be checked without decoding is checked in the constructor, in this
    order: file size (``too_large``), header parse (``unreadable_container``), pixel data
    present (``dicom_no_pixels``; ``truncated`` when an image's file ends before it),
    transfer syntax and pixel encoding (``dicom_unsupported_syntax``), geometry
    (``dicom_bad_geometry``), limits on frame size and count (``too_large``), pixel data
    structure (``truncated``, ``dicom_bad_geometry``). While iterating, a frame whose coded
    size disagrees with Rows/Columns raises ``dicom_bad_geometry``, one that ends early
    ``truncated``, one no decoder reads ``unreadable_container``.
    """

    def __init__(self, source: Source, limits: Limits = _NO_LIMITS_GIVEN,
                 file_bytes: int | None = None, *, fast_jpeg: bool = True) -> None:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        self._owned: BinaryIO | None = None
        if isinstance(source, (str, Path)):
            self._owned = source = open(source, "rb")  # noqa: SIM115 (closed by close())
        self.limits = limits
        self.decoded = 0
        try:
            stream = cast(BinaryIO, _Nameless(source))
            size = _size_of(stream) if file_bytes is None else file_bytes
            check_file_bytes(limits, size)
            try:
                self._open(stream, size, fast_jpeg=fast_jpeg)
            except RadiomicsError:
                raise
            except Exception:
                raise UnreadableContainer("DICOM header does not parse") from None
        except BaseException:
            self.close()
            raise

    def _open(self, stream: BinaryIO, size: int, *, fast_jpeg: bool) -> None:
        header = _read_header(stream)
        ds, ts = header.dataset, header.ts
        sop_class = uid.UID(_text(ds.get("SOPClassUID")))
        image_like = "Rows" in ds or "Image Storage" in sop_class.name
        pixels = _pixel_element(header, image_like=image_like)
        if ts not in _NATIVE:
            try:
                decoder = get_decoder(ts)
            except NotImplementedError:
                raise DicomUnsupportedSyntax("no decoder for the transfer syntax") from None
            if not decoder.is_available:
                raise DicomUnsupportedSyntax("decoder for the transfer syntax not installed")
        layout = _layout(ds, ts)
        self.probe = Probe(width=layout.columns, height=layout.rows,
                           fps=_frame_rate(ds), frame_count=layout.frames)
        check_limits(self.probe, self.limits)
        pixels_size = size if header.body is stream else _size_of(header.body)
        extended = "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds
        if ts in _NATIVE:
            _check_native(pixels, layout, pixels_size)
        else:
            _check_encapsulated(pixels, layout, pixels_size, extended)
        self.regions = _regions(ds, height=layout.rows, width=layout.columns)
        self.identifying_values = identifying_values(ds)
        #: the header (pixel data not read): for the Annex E writer only, never logged
        self.header = ds
        self.facts: dict[str, str | int] = {
            "modality": _text(ds.get("Modality")),
            "manufacturer": _text(ds.get("Manufacturer")),
            "manufacturer_model_name": _text(ds.get("ManufacturerModelName")),
            "rows": layout.rows,
            "columns": layout.columns,
            "frames": layout.frames,
            "photometric_interpretation": layout.photometric,
            "transfer_syntax": _text(uid.UID(ts).name),
            "bits_stored": layout.bits_stored,
        }
        self._layout, self._ts, self._pixels = layout, uid.UID(ts), pixels
        self._extended = ((bytes(ds.ExtendedOffsetTable), bytes(ds.ExtendedOffsetTableLengths))
                          if extended else None)
        self._opts = _decode_options(ds, pixels, ts)
        self._decoder: Decoder = get_decoder(self._opts["transfer_syntax_uid"])
        self._palette = (_palette_table(ds, layout.bits_allocated,
                                        big_endian=ts == uid.ExplicitVRBigEndian)
                         if layout.photometric == _PALETTE else None)
        self._levels = _level_table(
            bits_allocated=layout.bits_allocated, bits_stored=layout.bits_stored,
            signed=layout.signed, invert=layout.photometric == "MONOCHROME1")
        self._fast_jpeg = (
            fast_jpeg and ts == uid.JPEGBaseline8Bit and layout.bits_allocated == 8
            and (layout.photometric in _GREY
                 or (layout.samples == 3 and layout.photometric in _FAST_JPEG_COLOUR)))

    def __enter__(self) -> DicomStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __repr__(self) -> str:
        probe = getattr(self, "probe", None)
        return f"<DicomStream {probe} decoded={self.decoded}>"

    def image_regions_mask(self) -> np.ndarray | None:
        """:func:`image_region_mask` of this file's regions at its frame size."""
        return image_region_mask(self.regions, height=self.probe.height,
                                 width=self.probe.width)

    def _coded_frames(self) -> Iterator[bytes]:
        """The compressed or uncompressed bytes of each frame, in order."""
        layout, pixels = self._layout, self._pixels
        if self._ts in _NATIVE:
            frame_bytes = _native_frame_bytes(layout)
            for index in range(layout.frames):
                pixels.stream.seek(pixels.offset + index * frame_bytes)
                data = pixels.stream.read(frame_bytes)
                if len(data) < frame_bytes:
                    raise Truncated("the file ends inside its pixel data")
                yield data
            return
        pixels.stream.seek(pixels.offset)
        frames = generate_frames(pixels.stream, number_of_frames=layout.frames,
                                 extended_offsets=self._extended)
        for count, data in enumerate(frames, 1):
            yield data
            if count == layout.frames:
                return
        raise Truncated("fewer frames in the pixel data than declared")

    def _check_coded(self, data: bytes) -> None:
        """A compressed frame's own header agrees with the geometry and it ends complete."""
        layout = self._layout
        if self._ts in _JPEG_FAMILY or self._ts in _J2K:
            geometry = (_jpeg_geometry(data) if self._ts in _JPEG_FAMILY
                        else _j2k_geometry(data))
            if geometry is None:
                raise UnreadableContainer("a frame has no readable codestream header")
            rows, columns, components = geometry
            if rows and (rows, columns) != (layout.rows, layout.columns):
                raise DicomBadGeometry("a frame's coded size differs from rows x columns")
            if components != layout.samples:
                raise DicomBadGeometry("a frame's components differ from samples per pixel")
            if not _ends_complete(data):
                raise Truncated("a frame's codestream ends early")
        elif self._ts == uid.RLELossless:
            if len(data) < 64:
                raise Truncated("an RLE frame ends inside its header")
            (segments,) = struct.unpack_from("<L", data)
            if segments != layout.samples * layout.bits_allocated // 8:
                raise DicomBadGeometry("RLE segments differ from samples x bytes per sample")

    def _decode(self, data: bytes) -> np.ndarray:
        """One frame's bytes -> uint8 BGR (rows, columns, 3)."""
        layout = self._layout
        if self._fast_jpeg:
            flags = (cv2.IMREAD_COLOR if layout.samples == 3 else cv2.IMREAD_GRAYSCALE)
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8),
                                   flags | cv2.IMREAD_IGNORE_ORIENTATION)
            if decoded is None:
                raise UnreadableContainer("a JPEG frame does not decode")
            arr = decoded
        else:
            src = data if self._ts in _NATIVE else encapsulate([data])
            try:
                arr, _ = self._decoder.as_array(src, **self._opts)
            except Exception:
                raise UnreadableContainer("a frame does not decode") from None
        expected = (layout.rows, layout.columns)
        if arr.shape[:2] != expected or (arr.ndim == 3) != (layout.samples == 3):
            raise DicomBadGeometry("a decoded frame differs from rows x columns x samples")
        if self._fast_jpeg and layout.samples == 3:
            return arr  # libjpeg-turbo decodes to BGR
        if not arr.dtype.isnative:  # big endian samples
            arr = arr.astype(arr.dtype.newbyteorder("="))
        patterns = arr.view(np.uint16 if arr.itemsize == 2 else np.uint8)
        if self._palette is not None:
            return self._palette[patterns]
        if self._levels is not None:
            arr = self._levels[patterns]
        elif arr.dtype != np.uint8:
            arr = arr.astype(np.uint8)
        if arr.ndim == 2:
            return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)

    def __iter__(self) -> Iterator[np.ndarray]:
        coded = self._coded_frames()
        while True:
            try:
                data = next(coded)
            except StopIteration:
                return
            except RadiomicsError:
                raise
            except Exception:
                raise DicomBadGeometry("fragments do not split into the declared frames") \
                    from None
            self._check_coded(data)
            frame = self._decode(data)
            self.decoded += 1
            yield frame

    def check_complete(self) -> None:
        """After iteration: every declared frame was decoded (else ``no_frames`` when none,
        ``truncated`` when some)."""
        if self.decoded == 0:
            raise NoFrames("no frame could be decoded")
        if self.decoded < self.probe.frame_count:
            raise Truncated(f"decoded {self.decoded} of {self.probe.frame_count} frames")
