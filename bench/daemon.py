"""Benchmark of ``radiomicsd watch`` (issue 3): throughput, latency, idle CPU and peak RSS.

The daemon runs as a real process (``radiomicsd watch -c CONFIG``, the product's default
``settle_seconds`` unless told otherwise) in a fresh folder tree per configuration, with 1 and
then 2 workers. Clips are one generated Doppler clip made distinct by a trailing tag (FFmpeg
ignores bytes after the AVI), written beside the input folder and renamed in (atomic drops).

``throughput``  N clips renamed in at once; videos per minute in steady state,
                (N - 1) / (last commit - first commit), and end to end, N / (last commit -
                first drop). Daemon CPU seconds per video from /proc/<pid>/stat.
``latency``     M clips dropped one at a time into an idle daemon: from the moment the rename
                returned to the moment ``OUT/<pseudonym>/`` (which appears complete, with its
                manifest, by one rename) was seen; output folder polled every 5 ms. p50, p95.
                The daemon's own histogram (settled -> committed) is read from /metrics.
``idle CPU``    utime + stime of the daemon over ``--idle-seconds`` with nothing to do (inotify
                observer; optionally the polling observer too), as % of one core.
``peak RSS``    VmHWM of the daemon at the end of each configuration.

Targets: 2 workers >= 1.6x the steady throughput of 1; p50 latency <= settle_seconds + 1.5x
the clip's processing time in ``radiomicsd anonymise`` (its ``video.done`` seconds, median of
3 runs); idle CPU < 1% of a core. Prints a table, writes JSON (default
``bench/results/daemon.json``). The machine may be shared: load averages are recorded.

    python bench/daemon.py [--clips 24] [--latency-clips 12] [--settle 2.0] [--idle-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from daemon_helpers import (  # noqa: E402
    Daemon,
    cpu_seconds,
    daemon_env,
    peak_rss_kib,
    pseudonym_of,
    radiomicsd_cmd,
    variant,
    wait_until,
)

from radiomicsd.testing.synthetic import write_clip  # noqa: E402

TARGETS = {"workers2_ratio": 1.6, "latency_p50_factor": 1.5, "idle_cpu_percent": 1.0}


class CommitWatcher:
    """Notes the monotonic time each ``OUT/<pseudonym>`` folder is first seen."""

    def __init__(self, out: Path, period: float = 0.005) -> None:
        self.out, self.period = out, period
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                names = os.listdir(self.out)
            except FileNotFoundError:
                names = []
            now = time.monotonic()
            for name in names:
                if name not in self.seen and not name.startswith("."):
                    if not (self.out / name / "manifest.json").is_file():
                        raise AssertionError(f"output {name} visible without its manifest")
                    self.seen[name] = now
            self._stop.wait(self.period)

    def wait_for(self, names: list[str], timeout: float) -> list[float]:
        wait_until(lambda: all(n in self.seen for n in names), timeout,
                   f"{len(names)} outputs", step=0.02)
        return [self.seen[n] for n in names]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def anonymise_baseline(work: Path, clip: Path, repeat: int = 3) -> dict:
    """Per-clip processing seconds of ``radiomicsd anonymise --workers 1`` (its video.done)."""
    seconds, walls = [], []
    for i in range(repeat):
        out = work / f"anon-out-{i}"
        t0 = time.monotonic()
        r = subprocess.run([*radiomicsd_cmd(), "anonymise", "-i", str(clip), "-o", str(out),
                            "--workers", "1", "--log-format", "json"], cwd=work,
                           env=daemon_env(), capture_output=True, text=True, timeout=600)
        walls.append(time.monotonic() - t0)
        if r.returncode != 0:
            raise RuntimeError(f"anonymise failed: {r.stderr[-2000:]}")
        done = [json.loads(line) for line in r.stderr.splitlines() if '"video.done"' in line]
        seconds.append(done[0]["seconds"])
        shutil.rmtree(out, ignore_errors=True)
    return {"processing_s": statistics.median(seconds), "runs_s": seconds,
            "process_wall_s": statistics.median(walls)}


def drop(d: Daemon, staging: Path, data: bytes, name: str) -> float:
    """Write ``data`` beside the input, rename it in; return the time the rename returned."""
    src = staging / name
    src.write_bytes(data)
    os.rename(src, d.input / name)
    return time.monotonic()


def hist_mean(before: str, after: str, name: str) -> float | None:
    """Mean of a Prometheus histogram over the observations between two scrapes."""
    def sums(body: str) -> tuple[float, float]:
        values = dict(re.findall(rf"^{name}_(sum|count) (\S+)$", body, re.M))
        return float(values.get("sum", 0)), float(values.get("count", 0))

    (s0, n0), (s1, n1) = sums(before), sums(after)
    return round((s1 - s0) / (n1 - n0), 3) if n1 > n0 else None


def measure(work: Path, clip: bytes, workers: int, n_burst: int, n_latency: int,
            settle: float, idle_seconds: float) -> dict:
    d = Daemon(work / f"workers{workers}", workers=workers, settle_seconds=settle,
               rescan_seconds=60.0, queue_size=64)
    staging = d.root / "staging"
    staging.mkdir()
    d.start()
    try:
        pid = d.pid
        watcher = CommitWatcher(d.output)
        # throughput: a burst
        burst = [variant(clip, f"burst-w{workers}-{i}") for i in range(n_burst)]
        for i, data in enumerate(burst):
            (staging / f"b{i:04d}.avi").write_bytes(data)
        cpu0 = cpu_seconds(pid)
        t_first_drop = time.monotonic()
        for i in range(n_burst):
            os.rename(staging / f"b{i:04d}.avi", d.input / f"b{i:04d}.avi")
        commits = sorted(watcher.wait_for([pseudonym_of(c) for c in burst], 60 + 30 * n_burst))
        cpu1 = cpu_seconds(pid)
        steady = (n_burst - 1) / (commits[-1] - commits[0]) * 60
        end_to_end = n_burst / (commits[-1] - t_first_drop) * 60
        d.wait_event("video.done", n_burst, timeout=60)
        after_burst = d.http("/metrics")[1]
        # latency: one at a time into an idle daemon
        latencies = []
        for i in range(n_latency):
            data = variant(clip, f"latency-w{workers}-{i}")
            t0 = drop(d, staging, data, f"l{i:04d}.avi")
            (t1,) = watcher.wait_for([pseudonym_of(data)], 120)
            latencies.append(t1 - t0)
            d.wait_event("video.done", n_burst + i + 1, timeout=60)
        watcher.stop()
        body = d.http("/metrics")[1]
        idle = None
        if idle_seconds:
            time.sleep(1.0)
            c0 = cpu_seconds(pid)
            time.sleep(idle_seconds)
            idle = (cpu_seconds(pid) - c0) / idle_seconds * 100
        rss = peak_rss_kib(pid)
        observer = d.events("observer.started")[0]["observer"]
    finally:
        rc = d.stop()
    if rc != 0:
        raise RuntimeError(f"daemon exited {rc}")
    if d.count("video.done") != n_burst + n_latency:
        raise RuntimeError("not every clip was exported exactly once")
    return {
        "workers": workers, "observer": observer,
        "throughput_per_min": round(steady, 1), "throughput_end_to_end_per_min":
            round(end_to_end, 1),
        "cpu_s_per_video": round((cpu1 - cpu0) / n_burst, 3),
        "latency_s": [round(x, 3) for x in latencies],
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "daemon_latency_mean_s": hist_mean(after_burst, body, "radiomicsd_latency_seconds"),
        "daemon_processing_mean_s": {
            "burst": hist_mean("", after_burst, "radiomicsd_processing_seconds"),
            "one_at_a_time": hist_mean(after_burst, body, "radiomicsd_processing_seconds")},
        "idle_cpu_percent": None if idle is None else round(idle, 3),
        "peak_rss_mib": round(rss / 1024, 1),
    }


def idle_polling(work: Path, clip: bytes, files: int, idle_seconds: float) -> dict:
    """Idle CPU with the polling observer over an input folder holding ``files`` handled files."""
    d = Daemon(work / "polling", observer="polling", rescan_seconds=60.0)
    for i in range(files):
        (d.input / f"p{i:04d}.avi").write_bytes(variant(clip, f"poll-{i}"))
    d.start()
    try:
        d.wait_event("video.done", files, timeout=60 + 30 * files)
        time.sleep(1.0)
        c0 = cpu_seconds(d.pid)
        time.sleep(idle_seconds)
        idle = (cpu_seconds(d.pid) - c0) / idle_seconds * 100
    finally:
        d.stop()
    return {"observer": "polling", "files_in_input": files, "idle_cpu_percent": round(idle, 3)}


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_table(doc: dict) -> None:
    base = doc["anonymise"]
    print()
    print(f"load average before {doc['load_before']}, after {doc['load_after']}, {doc['cpus']} "
          f"CPUs; clip {doc['clip']['size']} x {doc['clip']['frames']} frames MJPG "
          f"({doc['clip']['bytes'] / 1e6:.2f} MB); settle_seconds {doc['settle_seconds']}")
    print(f"radiomicsd anonymise, one clip: processing {base['processing_s']:.3f} s "
          f"(median of {base['runs_s']}), whole process {base['process_wall_s']:.2f} s")
    head = ("| workers | videos/min steady | videos/min e2e | CPU s/video | latency p50 | "
            "latency p95 | daemon mean | idle CPU % | peak RSS MiB |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in doc["runs"]:
        idle = "-" if r["idle_cpu_percent"] is None else f"{r['idle_cpu_percent']:.3f}"
        mean = r["daemon_latency_mean_s"]
        print(f"| {r['workers']:7d} | {r['throughput_per_min']:17.1f} | "
              f"{r['throughput_end_to_end_per_min']:14.1f} | {r['cpu_s_per_video']:11.3f} | "
              f"{r['latency_p50_s']:9.3f} s | {r['latency_p95_s']:9.3f} s | "
              f"{mean:9.3f} s | {idle:>10s} | {r['peak_rss_mib']:12.1f} |")
    print("latency: rename returned -> OUT/<pseudonym> seen, clips one at a time; daemon mean: "
          "its own histogram (settled -> committed) over the same clips")
    v = doc["verdicts"]
    print(f"2 workers / 1 worker (steady): {v['workers2_ratio']:.2f}x, target >= "
          f"{TARGETS['workers2_ratio']}x: {verdict(v['workers2_ok'])}")
    print(f"p50 latency (1 worker) {v['latency_p50_s']:.3f} s, target <= settle "
          f"{doc['settle_seconds']} + 1.5 x {base['processing_s']:.3f} = "
          f"{v['latency_target_s']:.3f} s: {verdict(v['latency_ok'])}")
    print(f"idle CPU (inotify) {v['idle_cpu_percent']:.3f}% of a core, target < "
          f"{TARGETS['idle_cpu_percent']}%: {verdict(v['idle_ok'])}")
    if doc.get("idle_polling"):
        p = doc["idle_polling"]
        print(f"idle CPU with the polling observer ({p['files_in_input']} files in the input): "
              f"{p['idle_cpu_percent']:.3f}% of a core (for comparison; no target)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24, help="clips per burst (24)")
    parser.add_argument("--latency-clips", type=int, default=12,
                        help="clips dropped one at a time for latency (12)")
    parser.add_argument("--frames", type=int, default=48, help="frames per clip (48)")
    parser.add_argument("--size", default="640x480", help="clip size WxH (640x480)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="settle_seconds (2.0, the product default)")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle window (30)")
    parser.add_argument("--polling-idle", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure idle CPU with the polling observer (on)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "daemon.json")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))

    work = args.workdir or Path(tempfile.mkdtemp(prefix="radiomicsd-bench-daemon-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        load_before = [round(x, 2) for x in os.getloadavg()]
        clip_path = work / "clip" / "clip.avi"
        clip_path.parent.mkdir()
        write_clip(clip_path, args.frames, (w, h), seed=7)
        clip = clip_path.read_bytes()
        print(f"clip {w}x{h} x {args.frames} frames; anonymise baseline ...", flush=True)
        doc: dict = {
            "cpus": os.cpu_count(), "load_before": load_before,
            "python": platform.python_version(), "settle_seconds": args.settle,
            "clip": {"size": f"{w}x{h}", "frames": args.frames, "bytes": len(clip)},
            "clips_per_burst": args.clips, "latency_clips": args.latency_clips,
            "idle_seconds": args.idle_seconds, "targets": TARGETS,
            "anonymise": anonymise_baseline(work, clip_path),
        }
        runs = []
        for workers in (1, 2):
            print(f"daemon with {workers} worker(s) ...", flush=True)
            runs.append(measure(work, clip, workers, args.clips, args.latency_clips,
                                args.settle, args.idle_seconds if workers == 1 else 0))
        doc["runs"] = runs
        if args.polling_idle and args.idle_seconds:
            print("idle CPU with the polling observer ...", flush=True)
            doc["idle_polling"] = idle_polling(work, clip, 12, args.idle_seconds)
        doc["load_after"] = [round(x, 2) for x in os.getloadavg()]
        ratio = runs[1]["throughput_per_min"] / runs[0]["throughput_per_min"]
        target = args.settle + TARGETS["latency_p50_factor"] * doc["anonymise"]["processing_s"]
        doc["verdicts"] = {
            "workers2_ratio": round(ratio, 3),
            "workers2_ok": ratio >= TARGETS["workers2_ratio"],
            "latency_p50_s": runs[0]["latency_p50_s"],
            "latency_target_s": round(target, 3),
            "latency_ok": runs[0]["latency_p50_s"] <= target,
            "idle_cpu_percent": runs[0]["idle_cpu_percent"],
            "idle_ok": runs[0]["idle_cpu_percent"] < TARGETS["idle_cpu_percent"],
        }
        print_table(doc)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
