"""Benchmark of replicated ``radiomicsd watch`` daemons on a PostgreSQL journal (issue 13).

Every daemon is a real process (``radiomicsd watch -c CONFIG``, ``workers: 1``, the product's
``settle_seconds`` and ``journal_lease_seconds``); the replicas of a configuration share one
input, output, quarantine and done folder and one fresh PostgreSQL database, each with its own
state folder (as in ``tests/test_replicas.py``). The server is ``tests/pgserver.py``'s (Debian's
PostgreSQL on a loopback port) but with ``fsync`` on, as in production: the tests turn it off
for speed, and the SQLite journal it is compared with commits with ``synchronous=FULL``
(``--no-pg-fsync`` takes the tests' setting). Clips are one small generated Doppler clip made
distinct by a trailing tag (FFmpeg ignores bytes after the AVI), written beside the input
folder and renamed in, all at once (a burst).

Configurations, run in alternating order round by round (a noisy spell on the shared machine
hits all alike): one replica on SQLite (``journal_url`` unset), 1, 2 and 3 replicas on
PostgreSQL.

``throughput``  clips per minute in steady state, (N - 1) / (last commit - first commit), and
                end to end, N / (last commit - first rename); median over the rounds.
``latency``     drop to commit of each clip of the burst: from the moment its rename into the
                input folder returned to the moment ``OUT/<pseudonym>/`` was first seen, the
                output folder polled every 10 ms by this process (the folder appears complete,
                manifest included, by one rename: its appearance is the commit). Queueing in a
                burst is part of it, so it falls as replicas are added. p50, p95, max over the
                clips of every round.
``CPU``         utime + stime per clip over the burst: the replicas (``/proc/<pid>/stat``) and,
                on PostgreSQL, the whole server (postmaster, its live children, and its reaped
                children's ``cutime``/``cstime``). ``others_cores``: how many CPUs other
                work kept busy during each burst (``/proc/stat`` less all of the above and this
                process), to tell a noisy neighbour from a slow daemon.
``exactly once`` every clip has one output, complete (each frame a decodable PNG), none left in
                staging, exported by exactly one replica (``video.done`` lines), and every
                journal row 'done' with no claim left. Replicas that lose the claim race skip
                the clip (``duplicate``), mostly without reading it (another replica hashed
                and claimed it first); the skips are counted.
``journal``     the real journal classes in this process, per clip the calls a daemon makes for
                it: known_digest (on the file's event), remember_file + claim (in the worker),
                finish (the result); a losing replica's known_digest, remember_file, claim
                (refused), state. Wall ms per clip and per call, transactions and statements
                (each a client-server round trip on PostgreSQL, plus BEGIN and COMMIT), and the
                server's CPU per clip. With R replicas each clip costs the server one winning
                and R - 1 losing sequences: that sets the ceiling a bigger host meets, reported
                as clips/s per server core.

Targets (PASS/FAIL; exit 1 on a FAIL): every clip exported exactly once in every configuration
and round; 2 replicas >= 1.3x the steady throughput of 1 (this machine has 2 cores: with one
worker each, two replicas use both; 3 replicas on 2 cores are not expected to scale further,
and are measured without a target); one replica on PostgreSQL within 15% of one on SQLite
(throughput >= 0.85x). The ratios are of the medians over the rounds (the ratio of each round
is reported too, and the same comparisons made from CPU seconds per clip, without targets).
Prints a table, writes JSON (default ``bench/results/replicas.json``).

The machine may be shared: load averages and, per burst, the CPUs other work kept busy are
recorded. A neighbour's load weighs on the ratios, and not evenly: the scheduler shares
contended CPUs between threads, so more replicas also win a larger share of them (3 replicas
can then seem to beat 2 on 2 cores).

    python bench/replicas.py [--clips 60] [--rounds 5] [--journal-clips 300] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from daemon_helpers import KEY, Daemon, cpu_seconds, pseudonym_of, variant, wait_until  # noqa: E402
from pgserver import PASSWORD, PgServer, bindir  # noqa: E402

from radiomicsd.daemon.discovery import FileStamp  # noqa: E402
from radiomicsd.daemon.journal import JOURNAL_NAME, Journal, SqliteJournal, State  # noqa: E402
from radiomicsd.daemon.journal_pg import PASSWORD_ENV, PostgresJournal  # noqa: E402
from radiomicsd.daemon.settings import Settings  # noqa: E402
from radiomicsd.testing.synthetic import write_clip  # noqa: E402


def _bench_module(name: str) -> Any:
    """Another bench script as a module (``bench/`` is no package; ``daemon`` names ours)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_daemon_bench = _bench_module("daemon")
