"""Synthetic ultrasound DICOM files: the generator's echo clips as US cines and single frames.

:func:`write_dicom` renders a clip with :func:`radiomicsd.testing.synthetic.render_clip` (the
fan, the beating heart, Doppler colour, burned-in *fake* patient text) and writes it as an
Ultrasound Multi-frame Image (one frame: Ultrasound Image) with a header full of *fake* patient,
study and site values (:data:`FAKE_HEADER`, the burned-in name, ID, birth date and hospital
among them), frame timing, and a SequenceOfUltrasoundRegions: a 2D image region around the
sector (tight, or generous: reaching over the text column and the top band) and a graphics
region over the colour bar. It returns the truth (:class:`DicomInfo`): sector, text boxes,
every identifying value written, the regions, and the frames a correct reader must return.

Encodings (:data:`PHOTOMETRICS` per syntax, :func:`combinations`; pixel data written by
:mod:`.dicom_pixels`): implicit, explicit and
deflated explicit VR little endian (RGB planar 0 and 1, YBR_FULL, MONOCHROME2, PALETTE COLOR
with an 8-bit index into a 16-bit LUT), RLE lossless (pydicom's encoder), JPEG-LS lossless
(pyjpegls), JPEG 2000 lossless (pylibjpeg-openjpeg; RGB without and YBR_RCT with the colour
transform), JPEG baseline (OpenCV's libjpeg-turbo: YBR_FULL_422 with 4:2:2 sampling, YBR_FULL
4:4:4, MONOCHROME2). All samples are 8 bits. Frames are rendered, encoded and written one at a
time (an encapsulated file's offset table is filled in at the end): memory does not grow with
the number of frames.

Never used on the processing path. ``python -m radiomicsd.testing.dicom_writer OUT.dcm
--frames 120 --syntax jpeg-baseline --photometric YBR_FULL_422`` writes one file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence

from radiomicsd.testing.dicom_pixels import (
    NATIVE,
    bytes_per_frame,
    displayed,
    frame_encoder,
    pixel_module,
    stored_samples,
    write_encapsulated,
    write_native,
)
from radiomicsd.testing.dicom_pixels import PHOTOMETRICS as PHOTOMETRICS
from radiomicsd.testing.dicom_pixels import SYNTAXES as SYNTAXES
from radiomicsd.testing.dicom_pixels import check_combination as check_combination
from radiomicsd.testing.dicom_pixels import combinations as combinations
from radiomicsd.testing.synthetic import FAKE_HOSPITAL, ClipInfo, render_clip

#: Identifying header values written into every file (UIDs come on top, per file). Obviously
#: fake; the name, ID, birth date and hospital are those burned into the frames.
FAKE_HEADER: dict[str, str] = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "4711-0815-23",
    "PatientBirthDate": "20110405",
    "OtherPatientIDs": "FAKE-MRN-99812",
    "InstitutionName": FAKE_HOSPITAL,
    "InstitutionAddress": "1 FAKE STREET, NOWHERE TOWN",
    "InstitutionalDepartmentName": "FAKE CARDIOLOGY WARD 9",
    "ReferringPhysicianName": "FAKEREFERRER^DRHOUSE",
    "PerformingPhysicianName": "FAKEPERFORMER^DRWHO",
    "OperatorsName": "FAKESONOGRAPHER^ANNE",
    "StationName": "FAKE-STATION-7",
    "DeviceSerialNumber": "FAKE-SN-31337",
    "AccessionNumber": "FAKEACC4711",
    "StudyID": "FAKESTUDY42",
    "StudyDate": "20240229",
    "SeriesDate": "20240229",
    "AcquisitionDate": "20240229",
    "ContentDate": "20240229",
    "StudyTime": "094117",
    "SeriesTime": "094117",
    "ContentTime": "094117",
    "AcquisitionDateTime": "20240229094117",
}
#: Header keywords whose values are person names (their parts are identifying too).
_NAME_KEYWORDS = ("PatientName", "ReferringPhysicianName", "PerformingPhysicianName",
                  "OperatorsName")
MANUFACTURER = "radiomicsd synthetic"
MODEL_NAME = "SYNTH-ECHO 1"
#: RegionSpatialFormat 2D / graphics, RegionDataType tissue / colour bar (PS3.3 C.8.5.5.1).
SPATIAL_2D, SPATIAL_GRAPHICS = 0x0001, 0x0005
DATA_TISSUE, DATA_COLOUR_BAR = 0x0001, 0x000E


@dataclass(frozen=True)
class RegionBox:
    """One SequenceOfUltrasoundRegions item written, as a pixel box: ``x0, y0`` inclusive,
    ``x1, y1`` exclusive; RegionSpatialFormat and RegionDataType."""

    x0: int
    y0: int
    x1: int
    y1: int
    spatial_format: int
    data_type: int

    def item(self) -> Dataset:
        """The region's sequence item (DICOM's inclusive maxima)."""
        return region_item(self.x0, self.y0, self.x1 - 1, self.y1 - 1, self.spatial_format,
                           self.data_type)


def region_item(x0: int, y0: int, x1: int, y1: int, spatial_format: int, data_type: int, *,
                delta_cm: float = 0.03) -> Dataset:
    """A SequenceOfUltrasoundRegions item over pixels ``x0..x1`` x ``y0..y1``, **inclusive**
    as DICOM writes them; physical units cm, ``delta_cm`` per pixel (none for graphics)."""
    item = Dataset()
    item.RegionSpatialFormat = spatial_format
    item.RegionDataType = data_type
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    physical = spatial_format != SPATIAL_GRAPHICS
    item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = 3 if physical else 0
    item.PhysicalDeltaX = item.PhysicalDeltaY = delta_cm if physical else 0.0
    return item


def clip_regions(clip: ClipInfo, *, generous: bool = False,
                 bar: bool = True) -> tuple[RegionBox, ...]:
    """The regions of a generated clip: a 2D tissue region over the sector's bounding box
    (``generous``: widened to the frame's left and top edges, over the burned-in text column,
    the colour bar and the clock) and, for a Doppler clip with ``bar``, a graphics region over
    the colour bar (where :func:`~radiomicsd.testing.synthetic.render_clip` draws it)."""
    ys, xs = np.nonzero(clip.sector_mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    if generous:
        x0 = y0 = 0
    regions = [RegionBox(x0, y0, x1, y1, SPATIAL_2D, DATA_TISSUE)]
    if bar and clip.doppler:
        w, h = clip.size
        regions.append(RegionBox(4, int(0.3 * h), 4 + max(6, w // 60), int(0.6 * h),
                                 SPATIAL_GRAPHICS, DATA_COLOUR_BAR))
    return tuple(regions)


@dataclass
class DicomInfo:
    """Ground truth of a written file: the rendered clip (``clip``: sector, burned-in text
    boxes, size, fps), its encoding, every identifying header value written (``header``:
    keyword -> value, UIDs included) and the regions."""

    path: Path
    clip: ClipInfo
    syntax: str
    photometric: str
    planar: int
    header: dict[str, str]
    regions: tuple[RegionBox, ...]
    seed: int
    quality: int = 90

    @property
    def transfer_syntax(self) -> uid.UID:
        return SYNTAXES[self.syntax]

    @property
    def lossless(self) -> bool:
        """Whether a correct reader returns :meth:`expected_frames` exactly."""
        return self.syntax != "jpeg-baseline"

    @property
    def sector_mask(self) -> NDArray[np.bool_]:
        """Boolean (H, W) mask of the scan sector."""
        return self.clip.sector_mask

    @property
    def phi_boxes(self) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) boxes (exclusive ends) of the burned-in patient data."""
        return self.clip.phi_boxes

    def identifying_values(self) -> set[str]:
        """Header values no output may hold: each value, and each part of a person's name, of
        at least 4 characters."""
        values = {v for v in self.header.values() if len(v) >= 4}
        for keyword in _NAME_KEYWORDS:
            values.update(p for p in self.header[keyword].split("^") if len(p) >= 4)
        return values

    def expected_frames(self) -> Iterator[NDArray[np.uint8]]:
        """The frames a correct reader returns, BGR (H, W, 3), rendered again one at a time:
        exactly, when :attr:`lossless`; for JPEG baseline, what the encoder was given."""
        w, h = self.clip.size
        frames, _ = render_clip(self.clip.n_frames, (w, h), fps=self.clip.fps,
                                doppler=self.clip.doppler, view=self.clip.view, seed=self.seed)
        for frame in frames:
            if self.syntax == "jpeg-baseline":
                yield (frame if self.photometric != "MONOCHROME2"
                       else displayed(stored_samples(frame, "MONOCHROME2"), "MONOCHROME2"))
            else:
                yield displayed(stored_samples(frame, self.photometric), self.photometric)


