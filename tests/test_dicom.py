"""The DICOM reader (radiomicsd.pipeline.dicom) on real files and on files written here.

Real files: the ultrasound files pydicom ships (SonoSite JPEG cine, Philips palette frame, GE
JPEG 2000 / RGB / big endian frames), read from pydicom's bundled test data (never
downloaded). Written files: pydicom datasets in every transfer syntax and photometric
interpretation ultrasound uses, compressed with pydicom's encoders (RLE; JPEG-LS via pyjpegls;
JPEG 2000 via pylibjpeg-openjpeg), GDCM (JPEG lossless / extended) or OpenCV (JPEG baseline
frames wrapped into encapsulated pixel data). Lossless files must decode to the very pixels
written; lossy ones to pydicom's own full decode. Every bad DICOM has its reason code, and no
header value or file name reaches facts, repr, errors, warnings or pydicom's log.
"""

from __future__ import annotations

import io
import logging
import struct
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.sequence import Sequence

from radiomicsd.pipeline import dicom
from radiomicsd.pipeline.dicom import (
    SNIFF_BYTES,
    DicomStream,
    Region,
    image_region_box,
    image_region_mask,
    is_dicom,
)
from radiomicsd.pipeline.errors import (
    DicomBadGeometry,
    DicomNoPixels,
    DicomUnsupportedSyntax,
    InputError,
    NoFrames,
    TooLarge,
    Truncated,
    UnreadableContainer,
)
from radiomicsd.pipeline.video import Limits
from radiomicsd.testing.dicom_pixels import encode_jpeg_baseline
from radiomicsd.testing.dicom_writer import region_item

#: Header values written into every test file; none may come out of the reader.
PHI_NAME = "Zyxwvut^Qorbelina"
PHI_ID = "PID-7316-4429"
PHI_DATE = "19470213"
PHI_INSTITUTION = "Saint Quillifer Hospital"
PHI = (PHI_NAME, "Zyxwvut", "Qorbelina", PHI_ID, PHI_DATE, PHI_INSTITUTION)
#: A marker in the names of written files: no path may come out either.
NAME_MARKER = "secretpatientfilename"
DEFAULT_LIMITS = Limits()

BUNDLED = {
    # name: (frames, photometric, transfer syntax, manufacturer, has regions)
    "examples_ybr_color.dcm": (30, "YBR_FULL_422", uid.JPEGBaseline8Bit, "SonoSite, Inc.", True),
    "examples_palette.dcm": (1, "PALETTE COLOR", uid.ExplicitVRLittleEndian,
                             "Philips Medical Systems", True),
    "examples_jpeg2k.dcm": (1, "YBR_RCT", uid.JPEG2000Lossless, "G.E. Medical Systems", False),
    "examples_rgb_color.dcm": (1, "RGB", uid.ExplicitVRLittleEndian, "G.E. Medical Systems",
                               False),
    "ExplVR_BigEnd.dcm": (1, "RGB", uid.ExplicitVRBigEndian, "G.E. Medical Systems", False),
}


def bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with the installed pydicom"
    return Path(path)


# --- reference decodes ---------------------------------------------------------------------

def pydicom_frames_bgr(ds: Dataset) -> np.ndarray:
    """pydicom's own full decode as (frames, rows, columns, 3) uint8 BGR."""
    arr = ds.pixel_array  # YBR is converted to RGB by pydicom 3
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        if ds.RedPaletteColorLookupTableDescriptor[2] == 16:
            arr = (arr.astype(np.uint32) + 128) // 257
        arr = arr.astype(np.uint8)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[None]
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            arr = 255 - arr
    return np.ascontiguousarray(arr[..., ::-1])


def read_all(source: object, limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, DicomStream]:
    with DicomStream(source, limits) as stream:  # type: ignore[arg-type]
        frames = np.stack(list(stream))
        stream.check_complete()
    return frames, stream


# --- writing test files --------------------------------------------------------------------

def pattern(frames: int, rows: int, columns: int, samples: int = 1, *, maximum: int = 255,
            dtype: type = np.uint8) -> np.ndarray:
    """Deterministic pixels that differ per frame, row, column and sample."""
    yy, xx = np.mgrid[0:rows, 0:columns]
    out = np.empty((frames, rows, columns, samples), dtype=np.int64)
    for f in range(frames):
        for c in range(samples):
            out[f, ..., c] = (xx * 7 + yy * 13 + f * 31 + c * 85 + (xx * yy) % 17) % (maximum + 1)
    out = out.astype(dtype)
    return out[..., 0] if samples == 1 else out


