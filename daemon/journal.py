"""The durable journal: one row per content digest, a cache of seen files, and the replicas.

``videos``: state (queued, processing, done, skipped, quarantined, failed, refused, approved),
attempts, reason code, pseudonym, frames, timings, the claim's ``owner`` (a replica id) and its
``lease_until`` (epoch seconds) and, only when the operator enables ``record_paths``, the input
path. ``files``: a keyed hash of each seen path with its size, mtime and inode, mapped to the
content digest, so periodic rescans do not re-read unchanged files and no path is stored in
clear. ``replicas``: each running daemon's id, host, pid and last heartbeat. ``meta``: the
schema version, the output folder's identity and a check value of the pseudonym key.

Two back-ends share the SQL and the state machine: SQLite in ``state_dir`` (one daemon per
output folder, the default) and PostgreSQL (:mod:`radiomicsd.daemon.journal_pg`, any number of
replicas on shared folders). A claim is one conditional write, so two replicas can never both
hold a digest: a new digest is inserted (``ON CONFLICT DO NOTHING``); a known one is taken only
from 'queued'/'approved', or from 'processing' once its lease has expired (its owner stopped
renewing it: it died). Owners renew their leases with a heartbeat.

SQLite journal mode ``wal`` suits a normal file system; ``delete``/``truncate`` need no
shared-memory mmap, which SCONE's protected volumes do not offer.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from radiomicsd.daemon.beneath import path_text
from radiomicsd.daemon.discovery import FileStamp
from radiomicsd.pipeline.errors import ConfigError

if TYPE_CHECKING:  # settings imports this module's PostgreSQL sibling (URL checks)
    from radiomicsd.daemon.settings import Settings

JOURNAL_NAME = "journal.sqlite3"


class State(str, enum.Enum):
    """A video's state in the journal (stored as its value)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    SKIPPED = "skipped"
    QUARANTINED = "quarantined"
    FAILED = "failed"
    REFUSED = "refused"  #: a symlink or special file: recorded, left where it is
    APPROVED = "approved"  #: needs_review, then approved: to be exported with the pinned mask


#: Values, not members: an Enum hashes by name, so ``"done" in {State.DONE}`` would be False.
TERMINAL = frozenset(s.value for s in (State.DONE, State.SKIPPED, State.QUARANTINED,
                                       State.FAILED, State.REFUSED))
STATES = tuple(State)

#: Schema versions, each a list of statements both back-ends run (types PostgreSQL needs and
#: SQLite maps onto its affinities: BIGINT -> INTEGER, DOUBLE PRECISION -> REAL). Version 1 is
#: the journal of radiomicsd 0.1-0.2 (IF NOT EXISTS: such a file is taken as it is).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS videos (
            digest     TEXT PRIMARY KEY,
            state      TEXT NOT NULL,
            attempts   INTEGER NOT NULL DEFAULT 0,
            reason     TEXT,
            pseudonym  TEXT,
            frames     BIGINT,
            seconds    DOUBLE PRECISION,
            first_seen DOUBLE PRECISION NOT NULL,
            updated    DOUBLE PRECISION NOT NULL,
            path       TEXT)""",
        "CREATE INDEX IF NOT EXISTS videos_state ON videos(state, updated)",
        """CREATE TABLE IF NOT EXISTS files (
            path_key TEXT PRIMARY KEY,
            size     BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            inode    BIGINT NOT NULL,
            digest   TEXT NOT NULL)""",
    ),
    (  # 2: claims with leases, and the replicas that hold them (issue 13)
        "ALTER TABLE videos ADD COLUMN owner TEXT",
        "ALTER TABLE videos ADD COLUMN lease_until DOUBLE PRECISION",
        """CREATE TABLE replicas (
            id        TEXT PRIMARY KEY,
            host      TEXT NOT NULL,
            pid       BIGINT NOT NULL,
            started   DOUBLE PRECISION NOT NULL,
            heartbeat DOUBLE PRECISION NOT NULL)""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
META = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
_KEY_CHECK = b"radiomicsd journal key check"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """One transaction of a back-end: SQL with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...


def new_replica_id() -> str:
    """A fresh id for this process's claims and staging folders (random, no host name)."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class Replica:
    """A row of ``replicas``: a daemon that has run on this journal."""

    id: str
    host: str
    pid: int
    started: float
    heartbeat: float