def fake_header(*, seed: int, tag: str, frames: int, fps: float,
                regions: Iterable[RegionBox]) -> tuple[Dataset, dict[str, str]]:
    """Patient, study, series, equipment and US header of one file (no Image Pixel module)
    and its identifying values, UIDs included (derived from ``seed`` and ``tag``)."""
    values = dict(FAKE_HEADER)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        values[keyword] = uid.generate_uid(entropy_srcs=["radiomicsd", keyword, tag, str(seed)])
    ds = Dataset()
    ds.SOPClassUID = (uid.UltrasoundMultiFrameImageStorage if frames > 1
                      else uid.UltrasoundImageStorage)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.PatientSex, ds.PatientAge = "F", "012Y"
    ds.Modality = "US"
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, MODEL_NAME
    ds.SoftwareVersions = "1.0"
    ds.StudyDescription = "ECHO (SYNTHETIC)"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "0001"]
    ds.BodyPartExamined = "HEART"
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063  # FrameTime
        ds.FrameTime = f"{1000.0 / fps:.6g}"
        ds.CineRate = ds.RecommendedDisplayFrameRate = max(1, round(fps))
    items = [r.item() for r in regions]
    if items:
        ds.SequenceOfUltrasoundRegions = Sequence(items)
    return ds, values


