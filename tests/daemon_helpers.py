"""Run ``radiomicsd watch`` as a real process on real folders, and inspect what it left behind.

Used by ``tests/test_watch.py`` and ``bench/daemon.py``. Nothing here mocks the daemon: a
:class:`Daemon` is a folder tree (input, output, state, quarantine, done), a YAML config and
a subprocess whose JSON log lines (stderr) are parsed into events.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

from radiomicsd.pipeline.deid.pseudonym import pseudonym

REPO = Path(__file__).resolve().parent.parent

#: The pseudonym key every daemon here runs with (hex, 32 bytes; never a real key).
KEY_HEX = "5ca1ab1e0ddba11c0ffee0ddf00dfeedfacadebeadcafe0123456789abcdef00"
KEY = bytes.fromhex(KEY_HEX)


def radiomicsd_cmd() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m radiomicsd``."""
    exe = Path(sys.executable).with_name("radiomicsd")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "radiomicsd"]


def daemon_env(**extra: str) -> dict[str, str]:
    """The test environment without any RADIOMICSD_/NOTIFY_/WATCHDOG_ variable, plus the key."""
    drop = ("RADIOMICSD_", "NOTIFY_SOCKET", "WATCHDOG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["RADIOMICSD_PSEUDONYM_KEY"] = KEY_HEX
    env.update(extra)
    return env


def pseudonym_of(data: bytes) -> str:
    """The pseudonym the daemon gives to a file holding exactly ``data``."""
    return pseudonym(KEY, hashlib.sha256(data).digest())


def variant(data: bytes, tag: str) -> bytes:
    """Distinct content that decodes to the same video: FFmpeg ignores bytes after the AVI."""
    return data + b"radiomicsd-test-trailer:" + tag.encode()


def drop_atomic(data: bytes, target: Path) -> None:
    """Write ``target.part`` beside the target (an ignored name), then rename it into place."""
    part = target.with_name(target.name + ".part")
    part.write_bytes(data)
    os.rename(part, target)


def wait_until(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


class Daemon:
    """One daemon installation under ``root``; start/stop/kill it as often as a test needs.

    ``settings`` overlay the test defaults (1 worker, 0.5 s settle, metrics on a free port,
    JSON logs). Each start appends its log to ``root/log-<n>.jsonl``.
    """

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.input = root / "in"
        self.output = root / "out"
        self.state = root / "state"
        self.quarantine = root / "quarantine"
        self.done = root / "done"
        self.input.mkdir(parents=True, exist_ok=True)
        self.settings: dict[str, Any] = {
            "input_dir": str(self.input), "output_dir": str(self.output),
            "state_dir": str(self.state), "quarantine_dir": str(self.quarantine),
            "done_dir": str(self.done), "workers": 1, "settle_seconds": 0.5,
            "incomplete_grace_seconds": 1.0,
            "rescan_seconds": 30.0, "metrics": {"port": 0},
            "logging": {"format": "json", "level": "info"},
        }
        self.settings.update(settings)
        for attr in ("input", "output", "state", "quarantine", "done"):
            setattr(self, attr, Path(self.settings[f"{attr}_dir"]))
        self.config = root / "radiomicsd.yml"
        self.write_config()
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.log_paths: list[Path] = []

    # -- process -------------------------------------------------------------------------------
    def write_config(self, **changes: Any) -> None:
        self.settings.update(changes)
        self.config.write_text(yaml.safe_dump(self.settings, sort_keys=False))

    def start(self, wait_ready: bool = True, prefix: Sequence[str] = (),
              **env: str) -> subprocess.Popen[bytes]:
        """Start ``radiomicsd watch -c CONFIG``; by default wait for its ``watch.ready`` event."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        log_path = self.root / f"log-{self.runs}.jsonl"
        self.log_paths.append(log_path)
        self._log = open(log_path, "wb")  # noqa: SIM115 - outlives this call; closed in _reap()
        port_file = self.state / "metrics.port"
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [*prefix, *radiomicsd_cmd(), "watch", "-c", str(self.config)], cwd=self.root,
            env=daemon_env(**env), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        if wait_ready:
            self.wait_event("watch.ready", timeout=60)
        return self.proc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _reap(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        finally:
            self._log.close()
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self._reap(timeout)

    def kill9(self) -> int:
        return self.stop(signal.SIGKILL, timeout=30)

    def close(self) -> None:
        """Teardown: kill a daemon a failed test left running."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- logs ----------------------------------------------------------------------------------
    def log_text(self, run: int | None = None) -> str:
        paths = self.log_paths if run is None else [self.log_paths[run - 1]]
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def events(self, name: str | None = None, run: int | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log lines (all runs by default), optionally only those named ``name``."""
        out = []
        for line in self.log_text(run).splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and (name is None or doc.get("event") == name):
                out.append(doc)
        return out

    def wait_event(self, name: str, count: int = 1, timeout: float = 60,
                   run: int | None = None, step: float = 0.1) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events ``name`` were logged (in ``run``, default: the
        current run); fails early if the daemon exits."""
        run = self.runs if run is None else run

        def seen() -> list[dict[str, Any]] | None:
            found = self.events(name, run)
            if len(found) >= count:
                return found
            if not self.alive():
                raise AssertionError(f"daemon exited ({self.proc and self.proc.returncode}) "
                                     f"before {count} x {name}:\n{self.log_text(run)[-3000:]}")
            return None

        return wait_until(seen, timeout, f"{count} x {name}", step)

    def count(self, name: str) -> int:
        return len(self.events(name))

    # -- monitoring ----------------------------------------------------------------------------
    def http(self, path: str) -> tuple[int, str]:
        """GET ``path`` from the metrics server: (status, body)."""
        port = int(wait_until(lambda: _read(self.state / "metrics.port"), 30, "metrics.port"))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    # -- outputs -------------------------------------------------------------------------------
    def outputs(self) -> dict[str, dict[str, Any]]:
        """Committed outputs: pseudonym -> manifest (raises if a folder has no manifest)."""
        if not self.output.is_dir():
            return {}
        found = {}
        for d in sorted(self.output.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                found[d.name] = json.loads((d / "manifest.json").read_text())
        return found

    def staging_leftovers(self) -> list[str]:
        if not self.output.is_dir():
            return []
        return sorted(p.name for p in self.output.iterdir() if p.name.startswith(".staging-"))

    def check_complete(self, expected: set[str], decode: bool = True,
                       staging_allowed: bool = False) -> None:
        """Exactly the ``expected`` pseudonyms were exported, each complete (every frame the
        manifest states, each PNG decodes), and nothing is left in staging (unless allowed:
        right after a kill -9, before the restart cleans up)."""
        outs = self.outputs()
        assert set(outs) == expected, (sorted(set(outs) - expected),
                                       sorted(expected - set(outs)))
        if not staging_allowed:
            assert self.staging_leftovers() == []
        for name, manifest in outs.items():
            folder = self.output / name
            pngs = sorted(p.name for p in folder.glob("*.png"))
            assert manifest["pseudonym"] == name
            assert pngs == [f"{i:06d}.png" for i in range(manifest["frames"])], name
            if decode:
                for p in pngs:
                    assert cv2.imread(str(folder / p)) is not None, f"{name}/{p} does not decode"

    def journal(self, table: str = "videos") -> list[dict[str, Any]]:
        """All rows of a journal table (read-only)."""
        assert table in ("videos", "files")
        db = sqlite3.connect(f"file:{self.state / 'journal.sqlite3'}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]
        finally:
            db.close()

    def journal_files(self) -> list[dict[str, Any]]:
        return self.journal("files")

    def quarantine_notes(self) -> list[dict[str, Any]]:
        if not self.quarantine.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.quarantine.glob("q-*.json"))]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a process in KiB (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise ValueError("no VmHWM")


def drop_dac_prefix() -> list[str]:
    """A command prefix under which root no longer bypasses file permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv(1) is missing: chmod 000 cannot block reads")
    caps = "-dac_override,-dac_read_search"
    probe = subprocess.run([setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("setpriv cannot drop CAP_DAC_OVERRIDE here")
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
