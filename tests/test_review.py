"""needs_review end to end: quarantine with the proposed mask and a preview, ``radiomicsd
review`` list / show / approve / reject, approvals and device profiles (daemon/review.py,
daemon/pins.py, pipeline/deid/preview.py), against a real daemon on pydicom's GE frames.

pydicom's two GE LOGIQ 700 frames have no ultrasound regions, so the daemon refuses them as
``needs_review``. One is approved as proposed (with a device profile); the other is approved
with a mask that keeps the whole frame, which the OCR check catches: an approval never
bypasses it.
"""

from __future__ import annotations

import io
import json
import shutil

import cv2
import numpy as np
import pydicom
import pytest
from daemon_helpers import wait_until
from pydicom.data import get_testdata_file
from test_verify import needs_engine

from radiomicsd.daemon.pins import Pins, profile_key
from radiomicsd.pipeline.deid.preview import block_size, decode_mask, encode_png, preview
from radiomicsd.pipeline.deid.verify import Verifier, VerifySettings, findings, header_tokens
from radiomicsd.pipeline.dicom import DicomStream
from radiomicsd.testing.synthetic import render_clip

GE_BIG, GE_SMALL = "examples_jpeg2k.dcm", "examples_rgb_color.dcm"


@needs_engine
def test_preview_text_is_illegible_layout_kept():
    """A preview of a frame whose mask keeps everything: the OCR reads no patient data."""
    frames, info = render_clip(2, (640, 480), seed=4)
    frame = next(frames)
    keep = np.zeros(frame.shape[:2], np.uint8)
    keep[:, :] = 255
    image = preview(frame, keep)
    assert image.shape == frame.shape and block_size((480, 640)) == 8
    verifier = Verifier(VerifySettings())
    grey = image.max(axis=2)
    texts = verifier.read(grey)
    assert not set().union(*(findings(t, header_tokens(["DOE^JANE"])) for t in texts))
    # and the same reader does find the text on the frame itself (the check can fail)
    assert set().union(*(findings(t, header_tokens(["DOE^JANE"])) for t in
                         verifier.read(frame.max(axis=2))))


def test_preview_dims_outside_and_outlines_the_kept_area():
    frame = np.full((240, 320, 3), 90, np.uint8)
    keep = np.zeros((240, 320), np.uint8)
    keep[60:180, 80:240] = 255
    image = preview(frame, keep)
    assert (image[10, 10] == 30).all() and (image[120, 160] == 90).all()
    assert (image[60, 160] == (0, 255, 0)).all()  # the outline


def test_pins_match_dicom_device_and_video_size(tmp_path):
    pins = Pins(tmp_path)
    keep = np.zeros((480, 640), np.uint8)
    keep[100:400, 100:500] = 255
    facts = {"format": "dicom", "manufacturer": "ACME", "manufacturer_model_name": "X1",
             "rows": 480, "columns": 640, "modality": "US"}
    pins.write_profile("acme-x1", profile_key(facts, (480, 640)), keep)
    got = pins.for_input("0" * 64, facts, (480, 640))
    assert got is not None and got.by == "profile:acme-x1" and (got.keep == keep).all()
    assert pins.for_input("0" * 64, {**facts, "manufacturer_model_name": "X2"}, (480, 640)) \
        is None
    assert pins.for_input("0" * 64, {"format": "video"}, (480, 640)) is None
    with pytest.raises(FileExistsError):
        pins.write_profile("acme-x1", {}, keep)
    with pytest.raises(ValueError):
        pins.write_profile("../x", {}, keep)
    other = np.full((480, 640), 255, np.uint8)
    pins.approve("a" * 64, other)
    assert pins.for_input("a" * 64, facts, (480, 640)).by == "approval"  # before profiles
    assert pins.for_input("a" * 64, facts, (240, 320)) is None  # wrong size: ignored
    assert decode_mask(encode_png(keep)).shape == (480, 640)


def _review(radiomicsd, daemon, *args):
    return radiomicsd("review", "-c", daemon.config, *args)


def _entry_ids(radiomicsd, daemon) -> list[str]:
    proc = _review(radiomicsd, daemon, "list")
    assert proc.returncode == 0, proc.stderr
    return [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("q-")]


def _quarantined(daemon, n: int) -> list[str]:
    def ready():
        ids = [n for n in daemon.quarantine.glob("q-*.preview.png")]
        return ids if len(ids) >= n else None
    found = wait_until(ready, 60, f"{n} needs_review entries")
    return sorted(p.name.removesuffix(".preview.png") for p in found)


