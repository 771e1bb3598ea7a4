"""Helpers for the deployment tests: podman with this host's settings, and polling."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE_IMAGE = "localhost/debian:bookworm"


def podman_run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """podman with tests/deploy/containers.conf (runc, cgroupfs, ulimits this host allows)."""
    env = dict(os.environ, CONTAINERS_CONF=str(HERE / "containers.conf"))
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


class Podman:
    """podman with this host's containers.conf; failures raise with podman's stderr."""

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        proc = podman_run(*args, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {proc.returncode}\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def both(self, *args: str, timeout: float = 120) -> str:
        """stdout and stderr together (`podman logs` splits the container's streams so)."""
        proc = podman_run(*args, timeout=timeout)
        return proc.stdout + proc.stderr

    def rc(self, *args: str, timeout: float = 120) -> int:
        return podman_run(*args, timeout=timeout).returncode

    def build(self, tag: str, *args: str) -> float:
        """Build REPO as context into ``tag``; returns seconds taken."""
        started = time.monotonic()
        self("build", "--quiet", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", *self.ca_secret(),
             "-t", tag, *args, str(REPO), timeout=1500)
        return time.monotonic() - started

    @staticmethod
    def ca_secret() -> list[str]:
        """The host's CA bundle as a build secret: pip in the build trusts what the host trusts
        (needed behind TLS-inspecting proxies, harmless elsewhere; never stored in a layer)."""
        for bundle in ("/etc/ssl/certs/ca-certificates.crt", ssl.get_default_verify_paths().cafile):
            if bundle and Path(bundle).is_file():
                return ["--secret", f"id=ca-bundle,src={bundle}"]
        return []


def wait_for(what: str, probe: Callable[[], object], timeout: float, every: float = 0.5):
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)

