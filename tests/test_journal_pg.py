"""The journal's claims, leases and recovery, on SQLite and on a real PostgreSQL server.

Every test that does not name a back-end runs on both: the state machine is one piece of code
over two databases, and the replicas (tests/test_replicas.py) rely on it being exact.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import TEST_KEY, run_radiomicsd
from daemon_helpers import drop_atomic
from pgserver import PASSWORD

from radiomicsd.daemon.journal import SCHEMA_VERSION, Journal, SqliteJournal, State
from radiomicsd.daemon.journal_pg import PASSWORD_ENV, PostgresJournal
from radiomicsd.daemon.settings import load_settings
from radiomicsd.pipeline.errors import ConfigError, JournalUnavailable

KEY = b"k" * 32
LEASE = 3.0


@pytest.fixture(params=["sqlite", "postgresql"])
def make_journal(request, tmp_path: Path, monkeypatch):
    """``make(**kw)`` -> a new connection (its own replica id) to one shared journal."""
    opened: list[Journal] = []
    if request.param == "postgresql":
        url = request.getfixturevalue("journal_url")
        pwfile = tmp_path / "pw"
        pwfile.write_text(PASSWORD + "\n")

        def make(**kw) -> Journal:
            opened.append(PostgresJournal(url, password_file=pwfile, **{"key": KEY, **kw}))
            return opened[-1]
    else:
        def make(**kw) -> Journal:
            opened.append(SqliteJournal(tmp_path / "j.sqlite3", **{"key": KEY, **kw}))
            return opened[-1]

    yield make
    for j in opened:
        j.close()


def test_a_claim_is_exclusive_until_its_lease_expires(make_journal) -> None:
    a, b = make_journal(lease_seconds=LEASE), make_journal(lease_seconds=LEASE)
    assert a.claim("d1", "p1") and not b.claim("d1", "p1") and not a.claim("d1", "p1")
    time.sleep(LEASE + 0.3)  # a stopped renewing: it died
    assert b.claim("d1", "p1") and not a.claim("d1", "p1")
    b.finish("d1", State.DONE, None, "p1", 12, 0.5)
    assert a.state("d1") is State.DONE and not a.claim("d1", "p1")
    assert a.counts() == {"done": 1}


def test_a_heartbeat_keeps_a_live_owner_s_claims(make_journal) -> None:
    a, b = make_journal(lease_seconds=LEASE), make_journal(lease_seconds=LEASE)
    assert a.claim("d1", "p1")
    for _ in range(4):  # 4 s > the lease: only the heartbeat holds the claim
        time.sleep(LEASE / 3)
        a.heartbeat()
        assert not b.claim("d1", "p1")
    assert b.requeue_unfinished(max_starts=5, expired_only=True) == (0, 0)
    assert a.state("d1") is State.PROCESSING


def test_recovery_takes_expired_claims_only_and_gives_up_on_repeated_crashes(make_journal
                                                                             ) -> None:
    dead, dead_too, live, other = (make_journal(lease_seconds=LEASE) for _ in range(4))
    assert dead.claim("gone", "p") and dead.claim("crashy", "q")
    time.sleep(LEASE + 0.3)
    assert dead_too.claim("crashy", "q")  # taken over: its second start; this owner dies too
    assert live.claim("held", "r")
    time.sleep(LEASE + 0.3)
    live.heartbeat()
    assert other.requeue_unfinished(max_starts=2, expired_only=True) == (1, 1)
    assert other.state("gone") is State.QUEUED and other.state("crashy") is State.FAILED
    assert other.state("held") is State.PROCESSING  # its owner is alive
    assert other.claim("gone", "p")  # queued again: the next replica to find the file takes it
    assert other.live_replicas() == {live.replica, other.replica}


def test_concurrent_claims_take_each_digest_once(make_journal) -> None:
    """Six connections (as six replicas) race for the same 60 digests."""
    journals = [make_journal(lease_seconds=60) for _ in range(6)]
    digests = [f"d{i:03d}" for i in range(60)]
    won: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(len(journals))

    def race(j: Journal) -> None:
        start.wait()
        for d in digests:
            if j.claim(d, "p"):
                with lock:
                    won[d] += 1

    threads = [threading.Thread(target=race, args=(j,)) for j in journals]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(won) == digests and set(won.values()) == {1}


def test_a_folder_made_again_requeues_its_lost_outputs_whatever_its_inode(make_journal,
                                                                         tmp_path: Path) -> None:
    j = make_journal()
    j.claim("kept", "p1")
    j.finish("kept", State.DONE, None, "p1", 1, 0.1)
    j.claim("lost", "p2")
    j.finish("lost", State.DONE, None, "p2", 1, 0.1)
    (tmp_path / "p1").mkdir()
    assert j.note_output_folder("5:7", tmp_path) == 0  # recorded before tokens
    assert j.note_output_folder("5:7:aa", tmp_path) == 0  # the same folder, now with a token
    assert j.note_output_folder("5:7:aa", tmp_path) == 0
    # removed and made again on the same inode: only its token tells
    assert j.note_output_folder("5:7:bb", tmp_path) == 1
    assert j.state("lost") is State.QUEUED and j.state("kept") is State.DONE


def test_another_key_is_refused(make_journal) -> None:
    make_journal().check_key()
    make_journal().check_key()  # the same key: fine
    with pytest.raises(ConfigError, match="pseudonym key differs"):
        make_journal(key=b"x" * 32).check_key()


def test_an_old_sqlite_journal_is_migrated_in_place(tmp_path: Path) -> None:
    """A journal written by radiomicsd 0.2 (no leases, no schema version) keeps its rows."""
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE videos (digest TEXT PRIMARY KEY, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, reason TEXT, pseudonym TEXT, frames INTEGER,
            seconds REAL, first_seen REAL NOT NULL, updated REAL NOT NULL, path TEXT);
        CREATE TABLE files (path_key TEXT PRIMARY KEY, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, digest TEXT NOT NULL);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO videos VALUES ('old', 'done', 1, NULL, 'p', 10, 1.0, 1.0, 1.0, NULL);
        INSERT INTO videos VALUES ('cut', 'processing', 1, NULL, 'q', NULL, NULL, 1.0, 1.0, NULL);
        INSERT INTO meta VALUES ('output_folder', '1:2');
    """)
    db.commit()
    db.close()
    j = SqliteJournal(path, key=KEY)
    try:
        assert j.state("old") is State.DONE
        assert j.requeue_unfinished(max_starts=5) == (1, 0)  # no lease: a crash's leftover
        assert j.claim("cut", "q")
        with j._tx() as tx:
            assert tx.execute("SELECT value FROM meta WHERE name='schema_version'"
                              ).fetchone()[0] == str(SCHEMA_VERSION)
    finally:
        j.close()
    SqliteJournal(path, key=KEY).close()  # opening a current journal again changes nothing