CommitWatcher, percentile = _daemon_bench.CommitWatcher, _daemon_bench.percentile

TARGETS = {"replicas2_ratio": 1.3, "postgresql_vs_sqlite": 0.85}
#: (journal back-end, replicas), in the order of even rounds (odd rounds run it reversed).
CONFIGS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 3))
POLL_SECONDS = 0.01


class DurablePgServer(PgServer):
    """tests/pgserver.py's server, optionally with ``fsync`` on (its tests turn it off)."""

    def __init__(self, *, fsync: bool) -> None:
        super().__init__()
        self.fsync = fsync

    def start(self) -> None:
        if self.fsync is False or self.running():
            super().start()
            return
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", opts, "-w", "-t", "60", "start")

    def cpu_seconds(self) -> float:
        """CPU seconds of the whole server so far: postmaster, live children, reaped children."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        live = 0.0
        for child in children:  # one that exits meanwhile is in 'reaped' at the next call
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                live += cpu_seconds(int(child))
        return cpu_seconds(pid) + reaped + live


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine spent busy (not idle, not waiting for I/O) so far."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


# -- the daemons -------------------------------------------------------------------------------
def exports(d: Daemon) -> list[str]:
    """Pseudonyms this replica exported itself (not an already-exported commit of another)."""
    return [e["pseudonym"] for e in d.events("video.done") if e.get("reason") is None]


def journal_rows(server: PgServer, url: str | None, d: Daemon) -> list[tuple]:
    """(state, owner) of every video row of this configuration's journal."""
    if url is None:
        return [(r["state"], r.get("owner")) for r in d.journal()]
    with server.connect(url.rsplit("/", 1)[1]) as conn:
        return conn.execute("SELECT state, owner FROM videos").fetchall()


