"""The journal on PostgreSQL (psycopg 3), for replicas that share input and output folders.

The SQL and the state machine are :class:`~radiomicsd.daemon.journal.Journal`'s; this module
adds the connection: ``?`` placeholders become psycopg's, time is the server's clock (replicas
on several hosts compare leases against one clock), rows that recovery takes are locked with
``FOR UPDATE SKIP LOCKED`` (two replicas recovering at once take disjoint rows), and migrations
run under an advisory lock (replicas starting together migrate once).

The password never comes from the config file: ``journal_password_file``, else
``$RADIOMICSD_JOURNAL_PASSWORD``, else libpq's own ``PGPASSWORD``/``PGPASSFILE``. TLS and every
other libpq option pass through in the URL's query (``?sslmode=verify-full&sslrootcert=...``).

A lost connection raises :class:`~radiomicsd.pipeline.errors.JournalUnavailable` (the daemon
pauses); the next call connects again.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from radiomicsd.daemon.journal import Cursor, Journal, Tx
from radiomicsd.pipeline.errors import ConfigError, JournalUnavailable

PASSWORD_ENV = "RADIOMICSD_JOURNAL_PASSWORD"
#: Seconds a connection attempt may take before the journal counts as unavailable.
CONNECT_TIMEOUT = 5
#: pg_advisory_xact_lock key of schema migrations ('rmd' + 1).
MIGRATION_LOCK = 0x726D6401


def check_url(url: str, *, enclave: bool = False) -> None:
    """ConfigError unless ``url`` is a PostgreSQL URL without a password in it; in an enclave
    also unless the server is authenticated by TLS (``sslmode=verify-full`` with a root
    certificate): the host and its network are outside the trust boundary there."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("'journal_url' must be null or postgresql://user@host:port/dbname")
    if parts.password is not None:
        raise ConfigError("'journal_url' holds a password: put it in journal_password_file "
                          f"or ${PASSWORD_ENV} instead")
    query = parse_qs(parts.query)
    if enclave and (query.get("sslmode") != ["verify-full"] or "sslrootcert" not in query):
        raise ConfigError("'journal_url' in enclave_mode needs ?sslmode=verify-full&"
                          "sslrootcert=FILE: the database is reached across the untrusted "
                          "host")


class _PgTx:
    """A transaction on one psycopg connection, taking ``?`` placeholders."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor: Cursor = self._conn.execute(sql.replace("?", "%s"), params)
        return cursor


class PostgresJournal(Journal):
    """The journal in a PostgreSQL database (one connection, one lock, reconnect on loss)."""

    backend = "postgresql"
    shared = True
    lock_rows = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, password_file: Path | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        check_url(url)
        import psycopg  # only with a journal_url: SQLite users need no driver

        self._psycopg = psycopg
        self.url = url
        self._password = _password(password_file)
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            self._migrate(db)

    def _connect(self) -> Any:
        kw: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                              "application_name": "radiomicsd", "keepalives_idle": 10}
        if self._password is not None:
            kw["password"] = self._password
        try:
            return self._psycopg.connect(self.url, **kw)
        except self._psycopg.OperationalError as exc:
            raise JournalUnavailable(_reason(exc)) from None
        except self._psycopg.ProgrammingError as exc:  # a malformed URL or option
            raise ConfigError(f"'journal_url': {_reason(exc)}") from None

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            try:
                with self._conn.transaction():
                    yield _PgTx(self._conn)
            except self._psycopg.OperationalError as exc:  # server gone, restarting, network
                self._drop()
                raise JournalUnavailable(_reason(exc)) from None

    def _drop(self) -> None:
        with contextlib.suppress(Exception):  # the connection is broken already
            self._conn.close()
        self._conn = None

    def _now(self, db: Tx) -> float:
        row = db.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        return float(row[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._drop()

    def describe(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "local socket"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path}"


def _password(path: Path | None) -> str | None:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read journal_password_file: {exc.strerror}") from None
    return os.environ.get(PASSWORD_ENV) or None


def _reason(exc: Exception) -> str:
    """The first line of a driver error: the server's or libpq's words, no password."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
