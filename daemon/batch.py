"""``radiomicsd anonymise``: process every input under a folder once, with a thread pool."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TextIO

from radiomicsd.daemon.attempt import attempt, log_outcome
from radiomicsd.daemon.beneath import InputRoot, make_private_dir
from radiomicsd.daemon.discovery import iter_inputs
from radiomicsd.daemon.export import AnalyserFactory, Exporter, Outcome
from radiomicsd.daemon.frames import Slots
from radiomicsd.daemon.keys import load_age_identity, load_pseudonym_key
from radiomicsd.daemon.logs import get_logger
from radiomicsd.daemon.output import OutputFolder, remove_staging_leftovers
from radiomicsd.daemon.settings import Settings, check_host
from radiomicsd.daemon.shard import Shard
from radiomicsd.pipeline.errors import ConfigError

log = get_logger("radiomicsd.batch")

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


def run_batch(settings: Settings, in_dir: Path, *,
              analyser_factory: AnalyserFactory | None = None, write_frames: bool = True,
              shard: Shard | None = None, console: TextIO = sys.stdout) -> int:
    """Process every input under ``in_dir`` (of ``shard`` only, when given); print a summary;
    return the exit code (0 or 1).

    A sharded run shares the output folder with the other shards and leaves staging leftovers
    alone (they may be another shard's work in flight; the next unsharded run or daemon start
    removes them)."""
    out_dir, state_dir = settings.output_dir, settings.state_dir
    if not in_dir.exists():
        raise ConfigError("the input folder does not exist")
    check_host(settings)
    make_private_dir(state_dir)
    with OutputFolder(out_dir, shared=shard is not None):
        if shard is None:
            remove_staging_leftovers(out_dir)
        key, key_source = load_pseudonym_key(key_file=settings.pseudonym_key_file,
                                             state_dir=state_dir)
        if key_source == "generated":
            console.write(f"generated a new pseudonym key in {state_dir}; keep it to get the same "
                          "pseudonyms next time\n")
        age_identity = load_age_identity(settings.age.identity_file)
        inputs = list(iter_inputs(in_dir, settings.ignore_patterns, [out_dir, state_dir]))
        log.debug("batch.inputs", count=len(inputs), workers=settings.worker_count)
        progress = Progress(len(inputs), console)
        results: Counter[tuple[str, str]] = Counter()
        frames = 0
        workers = settings.worker_count
        top = in_dir if in_dir.is_dir() and not in_dir.is_symlink() else in_dir.parent
        with InputRoot(top) as root, Slots(workers) as slots, \
                ThreadPoolExecutor(max_workers=workers) as pool:
            exporter = Exporter.from_settings(settings, key=key, slots=slots,
                                              analyser_factory=analyser_factory,
                                              write_frames=write_frames)

            def one(path: Path) -> Outcome:
                outcome = attempt(exporter, path, root=root, age_identity=age_identity,
                                  decrypt_tmp_dir=settings.decrypt_tmp_dir, shard=shard)
                log_outcome(outcome, action=outcome.status.value, path=path)
                return outcome

            futures = [pool.submit(one, p) for p in inputs]
            for fut in as_completed(futures):
                outcome = fut.result()
                results[(outcome.status.value, outcome.reason or "")] += 1
                frames += outcome.frames
                progress.update(outcome.status.value)
        print_summary(results, frames, out_dir, console)
        return 1 if any(s == "failed" for s, _ in results) else 0


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
