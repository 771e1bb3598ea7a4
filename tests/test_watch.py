"""``radiomicsd watch`` end to end: real daemon processes on real folders and real files.

Every test starts the installed console script as a subprocess (see ``daemon_helpers``), drops
synthetic clips the way operators and other systems do (atomic renames, slow writers, bursts,
symlinks, special files), and checks what the daemon left behind: one complete output per
distinct video, no staging leftovers, the journal, the quarantine notes, the JSON log lines,
the systemd notify datagrams and the HTTP endpoints. No timing is asserted; waits have generous
timeouts and end as soon as the expected output or log event appears.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import (
    Daemon,
    daemon_env,
    drop_atomic,
    drop_dac_prefix,
    pseudonym_of,
    radiomicsd_cmd,
    variant,
    wait_until,
)

# Input names that must never show up in logs or in ``radiomicsd status``.
SECRET_NAMES = ("DOE_JANE_4711_echo", "MUSTERMANN_2011-04-05", "SMITH_JOHN_ward7")


def assert_no_names(text: str, names: tuple[str, ...] = SECRET_NAMES) -> None:
    for name in names:
        assert name not in text


def write_slowly(path: Path, data: bytes, chunks: int, gap: float,
                 pause_after: int | None = None, pause: float = 0.0) -> None:
    """Write ``data`` through one open file in ``chunks`` pieces, ``gap`` seconds apart, like a
    network copy; optionally pause ``pause`` seconds after chunk number ``pause_after``."""
    step = -(-len(data) // chunks)
    with open(path, "wb") as f:
        for i in range(chunks):
            f.write(data[i * step:(i + 1) * step])
            f.flush()
            if i == chunks - 1:
                break
            time.sleep(pause if i == pause_after else gap)


# -- detection ----------------------------------------------------------------------------------

def test_atomic_rename_drops_folders_and_ignored_names(daemon_factory, clips):
    d = daemon_factory()
    d.start()
    drop_atomic(clips["small"], d.input / f"{SECRET_NAMES[0]}.avi")
    # a folder with two clips, prepared outside and moved in with one rename
    staged = d.root / "incoming"
    (staged / "ward7").mkdir(parents=True)
    (staged / "ward7" / f"{SECRET_NAMES[1]}.avi").write_bytes(clips["other"])
    (staged / f"{SECRET_NAMES[2]}.avi").write_bytes(clips["tiny"])
    os.rename(staged, d.input / "batch-01")
    # ignored names: a writer's temporary file and hidden files are never touched
    (d.input / "upload.avi.part").write_bytes(b"not yet")
    (d.input / ".hidden.avi").write_bytes(b"garbage")
    (d.input / "x.tmp").write_bytes(b"garbage")
    d.wait_event("video.done", 3)
    expected = {pseudonym_of(clips[k]) for k in ("small", "other", "tiny")}
    d.check_complete(expected)
    assert d.stop() == 0

    assert d.count("video.quarantined") == 0
    assert (d.input / "upload.avi.part").read_bytes() == b"not yet"
    assert (d.input / ".hidden.avi").exists() and (d.input / "x.tmp").exists()
    rows = d.journal()
    assert sorted(r["pseudonym"] for r in rows) == sorted(expected)
    assert {r["state"] for r in rows} == {"done"}
    assert all(r["path"] is None for r in rows)  # record_paths is off by default
    assert all(r["frames"] and r["attempts"] == 1 for r in rows)
    log = d.log_text()
    assert_no_names(log)
    # the configured folders are named once, where the daemon says where to drop files; no
    # other line names a path
    ready = [ln for ln in log.splitlines() if '"watch.ready"' in ln]
    assert len(ready) == 1 and str(d.input) in ready[0]
    assert str(d.input) not in log.replace(ready[0], "")
    for manifest in d.outputs().values():
        assert_no_names(str(manifest))


def test_slow_writer_with_gaps_shorter_than_settle(daemon_factory, clips):
    """Chunks 0.4 s apart for ~3 s with settle 1.5 s: only the finished file is taken."""
    d = daemon_factory(settle_seconds=1.5)
    d.start()
    data = clips["long"]
    write_slowly(d.input / "slow.avi", data, chunks=8, gap=0.4)
    d.wait_event("video.done")
    d.check_complete({pseudonym_of(data)})
    assert d.stop() == 0
    assert d.count("video.processing") == 1
    assert d.count("video.quarantined") == 0
    assert [r["state"] for r in d.journal()] == ["done"]


HANDLED = ("video.quarantined", "video.done", "video.skipped", "video.changed", "video.suspect")


def _write_with_long_pause(d: Daemon, data: bytes) -> Path:
    """Like a copy that stalls: a third of the file, then nothing until the daemon has taken
    and handled that partial version (a pause far longer than settle_seconds), then the rest,
    all through one open file."""
    target = d.input / "paused.avi"
    third = len(data) // 3
    with open(target, "wb") as f:
        f.write(data[:third])
        f.flush()
        d.wait_event("video.processing")  # the partial version settled and was taken
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(d.count(e) for e in HANDLED):
            time.sleep(0.05)
        rest = data[third:]
        step = -(-len(rest) // 4)
        for i in range(4):
            f.write(rest[i * step:(i + 1) * step])
            f.flush()
            time.sleep(0.1)
    return target


def test_slow_writer_pausing_longer_than_settle_commits_nothing_broken(daemon_factory, clips):
    """The partial version cannot be decoded to the end: it may be refused (``truncated``), no
    broken output is committed, the journal holds no stale claim, and the final content is not
    lost: it is exported or, if the partial file was moved away, complete in quarantine.
    The refusal of a maybe-incomplete version is held back for incomplete_grace_seconds, so
    the writer continues on the file in place."""
    d = daemon_factory(settle_seconds=1.0, incomplete_grace_seconds=10.0)
    d.start()
    data = clips["long"]
    target = _write_with_long_pause(d, data)
    partial = pseudonym_of(data[:len(data) // 3])
    assert [e["reason"] for e in d.events("video.quarantined")] in ([], ["truncated"])
    if target.exists():
        d.wait_event("video.done")
        d.check_complete({pseudonym_of(data)})
    else:
        moved = [p for p in d.quarantine.glob("q-*") if p.suffix != ".json"]
        assert [p.read_bytes() == data for p in moved] == [True]
    assert d.stop() == 0
    assert pseudonym_of(data) in d.outputs() or d.outputs() == {}
    assert d.staging_leftovers() == []
    states = {r["pseudonym"]: (r["state"], r["reason"]) for r in d.journal()}
    assert states.get(partial, ("quarantined", "truncated")) in \
        (("quarantined", "truncated"), ("skipped", "content_changed"))
    assert "processing" not in {s for s, _ in states.values()}


def test_slow_writer_pausing_longer_than_settle_is_exported_once(daemon_factory, clips):
    d = daemon_factory(settle_seconds=1.0, incomplete_grace_seconds=10.0)
    d.start()
    data = clips["long"]
    target = _write_with_long_pause(d, data)
    assert target.exists(), "the input was moved away while its writer was still writing"
    d.wait_event("video.done")
    assert d.stop() == 0
    d.check_complete({pseudonym_of(data)})
    assert d.count("video.done") == 1


def test_content_changed_during_processing_is_processed_again(daemon_factory, clip_factory):
    """Bytes appended while a worker encodes the frames: the commit-time digest check refuses
    the stale version (journal: skipped/content_changed) and the new content is exported."""
    data = clip_factory("longer.avi", 250, seed=17).path.read_bytes()
    d = daemon_factory(settle_seconds=0.5)
    d.start()
    target = d.input / "growing.avi"
    drop_atomic(data, target)
    d.wait_event("video.processing", step=0.02)  # then ~1 s of encoding before the commit
    with open(target, "ab") as f:
        f.write(b"radiomicsd-test-trailer:appended")
    final = target.read_bytes()
    d.wait_event("video.done")
    assert d.stop() == 0
    assert d.count("video.changed") == 1
    d.check_complete({pseudonym_of(final)}, decode=False)
    states = {r["pseudonym"]: (r["state"], r["reason"]) for r in d.journal()}
    assert states == {pseudonym_of(data): ("skipped", "content_changed"),
                      pseudonym_of(final): ("done", None)}


def test_polling_observer(daemon_factory, clips):
    d = daemon_factory(observer="polling", settle_seconds=1.0)
    d.start()
    assert d.events("observer.started")[0]["observer"] == "polling"
    drop_atomic(clips["small"], d.input / "a.avi")
    write_slowly(d.input / "b.avi", clips["other"], chunks=4, gap=0.3)
    d.wait_event("video.done", 2)
    d.check_complete({pseudonym_of(clips["small"]), pseudonym_of(clips["other"])})
    assert d.stop() == 0


@pytest.mark.slow
def test_burst_of_300_small_videos(daemon_factory, clips):
    """300 distinct clips renamed in at once: queue back-pressure, each exported exactly once."""
    n = 300
    d = daemon_factory(workers=2, queue_size=16, settle_seconds=0.5)
    d.start()
    staged = d.root / "staged"
    staged.mkdir()
    contents = [variant(clips["tiny"], f"{i:04d}") for i in range(n)]
    for i, data in enumerate(contents):
        (staged / f"v{i:04d}.avi").write_bytes(data)
    for i in range(n):
        os.rename(staged / f"v{i:04d}.avi", d.input / f"v{i:04d}.avi")
    d.wait_event("video.done", n, timeout=600)
    expected = {pseudonym_of(c) for c in contents}
    assert len(expected) == n
    status, body = d.http("/metrics")
    assert status == 200
    assert re.search(r'radiomicsd_videos_total\{outcome="done",reason=""\} 300\.0', body)
    assert d.stop() == 0
    d.check_complete(expected, decode=False)
    assert len(d.journal()) == n
    assert d.count("video.processing") == n
    assert d.count("video.quarantined") == d.count("video.skipped") == 0


# -- identity of content ------------------------------------------------------------------------

def test_same_video_under_two_names_is_exported_once(daemon_factory, clips):
    d = daemon_factory(workers=2)
    d.start()
    data = clips["small"]
    # two names at the same time (two workers race for the same digest) ...
    drop_atomic(data, d.input / "first.avi")
    drop_atomic(data, d.input / "second.avi")
    d.wait_event("video.done")
    d.wait_event("video.skipped")
    # ... and a third copy long after the first was exported
    drop_atomic(data, d.input / "third.avi")
    d.wait_event("video.skipped", 2)
    d.check_complete({pseudonym_of(data)})
    assert d.stop() == 0
    assert d.count("video.done") == 1
    assert [e["reason"] for e in d.events("video.skipped")] == ["duplicate", "duplicate"]
    assert all(e["pseudonym"] == pseudonym_of(data) for e in d.events("video.skipped"))
    rows = d.journal()
    assert len(rows) == 1 and rows[0]["state"] == "done" and rows[0]["attempts"] == 1
    # the three names are three file records pointing at that one content digest
    assert [f["digest"] for f in d.journal_files()] == [rows[0]["digest"]] * 3


def test_changed_content_under_the_same_name_is_new_work(daemon_factory, clips):
    d = daemon_factory()
    d.start()
    target = d.input / "reused-name.avi"
    drop_atomic(clips["small"], target)
    d.wait_event("video.done")
    target.write_bytes(clips["other"])  # rewritten in place
    d.wait_event("video.done", 2)
    expected = {pseudonym_of(clips["small"]), pseudonym_of(clips["other"])}
    d.check_complete(expected)
    # a restart with both versions already handled does nothing
    assert d.stop() == 0
    d.start()
    drop_atomic(clips["tiny"], d.input / "marker.avi")
    d.wait_event("video.done")
    assert d.stop() == 0
    assert d.count("video.processing") == 3
    d.check_complete(expected | {pseudonym_of(clips["tiny"])})


# -- crashes and stops --------------------------------------------------------------------------

#: The settings the SCONE image runs with (scone/config.enclave.yml): polling, no-mmap journal.
ENCLAVE = {"enclave_mode": True, "observer": "polling", "journal_mode": "delete"}


@pytest.mark.slow
@pytest.mark.parametrize("delay, settings", [(0.3, {}), (1.0, {}), (2.0, {}), (1.0, ENCLAVE)],
                         ids=["0.3s", "1.0s", "2.0s", "enclave-1.0s"])
def test_kill9_during_processing_then_restart(daemon_factory, clips, delay, settings):
    """kill -9 ``delay`` s into a batch of twelve long clips, then restart: each video ends with
    exactly one complete output, no staging leftovers, nothing left 'processing'."""
    d = daemon_factory(workers=1, **settings)
    # 600-frame clips: twelve of them take several seconds, so even the 2 s kill lands mid-batch
    contents = [variant(clips["longer"], f"kill-{i}") for i in range(12)]
    d.start()
    for i, data in enumerate(contents):
        drop_atomic(data, d.input / f"clip{i}.avi")
    d.wait_event("video.processing")
    time.sleep(delay)
    assert d.kill9() == -signal.SIGKILL
    first_run_done = d.count("video.done")
    assert first_run_done < len(contents)  # the kill did interrupt the batch
    # whatever is visible is complete; a staging folder may be left for the restart to remove
    d.check_complete(set(d.outputs()), staging_allowed=True)
    staged = len(d.staging_leftovers())

    d.start()
    d.wait_event("video.done", len(contents) - first_run_done, timeout=120)
    assert d.stop() == 0
    d.check_complete({pseudonym_of(c) for c in contents})
    recovery = d.events("recovery", run=2)  # logged only when there was something to recover
    assert (recovery[0]["staging_removed"] if recovery else 0) == staged
    rows = d.journal()
    assert len(rows) == len(contents)
    assert {r["state"] for r in rows} == {"done"}


def test_sigterm_finishes_in_flight_work_then_restart_completes(daemon_factory, clips):
    d = daemon_factory(workers=1, shutdown_timeout=60.0)
    contents = [variant(clips["long"], f"term-{i}") for i in range(4)]
    d.start()
    for i, data in enumerate(contents):
        drop_atomic(data, d.input / f"clip{i}.avi")
    d.wait_event("video.processing")
    assert d.stop(signal.SIGTERM) == 0
    done_first = d.count("video.done")
    assert done_first >= 1  # the video in flight was finished, not abandoned
    assert d.count("video.abandoned") == 0
    d.check_complete(set(d.outputs()))
    d.start()
    d.wait_event("video.done", len(contents) - done_first, timeout=120)
    assert d.stop() == 0
    d.check_complete({pseudonym_of(c) for c in contents})
    assert {r["state"] for r in d.journal()} == {"done"}


@pytest.mark.parametrize("workers", [1, 2])  # 2: a helper is encoding when the stop comes
def test_sigterm_abandons_in_flight_work_after_shutdown_timeout(daemon_factory, clips, workers):
    """shutdown_timeout 0: the video in flight is abandoned cleanly and redone at the next start."""
    d = daemon_factory(workers=workers, shutdown_timeout=0.0)
    data = clips["longer"]
    d.start()
    drop_atomic(data, d.input / "clip.avi")
    d.wait_event("video.processing")
    assert d.stop(signal.SIGINT) == 0
    assert d.count("video.abandoned") == 1 and d.count("video.done") == 0
    assert d.outputs() == {} and d.staging_leftovers() == []
    d.start()
    d.wait_event("video.done")
    assert d.stop() == 0
    d.check_complete({pseudonym_of(data)})
    assert [(r["state"], r["attempts"]) for r in d.journal()] == [("done", 2)]


# -- refused inputs and failure policy ----------------------------------------------------------

def test_symlink_to_a_file_outside_the_input_is_refused(daemon_factory, clips, tmp_path):
    outside = tmp_path / "elsewhere" / "target.avi"
    outside.parent.mkdir()
    outside.write_bytes(clips["small"])
    before = os.stat(outside)
    d = daemon_factory()
    d.start()
    link = d.input / f"{SECRET_NAMES[0]}.avi"
    link.symlink_to(outside)
    d.wait_event("video.refused")
    assert d.stop() == 0
    assert [e["reason"] for e in d.events("video.refused")] == ["symlink_refused"]
    assert d.outputs() == {} and d.count("video.quarantined") == 0
    assert outside.read_bytes() == clips["small"]
    after = os.stat(outside)
    assert (after.st_mtime_ns, after.st_ino, after.st_nlink) == \
        (before.st_mtime_ns, before.st_ino, before.st_nlink)
    # recorded in the journal and left where it is: neither the link nor its target moved
    assert link.is_symlink() and link.resolve() == outside.resolve()
    assert [(r["state"], r["reason"]) for r in d.journal()] == [("refused", "symlink_refused")]
    assert d.quarantine_notes() == []
    assert_no_names(d.log_text())


def test_garbage_and_not_doppler_quarantine_notes(daemon_factory, clips):
    d = daemon_factory()
    d.start()
    drop_atomic(os.urandom(20_000), d.input / "garbage.avi")
    drop_atomic(clips["bmode"], d.input / "bmode.avi")
    d.wait_event("video.quarantined")
    d.wait_event("video.skipped")
    assert d.stop() == 0
    assert [e["reason"] for e in d.events("video.quarantined")] == ["unreadable_container"]
    assert [e["reason"] for e in d.events("video.skipped")] == ["not_doppler"]
    notes = d.quarantine_notes()
    assert len(notes) == 1 and notes[0]["reason"] == "unreadable_container"
    assert re.fullmatch(r"[0-9a-f]{64}", notes[0]["digest"])
    assert notes[0]["detail"] and "path" not in notes[0]
    assert (d.input / "bmode.avi").exists()  # a skipped input stays (on_success: keep)
    assert d.outputs() == {}
    states = sorted((r["state"], r["reason"]) for r in d.journal())
    assert states == [("quarantined", "unreadable_container"), ("skipped", "not_doppler")]


def test_unreadable_files_are_quarantined_and_special_files_left_alone(daemon_factory, clips):
    """A mode-000 file (root runs the daemon without CAP_DAC_OVERRIDE, so the mode applies) is
    quarantined, a FIFO is recorded and left in place, each once with its reason; the daemon
    carries on with good files."""
    prefix = drop_dac_prefix()
    d = daemon_factory(rescan_seconds=1.0)
    locked = d.input / "locked.avi"
    locked.write_bytes(clips["small"])
    locked.chmod(0)
    os.mkfifo(d.input / "pipe.avi")
    d.start(prefix=prefix)
    d.wait_event("video.quarantined")
    d.wait_event("video.refused")
    drop_atomic(clips["other"], d.input / "good.avi")
    d.wait_event("video.done")
    time.sleep(3.0)  # three periodic rescans: a refused file is not refused again
    assert d.stop() == 0
    assert [e["reason"] for e in d.events("video.quarantined")] == ["permission_denied"]
    assert [e["reason"] for e in d.events("video.refused")] == ["not_regular_file"]
    assert [n["reason"] for n in d.quarantine_notes()] == ["permission_denied"]
    d.check_complete({pseudonym_of(clips["other"])})
    assert not locked.exists()  # moved into the quarantine folder
    assert (d.input / "pipe.avi").exists()  # a FIFO is never moved (or opened for reading)


def test_input_errors_left_in_place_are_recorded_once(daemon_factory, clips):
    """on_input_error: leave — the bad file stays, is recorded once, and periodic rescans do
    not pick it up again."""
    d = daemon_factory(on_input_error="leave", rescan_seconds=1.0)
    (d.input / "garbage.avi").write_bytes(os.urandom(20_000))
    (d.input / "empty.avi").write_bytes(b"")
    d.start()
    d.wait_event("video.quarantined", 2)
    time.sleep(3.0)  # three periodic rescans
    assert d.stop() == 0
    assert sorted(e["reason"] for e in d.events("video.quarantined")) == \
        ["empty_file", "unreadable_container"]
    assert d.count("video.skipped") == 0
    assert d.quarantine_notes() == []
    assert (d.input / "garbage.avi").exists() and (d.input / "empty.avi").exists()


def test_on_success_move_keeps_the_folder_layout(daemon_factory, clips):
    d = daemon_factory(on_success="move")
    d.start()
    (d.input / "ward7").mkdir()
    drop_atomic(clips["small"], d.input / "ward7" / "a.avi")
    d.wait_event("video.done")
    wait_until(lambda: (d.done / "ward7" / "a.avi").exists(), 30, "the moved input")
    assert d.stop() == 0
    assert (d.done / "ward7" / "a.avi").read_bytes() == clips["small"]
    assert not (d.input / "ward7" / "a.avi").exists()
    d.check_complete({pseudonym_of(clips["small"])})


def test_on_success_delete_removes_only_exported_inputs(daemon_factory, clips):
    d = daemon_factory(on_success="delete")
    d.start()
    drop_atomic(clips["small"], d.input / "a.avi")
    drop_atomic(clips["bmode"], d.input / "b.avi")
    d.wait_event("video.done")
    d.wait_event("video.skipped")
    wait_until(lambda: not (d.input / "a.avi").exists(), 30, "the deleted input")
    assert d.stop() == 0
    assert (d.input / "b.avi").exists()  # skipped (not Doppler): kept for the operator
    assert not d.done.exists()
    d.check_complete({pseudonym_of(clips["small"])})


# -- operations: signals, systemd, monitoring, status -------------------------------------------

def test_sighup_reloads_the_config_and_keeps_running(daemon_factory, clips):
    d = daemon_factory()
    proc = d.start()
    drop_atomic(clips["bmode"], d.input / "a.avi")
    d.wait_event("video.skipped")
    d.write_config(select="all", workers=2)
    proc.send_signal(signal.SIGHUP)
    reloaded = d.wait_event("config.reloaded")[0]
    assert reloaded["needs_restart"] == ["workers"]
    drop_atomic(clips["bmode2"], d.input / "b.avi")
    d.wait_event("video.done")
    assert d.alive()
    assert d.stop() == 0
    d.check_complete({pseudonym_of(clips["bmode2"])})


def test_invalid_config_on_sighup_keeps_the_old_one(daemon_factory, clips):
    d = daemon_factory()
    proc = d.start()
    d.config.write_text("select: [not, a, choice]\n")
    proc.send_signal(signal.SIGHUP)
    d.wait_event("config.reload_failed")
    drop_atomic(clips["small"], d.input / "a.avi")
    d.wait_event("video.done")
    assert d.stop() == 0


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""
    folder = tempfile.mkdtemp(prefix="sdn-")  # short path: sun_path holds 108 bytes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(Path(folder) / "notify"))
    sock.settimeout(0.5)
    try:
        yield sock
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def _datagrams(sock: socket.socket, until: float) -> list[str]:
    got = []
    while time.monotonic() < until:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return got


def _receive_until(sock: socket.socket, want: str, timeout: float) -> list[str]:
    """Datagrams until one contains the line ``want``; fails after ``timeout``."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            continue
        got.append(msg)
        if want in msg.splitlines():
            return got
    raise AssertionError(f"no {want} within {timeout}s; got {got}")