class Journal:
    """The journal's logic over a back-end's transactions; thread-safe.

    ``lease_seconds``: how long a claim holds without a heartbeat (:meth:`heartbeat` renews
    every claim of this replica and its own row). ``shared``: several replicas use this journal
    at once (so recovery takes over expired leases only, never the work of a live replica).
    """

    backend = "sqlite"
    shared = False
    lock_rows = ""  #: appended to selects whose rows recovery updates (SKIP LOCKED in PostgreSQL)

    def __init__(self, *, key: bytes = b"", record_paths: bool = False,
                 lease_seconds: float = 30.0, replica: str | None = None) -> None:
        self._key = key
        self.record_paths = record_paths
        self.lease_seconds = lease_seconds
        self.replica = replica or new_replica_id()

    # -- back-end ---------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        raise NotImplementedError
        yield

    def _now(self, _db: Tx) -> float:
        """Seconds since the epoch on the journal's clock (the server's, for a shared one)."""
        return time.time()

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """Where the journal is, for logs and ``status`` (never a password)."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise :class:`~radiomicsd.pipeline.errors.JournalUnavailable` unless the journal
        answers."""
        with self._tx() as db:
            db.execute("SELECT 1")

    # -- schema -----------------------------------------------------------------------------
    def _migrate(self, db: Tx) -> None:
        db.execute(META)
        row = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise ConfigError(f"the journal has schema version {version}; this radiomicsd "
                              f"knows up to {SCHEMA_VERSION} (a newer release wrote it)")
        for statements in MIGRATIONS[version:]:
            for sql in statements:
                db.execute(sql)
        self._set_meta(db, "schema_version", str(SCHEMA_VERSION))

    def _set_meta(self, db: Tx, name: str, value: str) -> None:
        db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                   "value=excluded.value", (name, value))

    def check_key(self) -> None:
        """Record a check value of the pseudonym key; ConfigError when another key wrote this
        journal (replicas with different keys would export one content under two names)."""
        check = hmac.new(self._key, _KEY_CHECK, hashlib.sha256).hexdigest()[:16]
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE name='key_check'").fetchone()
            if row is None:
                self._set_meta(db, "key_check", check)
            elif row[0] != check:
                raise ConfigError("the pseudonym key differs from the one this journal was "
                                  "written with (every replica needs the same key)")

    def path_key(self, path: Path) -> str:
        """Keyed hash of a path: lets the journal recognise a file without storing its name."""
        # os.fsencode: the bytes the kernel has (names that are not UTF-8 included); the same
        # bytes as str.encode() for every UTF-8 name, so existing keys stay valid.
        return hmac.new(self._key, os.fsencode(path), hashlib.sha256).hexdigest()

    def _shown(self, path: Path | None) -> str | None:
        return path_text(path) if (self.record_paths and path is not None) else None

    # -- seen files -------------------------------------------------------------------------
    def known_digest(self, path: Path, stamp: FileStamp) -> str | None:
        """The digest recorded for this exact file version, if any."""
        with self._tx() as db:
            row = db.execute(
                "SELECT digest FROM files WHERE path_key=? AND size=? AND mtime_ns=? AND inode=?",
                (self.path_key(path), stamp.size, stamp.mtime_ns, stamp.inode)).fetchone()
        return row[0] if row else None

    def remember_file(self, path: Path, stamp: FileStamp, digest: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?) ON CONFLICT(path_key) DO UPDATE "
                       "SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
                       "inode=excluded.inode, digest=excluded.digest",
                       (self.path_key(path), stamp.size, stamp.mtime_ns, stamp.inode, digest))

    # -- videos -----------------------------------------------------------------------------
    def state(self, digest: str) -> State | None:
        with self._tx() as db:
            row = db.execute("SELECT state FROM videos WHERE digest=?", (digest,)).fetchone()
        return State(row[0]) if row else None

    def claim(self, digest: str, pseudonym: str | None, path: Path | None = None) -> bool:
        """Mark ``digest`` as processing by this replica; False if it is finished, or in work
        under a lease that has not expired."""
        shown = self._shown(path)
        with self._tx() as db:
            now = self._now(db)
            until = now + self.lease_seconds
            if db.execute(
                    "INSERT INTO videos (digest, state, attempts, pseudonym, first_seen, updated, "
                    "path, owner, lease_until) VALUES (?, 'processing', 1, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(digest) DO NOTHING",
                    (digest, pseudonym, now, now, shown, self.replica, until)).rowcount == 1:
                return True
            return db.execute(
                "UPDATE videos SET state='processing', attempts=attempts+1, pseudonym=?, "
                "updated=?, path=COALESCE(?, path), owner=?, lease_until=? WHERE digest=? AND "
                "(state IN ('queued', 'approved') OR (state='processing' AND lease_until < ?))",
                (pseudonym, now, shown, self.replica, until, digest, now)).rowcount == 1

    def finish(self, digest: str, state: State, reason: str | None = None,
               pseudonym: str | None = None, frames: int | None = None,
               seconds: float | None = None, path: Path | None = None) -> None:
        """Record a state change (terminal or 'queued' for a retry); ends any claim."""
        state = State(state)
        shown = self._shown(path)
        with self._tx() as db:
            now = self._now(db)
            db.execute(
                "INSERT INTO videos (digest, state, attempts, reason, pseudonym, frames, seconds, "
                "first_seen, updated, path) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(digest) DO UPDATE SET state=excluded.state, "
                "reason=excluded.reason, pseudonym=COALESCE(excluded.pseudonym, videos.pseudonym),"
                " frames=COALESCE(excluded.frames, videos.frames), "
                "seconds=COALESCE(excluded.seconds, videos.seconds), updated=excluded.updated, "
                "path=COALESCE(excluded.path, videos.path), owner=NULL, lease_until=NULL",
                (digest, state.value, reason, pseudonym, frames, seconds, now, now, shown))

    def approve(self, digest: str) -> None:
        """A quarantined content was approved by a person: it may be claimed again."""
        with self._tx() as db:
            db.execute("UPDATE videos SET state=?, updated=? WHERE digest=? AND state=?",
                       (State.APPROVED.value, self._now(db), digest, State.QUARANTINED.value))

    # -- replicas, leases, recovery ----------------------------------------------------------
    def heartbeat(self) -> None:
        """Renew this replica's row and the lease of every claim it holds."""
        with self._tx() as db:
            now = self._now(db)
            db.execute("INSERT INTO replicas VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                       "SET heartbeat=excluded.heartbeat",
                       (self.replica, socket.gethostname(), os.getpid(), now, now))
            db.execute("UPDATE videos SET lease_until=? WHERE owner=? AND state='processing'",
                       (now + self.lease_seconds, self.replica))

    def leave(self) -> None:
        """A clean stop: this replica's row goes, and the claims it abandoned expire now (the
        next recovery, here at start or by another replica at once, queues them again)."""
        with self._tx() as db:
            now = self._now(db)
            db.execute("UPDATE videos SET lease_until=? WHERE owner=? AND state='processing'",
                       (now - 1.0, self.replica))
            db.execute("DELETE FROM replicas WHERE id=?", (self.replica,))

    def replicas(self) -> list[Replica]:
        """Every replica row, newest heartbeat first."""
        with self._tx() as db:
            rows = db.execute("SELECT id, host, pid, started, heartbeat FROM replicas "
                              "ORDER BY heartbeat DESC").fetchall()
        return [Replica(*r) for r in rows]

    def live_replicas(self) -> set[str]:
        """Ids of the replicas whose heartbeat is within one lease (this one included)."""
        with self._tx() as db:
            now = self._now(db)
            rows = db.execute("SELECT id FROM replicas WHERE heartbeat >= ?",
                              (now - self.lease_seconds,)).fetchall()
        return {r[0] for r in rows} | {self.replica}

    def requeue_unfinished(self, *, max_starts: int, expired_only: bool = False
                           ) -> tuple[int, int]:
        """Claims whose work was cut short go back to 'queued', unless their work was started
        ``max_starts`` times already; those are 'failed' as ``repeated_crash`` (an input that
        takes the process down, e.g. past its memory limit, must not do it for ever).

        ``expired_only``: only claims whose lease expired (their owner died); otherwise every
        claim (a journal only this process uses, at start). Returns (queued again, given up).
        """
        with self._tx() as db:
            now = self._now(db)
            where = "state='processing'"
            params: tuple[Any, ...] = ()
            if expired_only:
                where += " AND (lease_until IS NULL OR lease_until < ?)"
                params = (now,)
            rows = db.execute(f"SELECT digest, attempts FROM videos WHERE {where}"
                              f"{self.lock_rows}", params).fetchall()
            crashed = [(r[0],) for r in rows if r[1] >= max_starts]
            again = [(r[0],) for r in rows if r[1] < max_starts]
            for (digest,) in crashed:
                db.execute("UPDATE videos SET state='failed', reason=?, owner=NULL, "
                           "lease_until=NULL WHERE digest=?", ("repeated_crash", digest))
            for digest in again:
                db.execute("UPDATE videos SET state='queued', owner=NULL, lease_until=NULL "
                           "WHERE digest=?", digest)
        return len(again), len(crashed)

    def note_output_folder(self, identity: str, out_dir: Path) -> int:
        """Record which output folder (:attr:`~.output.OutputFolder.identity`, "device:inode:
        token") this journal's outputs are in.

        When it differs from the one recorded (the folder was removed and made again, or
        replaced), every 'done' video whose output is missing there is queued again, so the
        next scan exports it once more. Outputs a consumer removed from a folder that stayed
        are not re-exported. A value recorded before tokens ("device:inode") is the same
        folder when device and inode match. Returns how many were queued again.
        """
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE name='output_folder'").fetchone()
            self._set_meta(db, "output_folder", identity)
            recorded = None if row is None else str(row[0])
            before_tokens = recorded is not None and recorded.count(":") == 1 and \
                identity.startswith(f"{recorded}:")
            if recorded is None or recorded == identity or before_tokens:
                return 0
            done = db.execute("SELECT digest, pseudonym FROM videos WHERE state='done'").fetchall()
            gone = [d for d, name in done if not name or not (out_dir / name).exists()]
            for digest in gone:
                db.execute("UPDATE videos SET state='queued' WHERE digest=?", (digest,))
        return len(gone)

    # -- reports ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Videos per state."""
        with self._tx() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM videos GROUP BY state").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def recent_failures(self, limit: int) -> list[tuple[Any, ...]]:
        """(state, reason, pseudonym, updated, path) of the latest quarantined/failed videos."""
        with self._tx() as db:
            return [tuple(r) for r in db.execute(
                "SELECT state, reason, pseudonym, updated, path FROM videos "
                "WHERE state IN ('quarantined', 'failed') ORDER BY updated DESC LIMIT ?",
                (limit,)).fetchall()]


