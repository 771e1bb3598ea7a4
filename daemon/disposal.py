"""What happens to an input file after the daemon is done with it.

Refused inputs go to the quarantine folder with a JSON note; processed inputs are kept, deleted
or moved to the done folder (``on_success``). Both are file-system steps only: the journal, the
metrics and the logs stay with the caller.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any


def quarantine_input(path: Path, quarantine_dir: Path, note: dict[str, Any]) -> Path:
    """Move ``path`` (a file or a symlink) into ``quarantine_dir`` under a name that says nothing
    of the input (``q-<UTC time>-<random>``) and write ``note`` beside it as ``<name>.json``.

    The note is written even when the input is gone or is not a regular file. Returns the
    quarantine name's path; raises OSError.
    """
    name = f"q-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"
    target = quarantine_dir / name
    if path.is_symlink() or path.is_file():
        os.replace(path, target)
    (quarantine_dir / f"{name}.json").write_text(json.dumps(note, indent=1))
    return target


def dispose_input(path: Path, policy: str, in_dir: Path, done_dir: Path) -> Path | None:
    """Apply ``on_success`` to a processed input: keep | delete | move.

    ``move`` keeps the path relative to ``in_dir`` under ``done_dir`` and never overwrites: an
    earlier input of the same name stays, the new one gets a random suffix. Returns where the
    input went (None when kept or deleted); raises OSError.
    """
    if policy == "delete":
        path.unlink()
    elif policy == "move":
        target = done_dir / path.relative_to(in_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.name}.{secrets.token_hex(4)}")
        shutil.move(path, target)
        return target
    return None
