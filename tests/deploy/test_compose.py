"""deploy/compose.yaml brought up with podman-compose: the receiver stand-in fills the shared
input volume, radiomicsd de-identifies into the output volume, both stop with exit code 0."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.deploykit import HERE, REPO, wait_for

COMPOSE = shutil.which("podman-compose", path=str(Path(sys.executable).parent)) or \
    shutil.which("podman-compose")
PROJECT = "deploytest-compose"  # volume and container names are prefixed with it


def compose_too_old() -> str | None:
    """Why this podman-compose cannot run the example, or None."""
    if COMPOSE is None:
        return "podman-compose not installed (PyPI podman-compose >= 1.1)"
    out = subprocess.run([COMPOSE, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"podman-compose version:? (\d+)\.(\d+)", out.stdout + out.stderr)
    if found is None or tuple(map(int, found.groups())) < (1, 1):
        # Debian bookworm's 1.0.3 adds a network to `network_mode: none` services and fails.
        return f"podman-compose too old ({found.group(0) if found else 'unknown'}); need >= 1.1"
    return None


TOO_OLD = compose_too_old()


@pytest.mark.skipif(TOO_OLD is not None, reason=str(TOO_OLD))
def test_compose_example(podman, sidecar_image: str, tmp_path: Path):
    # Same file, with the image just built instead of a build of its own.
    override = tmp_path / "override.yaml"
    override.write_text("services:\n" + "".join(
        f"  {s}:\n    image: {sidecar_image}\n" for s in ("receiver", "radiomicsd")))
    env = dict(os.environ, CONTAINERS_CONF=str(HERE / "containers.conf"))

    def compose(*args: str) -> None:
        subprocess.run([COMPOSE, "-p", PROJECT, "-f", str(REPO / "deploy" / "compose.yaml"),
                        "-f", str(override), *args], env=env, check=True,
                       capture_output=True, timeout=300)

    try:
        compose("up", "-d", "--no-build")
        mount = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}",
                            f"{PROJECT}_output").strip())

        def outputs() -> dict[str, dict]:
            return {d.name: json.loads((d / "manifest.json").read_text())
                    for d in mount.iterdir() if d.is_dir() and not d.name.startswith(".")}

        done = wait_for("two outputs from the sample set", lambda: len(outputs()) == 2 and
                        outputs(), timeout=180)
        assert sorted(m["frames"] for m in done.values()) == [40, 40]
        compose("stop")
        for service in ("radiomicsd", "receiver"):
            code = podman("inspect", "--format", "{{.State.ExitCode}}",
                          f"{PROJECT}_{service}_1").strip()
            assert code == "0", f"{service} exited with {code}"
    finally:
        subprocess.run([COMPOSE, "-p", PROJECT, "-f", str(REPO / "deploy" / "compose.yaml"),
                        "-f", str(override), "down", "-v"], env=env, capture_output=True,
                       timeout=300, check=False)