def _variant(name: str) -> bytes:
    """The same frame under another SOP Instance UID: new content, the same device."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["radiomicsd-test"])
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@needs_engine
@pytest.mark.slow
def test_needs_review_list_show_approve_profile_reject(daemon_factory, radiomicsd, tmp_path):
    # GE's frames are exported by the detector as they are; a site that allows a live image
    # of at most 40% of an unbounded frame gets them refused for review (45% of the frame)
    d = daemon_factory(select="all", mask={"max_live_fraction": 0.4})
    d.start()
    shutil.copy(get_testdata_file(GE_BIG), d.input / "big.dcm")
    shutil.copy(get_testdata_file(GE_SMALL), d.input / "small.dcm")
    ids = _quarantined(d, 2)
    notes = {i: json.loads((d.quarantine / f"{i}.json").read_text()) for i in ids}
    for i, note in notes.items():
        assert note["reason"] == "needs_review"
        facts = note["review"]["facts"]
        assert facts["manufacturer"] == "G.E. Medical Systems" and facts["format"] == "dicom"
        assert 0 < note["review"]["kept_share"] < 1
        mask = cv2.imread(str(d.quarantine / f"{i}.mask.png"), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (facts["rows"], facts["columns"])
        for suffix in (".mask.png", ".preview.png", ".json", ""):
            assert (d.quarantine / f"{i}{suffix}").stat().st_mode & 0o077 == 0
    by_size = {notes[i]["review"]["facts"]["rows"]: i for i in ids}
    big, small = by_size[480], by_size[240]

    # list and show: ids, device, kept share; nothing of the patient
    assert sorted(_entry_ids(radiomicsd, d)) == sorted(ids)
    listing = _review(radiomicsd, d, "list").stdout
    assert "LOGIQ 700" in listing and "2 input(s) need review" in listing
    for value in DicomStream(get_testdata_file(GE_BIG)).identifying_values:
        assert value not in listing
    copy = tmp_path / "preview.png"
    shown = _review(radiomicsd, d, "show", big, "--copy-to", copy)
    assert shown.returncode == 0 and cv2.imread(str(copy)).shape == (480, 640, 3)
    assert _review(radiomicsd, d, "show", "q-nope").returncode == 2

    # approve the clean one with a profile: exported with the approved mask, OCR-checked
    approved = _review(radiomicsd, d, "approve", big, "--profile", "ge-logiq700-640")
    assert approved.returncode == 0, approved.stderr
    assert (d.input / f"review-{big}").exists() or d.outputs()
    wait_until(lambda: len(d.outputs()) == 1, 60, "the approved frame exported")
    (manifest,) = d.outputs().values()
    assert manifest["masking"]["method"] == "approval"
    assert manifest["verification"]["ocr"].startswith("tesseract")
    assert not (d.quarantine / big).exists()

    # the profile: another frame of that device goes straight through with its mask
    (d.input / "again.dcm").write_bytes(_variant(GE_BIG))
    wait_until(lambda: len(d.outputs()) == 2, 60, "the profiled frame exported")
    methods = sorted(m["masking"]["method"] for m in d.outputs().values())
    assert methods == ["approval", "profile:ge-logiq700-640"]

    # an approval never skips the OCR check: the small one's mask replaced by one that keeps the
    # whole frame (as a careless reviewer's or a wrong profile's would), approved, refused
    mask_file = d.quarantine / f"{small}.mask.png"
    shape = cv2.imread(str(mask_file), cv2.IMREAD_GRAYSCALE).shape
    mask_file.unlink()
    mask_file.write_bytes(encode_png(np.full(shape, 255, np.uint8)))
    assert _review(radiomicsd, d, "approve", small).returncode == 0
    d.wait_event("video.quarantined", count=3)
    reasons = wait_until(lambda: [n["reason"] for n in d.quarantine_notes()
                                  if n["reason"] == "residual_text"], 30, "the note")
    assert reasons == ["residual_text"] and len(d.outputs()) == 2

    # reject: gone from the quarantine and the list
    (d.input / "third.dcm").write_bytes(_variant(GE_SMALL))
    (third,) = set(_quarantined(d, 1)) - {small}
    assert _review(radiomicsd, d, "reject", third).returncode == 0
    assert third not in _entry_ids(radiomicsd, d)
    assert not list(d.quarantine.glob(f"{third}*"))
    assert d.stop() == 0