class SqliteJournal(Journal):
    """The journal in one SQLite file (one connection, one lock)."""

    def __init__(self, path: Path, mode: str = "wal", *, read_only: bool = False,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.path = path
        self._lock = threading.Lock()
        self._begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        if read_only:
            if not path.is_file():
                raise ConfigError(f"no journal at {path} (has the daemon run there yet?)")
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                       check_same_thread=False, isolation_level=None)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute(f"PRAGMA journal_mode={mode.upper()}")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._tx() as db:
            self._migrate(db)

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        with self._lock:
            self._db.execute(self._begin)
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def describe(self) -> str:
        return str(self.path)


def open_journal(settings: Settings, *, key: bytes, replica: str | None = None,
                 read_only: bool = False) -> Journal:
    """The journal ``settings`` name: PostgreSQL at ``journal_url``, else SQLite in
    ``state_dir`` (``read_only``: an existing file, for reports)."""
    kw: dict[str, Any] = {"key": key, "record_paths": settings.record_paths,
                          "lease_seconds": settings.journal_lease_seconds, "replica": replica}
    if settings.journal_url:
        from radiomicsd.daemon.journal_pg import PostgresJournal

        return PostgresJournal(settings.journal_url,
                               password_file=settings.journal_password_file, **kw)
    mode = "delete" if settings.enclave_mode and settings.journal_mode == "wal" \
        else settings.journal_mode
    return SqliteJournal(settings.state_dir.resolve() / JOURNAL_NAME, mode,
                         read_only=read_only, **kw)
