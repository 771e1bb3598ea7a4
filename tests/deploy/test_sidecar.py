"""The sidecar image, built from the top-level Dockerfile and run as an operator would run it:
bind-mounted input/output/state, read-only root, no capabilities, no network."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from deploy.deploykit import wait_for
from radiomicsd.testing.synthetic import write_clip

NAME = "radiomicsd-sidecar-test"
UID = 10001  # the image's USER
SIZE = (400, 240)


def outputs(out: Path) -> dict[str, dict]:
    """Complete outputs by pseudonym (a folder appears only with its manifest)."""
    return {d.name: json.loads((d / "manifest.json").read_text())
            for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")}


def slow_write(data: bytes, target: Path, seconds: float) -> None:
    """One open, many small writes spread over ``seconds``: an upload in progress."""
    chunks = 12
    step = -(-len(data) // chunks)
    with open(target, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(seconds / chunks)


def test_sidecar_processes_drops_and_stops_cleanly(sidecar_image, podman, tmp_path, say):
    dirs = {n: tmp_path / n for n in ("input", "output", "state")}
    for d in dirs.values():
        d.mkdir()
        os.chown(d, UID, UID)
    podman("rm", "-f", NAME, check=False)
    started = time.monotonic()
    podman("run", "-d", "--name", NAME, "--network=none", "--read-only", "--cap-drop=ALL",
           "--security-opt=no-new-privileges", "--health-interval=disable",
           *(f"-v={d}:/data/{n}" for n, d in dirs.items()), sidecar_image)
    try:
        # The image's HEALTHCHECK, run by podman inside the container: /healthz answers 200.
        wait_for("podman healthcheck run to pass",
                 lambda: podman.rc("healthcheck", "run", NAME) == 0, timeout=60, every=1)
        say(f"sidecar healthy {time.monotonic() - started:.1f}s after podman run")

        # An atomic drop: written under an ignored hidden name, renamed when complete.
        hidden = dirs["input"] / ".upload-atomic.avi"
        a = write_clip(hidden, n_frames=12, size=SIZE, seed=1)
        hidden.rename(dirs["input"] / "atomic.avi")
        # A slow writer: the final name from the first byte, written over ~3 s.
        staged = tmp_path / "slow.avi"
        b = write_clip(staged, n_frames=30, size=SIZE, fourcc="XVID", seed=2)
        slow_write(staged.read_bytes(), dirs["input"] / "slow.avi", seconds=3)

        done = wait_for("both outputs", lambda: len(outputs(dirs["output"])) == 2 and
                        outputs(dirs["output"]), timeout=120)
        frames = sorted(m["frames"] for m in done.values())
        assert frames == [a.n_frames, b.n_frames], "a slow upload was cut short"
        for pseudonym, manifest in done.items():
            pngs = list((dirs["output"] / pseudonym).glob("*.png"))
            assert len(pngs) == manifest["frames"]

        # Stop while a larger video is in flight (its staging folder exists): the daemon
        # finishes it within shutdown_timeout, exits 0, and no staging folder is left behind.
        write_clip(dirs["input"] / ".big.avi", n_frames=150, size=(640, 480), seed=3)
        (dirs["input"] / ".big.avi").rename(dirs["input"] / "big.avi")
        wait_for("big.avi in flight", lambda: list(dirs["output"].glob(".staging-*")),
                 timeout=60, every=0.1)
        t0 = time.monotonic()
        podman("stop", "-t", "60", NAME, timeout=120)
        say(f"podman stop with a video in flight took {time.monotonic() - t0:.1f}s")
        assert podman("inspect", "--format", "{{.State.ExitCode}}", NAME).strip() == "0"
        left = [p.name for p in dirs["output"].glob(".staging-*")]
        assert left == [], f"partial output after stop: {left}"
        done = outputs(dirs["output"])
        assert sorted(m["frames"] for m in done.values()) == [12, 30, 150]

        # Started again on the same volumes (lock, journal, key in state/): healthy, no rework.
        podman("start", NAME)
        wait_for("healthy after restart",
                 lambda: podman.rc("healthcheck", "run", NAME) == 0, timeout=60, every=1)
        assert outputs(dirs["output"]) == done
        podman("stop", "-t", "60", NAME, timeout=120)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", NAME).strip() == "0"

        # Privacy by default: the container's log never names an input.
        logs = podman.both("logs", NAME)
        for name in ("atomic", "slow.avi", "big.avi"):
            assert name not in logs, f"input name {name!r} in the container log"
    finally:
        podman("rm", "-f", NAME, check=False)

