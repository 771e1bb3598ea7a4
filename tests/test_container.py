"""Container sniffing before FFmpeg: sparse and lying files are refused by their headers alone,
with bounded memory, and the clips the project writes (and other containers) still pass.

Memory is the peak RSS of a fresh child process (the exporter's way of opening a file: a file
object handed to ``VideoStream``; or the real CLI). It is the child's ``VmHWM``, read at its exit:
``ru_maxrss`` would not do, as Linux carries the forking parent's (pytest's) peak over ``exec``.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SMALL, cli_env

from radiomicsd.pipeline.container import ContainerFacts, sniff_container
from radiomicsd.pipeline.errors import (
    LyingContainer,
    SparseFile,
    TooLarge,
    Truncated,
    UnreadableContainer,
)
from radiomicsd.pipeline.video import (
    DECODE_THREADS,
    Limits,
    VideoStream,
    video_memory_ceiling,
)
from radiomicsd.testing.synthetic import write_clip

MB = 2**20
#: Generous bound on the peak RSS of refusing a file (the interpreter with OpenCV: ~70 MB; the
#: CLI: ~110 MB). Before the sniff, the sparse mp4 below cost 5.8 GB.
REFUSAL_RSS = 300 * MB
SPARSE_BYTES = 2 * 10**9

#: Run ``-m MODULE ARGS`` or ``-c CODE ARGS`` as ``__main__``; at exit, write this process's
#: peak RSS in bytes (VmHWM: of its own memory since ``exec``) to the file $PEAK_RSS_FILE.
PEAK = """
import atexit, os, runpy, sys

def report():
    with open("/proc/self/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_RSS_FILE"], "w") as out:
        out.write(str(kb * 1024))

atexit.register(report)
how, what, sys.argv = sys.argv[1], sys.argv[2], sys.argv[2:]
if how == "-m":
    runpy.run_module(what, run_name="__main__", alter_sys=True)
else:
    exec(compile(what, "<test>", "exec"), {"__name__": "__main__"})
"""

#: Decode one file as the exporter does (a file object, its size) and print the outcome.
DECODE = """
import os, sys
from radiomicsd.pipeline.errors import RadiomicsError
from radiomicsd.pipeline.video import VideoStream
with open(sys.argv[1], "rb") as f:
    try:
        with VideoStream(f, file_bytes=os.fstat(f.fileno()).st_size) as video:
            n = sum(1 for _ in video)
            video.check_complete()
        print("decoded", n)
    except RadiomicsError as exc:
        print("refused", exc.reason)
"""


def _measured(how: str, what: str, *args: str,
              env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """Run ``python -m what args`` (``how`` "-m") or ``python -c what args`` ("-c") in a
    fresh folder; return its exit code, stdout+stderr and its peak RSS in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        env = {**(os.environ if env is None else env), "PEAK_RSS_FILE": str(peak)}
        res = subprocess.run([sys.executable, "-c", PEAK, how, what, *args], cwd=tmp,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=600)
        return res.returncode, res.stdout, int(peak.read_text())


def _decode_measured(path: Path) -> tuple[str, int]:
    code, text, rss = _measured("-c", DECODE, str(path))
    assert code == 0, text
    return text.strip().splitlines()[-1], rss


def _sniff(path: Path, **limits: int) -> ContainerFacts:
    with open(path, "rb") as f:
        return sniff_container(f, size=os.fstat(f.fileno()).st_size, **limits)


# --- files made for the tests ----------------------------------------------------------------

def _sparse_mp4(path: Path) -> Path:
    """8 bytes of an ``ftyp`` header claiming the whole 2 GB file; the rest is holes."""
    with open(path, "wb") as f:
        f.write(struct.pack(">I4s", SPARSE_BYTES, b"ftyp"))
        os.ftruncate(f.fileno(), SPARSE_BYTES)
    return path


