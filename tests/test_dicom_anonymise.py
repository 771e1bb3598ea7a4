"""DICOM end to end through ``radiomicsd anonymise`` and ``watch``, on the real ultrasound files
pydicom bundles: routed by content (FFmpeg never decodes them), frames as decoded, no header
value anywhere in outputs or logs, the image regions bounding the mask, and a refusal with a
reason where the live image is not certain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pngread import png_rgb

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

from radiomicsd.pipeline.dicom import DicomStream  # noqa: E402

FILES = ("examples_ybr_color.dcm", "examples_palette.dcm", "examples_jpeg2k.dcm",
         "examples_rgb_color.dcm", "ExplVR_BigEnd.dcm")
#: Header elements whose values identify a patient, a study or a site.
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName",
               "ReferringPhysicianName", "StudyDate", "SeriesDate", "AcquisitionDate",
               "ContentDate", "StudyTime", "AccessionNumber", "StudyID", "StudyInstanceUID",
               "SeriesInstanceUID", "SOPInstanceUID", "OperatorsName", "StationName")


def header_values(path: Path) -> set[str]:
    """The identifying values of a file's header, as text (parts of names too).

    A part that is also a word of the device's manufacturer or model name is left out (the
    manifest names the device by design, README "DICOM input"; the Philips frame's institution
    is "Philips Healthcare", its manufacturer "Philips Medical Systems"): the whole value is
    still looked for."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    device = {w for k in ("Manufacturer", "ManufacturerModelName")
              for w in str(ds.get(k, "") or "").split()}
    out: set[str] = set()
    for name in IDENTIFYING:
        value = str(ds.get(name, "") or "").strip()
        if len(value) >= 4:
            out.add(value)
            out.update(p for p in value.replace("^", " ").split()
                       if len(p) >= 4 and p not in device)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, radiomicsd):
    """All five files in one folder, anonymised once with --select all; (result, out, in)."""
    root = tmp_path_factory.mktemp("dicom")
    src = root / "in"
    src.mkdir()
    for name in FILES:
        # extensionless, as PACS exports often are: routing is by content
        (src / name.removesuffix(".dcm")).write_bytes(Path(get_testdata_file(name)).read_bytes())
    out = root / "out"
    res = radiomicsd("anonymise", "-i", src, "-o", out, "--state", root / "state", "--select",
                     "all", "--log-format", "json")
    return res, out, src


def outcomes(res) -> list[tuple[str, str]]:
    """(event, reason) of every video.* log line, sorted."""
    lines = [json.loads(ln) for ln in res.stderr.splitlines() if ln.startswith("{")]
    return sorted((e["event"], e.get("reason") or "") for e in lines
                  if e["event"].startswith("video."))


def test_every_file_is_exported_or_refused_with_a_reason(run):
    res, out, _ = run
    assert res.returncode == 1, res.stderr  # some are refused
    events = outcomes(res)
    assert len(events) == len(FILES)
    done = [e for e in events if e[0] == "video.done"]
    refused = [r for ev, r in events if ev == "video.failed"]
    # none has image regions that fit its frame (these are reduced copies whose regions were
    # written for the full-size originals): the detector alone decides, as for videos. The
    # SonoSite cine and the Philips and GE frames are exported; the 80x60 big-endian frame is
    # refused for review (tests/test_real_devices.py checks each outcome's pixels)
    assert len(done) == 4
    assert refused == ["needs_review"]
    assert len([p for p in out.iterdir() if not p.name.startswith(".")]) == 4


def test_a_jpeg_cine_is_decoded_by_the_dicom_reader_frame_for_frame(run):
    """FFmpeg used to read JPEG DICOM cines as MJPEG, dropping frames: now all 30, exact."""
    _, out, src = run
    [folder] = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")
                and json.loads((p / "manifest.json").read_text())["frames"] > 1]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["frames"] == manifest["frames_written"] == 30
    assert manifest["source"]["format"] == "dicom"
    assert manifest["source"]["transfer_syntax"] == "JPEG Baseline (Process 1)"
    assert manifest["masking"]["method"] == "auto(motion)+regions"  # its regions do not fit
    with DicomStream(src / "examples_ybr_color") as stream:
        for i, frame in enumerate(stream):
            written = png_rgb((folder / f"{i:06d}.png").read_bytes())
            kept = written.any(axis=2)
            # every kept pixel is exactly as decoded, in true RGB order
            np.testing.assert_array_equal(written[kept], frame[..., ::-1][kept])
    assert i == 29


def test_no_header_value_reaches_outputs_or_logs(run):
    res, out, src = run
    text = res.stdout + res.stderr
    text += "".join(p.read_text() for p in out.rglob("*.json"))
    text += " ".join(str(p.relative_to(out)) for p in out.rglob("*"))
    for name in FILES:
        for value in header_values(src / name.removesuffix(".dcm")):
            assert value not in text, f"a header value of {name} leaked"
        assert name.removesuffix(".dcm") not in text  # nor the input names


def test_the_mask_never_keeps_pixels_outside_image_regions_that_fit(tmp_path, radiomicsd):
    """The SonoSite cine with its 2D region scaled to this reduced copy (as the device wrote it
    for the full frame): the kept area stays inside it."""
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    region = ds.SequenceOfUltrasoundRegions[0]
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 42, 60
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 297, 207
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "cine")
    out = tmp_path / "out"
    res = radiomicsd("anonymise", "-i", src, "-o", out, "--state", tmp_path / "st", "--select",
                     "all")
    assert res.returncode == 0, res.stderr
    [folder] = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert "bounded" in json.loads((folder / "manifest.json").read_text())["masking"]["method"]
    with DicomStream(src / "cine") as stream:
        inside = stream.image_regions_mask()
    assert inside is not None and not inside[:60].any()
    for png in sorted(folder.glob("*.png")):
        written = png_rgb(png.read_bytes())
        assert written[inside].any() and not written[~inside].any()


def test_watch_exports_a_dicom_cine_and_quarantines_a_frame_for_review(daemon_factory):
    from daemon_helpers import drop_atomic

    d = daemon_factory(select="all")
    d.start()
    for name in ("examples_ybr_color.dcm", "ExplVR_BigEnd.dcm"):
        drop_atomic(Path(get_testdata_file(name)).read_bytes(), d.input / name)
    d.wait_event("video.done")
    d.wait_event("video.quarantined")
    assert d.stop() == 0
    assert [n["reason"] for n in d.quarantine_notes()] == ["needs_review"]
    [manifest] = d.outputs().values()
    assert manifest["frames"] == 30 and manifest["source"]["modality"] == "US"
    log = d.log_text()
    for name in ("examples_ybr_color.dcm", "ExplVR_BigEnd.dcm"):
        assert all(v not in log for v in header_values(Path(get_testdata_file(name))))
