"""The main loop's wake-up pipe, and signals that only enqueue (as gunicorn's arbiter does).

Signal handlers run between two bytecodes of the main thread, possibly while it holds a lock
(``threading.Event`` takes its condition's lock in ``set``, ``clear`` and ``wait``), so a handler
that sets an Event can deadlock the loop. Here a handler only puts the signal number on a
:class:`queue.SimpleQueue` (reentrant by design) and writes one byte to a non-blocking pipe;
the observer thread and the workers wake the loop the same way. The loop sleeps in
``select()`` on the pipe's read end and reads the queue when it wakes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
from types import FrameType


class Wakeup:
    """A self-pipe: :meth:`set` from any thread or signal handler, :meth:`wait` in the loop."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def set(self) -> None:
        """Wake the loop (never blocks: a full pipe already means 'wake up')."""
        with contextlib.suppress(OSError):  # BlockingIOError included
            os.write(self._w, b"\0")

    def wait(self, timeout: float) -> None:
        """Sleep until :meth:`set` or ``timeout`` seconds, then empty the pipe."""
        select.select([self._r], [], [], max(0.0, timeout))  # PEP 475: retried on signals
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass

    def install(self, *signums: signal.Signals) -> None:
        """Route ``signums`` to :attr:`signals` and a wake-up; the handler does nothing else."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.signals.put(signum)
            self.set()

        for s in signums:
            signal.signal(s, handler)

    def pending_signals(self) -> list[int]:
        """Signals received since the last call, in order."""
        out = []
        while True:
            try:
                out.append(self.signals.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