def test_postgresql_restart_is_unavailable_then_reconnects(pg_server, journal_url: str,
                                                           monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    j = PostgresJournal(journal_url, key=KEY)
    try:
        assert j.claim("d1", "p")
        pg_server.stop("immediate")
        with pytest.raises(JournalUnavailable):
            j.state("d1")
        with pytest.raises(JournalUnavailable):  # still down: connecting fails, quickly
            j.ping()
        pg_server.start()
        assert j.state("d1") is State.PROCESSING  # the committed claim survived
    finally:
        pg_server.start()  # (nothing when up) other tests share the server
        j.close()


def test_passwords_never_come_from_the_config(tmp_path: Path, pg_server) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("journal_url: postgresql://radiomicsd:secret@127.0.0.1:5432/x\n")
    with pytest.raises(ConfigError, match="journal_password_file"):
        load_settings(cfg)
    cfg.write_text("journal_url: mysql://db/x\n")
    with pytest.raises(ConfigError, match="journal_url"):
        load_settings(cfg)
    # in an enclave the server must be authenticated: the network is the untrusted host's
    cfg.write_text("enclave_mode: true\njournal_url: postgresql://u@db/x?sslmode=require\n")
    with pytest.raises(ConfigError, match="verify-full"):
        load_settings(cfg)
    cfg.write_text("enclave_mode: true\njournal_url: postgresql://u@db/x?sslmode=verify-full"
                   "&sslrootcert=/etc/radiomicsd/pg-ca.crt\n")
    assert load_settings(cfg).journal_url
    # no password at all: the server refuses; status says so and exits 2, naming no secret
    cfg.write_text(f"journal_url: {pg_server.url}\n")
    r = run_radiomicsd("status", "-c", cfg, key=TEST_KEY)
    assert r.returncode == 2 and "cannot reach the journal" in r.stderr
    assert "password" in r.stderr and PASSWORD not in r.stderr + r.stdout


def test_status_reads_the_postgresql_journal(tmp_path: Path, journal_url: str,
                                             monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    j = PostgresJournal(journal_url, key=KEY)
    try:
        j.heartbeat()
        j.claim("d1", "p1")
        j.finish("d1", State.QUARANTINED, "needs_review", "p1")
        j.claim("d2", "p2")
    finally:
        j.close()
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD)
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"journal_url: {journal_url}\njournal_password_file: {pwfile}\n")
    r = run_radiomicsd("status", "-c", cfg, key=TEST_KEY)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("journal: postgresql://127.0.0.1:")
    assert "processing    1" in lines and "quarantined   1" in lines
    assert any(j.replica in line for line in lines)  # the replica and its heartbeat
    assert any("needs_review" in line and "p1" in line for line in lines)


