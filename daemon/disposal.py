"""What happens to an input file after the daemon is done with it.

Refused inputs go to the quarantine folder with a JSON note; processed inputs are kept, deleted
or moved to the done folder (``on_success``). Both are file-system steps only: the journal, the
metrics and the logs stay with the caller. Every step goes through
:mod:`daemon.beneath`: no symlink is followed at any depth, a symlink in the input is never
moved or removed, moves work across file systems, and what lands in the quarantine is 0600 in
0700 folders.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from radiomicsd.daemon.beneath import (
    PRIVATE_FILE,
    InputRoot,
    OutsideInput,
    fs_bytes,
    make_private_dir,
    move_out,
    path_text,
    write_private,
)
from radiomicsd.pipeline.errors import NotRegularFile, SymlinkRefused

#: How often ``move`` tries a new random suffix before giving up (names are 2^32 apart).
MOVE_TRIES = 8


@contextmanager
def _root_for(path: Path, root: InputRoot | None, folder: Path | None) -> Iterator[InputRoot]:
    """``root`` itself, or a root opened on ``folder`` (default: the file's own folder)."""
    if root is not None:
        yield root
        return
    with InputRoot(folder if folder is not None else Path(path).parent) as own:
        yield own


def quarantine_input(path: Path, quarantine_dir: Path, note: dict[str, Any], *,
                     root: InputRoot | None = None) -> Path:
    """Move the regular file ``path`` into ``quarantine_dir`` under a name that says nothing
    of the input (``q-<UTC time>-<random>``) and write ``note`` beside it as ``<name>.json``.

    ``root``: the input folder (no folder between it and the file may be a link); without it,
    the file's own folder. A symlink (at any depth), a special file or a vanished input is left
    where it is; the note is written in every case, even when the move fails (OSError, raised
    after the note). Note values that are paths or hold names that are not UTF-8 are written as
    text (``\\xNN`` for such bytes) plus ``<key>_hex`` with the exact bytes. The folder is
    created 0700 when missing; file and note are 0600. Returns the quarantine name's path.
    """
    name = f"q-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"
    make_private_dir(quarantine_dir)
    failure: OSError | None = None
    try:
        with _root_for(path, root, None) as r:
            move_out(r, path, quarantine_dir, name, mode=PRIVATE_FILE)
    except (SymlinkRefused, NotRegularFile, OutsideInput, FileNotFoundError, NotADirectoryError):
        pass  # left alone: the caller has recorded why
    except OSError as exc:
        failure = exc
    data = json.dumps(note_values(note), indent=1).encode("ascii")
    write_private(quarantine_dir, f"{name}.json", data)
    if failure is not None:
        raise failure
    return quarantine_dir / name


def note_values(note: dict[str, Any]) -> dict[str, Any]:
    """``note`` with paths and non-UTF-8 text made JSON-safe (see :func:`quarantine_input`)."""
    out: dict[str, Any] = {}
    for key, value in note.items():
        if isinstance(value, dict):
            out[key] = note_values(value)
        elif isinstance(value, (str, bytes, os.PathLike)):
            out[key] = path_text(value)
            raw = fs_bytes(value)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                out[f"{key}_hex"] = raw.hex()
        else:
            out[key] = value
    return out


def _refused(exc: Exception) -> OSError:
    """A refusal on the input side as the OSError this module's callers handle."""
    code = errno.ELOOP if isinstance(exc, SymlinkRefused) else errno.EINVAL
    return OSError(code, str(exc))


def dispose_input(path: Path, policy: str, in_dir: Path, done_dir: Path, *,
                  root: InputRoot | None = None) -> Path | None:
    """Apply ``on_success`` to a processed input: keep | delete | move.

    Resolved beneath ``root`` (default: ``in_dir`` opened for this call) with no symlink
    followed: a file reached through a link, or a link itself, is neither deleted nor moved.
    ``move`` keeps the path relative to ``in_dir`` under ``done_dir`` (missing folders made
    0700, the file's own mode kept, across file systems too) and never overwrites: an earlier
    input of the same name stays, the new one gets a random suffix. Returns where the input
    went (None when kept or deleted); raises OSError (ELOOP for a link, EINVAL for a special
    file or a path outside ``in_dir``).
    """
    if policy not in ("delete", "move"):
        return None
    try:
        with _root_for(path, root, in_dir) as r:
            if policy == "delete":
                r.unlink(path)
                return None
            rel = r.relative(path)
            for i in range(MOVE_TRIES):
                name = rel if i == 0 else rel + f".{secrets.token_hex(4)}".encode()
                try:
                    return move_out(r, path, done_dir, name, mode=None)
                except FileExistsError:
                    continue
            raise FileExistsError(errno.EEXIST, "no free name in the done folder")
    except (SymlinkRefused, NotRegularFile, OutsideInput) as exc:
        raise _refused(exc) from None
