"""Opening inputs: one interface for plain files and age-encrypted drops.

Every input is opened once, beneath the input folder with no symlink followed at any depth
(:mod:`daemon.beneath`), and decoded from that open file (or from decrypted bytes), never by
name again: a file or folder swapped under our feet cannot be read in its place. ``*.age``
files are decrypted with the daemon's X25519 identity into memory, or into a temporary file
only inside ``decrypt_tmp_dir`` (a folder the operator marks as encrypted); the pseudonym
is computed over the plaintext, so one video encrypted twice is one video.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from radiomicsd.daemon.beneath import InputRoot, make_private_dir
from radiomicsd.daemon.digest import Bracket, file_digest
from radiomicsd.pipeline.deid.pseudonym import content_digest
from radiomicsd.pipeline.errors import (
    AgeNoIdentity,
    AgeTampered,
    AgeTruncated,
    AgeWrongRecipient,
    EmptyFile,
    InputError,
    NotRegularFile,
    SymlinkRefused,
    TooLarge,
    TransientError,
    Unreadable,
)

AGE_SUFFIX = ".age"
AGE_CHUNK = 64 * 1024


class OpenedInput:
    """An input ready to decode.

    ``stream`` is positioned anywhere (decoders seek); ``digest`` is SHA-256 of the plaintext
    video bytes, ``size`` their length in bytes. A plain file opened with ``defer_digest`` has
    its digests made while it is decoded (:class:`~radiomicsd.daemon.digest.Bracket`; its
    ``stream`` reads through the bracket's gate): asking for ``digest`` then waits for it.
    """

    def __init__(self, stream: BinaryIO, digest: bytes | Bracket, size: int,
                 encrypted: bool, cleanup: list[Path] | None = None) -> None:
        self.size, self.encrypted = size, encrypted
        self._cleanup = cleanup or []
        self._raw = stream
        self._bracket = digest if isinstance(digest, Bracket) else None
        self._digest = digest if isinstance(digest, bytes) else None
        self._threads: list[tuple[threading.Thread, threading.Event]] = []
        self.stream = stream if self._bracket is None else self._bracket.gate(stream)

    @property
    def digest(self) -> bytes:
        if self._digest is None:
            assert self._bracket is not None
            self._digest = self._bracket.first()
        return self._digest

    @property
    def digest_ready(self) -> bool:
        """Whether :attr:`digest` answers without waiting."""
        return self._bracket is None or self._bracket.first_done

    def close(self) -> None:
        if self._bracket is not None:
            self._bracket.close()
        for thread, stop in self._threads:  # no pread on a descriptor closed under it
            stop.set()
            thread.join()
        self._raw.close()
        for p in self._cleanup:
            p.unlink(missing_ok=True)

    def unchanged(self) -> bool:
        """After decoding: False when a plain file's content changed since it was hashed.

        Decrypted inputs are held privately, so what was decoded is what was hashed.
        """
        return self.unchanged_later()()

    def unchanged_later(self) -> Callable[[], bool]:
        """:meth:`unchanged` started now (the re-hash runs on a thread and reads by
        ``pread``, so the caller may go on with other work); the returned function waits for
        it and answers. Closing the input stops it."""
        if self.encrypted:
            return lambda: True
        if self._bracket is not None:
            return self._bracket.unchanged  # its second digest has trailed the decoding
        digest, answer, stop = self.digest, [False], threading.Event()

        def run() -> None:
            try:
                answer[0] = file_digest(self._raw.fileno(), stop) == digest
            except OSError:
                answer[0] = False

        thread = threading.Thread(target=run, name="recheck", daemon=True)
        thread.start()
        self._threads.append((thread, stop))

        def wait() -> bool:
            thread.join()
            return answer[0]

        return wait


def _open_checked(root: InputRoot, path: Path, max_bytes: int) -> tuple[BinaryIO, int]:
    """Open ``path`` through ``root``: (stream, size in bytes). Special files are refused from
    their ``lstat`` without being opened; the opened file is checked again by ``fstat``."""
    try:
        st = root.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise SymlinkRefused("symbolic links are refused")
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile("not a regular file")
        _check_size(st.st_size, max_bytes)
        fd = root.open_file(path)
    except PermissionError:
        raise Unreadable("permission denied") from None
    except NotADirectoryError:  # a folder on the way is a file now: the input is gone
        raise FileNotFoundError(errno.ENOENT, "the input vanished") from None
    except (FileNotFoundError, InputError):
        raise
    except OSError as exc:
        raise TransientError(f"open failed: {errno.errorcode.get(exc.errno or 0)}") from None
    try:
        size = os.fstat(fd).st_size
        _check_size(size, max_bytes)  # again: the file may have changed since the lstat
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), size


def _check_size(size: int, max_bytes: int) -> None:
    if size == 0:
        raise EmptyFile("the file is empty")
    if max_bytes and size > max_bytes:
        raise TooLarge(f"file of {size} bytes exceeds max_file_bytes")


class _HashingWriter(io.RawIOBase):
    """Writes through to ``sink`` while hashing and counting."""

    def __init__(self, sink: BinaryIO, max_bytes: int) -> None:
        self.sink, self.max_bytes = sink, max_bytes
        self.sha, self.n = hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.n += len(b)
        if self.max_bytes and self.n > self.max_bytes:
            raise TooLarge("decrypted size exceeds max_file_bytes")
        self.sha.update(b)
        return self.sink.write(b)


def _decrypt(src: BinaryIO, size: int, identity: object, max_bytes: int,
             tmp_dir: Path | None) -> OpenedInput:
    import pyrage

    cleanup: list[Path] = []
    if tmp_dir is not None:
        make_private_dir(tmp_dir)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=".decrypt-")
        sink: BinaryIO = os.fdopen(fd, "w+b")
        cleanup.append(Path(name))
    else:
        sink = io.BytesIO()
    writer = _HashingWriter(sink, max_bytes)
    try:
        pyrage.decrypt_io(src, writer, [identity])
    except TooLarge:
        _discard(sink, cleanup)
        raise
    except Exception as exc:  # pyrage raises DecryptError with a message only
        _discard(sink, cleanup)
        text = str(exc).lower()
        if "no matching keys" in text:
            raise AgeWrongRecipient("not encrypted to this daemon's recipient") from None
        if "header" in text or "failed to fill" in text or "parse" in text:
            raise AgeTruncated("not a complete age header") from None
        # The payload is authenticated chunk by chunk (64 KiB); decryption stops at the first
        # bad chunk. Failing only in the last chunk is what a cut-off file looks like.
        chunks = max(1, -(-size // (AGE_CHUNK + 16)))
        if writer.n >= (chunks - 1) * AGE_CHUNK:
            raise AgeTruncated("the encrypted stream ends early") from None
        raise AgeTampered("an encrypted chunk failed authentication") from None
    finally:
        src.close()
    if writer.n == 0:
        _discard(sink, cleanup)
        raise EmptyFile("the decrypted content is empty")
    sink.seek(0)
    return OpenedInput(sink, writer.sha.digest(), writer.n, True, cleanup)


def _discard(sink: BinaryIO, cleanup: list[Path]) -> None:
    sink.close()
    for p in cleanup:
        p.unlink(missing_ok=True)


def open_input(path: Path, max_bytes: int = 0, age_identity: object | None = None,
               decrypt_tmp_dir: Path | None = None, *, root: InputRoot | None = None,
               defer_digest: bool = False) -> OpenedInput:
    """Open ``path`` for decoding, through ``root`` (the input folder, opened once).

    No folder between ``root`` and the file may be a symlink. Without ``root`` the file's own
    folder serves as the root (so only it and the file are checked): pass the input folder's.
    Raises an :class:`InputError` subclass for symlinks, special, empty, unreadable or
    oversized files and for age files that cannot be decrypted; FileNotFoundError when the
    input is gone; :class:`~radiomicsd.daemon.beneath.OutsideInput` for a path not beneath
    ``root``. ``defer_digest``: a plain file's digests are made on threads while it is
    decoded (:class:`~radiomicsd.daemon.digest.Bracket`), for a caller that needs the digest
    only later.
    """
    if root is None:
        try:
            with InputRoot(path.parent) as own:
                stream, size = _open_checked(own, path, max_bytes)
        except PermissionError:
            raise Unreadable("permission denied") from None
        except NotADirectoryError:
            raise FileNotFoundError(errno.ENOENT, "the input vanished") from None
    else:
        stream, size = _open_checked(root, path, max_bytes)
    if path.name.endswith(AGE_SUFFIX):
        if age_identity is None:
            stream.close()
            raise AgeNoIdentity("an age-encrypted drop arrived but no identity is configured")
        return _decrypt(stream, size, age_identity, max_bytes, decrypt_tmp_dir)
    if defer_digest:
        return OpenedInput(stream, Bracket(stream.fileno()), size, False)
    return OpenedInput(stream, content_digest(stream), size, False)
