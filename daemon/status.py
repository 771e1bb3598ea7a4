"""``radiomicsd status``: journal counts per state, recent failures and, with replicas, the
replicas and their heartbeats; from the configured journal (SQLite read-only, or PostgreSQL)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from radiomicsd.daemon.journal import STATES, open_journal
from radiomicsd.daemon.settings import Settings
from radiomicsd.pipeline.errors import ConfigError, JournalUnavailable


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def print_status(settings: Settings, *, recent: int = 10, out: TextIO = sys.stdout) -> int:
    """Print counts and the latest failures (pseudonym and reason; paths only if recorded)."""
    try:
        journal = open_journal(settings, key=b"", read_only=True)
        try:
            counts = journal.counts()
            rows = journal.recent_failures(recent)
            replicas = journal.replicas() if journal.shared else []
            where = journal.describe()
        finally:
            journal.close()
    except JournalUnavailable as exc:
        raise ConfigError(f"cannot reach the journal: {exc.detail}") from None
    out.write(f"journal: {where}\n")
    out.write("state         videos\n")
    for state in STATES:
        out.write(f"{state.value:13s} {counts.get(state.value, 0)}\n")
    if replicas:
        now = time.time()
        out.write("replicas (id, host, pid, started, seconds since heartbeat):\n")
        for r in replicas:
            out.write(f"  {r.id}  {r.host}  {r.pid}  {_when(r.started)}  "
                      f"{max(0.0, now - r.heartbeat):.0f}\n")
    if rows:
        out.write("recent failures:\n")
    for state, reason, pseudonym, updated, shown in rows:
        line = f"  {_when(updated)}  {state:11s}  {reason or '-':24s}  {pseudonym or '-'}"
        out.write(line + (f"  {shown}" if shown else "") + "\n")
    return 0
