"""Encrypted drops (age, X25519) through the real CLI and daemon, and fail-closed start-up."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyrage
import pytest
import yaml
from conftest import REPO, SMALL, cli_env, run_radiomicsd


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh identity made by ``radiomicsd keygen``: (identity file, recipient)."""
    path = tmp_path_factory.mktemp("age") / "identity.txt"
    res = run_radiomicsd("keygen", "--identity", path)
    assert res.returncode == 0, res.stderr
    recipient = res.stdout.strip()
    assert recipient.startswith("age1")
    assert path.stat().st_mode & 0o777 == 0o600
    return path, recipient


def encrypt(src: Path, dst: Path, recipient: str) -> Path:
    rcpt = pyrage.x25519.Recipient.from_str(recipient)
    dst.write_bytes(pyrage.encrypt(src.read_bytes(), [rcpt]))
    return dst


def outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []


def test_keygen_refuses_to_overwrite(identity: tuple[Path, str]) -> None:
    before = identity[0].read_bytes()
    res = run_radiomicsd("keygen", "--identity", identity[0])
    assert res.returncode == 2 and "refusing" in res.stderr
    assert identity[0].read_bytes() == before


def test_age_round_trip_batch(identity: tuple[Path, str], clip_factory, tmp_path: Path) -> None:
    ident, rcpt = identity
    clip = clip_factory("plain.avi", 12, SMALL)
    inp = tmp_path / "in"
    inp.mkdir()
    encrypt(clip.path, inp / "one.avi.age", rcpt)
    encrypt(clip.path, inp / "two.avi.age", rcpt)  # same video, new ciphertext
    res = run_radiomicsd("anonymise", "-i", inp, "-o", tmp_path / "out", "--state",
                         tmp_path / "st", RADIOMICSD_AGE_IDENTITY_FILE=str(ident))
    assert res.returncode == 0, res.stderr
    enc = outputs(tmp_path / "out")
    assert len(enc) == 1, "one video encrypted twice is one video"
    # the pseudonym is computed over the plaintext: the plain file gets the same one
    plain_in = tmp_path / "plain"
    plain_in.mkdir()
    (plain_in / "p.avi").write_bytes(clip.path.read_bytes())
    res = run_radiomicsd("anonymise", "-i", plain_in, "-o", tmp_path / "out2", "--state",
                         tmp_path / "st")
    assert [p.name for p in outputs(tmp_path / "out2")] == [enc[0].name]
    manifest = json.loads((enc[0] / "manifest.json").read_text())
    assert manifest["frames"] == 12


def test_identity_from_environment_string(identity, clip_factory, tmp_path: Path) -> None:
    ident, rcpt = identity
    secret = [ln for ln in ident.read_text().splitlines() if not ln.startswith("#")][0]
    inp = tmp_path / "in"
    inp.mkdir()
    encrypt(clip_factory("plain.avi", 12, SMALL).path, inp / "v.age", rcpt)
    res = run_radiomicsd("anonymise", "-i", inp, "-o", tmp_path / "out", "--state",
                         tmp_path / "st", RADIOMICSD_AGE_IDENTITY=secret)
    assert res.returncode == 0, res.stderr
    assert len(outputs(tmp_path / "out")) == 1
    assert secret not in res.stdout + res.stderr


