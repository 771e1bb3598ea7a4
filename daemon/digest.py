"""The content digest of a plain input, computed beside its decoding rather than before it.

An input's SHA-256 names its output (the keyed pseudonym), and a second SHA-256 just before
commit proves that the file did not change while it was processed. Hashed in turn with the
decoding, the two digests of a 170 MB cine cost ~0.3 s of a ~1.2 s export. Here both run on
threads of their own (``pread`` and ``hashlib`` release the GIL), and the decoder reads through
a gate (:meth:`Bracket.gate`) that keeps the order that makes the check sound, byte range by
byte range:

1. the *first* digest reads a range before the decoder may read it (a read waits for it);
2. the *second* digest reads a range only after the decoder has read it (it trails the
   decoder's reads and never passes a read in flight).

Equal digests then mean that what was decoded is what was hashed, as when the whole file was
hashed before decoding and again after it. A decoder that reads a range again after the second
digest has passed it (a demuxer seeking back) breaks the order for that range: the second
digest is then made again, whole, after the decoding (:meth:`Bracket.unchanged`).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from typing import Any, BinaryIO, cast

#: Bytes hashed per ``pread``.
CHUNK = 1 << 20
#: A buffered reader may read this far beyond what it is asked for (its buffer): the first
#: digest must have hashed that much more before a read goes ahead.
READ_AHEAD = 1 << 16
_END = 1 << 62


def file_digest(fd: int, stop: threading.Event | None = None) -> bytes | None:
    """SHA-256 of the file open as ``fd``, read by ``pread`` (the descriptor's offset is left
    alone); None when ``stop`` was set first."""
    sha, offset = hashlib.sha256(), 0
    while stop is None or not stop.is_set():
        chunk = os.pread(fd, CHUNK, offset)
        if not chunk:
            return sha.digest()
        sha.update(chunk)
        offset += len(chunk)
    return None


class Bracket:
    """The two digests of the file open as ``fd`` (see the module docstring); :meth:`close`
    stops both threads (call it before the file is closed)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._stopped = False
        self._first_at = 0          # bytes the first digest has hashed
        self._second_at = 0         # bytes the second digest has hashed
        self._read_to = 0           # the end of the decoder's reads so far (highest)
        self._reading: int | None = None  # the start of a read in flight
        self._finishing = False     # decoding is over: the second digest goes to the end
        self._reread = False        # a range was read again after the second digest passed
        self._digests: list[bytes | None] = [None, None]
        self._errors: list[BaseException | None] = [None, None]
        self._threads = [threading.Thread(target=self._hash, args=(i,), daemon=True,
                                          name=f"digest-{i + 1}") for i in (0, 1)]
        for thread in self._threads:
            thread.start()

    # -- the hashing threads ------------------------------------------------------------
    def _allowed(self, which: int, offset: int) -> int:
        """How far digest ``which`` may read from ``offset`` now (0: wait); under the lock."""
        if which == 0 or self._finishing:
            return CHUNK
        end = self._read_to if self._reading is None else min(self._read_to, self._reading)
        return min(CHUNK, end - offset) if end - offset >= min(CHUNK, 1 << 16) else 0

    def _hash(self, which: int) -> None:
        sha, offset = hashlib.sha256(), 0
        try:
            while True:
                with self._cond:
                    while not self._stopped and not (size := self._allowed(which, offset)):
                        self._cond.wait()
                    if self._stopped:
                        return
                chunk = os.pread(self._fd, size, offset)
                if not chunk:
                    self._digests[which] = sha.digest()
                    return
                sha.update(chunk)
                offset += len(chunk)
                with self._cond:
                    if which == 0:
                        self._first_at = offset
                    else:
                        self._second_at = offset
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the caller of first() / unchanged()
            self._errors[which] = exc
        finally:
            with self._cond:
                if which == 0:
                    self._first_at = _END
                self._cond.notify_all()

    # -- the decoder's side --------------------------------------------------------------
    def before_read(self, start: int, size: int) -> None:
        """A read of ``size`` bytes (-1: to the end) at ``start`` is about to happen: wait until
        the first digest covers it; note it for the second."""
        end = _END if size < 0 else start + size + READ_AHEAD
        with self._cond:
            while self._first_at < end and not self._stopped:
                self._cond.wait()
            if start < self._second_at:
                self._reread = True
            self._reading = start

    def after_read(self, start: int, count: int) -> None:
        with self._cond:
            self._reading = None
            self._read_to = max(self._read_to, start + count)
            self._cond.notify_all()

    def gate(self, stream: BinaryIO) -> BinaryIO:
        """``stream`` (an open file on the same descriptor) whose reads go through this."""
        return cast(BinaryIO, _Gated(stream, self))

    # -- answers --------------------------------------------------------------------------
    @property
    def first_done(self) -> bool:
        return not self._threads[0].is_alive()

    def first(self) -> bytes:
        """The first digest (waits for it); the thread's error if it failed."""
        self._threads[0].join()
        return self._answer(0)

    def unchanged(self) -> bool:
        """After decoding: whether the second digest equals the first (the second is made
        whole again when the decoder read a range after it had passed)."""
        first = self.first()
        with self._cond:
            self._finishing = True
            self._cond.notify_all()
        self._threads[1].join()
        if self._reread:
            return file_digest(self._fd) == first
        return self._answer(1) == first

    def _answer(self, which: int) -> bytes:
        error = self._errors[which]
        if error is not None:
            raise error
        digest = self._digests[which]
        if digest is None:
            raise RuntimeError("hashing was stopped")
        return digest

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


class _Gated(io.BufferedIOBase):
    """A read-only binary stream whose reads go through :class:`Bracket` (a BufferedIOBase:
    OpenCV's stream capture takes nothing else)."""

    def __init__(self, raw: BinaryIO, bracket: Bracket) -> None:
        super().__init__()
        self._raw, self._bracket = raw, bracket

    def read1(self, size: int | None = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        start = self._raw.tell()
        self._bracket.before_read(start, size)
        data = b""
        try:
            data = self._raw.read(size)
            return data
        finally:
            self._bracket.after_read(start, len(data))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()
