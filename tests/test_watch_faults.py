"""``radiomicsd watch`` under the faults an adversarial run found (real daemons, a real tmpfs,
real signals). Each test reproduces a defect of 0.1.0:

- D4 a full or vanished output quarantined good inputs after max_attempts and /healthz said ok;
- D6 ``rm -rf output`` while running: the folder came back without its lock and the deleted
  outputs stayed 'done' in the journal;
- D8 an empty config file on SIGHUP reset every live setting; negative limits were accepted;
- D9 a file in an ignored folder was processed when dropped while running;
- D10 a second daemon whose metrics port is taken died with a traceback after writing a key and
  a journal;
- signal handlers that set a threading.Event could deadlock the main loop;
- run with umask 022, the journal and notes were world-readable;
- ``mask.method: regions`` could be switched on by SIGHUP.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli_env
from daemon_helpers import (
    drop_atomic,
    drop_dac_prefix,
    pseudonym_of,
    radiomicsd_cmd,
    wait_until,
)


@pytest.fixture
def tiny_output_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the output folder (needs root and a permitted mount)."""
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(fs: Path, leave_bytes: int) -> Path:
    """Fill the file system until about ``leave_bytes`` remain free; returns the filler file."""
    st = os.statvfs(fs)
    filler = fs / "filler.bin"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


# -- D4: the output side pauses the daemon, never quarantines ---------------------------------

# workers=2 with one video: an idle slot encodes the frames, so the full disk is hit there
@pytest.mark.parametrize("workers", [1, 2])
def test_full_output_pauses_unhealthy_then_resumes_without_quarantine(
        daemon_factory, clips, tiny_output_fs, workers):
    out = tiny_output_fs / "out"
    d = daemon_factory(output_dir=str(out), max_attempts=1, workers=workers)
    d.start()
    filler = _fill(tiny_output_fs, 48 * 1024)
    drop_atomic(clips["small"], d.input / "clip.avi")
    drop_atomic(clips["other"], d.input / "clip2.avi")
    d.wait_event("output.paused")
    assert d.events("output.paused")[0]["reason"] == "disk_full"
    # longer than max_attempts x retry back-off ever took: still waiting, not quarantined
    time.sleep(4)
    assert d.http("/healthz")[0] == 503
    assert "radiomicsd_output_paused 1.0" in d.http("/metrics")[1]
    wait_until(lambda: d.staging_leftovers() == [], 10, "failed staging folders removed")
    assert d.outputs() == {} and d.count("output.resumed") == 0
    assert d.count("video.quarantined") == 0 and d.quarantine_notes() == []
    filler.unlink()
    d.wait_event("output.resumed", timeout=30)
    d.wait_event("video.done", 2, timeout=120)
    assert d.http("/healthz")[0] == 200
    assert d.stop() == 0
    d.check_complete({pseudonym_of(clips["small"]), pseudonym_of(clips["other"])})
    assert d.count("video.quarantined") == 0
    assert (d.input / "clip.avi").exists() and (d.input / "clip2.avi").exists()
    assert {r["state"] for r in d.journal()} == {"done"}


def test_unwritable_output_pauses_then_resumes(daemon_factory, clips):
    """EACCES: the daemon runs as root without CAP_DAC_OVERRIDE, so a mode-0500 output folder
    stops its commits until the mode is given back."""
    d = daemon_factory()
    d.start(prefix=drop_dac_prefix())
    d.output.chmod(0o500)
    try:
        drop_atomic(clips["small"], d.input / "clip.avi")
        d.wait_event("output.paused")
        time.sleep(2.5)
        assert d.http("/healthz")[0] == 503 and d.count("video.quarantined") == 0
    finally:
        d.output.chmod(0o700)
    d.wait_event("video.done", timeout=60)
    assert d.stop() == 0
    d.check_complete({pseudonym_of(clips["small"])})
    assert d.count("video.quarantined") == 0


# -- D6: the output folder removed while running ----------------------------------------------

