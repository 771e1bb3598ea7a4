"""Detection: watchdog observers feed candidate paths; the settle tracker decides completeness.

The handler only enqueues paths (it never works). The main loop drains that queue into the
:class:`SettleTracker`, which releases a file once it is complete: right after a close-after-write
event if size and mtime have not moved since, or once size and mtime have been unchanged for
``settle_seconds``.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from radiomicsd.daemon.discovery import FileStamp, ignored_path, stamp_of
from radiomicsd.daemon.wakeup import Wakeup

#: File systems where inotify misses changes made by other hosts or is not supported.
POLLING_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs")


class EnqueueHandler(FileSystemEventHandler):
    """Puts (kind, path) of interesting events on a queue and sets ``wake``; kind is 'scan',
    'touch' or 'closed'."""

    def __init__(self, sink: queue.Queue[tuple[str, str]], wake: Wakeup) -> None:
        self.sink, self.wake = sink, wake

    def _put(self, kind: str, path: str) -> None:
        self.sink.put((kind, path))
        self.wake.set()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                # a folder moved in with files already inside: let a scan find them
                self._put("scan", str(getattr(event, "dest_path", "") or event.src_path))
            return
        if event.event_type == "closed":
            self._put("closed", str(event.src_path))
        elif event.event_type in ("created", "modified"):
            self._put("touch", str(event.src_path))
        elif event.event_type == "moved":
            self._put("touch", str(event.dest_path))


def filesystem_type(path: Path) -> str:
    """File system type of the mount holding ``path`` (from /proc/self/mounts), or ''."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    target, best, fstype = str(path.resolve()), "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
            best, fstype = mnt, parts[2]
    return fstype


def make_observer(kind: str, path: Path, timeout: float) -> tuple[Any, str]:
    """Create (not start) an observer; returns (observer, name actually used).

    ``auto`` picks inotify unless the folder is on a network/FUSE file system; if inotify
    cannot start (no support, watch limit reached), callers fall back to polling.
    """
    from watchdog.observers.polling import PollingObserver

    if kind == "auto":
        fstype = filesystem_type(path)
        if fstype.startswith("fuse") or fstype in POLLING_FS:
            return PollingObserver(timeout=timeout), f"polling ({fstype} file system)"
        kind = "inotify"
    if kind == "inotify":
        try:
            from watchdog.observers.inotify import InotifyObserver
        except ImportError:
            return PollingObserver(timeout=timeout), "polling (no inotify)"
        return InotifyObserver(timeout=timeout), "inotify"
    return PollingObserver(timeout=timeout), "polling"


@dataclass
class _Pending:
    stamp: FileStamp
    since: float
    closed: bool = False


class SettleTracker:
    """Tracks candidate files until they are complete.

    Memory is a few hundred bytes per candidate path, never file contents.
    """

    def __init__(self, *, root: Path, settle_seconds: float, patterns: tuple[str, ...]) -> None:
        self.root = root
        self.settle_seconds = settle_seconds
        self.patterns = patterns
        self._pending: dict[Path, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: Path) -> bool:
        return path in self._pending

    def note(self, path: Path, closed: bool = False, now: float | None = None) -> None:
        """Record activity on ``path`` (an event or a scan hit)."""
        if ignored_path(path, self.root, self.patterns):
            return
        now = time.monotonic() if now is None else now
        stamp = stamp_of(path)
        if stamp is None:
            self._pending.pop(path, None)
            return
        old = self._pending.get(path)
        if old is None or old.stamp != stamp:
            self._pending[path] = _Pending(stamp, now, closed)
        elif closed:
            old.closed = True

    def next_due(self) -> float | None:
        """Earliest monotonic time at which :meth:`ready` may release a file (None: nothing
        pending). A file that changes meanwhile is simply checked again later."""
        return min((p.since if p.closed else p.since + self.settle_seconds
                    for p in self._pending.values()), default=None)

    def ready(self, now: float | None = None) -> list[tuple[Path, FileStamp]]:
        """Pop and return files that are complete now, oldest first."""
        now = time.monotonic() if now is None else now
        out = []
        for path, p in list(self._pending.items()):
            stamp = stamp_of(path)
            if stamp is None:
                del self._pending[path]
                continue
            if stamp != p.stamp:
                self._pending[path] = _Pending(stamp, now)
                continue
            if p.closed or now - p.since >= self.settle_seconds:
                del self._pending[path]
                out.append((path, stamp))
        return out
