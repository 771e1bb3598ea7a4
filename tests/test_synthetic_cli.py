"""``python -m radiomicsd.testing.synthetic`` as a user runs it: a real process writing real files,
read back with OpenCV."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from radiomicsd.testing.synthetic import CODECS, build_parser

#: FOURCC tags OpenCV's FFmpeg reports when reading each --codec back (upper case).
READ_BACK = {"MJPG": {"MJPG"}, "FFV1": {"FFV1"}, "XVID": {"XVID", "FMP4"}, "mp4v": {"MP4V", "FMP4"}}


def synthetic(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "radiomicsd.testing.synthetic", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clips(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def read_back(path: Path) -> tuple[str, list[np.ndarray]]:
    """FOURCC tag (upper case) and all decoded frames of ``path``."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.isOpened(), path.name
    tag = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii").upper()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return tag, frames


def flow_pixels(frame: np.ndarray) -> int:
    """Saturated, bright pixels of Doppler hues (blue, and red on both sides of hue 0)."""
    h, s, v = cv2.split(cv2.cvtColor(frame, cv2.COLOR_BGR2HSV))
    flow_hue = ((h >= 110) & (h <= 130)) | (h >= 169) | (h <= 9)
    return int(np.count_nonzero((s > 50) & (v > 50) & flow_hue))


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_count_writes_distinct_clips_of_the_asked_size_codec_and_length(tmp_path: Path,
                                                                      codec: str) -> None:
    out = tmp_path / "in"
    proc = synthetic("--out", out, "--count", 3, "--seed", 11, "--size", "496x368",
                     "--codec", codec, "--frames", 7)
    written = clips(out)
    assert len(written) == 3, [p.name for p in written]  # no hidden partial file left either
    assert proc.stdout.splitlines() == [f"synthetic clip: {p}" for p in written]
    assert len({sha256(p) for p in written}) == 3
    for path in written:
        assert path.suffix == CODECS[codec]
        tag, frames = read_back(path)
        assert tag in READ_BACK[codec], (codec, tag)
        assert codec.encode() in path.read_bytes()  # the container names the codec asked for
        assert len(frames) == 7
        assert all(f.shape == (368, 496, 3) for f in frames)


def test_seed_makes_runs_reproducible_and_clip_i_uses_seed_s_plus_i(tmp_path: Path) -> None:
    def run(folder: str, seed: int) -> dict[str, str]:
        synthetic("--out", tmp_path / folder, "--count", 2, "--seed", seed, "--frames", 5,
                  "--codec", "mp4v")
        return {p.name: sha256(p) for p in clips(tmp_path / folder)}

    first, again, shifted = run("a", 40), run("b", 40), run("c", 41)
    assert first == again
    assert len(set(first.values())) == 2
    seed41 = [n for n in first if n.endswith("_seed41.mp4")]
    assert seed41 and shifted[seed41[0]] == first[seed41[0]]  # clip 1 of seed 40 = clip 0 of 41
    assert len(set(first.values()) & set(shifted.values())) == 1


def test_doppler_and_no_doppler(tmp_path: Path) -> None:
    synthetic("--out", tmp_path / "d", "--count", 1, "--frames", 3, "--doppler")
    synthetic("--out", tmp_path / "b", "--count", 1, "--frames", 3, "--no-doppler")
    (doppler,), (bmode,) = clips(tmp_path / "d"), clips(tmp_path / "b")
    assert "_doppler_" in doppler.name and "_bmode_" in bmode.name
    assert all(flow_pixels(f) > 5000 for f in read_back(doppler)[1])
    assert all(flow_pixels(f) == 0 for f in read_back(bmode)[1])


def test_defaults_of_new_clips(tmp_path: Path) -> None:
    synthetic("--out", tmp_path, "--count", 1)
    (path,) = clips(tmp_path)
    assert path.name == "echo_plax_doppler_640x480_40f_25fps_MJPG_seed0.avi"
    tag, frames = read_back(path)
    assert tag == "MJPG" and len(frames) == 40 and frames[0].shape == (480, 640, 3)


def test_a_second_run_keeps_existing_clips(tmp_path: Path) -> None:
    synthetic("--out", tmp_path, "--count", 2, "--frames", 3)
    before = {p: p.stat().st_mtime_ns for p in clips(tmp_path)}
    synthetic("--out", tmp_path, "--count", 3, "--frames", 3)
    after = clips(tmp_path)
    assert len(after) == 3
    assert all(p.stat().st_mtime_ns == before[p] for p in before)


#: The sample set `make run` writes: file, frames, (width, height), Doppler.
SAMPLE = [("echo_doppler_plax.avi", 40, (640, 480), True),
          ("echo_doppler_a4c.mp4", 40, (1016, 708), True),
          ("echo_bmode_psax.avi", 30, (640, 480), False)]


@pytest.mark.parametrize("argv", [[], ["--set", "sample"]])
def test_named_sample_set_as_before(tmp_path: Path, argv: list[str]) -> None:
    proc = synthetic("--out", tmp_path, *argv)
    assert proc.stdout.splitlines() == [f"sample clip: {tmp_path / name}" for name, *_ in SAMPLE]
    assert clips(tmp_path) == sorted(tmp_path / name for name, *_ in SAMPLE)
    for name, n_frames, (width, height), doppler in SAMPLE:
        _, frames = read_back(tmp_path / name)
        assert len(frames) == n_frames
        assert frames[0].shape == (height, width, 3)
        assert (flow_pixels(frames[0]) > 0) == doppler
    before = {p: p.stat().st_mtime_ns for p in clips(tmp_path)}
    synthetic("--out", tmp_path, *argv)
    assert {p: p.stat().st_mtime_ns for p in clips(tmp_path)} == before  # kept, not rewritten


@pytest.mark.parametrize("argv, message", [
    (["--seed", "3"], "only with --count"),
    (["--no-doppler"], "only with --count"),
    (["--count", "1", "--set", "sample"], "exclude each other"),
    (["--count", "0"], "at least 1"),
    (["--count", "1", "--seed", "-1"], "at least 0"),
    (["--count", "1", "--size", "641x480"], "even"),
    (["--count", "1", "--size", "320x240"], "too small"),
    (["--count", "1", "--size", "640"], "WIDTHxHEIGHT"),
    (["--count", "1", "--codec", "H264"], "invalid choice"),
    (["--count", "1", "--fps", "0"], "above 0"),
])
def test_usage_errors_write_nothing(tmp_path: Path, argv: list[str], message: str) -> None:
    proc = synthetic("--out", tmp_path / "out", *argv, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_help_describes_every_option() -> None:
    text = synthetic("--help").stdout
    actions = [a for a in build_parser()._actions if a.dest != "help"]
    assert {"out", "set", "count", "seed", "size", "codec", "frames", "doppler"} <= {
        a.dest for a in actions}
    for action in actions:
        assert action.help and len(action.help) > 20, action.dest
        assert all(flag in text for flag in action.option_strings)
    assert all(codec in text for codec in CODECS)
