"""The synthetic DICOM writer (radiomicsd.testing.dicom_writer), read back by the project's
reader and by pydicom, and its files end to end through ``radiomicsd anonymise``.

Every syntax and photometric interpretation the writer offers must read back as the frames it
promises (lossless: exactly; JPEG baseline: close), with its frame rate and its ultrasound
regions; pydicom must read every file without a warning. Through the real CLI, no header value
(names, IDs, dates, institution, UIDs) may reach the output folder's bytes, the manifest or the
console, the burned-in text must be black in every PNG and the sector exactly as decoded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from conftest import REPO, SMALL, TEST_KEY
from pngread import png_rgb
from pydicom import uid
from pydicom.pixels import apply_color_lut

from radiomicsd.pipeline.dicom import DicomStream, Region
from radiomicsd.testing import dicom_pixels, dicom_writer
from radiomicsd.testing.dicom_writer import (
    DATA_COLOUR_BAR,
    FAKE_HEADER,
    SPATIAL_GRAPHICS,
    DicomInfo,
    combinations,
    write_dicom,
    write_frames,
)
from radiomicsd.testing.synthetic import FAKE_HOSPITAL, FAKE_PATIENT_LINES, render_clip

COMBINATIONS = combinations()


def combo_id(combo: tuple[str, str, int]) -> str:
    syntax, photometric, planar = combo
    return f"{syntax}-{photometric.replace(' ', '_')}" + ("-planar1" if planar else "")


def skip_without_encoder(syntax: str, photometric: str, planar: int) -> None:
    try:
        dicom_writer.check_combination(syntax, photometric, planar)
    except RuntimeError as exc:  # an optional encoder (pyjpegls, pylibjpeg-openjpeg) missing
        pytest.skip(str(exc))


def read_back(path: Path, **kw: bool) -> tuple[list[np.ndarray], DicomStream]:
    with DicomStream(path, **kw) as stream:
        frames = list(stream)
        stream.check_complete()
    return frames, stream


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def pydicom_bgr(ds: pydicom.Dataset) -> np.ndarray:
    """pydicom's own decode of every frame, (frames, rows, columns, 3) BGR."""
    arr = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        arr = ((apply_color_lut(arr, ds).astype(np.uint32) + 128) // 257).astype(np.uint8)
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        arr = arr[None]
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return np.ascontiguousarray(arr[..., ::-1])


# --- every encoding read back -----------------------------------------------------------------

@pytest.mark.parametrize("combo", COMBINATIONS, ids=combo_id)
def test_every_encoding_reads_back_as_written(combo: tuple[str, str, int],
                                              tmp_path: Path) -> None:
    syntax, photometric, planar = combo
    skip_without_encoder(*combo)
    info = write_dicom(tmp_path / "f.dcm", frames=3, size=SMALL, syntax=syntax,
                       photometric=photometric, planar=planar, seed=5)
    frames, stream = read_back(info.path)
    expected = list(info.expected_frames())
    assert len(frames) == stream.probe.frame_count == 3
    assert (stream.probe.width, stream.probe.height) == SMALL
    assert stream.probe.fps == pytest.approx(25.0)
    assert stream.facts["transfer_syntax"] == uid.UID(info.transfer_syntax).name
    assert stream.facts["photometric_interpretation"] == photometric
    assert stream.facts["modality"] == "US"
    for got, want in zip(frames, expected):
        if info.lossless:
            np.testing.assert_array_equal(got, want)
        else:  # JPEG baseline: close to what the encoder was given
            assert np.abs(got.astype(int) - want).mean() < 2.0
            assert psnr(got, want) > 35.0
    # pydicom reads the file without a warning, to the same pixels (JPEG: GDCM's decode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pydicom.dcmread(info.path)
        for element in ds.iterall():
            str(element)
        reference = pydicom_bgr(ds)
    exact, _ = read_back(info.path, fast_jpeg=False)
    np.testing.assert_array_equal(np.stack(exact), reference)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_RCT"])
def test_rgb_files_give_back_exactly_the_rendered_frames(photometric: str,
                                                         tmp_path: Path) -> None:
    syntaxes = ["jpeg2000"] if photometric == "YBR_RCT" else ["explicit", "rle", "jpeg2000"]
    rendered, _ = render_clip(2, SMALL, seed=8)
    originals = list(rendered)
    for syntax in syntaxes:
        skip_without_encoder(syntax, photometric, 0)
        info = write_dicom(tmp_path / f"{syntax}.dcm", frames=2, size=SMALL, syntax=syntax,
                           photometric=photometric, seed=8)
        frames, _ = read_back(info.path)
        np.testing.assert_array_equal(np.stack(frames), np.stack(originals))


def test_converted_encodings_stay_close_to_the_rendered_frames() -> None:
    """YBR_FULL rounds by at most 1 level; the palette keeps the sector's greys and flow
    colours within 1 level; MONOCHROME2 is the BT.601 grey."""
    rendered, clip = render_clip(2, SMALL, seed=9)
    sector = clip.sector_mask
    for frame in rendered:
        for photometric, where, limit in (("YBR_FULL", slice(None), 1),
                                          ("PALETTE COLOR", sector, 1)):
            shown = dicom_pixels.displayed(dicom_pixels.stored_samples(frame, photometric),
                                           photometric)
            assert np.abs(shown.astype(int) - frame)[where].max() <= limit, photometric
        grey = dicom_pixels.displayed(dicom_pixels.stored_samples(frame, "MONOCHROME2"),
                                      "MONOCHROME2")
        np.testing.assert_array_equal(grey[..., 0], cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))


