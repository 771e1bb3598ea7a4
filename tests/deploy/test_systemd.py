"""The unit under a real systemd (PID 1 in a podman container), installed by
`make install-systemd` exactly as on a server (tests/deploy/Dockerfile.systemd).

--privileged because systemd itself must build the unit's sandbox (mount and user namespaces,
seccomp); the daemon inside still runs with no capabilities at all.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from deploykit import HERE, wait_for

IMAGE = "localhost/radiomicsd-systemd:deploy-test"
NAME = "radiomicsd-systemd-test"
UNIT = "radiomicsd.service"
DATA = "/var/lib/radiomicsd"
PY = "/opt/radiomicsd/venv/bin/python"


@pytest.fixture(scope="module")
def host(podman, say):
    """A booted container; yields a function that runs a command in it (-> stdout)."""
    seconds = podman.build(IMAGE, "-f", str(HERE / "Dockerfile.systemd"),
                           "--ignorefile", str(HERE / "systemd.dockerignore"))
    say(f"systemd image built in {seconds:.0f}s")
    podman("rm", "-f", NAME, check=False)
    podman("run", "-d", "--name", NAME, "--privileged", "--systemd=always", "--network=none",
           IMAGE)

    def sh(cmd: str, check: bool = True, timeout: float = 180) -> str:
        return podman("exec", NAME, "sh", "-c", cmd, check=check, timeout=timeout)

    # podman exec can come before PID 1 has its bus up: poll until boot has finished.
    wait_for("systemd to finish booting", lambda: sh("systemctl is-system-running", check=False)
             .strip() in ("running", "degraded"), timeout=120)
    sh.say = say
    yield sh
    podman("rm", "-f", "-t", "10", NAME, check=False)


def prop(sh, *names: str) -> dict[str, str]:
    out = sh(f"systemctl show {UNIT} " + " ".join(f"-p {n}" for n in names))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def outputs(sh) -> dict[str, dict]:
    """Complete outputs: pseudonym -> manifest (read as root inside the container)."""
    code = ("import json,pathlib,sys; o=pathlib.Path(sys.argv[1]); print(json.dumps({d.name: "
            "json.loads((d/'manifest.json').read_text()) for d in o.iterdir() "
            "if d.is_dir() and not d.name.startswith('.')}))")
    return json.loads(sh(f'{PY} -c "{code}" {DATA}/output'))


def test_installed_unit_verifies_clean_and_scores(host):
    """The installed unit, with its user and ExecStart present: no warning at all."""
    proc = host(f"systemd-analyze verify /etc/systemd/system/{UNIT} 2>&1; echo rc=$?")
    assert proc.strip() == "rc=0", proc
    out = host(f"systemd-analyze security --offline=true /etc/systemd/system/{UNIT}")
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", out).group(1))
    host.say(f"systemd-analyze security (installed, systemd in container): {score}")
    assert score <= 2.0


def test_service_lifecycle(host):
    started = time.monotonic()
    host(f"systemctl start {UNIT}")  # Type=notify: returns once READY=1 arrived
    host.say(f"systemctl start returned after {time.monotonic() - started:.1f}s")
    p = prop(host, "ActiveState", "SubState", "StatusText", "MainPID", "User")
    assert (p["ActiveState"], p["SubState"]) == ("active", "running"), p
    assert p["StatusText"], "no STATUS= from the daemon"
    host.say(f"StatusText={p['StatusText']}")
    # Ready means serving: /healthz answers at once, and the daemon is not root.
    host(f"{PY} -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:9108/healthz')\"")
    assert host(f"ps -o user= -p {p['MainPID']}").strip() == "radiomicsd"

    # An uploader in the radiomicsd group drops a clip the documented way: hidden name, rename.
    host("useradd --gid radiomicsd --no-create-home uploader 2>/dev/null || true")
    host("runuser -u uploader -- sh -c 'umask 0027 && cd /var/lib/radiomicsd/input && "
         f"{PY} -c \"from pipeline.synthetic import write_clip; "
         "write_clip(\\\".clip.avi\\\", n_frames=10, size=(400, 240), seed=5)\" && "
         "mv .clip.avi clip.avi'")
    done = wait_for("the dropped clip's output", lambda: outputs(host), timeout=120)
    assert [m["frames"] for m in done.values()] == [10]
    assert host(f"ls -A {DATA}/output | grep -c '^.staging-' || true").strip() == "0"
    assert "clip.avi" not in host(f"journalctl -u {UNIT} --no-pager")

    # SIGHUP reloads the config in place: same process, still running.
    pid = p["MainPID"]
    host(f"systemctl reload {UNIT}")
    wait_for("config.reloaded in the journal", lambda: "config.reloaded" in
             host(f"journalctl -u {UNIT} --no-pager -o cat"), timeout=30)
    assert prop(host, "MainPID", "ActiveState") == {"MainPID": pid, "ActiveState": "active"}

    # A clean stop: SIGTERM, the daemon's own orderly shutdown, exit 0. (systemd counts death
    # by SIGTERM as success too, and forgets the exit status once inactive, so the journal
    # tells: a non-zero exit or a signal would log "Main process exited".)
    host(f"systemctl stop {UNIT}")
    p = prop(host, "ActiveState", "Result")
    assert p == {"ActiveState": "inactive", "Result": "success"}, p
    log = host(f"journalctl -u {UNIT} --no-pager -o cat")
    assert "watch.stopped" in log and "Deactivated successfully" in log, log[-2000:]
    assert "Main process exited" not in log, log[-2000:]


def test_watchdog_kills_and_restarts_a_stalled_daemon(host):
    dropin = f"/etc/systemd/system/{UNIT}.d/stall.conf"
    # The fault switch freezes the main loop 3 s after start; stopping the frozen daemon is
    # SIGKILL's job after 5 s (the test's drop-in only; the real unit waits 60 s).
    host(f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '[Service]\\n"
         "Environment=RADIOMICSD_TEST_STALL_AFTER=3\\nTimeoutStopSec=5s\\n' > " + dropin +
         " && systemctl daemon-reload")
    try:
        host(f"systemctl start {UNIT}")
        first = prop(host, "MainPID", "WatchdogUSec")
        t0 = time.monotonic()
        p = wait_for("a watchdog restart", lambda: (q := prop(
            host, "NRestarts", "MainPID", "ActiveState"))["NRestarts"] != "0" and
            q["ActiveState"] == "active" and q, timeout=90, every=1)
        host.say(f"watchdog restart {time.monotonic() - t0:.0f}s after start "
                 f"(WatchdogUSec={first['WatchdogUSec']}, stall after 3 s)")
        assert p["MainPID"] != first["MainPID"]
        log = host(f"journalctl -u {UNIT} --no-pager -o cat")
        assert "Watchdog timeout" in log, log[-2000:]
        assert "Failed with result 'watchdog'" in log, log[-2000:]
    finally:
        host(f"systemctl stop {UNIT}; rm -f {dropin}; systemctl daemon-reload; "
             f"systemctl reset-failed {UNIT}", check=False)
