"""DICOM networking bench: instances/s received by radiomicsd's SCP and sent on to a real Orthanc,
against dcmtk's storescu sending the same instances to Orthanc directly, in the same run.

    python bench/pacs.py [--instances 40]

Rows: the floor (storescu -> Orthanc: what the network path costs without radiomicsd), received
(storescu -> radiomicsd SCP, each acknowledged once durable), and end to end (storescu ->
radiomicsd -> de-identification -> Orthanc, until the last instance is in Orthanc). Results go
to bench/results/pacs.json. There is no target: the note reports the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import yaml

from radiomicsd.testing.dicom_writer import write_dicom
from radiomicsd.testing.orthanc import AET, Orthanc, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "pacs.json"


def storescu(port: int, aet: str, called: str, files: list[Path]) -> float:
    """Seconds for one storescu association sending ``files``."""
    started = time.monotonic()
    subprocess.run(["storescu", "-aet", aet, "-aec", called, "127.0.0.1", str(port),
                    *map(str, files)], check=True, capture_output=True, timeout=600)
    return time.monotonic() - started


def wait_for(cond, timeout: float) -> float:
    started = time.monotonic()
    while not cond():
        if time.monotonic() - started > timeout:
            raise TimeoutError("bench: timed out")
        time.sleep(0.05)
    return time.monotonic() - started


def instances(work: Path, n: int) -> list[Path]:
    base = work / "base.dcm"
    write_dicom(base, frames=8, size=(400, 240), syntax="explicit", photometric="RGB", seed=9)
    ds = pydicom.dcmread(base)
    files = []
    for i in range(n):
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.999.7.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = work / f"i{i:03d}.dcm"
        ds.save_as(path)
        files.append(path)
    return files


def daemon(work: Path, orthanc: Orthanc) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    root = work / "radiomicsd"
    (root / "in").mkdir(parents=True)
    config = {"input_dir": str(root / "in"), "output_dir": str(root / "out"),
              "state_dir": str(root / "state"), "quarantine_dir": str(root / "q"),
              "select": "all", "output_format": "dicom", "settle_seconds": 0.2,
              "metrics": {"port": 0}, "logging": {"format": "json"},
              "dicom_scp": {"enabled": True, "port": port},
              "send": {"enabled": True, "port": orthanc.dicom_port, "ae_title": AET}}
    (root / "c.yml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "RADIOMICSD_PSEUDONYM_KEY": "00" * 32}
    log = open(root / "log.jsonl", "wb")  # noqa: SIM115 (the process owns it)
    proc = subprocess.Popen([sys.executable, "-m", "radiomicsd", "watch", "-c",
                             str(root / "c.yml")], stdout=log, stderr=log, env=env)
    wait_for(lambda: b"watch.ready" in (root / "log.jsonl").read_bytes(), 60)
    return proc, port, root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=40)
    args = parser.parse_args()
    if shutil.which("storescu") is None:
        print("bench/pacs.py: storescu (dcmtk) missing: make system-deps", file=sys.stderr)
        return 2
    n = args.instances
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = instances(work, n)
        mib = sum(f.stat().st_size for f in files) / 2**20
        direct = Orthanc(work / "direct").start()
        try:
            floor = storescu(direct.dicom_port, "BENCH", AET, files)
            assert len(direct.instances()) == n
        finally:
            direct.stop()
        target = Orthanc(work / "target").start()
        proc, port, root = daemon(work, target)
        try:
            started = time.monotonic()
            received = storescu(port, "BENCH", "RADIOMICSD", files)
            wait_for(lambda: len(target.instances()) >= n, 600)
            end_to_end = time.monotonic() - started
        finally:
            proc.terminate()
            proc.wait(60)
            target.stop()
    rows = {"storescu -> Orthanc (floor)": floor, "storescu -> radiomicsd SCP (received)":
            received, "storescu -> radiomicsd -> Orthanc (end to end)": end_to_end}
    print(f"{n} instances, {mib:.1f} MiB (8-frame 400x240 RGB US cines, Explicit VR LE)")
    print("| path | seconds | instances/s | vs floor |")
    print("|---|---|---|---|")
    for label, seconds in rows.items():
        print(f"| {label} | {seconds:.2f} | {n / seconds:.1f} | {floor / seconds:.2f}x |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"instances": n, "mib": round(mib, 1),
                                   "seconds": {k: round(v, 3) for k, v in rows.items()}},
                                  indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
