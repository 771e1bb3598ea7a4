"""File-system steps on inputs that never follow a symlink, at any depth.

An :class:`InputRoot` is the input folder opened once. Every later step on a file below it
(stat, open, unlink, move) resolves the path relative to that descriptor and refuses a symbolic
link in *any* component, so a folder swapped for a link while a file waits cannot send the
daemon outside the input. Where the kernel has it, the folder part is resolved in one
``openat2(2)`` call with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``; elsewhere (older kernels,
seccomp filters that answer ENOSYS, other CPUs) component by component with
``O_NOFOLLOW | O_DIRECTORY`` relative to the previous folder. The last component is always
handled through its parent folder's descriptor, without following it.

:func:`move_out` moves a regular file from beneath a root into a destination folder: a rename
on the same file system, else a copy that is fsync'ed before the source is unlinked. Folders
this module creates are 0700 and files 0600 (set explicitly, whatever the umask), unless a
caller asks to keep a moved file's mode.

Paths are bytes to the kernel (``os.fsencode``): names that are not valid UTF-8 work like any
other; :func:`path_text` gives a printable form for notes and debug logs.
"""

from __future__ import annotations

import errno
import os
import platform
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from radiomicsd.pipeline.errors import NotRegularFile, SymlinkRefused

PathArg = str | bytes | os.PathLike[str] | os.PathLike[bytes]
Method = Literal["auto", "openat2", "walk"]
#: openat2(dirfd, path, flags, resolve) -> fd; raises OSError.
Openat2 = Callable[[int, bytes, int, int], int]

#: openat2(2) resolve flags (linux/openat2.h).
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
#: openat2 has one number on every architecture that got it after the 2019 unification; only
#: the two this project ships for are trusted here.
_OPENAT2_NR = {"x86_64": 437, "aarch64": 437, "arm64": 437}.get(platform.machine())

_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Pins a file without opening it for I/O: needs no read permission, never opens a device.
_PIN_FLAGS = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK) | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
COPY_CHUNK = 1 << 20
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600

_LINK_TEXT = "a symbolic link in the path is refused"


class OutsideInput(ValueError):
    """A path that does not name a file beneath the root (a caller's mistake: ``..``, another
    folder, the root itself)."""


def fs_bytes(path: PathArg) -> bytes:
    """The bytes the kernel sees for ``path`` (``os.fsencode``; never raises for a str)."""
    raw = os.fspath(path)
    if isinstance(raw, bytes):
        return raw
    try:
        return os.fsencode(raw)
    except UnicodeEncodeError:  # a lone surrogate no file name decodes to
        return raw.encode("utf-8", "surrogatepass")


def path_text(path: PathArg) -> str:
    """Printable, valid-Unicode text of a path: UTF-8 names unchanged, other bytes as ``\\xNN``.

    For JSON notes, SQLite and logs, which cannot hold the lone surrogates that
    ``surrogateescape`` gives to non-UTF-8 names.
    """
    return fs_bytes(path).decode("utf-8", "backslashreplace")


def _absolute(path: PathArg) -> bytes:
    """``path`` made absolute against the working directory, lexically: ``Path.resolve`` would
    follow the very links this module refuses."""
    return os.path.abspath(fs_bytes(path))  # noqa: PTH100 - lexical on purpose, see above


def _parts(raw: bytes) -> list[bytes]:
    if b"\0" in raw:
        raise OutsideInput("a path with a NUL byte")
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise OutsideInput("'..' is not resolved beneath the input folder")
    return parts


# -- openat2 ----------------------------------------------------------------------------------

_syscall: Openat2 | None = None
_openat2_state: bool | None = None  # None: not probed yet


