"""End to end with a real PACS: dcmtk's storescu (the ultrasound machine) sends real and
synthetic DICOM to radiomicsd's SCP; radiomicsd de-identifies and sends the result to a real
Orthanc; the test reads it back through Orthanc's REST API. Faults: Orthanc down while sending,
kill -9 of radiomicsd in a C-STORE burst.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from daemon_helpers import wait_until
from pydicom.data import get_testdata_file
from test_dicom_output import _dciodvfy
from test_scp import CALLER, _tool, _variant, kill9_in_a_burst

from radiomicsd.testing.dicom_writer import write_dicom
from radiomicsd.testing.orthanc import AET, Orthanc, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def orthanc(tmp_path):
    try:
        server = Orthanc(tmp_path / "orthanc").start()
    except FileNotFoundError:
        assert not os.environ.get("CI"), "Orthanc missing in CI (make installs it)"
        pytest.skip("Orthanc (Debian orthanc) not installed")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "syn.dcm"
    info = write_dicom(path, frames=10, size=(400, 240), syntax="explicit", photometric="RGB",
                       seed=11)
    return path, info


def _daemon(daemon_factory, orthanc: Orthanc, name: str = "d", **extra):
    d = daemon_factory(name, select="all", output_format="dicom",
                       dicom_scp={"enabled": True, "port": free_port(),
                                  "allowed_callers": [CALLER]},
                       send={"enabled": True, "port": orthanc.dicom_port, "ae_title": AET,
                             "retry_base_seconds": 0.5, "retry_max_seconds": 2.0}, **extra)
    d.start()
    d.wait_event("dicom.listening")
    return d, int(d.settings["dicom_scp"]["port"])


def _storescu(port: int, *files: Path | str) -> None:
    proc = subprocess.run([_tool("storescu"), "-xy", "-aet", CALLER, "-aec", "RADIOMICSD",
                           "127.0.0.1", str(port), *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_storescu_to_radiomicsd_to_orthanc(daemon_factory, orthanc, synthetic, tmp_path):
    path, info = synthetic
    sonosite = get_testdata_file("examples_ybr_color.dcm")
    d, port = _daemon(daemon_factory, orthanc)
    _storescu(port, sonosite, path)
    wait_until(lambda: len(orthanc.instances()) == 2, 90, "2 instances in Orthanc")
    assert d.stop() == 0
    sources = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
               for p in (sonosite, path)}
    secrets = [v for v in info.header.values() if len(v) >= 4]
    for p in (sonosite, path):
        src = pydicom.dcmread(p, stop_before_pixels=True)
        secrets += [str(src.get(k)) for k in ("StudyInstanceUID", "SeriesInstanceUID",
                                               "SOPInstanceUID", "StudyDate", "InstitutionName",
                                               "StationName") if src.get(k)]
    outputs = {m["pseudonym"]: m for m in d.outputs().values()}
    first_uids = set()
    for instance in orthanc.instances():
        tags = orthanc.tags(instance)
        data = orthanc.file(instance)
        for value in secrets:
            assert value.encode() not in data, value
        assert tags["PatientIdentityRemoved"] == "YES" and tags["BurnedInAnnotation"] == "NO"
        assert str(tags["StudyInstanceUID"]).startswith("2.25.")
        assert tags["SOPInstanceUID"] not in sources
        first_uids.add(tags["SOPInstanceUID"])
        saved = tmp_path / f"{instance}.dcm"
        saved.write_bytes(data)
        assert _dciodvfy(saved) == []
        # what Orthanc holds is the committed output (file meta aside: the sender's own)
        received = pydicom.dcmread(io.BytesIO(data))
        committed = [pydicom.dcmread(d.output / name / "image.dcm") for name in outputs]
        assert any(c == received for c in committed)
    # the synthetic one: black outside its live sector, identical inside
    (syn,) = [i for i in orthanc.instances()
              if pydicom.dcmread(io.BytesIO(orthanc.file(i))).Rows == 240 and
              pydicom.dcmread(io.BytesIO(orthanc.file(i))).Columns == 400]
    frames = pydicom.dcmread(io.BytesIO(orthanc.file(syn))).pixel_array
    for got, want_bgr in zip(frames, info.expected_frames()):
        want = want_bgr[..., ::-1]
        kept = got.any(axis=2)
        np.testing.assert_array_equal(got[kept], want[kept])  # kept pixels exactly as decoded
        for x0, y0, x1, y1 in info.clip.phi_boxes:  # the burned-in patient data: black
            assert not got[y0:y1, x0:x1].any()
    # a second installation with the same key: the same new UIDs, so Orthanc holds no more
    d2, port2 = _daemon(daemon_factory, orthanc, name="second")
    _storescu(port2, sonosite, path)
    wait_until(lambda: d2.count("send.sent") == 2, 90, "the second run sent")
    assert d2.stop() == 0
    assert {orthanc.tags(i)["SOPInstanceUID"] for i in orthanc.instances()} == first_uids


def test_orthanc_down_then_back_loses_nothing(daemon_factory, orthanc, synthetic):
    path, _ = synthetic
    d, port = _daemon(daemon_factory, orthanc)
    orthanc.stop()
    data = path.read_bytes()
    variants = []
    for n in range(3):
        ds = _variant(data, 300 + n)
        target = d.root / f"v{n}.dcm"
        ds.save_as(target)
        variants.append(target)
    _storescu(port, *variants)
    wait_until(lambda: len(d.outputs()) == 3, 90, "3 outputs")
    wait_until(lambda: d.count("send.retry") >= 3, 30, "failed tries while Orthanc is down")
    assert len(list((d.state / "outbox").glob("*.dcm"))) == 3
    orthanc.start()
    wait_until(lambda: len(orthanc.instances()) == 3, 90, "3 instances after Orthanc is back")
    wait_until(lambda: not list((d.state / "outbox").glob("*.dcm")), 30, "outbox empty")
    assert d.stop() == 0
    uids = [orthanc.tags(i)["SOPInstanceUID"] for i in orthanc.instances()]
    print(f"\nOrthanc down: sent 3, failed tries {d.count('send.retry')}, in Orthanc "
          f"{len(uids)}, duplicates {len(uids) - len(set(uids))}")
    assert len(set(uids)) == len(uids) == 3


def test_kill9_in_a_burst_every_acknowledged_instance_reaches_orthanc_once(
        daemon_factory, orthanc, synthetic):
    path, _ = synthetic
    d, port = _daemon(daemon_factory, orthanc)
    acknowledged = kill9_in_a_burst(d, port, path.read_bytes(), first=500, after=25)
    stored = len(list((d.input / "dicom-scp").glob("*.dcm")))
    assert acknowledged <= stored <= acknowledged + 1
    d.start()
    wait_until(lambda: len(orthanc.instances()) >= stored, 180, f"{stored} in Orthanc")
    wait_until(lambda: not list((d.state / "outbox").glob("*.dcm")), 60, "outbox empty")
    assert d.stop() == 0
    uids = [orthanc.tags(i)["SOPInstanceUID"] for i in orthanc.instances()]
    print(f"\nkill -9 burst of 50: acknowledged {acknowledged}, stored {stored}, "
          f"in Orthanc {len(uids)}, duplicates {len(uids) - len(set(uids))}")
    assert len(uids) == len(set(uids)) == stored
    shutil.rmtree(d.root / "out", ignore_errors=True)
