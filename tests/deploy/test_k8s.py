"""deploy/k8s/sidecar.yaml run for real by `podman kube play` (a kubelet stand-in): the receiver
container fills the shared emptyDir, radiomicsd de-identifies into the output claim."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from deploy.deploykit import REPO, wait_for

PREFIX = "deploytest-"  # claims become podman volumes; keep them apart from real ones


@pytest.fixture
def manifest(tmp_path: Path, sidecar_image: str) -> Path:
    """The example with the test image, and every volume name prefixed: kube play turns claims
    and emptyDirs into podman volumes by name, which must not meet anyone else's."""
    docs = list(yaml.safe_load_all((REPO / "deploy" / "k8s" / "sidecar.yaml").read_text()))
    pod = docs[0]["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == ["localhost/radiomicsd:latest"] * 2
    for c in pod["containers"]:
        c["image"] = sidecar_image
        for m in c["volumeMounts"]:
            m["name"] = PREFIX + m["name"]
    for v in pod["volumes"]:
        v["name"] = PREFIX + v["name"]
        if "persistentVolumeClaim" in v:
            v["persistentVolumeClaim"]["claimName"] = PREFIX + v["persistentVolumeClaim"][
                "claimName"]
    for doc in docs[1:]:
        doc["metadata"]["name"] = PREFIX + doc["metadata"]["name"]
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_k8s_example_runs_under_kube_play(podman, manifest: Path):
    played = False
    try:
        out = podman("play", "kube", "--network", "none", str(manifest), timeout=300)
        played = True
        pod = re.search(r"Pod:\s*\n(\w+)", out).group(1)
        names = dict(line.split() for line in podman(
            "ps", "--filter", f"pod={pod}", "--format", "{{.Names}} {{.ID}}").splitlines())
        daemon = next(cid for name, cid in names.items() if name.endswith("-radiomicsd"))
        mount = podman("volume", "inspect", "--format", "{{.Mountpoint}}",
                       PREFIX + "radiomicsd-output").strip()

        def outputs() -> dict[str, dict]:
            return {d.name: json.loads((d / "manifest.json").read_text())
                    for d in Path(mount).iterdir() if d.is_dir() and not d.name.startswith(".")}

        # The sample set: two Doppler clips (40 frames each) and a B-mode one that is skipped.
        done = wait_for("two outputs from the sample set", lambda: len(outputs()) == 2 and
                        outputs(), timeout=180)
        assert sorted(m["frames"] for m in done.values()) == [40, 40]
        # The liveness probe (radiomicsd-healthcheck) as podman runs it.
        wait_for("the probe to pass", lambda: podman.rc("healthcheck", "run", daemon) == 0,
                 timeout=60, every=1)
        podman("pod", "stop", "-t", "45", pod, timeout=120)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", daemon).strip() == "0"
    finally:
        if played:
            podman("play", "kube", "--down", str(manifest), check=False)
        for claim in ("radiomicsd-output", "radiomicsd-state"):
            podman("volume", "rm", "-f", PREFIX + claim, check=False)
