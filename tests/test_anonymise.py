"""End-to-end: the real ``radiomicsd anonymise`` CLI on generated clips (issue 2, items 5 and 7).

Every check decodes inputs with OpenCV here and reads the PNGs back independently: PNG chunks and
RGB pixels are parsed with ``zlib`` (tests/pngread.py), not with the project's code.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import hmac
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import OTHER_KEY, REPO, SMALL, TEST_KEY, cli_env
from pngread import chunks, png_rgb

from radiomicsd.pipeline.doppler import DopplerSettings, doppler_pixels
from radiomicsd.testing.synthetic import ClipInfo, render_clip

PHI_NAME = "DOE_JANE_4711"
PHI_FOLDER = "PATIENT_SMITH_JOHN_19620317"
#: A distinctive input mtime (2011-04-05 12:34:56 UTC) that must not reach the output.
PHI_MTIME = 1302006896
FRAME_NAME = re.compile(r"^\d{6}\.png$")

# ---------------------------------------------------------------------------------------------
# Independent readers: video frames (OpenCV), PNG chunks and RGB pixels (zlib), CLI summary.


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a clip as OpenCV decodes it (BGR)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def summary(stdout: str) -> Counter[tuple[str, str]]:
    """(status, reason) -> count from the CLI summary, plus ('done', '') for processed."""
    counts: Counter[tuple[str, str]] = Counter()
    m = re.search(r"summary: processed (\d+)", stdout)
    assert m, stdout
    counts[("done", "")] = int(m.group(1))
    for status, reason, n in re.findall(r"^  (skipped|failed)\s+(\S+)\s+(\d+)$", stdout, re.M):
        counts[(status, reason)] += int(n)
    return counts


def outputs(out: Path) -> list[Path]:
    """Every folder in the output root (pseudonyms, and staging leftovers if any)."""
    return sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []


def expected_pseudonym(path: Path, key_hex: str) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return hmac.new(bytes.fromhex(key_hex), digest, hashlib.sha256).hexdigest()[:32]


def phi_pixels(info: ClipInfo) -> np.ndarray:
    """Boolean (H, W): pixels inside the burned-in patient-data boxes."""
    w, h = info.size
    phi = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in info.phi_boxes:
        phi[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
    return phi


def far_outside(info: ClipInfo, px: int = 8) -> np.ndarray:
    """Boolean (H, W): pixels more than ``px`` pixels away from the true sector."""
    near = cv2.dilate(info.sector_mask.astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8))
    return near == 0


def check_frames(info: ClipInfo, folder: Path, *, outside_black: bool = True,
                 sector: np.ndarray | None = None) -> int:
    """The de-identification promise, frame by frame; returns the frame count.

    ``sector`` (default: the true sector) is where output pixels must equal the decoded input.
    """
    decoded = decode(info.path)
    names = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert names == [f"{i:06d}.png" for i in range(len(decoded))]
    assert len(decoded) == info.n_frames
    phi, far = phi_pixels(info), far_outside(info)
    sector = info.sector_mask if sector is None else sector
    for i, source in enumerate(decoded):
        frame = cv2.imread(str(folder / names[i]), cv2.IMREAD_UNCHANGED)
        assert frame is not None and frame.shape == source.shape, names[i]
        assert not frame[phi].any(), f"patient-data pixels survive in {names[i]}"
        if outside_black:
            assert not frame[far].any(), f"pixels far outside the sector survive in {names[i]}"
        np.testing.assert_array_equal(frame[sector], source[sector],
                                      err_msg=f"sector pixels changed in {names[i]}")
    return len(decoded)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


# ---------------------------------------------------------------------------------------------
# One ordinary run: a Doppler clip with a patient-like name in a patient-like folder.


@pytest.fixture(scope="module")
def doppler_run(clip_factory, radiomicsd, tmp_path_factory):
    info = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    root = tmp_path_factory.mktemp("ordinary")
    src = root / "in" / PHI_FOLDER / f"{PHI_NAME}.avi"
    src.parent.mkdir(parents=True)
    shutil.copyfile(info.path, src)
    os.utime(src, (PHI_MTIME, PHI_MTIME))
    out = root / "out"
    proc = radiomicsd("anonymise", "-i", root / "in", "-o", out, "--state", root / "state",
                      "--workers", "1")
    return dataclasses.replace(info, path=src), out, proc


def test_ordinary_run_exits_zero_with_one_output(doppler_run):
    info, out, proc = doppler_run
    assert proc.returncode == 0, proc.stderr
    assert summary(proc.stdout) == Counter({("done", ""): 1})
    [folder] = outputs(out)
    assert folder.name == expected_pseudonym(info.path, TEST_KEY)


def test_phi_black_sector_exact_frame_count(doppler_run):
    info, out, _ = doppler_run
    [folder] = outputs(out)
    assert check_frames(info, folder) == 12
    doc = manifest(folder)
    assert doc["frames"] == 12 and (doc["width"], doc["height"]) == info.size
    assert doc["doppler"] is True and doc["pseudonym"] == folder.name


def test_png_has_only_image_chunks(doppler_run):
    _, out, _ = doppler_run
    [folder] = outputs(out)
    for png in sorted(folder.glob("*.png")):
        kinds = [k for k, _ in chunks(png.read_bytes())]
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND", png.name
        assert set(kinds) == {b"IHDR", b"IDAT", b"IEND"}, (png.name, kinds)


def test_red_stays_red(doppler_run):
    info, out, _ = doppler_run
    [folder] = outputs(out)
    source = decode(info.path)[0]
    b, g, r = (source[..., c].astype(int) for c in range(3))
    inside = info.sector_mask
    red = inside & (r > 150) & (b < 90) & (g < 90)
    blue = inside & (b > 150) & (r < 90)
    assert red.sum() > 50 and blue.sum() > 50, "the clip should have red and blue flow"
    rgb = png_rgb((folder / "000000.png").read_bytes())
    assert (rgb[red][:, 0] > rgb[red][:, 2]).all(), "red flow is not red in the PNG"
    assert (rgb[blue][:, 2] > rgb[blue][:, 0]).all(), "blue flow is not blue in the PNG"
    # The whole frame, read with zlib, is the decoded input's BGR in RGB order.
    np.testing.assert_array_equal(rgb[inside], source[inside][:, ::-1])


def test_names_and_manifest_reveal_nothing_of_the_input(doppler_run):
    info, out, proc = doppler_run
    secrets = [PHI_NAME, "DOE_JANE", "SMITH_JOHN", str(PHI_MTIME), "2011-04-05T12:34"]
    for path in out.rglob("*"):
        rel = str(path.relative_to(out))
        assert not any(s in rel for s in secrets), rel
        assert path.name == ".radiomicsd.lock" or path.is_dir() or \
            path.name == "manifest.json" or FRAME_NAME.match(path.name), rel
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets[:3]), rel
    text = (outputs(out)[0] / "manifest.json").read_text()
    assert not any(s in text for s in secrets)
    assert str(info.path.parent) not in text
    console = proc.stdout + proc.stderr
    assert not any(s in console for s in secrets[:3]), console


def test_show_paths_does_show_the_input_name(doppler_run, radiomicsd, tmp_path):
    info, _, _ = doppler_run
    proc = radiomicsd("anonymise", "-i", info.path.parent.parent, "-o", tmp_path / "out",
                      "--state", tmp_path / "state", "--workers", "1", "--show-paths")
    assert proc.returncode == 0, proc.stderr
    assert PHI_NAME in proc.stdout + proc.stderr
    # ... and still never in the output itself.
    assert not any(PHI_NAME in str(p) for p in (tmp_path / "out").rglob("*"))


# ---------------------------------------------------------------------------------------------
# Codecs and containers, all in one run with two workers.

CODEC_CASES = [("MJPG", "avi"), ("XVID", "avi"), ("FFV1", "avi"), ("mp4v", "mp4"),
               ("MJPG", "mkv")]


@pytest.fixture(scope="module")
def codec_run(clip_factory, radiomicsd, tmp_path_factory):
    root = tmp_path_factory.mktemp("codecs")
    (root / "in").mkdir()
    infos = {}
    for seed, (fourcc, ext) in enumerate(CODEC_CASES):
        info = clip_factory(f"codec_{fourcc}.{ext}", n_frames=10, fourcc=fourcc, seed=10 + seed)
        infos[(fourcc, ext)] = info
        shutil.copyfile(info.path, root / "in" / info.path.name)
    proc = radiomicsd("anonymise", "-i", root / "in", "-o", root / "out",
                      "--state", root / "state", "--workers", "2")
    return infos, root / "out", proc


def test_codec_run_exports_every_clip(codec_run):
    _, out, proc = codec_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary(proc.stdout) == Counter({("done", ""): len(CODEC_CASES)})
    assert len(outputs(out)) == len(CODEC_CASES)


@pytest.mark.parametrize("case", CODEC_CASES, ids=[f"{f}-{e}" for f, e in CODEC_CASES])
def test_codec_frames_deidentified_exactly(codec_run, case):
    infos, out, _ = codec_run
    info = infos[case]
    folder = out / expected_pseudonym(info.path, TEST_KEY)
    assert folder.is_dir(), f"no output for {case}"
    assert check_frames(info, folder) == 10
    assert manifest(folder)["frames"] == 10


# ---------------------------------------------------------------------------------------------
# Selection and Doppler detection.


def test_bmode_skipped_by_default_and_exported_with_select_all(clip_factory, radiomicsd,
                                                              tmp_path):
    info = clip_factory("bmode.avi", n_frames=10, doppler=False, view="psax", seed=3)
    proc = radiomicsd("anonymise", "-i", info.path, "-o", tmp_path / "a",
                      "--state", tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    assert summary(proc.stdout) == Counter({("done", ""): 0, ("skipped", "not_doppler"): 1})
    assert outputs(tmp_path / "a") == []
    proc = radiomicsd("anonymise", "-i", info.path, "-o", tmp_path / "b",
                      "--state", tmp_path / "s", "--select", "all")
    assert proc.returncode == 0, proc.stderr
    [folder] = outputs(tmp_path / "b")
    assert manifest(folder)["doppler"] is False
    check_frames(info, folder)


@pytest.fixture(scope="module")
def wrap_red_clip(tmp_path_factory) -> ClipInfo:
    """A lossless Doppler clip whose only flow colour is red at OpenCV hues 0..9."""
    frames, info = render_clip(8, SMALL, seed=21)
    path = tmp_path_factory.mktemp("wrap") / "wrap_red.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), info.fps, info.size)
    for frame in frames:
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        hue, vivid = hsv[..., 0], hsv[..., 1] >= 30
        frame[vivid & (hue > 9)] = 128  # drop blue and the reds above the wrap: grey
        writer.write(frame)
    writer.release()
    return dataclasses.replace(info, path=path, fourcc="FFV1")


def test_red_hue_wrap_is_detected(wrap_red_clip, radiomicsd, tmp_path):
    info = wrap_red_clip
    first = decode(info.path)[0]
    inside = info.sector_mask
    pilot = DopplerSettings(red_hue=(169, 179))  # the pilot's 169..189 in effect
    assert doppler_pixels(first, pilot, where=inside) < pilot.min_pixels, "pilot would see it"
    assert doppler_pixels(first, DopplerSettings(), where=inside) >= 98
    proc = radiomicsd("anonymise", "-i", info.path, "-o", tmp_path / "out",
                      "--state", tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    [folder] = outputs(tmp_path / "out")
    assert manifest(folder)["doppler"] is True
    check_frames(info, folder)


@pytest.fixture(scope="module")
def still_run(clip_factory, radiomicsd, tmp_path_factory):
    info = clip_factory("still.avi", n_frames=1, seed=5)
    root = tmp_path_factory.mktemp("still")
    proc = radiomicsd("anonymise", "-i", info.path, "-o", root / "out", "--state", root / "s")
    return info, root / "out", proc


def test_single_frame_video_masked_by_structure(still_run):
    info, out, proc = still_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [folder] = outputs(out)
    assert "structure" in manifest(folder)["masking"]["method"]
    assert check_frames(info, folder) == 1


def test_single_frame_video_keeps_every_sector_pixel(still_run):
    info, out, _ = still_run
    [folder] = outputs(out)
    check_frames(info, folder)


# ---------------------------------------------------------------------------------------------
# Exit codes and configuration errors.


def test_unknown_config_key_exits_2_naming_it(radiomicsd, tmp_path, clip_factory):
    info = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    config = tmp_path / "bad.yml"
    config.write_text("limits:\n  max_frame_pixelz: 10\n")
    proc = radiomicsd("anonymise", "-i", info.path, "-o", tmp_path / "out",
                      "--state", tmp_path / "s", "-c", config)
    assert proc.returncode == 2
    assert "limits.max_frame_pixelz" in proc.stderr
    assert not (tmp_path / "out").exists() or outputs(tmp_path / "out") == []


def test_bad_choice_and_bad_workers_exit_2(radiomicsd, tmp_path, clip_factory):
    info = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    config = tmp_path / "bad.yml"
    config.write_text("mask:\n  method: everything\n")
    proc = radiomicsd("anonymise", "-i", info.path, "-o", tmp_path / "out", "-c", config,
                      "--state", tmp_path / "s")
    assert proc.returncode == 2
    assert "mask.method" in proc.stderr and "auto+regions" in proc.stderr
    proc = radiomicsd("anonymise", "-i", info.path, "-o", tmp_path / "out", "--workers", "0",
                      "--state", tmp_path / "s")
    assert proc.returncode == 2 and "--workers" in proc.stderr
    proc = radiomicsd("anonymise", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "-i" in proc.stderr


# ---------------------------------------------------------------------------------------------
# Bad inputs: each gets its reason code, the run goes on, nothing partial is left.


def _movi_chunks(data: bytes) -> list[tuple[int, int]]:
    """(payload offset, length) of every video chunk ('##dc') inside an AVI's 'movi' list."""
    start = data.index(b"LIST", 12)
    while data[start + 8:start + 12] != b"movi":
        start = data.index(b"LIST", start + 4)
    (size,) = struct.unpack("<I", data[start + 4:start + 8])
    pos, end, found = start + 12, start + 8 + size, []
    while pos + 8 <= end:
        kind = data[pos:pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4:pos + 8])
        if kind[2:] == b"dc" and length:
            found.append((pos + 8, length))
        pos += 8 + length + (length & 1)
    return found