def test_systemd_notify_ready_status_watchdog_stopping(daemon_factory, clips, notify_socket):
    d = daemon_factory()
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "400000"}
    d.start(**env)
    got = _receive_until(notify_socket, "READY=1", 30)
    assert any(line.startswith("STATUS=watching") for m in got for line in m.splitlines())
    _receive_until(notify_socket, "WATCHDOG=1", 30)
    _receive_until(notify_socket, "WATCHDOG=1", 30)
    drop_atomic(clips["small"], d.input / "a.avi")
    d.wait_event("video.done")
    got = _receive_until(notify_socket, "STATUS=watching; done 1, skipped 0, quarantined 0, "
                                        "in flight 0, queued 0", 30)
    d.proc.send_signal(signal.SIGTERM)
    got = _receive_until(notify_socket, "STOPPING=1", 30)
    assert d.stop() == 0


def test_watchdog_pings_stop_when_the_main_loop_stalls(daemon_factory, notify_socket):
    d = daemon_factory()
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "400000",
           "RADIOMICSD_TEST_STALL_AFTER": "1.0"}
    d.start(**env)
    _receive_until(notify_socket, "WATCHDOG=1", 30)
    d.wait_event("test.stall")
    # one ping may have been in flight when the loop froze; after that, 12 intervals of silence
    _datagrams(notify_socket, time.monotonic() + 0.5)
    later = _datagrams(notify_socket, time.monotonic() + 2.5)
    assert not any("WATCHDOG=1" in m.splitlines() for m in later), later
    assert d.alive()
    d.kill9()  # like a real hang, the frozen loop does not act on SIGTERM; systemd kills it


