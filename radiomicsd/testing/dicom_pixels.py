"""Pixel data of the synthetic ultrasound DICOM files (:mod:`.dicom_writer`).

What each encoding stores for a rendered BGR frame (:func:`stored_samples`) and what a correct
reader returns for it (:func:`displayed`), the PALETTE COLOR files' LUT, one-frame encoders
(raw samples; RLE, JPEG-LS, JPEG 2000 through pydicom's encoder plugins; JPEG baseline through
OpenCV) and the pixel data element written frame by frame: uncompressed (deflated with the
dataset for the deflated syntax) or encapsulated, one fragment per frame, with a basic offset
table filled in at the end. All samples are 8 bits.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

import cv2
import numpy as np
from numpy.typing import NDArray
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space, get_encoder

#: Short names of the transfer syntaxes written (the CLI's ``--syntax``).
SYNTAXES: dict[str, uid.UID] = {
    "explicit": uid.ExplicitVRLittleEndian,
    "implicit": uid.ImplicitVRLittleEndian,
    "deflated": uid.DeflatedExplicitVRLittleEndian,
    "rle": uid.RLELossless,
    "jpeg-ls": uid.JPEGLSLossless,
    "jpeg2000": uid.JPEG2000Lossless,
    "jpeg-baseline": uid.JPEGBaseline8Bit,
}
#: The uncompressed syntaxes.
NATIVE = ("explicit", "implicit", "deflated")
UNCOMPRESSED_PHOTOMETRICS = ("RGB", "YBR_FULL", "MONOCHROME2", "PALETTE COLOR")
#: Photometric interpretations written per syntax.
PHOTOMETRICS: dict[str, tuple[str, ...]] = {
    **{name: UNCOMPRESSED_PHOTOMETRICS for name in (*NATIVE, "rle")},
    "jpeg-ls": ("RGB", "MONOCHROME2", "PALETTE COLOR"),
    "jpeg2000": ("RGB", "YBR_RCT", "MONOCHROME2"),
    "jpeg-baseline": ("YBR_FULL_422", "YBR_FULL", "MONOCHROME2"),
}
#: pydicom encoder plugin per compressed syntax (JPEG baseline is OpenCV's).
_PLUGINS = {"rle": "pydicom", "jpeg-ls": "pyjpegls", "jpeg2000": "pylibjpeg"}
#: Photometric interpretations of one sample per pixel.
GREY = ("MONOCHROME2", "PALETTE COLOR")


def combinations() -> list[tuple[str, str, int]]:
    """Every (syntax, photometric interpretation, planar configuration) the writer writes."""
    out = []
    for syntax, photometrics in PHOTOMETRICS.items():
        for photometric in photometrics:
            out.append((syntax, photometric, 0))
            if syntax in NATIVE and photometric == "RGB":
                out.append((syntax, photometric, 1))
    return out


def check_combination(syntax: str, photometric: str, planar: int = 0) -> None:
    """Raise ValueError unless the writer writes this combination; RuntimeError when the
    syntax's encoder is not installed."""
    if syntax not in SYNTAXES:
        raise ValueError(f"syntax {syntax!r}: one of {', '.join(SYNTAXES)}")
    if photometric not in PHOTOMETRICS[syntax]:
        raise ValueError(f"{syntax} is written as {', '.join(PHOTOMETRICS[syntax])}, "
                         f"not {photometric!r}")
    if planar not in (0, 1) or (planar and (syntax not in NATIVE or photometric in GREY)):
        raise ValueError("planar configuration 1 only for uncompressed colour")
    if syntax in _PLUGINS:
        encoder = get_encoder(SYNTAXES[syntax])
        if _PLUGINS[syntax] not in encoder._available:
            raise RuntimeError(f"no {_PLUGINS[syntax]} encoder for {syntax}: "
                               f"{'; '.join(encoder.missing_dependencies)}")


def _build_palette() -> NDArray[np.uint8]:
    """(256, 3) RGB entries: 200 grey levels, the generator's three flow colours and ECG green,
    then 26 steps each of the colour bar's reds and blues."""
    grey = np.round(np.linspace(0, 255, 200))
    ramp = np.round(np.linspace(255 / 26, 255, 26))
    fixed = np.array([(230, 20, 35), (210, 40, 0), (20, 60, 230), (40, 220, 40)])
    zero = np.zeros(26)
    return np.concatenate([np.stack([grey] * 3, axis=1), fixed,
                           np.stack([ramp, zero, zero], axis=1),
                           np.stack([zero, zero, ramp], axis=1)]).astype(np.uint8)


