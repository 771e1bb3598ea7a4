"""PNG frames of one video, encoded by its worker or, when a CPU slot is idle, by a helper.

A process runs at most ``workers`` CPU-bound threads. Each worker holds a slot of
:class:`Slots` while it processes a video. When a slot is free because fewer videos are in
flight than there are workers, :class:`FrameWriter` starts a helper on it. The helper encodes and
writes the frames the worker queues until the queue runs dry, so decoding overlaps encoding.
With every slot busy (or one worker), frames are encoded inline, exactly as without helpers.
``--workers`` thus bounds the CPU used, and one video alone still gets the idle cores.

Each frame is written under its own index, so which thread writes it does not matter.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from radiomicsd.daemon.output import StagedOutput
from radiomicsd.pipeline.png import encode_png


class Slots:
    """``n`` CPU slots shared by the workers of a process, with ``n`` helper threads."""

    def __init__(self, n: int) -> None:
        self._free = threading.BoundedSemaphore(n)
        self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="encoder")

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold a slot for the duration of one video (blocks until one is free)."""
        self._free.acquire()
        try:
            yield
        finally:
            self._free.release()

    def try_start(self, fn: Callable[[], None]) -> bool:
        """Run ``fn()`` on a helper holding a slot, if one is free right now."""
        if not self._free.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                fn()
            finally:
                self._free.release()

        try:
            self._pool.submit(run)
        except BaseException:
            self._free.release()
            raise
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Slots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameWriter:
    """Encode and write frames 0, 1, ... of one staged output; use as a context manager.

    At most ``ahead`` frames wait for the helper (memory: that many frames). An error of the
    helper (e.g. a full disk) is raised in the worker by the next :meth:`put` or by
    :meth:`finish`. Leaving the context drops waiting frames and waits for the helper, so
    nothing is written into a staging folder after it has been removed.
    """

    def __init__(self, staged: StagedOutput, level: int, slots: Slots | None,
                 ahead: int = 4) -> None:
        self.staged, self.level, self.slots, self.ahead = staged, level, slots, ahead
        self.count = 0
        self._queue: deque[tuple[int, np.ndarray]] = deque()
        self._cond = threading.Condition()
        self._helping = False
        self._error: BaseException | None = None

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._queue.clear()
            while self._helping:
                self._cond.wait()

    def put(self, frame_bgr: np.ndarray) -> None:
        """Queue a uint8 BGR (H, W, 3) frame; the caller must not change it afterwards."""
        index = self.count
        self.count += 1
        with self._cond:
            self._raise_error()
            while self._helping and len(self._queue) >= self.ahead:
                self._cond.wait()
                self._raise_error()
            if self._helping or (self.slots is not None and self.slots.try_start(self._help)):
                self._helping = True  # set before the helper can look: it waits for this lock
                self._queue.append((index, frame_bgr))
                return
        self._write(index, frame_bgr)

    def finish(self) -> None:
        """Wait until every frame is written; raise the helper's error if it had one."""
        with self._cond:
            while self._helping:
                self._cond.wait()
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _help(self) -> None:
        """On a helper: write queued frames until none is left (or one fails)."""
        while True:
            with self._cond:
                if not self._queue:
                    self._helping = False
                    self._cond.notify_all()
                    return
                index, frame = self._queue.popleft()
                self._cond.notify_all()
            try:
                self._write(index, frame)
            except BaseException as exc:
                with self._cond:
                    self._error = exc
                    self._queue.clear()
                    self._helping = False
                    self._cond.notify_all()
                return

    def _write(self, index: int, frame_bgr: np.ndarray) -> None:
        self.staged.write_frame(index, encode_png(frame_bgr, self.level))
