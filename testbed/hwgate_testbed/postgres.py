"""A private PostgreSQL server for tests: its own cluster in a directory, Unix socket only.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/N/
bin``: 15 on Debian 12, 17 on Debian 13); nothing of the system's own clusters
is used. :func:`start` runs ``initdb`` in DIR/data and ``postgres`` with
``listen_addresses = ''`` (no TCP at all) and its socket in DIR, a 0700
directory: only this user reaches it, so the cluster trusts local connections.
Durability is switched off (``fsync``, ``synchronous_commit``): a test cluster
is thrown away, and the machine is shared.

PostgreSQL refuses to run as root. As root the server runs in a user namespace
(``unshare --user --map-user=1000``) that maps root to an ordinary uid inside:
postgres sees itself as uid 1000 and starts, while the kernel still checks its
file access as root's, the owner of DIR. So the cluster can live under a
pytest tmp_path (0700, root's) without loosening any directory, and no system
user is needed. As another user, postgres simply runs as that user.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "hwgate"
PORT = 5432  # only names the socket file (.s.PGSQL.5432): there is no TCP listener
START_TIMEOUT = 60.0  # seconds; initdb alone took 7 s on a loaded machine
STOP_TIMEOUT = 30.0
_AS_USER = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]


class PostgresError(Exception):
    """The server could not be set up or started; the message says why."""


def bindir() -> Path:
    """The newest installed server's bin directory (``postgresql`` Debian package)."""
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresError(
            f"no PostgreSQL server under {PG_ROOT}: install Debian's postgresql (make system-deps)"
        )
    return found[-1]


def _prefix() -> list[str]:
    return _AS_USER if os.geteuid() == 0 else []


@dataclass
class Postgres:
    """A running private server; :meth:`url` names one of its databases."""

    directory: Path
    process: subprocess.Popen[bytes]
    bindir: Path

    @property
    def socket_dir(self) -> Path:
        return self.directory

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str, schema: str | None = None) -> str:
        """A libpq URI for *database* over the Unix socket (no password: trust, 0700 dir);
        with *schema*, every connection works in that schema (its search_path)."""
        url = f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={PORT}"
        return f"{url}&options=-csearch_path%3D{schema}" if schema else url

    def create_database(self, name: str) -> str:
        """Create database *name* (letters, digits, _); its URL."""
        self.psql("postgres", f"CREATE DATABASE {_plain(name)}")
        return self.url(name)

    def create_schema(self, database: str, name: str) -> str:
        """Create schema *name* in *database*: a fresh, empty namespace in milliseconds
        (a new database takes about a second); the URL that works in it."""
        self.psql(database, f"CREATE SCHEMA {_plain(name)}")
        return self.url(database, name)

    def psql(self, database: str, sql: str) -> str:
        """Run *sql* with psql; its output (unaligned, tuples only)."""
        done = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.socket_dir), "-p", str(PORT), "-U", SUPERUSER, "-d", database,
             "-c", sql],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(f"psql: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions end, nothing waits for clients); kill if stuck."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _plain(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain SQL name: {name!r}")
    return name


def _initdb(bindir: Path, data: Path, log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            [*_prefix(), str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
             "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            stdout=out, stderr=subprocess.STDOUT, timeout=START_TIMEOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise PostgresError(f"initdb failed ({done.returncode}); see {log}")


def start(directory: Path) -> Postgres:
    """initdb in *directory*/data and start the server; returns once it accepts connections."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    bins = bindir()
    log = directory / "postgres.log"
    _initdb(bins, directory / "data", log)
    settings = {
        "listen_addresses": "",
        "unix_socket_directories": str(directory),
        "unix_socket_permissions": "0700",
        "port": str(PORT),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
    }
    argv = [*_prefix(), str(bins / "postgres"), "-D", str(directory / "data")]
    for name, value in settings.items():
        argv += ["-c", f"{name}={value}"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Postgres(directory, proc, bins)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Postgres) -> None:
    """Until pg_isready answers (or the server exits, or the deadline passes)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PostgresError(f"postgres exited ({server.process.returncode}); see {server.log}")
        ready = subprocess.run(
            [str(server.bindir / "pg_isready"), "-q", "-h", str(server.socket_dir),
             "-p", str(PORT), "-t", "2"],
            check=False, timeout=10,
        )  # fmt: skip
        if ready.returncode == 0:
            return
        # pg_isready -t waits for the socket itself when it exists; this only spaces
        # out the probes while the socket file does not exist yet.
        time.sleep(0.05)
    raise PostgresError(f"postgres did not accept connections in {START_TIMEOUT:.0f}s")


@contextlib.contextmanager
def running(directory: Path) -> Iterator[Postgres]:
    """A server for the life of the ``with`` block; its directory is removed after."""
    server = start(directory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory / "data", ignore_errors=True)
