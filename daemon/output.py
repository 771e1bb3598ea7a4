"""All-or-nothing output: frames and manifest in a staging folder, then one atomic rename.

A video's output is written into ``OUT/.staging-[<replica>-]<random>/`` (same file system as its
target),
made durable (``syncfs`` on Linux, per-file ``fsync`` elsewhere), and renamed to
``OUT/<pseudonym>/``; the output folder is then fsynced so the rename itself survives a crash.
A crash leaves at most a staging folder, which :func:`remove_staging_leftovers` deletes at start
(replicas sharing a folder: only the folders of replicas that are no longer alive).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

from radiomicsd.pipeline.errors import ConfigError, DiskFull, OutputUnavailable

STAGING_PREFIX = ".staging-"
LOCK_NAME = ".radiomicsd.lock"
MANIFEST = "manifest.json"
SCHEMA_VERSION = 1

_libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None
_syncfs = getattr(_libc, "syncfs", None)


class AlreadyExported(Exception):
    """The pseudonym's output folder exists: this content was exported before."""


def frame_name(index: int) -> str:
    """Zero-padded frame file name that sorts in frame order: 000000.png, 000001.png, ..."""
    return f"{index:06d}.png"


def _io_error(exc: OSError) -> OutputUnavailable:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull("no space left on the output file system")
    return OutputUnavailable(f"output error: {errno.errorcode.get(exc.errno or 0, 'EIO')}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedOutput:
    """One video's output under construction; use as a context manager.

    On leaving the context without :meth:`commit` (an error, a stop), the staging folder is
    removed, so no partial output ever becomes visible.
    """

    def __init__(self, out_dir: Path, *, replica: str = "") -> None:
        self.out_dir = out_dir
        owner = f"{replica}-" if replica else ""
        self.path = out_dir / f"{STAGING_PREFIX}{owner}{secrets.token_hex(8)}"
        self.committed: Path | None = None
        self.frames = 0  # frames written so far
        self._lock = threading.Lock()
        try:  # never re-creates a missing output folder: that is the lock holder's business
            self.path.mkdir(mode=0o700)
        except OSError as exc:
            raise _io_error(exc) from None

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.committed is None:
            shutil.rmtree(self.path, ignore_errors=True)

    def write_bytes(self, name: str, data: bytes) -> None:
        try:
            with open(self.path / name, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise _io_error(exc) from None

    def write_frame(self, index: int, png: bytes) -> None:
        """Write frame ``index``'s PNG bytes; safe to call from several threads."""
        self.write_bytes(frame_name(index), png)
        with self._lock:
            self.frames += 1

    def write_json(self, name: str, doc: dict[str, Any]) -> None:
        self.write_bytes(name, json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode())

    def _make_durable(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _syncfs is not None and _syncfs(fd) == 0:
                return
            for entry in os.scandir(self.path):
                ffd = os.open(entry.path, os.O_RDONLY)
                try:
                    os.fsync(ffd)
                finally:
                    os.close(ffd)
            os.fsync(fd)
        finally:
            os.close(fd)

    def commit(self, pseudonym: str, manifest: dict[str, Any]) -> Path:
        """Write ``manifest.json`` last, make everything durable, rename into place.

        Raises :class:`AlreadyExported` when ``OUT/<pseudonym>`` exists.
        """
        target = self.out_dir / pseudonym
        doc = {"schema_version": SCHEMA_VERSION, "pseudonym": pseudonym, "frames": self.frames}
        doc.update(manifest)
        try:
            self.write_json(MANIFEST, doc)
            self._make_durable()
            if target.exists():
                raise AlreadyExported(pseudonym)
            os.rename(self.path, target)
            _fsync_dir(self.out_dir)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise AlreadyExported(pseudonym) from None
            raise _io_error(exc) from None
        self.committed = target
        return target


def remove_staging_leftovers(out_dir: Path, *, live: set[str] | None = None) -> int:
    """Delete staging folders a crashed run left behind; return how many.

    ``live``: the folder is shared by replicas with these ids; only folders that name another
    replica (a dead one) are removed, never a live replica's work or an unnamed one.
    """
    if not out_dir.is_dir():
        return 0
    n = 0
    for entry in os.scandir(out_dir):
        if not (entry.name.startswith(STAGING_PREFIX) and entry.is_dir(follow_symlinks=False)):
            continue
        owner, sep, _ = entry.name[len(STAGING_PREFIX):].partition("-")
        if live is not None and (not sep or owner in live):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        n += 1
    return n



def _open_lock(folder: Path) -> int:
    """The lock file of ``folder``, opened read-write; made, holding a new random token, if
    there is none. It is written whole under a temporary name and linked into place (a hard
    link fails where the name exists): a process opening it never reads a half-written
    token, and of two making it at once, both open the one that was linked first."""
    path = folder / LOCK_NAME
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            pass
        made = folder / f"{LOCK_NAME}-{secrets.token_hex(8)}"
        fd = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.write(fd, secrets.token_hex(16).encode())
            finally:
                os.close(fd)
            os.link(made, path)
        except FileExistsError:
            pass  # another process made it first: open theirs
        finally:
            made.unlink(missing_ok=True)


def _token(fd: int) -> str:
    """The token in an open lock file ("" in a lock file of a version before tokens)."""
    return os.pread(fd, 64, 0).decode("ascii", "replace").strip()


class OutputFolder:
    """The output folder, locked by this process for its lifetime (one writer per folder; the
    shards of a sharded batch share a lock, which excludes a daemon or an unsharded batch).

    The lock is an ``flock`` on a file inside the folder. Removing or replacing the folder
    (``rm -rf output``) would silently drop that lock, so :meth:`check` compares the folder at
    the path with the one locked: a missing or different folder raises
    :class:`OutputUnavailable`, and :meth:`relock` takes the lock of a folder put back (never
    creating one itself, so a second daemon cannot end up sharing it).

    A folder is known by its device, inode and the random token its lock file was made with
    (:attr:`identity`): a folder removed and made again often gets the same inode number back
    (ext4 hands out a freed inode at once), never the same token.
    """

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = path
        self.shared = shared  # the shards of one batch share the folder; a daemon never does
        self._fd: int | None = None
        self.identity: str | None = None  #: "device:inode:token"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.relock()

    def relock(self) -> None:
        """Lock the folder now at ``path``; ConfigError if another process holds it."""
        self.close()
        try:
            fd = _open_lock(self.path)
        except OSError as exc:
            raise _io_error(exc) from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError("the output folder is in use by another radiomicsd process") from None
        token = _token(fd)
        if not token and not self.shared:  # a lock file of a version before tokens: give it one
            token = secrets.token_hex(16)
            os.pwrite(fd, token.encode(), 0)
        st = os.stat(self.path)
        self._fd, self.identity = fd, f"{st.st_dev}:{st.st_ino}:{token}"

    def check(self) -> None:
        """Raise :class:`OutputUnavailable` unless the locked folder is still at ``path``."""
        try:
            st = os.stat(self.path)
            fd = os.open(self.path / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise OutputUnavailable("the output folder is gone") from None
        try:
            found = f"{st.st_dev}:{st.st_ino}:{_token(fd)}"
        finally:
            os.close(fd)
        if found != self.identity:
            raise OutputUnavailable("the output folder was replaced")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
