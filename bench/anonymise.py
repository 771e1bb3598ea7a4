"""Benchmark of ``radiomicsd anonymise`` against a floor, ffmpeg and the 2019 pilot (issue 2).

Every contender runs as its own process on the same generated clips and is timed whole (start,
imports, decode, mask, PNG, writes, exit): frames per second = frames / wall seconds, median of
``--repeat`` runs. Contenders:

``ours``   ``radiomicsd anonymise -i CLIP -o OUT --workers 1`` (the console script)
``floor``  ``bench/floor.py``: decode, black box, ``cv2.imencode('.png')`` at defaults, write
``decode`` ``bench/floor.py --decode-only``: decoding alone, for orientation
``ffmpeg`` ``ffmpeg -i CLIP -vf format=rgb24,drawbox=...:t=fill OUT/%06d.png`` at its defaults,
           when ffmpeg is installed
``pilot``  ``bench/pilot_anonymise.py``: the pilot's algorithm (see ORIGINAL.md)

Then: two clips with ``--workers 2`` against ``--workers 1`` (throughput ratio; the two settings
alternate run by run, at least 5 pairs), again with clips 4x as long (the fixed start-up weighs
less); one clip alone with ``--workers 2`` against 1 (the idle slot encodes); and the peak RSS of
one run on a long clip against a short one.

The PNG bytes each contender wrote per frame are reported too: ours uses its own PNG writer (Sub
filter, ISA-L deflate), so its file sizes are part of the comparison; an in-process sweep over
the ``png.compression`` levels (and ``cv2.imencode`` for reference) shows why level 1 is the
default. CPU seconds (user +
system, from ``wait4``) are recorded beside wall seconds: the machine may be shared, and CPU time
shows what each contender costs regardless of what else runs. Prints a table; writes JSON
(default ``bench/results/anonymise.json``).

    python bench/anonymise.py [--frames 150] [--long-frames 1500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from radiomicsd.testing.synthetic import write_clip  # noqa: E402

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
TARGETS = {"floor": 0.9, "ffmpeg": 2.0, "pilot": 6.0, "workers2": 1.7, "rss_growth": 1.2}


@dataclass
class Run:
    wall: float
    cpu: float
    maxrss_kib: int


#: Runs one command and reports its wall seconds, CPU seconds and peak RSS as JSON. It is a small
#: process of its own because Linux carries a parent's resident size at fork into the child's
#: peak RSS: measured from this (large) process, every contender would show at least our size.
LAUNCHER = """
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()[-800:].decode(errors="replace")
_, status, ru = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
                  "rc": os.waitstatus_to_exitcode(status), "err": err}))
"""


def run_process(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``cmd`` to the end; wall seconds, CPU seconds and peak RSS of that process alone."""
    out = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *cmd], env=env,
                         capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    # 'ours' exits 1 only if an input failed; the bench inputs are all good.
    if doc["rc"] != 0:
        raise RuntimeError(f"{cmd[:3]} exited {doc['rc']}: {doc['err']}")
    return Run(doc["wall"], doc["cpu"], doc["maxrss_kib"])