def run_burst(work: Path, server: DurablePgServer, backend: str, n_replicas: int,
              clip: bytes, n_clips: int, settle: float, tag: str) -> dict:
    """Start the replicas, rename a burst of ``n_clips`` distinct clips in, wait for every
    commit, stop them; measures and the exactly-once check of one configuration."""
    root = work / tag
    shared = {name: root / name for name in ("in", "out", "quarantine", "done")}
    shared["in"].mkdir(parents=True)
    url = server.new_database() if backend == "postgresql" else None
    env = {PASSWORD_ENV: PASSWORD} if url else {}
    daemons = [Daemon(root / f"r{i}", input_dir=str(shared["in"]),
                      output_dir=str(shared["out"]), quarantine_dir=str(shared["quarantine"]),
                      done_dir=str(shared["done"]), journal_url=url, workers=1,
                      settle_seconds=settle, rescan_seconds=60.0)
               for i in range(n_replicas)]
    drops = root / "drops"  # beside the input: the renames stay on one file system
    drops.mkdir()
    contents = [variant(clip, f"{tag}-{i}") for i in range(n_clips)]
    names = [pseudonym_of(c) for c in contents]
    for i, data in enumerate(contents):
        (drops / f"c{i:04d}.avi").write_bytes(data)
    watcher = None
    try:
        for d in daemons:
            d.start(wait_ready=False, **env)
        for d in daemons:
            d.wait_event("watch.ready", timeout=120)
        watcher = CommitWatcher(shared["out"], POLL_SECONDS)
        cpu0 = [cpu_seconds(d.pid) for d in daemons]
        server0 = server.cpu_seconds() if url else None
        busy0, own0 = machine_busy_seconds(), time.process_time()
        dropped = []
        for i in range(n_clips):
            os.rename(drops / f"c{i:04d}.avi", shared["in"] / f"c{i:04d}.avi")
            dropped.append(time.monotonic())
        committed = watcher.wait_for(names, 120 + 10 * n_clips)
        cpu1 = [cpu_seconds(d.pid) for d in daemons]
        server1 = server.cpu_seconds() if url else None
        busy1, own1 = machine_busy_seconds(), time.process_time()
        load = [round(x, 2) for x in os.getloadavg()]
        watcher.stop()
        watcher = None
        # every replica logs its outcome of the last clips (a done, or a duplicate skip)
        wait_until(lambda: sum(len(exports(d)) for d in daemons) >= n_clips, 60, "done lines")
        time.sleep(1.0)
        codes = [d.stop() for d in daemons]
    finally:
        if watcher is not None:
            watcher.stop()
        for d in daemons:
            d.close()
    if codes != [0] * n_replicas:
        raise RuntimeError(f"{tag}: replicas exited {codes}")

    done = Counter(p for d in daemons for p in exports(d))
    rows = journal_rows(server, url, daemons[0])
    problems = []
    if set(done) != set(names) or set(done.values()) != {1}:
        problems.append(f"exports: {len(done)} distinct of {n_clips}, "
                        f"{sum(done.values()) - len(done)} twice or more")
    try:
        daemons[0].check_complete(set(names))
    except AssertionError as exc:
        problems.append(f"outputs: {exc}")
    if len(rows) != n_clips or {r[0] for r in rows} != {State.DONE.value} \
            or {r[1] for r in rows} != {None}:
        problems.append(f"journal: {Counter(r[0] for r in rows)}, "
                        f"{sum(r[1] is not None for r in rows)} claims left")
    latencies = [c - d for c, d in zip(committed, dropped)]
    ordered = sorted(committed)
    window = ordered[-1] - dropped[0]
    ours = sum(cpu1) - sum(cpu0) + (own1 - own0) + ((server1 or 0.0) - (server0 or 0.0))
    return {
        "journal": backend, "replicas": n_replicas, "tag": tag,
        "throughput_per_min": round((n_clips - 1) / (ordered[-1] - ordered[0]) * 60, 1),
        "throughput_end_to_end_per_min": round(n_clips / (ordered[-1] - dropped[0]) * 60, 1),
        "latency_s": [round(x, 3) for x in latencies],
        "replica_cpu_s_per_clip": round((sum(cpu1) - sum(cpu0)) / n_clips, 4),
        "server_cpu_s_per_clip": None if server0 is None or server1 is None
        else round((server1 - server0) / n_clips, 4),
        "split": [len(exports(d)) for d in daemons],
        "duplicate_skips": sum(1 for d in daemons for e in d.events("video.skipped")
                               if e.get("reason") == "duplicate"),
        "already_exported": sum(1 for d in daemons for e in d.events("video.done")
                                if e.get("reason") == "already_exported"),
        "others_cores": round(max(busy1 - busy0 - ours, 0.0) / window, 2),
        "load_after": load, "exactly_once": not problems, "problems": problems,
    }


def summarise(runs: list[dict]) -> dict:
    """One configuration over its rounds: medians of rates and CPU, latencies pooled."""
    latencies = [x for r in runs for x in r["latency_s"]]
    server = [r["server_cpu_s_per_clip"] for r in runs if r["server_cpu_s_per_clip"] is not None]
    return {
        "journal": runs[0]["journal"], "replicas": runs[0]["replicas"], "rounds": len(runs),
        "throughput_per_min": round(statistics.median(r["throughput_per_min"] for r in runs), 1),
        "throughput_runs": [r["throughput_per_min"] for r in runs],
        "throughput_end_to_end_per_min": round(statistics.median(
            r["throughput_end_to_end_per_min"] for r in runs), 1),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "latency_max_s": round(max(latencies), 3),
        "replica_cpu_s_per_clip": round(statistics.median(
            r["replica_cpu_s_per_clip"] for r in runs), 4),
        "server_cpu_s_per_clip": round(statistics.median(server), 4) if server else None,
        "splits": [r["split"] for r in runs],
        "duplicate_skips": sum(r["duplicate_skips"] for r in runs),
        "already_exported": sum(r["already_exported"] for r in runs),
        "exactly_once": all(r["exactly_once"] for r in runs),
        "others_cores": [r["others_cores"] for r in runs],
    }


