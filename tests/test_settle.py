"""daemon.watcher.SettleTracker on real files: when a file counts as complete, and when the main
loop should look again (next_due)."""

from __future__ import annotations

import os

from radiomicsd.daemon.watcher import SettleTracker


def test_a_quiet_file_is_released_after_settle_seconds(tmp_path):
    path = tmp_path / "clip.avi"
    path.write_bytes(b"x" * 10)
    tracker = SettleTracker(root=tmp_path, settle_seconds=2.0, patterns=("*.part",))
    assert tracker.next_due() is None
    tracker.note(path, now=100.0)
    assert tracker.next_due() == 102.0
    assert tracker.ready(now=101.9) == []
    [(released, stamp)] = tracker.ready(now=102.0)
    assert released == path and stamp.size == 10
    assert len(tracker) == 0 and tracker.next_due() is None


def test_close_after_write_releases_at_once(tmp_path):
    path = tmp_path / "clip.avi"
    path.write_bytes(b"x")
    tracker = SettleTracker(root=tmp_path, settle_seconds=2.0, patterns=())
    tracker.note(path, closed=True, now=50.0)
    assert tracker.next_due() == 50.0
    assert [p for p, _ in tracker.ready(now=50.0)] == [path]


def test_a_growing_file_starts_settling_again(tmp_path):
    path = tmp_path / "clip.avi"
    path.write_bytes(b"x")
    tracker = SettleTracker(root=tmp_path, settle_seconds=2.0, patterns=())
    tracker.note(path, closed=True, now=10.0)
    with open(path, "ab") as f:
        f.write(b"more")
    assert tracker.ready(now=11.0) == []  # changed since the event: settle again from 11.0
    assert tracker.next_due() == 13.0


def test_ignored_and_vanished_files_are_not_tracked(tmp_path):
    tracker = SettleTracker(root=tmp_path, settle_seconds=2.0, patterns=("*.part",))
    part = tmp_path / "clip.avi.part"
    part.write_bytes(b"x")
    tracker.note(part, now=0.0)
    gone = tmp_path / "gone.avi"
    gone.write_bytes(b"x")
    tracker.note(gone, now=0.0)
    os.unlink(gone)
    assert tracker.ready(now=5.0) == [] and tracker.next_due() is None
