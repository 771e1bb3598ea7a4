"""Deployment tests: real podman containers, real systemd as PID 1.

They take minutes, need root and a prepared host (tests/deploy/setup.sh), so `make test` only
collects them and skips them, saying why at the end of its output; `make test-deploy` (run by
.ci/run after `make test`) prepares the host and runs them with RADIOMICSD_DEPLOY_TESTS=1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from deploy.deploykit import BASE_IMAGE, HERE, Podman, podman_run

SIDECAR_IMAGE = "localhost/radiomicsd:deploy-test"

ENABLE_ENV = "RADIOMICSD_DEPLOY_TESTS"
_SKIPPED = pytest.StashKey[tuple[int, "str | None"]]()


def _why_not() -> str | None:
    """Why the deploy tests cannot run here, or None when they can."""
    if os.environ.get(ENABLE_ENV) != "1":
        return f"{ENABLE_ENV}=1 not set; run `make test-deploy` (root, podman; minutes)"
    if os.geteuid() != 0:
        return "needs root (rootful podman, --privileged systemd container)"
    if shutil.which("podman") is None:
        return "podman not installed; tests/deploy/setup.sh installs it"
    if podman_run("image", "exists", BASE_IMAGE).returncode != 0:
        return f"base image {BASE_IMAGE} missing; tests/deploy/setup.sh builds it"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deploy = [i for i in items if HERE in Path(str(i.path)).parents]
    if not deploy:
        return
    reason = _why_not()
    config.stash[_SKIPPED] = (len(deploy), reason) if reason else (0, None)
    if reason:
        for item in deploy:
            item.add_marker(pytest.mark.skip(reason=f"deploy tests skipped: {reason}"))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    count, reason = config.stash.get(_SKIPPED, (0, None))
    if count:
        terminalreporter.write_line(f"tests/deploy: {count} tests SKIPPED: {reason}", yellow=True)


@pytest.fixture(scope="session")
def podman() -> Podman:
    return Podman()


@pytest.fixture(scope="session")
def say(request: pytest.FixtureRequest):
    """Print a measurement into the run's output, even with -q and captured output."""
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        with capman.global_and_fixture_disabled():
            print(f"\n[deploy] {line}", flush=True)
    return say


@pytest.fixture(scope="session")
def sidecar_image(podman: Podman, say) -> str:
    """The top-level Dockerfile built on the local base image (docker format keeps
    HEALTHCHECK, which OCI image metadata has no field for)."""
    seconds = podman.build(SIDECAR_IMAGE, "--format", "docker")
    size = int(podman("image", "inspect", "--format", "{{.Size}}", SIDECAR_IMAGE).strip())
    say(f"sidecar image built in {seconds:.0f}s, size {size / 1e6:.0f} MB")
    return SIDECAR_IMAGE
