"""The floor: the least work that turns a video into de-identified PNG frames with OpenCV.

Decode every frame, black out one box, ``cv2.imencode('.png', frame)`` at OpenCV's default
parameters, write the bytes to ``OUT/000000.png ...``; one thread, nothing else. Run as its own
process by ``bench/anonymise.py`` so that it is timed like ``radiomicsd anonymise``: whole process
against whole process, interpreter start and imports included.

    python bench/floor.py IN.avi OUT_DIR --box X0 Y0 X1 Y1 [--decode-only]
"""

from __future__ import annotations

import argparse
import os

import cv2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("out")
    parser.add_argument("--box", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                        required=True, help="box to black out, end exclusive")
    parser.add_argument("--decode-only", action="store_true",
                        help="only decode every frame (the cost of decoding alone)")
    args = parser.parse_args()
    x0, y0, x1, y1 = args.box
    os.makedirs(args.out, exist_ok=True)
    cap = cv2.VideoCapture(args.video)
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if not args.decode_only:
            frame[y0:y1, x0:x1] = 0
            ok, buf = cv2.imencode(".png", frame)
            with open(os.path.join(args.out, f"{n:06d}.png"), "wb") as f:
                f.write(buf)
        n += 1
    cap.release()
    print(n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