def write_dicom(path: str | Path, *, frames: int = 30, size: tuple[int, int] = (640, 480),
                syntax: str = "explicit", photometric: str = "RGB", planar: int = 0,
                fps: float = 25.0, seed: int = 0, doppler: bool = True, view: str = "plax",
                regions: bool = True, generous_region: bool = False, bar_region: bool = True,
                quality: int = 90) -> DicomInfo:
    """Render a clip (see :func:`~radiomicsd.testing.synthetic.render_clip`) and write it to
    ``path`` as ultrasound DICOM; returns its :class:`DicomInfo`.

    Parameters
    ----------
    frames : number of frames; 1 writes an Ultrasound Image (no frame timing).
    size : (width, height) in pixels.
    syntax, photometric, planar : encoding, one of :func:`combinations`.
    fps : frames per second (FrameTime in ms, CineRate and RecommendedDisplayFrameRate).
    seed, doppler, view : passed on to the renderer; the seed also derives the UIDs.
    regions : write a SequenceOfUltrasoundRegions (see :func:`clip_regions` for
        ``generous_region`` and ``bar_region``).
    quality : JPEG baseline quality (1-100).
    """
    check_combination(syntax, photometric, planar)
    rendered, clip = render_clip(frames, size, fps=fps, doppler=doppler, view=view, seed=seed)
    boxes = clip_regions(clip, generous=generous_region, bar=bar_region) if regions else ()
    tag = f"{syntax}/{photometric}/{planar}/{size}/{frames}/{fps}/{doppler}/{view}"
    header, values = fake_header(seed=seed, tag=tag, frames=frames, fps=fps, regions=boxes)
    path = Path(path)
    write_frames(path, rendered, header=header, size=size, count=frames, syntax=syntax,
                 photometric=photometric, planar=planar, quality=quality)
    clip.path = path
    return DicomInfo(path, clip, syntax, photometric, planar, values, boxes, seed, quality)


