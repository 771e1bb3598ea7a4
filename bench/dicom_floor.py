"""The DICOM floor: the least work that turns a DICOM cine into PNG frames with pydicom.

Decode every frame with pydicom (``pydicom.pixels.iter_pixels``: one frame at a time, its
default decoder plugins, YBR converted to RGB), swap to BGR for OpenCV, ``cv2.imencode('.png',
frame)`` at OpenCV's default parameters, write the bytes to ``OUT/000000.png ...``; one thread,
nothing else (no mask, no checks). Run as its own process by ``bench/dicom.py`` so that it is
timed like ``radiomicsd anonymise``: whole process against whole process, interpreter start and
imports included.

    python bench/dicom_floor.py IN.dcm OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from pydicom.pixels import iter_pixels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dicom", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    n = 0
    for frame in iter_pixels(args.dicom):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame
        ok, buf = cv2.imencode(".png", bgr)
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        (args.out / f"{n:06d}.png").write_bytes(buf.tobytes())
        n += 1
    print(n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