def test_bad_drops_have_their_reasons(identity, clip_factory, tmp_path: Path) -> None:
    ident, rcpt = identity
    clip = clip_factory("long.avi", 30, SMALL)
    assert clip.path.stat().st_size > 3 * 65536, "need several age chunks"
    inp = tmp_path / "in"
    inp.mkdir()
    other = pyrage.x25519.Identity.generate().to_public()
    (inp / "wrong.age").write_bytes(pyrage.encrypt(clip.path.read_bytes(), [other]))
    good = encrypt(clip.path, tmp_path / "good.age", rcpt).read_bytes()
    (inp / "cut.age").write_bytes(good[: len(good) - 5000])
    tampered = bytearray(good)
    tampered[len(good) // 3] ^= 0x40
    (inp / "flip.age").write_bytes(bytes(tampered))
    (inp / "nothdr.age").write_bytes(b"age-encryption.org/v1\n-> X25519 abc\n")
    res = run_radiomicsd("anonymise", "-i", inp, "-o", tmp_path / "out", "--state",
                         tmp_path / "st", RADIOMICSD_AGE_IDENTITY_FILE=str(ident))
    assert res.returncode == 1
    for reason in ("age_wrong_recipient", "age_truncated", "age_tampered"):
        assert reason in res.stdout, res.stdout
    assert outputs(tmp_path / "out") == []
    assert not any(p.name.startswith(".staging-") for p in (tmp_path / "out").iterdir())


def test_age_drop_without_identity_is_refused(identity, clip_factory, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    encrypt(clip_factory("plain.avi", 12, SMALL).path, inp / "v.age", identity[1])
    res = run_radiomicsd("anonymise", "-i", inp, "-o", tmp_path / "out", "--state",
                         tmp_path / "st")
    assert res.returncode == 1 and "age_no_identity" in res.stdout


def _plaintext_watch(roots: list[Path], needle: bytes, stop: threading.Event,
                     found: list[str]) -> None:
    """Poll ``roots`` for any file holding ``needle`` (a slice of the plaintext video)."""
    while not stop.is_set():
        for root in roots:
            for dirpath, _, files in os.walk(root):
                for f in files:
                    p = Path(dirpath, f)
                    try:
                        if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                            found.append(str(p))
                    except OSError:
                        pass
        time.sleep(0.01)


@pytest.mark.parametrize("allowed_tmp", [False, True])
def test_no_plaintext_outside_allowed_folder(identity, clip_factory, tmp_path: Path,
                                             allowed_tmp: bool) -> None:
    ident, rcpt = identity
    clip = clip_factory("long.avi", 30, SMALL)
    plain = clip.path.read_bytes()
    needle = plain[len(plain) // 2: len(plain) // 2 + 64]
    inp, out, st, tmp, enc = (tmp_path / n for n in ("in", "out", "st", "tmp", "enc"))
    for d in (inp, tmp, enc):
        d.mkdir()
    for i in range(3):
        encrypt(clip.path, inp / f"v{i}.age", rcpt)
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump({"decrypt_tmp_dir": str(enc) if allowed_tmp else None}))
    stop, found = threading.Event(), []
    watcher = threading.Thread(target=_plaintext_watch,
                               args=([inp, out, st, tmp], needle, stop, found))
    watcher.start()
    try:
        res = run_radiomicsd("anonymise", "-c", cfg, "-i", inp, "-o", out, "--state", st,
                             RADIOMICSD_AGE_IDENTITY_FILE=str(ident), TMPDIR=str(tmp))
    finally:
        stop.set()
        watcher.join()
    assert res.returncode == 0, res.stderr
    assert found == [], "plaintext video bytes appeared on an unencrypted folder"
    assert list(enc.iterdir()) == [], "temporary plaintext files are removed"


def _write_cfg(tmp_path: Path, **extra: object) -> Path:
    cfg = {"input_dir": str(tmp_path / "in"), "output_dir": str(tmp_path / "out"),
           "state_dir": str(tmp_path / "st"), "quarantine_dir": str(tmp_path / "q"),
           "settle_seconds": 0.5, "workers": 1, "metrics": {"enabled": False}}
    cfg.update(extra)
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(cfg: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "radiomicsd", "watch", "-c", str(cfg)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))


def _wait_for(pred, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_watch_age_round_trip_and_quarantine(identity, clip_factory, tmp_path: Path) -> None:
    ident, rcpt = identity
    clip = clip_factory("plain.avi", 12, SMALL)
    cfg = _write_cfg(tmp_path)
    log = tmp_path / "log.jsonl"
    proc = _start(cfg, cli_env(RADIOMICSD_AGE_IDENTITY_FILE=str(ident)), log)
    try:
        assert _wait_for(lambda: b"watch.ready" in log.read_bytes())
        tmp = tmp_path / "in" / ".incoming"
        encrypt(clip.path, tmp, rcpt)
        tmp.rename(tmp_path / "in" / "drop.avi.age")
        other = pyrage.x25519.Identity.generate().to_public()
        (tmp_path / "in" / "stranger.age").write_bytes(
            pyrage.encrypt(clip.path.read_bytes(), [other]))
        assert _wait_for(lambda: len(outputs(tmp_path / "out")) == 1
                         and (outputs(tmp_path / "out")[0] / "manifest.json").exists())
        notes = tmp_path / "q"
        assert _wait_for(lambda: any(p.suffix == ".json" for p in notes.iterdir()))
        note = json.loads(next(p for p in notes.iterdir() if p.suffix == ".json").read_text())
        assert note["reason"] == "age_wrong_recipient"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


@pytest.mark.parametrize("attested", [False, True])
def test_require_attestation_fails_closed(identity, tmp_path: Path, attested: bool) -> None:
    marker = tmp_path / "attested"
    cfg = _write_cfg(tmp_path, require_attestation=True, enclave_mode=True,
                     attestation_marker=str(marker))
    secret = [ln for ln in identity[0].read_text().splitlines() if not ln.startswith("#")][0]
    env = cli_env()
    if attested:
        marker.write_text("session\n")
        env["RADIOMICSD_AGE_IDENTITY"] = secret
    log = tmp_path / "log.jsonl"
    proc = _start(cfg, env, log)
    if not attested:
        assert proc.wait(60) == 2
        assert "not attested" in log.read_text()
        assert not (tmp_path / "st" / "pseudonym.key").exists()
        return
    try:
        assert _wait_for(lambda: b"watch.ready" in log.read_bytes())
        db = sqlite3.connect(tmp_path / "st" / "journal.sqlite3")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
        db.close()
        assert not (tmp_path / "st" / "journal.sqlite3-shm").exists(), "no shared-memory file"
        assert b'"observer": "polling"' in log.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0