def radiomicsd_cmd() -> list[str]:
    script = Path(sys.executable).with_name("radiomicsd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "radiomicsd"]


def env_for_ours() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADIOMICSD_")}
    env["RADIOMICSD_PSEUDONYM_KEY"] = KEY
    return env


def pilot_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pilot's box as (x0, y0, x1, y1): rows 0 .. h/6, columns 2w/3 - 10 .. w."""
    w, h = size
    return 2 * w // 3 - 10, 0, w, h // 6


def png_files(folder: Path) -> tuple[int, int]:
    """How many PNG files lie under ``folder`` and their total bytes."""
    sizes = [p.stat().st_size for p in folder.rglob("*.png")]
    return len(sizes), sum(sizes)


class Bench:
    def __init__(self, work: Path, repeat: int) -> None:
        self.work, self.repeat = work, repeat
        self.ffmpeg = shutil.which("ffmpeg")
        self.env = env_for_ours()

    def fresh(self, name: str) -> Path:
        path = self.work / "out" / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commands(self, clip: Path, size: tuple[int, int], out: Path) -> dict[str, list[str]]:
        box = [str(v) for v in pilot_box(size)]
        x0, y0, x1, y1 = pilot_box(size)
        cmds = {
            "ours": radiomicsd_cmd() + ["anonymise", "-i", str(clip), "-o", str(out),
                                        "--state", str(self.work / "state"), "--workers", "1"],
            "floor": [sys.executable, str(HERE / "floor.py"), str(clip), str(out), "--box", *box],
            "decode": [sys.executable, str(HERE / "floor.py"), str(clip), str(out), "--box",
                       *box, "--decode-only"],
            "pilot": [sys.executable, str(HERE / "pilot_anonymise.py"), str(clip.parent),
                      str(out)],
        }
        if self.ffmpeg:
            cmds["ffmpeg"] = [self.ffmpeg, "-nostdin", "-v", "error", "-i", str(clip), "-vf",
                              f"format=rgb24,drawbox=x={x0}:y={y0}:w={x1 - x0}:h={y1 - y0}:"
                              "color=black:t=fill", str(out / "%06d.png")]
        return cmds

    def measure(self, name: str, cmd: list[str], out: Path, frames: int | None) -> dict:
        runs, png_bytes = [], 0
        for i in range(self.repeat):
            runs.append(self.run_once(cmd, out))
            if i == 0 and frames is not None:
                got, png_bytes = png_files(out)
                if got != frames:
                    raise RuntimeError(f"{name} wrote {got} PNGs, expected {frames}")
        shutil.rmtree(out, ignore_errors=True)
        return summarise(runs) | {"png_bytes_per_frame": png_bytes / frames if frames else None}

    def run_once(self, cmd: list[str], out: Path) -> Run:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        return run_process(cmd, self.env)


def summarise(runs: list[Run]) -> dict:
    return {
        "wall_s": statistics.median(r.wall for r in runs),
        "cpu_s": statistics.median(r.cpu for r in runs),
        "maxrss_mib": statistics.median(r.maxrss_kib for r in runs) / 1024,
        "runs_wall_s": [round(r.wall, 4) for r in runs],
    }


def make_clips(folder: Path, frames: int) -> list[dict]:
    specs = [((640, 480), "MJPG", ".avi"), ((640, 480), "mp4v", ".mp4"),
             ((1016, 708), "MJPG", ".avi"), ((1016, 708), "mp4v", ".mp4")]
    clips = []
    for seed, (size, fourcc, ext) in enumerate(specs):
        label = f"{size[0]}x{size[1]} {fourcc}"
        sub = folder / f"clip{seed}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"clip{ext}"
        write_clip(path, frames, size, fourcc=fourcc, seed=seed)
        clips.append({"label": label, "path": path, "size": size, "frames": frames})
    return clips


def bench_clips(bench: Bench, clips: list[dict], skip_pilot: bool) -> list[dict]:
    rows = []
    for clip in clips:
        row = {"clip": clip["label"], "frames": clip["frames"]}
        for name in bench.commands(clip["path"], clip["size"], bench.work):
            if name == "pilot" and skip_pilot:
                continue
            out = bench.fresh(name)
            cmd = bench.commands(clip["path"], clip["size"], out)[name]
            expected = None if name == "decode" else clip["frames"]
            m = bench.measure(name, cmd, out, expected)
            m["fps"] = clip["frames"] / m["wall_s"]
            m["cpu_fps"] = clip["frames"] / m["cpu_s"]
            row[name] = m
            print(f"  {clip['label']:16s} {name:7s} wall {m['wall_s']:7.3f} s  "
                  f"cpu {m['cpu_s']:7.3f} s  {m['fps']:7.1f} fps  rss {m['maxrss_mib']:6.1f} MiB",
                  flush=True)
        ours = row["ours"]
        row["ratios"] = {k: ours["fps"] / row[k]["fps"] for k in ("floor", "ffmpeg", "pilot")
                         if k in row}
        row["cpu_ratios"] = {k: ours["cpu_fps"] / row[k]["cpu_fps"]
                             for k in ("floor", "ffmpeg", "pilot") if k in row}
        rows.append(row)
    return rows


def alternate_workers(bench: Bench, inp: Path, out: Path, frames: int,
                      repeat: int) -> dict[int, list[Run]]:
    """``anonymise -i INP`` with --workers 1 and 2, alternating ``repeat`` times, so that a noisy
    spell hits both settings alike; checks that each run wrote ``frames`` PNGs."""
    runs: dict[int, list[Run]] = {1: [], 2: []}
    for _ in range(repeat):
        for workers in (1, 2):
            cmd = radiomicsd_cmd() + ["anonymise", "-i", str(inp), "-o", str(out), "--state",
                                      str(bench.work / "state"), "--workers", str(workers)]
            runs[workers].append(bench.run_once(cmd, out))
            if png_files(out)[0] != frames:
                raise RuntimeError(f"--workers {workers} did not write {frames} PNGs")
    return runs


def bench_workers(bench: Bench, folder: Path, frames: int, repeat: int) -> dict:
    """Two clips: --workers 2 against --workers 1, throughput ratio (runs alternate)."""
    inp = folder / f"two-{frames}"
    inp.mkdir(parents=True, exist_ok=True)
    for seed in (11, 12):
        write_clip(inp / f"w{seed}.avi", frames, (640, 480), fourcc="MJPG", seed=seed)
    result: dict = {"clips": f"2 x 640x480 MJPG x {frames} frames", "frames": 2 * frames}
    runs = alternate_workers(bench, inp, bench.fresh("workers"), 2 * frames, repeat)
    for workers in (1, 2):
        m = summarise(runs[workers])
        m["fps"] = 2 * frames / m["wall_s"]
        result[f"workers{workers}"] = m
        print(f"  2 x {frames:4d} frames workers={workers} wall {m['wall_s']:7.3f} s  "
              f"cpu {m['cpu_s']:7.3f} s  {m['fps']:7.1f} fps", flush=True)
    result["ratio"] = result["workers2"]["fps"] / result["workers1"]["fps"]
    result["ratios_per_pair"] = [round(a.wall / b.wall, 3) for a, b in zip(runs[1], runs[2])]
    return result


def bench_one_video(bench: Bench, clip: dict, repeat: int) -> dict:
    """One clip alone: --workers 2 against --workers 1. The idle slot encodes frames while the
    worker decodes (daemon/frames.py); runs alternate."""
    runs = alternate_workers(bench, clip["path"], bench.fresh("one"), clip["frames"], repeat)
    result = {"clip": clip["label"], **{f"workers{n}": summarise(runs[n]) for n in (1, 2)}}
    result["ratio"] = result["workers1"]["wall_s"] / result["workers2"]["wall_s"]
    print(f"  one {clip['label']:12s} workers=1 wall {result['workers1']['wall_s']:.3f} s, "
          f"workers=2 {result['workers2']['wall_s']:.3f} s", flush=True)
    return result


def bench_startup(bench: Bench) -> dict:
    """Fixed cost of a process: ours on an empty folder against the floor's 'import cv2'."""
    empty = bench.work / "empty"
    empty.mkdir(exist_ok=True)
    out = bench.fresh("startup")
    ours = radiomicsd_cmd() + ["anonymise", "-i", str(empty), "-o", str(out), "--state",
                               str(bench.work / "state"), "--workers", "1"]
    result = {"ours": bench.measure("startup", ours, out, None),
              "floor": bench.measure("startup", [sys.executable, "-c", "import cv2"], out, None)}
    print(f"  startup          ours {result['ours']['wall_s']:.3f} s, floor (import cv2) "
          f"{result['floor']['wall_s']:.3f} s", flush=True)
    return result


def bench_memory(bench: Bench, folder: Path, short: int, long: int) -> dict:
    """Peak RSS of one anonymise run on a long clip against a short one (640x480 MJPG)."""
    result = {}
    for n in (short, long):
        path = folder / f"mem{n}" / "clip.avi"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(path, n, (640, 480), fourcc="MJPG", seed=21)
        out = bench.fresh(f"mem{n}")
        cmd = radiomicsd_cmd() + ["anonymise", "-i", str(path), "-o", str(out), "--state",
                                  str(bench.work / "state"), "--workers", "1"]
        m = bench.measure(f"mem{n}", cmd, out, n)
        result[str(n)] = m
        print(f"  memory {n:5d} frames  peak RSS {m['maxrss_mib']:6.1f} MiB  "
              f"wall {m['wall_s']:7.3f} s", flush=True)
    result["growth"] = result[str(long)]["maxrss_mib"] / result[str(short)]["maxrss_mib"]
    return result


def bench_png_levels(clips: list[dict], frames: int = 30) -> list[dict]:
    """In-process: ms and KiB per masked frame for each ``png.compression`` level, and for
    ``cv2.imencode`` at its defaults, on the first ``frames`` frames of each clip (best of 3)."""
    from radiomicsd.daemon.settings import load_settings
    from radiomicsd.pipeline.deid.mask import build_mask
    from radiomicsd.pipeline.png import LEVELS, encode_png

    settings = load_settings(None).mask
    rows = []
    for clip in clips:
        cap = cv2.VideoCapture(str(clip["path"]))
        decoded = [cap.read()[1] for _ in range(frames)]
        cap.release()
        mask = build_mask(decoded[:settings.lookahead_frames], settings)
        masked = [mask.apply(f) for f in decoded]
        coders = {f"level {n}": (lambda f, n=n: encode_png(f, n)) for n in LEVELS}
        coders["cv2.imencode"] = lambda f: cv2.imencode(".png", f)[1].tobytes()
        row = {"clip": clip["label"]}
        for name, encode in coders.items():
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                size = sum(len(encode(f)) for f in masked)
                best = min(best, time.perf_counter() - t)
            row[name] = {"ms": 1000 * best / frames, "kib": size / frames / 1024}
        rows.append(row)
        print(f"  {clip['label']:16s} " + ", ".join(
            f"{k} {v['ms']:.2f} ms {v['kib']:.0f} KiB" for k, v in row.items() if k != "clip"),
            flush=True)
    return rows


def verdict(value: float, target: float) -> str:
    return "ok" if value >= target else "BELOW"


def print_table(doc: dict) -> None:
    names = ["ours", "floor", "decode", "ffmpeg", "pilot"]
    print()
    print(f"load average before {doc['load_before']}, after {doc['load_after']}, "
          f"{doc['cpus']} CPUs; medians of {doc['repeat']} runs; fps = frames / wall s")
    head = f"| {'clip':16s} | " + " | ".join(f"{n:>14s}" for n in names)
    print(head + " | ours/floor | ours/ffmpeg | ours/pilot |")
    print("|" + "-" * (len(head) - 1) + "|------------|-------------|------------|")
    for row in doc["clips"]:
        cells = []
        for n in names:
            m = row.get(n)
            cells.append(f"{m['fps']:6.1f} ({m['wall_s']:5.2f}s)" if m else f"{'-':>14s}")
        ratios = []
        for k in ("floor", "ffmpeg", "pilot"):
            r = row["ratios"].get(k)
            ratios.append(f"{r:5.2f}x {verdict(r, TARGETS[k]):5s}" if r else "-")
        print(f"| {row['clip']:16s} | " + " | ".join(cells) + " | "
              + " | ".join(f"{r:>10s}" for r in ratios) + " |")
    print("\nCPU seconds (user + system) per run, medians:")
    for row in doc["clips"]:
        cpu = ", ".join(f"{n} {row[n]['cpu_s']:.2f}" for n in names if n in row)
        cr = ", ".join(f"ours/{k} {v:.2f}x" for k, v in row["cpu_ratios"].items())
        print(f"  {row['clip']:16s} {cpu}   [{cr}]")
    print("peak RSS (MiB) per run, medians:")
    for row in doc["clips"]:
        print(f"  {row['clip']:16s} " + ", ".join(f"{n} {row[n]['maxrss_mib']:.0f}"
                                                  for n in names if n in row))
    print("PNG KiB per frame written (lossless all; ffmpeg and the pilot at their defaults):")
    for row in doc["clips"]:
        print(f"  {row['clip']:16s} " + ", ".join(
            f"{n} {row[n]['png_bytes_per_frame'] / 1024:.0f}" for n in names
            if n in row and row[n].get("png_bytes_per_frame")))
    print("PNG writer per masked frame, in process (best of 3): ms / KiB")
    for row in doc["png_levels"]:
        print(f"  {row['clip']:16s} " + ", ".join(
            f"{k} {v['ms']:.2f} / {v['kib']:.0f}" for k, v in row.items() if k != "clip"))
    st = doc["startup"]
    print(f"\nstartup (no input): ours {st['ours']['wall_s']:.3f} s, floor's 'import cv2' "
          f"{st['floor']['wall_s']:.3f} s")
    for key in ("workers", "workers_long"):
        w = doc[key]
        # Amdahl: the start-up runs once either way; what the workers share is the rest
        rest = [w[f"workers{n}"]["wall_s"] - st["ours"]["wall_s"] for n in (1, 2)]
        print(f"2 workers vs 1 on {w['clips']}: {w['workers2']['fps']:.1f} vs "
              f"{w['workers1']['fps']:.1f} fps = {w['ratio']:.2f}x "
              f"({verdict(w['ratio'], TARGETS['workers2'])}, target >= {TARGETS['workers2']}x); "
              f"pair by pair: {', '.join(f'{r:.2f}' for r in w['ratios_per_pair'])}; "
              f"without the start-up: {rest[0] / rest[1]:.2f}x")
    one = doc["one_video"]
    rest = [one[f"workers{n}"]["wall_s"] - st["ours"]["wall_s"] for n in (1, 2)]
    print(f"one {one['clip']} clip alone, --workers 2 vs 1 (idle slot encodes): "
          f"{one['workers2']['wall_s']:.3f} vs {one['workers1']['wall_s']:.3f} s = "
          f"{one['ratio']:.2f}x faster; without the start-up: {rest[0] / rest[1]:.2f}x")
    mem = doc["memory"]
    keys = [k for k in mem if k != "growth"]
    print(f"peak RSS of one run, 640x480 MJPG: {keys[0]} frames "
          f"{mem[keys[0]]['maxrss_mib']:.1f} MiB, {keys[1]} frames "
          f"{mem[keys[1]]['maxrss_mib']:.1f} MiB = {mem['growth']:.3f}x "
          f"({'ok' if mem['growth'] <= TARGETS['rss_growth'] else 'ABOVE'}, target <= 1.2x)")
    print(f"ffmpeg: {doc['ffmpeg'] or 'not installed (skipped)'}; pilot saves with "
          f"{doc['pilot_writer']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per clip (150)")
    parser.add_argument("--long-frames", type=int, default=1500,
                        help="frames of the long clip of the memory check (1500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (3)")
    parser.add_argument("--skip-pilot", action="store_true", help="leave out the slow pilot")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "anonymise.json")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="radiomicsd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        bench = Bench(work, args.repeat)
        pilot_writer = "PIL" if _has_pil() else "cv2.imwrite (PIL not installed)"
        load_before = [round(x, 2) for x in os.getloadavg()]
        print(f"generating clips in {work} ...", flush=True)
        clips = make_clips(work / "clips", args.frames)
        doc = {
            "cpus": os.cpu_count(),
            "repeat": args.repeat,
            "load_before": load_before,
            "python": platform.python_version(),
            "opencv": cv2.__version__,
            "ffmpeg": _ffmpeg_version(bench.ffmpeg),
            "pilot_writer": pilot_writer,
            "pilot_box": "rows 0..h/6, columns 2w/3-10..w (floor and ffmpeg black the same box)",
            "targets": TARGETS,
        }
        doc["png_levels"] = bench_png_levels(clips)
        doc["clips"] = bench_clips(bench, clips, args.skip_pilot)
        doc["startup"] = bench_startup(bench)
        pairs = max(args.repeat, 5)
        doc["workers"] = bench_workers(bench, work / "clips", args.frames, pairs)
        doc["workers_long"] = bench_workers(bench, work / "clips", 4 * args.frames, pairs)
        doc["one_video"] = bench_one_video(bench, clips[0], pairs)
        doc["memory"] = bench_memory(bench, work / "clips", 150, args.long_frames)
        doc["load_after"] = [round(x, 2) for x in os.getloadavg()]
        print_table(doc)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _has_pil() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def _ffmpeg_version(path: str | None) -> str | None:
    if not path:
        return None
    out = subprocess.run([path, "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else path


if __name__ == "__main__":
    raise SystemExit(main())