def new_dataset(arr: np.ndarray, photometric: str, *, planar: int = 0,
                bits_stored: int | None = None, signed: bool = False,
                ts: str = uid.ExplicitVRLittleEndian) -> Dataset:
    """A US multi-frame dataset holding ``arr`` (frames, rows, columns[, 3]) uncompressed
    (little endian in memory; :func:`save` swaps for big endian)."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ts
    meta.MediaStorageSOPClassUID = uid.UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PHI_NAME
    ds.PatientID = PHI_ID
    ds.PatientBirthDate = PHI_DATE
    ds.StudyDate = PHI_DATE
    ds.InstitutionName = PHI_INSTITUTION
    ds.Modality = "US"
    ds.Manufacturer = "Acme Echo"
    ds.ManufacturerModelName = "E-1"
    frames, rows, columns = arr.shape[:3]
    samples = 3 if arr.ndim == 4 else 1
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = planar
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    data = arr.transpose(0, 3, 1, 2) if samples == 3 and planar == 1 else arr
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    return ds


def save(ds: Dataset, *, bare: bool = False) -> bytes:
    """The dataset as a DICOM file (or, ``bare``, as a dataset without preamble and meta)."""
    ts = ds.file_meta.TransferSyntaxUID
    if ts == uid.ExplicitVRBigEndian and ds.BitsAllocated == 16:
        ds = ds.copy()
        ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    buffer = io.BytesIO()
    if bare:
        ds = ds.copy()
        del ds.file_meta
        ds.save_as(buffer, implicit_vr=True, little_endian=True)
    elif uid.UID(ts).is_private:
        ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
    else:
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def jpeg_dataset(arr: np.ndarray, photometric: str, *, sampling: int) -> Dataset:
    """JPEG baseline frames encoded by OpenCV (libjpeg-turbo, the synthetic DICOM writer's
    encoder), wrapped as encapsulated data.

    ``arr`` is RGB (frames, rows, columns, 3) or grey (frames, rows, columns).
    """
    blobs = [encode_jpeg_baseline(frame[..., ::-1] if frame.ndim == 3 else frame, quality=85,
                                  sampling=sampling) for frame in arr]
    ds = new_dataset(arr, photometric, ts=uid.JPEGBaseline8Bit)
    ds.PixelData = encapsulate(blobs)
    ds["PixelData"].VR = "OB"
    return ds


def gdcm_transcode(ds: Dataset, ts_name: str, tmp_path: Path) -> Dataset:
    """``ds`` re-encoded by GDCM to one of its transfer syntaxes (JPEG lossless, extended)."""
    gdcm = pytest.importorskip("gdcm", reason="GDCM encodes JPEG lossless / extended here")
    source, target = tmp_path / "gdcm_in.dcm", tmp_path / "gdcm_out.dcm"
    source.write_bytes(save(ds))
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, ts_name)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return pydicom.dcmread(target)


def compress(ds: Dataset, ts: str, **kwargs: object) -> Dataset:
    """``ds`` compressed by pydicom's encoders; skipped when none is installed for ``ts``."""
    from pydicom.pixels import get_encoder

    encoder = get_encoder(ts)
    if not encoder.is_available:
        pytest.skip(f"no encoder installed for {uid.UID(ts).name}: "
                    f"{'; '.join(encoder.missing_dependencies)}")
    ds.compress(ts, **kwargs)
    return ds


def bgr(arr: np.ndarray) -> np.ndarray:
    """Expected output of RGB or grey frames: BGR, 3 channels."""
    if arr.ndim == 3:
        return np.repeat(arr[..., None], 3, axis=-1)
    return np.ascontiguousarray(arr[..., ::-1])


# --- privacy -------------------------------------------------------------------------------

def header_phi(path: Path) -> list[str]:
    """Identifying values of a real file: patient name (and its parts), ID, every date."""
    ds = pydicom.dcmread(path)
    values: list[str] = []
    name = str(ds.get("PatientName", ""))
    values += [name] + [part for part in name.split("^") if len(part) >= 3]
    values.append(str(ds.get("PatientID", "")))
    for element in ds.iterall():
        if element.VR in ("DA", "DT") and element.value:
            values.append(str(element.value))
    return [v for v in values if len(v) >= 3]


def assert_private(text: str, secrets: tuple[str, ...] | list[str] = PHI) -> None:
    for secret in [*secrets, NAME_MARKER]:
        assert secret not in text, f"a header value or file name leaked: {secret!r}"


def error_text(err: BaseException) -> str:
    return "\n".join([str(err), repr(err), getattr(err, "detail", ""),
                      "".join(traceback.format_exception(err))])


