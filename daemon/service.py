"""``radiomicsd watch``: the daemon's main loop, workers, failure policy and shutdown.

One main thread owns detection (events, start-up scan, periodic rescan, settling), dispatch into
a bounded work queue, result handling, signals and the systemd/health reports. Worker threads
only run :func:`radiomicsd.daemon.attempt.attempt`. A file is dispatched once per content
version; the journal decides, by content digest, whether the content still needs work.

Failure policy, applied to each attempt's :class:`Outcome`:
- output side unavailable (disk full, unwritable, output folder gone): the daemon *pauses*
  (unhealthy, nothing dispatched), probes the output every few seconds and resumes its queue when
  a commit can succeed again; the input is never blamed;
- transient input trouble: retried with exponential backoff up to ``max_attempts``;
- a refusal that a file still being written would also cause: held back for
  ``incomplete_grace_seconds``, then final;
- symlinks and special files: recorded and left where they are;
- any other refusal: quarantined with its reason code.
"""

from __future__ import annotations

import functools
import os
import queue
import random
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radiomicsd.daemon.attempt import attempt, log_outcome
from radiomicsd.daemon.beneath import InputRoot, make_private_dir, path_text
from radiomicsd.daemon.discovery import FileStamp, iter_inputs, stamp_of
from radiomicsd.daemon.disposal import dispose_input, quarantine_input
from radiomicsd.daemon.export import AnalyserFactory, Exporter, Outcome, Status
from radiomicsd.daemon.frames import Slots
from radiomicsd.daemon.journal import Journal, State, new_replica_id, open_journal
from radiomicsd.daemon.keys import check_attestation, load_age_identity, load_pseudonym_key
from radiomicsd.daemon.logs import get_logger
from radiomicsd.daemon.metrics import HealthServer, Metrics
from radiomicsd.daemon.notify import Notifier
from radiomicsd.daemon.output import STAGING_PREFIX, OutputFolder, remove_staging_leftovers
from radiomicsd.daemon.review import review_note, write_review_files
from radiomicsd.daemon.scp import StorageScp
from radiomicsd.daemon.send import Outbox, Sender
from radiomicsd.daemon.settings import Settings, check_host, load_settings
from radiomicsd.daemon.wakeup import Wakeup
from radiomicsd.daemon.watcher import EnqueueHandler, SettleTracker, make_observer
from radiomicsd.pipeline.deid.mask import MaskMethod
from radiomicsd.pipeline.deid.pseudonym import pseudonym as pseudonym_of
from radiomicsd.pipeline.errors import ConfigError, JournalUnavailable, OutputUnavailable

log = get_logger("radiomicsd.watch")
TICK_SECONDS = 0.25
#: While paused, the output is probed this often at first; a pause that comes back soon after a
#: resume doubles the interval (up to PROBE_MAX_SECONDS), so a nearly full disk does not flap.
PROBE_SECONDS = 2.0
PROBE_MAX_SECONDS = 60.0
#: A paused output resumes only with this much free space, or a quarter of its file system when
#: that is less (small volumes).
RESUME_FREE_BYTES = 64 * 2**20
#: /healthz turns 503 when the main loop has not completed a pass for this long.
LOOP_STALE_SECONDS = 30.0
#: Refusals that a file still being written would also produce: held back for a grace period.
#: (A copy tool that sets the final size first leaves a sparse file until it is filled.)
MAYBE_INCOMPLETE = frozenset({"truncated", "no_frames", "unreadable_container", "empty_file",
                              "sparse_file"})
#: Refusals of what is not a regular file: recorded, and the path left alone.
LEFT_ALONE = frozenset({"symlink_refused", "not_regular_file"})
STALL_ENV = "RADIOMICSD_TEST_STALL_AFTER"
#: Journal states of a content that needs no (further) work from this process.
HANDLED = (State.DONE, State.SKIPPED, State.QUARANTINED, State.REFUSED, State.FAILED,
           State.PROCESSING)


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
    outcome: Outcome


@dataclass
class Retry:
    job: Job
    due: float
    reason: str = field(default="")


