"""Decode speed and memory of the DICOM reader against pydicom's decoder plugins.

A 640x480 echo-like cine (a speckled fan, a colour patch, burned-in text), JPEG baseline
YBR_FULL_422 (OpenCV's encoder, quality 90, 4:2:2) and uncompressed RGB at ``--frames`` and 4x
as many, JPEG 2000 and JPEG-LS lossless (pydicom's encoders) at ``--frames``. Each contender
decodes every frame to uint8 BGR in a process of its own; frames/s is frames over the decode
loop's wall time (imports excluded; best of ``--repeat``), peak RSS is the process's
(``VmHWM``). Contenders:

``pydicom:<plugin>``  ``pydicom.pixels.iter_pixels(file, decoding_plugin=...)`` + RGB->BGR, for
                      each installed plugin of the syntax (gdcm, pylibjpeg): the choice of
                      dependency (``pydicom:`` uncompressed)
``ours``              ``DicomStream`` (JPEG baseline through OpenCV's libjpeg-turbo)
``ours-exact``        ``DicomStream(fast_jpeg=False)`` (through pydicom, GDCM first)

plus two threads decoding one cine each (``--threads 2``: the GIL question). Prints a table;
writes JSON (default ``bench/results/dicom_decoders.json``).

    python bench/dicom_decoders.py [--frames 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent


def echo_frames(count: int, rows: int = 480, columns: int = 640) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:rows, 0:columns]
    angle = np.arctan2(xx - columns / 2, yy + 20)
    radius = np.hypot(xx - columns / 2, yy + 20)
    fan = (np.abs(angle) < 0.6) & (radius < rows)
    base = cv2.GaussianBlur(rng.integers(0, 255, (rows, columns)).astype(np.uint8), (0, 0), 3)
    out = []
    for i in range(count):
        speckle = rng.gamma(1.0, 40, (rows, columns)).clip(0, 255).astype(np.uint8)
        grey = np.where(fan, cv2.addWeighted(np.roll(base, i, 1), 0.5, speckle, 0.5, 0), 0)
        frame = cv2.merge([grey.astype(np.uint8)] * 3)
        frame[fan & (np.abs(angle) < 0.15) & (radius > 150) & (radius < 300)] = (0, 0, 200)
        cv2.putText(frame, f"frame {i:04d}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (255, 255, 255), 2)
        out.append(frame)
    return out


def write_cine(path: Path, count: int, *, kind: str) -> None:
    """``kind``: jpeg (baseline YBR_FULL_422), rgb (uncompressed), j2k or jpegls (lossless)."""
    from pydicom import uid
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate

    jpeg = kind == "jpeg"
    frames = echo_frames(min(count, 30))
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = uid.JPEGBaseline8Bit if jpeg else uid.ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = uid.UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 480, 640, count
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PhotometricInterpretation = "YBR_FULL_422" if jpeg else "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = 33.3
    if jpeg:
        params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]
        blobs = [cv2.imencode(".jpg", frames[i % len(frames)], params)[1].tobytes()
                 for i in range(count)]
        ds.PixelData = encapsulate(blobs)
    else:
        ds.PixelData = b"".join(frames[i % len(frames)][..., ::-1].tobytes()
                                for i in range(count))
    ds["PixelData"].VR = "OB"
    if kind in ("j2k", "jpegls"):
        ds.compress(uid.JPEG2000Lossless if kind == "j2k" else uid.JPEGLSLossless)
    ds.save_as(path, enforce_file_format=True)


def decode_all(mode: str, path: Path) -> int:
    if mode.startswith("pydicom:"):
        from pydicom.pixels import iter_pixels

        with path.open("rb") as f:
            return sum(1 for a in iter_pixels(f, decoding_plugin=mode.split(":", 1)[1])
                       if cv2.cvtColor(a, cv2.COLOR_RGB2BGR) is not None)
    from radiomicsd.pipeline.dicom import DicomStream

    with path.open("rb") as f, DicomStream(f, fast_jpeg=mode != "ours-exact") as stream:
        return sum(1 for _ in stream)


def peak_rss() -> int:
    """This process's peak resident bytes (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(mode: str, path: Path, repeat: int, threads: int) -> dict[str, float]:
    decode_all(mode, path)  # imports and first-use set-up are not timed
    best = float("inf")
    frames = 0
    results: list[int] = []

    def job() -> None:
        results.append(decode_all(mode, path))

    for _ in range(repeat):
        results.clear()
        jobs = [threading.Thread(target=job) for _ in range(threads)]
        start = time.perf_counter()
        for thread in jobs:
            thread.start()
        for thread in jobs:
            thread.join()
        best = min(best, time.perf_counter() - start)
        frames = sum(results)
    return {"decoded": frames, "seconds": best, "fps": frames / best, "peak_rss": peak_rss()}


def measure(mode: str, path: Path, repeat: int, threads: int = 1) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, str(path), str(repeat),
                          str(threads)], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "dicom_decoders.json")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, path, repeat, threads = args.worker
        print(json.dumps(worker(mode, Path(path), int(repeat), int(threads))))
        return
    import pydicom
    from pydicom.pixels import get_decoder

    rows = []
    cines = [("jpeg", 1), ("jpeg", 4), ("rgb", 1), ("rgb", 4), ("j2k", 1), ("jpegls", 1)]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, factor in cines:
            count = args.frames * factor
            path = Path(tmp) / f"{kind}{count}.dcm"
            write_cine(path, count, kind=kind)
            syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
            plugins = sorted(get_decoder(syntax)._available) if syntax.is_compressed else [""]
            modes = [f"pydicom:{p}" for p in plugins if p != "pillow"] + ["ours"]
            if kind == "jpeg":
                modes.append("ours-exact")
            for mode in modes:
                for threads in ((1, 2) if factor == 1 and kind in ("jpeg", "rgb") else (1,)):
                    result = measure(mode, path, args.repeat, threads)
                    rows.append({"cine": kind, "frames": count, "mode": mode,
                                 "threads": threads, **result})
    print(f"{'cine':12s} {'frames':>6s} {'mode':18s} {'thr':>3s} {'frames/s':>9s} "
          f"{'peak RSS MB':>11s}")
    for r in rows:
        print(f"{r['cine']:12s} {r['frames']:6d} {r['mode']:18s} {r['threads']:3d} "
              f"{r['fps']:9.1f} {r['peak_rss'] / 2**20:11.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