def assert_refused(data: bytes, error: type[InputError], *, limits: Limits = DEFAULT_LIMITS,
                   iterate: bool = False) -> InputError:
    """Reading ``data`` raises ``error`` (in the constructor, or while iterating when
    ``iterate``), with no header value in the error, a warning or pydicom's log."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("pydicom").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(error) as info:
                stream = DicomStream(io.BytesIO(data), limits)
                if iterate:
                    for _ in stream:
                        pass
                else:
                    pytest.fail("the constructor accepted the file")
    finally:
        logging.getLogger("pydicom").removeHandler(handler)
    assert info.value.reason == error.reason
    assert_private(error_text(info.value))
    assert_private(" ".join(str(w.message) for w in caught))
    assert_private(" ".join(r.getMessage() for r in records))
    return info.value


# --- bundled real ultrasound files ---------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_file_decodes_to_pydicoms_pixels(name: str) -> None:
    path = bundled(name)
    frames_expected, photometric, ts, manufacturer, _ = BUNDLED[name]
    ds = pydicom.dcmread(path)
    frames, stream = read_all(path)
    assert frames.dtype == np.uint8 and frames.shape == (frames_expected, ds.Rows, ds.Columns, 3)
    np.testing.assert_array_equal(frames, pydicom_frames_bgr(ds))
    assert stream.decoded == frames_expected
    assert stream.probe.width == ds.Columns and stream.probe.height == ds.Rows
    assert stream.probe.frame_count == frames_expected
    assert stream.facts == {
        "modality": "US", "manufacturer": manufacturer,
        "manufacturer_model_name": str(ds.ManufacturerModelName),
        "rows": ds.Rows, "columns": ds.Columns, "frames": frames_expected,
        "photometric_interpretation": photometric, "transfer_syntax": uid.UID(ts).name,
        "bits_stored": 8,
    }


def test_bundled_cine_frame_rate_comes_from_frame_time() -> None:
    path = bundled("examples_ybr_color.dcm")
    with DicomStream(path) as stream:
        assert stream.probe.fps == pytest.approx(1000.0 / float(pydicom.dcmread(path).FrameTime))
    with DicomStream(bundled("examples_rgb_color.dcm")) as stream:
        assert stream.probe.fps == 0.0  # no frame timing in a single frame


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_file_header_values_stay_inside(name: str) -> None:
    path = bundled(name)
    secrets = header_phi(path)
    assert secrets, "the file should have a patient name, an ID or dates to look for"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with DicomStream(path) as stream:
            list(stream)
            shown = " ".join([repr(stream), str(stream.facts), repr(stream.regions),
                              repr(stream.probe)])
    assert_private(shown, secrets)
    assert_private(" ".join(str(w.message) for w in caught), secrets)
    # and in an error about the same file: cut inside its pixel data
    data = path.read_bytes()
    with pytest.raises(InputError) as info:
        list(DicomStream(io.BytesIO(data[: len(data) - 4000])))
    assert info.value.reason == "truncated"
    assert_private(error_text(info.value), secrets)


def test_bundled_regions_are_pixel_boxes_clipped_to_the_frame() -> None:
    # SonoSite cine, 320x240: one 2D tissue region (84, 31)-(595, 414) inclusive, beyond the
    # frame of this reduced copy
    with DicomStream(bundled("examples_ybr_color.dcm")) as stream:
        assert stream.regions == (Region(84, 31, 320, 240, 1, 1, fits=False),)
        # written for the full-size original: no bound for this copy
        assert stream.image_regions_mask() is None
    fitted = [Region(84, 31, 320, 240, 1, 1)]
    mask = image_region_mask(fitted, height=240, width=320)
    assert mask is not None and mask.shape == (240, 320)
    assert mask.sum() == (320 - 84) * (240 - 31) and mask[31, 84] and not mask[30, 84]
    # Philips frame, 800x350: a 2D region, and an ECG waveform region entirely below the frame
    with DicomStream(bundled("examples_palette.dcm")) as stream:
        assert stream.regions == (Region(120, 60, 800, 350, 1, 1, fits=False),)
        assert image_region_box(stream.regions) == (120, 60, 800, 350)
    with DicomStream(bundled("examples_rgb_color.dcm")) as stream:
        assert stream.regions == () and stream.image_regions_mask() is None


# --- regions -------------------------------------------------------------------------------

def test_image_regions_union_excludes_bars_graphics_and_waveforms() -> None:
    ds = new_dataset(pattern(1, 100, 200, 3), "RGB")
    ds.SequenceOfUltrasoundRegions = Sequence([
        region_item(10, 10, 89, 59, 0x0001, 0x0001),    # 2D tissue
        region_item(100, 10, 179, 59, 0x0002, 0x0001),  # M-mode
        region_item(10, 60, 99, 95, 0x0003, 0x0003),    # PW spectral
        region_item(185, 0, 199, 99, 0x0001, 0x000E),   # a colour bar claiming 2D
        region_item(0, 0, 199, 99, 0x0005, 0x0000),     # graphics over the whole frame
        region_item(100, 70, 199, 99, 0x0004, 0x000A),  # ECG waveform
        region_item(150, 150, 160, 160, 0x0001, 0x0001),  # outside the frame: dropped
    ])
    _, stream = read_all(io.BytesIO(save(ds)))
    assert len(stream.regions) == 6
    mask = stream.image_regions_mask()
    expected = np.zeros((100, 200), dtype=bool)
    expected[10:60, 10:90] = expected[10:60, 100:180] = expected[60:96, 10:100] = True
    assert mask is not None
    np.testing.assert_array_equal(mask, expected)
    assert image_region_box(stream.regions) == (10, 10, 180, 96)
    only_bars = [r for r in stream.regions if not r.is_image]
    assert image_region_mask(only_bars, height=100, width=200) is None
    assert image_region_box(only_bars) is None


def test_a_malformed_region_item_is_skipped() -> None:
    ds = new_dataset(pattern(1, 40, 60), "MONOCHROME2")
    broken = region_item(1, 2, 30, 20, 1, 1)
    del broken.RegionLocationMaxY1
    ds.SequenceOfUltrasoundRegions = Sequence([broken, region_item(5, 6, 49, 29, 1, 2)])
    _, stream = read_all(io.BytesIO(save(ds)))
    assert stream.regions == (Region(5, 6, 50, 30, 1, 2),)


# --- is_dicom ------------------------------------------------------------------------------

class CountingStream(io.RawIOBase):
    """A seekable stream over bytes that records the furthest byte read and the bytes read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.furthest = 0
        self.total = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._data.read(size)
        self.furthest = max(self.furthest, self._data.tell())
        self.total += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()


def test_is_dicom_by_content_for_files_and_bare_datasets(tmp_path: Path) -> None:
    for name in BUNDLED:
        assert is_dicom(bundled(name))
    ds = new_dataset(pattern(2, 16, 16), "MONOCHROME2")
    disguised = tmp_path / f"{NAME_MARKER}.mp4"
    disguised.write_bytes(save(ds))
    assert is_dicom(disguised)
    bare = save(ds, bare=True)
    assert bare[128:132] != b"DICM"
    assert is_dicom(io.BytesIO(bare))
    frames, stream = read_all(io.BytesIO(bare))  # and it reads
    np.testing.assert_array_equal(frames, bgr(pattern(2, 16, 16)))
    assert stream.facts["transfer_syntax"] == "Implicit VR Little Endian"