#: The PALETTE COLOR files' LUT, (256, 3) RGB (written as 16-bit entries, ``v * 257``).
PALETTE_RGB = _build_palette()


def palette_indices(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """uint8 (H, W) index of the :data:`PALETTE_RGB` entry nearest each pixel of a BGR frame."""
    h, w = frame.shape[:2]
    rgb = frame[..., ::-1].reshape(-1, 3).astype(np.uint32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    split = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=1)
    distance = ((split[:, None, :].astype(np.int32) - PALETTE_RGB[None].astype(np.int32)) ** 2)
    nearest: NDArray[np.uint8] = distance.sum(axis=2).argmin(axis=1).astype(np.uint8)
    indices: NDArray[np.uint8] = nearest[inverse.reshape(-1)].reshape(h, w)
    return indices


def stored_samples(frame: NDArray[np.uint8], photometric: str, *,
                   jpeg: bool = False) -> NDArray[np.uint8]:
    """The samples a file of ``photometric`` stores for one BGR (H, W, 3) frame.

    (H, W, 3) RGB, YBR_FULL (pydicom's conversion) or, for JPEG (``jpeg``), the BGR frame the
    encoder converts itself; (H, W) grey (OpenCV's BT.601 weights) or palette indices.
    """
    if photometric == "MONOCHROME2":
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    if photometric == "PALETTE COLOR":
        return palette_indices(frame)
    if jpeg:
        return frame
    rgb = np.ascontiguousarray(frame[..., ::-1])
    if photometric == "YBR_FULL":
        return np.asarray(convert_color_space(rgb, "RGB", "YBR_FULL"), dtype=np.uint8)
    return rgb  # RGB; YBR_RCT is RGB given to the JPEG 2000 encoder's reversible transform


def displayed(samples: NDArray[np.uint8], photometric: str) -> NDArray[np.uint8]:
    """BGR (H, W, 3) that a correct reader returns for lossless ``samples`` (the inverse of
    :func:`stored_samples`, as pydicom converts YBR_FULL)."""
    if photometric == "MONOCHROME2":
        return np.asarray(cv2.cvtColor(samples, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if photometric == "PALETTE COLOR":
        return np.ascontiguousarray(PALETTE_RGB[samples][..., ::-1])
    if photometric == "YBR_FULL":
        samples = np.asarray(convert_color_space(samples, "YBR_FULL", "RGB"), dtype=np.uint8)
    return np.ascontiguousarray(samples[..., ::-1])


def encode_jpeg_baseline(image: NDArray[np.uint8], *, quality: int = 90,
                         sampling: int = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422) -> bytes:
    """One JPEG baseline frame by OpenCV (libjpeg-turbo): ``image`` BGR (H, W, 3), stored as
    full-range YCbCr with the chroma ``sampling`` (``cv2.IMWRITE_JPEG_SAMPLING_FACTOR_*``), or
    grey (H, W)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    ok, buffer = cv2.imencode(".jpg", image, params)
    if not ok:
        raise RuntimeError("OpenCV cannot encode JPEG")
    return bytes(buffer.tobytes())


def pixel_module(ds: Dataset, *, size: tuple[int, int], photometric: str, planar: int) -> None:
    """Add the Image Pixel module (8-bit samples; the palette's LUT) to ``ds``."""
    samples = 1 if photometric in GREY else 3
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = planar
    ds.Columns, ds.Rows = size
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if photometric == "PALETTE COLOR":
        for channel, colour in enumerate(("Red", "Green", "Blue")):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            entries = PALETTE_RGB[:, channel].astype("<u2") * 257
            setattr(ds, f"{colour}PaletteColorLookupTableData", entries.tobytes())


def bytes_per_frame(size: tuple[int, int], photometric: str) -> int:
    """Bytes of one uncompressed frame of ``size`` (width, height), 8-bit samples."""
    w, h = size
    return w * h * (1 if photometric in GREY else 3)


def frame_encoder(syntax: str, photometric: str, planar: int, size: tuple[int, int],
                  quality: int) -> Callable[[NDArray[np.uint8]], bytes]:
    """Function from one BGR frame to its stored bytes (raw samples, or one codestream)."""
    jpeg = syntax == "jpeg-baseline"
    w, h = size

    def samples(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 ({h}, {w}, 3), not {frame.dtype} "
                             f"{frame.shape}")
        return stored_samples(frame, photometric, jpeg=jpeg)

    if syntax in NATIVE:
        if planar:
            return lambda frame: samples(frame).transpose(2, 0, 1).tobytes()
        return lambda frame: samples(frame).tobytes()
    if jpeg:
        sampling = (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422 if photometric == "YBR_FULL_422"
                    else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)
        return lambda frame: encode_jpeg_baseline(samples(frame), quality=quality,
                                                  sampling=sampling)
    encoder = get_encoder(SYNTAXES[syntax])
    options: dict[str, Any] = {
        "rows": h, "columns": w, "number_of_frames": 1,
        "samples_per_pixel": 1 if photometric in GREY else 3, "bits_allocated": 8,
        "bits_stored": 8, "pixel_representation": 0, "planar_configuration": 0,
        # the JPEG 2000 encoder applies the reversible colour transform to RGB: YBR_RCT
        "photometric_interpretation": "RGB" if photometric == "YBR_RCT" else photometric,
    }
    if syntax == "jpeg2000":
        options["use_mct"] = photometric == "YBR_RCT"
    plugin = _PLUGINS[syntax]
    return lambda frame: encoder.encode(samples(frame), encoding_plugin=plugin, **options)


def write_native(out: BinaryIO, body: bytes, frames: Iterable[NDArray[np.uint8]],
                 encode: Callable[[NDArray[np.uint8]], bytes], *, syntax: str,
                 frame_bytes: int, count: int) -> None:
    """The dataset and uncompressed pixel data (deflated with the dataset for 'deflated')."""
    length = frame_bytes * count
    pad = length % 2
    if length + pad >= 0xFFFFFFFF:
        raise ValueError("uncompressed pixel data of 4 GiB or more")
    if syntax == "implicit":
        element = struct.pack("<HHL", 0x7FE0, 0x0010, length + pad)
    else:
        element = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, length + pad)
    deflater = (zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS) if syntax == "deflated"
                else None)

    def put(data: bytes) -> None:
        out.write(data if deflater is None else deflater.compress(data))

    put(body + element)
    written = 0
    for frame in frames:
        if written == count:
            raise ValueError(f"more than {count} frames")
        data = encode(frame)
        if len(data) != frame_bytes:
            raise ValueError("a frame's samples differ from the declared size")
        put(data)
        written += 1
    if written != count:
        raise ValueError(f"{written} frames, {count} declared")
    put(b"\0" * pad)
    if deflater is not None:
        out.write(deflater.flush())


def write_encapsulated(out: BinaryIO, frames: Iterable[NDArray[np.uint8]],
                       encode: Callable[[NDArray[np.uint8]], bytes], *, count: int) -> None:
    """Encapsulated pixel data: one fragment per frame, the basic offset table filled in last
    (the file is seeked back to it)."""
    out.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
    out.write(struct.pack("<HHL", 0xFFFE, 0xE000, 4 * count))
    table_at = out.tell()
    out.write(b"\0" * (4 * count))
    offsets: list[int] = []
    position = 0
    for frame in frames:
        if len(offsets) == count:
            raise ValueError(f"more than {count} frames")
        data = encode(frame)
        if len(data) % 2:
            data += b"\0"
        offsets.append(position)
        out.write(struct.pack("<HHL", 0xFFFE, 0xE000, len(data)))
        out.write(data)
        position += 8 + len(data)
        if position > 0xFFFFFFFF:
            raise ValueError("encapsulated frames past the 4 GiB offset table")
    if len(offsets) != count:
        raise ValueError(f"{len(offsets)} frames, {count} declared")
    out.write(struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    end = out.tell()
    out.seek(table_at)
    out.write(struct.pack(f"<{count}L", *offsets))
    out.seek(end)