def _boxes(data: bytes | bytearray, start: int = 0,
           end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the 32-bit-sized ISO boxes in data[start:end]."""
    end = len(data) if end is None else end
    out, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((kind, pos, size))
        pos += size
    return out


def _find(data: bytes | bytearray, path: list[bytes], start: int = 0,
          end: int | None = None) -> list[tuple[int, int]]:
    """(offset, size) of every box at ``path`` (types, outermost first) below data[start:end]."""
    hits = []
    for kind, pos, size in _boxes(data, start, end):
        if kind == path[0]:
            hits += [(pos, size)] if len(path) == 1 else _find(data, path[1:], pos + 8,
                                                                 pos + size)
    return hits


STBL = [b"trak", b"mdia", b"minf", b"stbl"]


def _faststart(data: bytes) -> bytearray:
    """The mp4 with its ``moov`` moved in front of ``mdat`` and the chunk offsets shifted."""
    (kind, pos, size), *_ = [b for b in _boxes(data) if b[0] == b"moov"]
    assert pos + size == len(data), "OpenCV's writer puts moov last"
    moov = bytearray(data[pos:])
    for off, _ in _find(moov, [b"moov", *STBL, b"stco"]):
        (count,) = struct.unpack(">I", moov[off + 12:off + 16])
        for i in range(count):
            at = off + 16 + 4 * i
            moov[at:at + 4] = struct.pack(">I", struct.unpack(">I", moov[at:at + 4])[0] + size)
    assert not _find(moov, [b"moov", *STBL, b"co64"])
    ftyp_end = _boxes(data)[0][2]
    return bytearray(data[:ftyp_end]) + moov + data[ftyp_end:pos]


def _riff_size(data: bytes | bytearray) -> int:
    return int(struct.unpack("<I", data[4:8])[0])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The refused files, each next to what it was made from (``avi``, ``mp4``)."""
    root = tmp_path_factory.mktemp("containers")
    avi = write_clip(root / "clip.avi", 20, SMALL, fourcc="MJPG").path
    mp4 = write_clip(root / "clip.mp4", 20, SMALL, fourcc="mp4v").path
    assert avi is not None and mp4 is not None
    a, m = avi.read_bytes(), mp4.read_bytes()
    files = {"avi": avi, "mp4": mp4, "sparse": _sparse_mp4(root / "sparse.mp4")}

    def put(name: str, content: bytes | bytearray) -> None:
        files[name] = root / name
        files[name].write_bytes(content)

    put("truncated.mp4", m[:len(m) // 2])
    fast = _faststart(m)
    put("faststart.mp4", fast)
    (_, pos, size), = [b for b in _boxes(fast) if b[0] == b"mdat"]
    put("mdat_claims_more.mp4", fast[:pos] + struct.pack(">I", size + 2**30) + fast[pos + 4:])
    put("ftyp_spans_file.mp4", struct.pack(">I", len(m)) + m[4:])
    (pos, size), = _find(m, [b"moov", b"trak"])
    put("trak_overruns_moov.mp4", m[:pos] + struct.pack(">I", size + 64) + m[pos + 4:])
    (pos, _), = _find(m, [b"moov", *STBL, b"stsz"])
    put("stsz_lies.mp4", m[:pos + 16] + struct.pack(">I", 2**28) + m[pos + 20:])
    put("riff_lies.avi", a[:4] + struct.pack("<I", _riff_size(a) + 2**30) + a[8:])
    put("truncated.avi", a[:len(a) // 2])
    put("no_hdrl.avi", a[:12] + b"JUNK" + a[16:])
    return files


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, reason", [
    ("sparse", "sparse_file"),
    ("truncated.mp4", "truncated"),
    ("mdat_claims_more.mp4", "truncated"),
    ("ftyp_spans_file.mp4", "lying_container"),
    ("trak_overruns_moov.mp4", "lying_container"),
    ("stsz_lies.mp4", "lying_container"),
    ("riff_lies.avi", "lying_container"),
    ("truncated.avi", "truncated"),
    ("no_hdrl.avi", "unreadable_container"),
])
def test_refused_by_its_headers_with_bounded_memory(made, name, reason):
    outcome, rss = _decode_measured(made[name])
    assert outcome == f"refused {reason}"
    assert rss < REFUSAL_RSS, f"{rss / MB:.0f} MB to refuse {name}"


def test_sparse_file_costs_no_disk_and_is_refused_by_its_holes(made):
    st = os.stat(made["sparse"])
    assert st.st_size == SPARSE_BYTES and st.st_blocks * 512 < MB
    with pytest.raises(SparseFile, match="holes|allocated"):
        _sniff(made["sparse"])


def test_each_refusal_has_its_own_class(made):
    for name, cls in [("truncated.mp4", Truncated), ("mdat_claims_more.mp4", Truncated),
                      ("stsz_lies.mp4", LyingContainer),
                      ("riff_lies.avi", LyingContainer), ("truncated.avi", Truncated),
                      ("no_hdrl.avi", UnreadableContainer)]:
        with pytest.raises(cls):
            _sniff(made[name])


def test_the_refusals_are_for_the_sizes_not_the_layouts(made):
    """What the refused files were made from decodes whole: the faststart rewrite is a valid mp4
    (its twin whose mdat claims 1 GiB more, as a cut copy of it would, is refused for that
    only), and OpenCV itself opens the AVI whose RIFF size lies and that mp4: only the sniff
    stops them."""
    assert _decode_measured(made["faststart.mp4"])[0] == "decoded 20"
    assert _sniff(made["faststart.mp4"]) == ContainerFacts("iso_bmff", None, *SMALL, 20)
    for name in ("riff_lies.avi", "mdat_claims_more.mp4"):
        cap = cv2.VideoCapture(str(made[name]), cv2.CAP_FFMPEG)
        try:
            assert cap.isOpened()
        finally:
            cap.release()


def test_declared_size_and_frames_are_held_to_the_limits(made):
    for name in ("avi", "mp4"):
        facts = _sniff(made[name])
        assert (facts.width, facts.height, facts.frames) == (*SMALL, 20)
        with pytest.raises(TooLarge, match="max_frame_pixels"):
            _sniff(made[name], max_frame_pixels=SMALL[0] * SMALL[1] - 1)
        with pytest.raises(TooLarge, match="max_frames"):
            _sniff(made[name], max_frames=19)
        _sniff(made[name], max_frame_pixels=SMALL[0] * SMALL[1], max_frames=20)


def test_a_frame_larger_than_the_limit_is_refused_before_decoding(tmp_path):
    """4096 x 4096 (above the default max_frame_pixels): the headers say so, no frame is
    decoded (this clip peaked at 2.0 GB in the exporter before the limit was lowered)."""
    path = tmp_path / "big.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (4096, 4096))
    writer.write(np.full((4096, 4096, 3), (40, 90, 200), np.uint8))
    writer.release()
    assert Limits().max_frame_pixels < 4096 * 4096
    outcome, rss = _decode_measured(path)
    assert outcome == "refused too_large"
    assert rss < REFUSAL_RSS


# --- what must still pass --------------------------------------------------------------------

@pytest.mark.parametrize("fourcc, ext", [("MJPG", ".avi"), ("mp4v", ".mp4"), ("XVID", ".avi"),
                                          ("FFV1", ".avi"), ("MJPG", ".mkv"), ("mp4v", ".mov")])
def test_clips_written_by_the_generator_pass_and_decode(tmp_path, fourcc, ext):
    info = write_clip(tmp_path / f"clip{ext}", 18, (640, 480), fourcc=fourcc)
    assert info.path is not None
    facts = _sniff(info.path, **{"max_frame_pixels": 640 * 480, "max_frames": 18})
    kind = {".avi": "avi", ".mp4": "iso_bmff", ".mov": "iso_bmff", ".mkv": "other"}[ext]
    assert facts.kind == kind
    if kind != "other":
        assert (facts.width, facts.height, facts.frames) == (640, 480, 18)
    with open(info.path, "rb") as f, VideoStream(f, Limits(), info.path.stat().st_size) as v:
        assert sum(1 for _ in v) == 18
        v.check_complete()
        assert v.container == facts


def test_unknown_content_passes_to_ffmpeg_unchanged():
    stream = io.BytesIO(b"\x1aE\xdf\xa3" + bytes(64))  # an EBML (Matroska) start
    stream.seek(5)
    assert sniff_container(stream, size=68) == ContainerFacts("other")
    assert stream.tell() == 5, "the stream's position is restored"


def test_a_hole_free_file_reports_its_data_bytes(tmp_path):
    path = tmp_path / "dense.bin"
    path.write_bytes(os.urandom(2 * MB))
    assert _sniff(path).data_bytes == 2 * MB


def test_a_partly_sparse_file_passes_when_most_of_it_is_data(tmp_path):
    """Holes under half the file (e.g. a writer that pre-extended the end) are not refused."""
    path = tmp_path / "part.bin"
    with open(path, "wb") as f:
        f.write(os.urandom(3 * MB))
        os.ftruncate(f.fileno(), 5 * MB)
    assert _sniff(path).data_bytes == 3 * MB
    with open(path, "r+b") as f:
        os.ftruncate(f.fileno(), 7 * MB)
    with pytest.raises(SparseFile):
        _sniff(path)


# --- memory ----------------------------------------------------------------------------------

def _widest_mjpg(path: Path, side: int, frames: int) -> Path:
    """The widest image the detector exports: a linear probe's rectangle of moving speckle
    over ~75% of a square frame (more is refused as more than any probe's image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (side, side))
    rng = np.random.default_rng(0)
    x0, x1, y0, y1 = side // 16, side - side // 16, side // 10, side - side // 30
    for _ in range(frames):
        frame = np.zeros((side, side, 3), np.uint8)
        grain = rng.integers(0, 160, (y1 - y0, x1 - x0), np.uint8)
        frame[y0:y1, x0:x1] = cv2.GaussianBlur(grain, (3, 3), 0)[..., None]
        writer.write(frame)
    writer.release()
    return path


def test_decoder_threads_are_bounded(tmp_path):
    """FFmpeg's frame threads hold a frame each; OpenCV would start one per CPU."""
    info = write_clip(tmp_path / "clip.mp4", 4, SMALL, fourcc="mp4v")
    for threads in (DECODE_THREADS, 1, 3):
        with open(info.path, "rb") as f, VideoStream(f, decode_threads=threads) as video:
            assert video._cap.get(cv2.CAP_PROP_N_THREADS) == threads


def test_the_ceiling_grows_with_the_frames_held_and_the_threads():
    px = Limits().max_frame_pixels
    assert video_memory_ceiling(px) == 128 * px == 512 * MB
    assert video_memory_ceiling(px, lookahead_frames=32) == video_memory_ceiling(px) + 64 * px
    assert video_memory_ceiling(px, decode_threads=4) == video_memory_ceiling(px) + 6 * px


def _anonymise_measured(folder: Path, root: Path) -> tuple[int, str, int]:
    return _measured("-m", "radiomicsd", "anonymise", "-i", str(folder),
                     "-o", str(root / "out"), "--state", str(root / "state"),
                     "--select", "all", "--workers", "1", env=cli_env())


def test_anonymise_refuses_the_sparse_mp4_with_bounded_memory(made, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _sparse_mp4(folder / "echo.mp4")
    code, text, rss = _anonymise_measured(folder, tmp_path)
    assert code == 1, text
    assert "sparse_file" in text
    assert "echo.mp4" not in text
    assert rss < REFUSAL_RSS, f"{rss / MB:.0f} MB"


def test_one_video_stays_within_the_memory_ceiling(tmp_path):
    """The exporter's peak on the worst case (the widest image it exports, moving speckle over
    ~75% of the frame) at the largest default frame stays under :func:`video_memory_ceiling`
    above a floor measured in the same run on a 64 x 64 clip."""
    side = int(Limits().max_frame_pixels ** 0.5)
    peaks = []
    for n in (64, side):
        code, text, rss = _anonymise_measured(
            _widest_mjpg(tmp_path / f"in{n}" / "wide.avi", n, 18), tmp_path / f"run{n}")
        assert code == 0, text
        peaks.append(rss)
    floor, peak = peaks
    assert peak - floor <= video_memory_ceiling(side * side), \
        f"{(peak - floor) / MB:.0f} MB above the floor"
