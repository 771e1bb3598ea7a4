"""Verify before commit: Tesseract over the kept area of masked frames (pipeline/deid/verify.py).

The engine is real (tesserocr with Debian's English model, installed by ``make``); the frames are
the generator's clips and pydicom's SonoSite cine. The check must refuse what the mask let
through when it reads as patient data, pass clean masked frames, and say what it found by kind
only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from test_anonymise import outputs, summary

from radiomicsd.pipeline.deid.mask import Mask, build_mask
from radiomicsd.pipeline.deid.verify import (
    READ_BORDER,
    OcrMode,
    ResidualText,
    Sampler,
    Verifier,
    VerifySettings,
    engine_available,
    findings,
    header_tokens,
    sample_starts,
    text_lines,
)
from radiomicsd.pipeline.dicom import DicomStream
from radiomicsd.pipeline.errors import ConfigError
from radiomicsd.testing.synthetic import FAKE_PATIENT_LINES, render_clip

#: Skipped without the engine, except in CI, where `make` installs it and a skip would hide that.
needs_engine = pytest.mark.skipif(
    not engine_available(VerifySettings()) and not os.environ.get("CI"),
    reason="Tesseract not installed (make installs it)")
HEADER = ("DOE^JANE^Q", "4711-0815-23", "20110405", "ST. EXAMPLE HOSPITAL")


@pytest.mark.parametrize("text, kinds", [
    ("DOB 2011-04-05", {"date", "digits"}), ("05/04/2011", {"date", "digits"}),
    ("5.4.11", {"date"}), ("12 MAR 2019", {"date"}), ("09:41", {"time"}),
    ("09:41:00", {"time"}), ("ID 4711-0815 23", {"digits"}), ("4711081523", {"digits"}),
    ("", set()), ("MI 0.7 TIS 0.4", set()), ("52Hz 2.5MHz", set()), ("10 cm", set()),
    ("0.45", set()), ("Gen THI Crd", set()), ("PLA 19", set()),
])
def test_phi_patterns(text, kinds):
    assert findings(text, set()) == kinds


@pytest.mark.parametrize("text, found", [
    ("NAME DOE JANE", True), ("ST EXAMPLE HOSPITAL", True), ("DOB 20110405", True),
    ("doe", True), ("DOES", False), ("JAN", False), ("Q", False), ("HOSP", False),
])
def test_header_values(text, found):
    assert ("header" in findings(text, header_tokens(HEADER))) is found


def test_header_tokens_skip_short_and_keep_long_digits():
    tokens = header_tokens(["DOE^JO", "12", "120850", "Müller"])
    assert tokens == {"DOE", "120850", "MULLER"}


def test_sample_windows_spread_over_the_clip():
    s = VerifySettings(samples=3, window=8)
    assert sample_starts(150, s) == [0, 71, 142]
    assert sample_starts(5, s) == [0]
    assert sample_starts(16, s) == [0, 8]
    sampler = Sampler(30, s)
    frames = [np.full((4, 4, 3), 200 - i, np.uint8) for i in range(30)]
    frames[3][0, 0] = (0, 0, 255)
    for i, f in enumerate(frames):
        f[2, 2] = (0, 0, 230)  # static red type counts as bright
        f[3, 3] = (0, 0, 250) if i % 2 else (250, 0, 0)  # colour flow flickering red/blue
    for f in frames:
        sampler.feed(f)
    samples = sampler.finish()
    assert [int(x[1, 1]) for x in samples] == [193, 182, 171]  # minimum of each 8-frame window
    assert samples[0][0, 0] == 193  # the red pixel is 255 in frame 3, the minimum is frame 7's
    assert [int(x[2, 2]) for x in samples] == [230] * 3
    assert [int(x[3, 3]) for x in samples] == [0] * 3  # each channel is dark in half the frames


def test_samples_are_cut_to_the_kept_box_and_its_read_border():
    s = VerifySettings(samples=2, window=4)
    rng = np.random.default_rng(0)
    keep = np.zeros((120, 160), np.uint8)
    keep[40:70, 50:90] = 255
    frames = [cv2.bitwise_and(f, cv2.merge([keep] * 3)) for f in
              rng.integers(0, 256, (12, 120, 160, 3), dtype=np.uint8)]
    whole, cut = Sampler(12, s), Sampler(12, s, keep=keep)
    for f in frames:
        whole.feed(f)
        cut.feed(f)
    b = READ_BORDER
    box = (slice(40 - b, 70 + b), slice(50 - b, 90 + b))
    assert [c.shape for c in cut.finish()] == [(30 + 2 * b, 40 + 2 * b)] * 2
    assert all((c == w[box]).all() for c, w in zip(cut.samples, whole.finish()))


def test_yaml_off_is_off(tmp_path):
    from radiomicsd.daemon.settings import load_settings

    path = tmp_path / "c.yml"
    path.write_text("verify:\n  ocr: off\n")
    assert load_settings(path).verify.ocr is OcrMode.OFF


def _masked_samples(frames, mask: Mask, overlay=None):
    sampler = Sampler(len(frames), VerifySettings())
    for frame in frames:
        masked = mask.apply(frame.copy())
        if overlay is not None:
            overlay(masked)
        sampler.feed(masked)
    return sampler.finish()


@pytest.fixture(scope="module")
def verifier():
    return Verifier(VerifySettings())


@pytest.fixture(scope="module", params=[1, 2])
def clip(request):
    frames, info = render_clip(30, (640, 480), seed=request.param)
    frames = list(frames)
    return frames, info, build_mask(frames[:16])


@needs_engine
def test_clean_masked_clip_passes(verifier, clip):
    frames, _, mask = clip
    verifier.check(_masked_samples(frames, mask), HEADER)


@needs_engine
def test_unmasked_burned_in_text_is_refused(verifier, clip):
    """A mask that keeps everything (e.g. a wrong profile): the check reads the patient lines."""
    frames, _, mask = clip
    keep_all = Mask(np.full_like(mask.keep, 255), "keep-all")
    with pytest.raises(ResidualText) as caught:
        verifier.check(_masked_samples(frames, keep_all), HEADER)
    assert caught.value.reason == "residual_text"
    detail = str(caught.value)
    assert {"date", "digits", "header"} <= set(detail.split(" as ")[1].split(", "))
    for line in FAKE_PATIENT_LINES:  # kinds only, never the text
        for word in line.replace(":", " ").split():
            assert word not in detail


@needs_engine
@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 255, 255), (190, 190, 190)])
def test_text_typed_over_the_image_is_refused(verifier, clip, colour):
    """Annotations typed over the speckle, in white, yellow and grey, at a small type size.

    Low in the fan, over speckle only: the check does not read type that touches bright flat
    structures (its stroke finder merges them; higher rows cross the phantom's chambers). Text
    over the image is first the detector's to black out (pipeline/deid/glyphs.py)."""
    frames, _, mask = clip
    ys, xs = np.nonzero(mask.keep)
    x, y = int(xs.mean()) - 60, int(np.percentile(ys, 80))

    def overlay(frame):
        cv2.putText(frame, "05/04/2011", (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                    cv2.LINE_AA)

    with pytest.raises(ResidualText, match="date|digits"):
        verifier.check(_masked_samples(frames, mask, overlay))


@needs_engine
def test_page_is_read_light_on_dark_after_line_reads(verifier):
    """Line crops are read without Tesseract's inverted second try (they are dark on light by
    construction); the whole page after them still is read both ways: bold light type on a
    dark ground, which no line crop holds (its strokes are wider than the top-hat), reads."""
    page = np.zeros((240, 640), np.uint8)
    cv2.putText(page, "05/04/2011", (40, 150), cv2.FONT_HERSHEY_SIMPLEX, 2.2, 255, 9,
                cv2.LINE_AA)
    assert text_lines(page, limit=24) == []
    line = np.full((60, 300), 255, np.uint8)
    cv2.putText(line, "MI 0.7", (10, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 2, cv2.LINE_AA)
    assert verifier.read(255 - line)[1:]  # a line crop was read on the same engine
    whole, *lines = verifier.read(page)
    assert lines == [] and "date" in findings(whole, set())


@needs_engine
def test_real_sonosite_cine_passes_masked(verifier):
    """pydicom's SonoSite cine, masked: the live image reads as nothing."""
    with DicomStream(get_testdata_file("examples_ybr_color.dcm")) as video:
        frames = list(video)
        values = video.identifying_values
    assert values  # its header has dates, times and a station name
    verifier.check(_masked_samples(frames, build_mask(frames[:16])), values)


def test_required_without_engine_is_a_config_error(tmp_path):
    from radiomicsd.pipeline.deid.verify import check_engine

    settings = VerifySettings(ocr=OcrMode.REQUIRED, tessdata=tmp_path)
    with pytest.raises(ConfigError, match="required"):
        check_engine(settings)
    assert check_engine(VerifySettings(ocr=OcrMode.AUTO, tessdata=tmp_path)) is False


def test_required_without_engine_stops_the_cli(radiomicsd, clip_factory, tmp_path):
    info = clip_factory("clip.avi", 4)
    config = tmp_path / "c.yml"
    config.write_text(f"verify:\n  ocr: required\n  tessdata: {tmp_path}\n")
    proc = radiomicsd("anonymise", "-c", config, "-i", info.path.parent, "-o", tmp_path / "out",
                      "--state", tmp_path / "state")
    assert proc.returncode == 2 and "verify.ocr is required" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@needs_engine
def test_cli_refuses_text_a_regions_mask_lets_through(radiomicsd, clip_factory, tmp_path):
    """The operator's boxes miss the patient lines: the clip is refused, nothing is written."""
    info = clip_factory("clip.avi", 12, (640, 480), fourcc="FFV1")
    config = tmp_path / "c.yml"
    config.write_text("select: all\nmask:\n  method: regions\n  allow_text_outside_regions: true\n"
                      "  regions: [{box: [0, 0, 4, 4], unit: pixels}]\n")
    proc = radiomicsd("anonymise", "-c", config, "-i", info.path.parent, "-o", tmp_path / "out",
                      "--state", tmp_path / "state")
    assert summary(proc.stdout)[("failed", "residual_text")] == 1, proc.stdout + proc.stderr
    assert outputs(tmp_path / "out") == []
    for line in FAKE_PATIENT_LINES:
        assert line not in proc.stdout + proc.stderr


@needs_engine
@pytest.mark.parametrize("ocr", ["auto", "off"])
def test_manifest_says_whether_the_check_ran(radiomicsd, clip_factory, tmp_path, ocr):
    info = clip_factory("clip.avi", 12, (640, 480), fourcc="FFV1")
    config = tmp_path / "c.yml"
    config.write_text(f"select: all\nverify:\n  ocr: {ocr}\n")
    proc = radiomicsd("anonymise", "-c", config, "-i", info.path.parent, "-o", tmp_path / "out",
                      "--state", tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    (folder,) = outputs(tmp_path / "out")
    manifest = json.loads(Path(folder, "manifest.json").read_text())
    if ocr == "off":
        assert manifest["verification"] == {"ocr": "off"}
        assert manifest["timing"]["verify_seconds"] == 0
    else:
        assert manifest["verification"]["ocr"].startswith("tesseract 5")
        assert manifest["verification"]["samples"] == 1  # 12 frames: one 8-frame window
        assert manifest["timing"]["verify_seconds"] > 0
