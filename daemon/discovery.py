"""Input discovery: which paths under the input folder are candidates, and their file stamps.

The same rules for the start-up scan, the periodic rescan and file-system events: a path is
ignored when its name *or the name of any folder between it and the input root* matches an
ignore pattern, or when it lies in a folder the daemon writes (output, state, ...).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileStamp:
    """What identifies a file version without reading it."""

    size: int
    mtime_ns: int
    inode: int


def stamp_of(path: Path) -> FileStamp | None:
    """Size/mtime/inode without following symlinks; None if the path is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return FileStamp(st.st_size, st.st_mtime_ns, st.st_ino)


def ignored(name: str, patterns: Iterable[str]) -> bool:
    """True when one file or folder name matches one of the ignore patterns (shell globs)."""
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def ignored_path(path: Path, root: Path, patterns: Iterable[str]) -> bool:
    """True when ``path`` or any folder between it and ``root`` has an ignored name.

    A path outside ``root`` counts as ignored.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return True
    patterns = list(patterns)
    return any(ignored(part, patterns) for part in parts)


def iter_inputs(root: Path, patterns: Iterable[str],
                exclude: Iterable[Path] = ()) -> Iterator[Path]:
    """Files under ``root`` in sorted order, not following symlinked folders.

    Symlinks are yielded (they are refused with a reason later, not silently dropped); folders
    in ``exclude`` (the output and state folders when they lie inside the input) and folders
    with ignored names are skipped.
    """
    patterns = list(patterns)
    skip = {p.resolve() for p in exclude}
    if not root.is_dir() or root.is_symlink():
        yield root
        return
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        keep = []
        for d in sorted(dirs):
            full = here / d
            if ignored(d, patterns):
                continue
            if full.is_symlink():
                files.append(d)
            elif full.resolve() not in skip:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if not ignored(f, patterns):
                yield here / f