# -- the journal alone -------------------------------------------------------------------------
def count_round_trips(journal: Journal) -> Counter[str]:
    """Count the transactions and statements ``journal`` runs from now on."""
    counts: Counter[str] = Counter()
    inner = journal._tx

    class CountingTx:
        def __init__(self, db: Any) -> None:
            self.db = db

        def execute(self, sql: str, params: Any = ()) -> Any:
            counts["statements"] += 1
            return self.db.execute(sql, params)

    @contextmanager
    def counted() -> Iterator[Any]:
        with inner() as db:
            counts["transactions"] += 1
            yield CountingTx(db)

    journal._tx = counted  # type: ignore[method-assign]
    return counts


def timed(calls: dict[str, list[float]], name: str, fn: Any, *args: Any) -> Any:
    t0 = time.perf_counter()
    value = fn(*args)
    calls.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
    return value


def clip_sequences(winner: Journal, loser: Journal | None, n: int, tag: str) -> dict:
    """``n`` clips through the calls a daemon makes: the winner's, then a losing replica's."""
    calls: dict[str, list[float]] = {}
    per_clip: dict[str, list[float]] = {"winner": [], "loser": []}
    counts = {"winner": count_round_trips(winner)}
    if loser is not None:
        counts["loser"] = count_round_trips(loser)
    for i in range(n):
        digest = hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()
        name = digest[:32]
        path = Path(f"/input/{tag}/clip{i:05d}.avi")
        stamp = FileStamp(size=1_000_000 + i, mtime_ns=1_700_000_000_000_000_000 + i, inode=i)
        t0 = time.perf_counter()
        if loser is not None:  # on its event, before anyone claimed it
            timed(calls, "loser.known_digest", loser.known_digest, path, stamp)
        timed(calls, "known_digest", winner.known_digest, path, stamp)
        timed(calls, "remember_file", winner.remember_file, path, stamp, digest)
        assert timed(calls, "claim", winner.claim, digest, name, path)
        t1 = time.perf_counter()
        if loser is not None:
            timed(calls, "loser.remember_file", loser.remember_file, path, stamp, digest)
            assert not timed(calls, "loser.claim", loser.claim, digest, name, path)
            timed(calls, "loser.state", loser.state, digest)
        t2 = time.perf_counter()
        timed(calls, "finish", winner.finish, digest, State.DONE, None, name, 10, 0.1, path)
        t3 = time.perf_counter()
        per_clip["winner"].append((t1 - t0 + t3 - t2) * 1000)
        if loser is not None:
            per_clip["loser"].append((t2 - t1) * 1000)
    out: dict[str, Any] = {"clips": n, "calls_ms_p50": {
        k: round(statistics.median(v), 3) for k, v in calls.items()}}
    for who, times in per_clip.items():
        if times:
            out[who] = {"ms_p50": round(statistics.median(times), 3),
                        "ms_p95": round(percentile(times, 95), 3),
                        "transactions": counts[who]["transactions"] / n,
                        "statements": counts[who]["statements"] / n}
    if "loser" in out:  # the loser's known_digest ran outside its timed span: add it
        extra = statistics.median(calls["loser.known_digest"])
        out["loser"]["ms_p50"] = round(out["loser"]["ms_p50"] + extra, 3)
    return out


def journal_costs(work: Path, server: DurablePgServer, n: int, rounds: int) -> dict:
    """Per-clip journal cost of each back-end, the back-ends alternating round by round.

    PostgreSQL runs twice per round on fresh databases: the exporting replica alone (its cost
    and the server's CPU for it), then with a losing replica beside it (the server's CPU for
    both, less the first: a loser's share).
    """
    password = work / "pg-password"
    found: dict[str, list[dict]] = {"sqlite": [], "postgresql": []}
    for r in range(rounds):
        for backend in ("sqlite", "postgresql")[:: 1 if r % 2 == 0 else -1]:
            tag = f"{backend}-{r}"
            if backend == "sqlite":  # one replica per SQLite journal: nobody loses a claim
                lite = SqliteJournal(work / "journal" / tag / JOURNAL_NAME, "wal", key=KEY)
                try:
                    found[backend].append(clip_sequences(lite, None, n, tag))
                finally:
                    lite.close()
                continue
            res: dict[str, Any] = {}
            for loses in (False, True):
                url = server.new_database()
                pair = [PostgresJournal(url, key=KEY, password_file=password)
                        for _ in range(1 + loses)]
                try:
                    cpu0 = server.cpu_seconds()
                    part = clip_sequences(pair[0], pair[1] if loses else None, n,
                                          f"{tag}-{int(loses)}")
                    cpu = (server.cpu_seconds() - cpu0) / n * 1000
                finally:
                    for j in pair:
                        j.close()
                if loses:
                    res["loser"] = part["loser"]
                    res["loser"]["server_cpu_ms"] = round(cpu - res["winner"]["server_cpu_ms"],
                                                          3)
                    res["calls_ms_p50"].update(
                        {k: v for k, v in part["calls_ms_p50"].items() if k.startswith("loser")})
                else:
                    res = part
                    res["winner"]["server_cpu_ms"] = round(cpu, 3)
            found[backend].append(res)
    return {backend: merge_rounds(results) for backend, results in found.items()}


