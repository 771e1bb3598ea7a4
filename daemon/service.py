"""``radiomicsd watch``: the daemon's main loop, workers, failure policy and shutdown.

One main thread owns detection (events, start-up scan, periodic rescan, settling), dispatch into
a bounded work queue, result handling, and the systemd/health signals. Worker threads only run
:func:`daemon.process.process_file`. A file is dispatched once per content version; the journal
decides, by content digest, whether the content still needs work.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radiomicsd.daemon.batch import iter_inputs, lock_output
from radiomicsd.daemon.config import Config, load_config
from radiomicsd.daemon.disposal import dispose_input, quarantine_input
from radiomicsd.daemon.frames import Slots
from radiomicsd.daemon.journal import FileStamp, Journal
from radiomicsd.daemon.keys import check_attestation, load_age_identity, load_pseudonym_key
from radiomicsd.daemon.logs import get_logger, path_fields
from radiomicsd.daemon.metrics import HealthServer, Metrics
from radiomicsd.daemon.notify import Notifier
from radiomicsd.daemon.output import remove_staging_leftovers
from radiomicsd.daemon.process import AnalyserFactory, Cancelled, Outcome, process_file
from radiomicsd.daemon.watcher import EnqueueHandler, SettleTracker, make_observer, stamp_of
from radiomicsd.pipeline.errors import ConfigError, ContentChanged, InputError, RadiomicsError

log = get_logger("radiomicsd.watch")
TICK_SECONDS = 0.25
#: /healthz turns 503 when the main loop has not completed a pass for this long.
LOOP_STALE_SECONDS = 30.0
#: Refusals that a file still being written would also produce: held back for a grace period.
MAYBE_INCOMPLETE = frozenset({"truncated", "no_frames", "unreadable_container", "empty_file"})
STALL_ENV = "RADIOMICSD_TEST_STALL_AFTER"


@dataclass
class Job:
    """One file version handed to a worker."""

    path: Path
    stamp: FileStamp
    settled_at: float
    attempt: int = 1


@dataclass
class Result:
    job: Job
    outcome: Outcome | None = None
    error: RadiomicsError | None = None
    unexpected: str | None = None


@dataclass
class Retry:
    job: Job
    due: float
    reason: str = field(default="")


class Service:
    """The watching daemon. ``run()`` blocks until stopped; returns the exit code."""

    def __init__(self, cfg: Config, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.in_dir = cfg.path("input_dir").resolve()
        self.out_dir = cfg.path("output_dir").resolve()
        self.state_dir = cfg.path("state_dir").resolve()
        self.quarantine_dir = cfg.path("quarantine_dir").resolve()
        self.done_dir = cfg.path("done_dir").resolve()
        self.excluded = [self.out_dir, self.state_dir, self.quarantine_dir, self.done_dir]
        self.stop_event = threading.Event()
        #: set by events, results and signals: the main loop runs at once instead of at its tick
        self.wake = threading.Event()
        self.cancel_event = threading.Event()
        self.reload_requested = False
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.work: queue.Queue[Job | None] = queue.Queue(maxsize=cfg["queue_size"])
        self.results: queue.Queue[Result] = queue.Queue()
        self.backlog: list[Job] = []
        self.retries: list[Retry] = []
        self.suspects: dict[Path, Retry] = {}
        self.last_loop = time.monotonic()
        self.in_flight: set[Path] = set()
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.workers: list[threading.Thread] = []
        self.watching = False
        self.totals = {"done": 0, "skipped": 0, "quarantined": 0, "retried": 0}
        self.analyser_factory: AnalyserFactory | None = None

    # -- start-up ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        cfg = self.cfg
        if cfg["require_attestation"]:
            check_attestation(cfg)
        for d in (self.in_dir, self.out_dir, self.state_dir, self.quarantine_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.lock_fd = lock_output(self.out_dir)
        self.key, key_source = load_pseudonym_key(cfg, allow_generate=not cfg["enclave_mode"])
        if key_source == "generated":
            log.warning("key.generated", detail="new pseudonym key written to the state folder")
        self.age_identity = load_age_identity(cfg)
        mode = "delete" if cfg["enclave_mode"] and cfg["journal_mode"] == "wal" else \
            cfg["journal_mode"]
        self.journal = Journal(self.state_dir / "journal.sqlite3", mode, self.key,
                               cfg["record_paths"])
        left = remove_staging_leftovers(self.out_dir)
        requeued = self.journal.requeue_unfinished()
        if left or requeued:
            log.info("recovery", staging_removed=left, requeued=requeued)
        if cfg["analysis"]["enabled"]:
            from radiomicsd.daemon.analysis import analyser_factory

            self.analyser_factory = analyser_factory(cfg)

    def _start_observer(self) -> None:
        kind = "polling" if self.cfg["enclave_mode"] else self.cfg["observer"]
        handler = EnqueueHandler(self.events, self.wake)
        observer, name = make_observer(kind, self.in_dir, timeout=1.0)
        try:
            observer.schedule(handler, str(self.in_dir), recursive=True)
            observer.start()
        except OSError as exc:
            if kind == "polling":
                raise
            log.warning("observer.fallback", reason=f"inotify unavailable ({exc.strerror})")
            observer, name = make_observer("polling", self.in_dir, timeout=1.0)
            observer.schedule(handler, str(self.in_dir), recursive=True)
            observer.start()
        self.observer = observer
        log.info("observer.started", observer=name)

    def _start_workers(self) -> None:
        self.slots = Slots(self.cfg.workers)
        for i in range(self.cfg.workers):
            t = threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True)
            t.start()
            self.workers.append(t)

    # -- workers -----------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            job = self.work.get()
            if job is None:
                return
            self.metrics.in_flight.inc()
            try:
                outcome = process_file(
                    job.path, self.cfg, self.key, age_identity=self.age_identity,
                    analyser_factory=self.analyser_factory, cancel=self.cancel_event,
                    on_digest=lambda d, p, job=job: self._claim(d, p, job), slots=self.slots)
                self._report(Result(job, outcome=outcome))
            except Cancelled:
                self._report(Result(job, unexpected="cancelled"))
            except RadiomicsError as exc:
                self._report(Result(job, error=exc))
            except FileNotFoundError:
                self._report(Result(job, unexpected="vanished"))
            except Exception as exc:  # a bug in one video must not kill the worker
                self._report(Result(job, unexpected=type(exc).__name__))
            finally:
                self.metrics.in_flight.dec()

    def _report(self, result: Result) -> None:
        self.results.put(result)
        self.wake.set()

    def _claim(self, digest: str, pseudonym: str, job: Job) -> bool:
        self.journal.remember_file(job.path, job.stamp, digest)
        claimed = self.journal.claim(digest, pseudonym, job.path)
        if claimed:
            log.info("video.processing", pseudonym=pseudonym, attempt=job.attempt)
        return claimed

    # -- detection ---------------------------------------------------------------------------
    def _inside_input(self, path: Path) -> bool:
        try:
            path.relative_to(self.in_dir)
        except ValueError:
            return False
        return not any(path == d or d in path.parents for d in self.excluded)

    def _scan(self, root: Path | None = None) -> None:
        """Offer every file under ``root`` (default: the input folder) to the settle tracker."""
        for path in iter_inputs(root or self.in_dir, self.cfg["ignore_patterns"], self.excluded):
            self._offer(path)

    def _offer(self, path: Path, closed: bool = False) -> None:
        if not self._inside_input(path) or path in self.in_flight:
            return
        if any(r.job.path == path for r in self.retries):
            return  # waiting for its retry: a rescan must not start a second attempt chain
        suspect = self.suspects.get(path)
        if suspect is not None:
            if stamp_of(path) == suspect.job.stamp:
                return  # refused version, still unchanged: its grace period is running
            self._resolve_suspect(path, changed=True)
        if path not in self.tracker:
            stamp = stamp_of(path)
            if stamp is None:
                return
            digest = self.journal.known_digest(path, stamp)
            if digest is not None and \
                    self.journal.state(digest) in ("done", "skipped", "quarantined"):
                return  # this exact file version was handled already
        self.tracker.note(path, closed)

    def _drain_events(self) -> None:
        while True:
            try:
                kind, raw = self.events.get_nowait()
            except queue.Empty:
                return
            path = Path(raw)
            if kind == "scan":
                if self._inside_input(path) and path.is_dir():
                    self._scan(path)
            else:
                self._offer(path, closed=(kind == "closed"))

    def _dispatch(self, now: float) -> None:
        for path, stamp in self.tracker.ready():
            self.backlog.append(Job(path, stamp, now))
        due = [r for r in self.retries if r.due <= now]
        self.retries = [r for r in self.retries if r.due > now]
        self.backlog.extend(r.job for r in due)
        while self.backlog and not self.stop_event.is_set():
            job = self.backlog[0]
            if job.path in self.in_flight:
                self.backlog.pop(0)
                continue
            try:
                self.work.put_nowait(job)
            except queue.Full:
                break
            self.backlog.pop(0)
            self.in_flight.add(job.path)
        self.metrics.queue_depth.set(self.work.qsize() + len(self.backlog))

    # -- results and failure policy ----------------------------------------------------------
    def _handle(self, res: Result) -> None:
        job = res.job
        self.in_flight.discard(job.path)
        if res.outcome is not None:
            self._handle_outcome(job, res.outcome)
        elif res.error is not None:
            self._handle_error(job, res.error)
        elif res.unexpected == "cancelled":
            log.info("video.abandoned", detail="stopped before commit; queued again at start")
        elif res.unexpected == "vanished":
            log.info("video.vanished")
        else:
            log.error("video.internal_error", error=res.unexpected)
            self._quarantine(job, "internal_error", None)

    def _handle_outcome(self, job: Job, out: Outcome) -> None:
        assert out.digest is not None
        state = "done" if out.status == "done" or out.reason == "already_exported" else "skipped"
        if out.reason == "duplicate":
            log.info("video.skipped", reason="duplicate", pseudonym=out.pseudonym)
            self.metrics.videos.labels("skipped", "duplicate").inc()
            self.totals["skipped"] += 1
            if self.journal.state(out.digest) == "done":
                self._dispose(job)
            return
        self.journal.finish(out.digest, state, out.reason, out.pseudonym, out.frames,
                            out.seconds, job.path)
        self.metrics.videos.labels(state, out.reason or "").inc()
        self.totals[state] += 1
        if out.status == "done":
            self.metrics.frames.inc(out.frames)
            self.metrics.processing.observe(out.seconds)
            self.metrics.latency.observe(time.monotonic() - job.settled_at)
            self.metrics.last_success.set(time.time())
        log.info(f"video.{state}", reason=out.reason, pseudonym=out.pseudonym,
                 frames=out.frames, seconds=round(out.seconds, 3), **path_fields(job.path))
        if state == "done":
            self._dispose(job)

    def _release(self, job: Job, state: str, reason: str, held: str = "processing") -> None:
        """Move this version's journal row from ``held`` to ``state`` (a worker's claim by
        default).

        Without this a retry finds its own claim and is skipped as a duplicate, and a version
        that changed under the worker stays 'processing' in the journal for good.
        """
        digest = self.journal.known_digest(job.path, job.stamp)
        if digest is not None and self.journal.state(digest) == held:
            self.journal.finish(digest, state, reason)

    def _handle_error(self, job: Job, exc: RadiomicsError) -> None:
        if isinstance(exc, ContentChanged) or (isinstance(exc, InputError)
                                                and stamp_of(job.path) != job.stamp):
            log.info("video.changed", detail="input changed during processing; settling again")
            self._release(job, "skipped", "content_changed")
            self.tracker.note(job.path)
            return
        if exc.transient and job.attempt < self.cfg["max_attempts"]:
            self._release(job, "queued", exc.reason)
            delay = self.cfg["retry_base_seconds"] * 2 ** (job.attempt - 1)
            log.warning("video.retry", reason=exc.reason, attempt=job.attempt,
                        delay_seconds=delay)
            self.metrics.retries.labels(exc.reason).inc()
            self.totals["retried"] += 1
            self.retries.append(Retry(Job(job.path, job.stamp, job.settled_at, job.attempt + 1),
                                      time.monotonic() + delay, exc.reason))
            return
        if exc.reason in MAYBE_INCOMPLETE and job.path not in self.suspects:
            # A writer that paused longer than settle_seconds looks exactly like this. Moving
            # the file now would pull it from under the writer: wait, then decide.
            self._release(job, "queued", exc.reason)
            grace = self.cfg["incomplete_grace_seconds"]
            log.info("video.suspect", reason=exc.reason, grace_seconds=grace)
            self.suspects[job.path] = Retry(job, time.monotonic() + grace, exc.reason)
            return
        self._quarantine(job, exc.reason, exc.detail)

    def _resolve_suspect(self, path: Path, changed: bool) -> None:
        """End a grace period: a changed file settles again as new content, else quarantine."""
        suspect = self.suspects.pop(path)
        job = suspect.job
        if changed:
            self._release(job, "skipped", "content_changed", held="queued")
            log.info("video.changed", detail="refused version changed; settling again")
            self.tracker.note(path)
        else:
            self._quarantine(job, suspect.reason, "unchanged after the grace period")

    def _check_suspects(self, now: float) -> None:
        for path, suspect in list(self.suspects.items()):
            if suspect.due <= now:
                stamp = stamp_of(path)
                if stamp is None:
                    self.suspects.pop(path)
                else:
                    self._resolve_suspect(path, changed=stamp != suspect.job.stamp)

    def _quarantine(self, job: Job, reason: str, detail: str | None) -> None:
        key = "path:" + self.journal.path_key(job.path)
        digest = self.journal.known_digest(job.path, job.stamp) or key
        self.journal.finish(digest, "quarantined", reason, path=job.path)
        if digest == key:  # refused before fingerprinting: remember this version by its stamp
            self.journal.remember_file(job.path, job.stamp, key)
        self.metrics.videos.labels("quarantined", reason).inc()
        self.totals["quarantined"] += 1
        log.warning("video.quarantined", reason=reason, detail=detail, **path_fields(job.path))
        if self.cfg["on_input_error"] != "quarantine":
            return
        note = {"reason": reason, "detail": detail, "time": time.time(),
                "digest": None if digest.startswith("path:") else digest}
        if self.cfg["record_paths"]:
            note["path"] = str(job.path)
        try:
            quarantine_input(job.path, self.quarantine_dir, note)
        except OSError as exc:
            log.error("quarantine.failed", error=exc.strerror)

    def _dispose(self, job: Job) -> None:
        policy = self.cfg["on_success"]
        try:
            dispose_input(job.path, policy, self.in_dir, self.done_dir)
        except OSError as exc:
            log.error("input.disposal_failed", policy=policy, error=exc.strerror)

    # -- health and signals ------------------------------------------------------------------
    def healthy(self) -> bool:
        if time.monotonic() - self.last_loop > LOOP_STALE_SECONDS:
            return False
        return self.watching and all(t.is_alive() for t in self.workers) and \
            bool(getattr(self, "observer", None)) and self.observer.is_alive()

    def status_text(self) -> str:
        t = self.totals
        return (f"watching; done {t['done']}, skipped {t['skipped']}, quarantined "
                f"{t['quarantined']}, in flight {len(self.in_flight)}, queued "
                f"{self.work.qsize() + len(self.backlog)}")

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            self.stop_event.set()
            self.wake.set()

        def hup(signum: int, _frame: Any) -> None:
            self.reload_requested = True
            self.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def _reload(self) -> None:
        """SIGHUP: re-read the config file; apply the settings that are safe to change live."""
        self.reload_requested = False
        if self.config_path is None:
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config.reload_failed", detail=str(exc))
            return
        live = ("settle_seconds", "rescan_seconds", "ignore_patterns", "on_success",
                "on_input_error", "max_attempts", "retry_base_seconds", "select", "png", "mask",
                "doppler", "limits")
        raw = dict(self.cfg.raw)
        for k in live:
            raw[k] = new.raw[k]
        restart = sorted(k for k in new.raw if k not in live and new.raw[k] != self.cfg.raw[k])
        self.cfg = Config(raw)
        self.tracker.settle_seconds = raw["settle_seconds"]
        self.tracker.patterns = raw["ignore_patterns"]
        log.info("config.reloaded", needs_restart=restart)

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        self._prepare()
        self.tracker = SettleTracker(self.cfg["settle_seconds"], self.cfg["ignore_patterns"])
        server = None
        m = self.cfg["metrics"]
        if m["enabled"]:
            server = HealthServer(self.metrics, self.healthy, m["host"], m["port"])
            server.start()
            (self.state_dir / "metrics.port").write_text(f"{server.port}\n")
            log.info("metrics.listening", host=m["host"], port=server.port)
        self._start_workers()
        self._start_observer()
        self._scan()
        self.watching = True
        self.notifier.send("READY=1", f"STATUS={self.status_text()}")
        log.info("watch.ready", workers=len(self.workers))
        stall_after = float(os.environ.get(STALL_ENV, "0") or 0)
        started = last_scan = last_ping = last_status = time.monotonic()
        try:
            while not self.stop_event.is_set():
                self.wake.clear()  # what arrives from here on wakes the wait below
                now = time.monotonic()
                if stall_after and now - started > stall_after:
                    log.warning("test.stall", detail=f"{STALL_ENV} set: main loop frozen")
                    while not self.stop_event.is_set():
                        time.sleep(3600)
                if self.reload_requested:
                    self._reload()
                self._drain_events()
                if now - last_scan >= self.cfg["rescan_seconds"]:
                    self._scan()
                    last_scan = now
                self._check_suspects(now)
                self._dispatch(now)
                while True:
                    try:
                        self._handle(self.results.get_nowait())
                    except queue.Empty:
                        break
                interval = self.notifier.watchdog_interval
                if interval and now - last_ping >= interval and self.healthy():
                    self.notifier.send("WATCHDOG=1")
                    last_ping = now
                if now - last_status >= 2.0:
                    self.notifier.send(f"STATUS={self.status_text()}")
                    last_status = now
                self.last_loop = time.monotonic()
                self.wake.wait(self._wait_seconds(self.last_loop))
        finally:
            self._shutdown(server)
        return 0

    def _wait_seconds(self, now: float) -> float:
        """Sleep until the next file may have settled, at most one tick (retries, suspects,
        rescans and status updates are checked each tick)."""
        due = self.tracker.next_due()
        return TICK_SECONDS if due is None else min(TICK_SECONDS, max(0.0, due - now))

    def _shutdown(self, server: HealthServer | None) -> None:
        self.watching = False
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        log.info("watch.stopping", in_flight=len(self.in_flight))
        observer = getattr(self, "observer", None)
        if observer is not None:
            observer.stop()
        while True:  # jobs not started yet go back to the next start-up scan
            try:
                self.work.get_nowait()
            except queue.Empty:
                break
        for _ in self.workers:
            self.work.put(None)
        deadline = time.monotonic() + self.cfg["shutdown_timeout"]
        for t in self.workers:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.workers):
            self.cancel_event.set()  # abandon: staging removed, journal entry re-queued at start
            for t in self.workers:
                t.join(10)
        if self.workers:
            self.slots.close()
        while True:
            try:
                self._handle(self.results.get_nowait())
            except queue.Empty:
                break
        if server is not None:
            server.stop()
        if observer is not None:
            observer.join(5)
        self.journal.close()
        self.notifier.close()
        log.info("watch.stopped", **self.totals)


def run_watch(cfg: Config, config_path: Path | None = None) -> int:
    """Entry point of ``radiomicsd watch``."""
    return Service(cfg, config_path).run()