def write_undecodable(source: Path, target: Path) -> int:
    """Copy an MJPG AVI with headers and index intact but every frame's data zeroed."""
    data = bytearray(source.read_bytes())
    found = _movi_chunks(bytes(data))
    for offset, length in found:
        data[offset:offset + length] = bytes(length)
    target.write_bytes(bytes(data))
    return len(found)


@pytest.fixture(scope="module")
def bad_run(clip_factory, radiomicsd, tmp_path_factory):
    good = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    other = clip_factory("other.avi", n_frames=10, fourcc="MJPG", seed=7)
    root = tmp_path_factory.mktemp("bad")
    inp = root / "in"
    inp.mkdir()
    data = good.path.read_bytes()
    shutil.copyfile(good.path, inp / "good.avi")
    (inp / "empty.avi").write_bytes(b"")
    (inp / "random.avi").write_bytes(np.random.default_rng(4711).bytes(64 * 1024))
    (inp / "truncated.avi").write_bytes(data[:len(data) // 2])
    (inp / "notes.txt").write_text("Patient: DOE, JANE\nDOB 2011-04-05\nfollow-up in 6 months\n"
                                   * 40)
    assert write_undecodable(good.path, inp / "undecodable.avi") == 12
    (inp / "link.avi").symlink_to(other.path)
    (inp / "empty_folder.avi").mkdir()
    (inp / "folder.mp4").mkdir()
    shutil.copyfile(other.path, inp / "folder.mp4" / "inside.avi")
    out = root / "out"
    proc = radiomicsd("anonymise", "-i", inp, "-o", out, "--state", root / "state",
                      "--workers", "2", "--show-paths")
    reasons = {}
    for line in proc.stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "path" in event:
            reasons[Path(event["path"]).name] = (event["event"], event.get("reason"))
    return {"good": good, "other": other, "out": out, "proc": proc, "reasons": reasons}


@pytest.mark.parametrize("name, reasons", [
    ("empty.avi", {"empty_file"}),
    ("random.avi", {"unreadable_container"}),
    ("truncated.avi", {"truncated"}),
    ("notes.txt", {"unreadable_container"}),
    # An AVI whose headers and index are fine but whose frames hold no JPEG data: FFmpeg opens
    # the container and decodes nothing. Observed: no_frames.
    ("undecodable.avi", {"no_frames", "unreadable_container"}),
    ("link.avi", {"symlink_refused"}),
])
def test_bad_input_reason(bad_run, name, reasons):
    event, reason = bad_run["reasons"].get(name, (None, None))
    assert event == "video.failed" and reason in reasons, (name, event, reason)


def test_bad_inputs_counted_and_the_run_goes_on(bad_run):
    proc = bad_run["proc"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    counts = summary(proc.stdout)
    assert counts[("done", "")] == 2  # good.avi and folder.mp4/inside.avi
    assert counts[("failed", "empty_file")] == 1
    assert counts[("failed", "unreadable_container")] >= 2
    assert counts[("failed", "truncated")] == 1
    assert counts[("failed", "symlink_refused")] == 1
    assert sum(n for (s, _), n in counts.items() if s == "failed") == 6
    assert "internal_error" not in proc.stdout


def test_bad_inputs_leave_no_partial_output(bad_run):
    out = bad_run["out"]
    names = sorted(p.name for p in outputs(out))
    expected = sorted(expected_pseudonym(bad_run[k].path, TEST_KEY) for k in ("good", "other"))
    assert names == expected  # no .staging-*, no folder for any bad input
    for folder in outputs(out):
        doc = manifest(folder)
        assert doc["frames"] == len(list(folder.glob("*.png")))


def test_folder_named_like_a_video_is_walked(bad_run):
    assert bad_run["reasons"]["inside.avi"][0] == "video.done"
    assert "empty_folder.avi" not in bad_run["reasons"]
    assert "folder.mp4" not in bad_run["reasons"]


def test_too_large_frame_refused(clip_factory, radiomicsd, tmp_path):
    info = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    config = tmp_path / "small.yml"
    config.write_text("limits:\n  max_frame_pixels: 1000\n")
    proc = radiomicsd("anonymise", "-i", info.path, "-o", tmp_path / "out", "-c", config,
                      "--state", tmp_path / "s")
    assert proc.returncode == 1
    assert summary(proc.stdout) == Counter({("done", ""): 0, ("failed", "too_large"): 1})
    assert outputs(tmp_path / "out") == []


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _drop_dac_capabilities() -> None:
    """In the child before exec: drop root's power to read files whatever their mode.

    Removing CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set means the exec'd
    process, even as uid 0, is bound by file modes (like ``setpriv --bounding-set``).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _can_drop_capabilities() -> bool:
    probe = "import sys; open(sys.argv[1]).read()"
    try:
        target = Path(os.environ.get("TMPDIR", "/tmp"))
        with tempfile.NamedTemporaryFile(dir=target) as f:
            os.chmod(f.name, 0)
            proc = subprocess.run([sys.executable, "-c", probe, f.name], capture_output=True,
                                  preexec_fn=_drop_dac_capabilities)
        return proc.returncode != 0 and b"PermissionError" in proc.stderr
    except (OSError, subprocess.SubprocessError):
        return False


def test_unreadable_file_refused(clip_factory, radiomicsd, tmp_path):
    """chmod 000; as root, the CLI runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH."""
    preexec = None
    if os.geteuid() == 0:
        if not _can_drop_capabilities():
            pytest.skip("running as root without CAP_SETPCAP: cannot make a file unreadable")
        preexec = _drop_dac_capabilities
    info = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copyfile(info.path, inp / "locked.avi")
    (inp / "locked.avi").chmod(0)
    proc = radiomicsd("anonymise", "-i", inp, "-o", tmp_path / "out",
                      "--state", tmp_path / "s", preexec_fn=preexec)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary(proc.stdout) == Counter({("done", ""): 0, ("failed", "permission_denied"): 1})
    assert outputs(tmp_path / "out") == []


# ---------------------------------------------------------------------------------------------
# Pseudonyms.


def test_pseudonym_stable_for_key_and_content(clip_factory, radiomicsd, tmp_path):
    info = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    first, second = tmp_path / "ward_a" / "x.avi", tmp_path / "ward_b" / "deep" / "renamed.mkv"
    for p in (first, second):
        p.parent.mkdir(parents=True)
        shutil.copyfile(info.path, p)
    names = []
    for n, (src, key) in enumerate([(first, TEST_KEY), (second, TEST_KEY), (first, OTHER_KEY)]):
        proc = radiomicsd("anonymise", "-i", src.parent, "-o", tmp_path / f"out{n}",
                          "--state", tmp_path / f"state{n}", key=key)
        assert proc.returncode == 0, proc.stderr
        [folder] = outputs(tmp_path / f"out{n}")
        names.append(folder.name)
    assert names[0] == names[1] == expected_pseudonym(first, TEST_KEY)
    assert names[2] == expected_pseudonym(first, OTHER_KEY) != names[0]


def test_same_content_twice_in_one_run_gives_one_output(clip_factory, radiomicsd, tmp_path):
    info = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    shutil.copyfile(info.path, tmp_path / "in" / "one.avi")
    shutil.copyfile(info.path, tmp_path / "in" / "sub" / "two.avi")
    proc = radiomicsd("anonymise", "-i", tmp_path / "in", "-o", tmp_path / "out",
                      "--state", tmp_path / "s", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    counts = summary(proc.stdout)
    assert counts[("done", "")] == 1
    assert counts[("skipped", "already_exported")] + counts[("skipped", "duplicate")] == 1
    assert len(outputs(tmp_path / "out")) == 1


def test_generated_key_announced_once_and_reused(clip_factory, radiomicsd, tmp_path):
    info = clip_factory("doppler.avi", n_frames=12, fourcc="MJPG")
    state = tmp_path / "state"
    runs = [radiomicsd("anonymise", "-i", info.path, "-o", tmp_path / f"out{n}",
                       "--state", state, key=None) for n in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert "generated a new pseudonym key" in runs[0].stdout
    assert "pseudonym key" not in runs[1].stdout
    key_file = state / "pseudonym.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key_hex = key_file.read_text().strip()
    [a], [b] = outputs(tmp_path / "out0"), outputs(tmp_path / "out1")
    assert a.name == b.name == expected_pseudonym(info.path, key_hex)


# ---------------------------------------------------------------------------------------------
# Memory does not grow with clip length.

PEAK_RSS = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_kib(clip: Path, root: Path) -> int:
    """Peak RSS (KiB) of one fresh ``radiomicsd anonymise`` process on ``clip``."""
    cmd = [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "radiomicsd", "anonymise",
           "-i", str(clip), "-o", str(root / "out"), "--state", str(root / "state"),
           "--workers", "1"]
    proc = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          check=True, timeout=600)
    return int(proc.stdout.strip())


@pytest.mark.slow
def test_memory_does_not_grow_with_clip_length(clip_factory, tmp_path):
    short = clip_factory("short.avi", n_frames=40, fourcc="MJPG", seed=31)
    long = clip_factory("long.avi", n_frames=400, fourcc="MJPG", seed=31)
    rss_short = peak_rss_kib(short.path, tmp_path / "short")
    rss_long = peak_rss_kib(long.path, tmp_path / "long")
    assert len(list((tmp_path / "long" / "out").glob("*/*.png"))) == 400
    assert rss_long <= 1.2 * rss_short, (rss_short, rss_long)