def write_frames(path: Path, frames: Iterable[NDArray[np.uint8]], *, header: Dataset,
                 size: tuple[int, int], count: int, syntax: str, photometric: str,
                 planar: int = 0, quality: int = 90) -> None:
    """Write ``count`` BGR (H, W, 3) ``frames`` of ``size`` (width, height) under ``header``
    (any dataset without the Image Pixel module) to ``path``, one frame at a time."""
    check_combination(syntax, photometric, planar)
    if int(header.get("NumberOfFrames", 1)) != count:
        raise ValueError(f"the header's NumberOfFrames differs from count={count}")
    ds = Dataset()
    ds.update(header)
    pixel_module(ds, size=size, photometric=photometric, planar=planar)
    if syntax == "jpeg-baseline":
        ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = SYNTAXES[syntax]
    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, syntax == "implicit"
    write_dataset(body, ds)
    encode = frame_encoder(syntax, photometric, planar, size, quality)
    try:
        with open(path, "wb") as out:
            out.write(head.getvalue())
            if syntax in NATIVE:
                write_native(out, body.getvalue(), frames, encode, syntax=syntax,
                             frame_bytes=bytes_per_frame(size, photometric), count=count)
            else:
                out.write(body.getvalue())
                write_encapsulated(out, frames, encode, count=count)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# --- command line ----------------------------------------------------------------------------

def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit()):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, not {text!r}")
    return int(w), int(h)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m radiomicsd.testing.dicom_writer``."""
    parser = argparse.ArgumentParser(
        prog="python -m radiomicsd.testing.dicom_writer",
        description="Write one synthetic ultrasound DICOM file (a rendered echo clip with "
        "burned-in FAKE patient text and a FAKE patient header); prints its truth as JSON.",
        epilog="Encodings (syntax: photometric interpretations): " + "; ".join(
            f"{s}: {', '.join(p)}" for s, p in PHOTOMETRICS.items()))
    parser.add_argument("out", type=Path, help="file to write (written under a hidden name "
                        "and renamed into place)")
    parser.add_argument("--frames", type=int, default=30, help="frames (default 30)")
    parser.add_argument("--size", type=_size, default=(640, 480), metavar="WxH",
                        help="frame size in pixels (default 640x480)")
    parser.add_argument("--syntax", choices=sorted(SYNTAXES), default="explicit",
                        help="transfer syntax (default explicit VR little endian)")
    parser.add_argument("--photometric", default="RGB", help="photometric interpretation "
                        "(default RGB)")
    parser.add_argument("--planar", type=int, choices=(0, 1), default=0,
                        help="planar configuration of uncompressed colour (default 0)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="renderer seed (default 0)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--no-doppler", dest="doppler", action="store_false",
                        help="a B-mode clip without colour")
    parser.add_argument("--no-regions", dest="regions", action="store_false",
                        help="no SequenceOfUltrasoundRegions")
    parser.add_argument("--generous-region", action="store_true",
                        help="the 2D region reaches over the text column and the top band")
    parser.add_argument("--no-bar-region", dest="bar_region", action="store_false",
                        help="no graphics region over the colour bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Write one file; print its path, header values and regions as JSON."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".partial-{out.name}")
    try:
        info = write_dicom(partial, frames=args.frames, size=args.size, syntax=args.syntax,
                           photometric=args.photometric, planar=args.planar, fps=args.fps,
                           seed=args.seed, doppler=args.doppler, regions=args.regions,
                           generous_region=args.generous_region, bar_region=args.bar_region,
                           quality=args.quality)
        partial.replace(out)
    except (ValueError, RuntimeError) as exc:
        parser.exit(2, f"error: {exc}\n")
    finally:
        partial.unlink(missing_ok=True)
    print(json.dumps({"path": str(out), "transfer_syntax": str(info.transfer_syntax),
                      "photometric": info.photometric, "header": info.header,
                      "regions": [vars(r) for r in info.regions],
                      "phi_boxes": info.phi_boxes}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
