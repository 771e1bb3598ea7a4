"""The durable journal: one SQLite row per content digest, plus a cache of seen files.

``videos``: state (queued, processing, done, skipped, quarantined, failed), attempts, reason code,
pseudonym, frames, timings and, only when the operator enables ``record_paths``, the input path.
``files``: a keyed hash of each seen path with its size, mtime and inode, mapped to the content
digest, so periodic rescans do not re-read unchanged files and no path is stored in clear.

Journal mode ``wal`` suits a normal file system; ``delete``/``truncate`` need no shared-memory
mmap, which SCONE's protected volumes do not offer.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from radiomicsd.daemon.beneath import path_text
from radiomicsd.daemon.discovery import FileStamp

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

SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    digest     TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    reason     TEXT,
    pseudonym  TEXT,
    frames     INTEGER,
    seconds    REAL,
    first_seen REAL NOT NULL,
    updated    REAL NOT NULL,
    path       TEXT
);
CREATE INDEX IF NOT EXISTS videos_state ON videos(state, updated);
CREATE TABLE IF NOT EXISTS files (
    path_key TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode    INTEGER NOT NULL,
    digest   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class Journal:
    """Thread-safe access to the journal database (one connection, one lock)."""

    def __init__(self, path: Path, mode: str = "wal", key: bytes = b"",
                 record_paths: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._lock = threading.Lock()
        self._key = key
        self.record_paths = record_paths
        self._db.execute(f"PRAGMA journal_mode={mode.upper()}")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def path_key(self, path: Path) -> str:
        """Keyed hash of a path: lets the journal recognise a file without storing its name."""
        # os.fsencode: the bytes the kernel has (names that are not UTF-8 included); the same
        # bytes as str.encode() for every UTF-8 name, so existing keys stay valid.
        return hmac.new(self._key, os.fsencode(path), hashlib.sha256).hexdigest()

    # -- seen files -------------------------------------------------------------------------
    def known_digest(self, path: Path, stamp: FileStamp) -> str | None:
        """The digest recorded for this exact file version, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT digest FROM files WHERE path_key=? AND size=? AND mtime_ns=? AND inode=?",
                (self.path_key(path), stamp.size, stamp.mtime_ns, stamp.inode)).fetchone()
        return row[0] if row else None

    def remember_file(self, path: Path, stamp: FileStamp, digest: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                       (self.path_key(path), stamp.size, stamp.mtime_ns, stamp.inode, digest))

    # -- videos -----------------------------------------------------------------------------
    def state(self, digest: str) -> State | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM videos WHERE digest=?",
                                   (digest,)).fetchone()
        return State(row[0]) if row else None

    def claim(self, digest: str, pseudonym: str | None, path: Path | None = None) -> bool:
        """Mark ``digest`` as processing; False if it is finished or being processed already."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT state FROM videos WHERE digest=?", (digest,)).fetchone()
            if row and (row[0] in TERMINAL or row[0] == "processing"):
                return False
            shown = path_text(path) if (self.record_paths and path is not None) else None
            if row:
                db.execute("UPDATE videos SET state='processing', attempts=attempts+1, "
                           "pseudonym=?, updated=?, path=COALESCE(?, path) WHERE digest=?",
                           (pseudonym, now, shown, digest))
            else:
                db.execute("INSERT INTO videos (digest, state, attempts, pseudonym, first_seen, "
                           "updated, path) VALUES (?, 'processing', 1, ?, ?, ?, ?)",
                           (digest, pseudonym, now, now, shown))
        return True

    def finish(self, digest: str, state: State, reason: str | None = None,
               pseudonym: str | None = None, frames: int | None = None,
               seconds: float | None = None, path: Path | None = None) -> None:
        """Record a state change (terminal or 'queued' for a retry)."""
        state = State(state)
        now = time.time()
        shown = path_text(path) if (self.record_paths and path is not None) else None
        with self._tx() as db:
            db.execute(
                "INSERT INTO videos (digest, state, attempts, reason, pseudonym, frames, seconds, "
                "first_seen, updated, path) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(digest) DO UPDATE SET state=excluded.state, "
                "reason=excluded.reason, pseudonym=COALESCE(excluded.pseudonym, pseudonym), "
                "frames=COALESCE(excluded.frames, frames), "
                "seconds=COALESCE(excluded.seconds, seconds), updated=excluded.updated, "
                "path=COALESCE(excluded.path, path)",
                (digest, state.value, reason, pseudonym, frames, seconds, now, now, shown))

    def approve(self, digest: str) -> None:
        """A quarantined content was approved by a person: it may be claimed again."""
        with self._tx() as db:
            db.execute("UPDATE videos SET state=?, updated=? WHERE digest=? AND state=?",
                       (State.APPROVED.value, time.time(), digest, State.QUARANTINED.value))

    def requeue_unfinished(self, *, max_starts: int) -> tuple[int, int]:
        """After a crash: entries left 'processing' go back to 'queued', unless their work was
        started ``max_starts`` times already; those are 'failed' as ``repeated_crash`` (an input
        that takes the process down, e.g. past its memory limit, must not do it for ever).
        Returns (queued again, given up)."""
        with self._tx() as db:
            given_up = db.execute(
                "UPDATE videos SET state='failed', reason=? "
                "WHERE state='processing' AND attempts >= ?",
                ("repeated_crash", max_starts)).rowcount
            queued = db.execute(
                "UPDATE videos SET state='queued' WHERE state='processing'").rowcount
        return queued, given_up

    def note_output_folder(self, identity: tuple[int, int], out_dir: Path) -> int:
        """Record which output folder (device, inode) this journal's outputs are in.

        When it differs from the one recorded (the folder was removed and made again, or
        replaced), every 'done' video whose output is missing there is queued again, so the
        next scan exports it once more. Outputs a consumer removed from a folder that stayed
        are not re-exported. Returns how many were queued again.
        """
        value = f"{identity[0]}:{identity[1]}"
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE name='output_folder'").fetchone()
            db.execute("INSERT OR REPLACE INTO meta VALUES ('output_folder', ?)", (value,))
            if row is None or row[0] == value:
                return 0
            done = db.execute("SELECT digest, pseudonym FROM videos WHERE state='done'").fetchall()
            gone = [(d,) for d, name in done if not name or not (out_dir / name).exists()]
            db.executemany("UPDATE videos SET state='queued' WHERE digest=?", gone)
        return len(gone)