def merge_rounds(results: list[dict]) -> dict:
    """Medians over the rounds of the per-round figures."""
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    out: dict[str, Any] = {"clips_per_round": results[0]["clips"], "rounds": len(results),
                           "calls_ms_p50": {k: med([r["calls_ms_p50"][k] for r in results])
                                            for k in results[0]["calls_ms_p50"]}}
    for who in ("winner", "loser"):
        if who in results[0]:
            out[who] = {k: med([r[who][k] for r in results]) for k in results[0][who]}
    return out


# -- report ------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def cpu_per_clip(s: dict) -> float:
    """CPU seconds per clip of a configuration: its replicas and the PostgreSQL server."""
    return float(s["replica_cpu_s_per_clip"] + (s["server_cpu_s_per_clip"] or 0.0))


def judge(summary: dict[str, dict], journal: dict) -> dict:
    sqlite1, pg1 = summary["sqlite-1"], summary["postgresql-1"]
    pg2, pg3 = summary["postgresql-2"], summary["postgresql-3"]
    ratio2 = pg2["throughput_per_min"] / pg1["throughput_per_min"]
    pg_vs_sqlite = pg1["throughput_per_min"] / sqlite1["throughput_per_min"]
    pg = journal["postgresql"]
    # the server's CPU per clip with R replicas: one exporting sequence and R - 1 losing ones
    ceilings = {str(r): round(1000 / (pg["winner"]["server_cpu_ms"]
                                      + (r - 1) * max(pg["loser"]["server_cpu_ms"], 0.0)), 1)
                for r in (1, 2, 4, 8, 16)}
    return {
        "exactly_once": all(s["exactly_once"] for s in summary.values()),
        "replicas2_ratio": round(ratio2, 3),
        "replicas2_ok": ratio2 >= TARGETS["replicas2_ratio"],
        "replicas2_ratio_per_round": [round(b / a, 3) for a, b in zip(
            pg1["throughput_runs"], pg2["throughput_runs"])],
        "replicas3_ratio": round(pg3["throughput_per_min"] / pg1["throughput_per_min"], 3),
        "postgresql_vs_sqlite": round(pg_vs_sqlite, 3),
        "postgresql_vs_sqlite_ok": pg_vs_sqlite >= TARGETS["postgresql_vs_sqlite"],
        "postgresql_vs_sqlite_per_round": [round(b / a, 3) for a, b in zip(
            sqlite1["throughput_runs"], pg1["throughput_runs"])],
        # from CPU per clip, which a neighbour disturbs far less than wall time (no targets)
        "postgresql_vs_sqlite_by_cpu": round(cpu_per_clip(sqlite1) / cpu_per_clip(pg1), 3),
        "replicas2_ceiling_on_2_idle_cores": round(2 * cpu_per_clip(pg1) / cpu_per_clip(pg2),
                                                   3),
        "wall_s_per_clip_postgresql_minus_sqlite": round(
            60 / pg1["throughput_per_min"] - 60 / sqlite1["throughput_per_min"], 4),
        "cpu_s_per_clip_postgresql_minus_sqlite": round(
            pg1["replica_cpu_s_per_clip"] + (pg1["server_cpu_s_per_clip"] or 0.0)
            - sqlite1["replica_cpu_s_per_clip"], 4),
        "journal_ms_per_clip": {"sqlite": journal["sqlite"]["winner"]["ms_p50"],
                                "postgresql": pg["winner"]["ms_p50"],
                                "postgresql_per_losing_replica": pg["loser"]["ms_p50"]},
        "journal_bound_clips_per_s_per_server_core": ceilings,
    }