def test_healthz_metrics_and_status_without_names(daemon_factory, clips):
    d = daemon_factory(workers=2)
    d.start()
    assert d.http("/healthz") == (200, "ok\n")
    assert d.http("/nope")[0] == 404
    drop_atomic(clips["small"], d.input / f"{SECRET_NAMES[0]}.avi")
    drop_atomic(clips["small"], d.input / f"{SECRET_NAMES[1]}.avi")
    drop_atomic(clips["bmode"], d.input / f"{SECRET_NAMES[2]}.avi")
    drop_atomic(os.urandom(20_000), d.input / "garbage-DOE_JANE_4711_echo.avi")
    d.wait_event("video.done")
    d.wait_event("video.skipped", 2)
    d.wait_event("video.quarantined")
    status, body = d.http("/metrics")
    assert status == 200
    samples = {m.group(1): float(m.group(2)) for m in
               re.finditer(r"^(radiomicsd_\S+) (\S+)$", body, re.M)}
    assert samples['radiomicsd_videos_total{outcome="done",reason=""}'] == 1
    assert samples['radiomicsd_videos_total{outcome="skipped",reason="duplicate"}'] == 1
    assert samples['radiomicsd_videos_total{outcome="skipped",reason="not_doppler"}'] == 1
    assert samples['radiomicsd_videos_total{outcome="quarantined",'
                   'reason="unreadable_container"}'] == 1
    assert samples["radiomicsd_frames_total"] == 10
    assert samples["radiomicsd_latency_seconds_count"] == 1
    assert samples["radiomicsd_processing_seconds_count"] == 1
    assert samples["radiomicsd_queue_depth"] == 0
    assert samples["radiomicsd_last_success_timestamp_seconds"] > 0
    assert d.http("/healthz") == (200, "ok\n")

    st = subprocess.run([*radiomicsd_cmd(), "status", "-c", str(d.config)], cwd=d.root,
                        env=daemon_env(), capture_output=True, text=True, timeout=60)
    assert st.returncode == 0, st.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", st.stdout, re.M))
    assert counts == {"queued": "0", "processing": "0", "done": "1", "skipped": "1",
                      "quarantined": "1", "failed": "0", "refused": "0", "approved": "0"}
    failures = st.stdout.split("recent failures:\n", 1)[1]
    garbage_row = next(r for r in d.journal() if r["state"] == "quarantined")
    assert re.search(r"quarantined\s+unreadable_container\s+" + garbage_row["pseudonym"],
                     failures)
    assert d.stop() == 0
    assert_no_names(st.stdout + st.stderr + d.log_text())
    assert str(d.input) not in st.stdout