class Service:
    """The watching daemon. ``run()`` blocks until stopped; returns the exit code."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        s = settings
        self.in_dir = s.input_dir.resolve()
        self.out_dir = s.output_dir.resolve()
        self.state_dir = s.state_dir.resolve()
        self.quarantine_dir = s.quarantine_dir.resolve()
        self.done_dir = s.done_dir.resolve()
        self.excluded = [self.out_dir, self.state_dir, self.quarantine_dir, self.done_dir]
        self.stopping = False
        self.wake = Wakeup()
        self.cancel_event = threading.Event()
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.work: queue.Queue[Job | None] = queue.Queue(maxsize=s.queue_size)
        self.results: queue.Queue[Result] = queue.Queue()
        #: results whose journal update failed (journal unavailable): handled again on resume
        self.unhandled: list[Result] = []
        #: this process's id in the journal: its claims, its staging folders
        self.replica = new_replica_id()
        self.journal: Journal
        self.backlog: list[Job] = []
        self.retries: list[Retry] = []
        self.suspects: dict[Path, Retry] = {}
        self.in_flight: set[Path] = set()
        #: reason code while the output side is unavailable (nothing is dispatched)
        self.paused: str | None = None
        self.next_probe = 0.0
        self.probe_interval = PROBE_SECONDS
        self.resumed_at = -PROBE_MAX_SECONDS
        self.last_loop = time.monotonic()
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.workers: list[threading.Thread] = []
        self.slots = Slots(s.worker_count)
        self.watching = False
        self.totals = {"done": 0, "skipped": 0, "quarantined": 0, "refused": 0, "retried": 0}
        self.analyser_factory: AnalyserFactory | None = None
        self.server: HealthServer | None = None
        self.last_scan = self.last_reap = 0.0
        self.tracker = SettleTracker(root=self.in_dir, settle_seconds=s.settle_seconds,
                                     patterns=s.ignore_patterns)

    # -- start-up ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Check everything that can fail, then write: a start-up error leaves nothing behind."""
        s = self.settings
        if s.require_attestation:
            check_attestation(s.attestation_marker)
        for d in (self.in_dir, self.out_dir, self.state_dir, self.quarantine_dir):
            if d.exists() and not d.is_dir():
                raise ConfigError(f"{d} is not a folder")
        if s.metrics.enabled:
            try:
                self.server = HealthServer(self.metrics, self.healthy, s.metrics.host,
                                           s.metrics.port)
            except OSError as exc:
                raise ConfigError(f"cannot listen on {s.metrics.host}:{s.metrics.port} for "
                                  f"metrics: {exc.strerror} (set metrics.port, or 0 for any "
                                  "free port)") from None
        if s.send.enabled and s.output_format == "png":
            raise ConfigError("send.enabled needs output_format: dicom or both")
        self.scp: StorageScp | None = None
        if s.dicom_scp.enabled:
            self.scp = StorageScp(s.dicom_scp, self.in_dir, self.metrics)
            self.scp.start()
        if s.analysis.enabled:
            self.analyser_factory = self._load_analysis()
        self.age_identity = load_age_identity(s.age.identity_file)
        check_host(s)
        for d in (self.in_dir, self.state_dir, self.quarantine_dir):
            make_private_dir(d)
        self.root = InputRoot(self.in_dir)
        shared = s.journal_url is not None  # replicas share the output folder
        self.key, key_source = load_pseudonym_key(key_file=s.pseudonym_key_file,
                                                  state_dir=self.state_dir,
                                                  allow_generate=not (s.enclave_mode or shared))
        if shared and key_source not in ("file", "env"):
            raise ConfigError("with journal_url every replica needs the same pseudonym key: "
                              "set pseudonym_key_file or $RADIOMICSD_PSEUDONYM_KEY")
        self.output = OutputFolder(self.out_dir, shared=shared)
        self.journal = self._open_journal()
        if key_source == "generated":
            log.warning("key.generated", detail="new pseudonym key written to the state folder")
        live = self.journal.live_replicas() if shared else None
        left = remove_staging_leftovers(self.out_dir, live=live)
        requeued, given_up = self.journal.requeue_unfinished(max_starts=s.max_attempts,
                                                             expired_only=shared)
        assert self.output.identity is not None
        lost = self.journal.note_output_folder(self.output.identity, self.out_dir)
        if left or requeued or lost or given_up:
            log.info("recovery", staging_removed=left, requeued=requeued,
                     outputs_lost_requeued=lost, repeated_crash=given_up)
        self.outbox: Outbox | None = None
        self.sender: Sender | None = None
        if s.send.enabled:
            self.outbox = Outbox(self.state_dir)
            queued = self.outbox.recover(self.out_dir)
            if queued:
                log.info("send.recovered", queued=queued)
            self.sender = Sender(s.send, self.outbox, self.metrics)
        self.exporter = self._make_exporter()

    def _load_analysis(self) -> AnalyserFactory:
        """The analysis models, loaded now (a bad path fails the start)."""
        if self.settings.journal_url is not None:
            # libpq (in psycopg's wheel) is loaded before TensorFlow, whose own TLS library
            # otherwise takes libpq's TLS calls and aborts the process when it connects
            import psycopg  # noqa: F401
        from radiomicsd.daemon.analysis import analyser_factory

        return analyser_factory(self.settings.analysis)

    def _open_journal(self) -> Journal:
        """The configured journal, migrated, its key checked, this replica registered."""
        try:
            journal = open_journal(self.settings, key=self.key, replica=self.replica)
            try:
                journal.check_key()
                journal.heartbeat()
            except BaseException:
                journal.close()
                raise
        except JournalUnavailable as exc:
            raise ConfigError(f"cannot reach the journal: {exc.detail}") from None
        log.info("journal.opened", backend=journal.backend, journal=journal.describe(),
                 replica=self.replica)
        return journal

    def _make_exporter(self) -> Exporter:
        return Exporter.from_settings(self.settings, key=self.key, slots=self.slots,
                                      analyser_factory=self.analyser_factory,
                                      outbox=self.outbox, replica=self.replica)

    def _start_observer(self) -> None:
        s = self.settings
        kind = "polling" if s.enclave_mode else s.observer
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
        for i in range(self.settings.worker_count):
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
                outcome = self._taken_elsewhere(job) or attempt(
                    self.exporter, job.path, root=self.root, age_identity=self.age_identity,
                    decrypt_tmp_dir=self.settings.decrypt_tmp_dir,
                    claim=functools.partial(self._claim, job), cancel=self.cancel_event)
            finally:
                self.metrics.in_flight.dec()
            self.results.put(Result(job, outcome))
            self.wake.set()

    def _taken_elsewhere(self, job: Job) -> Outcome | None:
        """With replicas: a ``duplicate`` outcome, without reading the file, when another
        replica has hashed this very file version since it was offered here and its content is
        claimed or finished (in a burst every replica sees every file)."""
        if not self.journal.shared:
            return None
        try:
            digest = self._handled_digest(job.path, job.stamp)
        except JournalUnavailable:
            return None  # the attempt's own claim meets it and reports it
        if digest is None:
            return None
        name = pseudonym_of(self.key, bytes.fromhex(digest))
        return Outcome(Status.SKIPPED, "duplicate", name, digest,
                       detail="taken by another replica; not read here")

    def _claim(self, job: Job, digest: str, pseudonym: str) -> bool:
        self.journal.remember_file(job.path, job.stamp, digest)
        claimed = self.journal.claim(digest, pseudonym, job.path)
        if claimed:  # the start of work; its end is the attempt's one outcome line
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
        for path in iter_inputs(root or self.in_dir, self.settings.ignore_patterns,
                                self.excluded):
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
            if self._handled_digest(path, stamp) is not None:
                return
        self.tracker.note(path, closed)

    def _handled_digest(self, path: Path, stamp: FileStamp) -> str | None:
        """The digest of this exact file version when its content was handled already or is in
        work (here, or at a live replica: when that one dies, recovery queues it again and
        rescans); None when it may still need work."""
        digest = self.journal.known_digest(path, stamp)
        if digest is not None and self.journal.state(digest) in HANDLED:
            return digest
        return None

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
        ready = [Job(path, stamp, now) for path, stamp in self.tracker.ready()]
        if self.journal.shared:  # replicas that see one burst take it in different orders
            random.shuffle(ready)
        self.backlog.extend(ready)
        due = [r for r in self.retries if r.due <= now]
        self.retries = [r for r in self.retries if r.due > now]
        self.backlog.extend(r.job for r in due)
        while self.backlog and not self.stopping and self.paused is None:
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
        job, out = res.job, res.outcome
        self.in_flight.discard(job.path)
        if out.status is Status.ABANDONED:
            log_outcome(out, action="abandoned", path=job.path,
                        detail="stopped before commit; queued again at start")
        elif out.status is Status.FAILED:
            self._handle_failure(job, out)
        else:
            self._handle_success(job, out)

    def _handle_success(self, job: Job, out: Outcome) -> None:
        assert out.digest is not None
        if out.reason == "duplicate":
            finished = self.journal.state(out.digest) == State.DONE
            log_outcome(out, action="skipped", path=job.path)
            self.metrics.videos.labels("skipped", "duplicate").inc()
            self.totals["skipped"] += 1
            if finished:
                self._dispose(job)
            return
        done = out.status is Status.DONE or out.reason == "already_exported"
        state = State.DONE if done else State.SKIPPED
        self.journal.finish(out.digest, state, out.reason, out.pseudonym, out.frames,
                            out.seconds, job.path)
        self.metrics.videos.labels(state.value, out.reason or "").inc()
        self.totals[state.value] += 1
        if out.status is Status.DONE:
            self.metrics.frames.inc(out.frames)
            self.metrics.processing.observe(out.seconds)
            self.metrics.latency.observe(time.monotonic() - job.settled_at)
            self.metrics.last_success.set(time.time())
        log_outcome(out, action=state.value, path=job.path, attempt=job.attempt)
        if done:
            self._dispose(job)

    def _release(self, job: Job, state: State, reason: str,
                 held: State = State.PROCESSING) -> None:
        """Move this version's journal row from ``held`` to ``state`` (a worker's claim by
        default).

        Without this a retry finds its own claim and is skipped as a duplicate, and a version
        that changed under the worker stays 'processing' in the journal for good.
        """
        digest = self.journal.known_digest(job.path, job.stamp)
        if digest is not None and self.journal.state(digest) == held:
            self.journal.finish(digest, state, reason)

    def _handle_failure(self, job: Job, out: Outcome) -> None:
        reason = out.reason or "error"
        if reason == JournalUnavailable.reason:
            # the worker's claim could not reach the journal; it answers again (this release
            # would raise otherwise, and the main loop pauses): the same attempt, again
            self._release(job, State.QUEUED, reason)
            self.backlog.insert(0, job)
            log_outcome(out, action="retry", path=job.path, attempt=job.attempt)
            return
        if out.output_side:
            self._release(job, State.QUEUED, reason)
            self.backlog.insert(0, job)  # the same attempt, once the output works again
            log_outcome(out, action="paused", path=job.path)
            self._pause(reason)
            return
        if reason == "vanished":
            self._release(job, State.SKIPPED, reason)
            log_outcome(out, action="vanished", path=job.path)
            return
        if reason == "content_changed" or (not out.transient
                                           and stamp_of(job.path) != job.stamp):
            self._release(job, State.SKIPPED, "content_changed")
            log_outcome(out, action="changed", path=job.path,
                        detail="input changed during processing; settling again")
            self.tracker.note(job.path)
            return
        if out.transient and job.attempt < self.settings.max_attempts:
            self._release(job, State.QUEUED, reason)
            delay = self.settings.retry_base_seconds * 2 ** (job.attempt - 1)
            log_outcome(out, action="retry", path=job.path, attempt=job.attempt,
                        delay_seconds=delay)
            self.metrics.retries.labels(reason).inc()
            self.totals["retried"] += 1
            self.retries.append(Retry(Job(job.path, job.stamp, job.settled_at, job.attempt + 1),
                                      time.monotonic() + delay, reason))
            return
        if reason in MAYBE_INCOMPLETE and job.path not in self.suspects:
            # A writer that paused longer than settle_seconds looks exactly like this. Moving
            # the file now would pull it from under the writer: wait, then decide.
            self._release(job, State.QUEUED, reason)
            grace = self.settings.incomplete_grace_seconds
            log_outcome(out, action="suspect", path=job.path, grace_seconds=grace)
            self.suspects[job.path] = Retry(job, time.monotonic() + grace, reason)
            return
        if reason in LEFT_ALONE:
            self._refuse(job, out)
            return
        self._quarantine(job, reason, out.detail, out)

    def _resolve_suspect(self, path: Path, changed: bool) -> None:
        """End a grace period: a changed file settles again as new content, else quarantine."""
        suspect = self.suspects.pop(path)
        job = suspect.job
        if changed:
            self._release(job, State.SKIPPED, "content_changed", held=State.QUEUED)
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

    def _record_refusal(self, job: Job, state: State, reason: str) -> str:
        """Journal ``state`` for this version; returns its digest (or its path key)."""
        key = "path:" + self.journal.path_key(job.path)
        digest = self.journal.known_digest(job.path, job.stamp) or key
        self.journal.finish(digest, state, reason, path=job.path)
        if digest == key:  # refused before fingerprinting: remember this version by its stamp
            self.journal.remember_file(job.path, job.stamp, key)
        return digest

    def _refuse(self, job: Job, out: Outcome) -> None:
        """A symlink or special file: recorded, never moved or read."""
        reason = out.reason or "error"
        self._record_refusal(job, State.REFUSED, reason)
        self.metrics.videos.labels("refused", reason).inc()
        self.totals["refused"] += 1
        log_outcome(out, action="refused", path=job.path)

    def _quarantine(self, job: Job, reason: str, detail: str | None,
                    out: Outcome | None = None) -> None:
        digest = self._record_refusal(job, State.QUARANTINED, reason)
        self.metrics.videos.labels("quarantined", reason).inc()
        self.totals["quarantined"] += 1
        out = out or Outcome(Status.FAILED, reason, detail=detail)
        if self.settings.on_input_error == "quarantine":
            self._move_to_quarantine(job, digest, reason, detail, out)
        # logged last: what the line announces (note, review files) is there when it is read
        log_outcome(out, action="quarantined", path=job.path)

    def _move_to_quarantine(self, job: Job, digest: str, reason: str, detail: str | None,
                            out: Outcome) -> None:
        note: dict[str, Any] = {"reason": reason, "detail": detail, "time": time.time(),
                                "digest": None if digest.startswith("path:") else digest}
        review = out.extra.get("review")
        if review is not None:
            note["review"] = review_note(review)
        if self.settings.record_paths:
            note["path"] = path_text(job.path)
        try:
            moved = quarantine_input(job.path, self.quarantine_dir, note, root=self.root)
        except OSError as exc:
            # the file stays where it is: the journal must not claim it was moved
            self.journal.finish(digest, State.FAILED, reason)
            log.error("quarantine.failed", reason=reason, error=exc.strerror)
            return
        if review is not None:
            try:
                write_review_files(moved, review)
            except OSError as exc:
                log.error("quarantine.review_files_failed", error=exc.strerror)

    def _dispose(self, job: Job) -> None:
        policy = self.settings.on_success
        if policy == "keep":
            return
        stamp = stamp_of(job.path)
        if stamp is None:  # deleted or moved already (by another replica that handled it)
            return
        if stamp != job.stamp:
            # replaced or rewritten since it was read: that is new content, never deleted or
            # moved unprocessed; it settles and is processed as any new version
            log.info("input.disposal_skipped", policy=policy, detail="the file changed since")
            self.tracker.note(job.path)
            return
        try:
            dispose_input(job.path, policy, self.in_dir, self.done_dir, root=self.root)
        except FileNotFoundError:
            log.debug("input.disposal_skipped", policy=policy, detail="gone meanwhile")
        except OSError as exc:
            log.error("input.disposal_failed", policy=policy, error=exc.strerror)

    # -- the output side -----------------------------------------------------------------------
    def _pause(self, reason: str) -> None:
        now = time.monotonic()
        if self.paused is None:
            soon = now - self.resumed_at < PROBE_MAX_SECONDS
            self.probe_interval = min(PROBE_MAX_SECONDS, 2 * self.probe_interval) if soon \
                else PROBE_SECONDS
            log.error("output.paused", reason=reason, probe_seconds=self.probe_interval,
                      detail="the output cannot take commits; work waits and is retried when "
                             "it can")
            self.metrics.paused.set(1)
            self.next_probe = now + self.probe_interval
        self.paused = reason

    def _watch_output(self, now: float) -> None:
        """Pause when the output folder went away; while paused, probe it and resume."""
        if self.paused is None:
            try:
                self.output.check()
            except OutputUnavailable as exc:
                self._pause(exc.reason)
            return
        if now < self.next_probe:
            return
        self.next_probe = now + self.probe_interval
        try:
            self._probe_output()
        except (OutputUnavailable, ConfigError) as exc:
            log.debug("output.probe_failed", detail=str(exc))
            if isinstance(exc, JournalUnavailable):
                self.paused = exc.reason
            return
        except OSError as exc:
            log.debug("output.probe_failed", error=exc.strerror)
            return
        log.info("output.resumed", after=self.paused)
        lost_journal = self.paused == JournalUnavailable.reason
        self.paused = None
        self.resumed_at = now
        self.metrics.paused.set(0)
        if lost_journal:  # events seen while it was away were dropped: look again
            self._handle_results()
            self._scan()

    def _probe_output(self) -> None:
        """Raise unless a commit can succeed: the locked folder is in place and takes a durable
        write, and the journal answers. A folder that was removed is made again and locked
        before anything is written into it, and the videos whose outputs went with it are
        queued again."""
        self.journal.ping()
        try:
            self.output.check()
        except OutputUnavailable:
            self.out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.output.relock()
            assert self.output.identity is not None
            lost = self.journal.note_output_folder(self.output.identity, self.out_dir)
            log.warning("output.folder_replaced", outputs_lost_requeued=lost)
            self._scan()
        st = os.statvfs(self.out_dir)
        if st.f_bavail * st.f_frsize < min(RESUME_FREE_BYTES, st.f_blocks * st.f_frsize // 4):
            raise OutputUnavailable("too little free space to resume")
        probe = self.out_dir / f"{STAGING_PREFIX}probe-{secrets.token_hex(4)}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * 65536)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)

    # -- health and signals ------------------------------------------------------------------
    def healthy(self) -> bool:
        if time.monotonic() - self.last_loop > LOOP_STALE_SECONDS or self.paused is not None:
            return False
        return self.watching and all(t.is_alive() for t in self.workers) and \
            bool(getattr(self, "observer", None)) and self.observer.is_alive()

    def status_text(self) -> str:
        t = self.totals
        state = f"paused ({self.paused})" if self.paused else "watching"
        return (f"{state}; done {t['done']}, skipped {t['skipped']}, quarantined "
                f"{t['quarantined']}, in flight {len(self.in_flight)}, queued "
                f"{self.work.qsize() + len(self.backlog)}")

    def _handle_signals(self) -> None:
        for signum in self.wake.pending_signals():
            if signum == signal.SIGHUP:
                self._reload()
            else:
                self.stopping = True

    def _reload(self) -> None:
        """SIGHUP: re-read the config file; apply the settings that are safe to change live."""
        if self.config_path is None:
            log.info("config.reload_skipped", detail="started without a config file")
            return
        try:
            new = load_settings(self.config_path)
            check_host(new)
        except ConfigError as exc:
            log.error("config.reload_failed", detail=str(exc))
            return
        if new.mask.method is MaskMethod.REGIONS and \
                self.settings.mask.method is not MaskMethod.REGIONS:
            log.error("config.reload_failed", detail="mask.method regions (text outside the "
                      "boxes is exported) is never switched on live; restart to apply it")
            return
        self.settings, restart = self.settings.live_update(new)
        self.exporter = self._make_exporter()
        self.tracker.settle_seconds = self.settings.settle_seconds
        self.tracker.patterns = self.settings.ignore_patterns
        log.info("config.reloaded", needs_restart=restart)

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        self.wake.install(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        self._prepare()
        if self.server is not None:
            self.server.start()
            (self.state_dir / "metrics.port").write_text(f"{self.server.port}\n")
            log.info("metrics.listening", host=self.settings.metrics.host, port=self.server.port)
        self._start_workers()
        self.beat_stop = threading.Event()
        self.beater = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self.beater.start()
        if self.sender is not None:
            self.sender.start()
        self._start_observer()
        self._scan()
        self.watching = True
        self.notifier.send("READY=1", f"STATUS={self.status_text()}")
        log.info("watch.ready", workers=len(self.workers), input_dir=str(self.in_dir),
                 output_dir=str(self.out_dir),
                 detail="drop complete files (or rename them in) under input_dir")
        stall_after = float(os.environ.get(STALL_ENV, "0") or 0)
        started = last_ping = last_status = time.monotonic()
        self.last_scan = self.last_reap = started
        try:
            while True:
                self._handle_signals()
                if self.stopping:
                    break
                now = time.monotonic()
                if stall_after and now - started > stall_after:
                    log.warning("test.stall", detail=f"{STALL_ENV} set: main loop frozen")
                    while not self.stopping:
                        time.sleep(0.2)
                        self._handle_signals()
                    break
                try:
                    self._pass(now)
                except JournalUnavailable as exc:
                    self._journal_lost(exc)
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
            self._shutdown()
        return 0

    def _pass(self, now: float) -> None:
        """One pass of the main loop's work; raises JournalUnavailable when it cannot go on."""
        if self.paused == JournalUnavailable.reason:
            self._watch_output(now)  # only the probe touches the journal while it is away
            return
        if self.journal.shared and now - self.last_reap >= self.journal.lease_seconds / 2:
            self._reap_expired()
            self.last_reap = now
        self._drain_events()
        if now - self.last_scan >= self.settings.rescan_seconds:
            self._scan()
            self.last_scan = now
        self._check_suspects(now)
        self._watch_output(now)
        self._dispatch(now)
        self._handle_results()

    def _handle_results(self) -> None:
        """Apply every finished attempt's outcome; one whose journal update fails is kept (and
        handled again first once the journal answers)."""
        while True:
            if self.unhandled:
                res = self.unhandled.pop(0)
            else:
                try:
                    res = self.results.get_nowait()
                except queue.Empty:
                    return
            try:
                self._handle(res)
            except JournalUnavailable:
                self.unhandled.insert(0, res)
                raise

    def _beat(self) -> None:
        """The heartbeat thread: renew this replica's leases every third of a lease, whatever
        the main loop is doing (a long rescan of a network folder must not cost the claims).
        A failure is only noted here: the main loop's own journal calls pause the daemon."""
        interval = self.journal.lease_seconds / 3
        while not self.beat_stop.wait(interval):
            try:
                self.journal.heartbeat()
            except JournalUnavailable as exc:
                log.debug("journal.heartbeat_failed", detail=exc.detail)

    def _reap_expired(self) -> None:
        """With replicas: take back the claims of dead ones (their leases expired)."""
        requeued, given_up = self.journal.requeue_unfinished(
            max_starts=self.settings.max_attempts, expired_only=True)
        if requeued or given_up:
            log.info("journal.leases_expired", requeued=requeued, repeated_crash=given_up)
            self._scan()  # the inputs of the queued digests are found by their paths' keys

    def _journal_lost(self, exc: JournalUnavailable) -> None:
        """Pause until the probe reaches the journal again (which then rescans)."""
        if self.paused is None:
            log.error("journal.unavailable", detail=exc.detail)
            self._pause(exc.reason)
        self.paused = exc.reason

    def _wait_seconds(self, now: float) -> float:
        """Sleep until the next file may have settled, at most one tick (retries, suspects,
        rescans and status updates are checked each tick)."""
        due = self.tracker.next_due()
        return TICK_SECONDS if due is None else min(TICK_SECONDS, max(0.0, due - now))

    def _stop_listening(self) -> None:
        """Close the DICOM and HTTP listeners and the sender (its queue stays in the outbox)."""
        if self.scp is not None:
            self.scp.stop()
        if self.sender is not None:
            self.sender.stop()
        if self.server is not None:
            self.server.stop()

    def _shutdown(self) -> None:
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
        deadline = time.monotonic() + self.settings.shutdown_timeout
        for t in self.workers:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.workers):
            self.cancel_event.set()  # abandon: staging removed, journal entry re-queued at start
            for t in self.workers:
                t.join(10)
        self.slots.close()
        if hasattr(self, "beater"):
            self.beat_stop.set()
            self.beater.join(10)
        if hasattr(self, "journal"):
            try:
                self._handle_results()
                self.journal.leave()
            except JournalUnavailable as exc:  # its claims expire; another replica takes them
                log.error("journal.unavailable", detail=exc.detail,
                          results_not_recorded=len(self.unhandled) + self.results.qsize())
        self._stop_listening()
        if observer is not None:
            observer.join(5)
        if hasattr(self, "journal"):
            self.journal.close()
        if hasattr(self, "output"):
            self.output.close()
        if hasattr(self, "root") and not any(t.is_alive() for t in self.workers):
            self.root.close()  # not under a live worker: its descriptor number could be reused
        self.notifier.close()
        self.wake.close()
        log.info("watch.stopped", **self.totals)


def run_watch(settings: Settings, config_path: Path | None = None) -> int:
    """Entry point of ``radiomicsd watch``."""
    return Service(settings, config_path).run()