def test_is_dicom_refuses_videos_images_and_noise(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    assert video.stat().st_size > 0 and not is_dicom(video)
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok and not is_dicom(io.BytesIO(png.tobytes()))
    noise = np.random.default_rng(3).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    assert not is_dicom(io.BytesIO(noise))
    assert not is_dicom(io.BytesIO(b""))
    mp4_head = struct.pack(">L", 24) + b"ftypisom" + b"\0" * 12
    assert not is_dicom(io.BytesIO(mp4_head + noise))


def test_is_dicom_reads_a_few_kib_and_keeps_the_position() -> None:
    data = save(new_dataset(pattern(40, 64, 64, 3), "RGB"), bare=True)
    counting = CountingStream(data)
    counting.seek(1234)
    assert is_dicom(counting)  # type: ignore[arg-type]
    assert counting.furthest <= SNIFF_BYTES and counting.tell() == 1234


# --- uncompressed, every encoding ----------------------------------------------------------

UNCOMPRESSED = [uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian,
                uid.DeflatedExplicitVRLittleEndian]


@pytest.mark.parametrize("ts", UNCOMPRESSED, ids=lambda t: uid.UID(t).keyword)
@pytest.mark.parametrize("planar", [0, 1])
def test_uncompressed_rgb_in_each_encoding_and_planar_configuration(ts: str,
                                                                    planar: int) -> None:
    rgb = pattern(3, 24, 40, 3)
    frames, stream = read_all(io.BytesIO(save(new_dataset(rgb, "RGB", planar=planar, ts=ts))))
    np.testing.assert_array_equal(frames, bgr(rgb))
    assert stream.facts["transfer_syntax"] == uid.UID(ts).name


@pytest.mark.parametrize("ts", UNCOMPRESSED, ids=lambda t: uid.UID(t).keyword)
def test_uncompressed_greyscale_8_and_16_bit_in_each_encoding(ts: str) -> None:
    grey = pattern(2, 20, 30)
    frames, _ = read_all(io.BytesIO(save(new_dataset(grey, "MONOCHROME2", ts=ts))))
    np.testing.assert_array_equal(frames, bgr(grey))
    # 12 bits stored in 16: scaled from 0..4095 to 0..255, rounded
    deep = pattern(2, 20, 30, maximum=4095, dtype=np.uint16)
    data = save(new_dataset(deep, "MONOCHROME2", bits_stored=12, ts=ts))
    frames, stream = read_all(io.BytesIO(data))
    levels = ((deep.astype(np.int64) * 255 + 2047) // 4095).astype(np.uint8)
    np.testing.assert_array_equal(frames, bgr(levels))
    assert stream.facts["bits_stored"] == 12


def test_greyscale_scaling_masks_unused_bits_and_maps_signed_ranges() -> None:
    deep = pattern(1, 8, 16, maximum=4095, dtype=np.uint16)
    dirty = deep | 0xF000  # overlay bits above BitsStored are not part of the sample
    frames, _ = read_all(io.BytesIO(save(new_dataset(dirty, "MONOCHROME2", bits_stored=12))))
    np.testing.assert_array_equal(frames, bgr(((deep.astype(np.int64) * 255 + 2047)
                                               // 4095).astype(np.uint8)))
    signed = np.array([[[-32768, -1, 0, 1, 32767, -16384]]], dtype=np.int16)
    frames, _ = read_all(io.BytesIO(save(new_dataset(signed, "MONOCHROME2", signed=True))))
    expected = ((signed.astype(np.int64) + 32768) * 255 + 32767) // 65535
    np.testing.assert_array_equal(frames[..., 0], expected.astype(np.uint8))
    assert frames[0, 0, 0, 0] == 0 and frames[0, 0, 4, 0] == 255


def test_monochrome1_is_inverted() -> None:
    grey = pattern(2, 16, 24)
    frames, _ = read_all(io.BytesIO(save(new_dataset(grey, "MONOCHROME1"))))
    np.testing.assert_array_equal(frames, bgr(255 - grey))
    deep = pattern(1, 16, 24, maximum=1023, dtype=np.uint16)
    frames, _ = read_all(io.BytesIO(save(new_dataset(deep, "MONOCHROME1", bits_stored=10))))
    np.testing.assert_array_equal(
        frames, bgr(255 - ((deep.astype(np.int64) * 255 + 511) // 1023).astype(np.uint8)))


@pytest.mark.parametrize("photometric", ["YBR_FULL", "YBR_FULL_422"])
def test_uncompressed_ybr_is_converted_as_pydicom_does(photometric: str) -> None:
    rgb = pattern(2, 16, 32, 3)
    if photometric == "YBR_FULL_422":
        rgb[..., 1::2, :] = rgb[..., 0::2, :]  # chroma shared by each pixel pair survives 4:2:2
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds = new_dataset(ybr, "YBR_FULL")
    if photometric == "YBR_FULL_422":  # Y0 Y1 Cb Cr for each pair of pixels
        pairs = ybr.reshape(2, 16, 16, 2, 3)
        packed = np.concatenate([pairs[..., 0], pairs[:, :, :, 0, 1:]], axis=-1)
        ds.PixelData = packed.tobytes()
        ds.PhotometricInterpretation = "YBR_FULL_422"
    frames, _ = read_all(io.BytesIO(save(ds)))
    expected = pydicom_frames_bgr(pydicom.dcmread(io.BytesIO(save(ds))))
    np.testing.assert_array_equal(frames, expected)
    assert np.abs(frames.astype(int) - bgr(rgb)).max() <= 2  # YCbCr round trip


def test_single_frame_without_number_of_frames() -> None:
    rgb = pattern(1, 12, 20, 3)
    ds = new_dataset(rgb, "RGB")
    del ds.NumberOfFrames
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.UltrasoundImageStorage
    frames, stream = read_all(io.BytesIO(save(ds)))
    np.testing.assert_array_equal(frames, bgr(rgb))
    assert stream.probe.frame_count == 1 and stream.facts["frames"] == 1


# --- palette colour ------------------------------------------------------------------------

def palette_dataset(index: np.ndarray, lut_bits: int) -> tuple[Dataset, np.ndarray]:
    """A PALETTE COLOR dataset over ``index`` and its (entries, 3) RGB LUT in 8 bits."""
    entries = 256 if index.dtype == np.uint8 else 4096
    ramp = np.arange(entries)
    rgb8 = np.stack([ramp * 255 // (entries - 1), 255 - ramp * 255 // (entries - 1),
                     (ramp * 7) % 256], axis=-1).astype(np.uint8)
    ds = new_dataset(index, "PALETTE COLOR")
    ds.BitsStored = 8 if index.dtype == np.uint8 else 12
    ds.HighBit = ds.BitsStored - 1
    for channel, colour in enumerate(("Red", "Green", "Blue")):
        descriptor = [entries if entries < 65536 else 0, 0, lut_bits]
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", descriptor)
        values = rgb8[:, channel].astype(np.uint16)
        data = (values * 257).astype("<u2") if lut_bits == 16 else values.astype("<u2")
        # 8-bit entries in 16-bit words: the values, 0..255 (the usual encoding)
        setattr(ds, f"{colour}PaletteColorLookupTableData", data.tobytes())
    return ds, rgb8


@pytest.mark.parametrize("lut_bits", [8, 16])
def test_palette_8_bit_index_with_8_and_16_bit_lut_entries(lut_bits: int) -> None:
    index = pattern(2, 20, 30)
    ds, rgb8 = palette_dataset(index, lut_bits)
    frames, _ = read_all(io.BytesIO(save(ds)))
    np.testing.assert_array_equal(frames, bgr(rgb8[index]))
    np.testing.assert_array_equal(frames, pydicom_frames_bgr(pydicom.dcmread(io.BytesIO(save(ds)))))


def test_palette_16_bit_index() -> None:
    index = pattern(2, 20, 30, maximum=4095, dtype=np.uint16)
    ds, rgb8 = palette_dataset(index, 16)
    frames, _ = read_all(io.BytesIO(save(ds)))
    np.testing.assert_array_equal(frames, bgr(rgb8[index]))


def test_segmented_palette() -> None:
    index = pattern(1, 16, 32)
    ds = new_dataset(index, "PALETTE COLOR")
    # each channel, 16-bit entries: a discrete segment (opcode 0) of one value, then a linear
    # segment (opcode 1) of 255 entries to its end value: 256 entries
    ends = {"Red": (0, 65535), "Green": (65535, 0), "Blue": (40 * 257, 200 * 257)}
    expected = np.zeros((256, 3), dtype=np.uint8)
    for channel, (colour, (start, end)) in enumerate(ends.items()):
        segments = np.array([0, 1, start, 1, 255, end], dtype="<u2")
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"Segmented{colour}PaletteColorLookupTableData", segments.tobytes())
        expected[:, channel] = np.round((start + (end - start) * np.arange(256) / 255) / 257)
    frames, _ = read_all(io.BytesIO(save(ds)))
    reference = pydicom_frames_bgr(pydicom.dcmread(io.BytesIO(save(ds))))
    np.testing.assert_array_equal(frames, reference)
    assert np.abs(frames.astype(int) - bgr(expected[index])).max() <= 1
    assert tuple(frames[0, 0, 0]) == (40, 255, 0)  # index 0: blue 40, green 255, red 0


# --- compressed ----------------------------------------------------------------------------

@pytest.mark.parametrize("ts", [uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless],
                         ids=lambda t: uid.UID(t).keyword)
@pytest.mark.parametrize("kind", ["grey8", "grey16", "rgb"])
def test_lossless_compression_decodes_to_the_pixels_written(ts: str, kind: str) -> None:
    shape = (3, 64, 80)  # JPEG 2000's default 6 resolution levels need 2**5 pixels a side
    if kind == "grey8":
        arr, photometric, expected = pattern(*shape), "MONOCHROME2", None
    elif kind == "grey16":
        arr = pattern(*shape, maximum=65535, dtype=np.uint16)
        photometric = "MONOCHROME2"
        expected = bgr(((arr.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8))
    else:
        arr, photometric, expected = pattern(*shape, 3), "RGB", None
    ds = compress(new_dataset(arr, photometric), ts)
    frames, stream = read_all(io.BytesIO(save(ds)))
    np.testing.assert_array_equal(frames, bgr(arr) if expected is None else expected)
    assert stream.facts["transfer_syntax"] == uid.UID(ts).name
    assert stream.probe.frame_count == 3


@pytest.mark.parametrize("photometric", ["YBR_RCT", "YBR_ICT"])
def test_jpeg_2000_with_colour_transform(photometric: str) -> None:
    rgb = pattern(2, 64, 80, 3)
    if photometric == "YBR_RCT":
        ds = compress(new_dataset(rgb, "RGB"), uid.JPEG2000Lossless)
    else:
        ds = compress(new_dataset(rgb, "RGB"), uid.JPEG2000, j2k_cr=[4])
    ds.PhotometricInterpretation = photometric  # the encoder applied the transform to RGB
    data = save(ds)
    frames, _ = read_all(io.BytesIO(data))
    np.testing.assert_array_equal(frames, pydicom_frames_bgr(pydicom.dcmread(io.BytesIO(data))))
    if photometric == "YBR_RCT":
        np.testing.assert_array_equal(frames, bgr(rgb))


def test_jpeg_ls_near_lossless_and_rle_ybr_full() -> None:
    rgb = pattern(2, 24, 32, 3)
    ds = compress(new_dataset(rgb, "RGB"), uid.JPEGLSNearLossless, jls_error=2)
    frames, _ = read_all(io.BytesIO(save(ds)))
    assert np.abs(frames.astype(int) - bgr(rgb)).max() <= 2
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds = compress(new_dataset(ybr, "YBR_FULL"), uid.RLELossless)
    data = save(ds)
    frames, _ = read_all(io.BytesIO(data))
    np.testing.assert_array_equal(frames, pydicom_frames_bgr(pydicom.dcmread(io.BytesIO(data))))


@pytest.mark.parametrize("ts_name", ["JPEGLosslessProcess14_1", "JPEGLosslessProcess14"])
@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_jpeg_lossless_decodes_to_the_pixels_written(ts_name: str, kind: str,
                                                     tmp_path: Path) -> None:
    arr = pattern(2, 24, 32, 3) if kind == "rgb" else pattern(2, 24, 32)
    ds = gdcm_transcode(new_dataset(arr, "RGB" if kind == "rgb" else "MONOCHROME2"), ts_name,
                        tmp_path)
    assert ds.file_meta.TransferSyntaxUID in uid.JPEGTransferSyntaxes
    frames, _ = read_all(io.BytesIO(save(ds)))
    np.testing.assert_array_equal(frames, bgr(arr))


def test_jpeg_extended_as_pydicom_decodes_it(tmp_path: Path) -> None:
    grey = pattern(2, 24, 32)
    ds = gdcm_transcode(new_dataset(grey, "MONOCHROME2"), "JPEGExtendedProcess2_4", tmp_path)
    assert ds.file_meta.TransferSyntaxUID == uid.JPEGExtended12Bit
    data = save(ds)
    frames, _ = read_all(io.BytesIO(data))
    np.testing.assert_array_equal(frames, pydicom_frames_bgr(pydicom.dcmread(io.BytesIO(data))))


JPEG_BASELINE_CASES = [
    ("YBR_FULL_422", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422),
    ("YBR_FULL_422", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
    ("YBR_FULL", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
    ("RGB", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),  # mislabelled, as some devices write it
    ("MONOCHROME2", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
    ("MONOCHROME1", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
]


def noisy_jpeg_file(photometric: str, sampling: int) -> bytes:
    rng = np.random.default_rng(5)
    grey = photometric.startswith("MONOCHROME")
    arr = pattern(4, 48, 64) if grey else pattern(4, 48, 64, 3)
    arr = np.clip(arr + rng.integers(-20, 20, arr.shape), 0, 255).astype(np.uint8)
    return save(jpeg_dataset(arr, photometric, sampling=sampling))


@pytest.mark.parametrize(("photometric", "sampling"), JPEG_BASELINE_CASES)
def test_jpeg_baseline_without_the_fast_path_is_pydicoms_decode(photometric: str,
                                                                sampling: int) -> None:
    data = noisy_jpeg_file(photometric, sampling)
    with DicomStream(io.BytesIO(data), fast_jpeg=False) as stream:
        frames = np.stack(list(stream))
    np.testing.assert_array_equal(frames, pydicom_frames_bgr(pydicom.dcmread(io.BytesIO(data))))


@pytest.mark.parametrize(("photometric", "sampling"), JPEG_BASELINE_CASES)
def test_jpeg_baseline_fast_path_is_within_one_level_of_pydicom(photometric: str,
                                                                sampling: int) -> None:
    """libjpeg-turbo's SIMD colour conversion rounds green 1 level off for a few pixels."""
    data = noisy_jpeg_file(photometric, sampling)
    frames, stream = read_all(io.BytesIO(data))
    diff = np.abs(frames.astype(int) - pydicom_frames_bgr(pydicom.dcmread(io.BytesIO(data))))
    assert stream.decoded == 4
    if photometric in ("RGB", "MONOCHROME1", "MONOCHROME2"):  # not converted by the fast path
        assert not diff.any()
    else:
        assert diff.max() <= 1 and (diff > 0).mean() < 0.001
        assert not diff[..., 0].any() and not diff[..., 2].any()  # blue and red exact


def dataset_start(data: bytes) -> int:
    """Offset of the dataset after the preamble and the file meta (its group length, 0002,0000,
    is the meta's first element)."""
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00"
    return 144 + struct.unpack_from("<L", data, 140)[0]


def test_frames_are_read_one_at_a_time() -> None:
    """The reader reads the header, then each frame's bytes only when that frame is asked for."""
    rgb = pattern(12, 64, 64, 3)
    frame_bytes = 64 * 64 * 3
    for data in (save(new_dataset(rgb, "RGB")),
                 save(compress(new_dataset(rgb, "RGB"), uid.RLELossless))):
        counting = CountingStream(data)
        stream = DicomStream(counting)  # type: ignore[arg-type]
        opened = counting.total  # header, sniff window, item headers: no frame
        assert opened < dataset_start(data) + 2 * SNIFF_BYTES + 16 * 14 < 2 * frame_bytes
        for index, _ in enumerate(stream, 1):
            assert counting.total <= opened + (index + 1) * (frame_bytes + 1024)  # 1 ahead
        assert stream.decoded == 12
        stream.check_complete()


# --- sources, completeness, frame rate -----------------------------------------------------

def test_path_stream_and_bytes_sources_agree(tmp_path: Path) -> None:
    data = save(new_dataset(pattern(3, 16, 16, 3), "RGB"))
    path = tmp_path / f"{NAME_MARKER}.dcm"
    path.write_bytes(data)
    a, _ = read_all(path)
    b, _ = read_all(io.BytesIO(data))
    c, _ = read_all(data)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    with path.open("rb") as handle:
        d, _ = read_all(handle)
        assert not handle.closed  # a caller's stream stays the caller's
    np.testing.assert_array_equal(a, d)


def test_check_complete_after_a_partial_or_no_iteration() -> None:
    data = save(new_dataset(pattern(5, 8, 8), "MONOCHROME2"))
    with DicomStream(io.BytesIO(data)) as stream, pytest.raises(NoFrames):
        stream.check_complete()
    with DicomStream(io.BytesIO(data)) as stream:
        for index, _ in enumerate(stream):
            if index == 2:
                break
        with pytest.raises(Truncated):
            stream.check_complete()


@pytest.mark.parametrize(("timing", "fps"), [
    ({"FrameTime": "40"}, 25.0),
    ({"CineRate": 30}, 30.0),
    ({"RecommendedDisplayFrameRate": 20}, 20.0),
    ({"FrameTime": "0", "CineRate": 15}, 15.0),
    ({"FrameTime": "33.3333", "CineRate": 12}, 1000 / 33.3333),
    ({}, 0.0),
])
def test_frame_rate_sources(timing: dict[str, object], fps: float) -> None:
    ds = new_dataset(pattern(2, 8, 8), "MONOCHROME2")
    for keyword, value in timing.items():
        setattr(ds, keyword, value)
    with DicomStream(io.BytesIO(save(ds))) as stream:
        assert stream.probe.fps == pytest.approx(fps)


def test_facts_hold_only_acquisition_facts() -> None:
    ds = new_dataset(pattern(2, 8, 8), "MONOCHROME2")
    ds.Manufacturer = "Acme\x00\x07 Echo" + "x" * 100
    with DicomStream(io.BytesIO(save(ds))) as stream:
        facts = stream.facts
    assert set(facts) == {"modality", "manufacturer", "manufacturer_model_name", "rows",
                          "columns", "frames", "photometric_interpretation",
                          "transfer_syntax", "bits_stored"}
    assert facts["manufacturer"] == "Acme Echo" + "x" * 55  # printable, at most 64 characters
    assert_private(str(facts))


# --- bad DICOM -----------------------------------------------------------------------------

def test_no_pixel_data_is_dicom_no_pixels() -> None:
    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    report.file_meta.MediaStorageSOPClassUID = uid.BasicTextSRStorage
    report.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    report.SOPClassUID = uid.BasicTextSRStorage
    report.SOPInstanceUID = report.file_meta.MediaStorageSOPInstanceUID
    report.Modality = "SR"
    report.PatientName = PHI_NAME
    report.PatientID = PHI_ID
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    assert is_dicom(io.BytesIO(buffer.getvalue()))
    assert_refused(buffer.getvalue(), DicomNoPixels)
    empty = new_dataset(pattern(1, 8, 8), "MONOCHROME2")
    empty.PixelData = b""
    assert_refused(save(empty), DicomNoPixels)


def test_an_image_cut_before_its_pixel_data_is_truncated() -> None:
    data = save(new_dataset(pattern(2, 16, 16), "MONOCHROME2"))
    assert_refused(data[: data.index(b"\xe0\x7f\x10\x00")], Truncated)


def test_unsupported_transfer_syntaxes_and_pixel_encodings() -> None:
    blob = bytes(range(256)) * 8
    for ts in (uid.MPEG4HP41, uid.HEVCMP51, "1.2.826.0.1.3680043.9.9999.1"):
        ds = new_dataset(pattern(2, 16, 16, 3), "YBR_PARTIAL_420", ts=ts)
        ds.PixelData = encapsulate([blob])
        assert_refused(save(ds), DicomUnsupportedSyntax)
    for attribute, value in (("BitsAllocated", 32), ("PhotometricInterpretation", "HSV"),
                             ("SamplesPerPixel", 4)):
        ds = new_dataset(pattern(1, 8, 8), "MONOCHROME2")
        setattr(ds, attribute, value)
        assert_refused(save(ds), DicomUnsupportedSyntax)
    floats = new_dataset(pattern(1, 8, 8), "MONOCHROME2")
    del floats.PixelData
    floats.BitsAllocated = 32
    floats.FloatPixelData = np.zeros(64, "<f4").tobytes()
    assert_refused(save(floats), DicomUnsupportedSyntax)
    ict = new_dataset(pattern(1, 8, 8, 3), "YBR_ICT")  # only JPEG 2000 may say YBR_ICT
    assert_refused(save(ict), DicomUnsupportedSyntax)


def test_12_bit_jpeg_extended_without_a_decoder_for_it_is_unsupported() -> None:
    from pydicom.pixels import get_decoder

    if "pylibjpeg" in get_decoder(uid.JPEGExtended12Bit)._available:
        pytest.skip("pylibjpeg-libjpeg is installed: 12-bit JPEG extended decodes")
    ds = new_dataset(pattern(1, 16, 16, maximum=4095, dtype=np.uint16), "MONOCHROME2",
                     bits_stored=12, ts=uid.JPEGExtended12Bit)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc1" + bytes(64) + b"\xff\xd9"])
    assert_refused(save(ds), DicomUnsupportedSyntax)


def test_uncompressed_pixel_data_cut_short_is_truncated() -> None:
    data = save(new_dataset(pattern(6, 32, 32, 3), "RGB"))
    assert_refused(data[: len(data) - 5000], Truncated)
    assert_refused(data[: len(data) - 1], Truncated)


def test_encapsulated_pixel_data_cut_or_missing_fragments_is_truncated() -> None:
    path = bundled("examples_ybr_color.dcm")
    data = path.read_bytes()
    assert_refused(data[: len(data) // 2], Truncated)  # inside a fragment
    assert_refused(data[: len(data) - 8], Truncated)  # the sequence delimiter is gone
    ds = pydicom.dcmread(path)
    jpegs = list(generate_frames(ds.PixelData, number_of_frames=30))
    ds.PixelData = encapsulate(jpegs[:29], has_bot=False)  # 29 fragments for 30 frames
    assert_refused(save(ds), Truncated)
    # the offset table lists 30 frames, the last fragment is missing
    full = encapsulate(jpegs, has_bot=True)
    table_bytes = 8 + 4 * 30
    without_last = encapsulate(jpegs[:29], has_bot=False)[8:]  # drop the empty table item
    ds.PixelData = full[:table_bytes] + without_last
    assert_refused(save(ds), Truncated)
    # a frame whose JPEG data ends early (its fragment is whole): refused while iterating
    ds.PixelData = encapsulate([jpegs[0][:-400], *jpegs[1:]])
    assert_refused(save(ds), Truncated, iterate=True)


def test_frame_count_that_disagrees_with_the_data_is_bad_geometry() -> None:
    ds = new_dataset(pattern(4, 16, 16, 3), "RGB")
    ds.NumberOfFrames = 5  # the data holds 4 frames: the file is whole but the header lies
    assert_refused(save(ds), DicomBadGeometry)
    ds.NumberOfFrames = 3  # a whole frame more than declared
    assert_refused(save(ds), DicomBadGeometry)
    for frames in (0, -2):
        bad = new_dataset(pattern(1, 8, 8), "MONOCHROME2")
        bad.NumberOfFrames = frames
        assert_refused(save(bad), DicomBadGeometry)
    path = bundled("examples_ybr_color.dcm")
    ds = pydicom.dcmread(path)
    jpegs = list(generate_frames(ds.PixelData, number_of_frames=30))
    ds.PixelData = encapsulate(jpegs, has_bot=True)
    ds.NumberOfFrames = 31  # the offset table has 30 entries
    assert_refused(save(ds), DicomBadGeometry)


@pytest.mark.parametrize(("name", "attribute", "value"), [
    ("examples_ybr_color.dcm", "Rows", 200),
    ("examples_ybr_color.dcm", "Columns", 400),
    ("examples_jpeg2k.dcm", "Rows", 400),
    ("examples_jpeg2k.dcm", "Columns", 700),
    ("examples_jpeg2k.dcm", "SamplesPerPixel", 1),
])
def test_rows_or_columns_that_disagree_with_compressed_frames(name: str, attribute: str,
                                                              value: int) -> None:
    ds = pydicom.dcmread(bundled(name))
    setattr(ds, attribute, value)
    if attribute == "SamplesPerPixel":
        ds.PhotometricInterpretation = "MONOCHROME2"
        del ds.PlanarConfiguration
    assert_refused(save(ds), DicomBadGeometry, iterate=True)


def test_geometry_that_disagrees_with_uncompressed_or_rle_data() -> None:
    ds = new_dataset(pattern(2, 16, 16), "MONOCHROME2")
    ds.Rows = 20  # more bytes per frame than there are
    assert_refused(save(ds), DicomBadGeometry)
    rle = compress(new_dataset(pattern(2, 16, 16), "MONOCHROME2"), uid.RLELossless)
    rle.SamplesPerPixel, rle.PhotometricInterpretation, rle.PlanarConfiguration = 3, "RGB", 0
    assert_refused(save(rle), DicomBadGeometry, iterate=True)
    for attribute in ("Rows", "Columns"):
        missing = new_dataset(pattern(1, 8, 8), "MONOCHROME2")
        delattr(missing, attribute)
        assert_refused(save(missing), DicomBadGeometry)


def test_declared_size_above_the_limits_is_too_large_before_any_pixel_is_read() -> None:
    ds = new_dataset(pattern(2, 128, 128), "MONOCHROME2")
    ds.Rows = ds.Columns = 4096  # 16.7 Mpx declared over 32 KiB of data
    data = save(ds)
    assert_refused(data, TooLarge)  # the limit, not the geometry mismatch, speaks first
    counting = CountingStream(data)
    with pytest.raises(TooLarge):
        DicomStream(counting)  # type: ignore[arg-type]
    assert counting.furthest <= dataset_start(data) + SNIFF_BYTES < len(data) // 4
    small = save(new_dataset(pattern(5, 16, 16), "MONOCHROME2"))
    assert_refused(small, TooLarge, limits=Limits(max_frames=4))
    assert_refused(small, TooLarge, limits=Limits(max_frame_pixels=255))
    with pytest.raises(TooLarge):
        DicomStream(io.BytesIO(small), Limits(max_file_bytes=1000), file_bytes=len(small))
    read_all(io.BytesIO(small), Limits(max_frames=5, max_frame_pixels=256))  # at the limits


def test_a_deflated_file_inflating_past_the_cap_is_too_large(monkeypatch) -> None:
    zeros = np.zeros((8, 128, 128, 3), np.uint8)  # 393 KiB that deflate to ~1 KiB
    data = save(new_dataset(zeros, "RGB", ts=uid.DeflatedExplicitVRLittleEndian))
    assert len(data) < 8192
    monkeypatch.setattr(dicom, "MAX_INFLATED_BYTES", 256 * 1024)
    assert_refused(data, TooLarge)
    monkeypatch.undo()
    frames, _ = read_all(io.BytesIO(data))
    assert frames.shape == (8, 128, 128, 3) and not frames.any()


def test_unparseable_files_are_unreadable_container() -> None:
    noise = np.random.default_rng(9).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert_refused(b"\0" * 128 + b"DICM" + noise, UnreadableContainer)
    assert_refused(noise, UnreadableContainer)
    ds = new_dataset(pattern(2, 16, 16), "MONOCHROME2", ts=uid.DeflatedExplicitVRLittleEndian)
    data = save(ds)
    meta_end = data.index(b"1.2.840.10008.1.2.1.99") + 22
    assert_refused(data[:meta_end] + noise, UnreadableContainer)  # not a deflate stream
    jpeg = jpeg_dataset(pattern(2, 16, 16, 3), "YBR_FULL_422",
                        sampling=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422)
    jpeg.PixelData = encapsulate([noise[:1000], noise[1000:2000]])  # no JPEG header
    assert_refused(save(jpeg), UnreadableContainer, iterate=True)


def test_errors_never_name_the_file(tmp_path: Path) -> None:
    data = save(new_dataset(pattern(3, 16, 16, 3), "RGB"))
    path = tmp_path / f"{NAME_MARKER}.dcm"
    path.write_bytes(data[: len(data) - 100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Truncated) as info:
            DicomStream(path)
        path.write_bytes(data[:300])
        with pytest.raises(InputError) as cut_header:
            DicomStream(path)
    assert_private(error_text(info.value))
    assert_private(error_text(cut_header.value))
    assert_private(" ".join(str(w.message) for w in caught))


def iter_bad_headers() -> Iterator[bytes]:
    """Header values of the wrong type or form where the reader looks."""
    for attribute, value in (("Rows", "ab"), ("FrameTime", "soon"), ("CineRate", "x"),
                             ("Manufacturer", b"\xff\xfe\x00")):
        ds = new_dataset(pattern(1, 8, 8), "MONOCHROME2")
        ds.add_new(tag_for_keyword(attribute), "UN" if isinstance(value, bytes) else "LO",
                   value)
        yield save(ds)


def test_header_values_of_the_wrong_form_never_crash_the_reader() -> None:
    for data in iter_bad_headers():
        try:
            with DicomStream(io.BytesIO(data)) as stream:
                list(stream)
        except InputError as err:
            assert_private(error_text(err))


def test_header_values_over_the_defer_size_are_skipped_not_read() -> None:
    """A private blob larger than HEADER_DEFER_BYTES (icons, raw data, overlays) is never
    loaded: the file reads, and its identifying values are still found."""
    ds = new_dataset(pattern(2, 16, 16), "MONOCHROME2")
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "OB", b"\0" * (dicom.HEADER_DEFER_BYTES + 2))
    counting = CountingStream(save(ds))
    with DicomStream(counting) as stream:  # type: ignore[arg-type]
        frames = np.stack(list(stream))
        assert counting.total < dicom.HEADER_DEFER_BYTES  # the blob was skipped
        assert PHI_NAME in stream.identifying_values and PHI_ID in stream.identifying_values
    np.testing.assert_array_equal(frames, bgr(pattern(2, 16, 16)))
