"""Bench: the per-video RHD analysis, ours against the 2019 pilot's, on generated clips.

On one generated PLAX colour-Doppler clip (default 150 frames of 240 x 320, the pilot's frame
size) it measures, in the same run:

- wall and CPU seconds per video of ``pipeline.rhd.analysis`` end to end (segmentation, view
  CNN, textures, grade), the models loaded beforehand, best of two runs, with the default
  settings (every third frame votes on the view) and with every frame voting, as the pilot did;
- wall and CPU seconds per video of the pilot's algorithm (``pilot_analysis.py``), same
  models; with ``--pilot-frames N`` it runs on the first N frames only and the times are
  scaled to the clip linearly (the table says so);
- the Doppler-mask IoU of our segmentation against the pilot's per-frame k-means, frame by frame,
  on that clip and on a harder clip whose flow is velocity-shaded and noisy (dark rims near the
  cluster rule's brightness edge);
- whether the views and RHD labels agree, on the same frames, and how close the 57 features
  and the decision values are: generated clips lie far outside the RHD model's training data
  (decision values in the thousands, always "normal"), so the label alone proves little;
- traced Python/numpy memory peaks of our analysis on a streamed clip and on one twice as long.

Prints a table and writes ``bench/results/analysis.json``. Run: ``python bench/analysis.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pilot_analysis

from radiomicsd.pipeline.rhd import segmentation
from radiomicsd.pipeline.rhd.analysis import AnalysisSettings, analyse_frames
from radiomicsd.pipeline.rhd.grade import RhdModel, default_rhd_model_path
from radiomicsd.pipeline.rhd.view import get_view_classifier
from radiomicsd.testing.synthetic import render_clip

RESULTS = Path(__file__).resolve().parent / "results" / "analysis.json"


def shaded_flow_clip(n_frames: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """A PLAX clip whose flow is velocity-shaded: colour from dark to bright, with noise.

    Frames of ``render_clip(doppler=False)`` (anatomy, text, ECG) with two flow regions painted
    inside the fan, coloured by a device-like map of a smooth velocity field plus noise: red to
    yellow towards the probe, blue to cyan away, and no colour below a wall-filter threshold.
    """
    frames, info = render_clip(n_frames, size, view="plax", doppler=False, seed=seed)
    w, h = size
    fan = info.sector_mask
    (ax, ay), radius = info.sector.apex, info.sector.radius
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i, frame in enumerate(frames):
        phase = (i / 25.0) % 1.0
        v = np.zeros((h, w), np.float32)
        for angle, depth, r, sign in ((-8.0, 0.5, 0.12, 1.0), (9.0, 0.45, 0.10, -1.0)):
            a = math.radians(angle + 4.0 * math.sin(2 * math.pi * phase))
            cx, cy = ax + depth * radius * math.sin(a), ay + depth * radius * math.cos(a)
            d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (r * radius) ** 2
            v += sign * np.exp(-d2) * (0.7 + 0.3 * math.cos(2 * math.pi * phase))
        v += rng.normal(0.0, 0.08, v.shape).astype(np.float32) * (np.abs(v) > 0.1)
        v = np.clip(v, -1.0, 1.0)
        flow = (np.abs(v) > 0.15) & fan
        speed = np.abs(v)
        bright = np.clip(speed * 1.6, 0, 1) * 255
        colour = np.stack(
            [
                np.where(v < 0, bright, 0),
                np.clip(speed - 0.6, 0, 1) / 0.4 * 200,
                np.where(v > 0, bright, 0),
            ],
            axis=-1,
        ).astype(np.uint8)
        frame[flow] = colour[flow]
        out.append(frame)
    return out


def mask_agreement(
    frames: list[np.ndarray],
    settings: AnalysisSettings,
    pilot_masks: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """Doppler-mask IoU, ours vs the pilot's per-frame k-means, and seconds per frame of each.

    ``pilot_iou_other_seed`` is the pilot against itself with another k-means seed: how far the
    pilot's own masks move between runs, the ceiling of any agreement with it.
    """
    t0 = time.perf_counter()
    palette = segmentation.fit_doppler_palette(
        frames[: settings.palette_frames], settings.sample_pixels, settings.seed
    )
    ours = [
        segmentation.segment_frame(f, palette, settings.kmeans_restarts, settings.seed).mask
        for f in frames
    ]
    t1 = time.perf_counter()
    other = [segmentation.segment_frame_pilot(f, seed=settings.seed + 1).mask for f in frames]
    t2 = time.perf_counter()
    if pilot_masks is None:
        pilot_masks = [segmentation.segment_frame_pilot(f, seed=settings.seed).mask for f in frames]
    ious = [segmentation.mask_iou(a, b) for a, b in zip(ours, pilot_masks, strict=True)]
    self_ious = [segmentation.mask_iou(a, b) for a, b in zip(other, pilot_masks, strict=True)]
    return {
        "frames": len(frames),
        "iou_mean": float(np.mean(ious)),
        "iou_min": float(np.min(ious)),
        "pilot_iou_other_seed_mean": float(np.mean(self_ious)),
        "pilot_iou_other_seed_min": float(np.min(self_ious)),
        "ours_s_per_frame": (t1 - t0) / len(frames),
        "pilot_s_per_frame": (t2 - t1) / len(frames),
        "doppler_fraction": float(np.mean([m.mean() for m in pilot_masks])),
    }


def traced_peak_mb(n_frames: int, size, seed, settings, classifier, rhd) -> float:
    """Peak traced memory (MB) of our analysis over a lazily generated clip (TF's own C++
    allocations are not traced; frames, segmentations, CNN inputs and features are)."""
    frames, _ = render_clip(n_frames, size, view="plax", doppler=True, seed=seed)
    tracemalloc.start()
    try:
        analyse_frames(frames, settings, classifier, rhd)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="240x320", help="W x H of the generated clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pilot-frames", type=int, default=0, help="time the pilot on the first N frames (0: all)"
    )
    parser.add_argument("--shaded-frames", type=int, default=60)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    settings = AnalysisSettings(seed=args.seed)
    load_before = os.getloadavg()

    frames = list(render_clip(args.frames, size, view="plax", doppler=True, seed=args.seed)[0])
    classifier = get_view_classifier()
    rhd = RhdModel.from_json(default_rhd_model_path())
    for n in (1, settings.batch_size):  # first calls build the graph; not part of either time
        classifier.predict(np.zeros((n, 320, 240, 1), np.float32))
    print(f"cv2 threads {cv2.getNumThreads()}, frames {len(frames)} of {size[0]}x{size[1]}")

    every = replace(settings, view_every=1)
    ours_times: dict[str, list[float]] = {"default": [], "every_frame": []}
    ours_cpu: dict[str, list[float]] = {"default": [], "every_frame": []}
    for _ in range(2):
        for key, s in (("default", settings), ("every_frame", every)):
            t, c = time.perf_counter(), time.process_time()
            r = analyse_frames(frames, s, classifier, rhd)
            ours_times[key].append(time.perf_counter() - t)
            ours_cpu[key].append(time.process_time() - c)
            if key == "default":
                ours = r
            else:
                ours_every = r
    ours_s = min(ours_times["default"])
    ours_every_s = min(ours_times["every_frame"])

    n_pilot = args.pilot_frames or len(frames)
    t, c = time.perf_counter(), time.process_time()
    pilot = pilot_analysis.analyse(
        frames[:n_pilot], classifier, rhd, keep_masks=True, seed=args.seed
    )
    pilot_measured = time.perf_counter() - t
    pilot_s = pilot_measured * len(frames) / n_pilot
    pilot_cpu = (time.process_time() - c) * len(frames) / n_pilot
    compared = (
        ours
        if n_pilot == len(frames)
        else analyse_frames(frames[:n_pilot], settings, classifier, rhd)
    )
    ours_x = None if compared.features is None else np.array(list(compared.features.values()))
    same = {
        "frames_compared": n_pilot,
        "view": {"pilot": pilot.view, "ours": compared.view},
        "label": {"pilot": pilot.label, "ours": compared.grade.label if compared.grade else None},
        "decision": {
            "pilot": None if pilot.label is None else rhd.decision(pilot.features),
            "ours": _decision(rhd, compared),
        },
        "features_max_relative_difference": None
        if ours_x is None or pilot.features is None
        else float(
            np.nanmax(np.abs(ours_x - pilot.features) / np.maximum(np.abs(pilot.features), 1e-12))
        ),
    }
    same["labels_agree"] = (
        same["view"]["pilot"] == same["view"]["ours"]
        and same["label"]["pilot"] == same["label"]["ours"]
    )

    agreement = mask_agreement(frames, settings, pilot.masks if n_pilot == len(frames) else None)
    shaded = mask_agreement(shaded_flow_clip(args.shaded_frames, size, args.seed + 1), settings)
    peak_1 = traced_peak_mb(args.frames, size, args.seed, settings, classifier, rhd)
    peak_2 = traced_peak_mb(2 * args.frames, size, args.seed, settings, classifier, rhd)

    result = {
        "clip": {"frames": len(frames), "size": list(size), "view": "plax", "seed": args.seed},
        "settings": settings.__dict__,
        "ours": {
            "seconds_per_video": ours_s,
            "runs": ours_times["default"],
            "cpu_seconds_per_video": min(ours_cpu["default"]),
            "status": ours.status,
            "view": ours.view,
            "view_fractions": ours.view_fractions,
            "view_frames": ours.view_frames,
            "label": ours.grade.label if ours.grade else None,
            "probability": ours.grade.probability if ours.grade else None,
            "decision": _decision(rhd, ours),
            "doppler_fraction": ours.doppler_fraction,
        },
        "ours_every_frame_votes": {
            "seconds_per_video": ours_every_s,
            "runs": ours_times["every_frame"],
            "cpu_seconds_per_video": min(ours_cpu["every_frame"]),
            "view": ours_every.view,
            "view_fractions": ours_every.view_fractions,
            "label": ours_every.grade.label if ours_every.grade else None,
        },
        "pilot": {
            "seconds_per_video": pilot_s,
            "frames_timed": n_pilot,
            "extrapolated": n_pilot != len(frames),
            "seconds_measured": pilot_measured,
            "cpu_seconds_per_video": pilot_cpu,
            "seconds_by_stage": pilot.seconds,
            "view": pilot.view,
            "label": pilot.label,
            "probability": pilot.probability,
        },
        "speedup": pilot_s / ours_s,
        "speedup_every_frame_votes": pilot_s / ours_every_s,
        "cpu_speedup": pilot_cpu / min(ours_cpu["default"]),
        "cpu_speedup_every_frame_votes": pilot_cpu / min(ours_cpu["every_frame"]),
        "same_frames": same,
        "labels_agree": same["labels_agree"],
        "segmentation": agreement,
        "segmentation_shaded_flow": shaded,
        "memory": {
            "traced_peak_mb": {str(args.frames): peak_1, str(2 * args.frames): peak_2},
            "note": "tracemalloc: Python and numpy allocations; TensorFlow's own are not traced",
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": _cpus(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    _print_table(result)
    m = result["machine"]
    print(f"load average before {m['load_average_before']}, after {m['load_average_after']}")
    print(f"written: {args.out}")
    return 0


def _decision(rhd: RhdModel, result) -> float | None:
    if result.features is None or result.grade is None:
        return None
    return rhd.decision(np.array(list(result.features.values())))


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _print_table(r: dict) -> None:
    p, o, same = r["pilot"], r["ours"], r["same_frames"]
    n = r["clip"]["frames"]
    note = f" (timed on {p['frames_timed']} frames, scaled to {n})" if p["extrapolated"] else ""
    seg, shaded = r["segmentation"], r["segmentation_shaded_flow"]
    rows = [
        ("per-video seconds, pilot" + note, f"{p['seconds_per_video']:.1f}"),
        ("per-video seconds, ours", f"{o['seconds_per_video']:.2f}"),
        ("speed-up (pilot / ours)", f"{r['speedup']:.1f}x"),
        ("per-video seconds, ours with every frame voting",
         f"{r['ours_every_frame_votes']['seconds_per_video']:.2f}"),
        ("speed-up with every frame voting", f"{r['speedup_every_frame_votes']:.1f}x"),
        ("CPU seconds pilot / ours / ours every frame voting",
         f"{p['cpu_seconds_per_video']:.1f} / {o['cpu_seconds_per_video']:.2f} / "
         f"{r['ours_every_frame_votes']['cpu_seconds_per_video']:.2f}"),
        ("CPU speed-up / with every frame voting",
         f"{r['cpu_speedup']:.1f}x / {r['cpu_speedup_every_frame_votes']:.1f}x"),
        ("pilot stages (s): seg / view / texture", _stages(p["seconds_by_stage"])),
        ("segmentation s/frame, pilot vs ours",
         f"{seg['pilot_s_per_frame']:.3f} vs {seg['ours_s_per_frame']:.4f}"),
        (f"Doppler-mask IoU, generated clip ({seg['frames']} fr)", _iou(seg)),
        (f"Doppler-mask IoU, shaded-flow clip ({shaded['frames']} fr)", _iou(shaded)),
        (f"view pilot / ours ({same['frames_compared']} fr)",
         f"{same['view']['pilot']} / {same['view']['ours']}"),
        ("view fractions ours / ours every frame voting", f"{_fr(o['view_fractions'])} / "
         f"{_fr(r['ours_every_frame_votes']['view_fractions'])}"),
        (f"RHD label pilot / ours ({same['frames_compared']} fr)",
         f"{same['label']['pilot']} / {same['label']['ours']} "
         f"({'agree' if r['labels_agree'] else 'DIFFER'})"),
        ("RHD decision value pilot / ours",
         f"{_num(same['decision']['pilot'])} / {_num(same['decision']['ours'])}"),
        ("57 features, max relative difference", _num(same["features_max_relative_difference"])),
        ("traced peak MB, 1x / 2x clip length",
         " / ".join(f"{v:.1f}" for v in r["memory"]["traced_peak_mb"].values())),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def _iou(a: dict) -> str:
    return (
        f"mean {a['iou_mean']:.4f}, min {a['iou_min']:.4f} (pilot vs pilot, other seed: "
        f"{a['pilot_iou_other_seed_mean']:.4f}, {a['pilot_iou_other_seed_min']:.4f})"
    )


def _stages(s: dict) -> str:
    return " / ".join(f"{s[k]:.1f}" for k in ("segmentation", "view", "texture"))


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _fr(fractions: dict[str, float]) -> str:
    return ",".join(f"{k}:{v:.2f}" for k, v in fractions.items())


if __name__ == "__main__":
    raise SystemExit(main())
