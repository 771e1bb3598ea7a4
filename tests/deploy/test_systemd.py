"""The unit under a real systemd (PID 1 in a podman container), installed by
`make install-systemd` exactly as on a server (tests/deploy/Dockerfile.systemd).

--privileged because systemd itself must build the unit's sandbox (mount and user namespaces,
seccomp); the daemon inside still runs with no capabilities at all.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sysconfig
import time

import pytest

from deploy.deploykit import HERE, wait_for

IMAGE = "localhost/radiomicsd-systemd:deploy-test"
NAME = "radiomicsd-systemd-test"
UNIT = "radiomicsd.service"
DATA = "/var/lib/radiomicsd"
PY = "/opt/radiomicsd/venv/bin/python"
# TensorFlow under the unit's sandbox comes from the dev venv (same Python minor as Debian's),
# mounted read-only, rather than a 1.6 GB `EXTRAS=analysis` install into the test image.
SITE = sysconfig.get_paths()["purelib"]
TF_SITE = "/opt/dev-site-packages"
TF_PROBE = """
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("probe: W+X memory allowed")
except OSError:
    print("probe: W+X memory refused")
import numpy as np, tensorflow as tf
inp = tf.keras.Input((64, 64, 3))
x = tf.keras.layers.Conv2D(8, 3, activation="relu")(inp)
out = tf.keras.layers.Dense(3)(tf.keras.layers.GlobalAveragePooling2D()(x))
y = tf.keras.Model(inp, out).predict(np.zeros((4, 64, 64, 3), "float32"), verbose=0)
print("probe: predicted", y.shape)
"""


@pytest.fixture(scope="module")
def host(podman, say):
    """A booted container; yields a function that runs a command in it (-> stdout)."""
    seconds = podman.build(IMAGE, "-f", str(HERE / "Dockerfile.systemd"),
                           "--ignorefile", str(HERE / "systemd.dockerignore"))
    say(f"systemd image built in {seconds:.0f}s")
    podman("rm", "-f", NAME, check=False)
    podman("run", "-d", "--name", NAME, "--privileged", "--systemd=always", "--network=none",
           f"-v={SITE}:{TF_SITE}:ro", IMAGE)

    def sh(cmd: str, check: bool = True, timeout: float = 180) -> str:
        return podman("exec", NAME, "sh", "-c", cmd, check=check, timeout=timeout)

    # podman exec can come before PID 1 has its bus up: poll until boot has finished.
    wait_for("systemd to finish booting", lambda: sh("systemctl is-system-running", check=False)
             .strip() in ("running", "degraded"), timeout=120)
    sh.say = say
    yield sh
    podman("rm", "-f", "-t", "10", NAME, check=False)


def prop_of(sh, unit: str, *names: str) -> dict[str, str]:
    out = sh(f"systemctl show {unit} " + " ".join(f"-p {n}" for n in names))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def prop(sh, *names: str) -> dict[str, str]:
    return prop_of(sh, UNIT, *names)


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


KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"  # test-only key


def test_service_lifecycle(host):
    # An operator's own pseudonym key, the way systemd/README.md says: root:radiomicsd 0640.
    host(f"echo {KEY} | install -m 0640 -o root -g radiomicsd /dev/stdin "
         "/etc/radiomicsd/pseudonym.key && echo 'pseudonym_key_file: "
         "/etc/radiomicsd/pseudonym.key' >> /etc/radiomicsd/config.yml")
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
         f"{PY} -c \"from radiomicsd.testing.synthetic import write_clip; "
         "write_clip(\\\".clip.avi\\\", n_frames=10, size=(400, 240), seed=5)\" && "
         "mv .clip.avi clip.avi'")
    done = wait_for("the dropped clip's output", lambda: outputs(host), timeout=120)
    assert [m["frames"] for m in done.values()] == [10]
    expected = host(f"{PY} -c \"from radiomicsd.pipeline.deid.pseudonym import "
                    f"content_digest, pseudonym; "
                    f"print(pseudonym(bytes.fromhex('{KEY}'), content_digest(open("
                    f"'{DATA}/input/clip.avi', 'rb'))))\"").strip()
    assert list(done) == [expected], "the output is not named with the configured key"
    assert host(f"test -e {DATA}/state/pseudonym.key || echo none").strip() == "none"
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


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="TensorFlow not in this venv (the `analysis` extra)")
def test_tensorflow_inference_under_the_units_sandbox(host):
    """The unit's comment on MemoryDenyWriteExecute, as a fact: with the unit's settings TF
    inference runs; with oneDNN switched back on, MDWE stops it."""
    probe = "radiomicsd-tfprobe.service"
    host(f"cat > /opt/radiomicsd/tfprobe.py << 'EOF'\n{TF_PROBE}\nEOF")
    host(f"cp /etc/systemd/system/{UNIT} /etc/systemd/system/{probe} && "
         f"mkdir -p /etc/systemd/system/{probe}.d")

    def journal() -> list[str]:
        return host(f"journalctl -u {probe} --no-pager -o cat").splitlines()

    def run(extra: str) -> tuple[str, str]:
        seen = len(journal())
        host(f"printf '[Service]\\nType=oneshot\\nWatchdogSec=0\\nRestart=no\\nExecStart=\\n"
             f"ExecStart=/usr/bin/python3 /opt/radiomicsd/tfprobe.py\\n"
             f"Environment=PYTHONPATH={TF_SITE} TF_CPP_MIN_LOG_LEVEL=3\\n{extra}' > "
             f"/etc/systemd/system/{probe}.d/probe.conf && systemctl daemon-reload && "
             f"systemctl reset-failed {probe} 2>/dev/null; systemctl start {probe}", check=False)
        result = prop_of(host, probe, "Result")["Result"]
        return result, "\n".join(journal()[seen:])

    result, log = run("")
    assert result == "success" and "probe: predicted (4, 3)" in log, log[-3000:]
    assert "probe: W+X memory refused" in log, "MemoryDenyWriteExecute not in force"
    result, log = run("Environment=TF_ENABLE_ONEDNN_OPTS=1")
    assert result != "success" and "could not create a primitive" in log, log[-3000:]