def markdown(header: list[str], rows: list[list[str]]) -> None:
    """Print a Markdown table, columns padded to their widest cell (numbers to the right)."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if c[:1].isdigit() or c[:1] in "+-" else c.ljust(w)
                                 for c, w in zip(cells, widths)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def print_table(doc: dict) -> None:
    clip = doc["clip"]
    print()
    print(f"load average before {doc['load_before']}, after {doc['load_after']}; "
          f"{doc['cpus']} CPUs; clip {clip['size']} x {clip['frames']} frames "
          f"({clip['bytes'] / 1e3:.0f} kB); {doc['clips']} clips per burst, {doc['rounds']} "
          f"round(s); settle_seconds {doc['settle_seconds']}; PostgreSQL fsync "
          f"{'on' if doc['pg_fsync'] else 'off'}")
    rows = []
    for s in doc["summary"].values():
        server = s["server_cpu_s_per_clip"]
        rows.append([s["journal"], str(s["replicas"]), f"{s['throughput_per_min']:.1f}",
                     f"{s['throughput_end_to_end_per_min']:.1f}", f"{s['latency_p50_s']:.2f}",
                     f"{s['latency_p95_s']:.2f}", f"{s['latency_max_s']:.2f}",
                     f"{s['replica_cpu_s_per_clip'] * 1000:.1f}",
                     "-" if server is None else f"{server * 1000:.1f}",
                     " ".join("/".join(map(str, sp)) for sp in s["splits"]),
                     str(s["duplicate_skips"]), "yes" if s["exactly_once"] else "NO"])
    markdown(["journal", "replicas", "clips/min steady", "clips/min e2e", "latency p50 s",
              "p95 s", "max s", "replica CPU ms/clip", "server CPU ms/clip",
              "split per round", "dup skips", "once"], rows)
    print("steady: (N-1)/(last-first commit), median of the rounds; latency: rename returned "
          "-> OUT/<pseudonym> seen, in a burst (queueing included)")
    print("per round, steady clips/min (CPUs busy with other work meanwhile; the machine is "
          "shared):")
    for s in doc["summary"].values():
        print(f"  {s['journal']}-{s['replicas']}: " + ", ".join(
            f"{t:.0f} ({o:.1f})" for t, o in zip(s["throughput_runs"], s["others_cores"])))
    print()
    rows = []
    for backend, j in doc["journal"].items():
        for who, label in (("winner", "exporting replica"), ("loser", "each losing one")):
            if who in j:
                w = j[who]
                rows.append([backend, label, f"{w['ms_p50']:.3f}", f"{w['ms_p95']:.3f}",
                             f"{w['transactions']:.0f}", f"{w['statements']:.0f}",
                             f"{w['server_cpu_ms']:.3f}" if "server_cpu_ms" in w else "-"])
    markdown(["journal", "per clip, by", "ms p50", "ms p95", "transactions", "statements",
              "server CPU ms"], rows)
    for backend, j in doc["journal"].items():
        calls = ", ".join(f"{k} {v:.2f}" for k, v in j["calls_ms_p50"].items())
        print(f"{backend} per call, ms p50: {calls}")
    print("PostgreSQL round trips per transaction: its statements + BEGIN + COMMIT")
    v = doc["verdicts"]
    print()
    print(f"every clip exported exactly once, every configuration and round: "
          f"{verdict(v['exactly_once'])}")
    for r in doc["runs"]:
        if r["problems"]:
            print(f"  {r['tag']}: {'; '.join(r['problems'])}")
    print(f"2 replicas / 1 (PostgreSQL, steady): {v['replicas2_ratio']:.2f}x, target >= "
          f"{TARGETS['replicas2_ratio']}x: {verdict(v['replicas2_ok'])} (round by round: "
          f"{', '.join(f'{x:.2f}x' for x in v['replicas2_ratio_per_round'])})")
    print(f"3 replicas / 1: {v['replicas3_ratio']:.2f}x (2 cores: no further scaling expected; "
          "no target)")
    print(f"PostgreSQL / SQLite, one replica (steady): {v['postgresql_vs_sqlite']:.2f}x, target "
          f">= {TARGETS['postgresql_vs_sqlite']}x: {verdict(v['postgresql_vs_sqlite_ok'])} "
          f"(round by round: "
          f"{', '.join(f'{x:.2f}x' for x in v['postgresql_vs_sqlite_per_round'])})")
    print(f"from CPU per clip (replicas + server; a neighbour disturbs it less; no targets): "
          f"PostgreSQL / SQLite {v['postgresql_vs_sqlite_by_cpu']:.2f}x; 2 replicas on 2 idle "
          f"cores at most {v['replicas2_ceiling_on_2_idle_cores']:.2f}x of 1 (the losing "
          "replicas' journal calls, and the rare open and hash of a lost race, cost CPU)")
    print(f"journal overhead per clip, PostgreSQL - SQLite, one replica: wall "
          f"{v['wall_s_per_clip_postgresql_minus_sqlite'] * 1000:+.1f} ms, CPU (replica + "
          f"server) {v['cpu_s_per_clip_postgresql_minus_sqlite'] * 1000:+.1f} ms")
    print("journal-bound ceiling, clips/s per PostgreSQL server core (server CPU of one "
          "exporting + R-1 losing sequences per clip): "
          + ", ".join(f"R={r}: {c:.0f}" for r, c in
                      v["journal_bound_clips_per_s_per_server_core"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=60, help="clips per burst (60)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds over the configurations, order alternating (5)")
    parser.add_argument("--frames", type=int, default=10, help="frames per clip (10)")
    parser.add_argument("--size", default="400x240", help="clip size WxH (400x240)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="settle_seconds (2.0, the product default)")
    parser.add_argument("--journal-clips", type=int, default=300,
                        help="clips per round of the in-process journal measure (300)")
    parser.add_argument("--pg-fsync", action=argparse.BooleanOptionalAction, default=True,
                        help="PostgreSQL with fsync on, as in production (on; the tests: off)")
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run: 20 clips, 1 round, 100 journal clips (its ratios "
                             "are too noisy to judge)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "replicas.json")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.rounds, args.journal_clips = 20, 1, 100
    if bindir() is None:
        parser.error("no PostgreSQL server binaries (Debian's postgresql; make installs it)")
    w, h = (int(v) for v in args.size.lower().split("x"))

    work = args.workdir or Path(tempfile.mkdtemp(prefix="radiomicsd-bench-replicas-"))
    work.mkdir(parents=True, exist_ok=True)
    server = DurablePgServer(fsync=args.pg_fsync)
    try:
        server.start()
        (work / "pg-password").write_text(PASSWORD + "\n")
        load_before = [round(x, 2) for x in os.getloadavg()]
        clip_path = work / "clip" / "clip.avi"
        clip_path.parent.mkdir()
        write_clip(clip_path, args.frames, (w, h), seed=11)
        clip = clip_path.read_bytes()
        runs = []
        for r in range(args.rounds):
            for backend, n in (CONFIGS if r % 2 == 0 else CONFIGS[::-1]):
                tag = f"{backend}-{n}-round{r}"
                print(f"{tag}: {args.clips} clips ...", flush=True)
                runs.append(run_burst(work, server, backend, n, clip, args.clips,
                                      args.settle, tag))
        print("journal calls in-process ...", flush=True)
        journal = journal_costs(work, server, args.journal_clips, max(2, args.rounds))
        summary = {f"{b}-{n}": summarise([r for r in runs if (r["journal"], r["replicas"])
                                          == (b, n)]) for b, n in CONFIGS}
        doc: dict[str, Any] = {
            "cpus": os.cpu_count(), "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "postgresql": server.bin.parent.name,
            "pg_fsync": args.pg_fsync, "settle_seconds": args.settle,
            "lease_seconds": Settings.journal_lease_seconds, "workers_per_replica": 1,
            "clip": {"size": f"{w}x{h}", "frames": args.frames, "bytes": len(clip)},
            "clips": args.clips, "rounds": args.rounds, "targets": TARGETS,
            "summary": summary, "journal": journal, "runs": runs,
        }
        doc["verdicts"] = judge(summary, journal)
        print_table(doc)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    finally:
        server.close()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    v = doc["verdicts"]
    return 0 if v["exactly_once"] and v["replicas2_ok"] and v["postgresql_vs_sqlite_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
