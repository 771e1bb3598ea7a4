"""``radiomicsd status``: journal counts per state and recent failures, from the SQLite file."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import TextIO

from radiomicsd.daemon.journal import JOURNAL_NAME, STATES
from radiomicsd.pipeline.errors import ConfigError


def print_status(*, state_dir: Path, recent: int = 10, out: TextIO = sys.stdout) -> int:
    """Print counts and the latest failures (pseudonym and reason; paths only if recorded)."""
    path = state_dir / JOURNAL_NAME
    if not path.is_file():
        raise ConfigError(f"no journal in the state folder {state_dir} (has the daemon run "
                          "there yet?)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counts = dict(db.execute("SELECT state, COUNT(*) FROM videos GROUP BY state").fetchall())
        rows = db.execute(
            "SELECT state, reason, pseudonym, updated, path FROM videos "
            "WHERE state IN ('quarantined', 'failed') ORDER BY updated DESC LIMIT ?",
            (recent,)).fetchall()
    finally:
        db.close()
    out.write(f"journal: {path}\n")
    out.write("state         videos\n")
    for state in STATES:
        out.write(f"{state.value:13s} {counts.get(state.value, 0)}\n")
    if rows:
        out.write("recent failures:\n")
    for state, reason, pseudonym, updated, shown in rows:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated))
        line = f"  {when}  {state:11s}  {reason or '-':24s}  {pseudonym or '-'}"
        out.write(line + (f"  {shown}" if shown else "") + "\n")
    return 0