def test_the_replicas_manifest_config_loads_and_keeps_secrets_out(tmp_path: Path) -> None:
    """deploy/k8s/replicas.yaml (validated with the other manifests in test_shard.py): its
    config is valid for this release, and the password and key come from Secrets."""
    import yaml
    from conftest import REPO

    docs = list(yaml.safe_load_all((REPO / "deploy/k8s/replicas.yaml").read_text()))
    config, deployment = docs
    cfg = tmp_path / "config.yml"
    cfg.write_text(config["data"]["config.yml"])
    settings = load_settings(cfg)
    assert settings.journal_url and "@" in settings.journal_url
    assert ":" not in settings.journal_url.split("//")[1].split("@")[0]  # user, no password
    assert settings.observer == "polling" and settings.quarantine_dir.is_absolute()
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert env == {"RADIOMICSD_PSEUDONYM_KEY": "radiomicsd-pseudonym-key",
                   PASSWORD_ENV: "radiomicsd-journal"}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """(server, CA certificate, another CA's certificate): a PostgreSQL server presenting a
    certificate of a self-made CA for 127.0.0.1."""
    from pgserver import PgServer, bindir
    from selfca import make_cert

    if bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    tmp = tmp_path_factory.mktemp("tls")
    ca = make_cert(tmp, "ca")
    server = PgServer(tls=make_cert(tmp, "server", ca))
    server.start()
    yield server, ca[1], make_cert(tmp, "other-ca")[1]
    server.close()


def test_tls_options_pass_through_to_libpq(tls_server, monkeypatch) -> None:
    """verify-full against the server's CA connects over TLS; against another CA the journal
    is unavailable (the server is not who it claims)."""
    server, ca, other_ca = tls_server
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    url = server.new_database()
    j = PostgresJournal(f"{url}?sslmode=verify-full&sslrootcert={ca}", key=KEY)
    try:
        with j._tx() as tx:
            assert tx.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                              ).fetchone()[0] is True
        assert j.claim("d1", "p")
    finally:
        j.close()
    with pytest.raises(JournalUnavailable, match="certificate"):
        PostgresJournal(f"{url}?sslmode=verify-full&sslrootcert={other_ca}", key=KEY)


@pytest.mark.slow
def test_a_daemon_with_analysis_keeps_its_tls_journal(tls_server, daemon_factory, clips
                                                      ) -> None:
    """TensorFlow's own TLS library, loaded first, took libpq's TLS calls and aborted the
    process ('free(): invalid pointer') at its first connection: the daemon loads libpq first."""
    server, ca, _ = tls_server
    url = f"{server.new_database()}?sslmode=verify-full&sslrootcert={ca}"
    d = daemon_factory(journal_url=url, analysis={"enabled": True})
    d.start(**{PASSWORD_ENV: PASSWORD})
    drop_atomic(clips["small"], d.input / "clip.avi")
    d.wait_event("video.done", timeout=180)
    assert d.stop() == 0
    [out] = d.outputs()
    assert (d.output / out / "results.json").is_file()
