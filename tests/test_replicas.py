"""Replicated daemons: several real ``radiomicsd watch`` processes on one input folder and one
output folder, sharing a journal on a real PostgreSQL server (tests/pgserver.py); no mocks.

- a burst of 60 clips on 3 replicas: 60 outputs, each exported exactly once, no leftovers, the
  work spread over the replicas;
- kill -9 of one replica mid-burst: what it had claimed is finished by the others once its
  lease expires, nothing twice; restarted, it rejoins (and clears its dead self's staging);
- the PostgreSQL server restarted under load: the replicas pause (unhealthy), reconnect, and
  lose nothing.

Each test prints its figures (``pytest -s``) for the issue's note.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Daemon, drop_atomic, pseudonym_of, variant, wait_until
from pgserver import PASSWORD

from radiomicsd.daemon.journal_pg import PASSWORD_ENV

pytestmark = pytest.mark.slow
LEASE = 4.0


def replicas(tmp_path: Path, journal_url: str, n: int, **settings: Any) -> list[Daemon]:
    """``n`` daemons, each with its own state folder and log, sharing input, output,
    quarantine and done folders and the journal at ``journal_url``."""
    shared = {name: str(tmp_path / name) for name in ("in", "out", "quarantine", "done")}
    (tmp_path / "in").mkdir(exist_ok=True)
    return [Daemon(tmp_path / f"r{i}", input_dir=shared["in"], output_dir=shared["out"],
                   quarantine_dir=shared["quarantine"], done_dir=shared["done"],
                   journal_url=journal_url, journal_lease_seconds=LEASE, workers=1,
                   **settings)
            for i in range(n)]


def start_all(daemons: list[Daemon]) -> None:
    for d in daemons:
        d.start(**{PASSWORD_ENV: PASSWORD})


def exports(d: Daemon) -> list[str]:
    """Pseudonyms this daemon exported itself (not an already-exported commit of another)."""
    return [e["pseudonym"] for e in d.events("video.done") if e.get("reason") is None]


def journal_rows(pg_server, journal_url: str) -> list[tuple[str, str, str | None]]:
    """(state, pseudonym, owner) of every video row, read from the server."""
    with pg_server.connect(journal_url.rsplit("/", 1)[1]) as conn:
        return conn.execute("SELECT state, pseudonym, owner FROM videos").fetchall()


def drop_burst(into: Path, data: bytes, tag: str, n: int) -> set[str]:
    """Drop ``n`` distinct variants of ``data`` into ``into`` at once; their pseudonyms."""
    contents = [variant(data, f"{tag}-{i}") for i in range(n)]
    for i, c in enumerate(contents):
        drop_atomic(c, into / f"{tag}{i:02d}.avi")
    return {pseudonym_of(c) for c in contents}


def check_once(daemons: list[Daemon], expected: set[str], dead: str | None = None
               ) -> Counter[str]:
    """Every expected pseudonym exported once over all replicas; complete; no leftovers but
    the staging folders of replica ``dead`` (killed: its restart removes them)."""
    done = Counter(p for d in daemons for p in exports(d))
    assert set(done) == expected and set(done.values()) == {1}, done.most_common(3)
    daemons[0].check_complete(expected, staging_allowed=dead is not None)
    left = daemons[0].staging_leftovers()
    assert all(name.startswith(f".staging-{dead}-") for name in left), (dead, left)
    return done


def replica_id(d: Daemon, run: int | None = None) -> str:
    return str(d.events("journal.opened", run)[0]["replica"])


def test_three_replicas_share_a_burst_of_60(tmp_path, clips, pg_server, journal_url):
    """... and each input is deleted once its output is committed (on_success: delete), by
    whichever replica sees it done, without a failed disposal."""
    daemons = replicas(tmp_path, journal_url, 3, on_success="delete")
    try:
        start_all(daemons)
        expected = drop_burst(daemons[0].input, clips["small"], "burst", 60)
        wait_until(lambda: set(daemons[0].outputs()) >= expected, 240, "60 outputs")
        time.sleep(1.0)  # let every replica finish its last attempts' bookkeeping
        for d in daemons:
            assert d.stop() == 0
        check_once(daemons, expected)
        assert list(daemons[0].input.iterdir()) == []
        assert not any(d.events("input.disposal_failed") for d in daemons)
        split = [len(exports(d)) for d in daemons]
        print(f"\nsplit of 60 clips over 3 replicas: {split}")
        assert sum(split) == 60 and sum(1 for n in split if n > 0) >= 2, split
        rows = journal_rows(pg_server, journal_url)
        assert len(rows) == 60 and {r[0] for r in rows} == {"done"}
        assert {r[2] for r in rows} == {None}  # no claim left
    finally:
        for d in daemons:
            d.close()


def test_kill9_of_a_replica_mid_burst(tmp_path, clips, pg_server, journal_url):
    daemons = replicas(tmp_path, journal_url, 3)
    victim, others = daemons[0], daemons[1:]
    try:
        start_all(daemons)
        expected = drop_burst(victim.input, clips["long"], "kill", 30)
        victim.wait_event("video.processing", 2, timeout=120)
        assert victim.kill9() == -signal.SIGKILL
        claimed = {e["pseudonym"] for e in victim.events("video.processing")}
        committed_by_victim = set(exports(victim))
        in_flight = claimed - committed_by_victim
        killed_at = time.monotonic()
        wait_until(lambda: set(victim.outputs()) >= expected, 300, "30 outputs")
        took = time.monotonic() - killed_at
        for d in others:
            assert d.stop() == 0
        dead = replica_id(victim, run=1)
        done = check_once(daemons, expected, dead)  # in particular: nothing exported twice
        taken_over = in_flight & {p for d in others for p in exports(d)}
        expired = sum(e["requeued"] for d in others for e in d.events("journal.leases_expired"))
        staged = len(victim.staging_leftovers())
        print(f"\nkill -9: victim claimed {len(claimed)}, committed {len(committed_by_victim)}, "
              f"in flight {len(in_flight)} -> finished by the others {len(taken_over)} "
              f"(leases requeued {expired}); all 30 in {took:.1f}s after the kill; "
              f"duplicates {sum(done.values()) - len(done)}, dropped "
              f"{len(expected - set(done))}; its staging folders left {staged}")
        assert in_flight and taken_over == in_flight and expired >= 1
        assert all(r[0] == "done" for r in journal_rows(pg_server, journal_url))

        # restarted, it rejoins: its dead self's staging is removed, it takes new work
        victim.start(**{PASSWORD_ENV: PASSWORD})
        assert victim.staging_leftovers() == []
        more = drop_burst(victim.input, clips["small"], "rejoin", 6)
        victim.wait_event("video.done", 6, timeout=120)
        assert victim.stop() == 0
        check_once(daemons, expected | more)
    finally:
        for d in daemons:
            d.close()


def test_postgresql_restart_under_load(tmp_path, clips, pg_server, journal_url):
    daemons = replicas(tmp_path, journal_url, 2)
    try:
        start_all(daemons)
        expected = drop_burst(daemons[0].input, clips["long"], "pg", 24)
        wait_until(lambda: len(daemons[0].outputs()) >= 4, 120, "4 outputs")
        pg_server.stop("immediate")
        try:
            for d in daemons:  # each notices at its next journal call: claim, finish, beat
                d.wait_event("journal.unavailable", timeout=60)
            assert all(d.http("/healthz")[0] == 503 for d in daemons)
            time.sleep(3.0)  # down a while, work in flight finishing meanwhile
        finally:
            pg_server.start()
        for d in daemons:
            d.wait_event("output.resumed", timeout=60)
        wait_until(lambda: set(daemons[0].outputs()) >= expected, 300, "24 outputs")
        wait_until(lambda: all(r[0] == "done" for r in journal_rows(pg_server, journal_url))
                   and len(journal_rows(pg_server, journal_url)) == 24, 60,
                   "every row done")
        assert all(d.http("/healthz")[0] == 200 for d in daemons)
        for d in daemons:
            assert d.stop() == 0
        done = check_once(daemons, expected)
        print(f"\nPostgreSQL down ~3 s under load: {len(done)} exported once each, split "
              f"{[len(exports(d)) for d in daemons]}")
    finally:
        pg_server.start()
        for d in daemons:
            d.close()
