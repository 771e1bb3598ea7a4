"""``image.dcm``: one de-identified DICOM instance per input, beside ``manifest.json``.

The masked frames are written losslessly as Explicit VR Little Endian, RGB, 8 bits, planar
configuration 0: the one encoding every PACS and viewer reads, written at disk speed, with
colour exactly as decoded (RLE or JPEG-LS would save space at an encoding cost per frame; not
offered yet). The header is the source's, de-identified by
:mod:`radiomicsd.pipeline.deid.dicom_header`, with its pixel description replaced; a video
becomes a Multi-frame True Color Secondary Capture instance of the ultrasound modality, its
UIDs keyed from the content digest.

Frames stream to a hidden raw file in the staging folder as they are masked; :meth:`finish`
writes the header, the pixel data element and the raw bytes (a kernel copy) into
``image.dcm`` and removes the raw file. Memory stays flat in the number of frames.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset

from radiomicsd import version
from radiomicsd.pipeline.deid.dicom_header import Deidentifier, keyed_uid
from radiomicsd.pipeline.deid.profile import ProfileSettings
from radiomicsd.pipeline.errors import OutputUnavailable

IMAGE = "image.dcm"
_RAW = ".image.raw"
#: This software's implementation class UID (2.25 form of a fixed random number).
IMPLEMENTATION_UID = "2.25.187166893398470216744309245815373312231"
#: Pixel description attributes of the source that no longer apply to the RGB frames written.
_SOURCE_PIXEL_ATTRS = (
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "PaletteColorLookupTableUID",
    "SmallestImagePixelValue", "LargestImagePixelValue", "PixelPaddingValue",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "WindowCenter", "WindowWidth",
    "RescaleIntercept", "RescaleSlope", "VOILUTSequence", "ModalityLUTSequence",
)


def _io_error(exc: OSError) -> OutputUnavailable:
    return OutputUnavailable(f"cannot write the DICOM output: {exc.strerror}")


class DicomWriter:
    """Writes ``image.dcm`` into the staging folder ``folder``.

    ``header``: the source DICOM header, or None for a video. ``digest``: the content digest
    (hex), which keys a video's UIDs and pseudonym.
    """

    def __init__(self, folder: Path, *, key: bytes, profile: ProfileSettings,
                 header: Dataset | None, digest: str, fps: float) -> None:
        self.folder = folder
        self.header = header
        patient = str(header.get("PatientID", "") or "") if header is not None else ""
        self.deid = Deidentifier(key=key, settings=profile,
                                 patient_id=patient or f"content:{digest}")
        self.digest = digest
        self.fps = fps
        self.shape: tuple[int, int] | None = None
        self.frames = 0
        try:
            self._raw: BinaryIO | None = open(folder / _RAW, "xb")  # noqa: SIM115
        except OSError as exc:
            raise _io_error(exc) from None

    def put(self, masked_bgr: NDArray[np.uint8]) -> None:
        """Append one masked uint8 BGR (H, W, 3) frame, as RGB."""
        assert self._raw is not None
        self.shape = (masked_bgr.shape[0], masked_bgr.shape[1])
        try:
            self._raw.write(cv2.cvtColor(masked_bgr, cv2.COLOR_BGR2RGB).data)
        except OSError as exc:
            raise _io_error(exc) from None
        self.frames += 1

    def finish(self) -> dict[str, Any]:
        """Write ``image.dcm``; returns the manifest's ``dicom`` entry (no UIDs, no values)."""
        assert self._raw is not None and self.shape is not None
        ds = self._dataset()
        head = io.BytesIO()
        pydicom.dcmwrite(head, ds, enforce_file_format=True)
        length = self.frames * self.shape[0] * self.shape[1] * 3
        pad = length % 2
        try:
            self._raw.write(b"\0" * pad)
            self._raw.close()
            self._raw = None
            with open(self.folder / IMAGE, "xb") as out, open(self.folder / _RAW, "rb") as raw:
                out.write(head.getvalue())
                out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, length + pad))
                out.flush()
                _copy(raw, out, length + pad)
            os.unlink(self.folder / _RAW)
        except OSError as exc:
            raise _io_error(exc) from None
        return {"file": IMAGE, "sop_class": uid.UID(ds.SOPClassUID).name,
                "transfer_syntax": uid.ExplicitVRLittleEndian.name,
                "profile": list(ds.DeidentificationMethod)[1:]}

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def _dataset(self) -> Dataset:
        assert self.shape is not None
        if self.header is not None:
            ds = self.deid.apply(self.header)
            for name in _SOURCE_PIXEL_ATTRS:
                if name in ds:
                    del ds[name]
            if "PatientOrientation" not in ds:  # Type 2C of the image; devices often omit it
                ds.PatientOrientation = None
        else:
            ds = self._video_dataset()
        rows, columns = self.shape
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        if "NumberOfFrames" in ds or self.header is None:
            ds.NumberOfFrames = self.frames
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        meta.ImplementationClassUID = uid.UID(IMPLEMENTATION_UID)
        meta.ImplementationVersionName = f"RADIOMICSD_{version()}"[:16]
        ds.file_meta = meta
        return ds

    def _video_dataset(self) -> Dataset:
        """A Multi-frame True Color SC instance for a video: keyed UIDs, empty Type 2."""
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = uid.MultiFrameTrueColorSecondaryCaptureImageStorage
        ds.SOPInstanceUID = uid.UID(keyed_uid(self.deid.key, f"instance:{self.digest}"))
        ds.StudyInstanceUID = uid.UID(keyed_uid(self.deid.key, f"study:{self.digest}"))
        ds.SeriesInstanceUID = uid.UID(keyed_uid(self.deid.key, f"series:{self.digest}"))
        ds.Modality = "US"
        ds.ConversionType = "DV"
        for name in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                     "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber",
                     "InstanceNumber", "PatientOrientation", "Laterality"):
            setattr(ds, name, None)
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = f"{1000.0 / self.fps:.3f}" if self.fps > 0 else "40.000"
        applied = self.deid.apply(Dataset())  # the patient pseudonym and the method stamps
        for element in applied:
            ds.add(element)
        return ds


def _copy(src: BinaryIO, dst: BinaryIO, length: int) -> None:
    """``length`` bytes from ``src`` to ``dst``'s end, in the kernel where it can."""
    left = length
    src_fd, dst_fd = src.fileno(), dst.fileno()
    offset_out = dst.tell()
    try:
        while left:
            n = os.copy_file_range(src_fd, dst_fd, left, offset_dst=offset_out)
            if n == 0:
                break
            left -= n
            offset_out += n
    except OSError:
        pass
    if left:  # not supported here, or it stopped short: the rest through user space
        src.seek(length - left)
        dst.seek(offset_out)
        while left:
            chunk = src.read(min(left, 1 << 22))
            if not chunk:
                raise OSError(5, "short read of the staged frames")
            dst.write(chunk)
            left -= len(chunk)
