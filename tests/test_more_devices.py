"""More real devices: the ultrasound files of the pydicom-data wheel (PyPI, MIT licence; its
files resolve through ``pydicom.data.get_testdata_file`` without a download), through the real
``radiomicsd anonymise``, as DICOM.

Each outcome is pinned with its reason (:data:`DEVICES`): a change in either direction fails.
Exports carry no header value anywhere in their output. The GE LOGIQ 700 frames are the screen
of pydicom's ``examples_jpeg2k.dcm`` (the lossless ones pixel for pixel), so its hand-drawn
truth judges them: no glyph of burned-in text outside the live image, >= 99% of the live image
exactly as decoded. The SonoSite cine has truth of its own (tests/data/us_dicom_truth.json,
judged in test_real_devices.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_dicom_anonymise import header_values
from test_real_devices import figures

from radiomicsd.pipeline.dicom import DicomStream

pytest.importorskip("data_store", reason="pydicom-data is not installed")

_OB_STILL = ("no_scan_sector", "Philips CX50 obstetric frame, 800x600 palette: the curved sector "
             "is black but for its near field; no region holds evidence")
_OB_PAIR = ("needs_review", "the same screen in two frames: the near field alone fits no probe "
            "geometry")
_GE = ("exported", "GE LOGIQ 700 dual linear, 640x480 (the screen of examples_jpeg2k.dcm)")
_ALOKA = ("needs_review", "Aloka SSD-4000 dual convex images with counters and markers typed "
          "over both: no geometry fits")
_ACME = ("needs_review", "a 256x120 colour test pattern, no screen around an image")
#: file -> (outcome: exported or the refusal's reason, why)
DEVICES: dict[str, tuple[str, str]] = {
    "JPGLosslessP14SV1_1s_1f_8b.dcm": (
        "needs_review", "Philips EPIQ 7C phased fan, 1024x768 JPEG lossless: the fan is fitted "
        "right, but texture misses the dark near field and a cavity open to the far arc, and "
        "the region covers the fan too little (IoU 0.76) to vouch for it"),
    "OBXXXX1A.dcm": _OB_STILL,
    "OBXXXX1A_expb.dcm": _OB_STILL,
    "OBXXXX1A_rle.dcm": _OB_STILL,
    "OBXXXX1A_2frame.dcm": _OB_PAIR,
    "OBXXXX1A_expb_2frame.dcm": _OB_PAIR,
    "OBXXXX1A_rle_2frame.dcm": _OB_PAIR,
    "US1_UNCR.dcm": _GE,
    "US1_UNCI.dcm": _GE,
    "US1_J2KR.dcm": _GE,
    "US1_J2KI.dcm": _GE,
    "color-pl.dcm": _ACME,
    "color-px.dcm": _ACME,
    "color3d_jpeg_baseline.dcm": ("exported", "SonoSite Turbo phased fan, 120-frame JPEG cine"),
    "gdcm-US-ALOKA-16.dcm": _ALOKA,
    "gdcm-US-ALOKA-16_big.dcm": _ALOKA,
}
#: Share of the live image's pixels that must come out exactly as decoded.
FIDELITY = 0.99


def _path(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, radiomicsd) -> tuple[dict[str, dict], Path]:
    """Every file anonymised once: ({name: its video.* event}, output folder)."""
    root = tmp_path_factory.mktemp("devices")
    src = root / "in"
    src.mkdir()
    names = sorted(DEVICES)
    for i, name in enumerate(names):
        (src / f"f{i:02d}").write_bytes(_path(name).read_bytes())
    out = root / "out"
    res = radiomicsd("anonymise", "-i", src, "-o", out, "--state", root / "state", "--select",
                     "all", "--log-format", "json", "--show-paths")
    events = {}
    for line in res.stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event["event"].startswith("video.") and "path" in event:
                events[names[int(Path(event["path"]).name[1:])]] = event
    assert set(events) == set(names), res.stderr[-2000:]
    return events, out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DEVICES))
def test_device_is_exported_clean_or_refused(runs, name: str):
    events, out = runs
    expected, why = DEVICES[name]
    event = events[name]
    if expected != "exported":
        assert (event["event"], event.get("reason")) == ("video.failed", expected), why
        return
    assert event["event"] == "video.done", f"{why}: {event.get('reason')}"
    folder = out / event["pseudonym"]
    text = "".join(p.read_text() for p in folder.glob("*.json"))
    for value in header_values(_path(name)):
        assert value not in text
    if name.startswith("US1_"):
        with DicomStream(_path(name)) as stream:
            frames = np.stack(list(stream))
        _, left, fidelity = figures(name, folder, frames, truth="examples_jpeg2k.dcm")
        assert left == 0, f"{left} glyph pixels of burned-in text left outside the live image"
        assert fidelity >= FIDELITY, f"only {100 * fidelity:.2f}% of the live image kept exactly"


def test_the_lossless_ge_frames_are_the_jpeg2k_screen():
    """The truth borrowed above holds pixel for pixel for the lossless GE frames."""
    from pydicom.data import get_testdata_file

    with DicomStream(get_testdata_file("examples_jpeg2k.dcm")) as stream:
        [reference] = list(stream)
    for name in ("US1_UNCR.dcm", "US1_J2KR.dcm"):
        with DicomStream(_path(name)) as stream:
            [frame] = list(stream)
        assert np.array_equal(frame, reference), name


@pytest.mark.parametrize("little, big", [("OBXXXX1A.dcm", "OBXXXX1A_expb.dcm"),
                                         ("OBXXXX1A_2frame.dcm", "OBXXXX1A_expb_2frame.dcm"),
                                         ("gdcm-US-ALOKA-16.dcm", "gdcm-US-ALOKA-16_big.dcm")])
def test_big_endian_palette_decodes_as_its_little_endian_twin(little: str, big: str):
    """The same frames stored explicit VR big endian: plain 16-bit palette LUTs (Philips) came
    out byte-swapped (pydicom reads such LUT data in the machine's byte order), a nearly black
    frame; segmented ones (Aloka) were read right."""
    frames = []
    for name in (little, big):
        with DicomStream(_path(name)) as stream:
            frames.append(np.stack(list(stream)))
    assert frames[0].mean() > 10  # the screen, not a black frame
    assert np.array_equal(*frames)