def _load_syscall() -> Openat2:
    """``openat2(2)`` through libc's ``syscall(3)`` (Python has no binding for it)."""
    global _syscall
    if _syscall is None:
        import ctypes

        nr = _OPENAT2_NR
        if nr is None:
            raise OSError(errno.ENOSYS, "openat2 is not known on this CPU")

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syscall
        fn.restype = ctypes.c_long

        class OpenHow(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                        ("resolve", ctypes.c_uint64)]

        def call(dirfd: int, path: bytes, flags: int, resolve: int) -> int:
            how = OpenHow(flags, 0, resolve)
            fd = fn(ctypes.c_long(nr), ctypes.c_int(dirfd), ctypes.c_char_p(path),
                    ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
            if fd < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return int(fd)

        _syscall = call
    return _syscall


def openat2_available() -> bool:
    """True when this kernel (and any seccomp filter) lets ``openat2(2)`` through."""
    global _openat2_state
    if _openat2_state is None:
        if _OPENAT2_NR is None:
            _openat2_state = False
        else:
            try:
                os.close(_load_syscall()(-100, b".", _DIR_FLAGS, RESOLVE_BENEATH))  # AT_FDCWD
                _openat2_state = True
            except (OSError, AttributeError, ImportError):
                _openat2_state = False
    return _openat2_state


# -- the root ---------------------------------------------------------------------------------

def _refuse_if_link(dir_fd: int, name: bytes) -> None:
    """After ELOOP/ENOTDIR on ``name``: raise SymlinkRefused when it is a link."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise SymlinkRefused(_LINK_TEXT)


def _open_dir_at(dir_fd: int | None, name: PathArg) -> int:
    """Open folder ``name`` (relative to ``dir_fd``) without following its last component."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            _refuse_if_link(-100 if dir_fd is None else dir_fd, fs_bytes(name))
        raise


class InputRoot:
    """The input folder, opened once (``O_DIRECTORY | O_NOFOLLOW``); close it when done.

    Methods take a path as the rest of the daemon has it (absolute, or relative to the working
    directory) that must lie lexically beneath the root; it is resolved from the root's
    descriptor with no symlink followed. ``method`` picks the resolver: ``auto`` (openat2 where
    available, else the walk), ``openat2`` or ``walk`` (both for tests). Thread-safe.
    """

    def __init__(self, path: PathArg, *, method: Method = "auto") -> None:
        if method == "openat2" and not openat2_available():
            raise OSError(errno.ENOSYS, "openat2 is not available here")
        self.method: Method = method
        self.path = Path(os.fsdecode(_absolute(path)))
        self._parts = _parts(fs_bytes(self.path))
        self.fd = _open_dir_at(None, self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> InputRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def relative(self, path: PathArg) -> bytes:
        """``path`` relative to the root, as bytes (``b"ward/clip.avi"``); raises OutsideInput."""
        # Lexical: a '..' is collapsed against the names beside it, never resolved through a
        # link, and the result must still lie beneath the root.
        parts = _parts(_absolute(path))
        n = len(self._parts)
        if len(parts) <= n or parts[:n] != self._parts:
            raise OutsideInput("the path is not beneath the input folder")
        return b"/".join(parts[n:])

    @contextmanager
    def parent(self, path: PathArg) -> Iterator[tuple[int, bytes]]:
        """``(folder descriptor, last name)`` for ``path``; the descriptor is closed on exit.

        Raises SymlinkRefused when a folder on the way is a link, FileNotFoundError or
        NotADirectoryError when one is missing or not a folder.
        """
        *folders, name = self.relative(path).split(b"/")
        fd = self._open_folders(folders) if folders else self.fd
        try:
            yield fd, name
        finally:
            if fd != self.fd:
                os.close(fd)

    def _open_folders(self, folders: list[bytes]) -> int:
        if self.method != "walk" and openat2_available():
            try:
                # Without O_NOFOLLOW: RESOLVE_NO_SYMLINKS then answers ELOOP for a link in the
                # last folder too (with it, O_DIRECTORY would answer an ambiguous ENOTDIR).
                return _load_syscall()(self.fd, b"/".join(folders), _DIR_FLAGS & ~os.O_NOFOLLOW,
                                       _RESOLVE)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SymlinkRefused(_LINK_TEXT) from None
                if exc.errno == errno.EXDEV:
                    raise OutsideInput("the path leaves the input folder") from None
                # EAGAIN (a concurrent rename), EPERM/ENOSYS (a filter): the walk decides.
                if exc.errno not in (errno.EAGAIN, errno.EPERM, errno.ENOSYS):
                    raise
        fd = self.fd
        try:
            for part in folders:
                nxt = _open_dir_at(fd, part)
                if fd != self.fd:
                    os.close(fd)
                fd = nxt
        except BaseException:
            if fd != self.fd:
                os.close(fd)
            raise
        return fd

    def lstat(self, path: PathArg) -> os.stat_result:
        """``lstat`` of ``path``: the last component is not followed, no folder may be a link."""
        with self.parent(path) as (fd, name):
            return os.stat(name, dir_fd=fd, follow_symlinks=False)

    def open_file(self, path: PathArg) -> int:
        """A read-only descriptor on the regular file ``path``.

        Raises SymlinkRefused (a link at any depth), NotRegularFile (FIFOs, devices, folders,
        sockets are never opened), PermissionError, FileNotFoundError.
        """
        with self.parent(path) as (dir_fd, name):
            _check_regular(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SymlinkRefused(_LINK_TEXT) from None
                raise
        try:
            _check_regular(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def unlink(self, path: PathArg) -> None:
        """Remove the regular file ``path``; a link (at any depth) or special file is refused."""
        with self.parent(path) as (fd, name):
            _check_regular(os.stat(name, dir_fd=fd, follow_symlinks=False))
            os.unlink(name, dir_fd=fd)


def _check_regular(st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise SymlinkRefused(_LINK_TEXT)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile("not a regular file")


# -- destinations -----------------------------------------------------------------------------

def make_private_dir(path: PathArg) -> None:
    """Create ``path`` and any missing parents as 0700 folders (chmod'ed, whatever the umask).

    Folders that exist already keep their mode.
    """
    missing: list[Path] = []
    p = Path(os.fsdecode(_absolute(path)))
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR)
        except FileExistsError:
            continue
        try:
            fd = _open_dir_at(None, d)
        except SymlinkRefused:  # swapped right after mkdir: not ours to chmod
            raise OSError(errno.ELOOP, "a folder being created became a symbolic link") from None
        try:
            os.fchmod(fd, PRIVATE_DIR)
        finally:
            os.close(fd)


def _open_dest(dest_dir: PathArg, folders: list[bytes]) -> int:
    """Open ``dest_dir`` (its last component not followed) and the ``folders`` below it,
    creating missing ones 0700; no link is followed below ``dest_dir``.

    A link on this side is the destination's trouble, not the input's: OSError (ELOOP).
    """
    try:
        return _open_dest_folders(dest_dir, folders)
    except SymlinkRefused:
        raise OSError(errno.ELOOP, "the destination folder is a symbolic link") from None


def _open_dest_folders(dest_dir: PathArg, folders: list[bytes]) -> int:
    make_private_dir(dest_dir)
    fd = _open_dir_at(None, fs_bytes(dest_dir))
    try:
        for part in folders:
            try:
                os.mkdir(part, PRIVATE_DIR, dir_fd=fd)
                created = True
            except FileExistsError:
                created = False
            nxt = _open_dir_at(fd, part)
            os.close(fd)
            fd = nxt
            if created:
                os.fchmod(fd, PRIVATE_DIR)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _exists(dir_fd: int, name: bytes) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def write_private(dest_dir: PathArg, name: str | bytes, data: bytes) -> Path:
    """Write a new 0600 file ``name`` in ``dest_dir`` (created 0700 if missing), fsync'ed with
    its folder; never overwrites (FileExistsError) and never writes through a link."""
    fd_dir = _open_dest(dest_dir, [])
    try:
        fd = os.open(fs_bytes(name), _CREATE_FLAGS, PRIVATE_FILE, dir_fd=fd_dir)
        try:
            os.fchmod(fd, PRIVATE_FILE)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.fsync(fd_dir)
    finally:
        os.close(fd_dir)
    return Path(os.fsdecode(fs_bytes(dest_dir))) / os.fsdecode(fs_bytes(name))


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def move_out(root: InputRoot, path: PathArg, dest_dir: PathArg, name: str | bytes, *,
             mode: int | None = PRIVATE_FILE) -> Path:
    """Move the regular file ``path`` from beneath ``root`` to ``dest_dir/name``.

    ``name`` may hold sub-folders (``ward/clip.avi``), created 0700 beneath ``dest_dir`` without
    following links. On one file system this is a rename between the two folder descriptors;
    across file systems (EXDEV) the file is copied to a temporary name in the destination,
    fsync'ed with its folder, renamed to ``name``, and only then is the source unlinked (if the
    name still holds the file that was copied). ``mode``: the moved file's permission bits
    (None keeps the input's). Never overwrites (FileExistsError).

    Raises SymlinkRefused (a link at any depth, on either side), NotRegularFile,
    FileNotFoundError, OutsideInput, or OSError; on any of them the source is where it was.
    Returns the new path.
    """
    *folders, last = _parts(fs_bytes(name)) or [b""]
    if not last:
        raise OutsideInput("an empty destination name")
    with root.parent(path) as (src_dir, src_name):
        pin = os.open(src_name, _PIN_FLAGS, dir_fd=src_dir)
        try:
            st = os.fstat(pin)
            _check_regular(st)
            dst_dir = _open_dest(dest_dir, folders)
            try:
                if _exists(dst_dir, last):
                    raise FileExistsError(errno.EEXIST, "the destination exists")
                try:
                    os.rename(src_name, last, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    _copy_in(src_dir, src_name, st, dst_dir, last,
                             stat.S_IMODE(st.st_mode) if mode is None else mode)
                    _unlink_if_same(src_dir, src_name, st)
                else:
                    _check_moved(src_dir, src_name, st, dst_dir, last)
                    if mode is not None:
                        os.chmod(last, mode, dir_fd=dst_dir)  # checked: our regular file
                    os.fsync(dst_dir)
            finally:
                os.close(dst_dir)
        finally:
            os.close(pin)
    return Path(os.fsdecode(fs_bytes(dest_dir))).joinpath(os.fsdecode(b"/".join([*folders,
                                                                                last])))


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _check_moved(src_dir: int, src_name: bytes, st: os.stat_result, dst_dir: int,
                 last: bytes) -> None:
    """After a rename: if the name was swapped between the check and the rename (so something
    else moved), put it back when its old name is free, and refuse."""
    moved = os.stat(last, dir_fd=dst_dir, follow_symlinks=False)
    if _same(moved, st):
        return
    if not _exists(src_dir, src_name):
        os.rename(last, src_name, src_dir_fd=dst_dir, dst_dir_fd=src_dir)
    _check_regular(moved)
    raise FileNotFoundError(errno.ENOENT, "the input was replaced while it was moved")


def _copy_in(src_dir: int, src_name: bytes, st: os.stat_result, dst_dir: int, last: bytes,
             mode: int) -> None:
    src = os.open(src_name, _READ_FLAGS, dir_fd=src_dir)
    try:
        if not _same(os.fstat(src), st):
            raise FileNotFoundError(errno.ENOENT, "the input was replaced while it was moved")
        tmp = b".radiomicsd-move-" + secrets.token_hex(8).encode()
        out = os.open(tmp, _CREATE_FLAGS, PRIVATE_FILE, dir_fd=dst_dir)
        try:
            try:
                os.fchmod(out, mode)
                while chunk := os.read(src, COPY_CHUNK):
                    _write_all(out, chunk)
                os.fsync(out)
            finally:
                os.close(out)
            if _exists(dst_dir, last):
                raise FileExistsError(errno.EEXIST, "the destination exists")
            os.rename(tmp, last, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dst_dir)
            raise
        os.fsync(dst_dir)
    finally:
        os.close(src)


def _unlink_if_same(dir_fd: int, name: bytes, st: os.stat_result) -> None:
    """Unlink ``name`` only while it still is the file ``st`` describes (a new file dropped
    under the same name is new work, not ours to remove)."""
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if _same(now, st):
        os.unlink(name, dir_fd=dir_fd)
        os.fsync(dir_fd)
