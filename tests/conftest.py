"""Shared fixtures: the real ``radiomicsd`` CLI as a subprocess, and generated clips.

Keep this file generic: fixtures that only one test module needs belong in that module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg  # noqa: F401 - before any test imports TensorFlow (see daemon/service.py)
import pytest
from daemon_helpers import Daemon

from radiomicsd.testing.synthetic import ClipInfo, write_clip

REPO = Path(__file__).resolve().parent.parent

#: Fixed pseudonym keys (hex, 32 bytes): runs are reproducible and never touch a real key.
TEST_KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
OTHER_KEY = "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff"

#: Smallest frame size the synthetic layout accepts with room to spare (text beside the fan).
SMALL = (400, 240)


def cli_env(key: str | None = TEST_KEY, **extra: str) -> dict[str, str]:
    """Environment for a CLI run: the given pseudonym key (None: no key variable at all)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADIOMICSD_")}
    if key is not None:
        env["RADIOMICSD_PSEUDONYM_KEY"] = key
    env.update(extra)
    return env


def run_radiomicsd(*args: str | Path, key: str | None = TEST_KEY, timeout: float = 300,
                   preexec_fn: Callable[[], None] | None = None,
                   **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m radiomicsd ARGS`` and return the finished process (text stdout/stderr).

    stdout and stderr are pipes, so the CLI sees no terminal: plain progress lines, JSON logs.
    """
    cmd = [sys.executable, "-m", "radiomicsd", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=cli_env(key, **env), capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec_fn)


@pytest.fixture(scope="session")
def radiomicsd() -> Callable[..., subprocess.CompletedProcess[str]]:
    """The real CLI; see :func:`run_radiomicsd`."""
    return run_radiomicsd


@pytest.fixture(scope="module")
def clip_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ClipInfo]:
    """Write synthetic clips once per module: ``make(name, n_frames, size, **write_clip_kw)``.

    Each clip lies alone in its own folder (``info.path.parent``); asking twice for the same
    name and parameters returns the same clip without writing it again.
    """
    root = tmp_path_factory.mktemp("clips")
    made: dict[tuple, ClipInfo] = {}

    def make(name: str = "clip.avi", n_frames: int = 12, size: tuple[int, int] = SMALL,
             **kw) -> ClipInfo:
        key = (name, n_frames, tuple(size), tuple(sorted(kw.items())))
        if key not in made:
            folder = root / f"clip{len(made):03d}"
            folder.mkdir()
            made[key] = write_clip(folder / name, n_frames, tuple(size), **kw)
        return made[key]

    return make


@pytest.fixture(scope="module")
def clips(clip_factory) -> dict[str, bytes]:
    """Bytes of the module's synthetic clips (Doppler unless the name says B-mode)."""
    made = {
        "small": clip_factory("small.avi", 10, seed=11),
        "other": clip_factory("other.avi", 10, seed=12),
        "tiny": clip_factory("tiny.avi", 4, seed=13),
        "long": clip_factory("long.avi", 150, seed=14),
        "longer": clip_factory("longer.avi", 600, seed=17),  # ~1 s of work: surely in flight
        "bmode": clip_factory("bmode.avi", 10, seed=15, doppler=False),
        "bmode2": clip_factory("bmode2.avi", 10, seed=16, doppler=False),
    }
    return {k: info.path.read_bytes() for k, info in made.items()}


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    """``make(**settings)`` -> a :class:`Daemon` in a fresh folder; killed at teardown."""
    made: list[Daemon] = []

    def make(name: str = "d", **settings) -> Daemon:
        d = Daemon(tmp_path / name, **settings)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def install_wheel(tmp: Path) -> tuple[Path, dict[str, str], Path]:
    """Build this checkout's wheel and install it alone into a fresh prefix under ``tmp``.

    Returns (prefix, env, wheel). ``env`` gives the prefix the test environment's
    dependencies on PYTHONPATH without its editable-install hook (a .pth file), so imports
    in the prefix see the installed copy only.
    """
    pip = Path(sys.executable).parent / "pip"
    wheels = tmp / "wheels"
    subprocess.run([str(pip), "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True)
    [wheel] = wheels.glob("radiomicsd-*.whl")
    prefix = tmp / "prefix"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    # --ignore-installed: without it pip would first remove the editable install running this
    subprocess.run([str(pip), "install", "-q", "--no-deps", "--no-compile", "--ignore-installed",
                    "--prefix", str(prefix), str(wheel)], check=True, capture_output=True)
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    return prefix, {**os.environ, "PYTHONPATH": str(deps)}, wheel


@pytest.fixture(scope="session")
def pg_server() -> Iterator:
    """A real PostgreSQL server for the session (tests/pgserver.py); skipped where Debian's
    postgresql is missing, except in CI (``make`` installs it)."""
    from pgserver import PgServer, bindir

    if bindir() is None:
        assert not os.environ.get("CI"), "PostgreSQL server missing in CI (make installs it)"
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql)")
    server = PgServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def journal_url(pg_server) -> str:
    """A fresh, empty database on the session's server; its URL has no password."""
    return pg_server.new_database()
