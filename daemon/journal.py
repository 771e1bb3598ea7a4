"""The durable journal: one SQLite row per content digest, plus a cache of seen files.

``videos``: state (queued, processing, done, skipped, quarantined, failed), attempts, reason code,
pseudonym, frames, timings and, only when the operator enables ``record_paths``, the input path.
``files``: a keyed hash of each seen path with its size, mtime and inode, mapped to the content
digest, so periodic rescans do not re-read unchanged files and no path is stored in clear.

Journal mode ``wal`` suits a normal file system; ``delete``/``truncate`` need no shared-memory
mmap, which SCONE's protected volumes do not offer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TERMINAL = frozenset({"done", "skipped", "quarantined", "failed"})
STATES = ("queued", "processing", "done", "skipped", "quarantined", "failed")

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
"""


@dataclass(frozen=True)
class FileStamp:
    """What identifies a file version without reading it."""

    size: int
    mtime_ns: int
    inode: int


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
    def state(self, digest: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM videos WHERE digest=?",
                                   (digest,)).fetchone()
        return row[0] if row else None

    def claim(self, digest: str, pseudonym: str | None, path: Path | None = None) -> bool:
        """Mark ``digest`` as processing; False if it is finished or being processed already."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT state FROM videos WHERE digest=?", (digest,)).fetchone()
            if row and (row[0] in TERMINAL or row[0] == "processing"):
                return False
            shown = str(path) if (self.record_paths and path is not None) else None
            if row:
                db.execute("UPDATE videos SET state='processing', attempts=attempts+1, "
                           "pseudonym=?, updated=?, path=COALESCE(?, path) WHERE digest=?",
                           (pseudonym, now, shown, digest))
            else:
                db.execute("INSERT INTO videos (digest, state, attempts, pseudonym, first_seen, "
                           "updated, path) VALUES (?, 'processing', 1, ?, ?, ?, ?)",
                           (digest, pseudonym, now, now, shown))
        return True

    def finish(self, digest: str, state: str, reason: str | None = None,
               pseudonym: str | None = None, frames: int | None = None,
               seconds: float | None = None, path: Path | None = None) -> None:
        """Record a state change (terminal or 'queued' for a retry)."""
        if state not in STATES:
            raise ValueError(state)
        now = time.time()
        shown = str(path) if (self.record_paths and path is not None) else None
        with self._tx() as db:
            db.execute(
                "INSERT INTO videos (digest, state, attempts, reason, pseudonym, frames, seconds, "
                "first_seen, updated, path) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(digest) DO UPDATE SET state=excluded.state, "
                "reason=excluded.reason, pseudonym=COALESCE(excluded.pseudonym, pseudonym), "
                "frames=COALESCE(excluded.frames, frames), "
                "seconds=COALESCE(excluded.seconds, seconds), updated=excluded.updated, "
                "path=COALESCE(excluded.path, path)",
                (digest, state, reason, pseudonym, frames, seconds, now, now, shown))

    def requeue_unfinished(self) -> int:
        """After a crash: entries left 'processing' go back to 'queued'; return how many."""
        with self._tx() as db:
            return db.execute("UPDATE videos SET state='queued' WHERE state='processing'").rowcount
