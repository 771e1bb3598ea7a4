"""A real PostgreSQL server for the tests: Debian's binaries, ``initdb`` into a temporary folder
owned by a non-root user, listening on a free loopback port, password authentication (SCRAM).

Used by ``tests/test_journal_pg.py``, ``tests/test_replicas.py`` and ``bench/replicas.py``.
``make`` installs Debian's ``postgresql``; without it the tests skip, except in CI where they
fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "radiomicsd"
#: The tests' server password (never a real one); given to daemons by file or environment.
PASSWORD = "test-only-journal-password"
#: Who runs the server when the tests run as root (PostgreSQL refuses to run as root).
RUN_AS = "nobody"


def bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian's layout), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One server: :meth:`start`, :meth:`stop` (``immediate``: as a crash), :meth:`restart`,
    :meth:`new_database` for a clean database per test."""

    def __init__(self, *, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: (key, certificate) the server presents (ssl=on)."""
        found = bindir()
        if found is None:
            raise FileNotFoundError("PostgreSQL server binaries (Debian's postgresql)")
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix="radiomicsd-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = pwd.getpwnam(RUN_AS) if os.getuid() == 0 else None
        self._n = 0
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions")
        pwfile.unlink()
        self.tls = ""
        if tls is not None:  # the server reads its key as its own user, mode 0600
            for src, dst in zip(tls, ("server.key", "server.crt")):
                shutil.copy(src, self.data / dst)
                (self.data / dst).chmod(0o600)
                if self.user is not None:
                    os.chown(self.data / dst, self.user.pw_uid, self.user.pw_gid)
            self.tls = " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / tool), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120,
                              cwd=self.root)

    @property
    def url(self) -> str:
        return self.db_url("postgres")

    def db_url(self, db: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{db}"

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def start(self) -> None:
        """Start the server (nothing when it runs)."""
        if self.running():
            return
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                "-c fsync=off -c max_connections=200" + self.tls)
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", opts, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop as a crash would (``immediate``), stay down ``down_seconds``, start again."""
        self.stop("immediate")
        time.sleep(down_seconds)
        self.start()

    def connect(self, db: str = "postgres"):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(self.db_url(db), password=PASSWORD, autocommit=True)

    def new_database(self) -> str:
        """A fresh database; returns its URL (no password in it)."""
        self._n += 1
        name = f"journal_{os.getpid()}_{self._n}"
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.db_url(name)

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_server():  # type: ignore[no-untyped-def]
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
