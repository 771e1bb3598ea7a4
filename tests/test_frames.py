"""daemon.frames: frames encoded by idle CPU slots, in order, errors raised in the worker."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pngread import png_rgb

from radiomicsd.daemon.frames import FrameWriter, Slots
from radiomicsd.daemon.output import StagedOutput, frame_name
from radiomicsd.pipeline.errors import DiskFull


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(n)]


class _Recording(StagedOutput):
    """A real staging folder that also notes which thread wrote each frame."""

    def __init__(self, out_dir, fail_at: int | None = None) -> None:
        super().__init__(out_dir)
        self.threads: dict[int, str] = {}
        self.fail_at = fail_at

    def write_frame(self, index: int, png: bytes) -> None:
        if index == self.fail_at:
            raise DiskFull("no space left on the output file system")
        self.threads[index] = threading.current_thread().name
        super().write_frame(index, png)


@pytest.mark.parametrize("n_slots, helped", [(1, False), (3, True)])
def test_frames_are_written_in_order_by_helpers_only_when_a_slot_is_idle(tmp_path, n_slots,
                                                                          helped):
    frames = _frames(40)
    slots = Slots(n_slots)
    try:
        with slots.held(), _Recording(tmp_path) as staged, \
                FrameWriter(staged, 1, slots) as writer:
            for f in frames:
                writer.put(f)
            writer.finish()
            assert staged.frames == writer.count == len(frames)
            for i, f in enumerate(frames):
                png = (staged.path / frame_name(i)).read_bytes()
                np.testing.assert_array_equal(png_rgb(png), f[..., ::-1])
            by_helper = [i for i, name in staged.threads.items() if name.startswith("encoder")]
            assert bool(by_helper) == helped
    finally:
        slots.close()


def test_a_helper_error_reaches_the_worker_and_nothing_is_left_running(tmp_path):
    slots = Slots(2)
    try:
        with pytest.raises(DiskFull), slots.held(), _Recording(tmp_path, fail_at=5) as staged, \
                FrameWriter(staged, 1, slots) as writer:
            for f in _frames(30):
                writer.put(f)
            writer.finish()
        assert not staged.path.exists()  # the staging folder is gone, no helper writes after
        assert 5 not in staged.threads
        # every slot is free again: a new video can take both
        assert slots._free.acquire(blocking=False) and slots._free.acquire(blocking=False)
    finally:
        slots.close()


def test_without_slots_every_frame_is_encoded_by_the_caller(tmp_path):
    with _Recording(tmp_path) as staged, FrameWriter(staged, 0, None) as writer:
        for f in _frames(5):
            writer.put(f)
        writer.finish()
        assert set(staged.threads.values()) == {threading.current_thread().name}