# --- frame timing, SOP classes, regions, header ----------------------------------------------

def test_frame_rate_and_sop_class(tmp_path: Path) -> None:
    cine = write_dicom(tmp_path / "cine.dcm", frames=4, size=SMALL, fps=30.0)
    ds = pydicom.dcmread(cine.path, stop_before_pixels=True)
    assert ds.SOPClassUID == uid.UltrasoundMultiFrameImageStorage
    assert float(ds.FrameTime) == pytest.approx(1000 / 30, rel=1e-5)
    assert ds.CineRate == 30 and ds.NumberOfFrames == 4
    _, stream = read_back(cine.path)
    assert stream.probe.fps == pytest.approx(30.0, rel=1e-5)
    single = write_dicom(tmp_path / "one.dcm", frames=1, size=SMALL, syntax="jpeg-baseline",
                         photometric="YBR_FULL_422")
    ds = pydicom.dcmread(single.path, stop_before_pixels=True)
    assert ds.SOPClassUID == uid.UltrasoundImageStorage
    assert "NumberOfFrames" not in ds and "FrameTime" not in ds
    frames, stream = read_back(single.path)
    assert len(frames) == 1 and stream.probe.fps == 0.0


@pytest.mark.parametrize("generous", [False, True])
def test_regions_read_back_and_bound_the_sector(generous: bool, tmp_path: Path) -> None:
    info = write_dicom(tmp_path / "r.dcm", frames=2, size=SMALL, generous_region=generous)
    frames, stream = read_back(info.path)
    assert stream.regions == tuple(Region(r.x0, r.y0, r.x1, r.y1, r.spatial_format,
                                          r.data_type) for r in info.regions)
    image, bar = info.regions
    mask = stream.image_regions_mask()
    assert mask is not None and mask[info.sector_mask].all()
    ys, xs = np.nonzero(info.sector_mask)
    if generous:  # over the burned-in text column and the top band
        assert (image.x0, image.y0) == (0, 0)
        assert all(mask[max(0, y0):y1, max(0, x0):x1].any() for x0, y0, x1, y1 in info.phi_boxes)
    else:  # the sector's bounding box exactly
        assert (image.x0, image.y0, image.x1, image.y1) == (xs.min(), ys.min(), xs.max() + 1,
                                                            ys.max() + 1)
    # the graphics region lies over the colour bar, which is colour (not grey) throughout
    assert (bar.spatial_format, bar.data_type) == (SPATIAL_GRAPHICS, DATA_COLOUR_BAR)
    patch = frames[0][bar.y0:bar.y1, bar.x0:bar.x1].astype(int)
    assert (patch.max(axis=2) - patch.min(axis=2) > 0).all()
    assert not info.sector_mask[bar.y0:bar.y1, bar.x0:bar.x1].any()


