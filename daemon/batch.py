"""``radiomicsd anonymise``: process every video under a folder once, with a thread pool."""

from __future__ import annotations

import fcntl
import fnmatch
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TextIO

from radiomicsd.daemon.config import Config
from radiomicsd.daemon.frames import Slots
from radiomicsd.daemon.keys import load_age_identity, load_pseudonym_key
from radiomicsd.daemon.logs import get_logger, path_fields
from radiomicsd.daemon.output import remove_staging_leftovers
from radiomicsd.daemon.process import AnalyserFactory, Outcome, process_file
from radiomicsd.pipeline.errors import ConfigError, RadiomicsError

log = get_logger("radiomicsd.batch")
LOCK_NAME = ".radiomicsd.lock"


def ignored(name: str, patterns: Iterable[str]) -> bool:
    """True when a file name matches one of the ignore patterns (shell globs)."""
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def iter_inputs(root: Path, patterns: Iterable[str],
                exclude: Iterable[Path] = ()) -> Iterator[Path]:
    """Files under ``root`` in sorted order, not following symlinked folders.

    Symlinks are yielded (they are refused with a reason later, not silently dropped); folders
    in ``exclude`` (the output and state folders when they lie inside the input) are skipped.
    """
    patterns = list(patterns)
    skip = {p.resolve() for p in exclude}
    if not root.is_dir() or root.is_symlink():
        yield root
        return
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        keep = []
        for d in sorted(dirs):
            full = here / d
            if full.is_symlink():
                files.append(d)
            elif full.resolve() not in skip and not ignored(d, patterns):
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if not ignored(f, patterns):
                yield here / f


def lock_output(out_dir: Path) -> int:
    """Hold an exclusive lock on the output folder for this process's lifetime."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError("the output folder is in use by another radiomicsd process") from None
    return fd


class Progress:
    """A one-line progress bar on a terminal, plain lines otherwise; never shows names."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.tty = stream.isatty()
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def update(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1
            n = sum(self.counts.values())
            text = (f"{n}/{self.total}  done {self.counts['done']}  skipped "
                    f"{self.counts['skipped']}  failed {self.counts['failed']}")
            if self.tty:
                width = 30
                fill = int(width * n / max(1, self.total))
                self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {text}")
                if n == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(f"progress {text}\n")
            self.stream.flush()


def run_batch(cfg: Config, in_dir: Path, *, show_paths: bool = False,
              analyser_factory: AnalyserFactory | None = None, write_frames: bool = True,
              console: TextIO = sys.stdout) -> int:
    """Process every input under ``in_dir``; print a summary; return the exit code (0 or 1)."""
    out_dir, state_dir = cfg.path("output_dir"), cfg.path("state_dir")
    if not in_dir.exists():
        raise ConfigError("the input folder does not exist")
    state_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_output(out_dir)
    try:
        remove_staging_leftovers(out_dir)
        key, key_source = load_pseudonym_key(cfg)
        if key_source == "generated":
            console.write(f"generated a new pseudonym key in {state_dir}; keep it to get the same "
                          "pseudonyms next time\n")
        age_identity = load_age_identity(cfg)
        inputs = list(iter_inputs(in_dir, cfg["ignore_patterns"], [out_dir, state_dir]))
        progress = Progress(len(inputs), console)
        results: Counter[tuple[str, str]] = Counter()
        frames = 0
        slots = Slots(cfg.workers)

        def one(path: Path) -> tuple[str, str, Outcome | None]:
            try:
                outcome = process_file(path, cfg, key, age_identity=age_identity,
                                       analyser_factory=analyser_factory,
                                       write_frames=write_frames, slots=slots)
            except RadiomicsError as exc:
                log.warning("video.failed", reason=exc.reason, detail=exc.detail,
                            **path_fields(path))
                return "failed", exc.reason, None
            except FileNotFoundError:
                return "failed", "vanished", None
            except Exception as exc:  # a bug must not stop the run; it is counted and logged
                log.error("video.failed", reason="internal_error", error=type(exc).__name__,
                          **path_fields(path))
                return "failed", "internal_error", None
            log.info(f"video.{outcome.status}", reason=outcome.reason,
                     pseudonym=outcome.pseudonym, frames=outcome.frames,
                     seconds=round(outcome.seconds, 3), **path_fields(path))
            return outcome.status, outcome.reason or "", outcome

        with slots, ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            futures = [pool.submit(one, p) for p in inputs]
            for fut in as_completed(futures):
                status, reason, outcome = fut.result()
                results[(status, reason)] += 1
                frames += outcome.frames if outcome else 0
                progress.update(status)
        print_summary(results, frames, out_dir, console)
        return 1 if any(s == "failed" for s, _ in results) else 0
    finally:
        os.close(lock_fd)


def print_summary(results: Counter[tuple[str, str]], frames: int, out_dir: Path,
                  console: TextIO) -> None:
    """Processed / skipped / failed counts by reason code; the output folder, never inputs."""
    totals: dict[str, Any] = Counter()
    for (status, _), n in results.items():
        totals[status] += n
    console.write(f"summary: processed {totals['done']} ({frames} frames), skipped "
                  f"{totals['skipped']}, failed {totals['failed']}\n")
    for (status, reason), n in sorted(results.items()):
        if status != "done":
            console.write(f"  {status:8s} {reason:24s} {n}\n")
    console.write(f"output: {out_dir}\n")
