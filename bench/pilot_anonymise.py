"""The 2019 pilot's anonymise job, re-enacted from ``reference/ORIGINAL.md`` for the benchmark.

Not product code: it keeps the pilot's defects on purpose, since its cost is what we compare
against. For every file in the input folder: decode the whole video into memory, check the first
frame for Doppler colour (HSV, red 169..189, blue 110..130, both masks below 25000 means not
Doppler), decode the whole video into memory again, set the box rows 0 .. h/6 x columns
2w/3 - 10 .. w to black with per-pixel Python loops, and save each frame with PIL as if the BGR
array were RGB (red and blue swapped) to ``OUT/<md5 of the path>/<n>.png``. PIL saves at its
default settings; if PIL is missing, ``cv2.imwrite`` on the channel-swapped frame stands in
(the script prints which one it used).

    python bench/pilot_anonymise.py IN_DIR OUT_DIR
"""

from __future__ import annotations

import hashlib
import os
import sys

import cv2
import numpy as np

try:
    from PIL import Image
except ImportError:  # PIL is not a dependency of the project
    Image = None


def read_video(path: str) -> list[np.ndarray]:
    """Every frame in memory, as the pilot did (twice per video)."""
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def is_doppler(frame: np.ndarray) -> bool:
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    blue = cv2.inRange(hsv, np.array([110, 50, 50]), np.array([130, 255, 255]))
    red = cv2.inRange(hsv, np.array([169, 50, 50]), np.array([189, 255, 255]))
    return not (int(blue.sum()) < 25000 and int(red.sum()) < 25000)


def save(frame: np.ndarray, path: str) -> None:
    if Image is not None:
        Image.fromarray(frame).save(path)  # BGR saved as RGB: the pilot's colour swap
    else:
        cv2.imwrite(path, frame[..., ::-1].copy())


def anonymise(path: str, out_root: str) -> int:
    frames = read_video(path)
    if not frames or not is_doppler(frames[0]):
        return 0
    frames = read_video(path)
    out = os.path.join(out_root, hashlib.md5(path.encode()).hexdigest())
    os.makedirs(out, exist_ok=True)
    for n, img in enumerate(frames):
        h, w = img.shape[:2]
        for i in range(0, h // 6):
            for j in range(2 * w // 3 - 10, w):
                img[i, j] = [0, 0, 0]
        save(img, os.path.join(out, f"{n}.png"))
    return len(frames)


def main() -> int:
    in_dir, out_dir = sys.argv[1], sys.argv[2]
    total = 0
    for name in sorted(os.listdir(in_dir)):
        total += anonymise(os.path.join(in_dir, name), out_dir)
    print(total, "PIL" if Image is not None else "cv2.imwrite")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