def test_regions_left_out(tmp_path: Path) -> None:
    bare = write_dicom(tmp_path / "bare.dcm", frames=2, size=SMALL, regions=False)
    bmode = write_dicom(tmp_path / "bmode.dcm", frames=2, size=SMALL, doppler=False)
    assert bare.regions == () and read_back(bare.path)[1].regions == ()
    assert [r.spatial_format for r in bmode.regions] == [1]  # no colour bar, no bar region


def test_header_holds_the_fake_values_burned_into_the_frames(tmp_path: Path) -> None:
    info = write_dicom(tmp_path / "h.dcm", frames=2, size=SMALL, syntax="implicit")
    ds = pydicom.dcmread(info.path, stop_before_pixels=True)
    for keyword, value in info.header.items():
        assert str(ds.get(keyword)) == value, keyword
    assert set(FAKE_HEADER) < set(info.header)
    assert {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"} < set(info.header)
    assert ds.file_meta.MediaStorageSOPInstanceUID == info.header["SOPInstanceUID"]
    name, patient_id, birth = (line.split(": ", 1)[1] for line in FAKE_PATIENT_LINES)
    assert str(ds.PatientName) == name.replace(" ", "^") and ds.PatientID == patient_id
    assert ds.PatientBirthDate == birth.replace("-", "") and ds.InstitutionName == FAKE_HOSPITAL
    assert {"DOE^JANE^Q", "JANE", "20110405", FAKE_HOSPITAL} <= info.identifying_values()
    # same options, same bytes; another seed, other UIDs
    again = write_dicom(tmp_path / "h2.dcm", frames=2, size=SMALL, syntax="implicit")
    other = write_dicom(tmp_path / "h3.dcm", frames=2, size=SMALL, syntax="implicit", seed=1)
    assert again.path.read_bytes() == info.path.read_bytes()
    assert other.header["SOPInstanceUID"] != info.header["SOPInstanceUID"]


# --- streaming, refusals, command line ---------------------------------------------------------

@pytest.mark.parametrize("syntax", ["explicit", "deflated", "jpeg-baseline"])
def test_memory_does_not_grow_with_the_frame_count(syntax: str, tmp_path: Path) -> None:
    photometric = "YBR_FULL_422" if syntax == "jpeg-baseline" else "RGB"
    write_dicom(tmp_path / "warm.dcm", frames=2, size=SMALL, syntax=syntax,
                photometric=photometric)
    peaks = []
    for n in (4, 24):
        tracemalloc.start()
        try:
            write_dicom(tmp_path / f"{n}.dcm", frames=n, size=SMALL, syntax=syntax,
                        photometric=photometric)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    frame_bytes = SMALL[0] * SMALL[1] * 3
    assert peaks[1] < peaks[0] + 2 * frame_bytes, peaks  # 20 more frames held would be 20x


def test_bad_combinations_and_frame_counts_are_refused(tmp_path: Path) -> None:
    for syntax, photometric, planar in (("jpeg-baseline", "RGB", 0), ("rle", "YBR_RCT", 0),
                                        ("explicit", "MONOCHROME2", 1), ("rle", "RGB", 1),
                                        ("mpeg4", "RGB", 0)):
        with pytest.raises(ValueError):
            write_dicom(tmp_path / "x.dcm", frames=1, size=SMALL, syntax=syntax,
                        photometric=photometric, planar=planar)
        assert not (tmp_path / "x.dcm").exists()
    header, _ = dicom_writer.fake_header(seed=0, tag="t", frames=3, fps=25.0, regions=())
    for syntax, photometric in (("explicit", "RGB"), ("jpeg-baseline", "YBR_FULL")):
        path = tmp_path / f"short-{syntax}.dcm"
        with pytest.raises(ValueError, match="2 frames, 3 declared"):
            write_frames(path, render_clip(2, SMALL)[0], header=header, size=SMALL, count=3,
                         syntax=syntax, photometric=photometric)
        assert not path.exists()  # no half-written file is left


def test_command_line_writes_a_file_and_prints_its_truth(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "cine.dcm"
    cmd = [sys.executable, "-m", "radiomicsd.testing.dicom_writer", str(out), "--frames", "3",
           "--size", "400x240", "--syntax", "jpeg-baseline", "--photometric", "YBR_FULL_422",
           "--generous-region"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["header"]["PatientID"] == FAKE_HEADER["PatientID"]
    assert doc["regions"][0]["x0"] == 0 and len(doc["regions"]) == 2
    assert [p.name for p in out.parent.iterdir()] == ["cine.dcm"]  # no partial file left
    frames, stream = read_back(out)
    assert len(frames) == 3 and stream.facts["photometric_interpretation"] == "YBR_FULL_422"
    bad = subprocess.run(cmd[:4] + ["--syntax", "rle", "--photometric", "YBR_FULL_422"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "YBR_FULL_422" in bad.stderr


# --- end to end through radiomicsd anonymise -----------------------------------------------------

CASES = {  # name: write_dicom options
    "rgb_regions": {"syntax": "explicit", "photometric": "RGB", "seed": 21},
    "rgb_generous_planar": {"syntax": "implicit", "photometric": "RGB", "planar": 1,
                            "generous_region": True, "seed": 22},
    "jpeg_422": {"syntax": "jpeg-baseline", "photometric": "YBR_FULL_422", "seed": 23},
}


def expected_pseudonym(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return hmac.new(bytes.fromhex(TEST_KEY), digest, hashlib.sha256).hexdigest()[:32]


@pytest.fixture(scope="module")
def anonymised(tmp_path_factory, radiomicsd):
    """The three files in one input folder, anonymised once; (infos, out, result)."""
    root = tmp_path_factory.mktemp("dicom_writer_e2e")
    src = root / "in"
    src.mkdir()
    infos = {name: write_dicom(src / name, frames=12, size=SMALL, **options)
             for name, options in CASES.items()}
    out = root / "out"
    res = radiomicsd("anonymise", "-i", src, "-o", out, "--state", root / "state")
    return infos, out, res


def test_every_file_is_exported(anonymised) -> None:
    infos, out, res = anonymised
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        expected_pseudonym(info.path) for info in infos.values())
    for info in infos.values():
        manifest = json.loads((out / expected_pseudonym(info.path) / "manifest.json")
                              .read_text())
        assert manifest["frames"] == manifest["frames_written"] == 12
        assert manifest["fps"] == pytest.approx(25.0)
        assert manifest["source"]["format"] == "dicom"
        assert manifest["source"]["photometric_interpretation"] == info.photometric
        assert "bounded" in manifest["masking"]["method"]  # the image region bounds the mask


def test_no_header_value_reaches_outputs_manifest_or_console(anonymised) -> None:
    infos, out, res = anonymised
    blobs = [res.stdout.encode(), res.stderr.encode()]
    blobs += [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    blobs += [str(p.relative_to(out)).encode() for p in out.rglob("*")]
    secrets = set().union(*(info.identifying_values() for info in infos.values()))
    assert {"DOE^JANE^Q", "4711-0815-23", "20110405", FAKE_HOSPITAL,
            "20240229"} <= secrets
    assert all(info.header["SOPInstanceUID"] in secrets for info in infos.values())
    for secret in secrets:
        needle = secret.encode()
        assert not any(needle in blob for blob in blobs), f"header value leaked: {secret!r}"
    for name in CASES:
        assert name not in res.stdout + res.stderr  # nor the input names


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_is_black_and_the_sector_exactly_as_decoded(anonymised, name: str) -> None:
    infos, out, _ = anonymised
    info: DicomInfo = infos[name]
    folder = out / expected_pseudonym(info.path)
    w, h = info.clip.size
    phi = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in info.phi_boxes:
        phi[max(0, y0):y1, max(0, x0):x1] = True
    sector = info.sector_mask
    assert not (phi & sector).any()
    far = cv2.dilate(sector.astype(np.uint8), np.ones((17, 17), np.uint8)) == 0
    with DicomStream(info.path) as stream:
        for i, decoded in enumerate(stream):
            written = png_rgb((folder / f"{i:06d}.png").read_bytes())[..., ::-1]
            assert not written[phi].any(), f"burned-in text survives in frame {i}"
            assert not written[far].any(), f"pixels far outside the sector survive in {i}"
            np.testing.assert_array_equal(written[sector], decoded[sector])
    assert i == 11