def test_output_folder_removed_is_relocked_and_its_videos_exported_again(daemon_factory, clips):
    d = daemon_factory()
    d.start()
    drop_atomic(clips["small"], d.input / "a.avi")
    drop_atomic(clips["other"], d.input / "b.avi")
    d.wait_event("video.done", 2)
    expected = {pseudonym_of(clips["small"]), pseudonym_of(clips["other"])}
    d.check_complete(expected)
    shutil.rmtree(d.output)
    d.wait_event("output.paused")
    d.wait_event("output.resumed", timeout=30)
    assert d.events("output.folder_replaced")[0]["outputs_lost_requeued"] == 2
    d.wait_event("video.done", 4, timeout=60)
    # the folder came back with this daemon's lock: a second daemon on it is refused
    other = d.root / "other.yml"
    other.write_text(d.config.read_text().replace(str(d.state), str(d.root / "state2")))
    second = subprocess.run([*radiomicsd_cmd(), "watch", "-c", str(other)], env=cli_env(),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert "in use by another radiomicsd" in second.stderr and "Traceback" not in second.stderr
    assert d.stop() == 0
    d.check_complete(expected)
    assert {r["state"] for r in d.journal()} == {"done"}


def test_output_folder_removed_while_stopped_is_exported_again_at_start(daemon_factory, clips):
    d = daemon_factory()
    d.start()
    drop_atomic(clips["small"], d.input / "a.avi")
    d.wait_event("video.done")
    assert d.stop() == 0
    shutil.rmtree(d.output)
    d.start()
    d.wait_event("video.done", timeout=60)
    assert d.events("recovery")[-1]["outputs_lost_requeued"] == 1
    assert d.stop() == 0
    d.check_complete({pseudonym_of(clips["small"])})


def test_an_output_removed_by_a_consumer_is_not_exported_again(daemon_factory, clips):
    """Only a replaced output *folder* re-exports: a consumer that uploads and deletes one
    output must not get it back on the next scan."""
    d = daemon_factory(rescan_seconds=0.5)
    d.start()
    drop_atomic(clips["small"], d.input / "a.avi")
    d.wait_event("video.done")
    shutil.rmtree(d.output / pseudonym_of(clips["small"]))
    time.sleep(2)
    assert d.stop() == 0
    assert d.count("video.done") == 1 and d.outputs() == {}


# -- an input that keeps taking the process down --------------------------------------------

def test_an_input_that_crashes_the_daemon_every_time_is_given_up(daemon_factory, clips):
    """Under systemd's MemoryMax= an input past the limit kills the daemon mid-video and the
    restart would start it again, for ever: after max_attempts starts it is given up."""
    d = daemon_factory(max_attempts=2)
    data = clips["longer"]
    for run in (1, 2):
        d.start()
        if run == 1:
            drop_atomic(data, d.input / "heavy.avi")
        d.wait_event("video.processing", run=run)
        assert d.kill9() == -signal.SIGKILL
    d.start()
    d.wait_event("recovery", run=3)
    assert d.events("recovery", run=3)[0]["repeated_crash"] == 1
    time.sleep(2)
    assert d.stop() == 0
    assert d.count("video.done") == 0 and d.outputs() == {}
    assert [(r["state"], r["reason"], r["attempts"]) for r in d.journal()] == [
        ("failed", "repeated_crash", 2)]
    assert (d.input / "heavy.avi").exists()  # left where it is for the operator


# -- D8: validation of a reloaded config -------------------------------------------------------

def test_sighup_with_an_empty_or_invalid_file_keeps_the_running_settings(daemon_factory, clips):
    d = daemon_factory(settle_seconds=0.5, select="all")
    d.start()
    for text in ("", "limits:\n  max_frames: -5\n", "mask:\n  method: regions\n"
                 "  allow_text_outside_regions: true\n"):
        saved = d.config.read_text()
        d.config.write_text(text)
        n = d.count("config.reload_failed")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_event("config.reload_failed", n + 1)
        d.config.write_text(saved)
    details = [e["detail"] for e in d.events("config.reload_failed")]
    assert "empty" in details[0] and "'limits.max_frames' must be >= 0" in details[1]
    assert "never switched on live" in details[2]
    # the running settings are untouched: select=all still exports a B-mode clip
    drop_atomic(clips["bmode"], d.input / "b.avi")
    d.wait_event("video.done")
    assert d.stop() == 0
    assert d.count("config.reloaded") == 0


@pytest.mark.parametrize("text", ["limits:\n  max_frames: -5\n", "limits:\n  max_file_bytes: -1\n",
                                  "", "mask:\n  method: regions\n"])
def test_check_config_refuses_bad_numbers_and_empty_files(tmp_path, radiomicsd, text):
    cfg = tmp_path / "c.yml"
    cfg.write_text(text)
    res = radiomicsd("check-config", "-c", cfg)
    assert res.returncode == 2 and res.stderr.startswith("radiomicsd: error: ")
    assert len(res.stderr.strip().splitlines()) == 1


# -- D9: ignored folders are ignored for events too --------------------------------------------

def test_a_file_dropped_inside_an_ignored_folder_is_never_processed(daemon_factory, clips):
    d = daemon_factory()
    d.start()
    for folder in (".cache", "ward.tmp"):
        (d.input / folder).mkdir()
        drop_atomic(clips["small"], d.input / folder / "v.avi")
    (d.input / ".cache" / "deeper").mkdir()
    drop_atomic(clips["other"], d.input / ".cache" / "deeper" / "w.avi")
    drop_atomic(clips["tiny"], d.input / "marker.avi")  # a taken file: events are flowing
    d.wait_event("video.done")
    time.sleep(1.5)
    assert d.stop() == 0
    assert d.count("video.done") == 1 and set(d.outputs()) == {pseudonym_of(clips["tiny"])}
    assert d.count("video.processing") == 1


# -- D10: start-up errors are one line, exit 2, nothing written ---------------------------------

def test_metrics_port_in_use_is_one_line_and_exit_2_before_anything_is_written(daemon_factory):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = daemon_factory(metrics={"port": port})
        proc = d.start(wait_ready=False)
        assert proc.wait(60) == 2
        text = d.log_text()
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1
    assert f"127.0.0.1:{port}" in text and "metrics.port" in text
    assert not d.state.exists() and not d.output.exists()  # no key, no journal, no lock


# -- signals only enqueue -----------------------------------------------------------------------

def test_a_storm_of_signals_never_wedges_the_loop(daemon_factory, clips):
    """SIGHUP every 2 ms for 3 s (the pattern that deadlocked an Event-based loop), then
    SIGTERM: the daemon stops at once, having processed a file dropped meanwhile."""
    d = daemon_factory()
    d.start()
    drop_atomic(clips["small"], d.input / "a.avi")
    end = time.monotonic() + 3
    while time.monotonic() < end:
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.002)
    d.wait_event("video.done", timeout=60)
    started = time.monotonic()
    assert d.stop(timeout=20) == 0
    assert time.monotonic() - started < 15
    assert d.count("config.reloaded") > 10


