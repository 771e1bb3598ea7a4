"""``radiomicsd status``: journal counts per state and recent failures, from the SQLite file."""

from __future__ import annotations

import sqlite3
import sys
import time
from typing import TextIO

from radiomicsd.daemon.config import Config
from radiomicsd.daemon.journal import STATES
from radiomicsd.pipeline.errors import ConfigError


def print_status(cfg: Config, recent: int = 10, out: TextIO = sys.stdout) -> int:
    """Print counts and the latest failures (pseudonym and reason; paths only if recorded)."""
    path = cfg.path("state_dir") / "journal.sqlite3"
    if not path.is_file():
        raise ConfigError("no journal in the state folder (has the daemon run yet?)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counts = dict(db.execute("SELECT state, COUNT(*) FROM videos GROUP BY state").fetchall())
        rows = db.execute(
            "SELECT state, reason, pseudonym, updated, path FROM videos "
            "WHERE state IN ('quarantined', 'failed') ORDER BY updated DESC LIMIT ?",
            (recent,)).fetchall()
    finally:
        db.close()
    out.write("state         videos\n")
    for state in STATES:
        out.write(f"{state:13s} {counts.get(state, 0)}\n")
    if rows:
        out.write("recent failures:\n")
    for state, reason, pseudonym, updated, shown in rows:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated))
        line = f"  {when}  {state:11s}  {reason or '-':24s}  {pseudonym or '-'}"
        out.write(line + (f"  {shown}" if shown else "") + "\n")
    return 0