# -- private files whatever the umask -------------------------------------------------------------

def test_files_are_0600_and_folders_0700_under_umask_022(daemon_factory, clips):
    d = daemon_factory()
    d.start(prefix=["sh", "-c", 'umask 022 && exec "$@"', "sh"])
    drop_atomic(clips["small"], d.input / "a.avi")
    (d.input / "junk.avi").write_bytes(b"not a video at all" * 100)
    d.wait_event("video.done")
    d.wait_event("video.quarantined", timeout=60)
    wait_until(lambda: d.quarantine_notes(), 30, "the quarantine note")
    assert d.stop() == 0
    paths = [d.state, d.output, d.quarantine, *d.state.iterdir(), *d.quarantine.iterdir(),
             *d.output.rglob("*")]
    for p in paths:
        mode = stat.S_IMODE(p.lstat().st_mode)
        want = 0o700 if p.is_dir() else 0o600
        assert mode & 0o077 == 0, f"{p.relative_to(d.root)} is {oct(mode)}, want {oct(want)}"


# -- on_success never removes content it did not process ------------------------------------

def test_delete_skips_a_file_replaced_while_its_old_version_was_processed(daemon_factory,
                                                                         clips):
    d = daemon_factory(on_success="delete")
    d.start()
    drop_atomic(clips["longer"], d.input / "v.avi")
    d.wait_event("video.processing")
    drop_atomic(clips["small"], d.input / "v.avi")  # a new version under the same name
    d.wait_event("video.done", 2, timeout=120)
    wait_until(lambda: not (d.input / "v.avi").exists(), 30, "the second version deleted")
    assert d.stop() == 0
    assert d.count("input.disposal_skipped") == 1
    d.check_complete({pseudonym_of(clips["longer"]), pseudonym_of(clips["small"])})
