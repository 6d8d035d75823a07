"""A throw-away PostgreSQL cluster for the suite, and the fixtures that run a test on both back ends.

`postgres_cluster` (session): Debian's initdb in a temporary directory, started with pg_ctl on a
unix socket in that directory (no TCP at all), as the `postgres` user when the suite runs as
root (PostgreSQL refuses to run as root), stopped in a `finally` (fast, then immediate) and
removed. Nothing is started unless a test asks for it, so `-m "not postgres"` starts nothing.

`pg_url`: a fresh database of that cluster for one test, dropped after it. `db_url`: a test
that takes it runs twice, once on a SQLite file and once on a fresh PostgreSQL database; the
second is marked `postgres`.

PostgreSQL missing is a failure that says what installs it, never a silent skip: a suite that
skips its PostgreSQL half looks green and proves half of what it claims.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL = "`make test` installs it (Debian package postgresql, in the Makefile's APT_PACKAGES)"
PORT = 5432  # names the socket file only: the socket lives in the cluster's own directory, TCP is off
SERVER_OPTIONS = ("-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=200 -c shared_buffers=32MB")


def bindir() -> Path:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=30)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0)
    candidates += [Path(p) for p in reversed(versions)]
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    pytest.fail(f"PostgreSQL's initdb and pg_ctl were not found (pg_config --bindir, /usr/lib/postgresql/*/bin): "
                f"{INSTALL}", pytrace=False)


@dataclass
class Cluster:
    bin: Path
    root: Path  # data/, the socket and the log
    as_user: list[str]  # `runuser -u postgres --` when the suite runs as root

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={PORT}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), port=PORT, user="postgres", dbname=database,
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def create_database(self) -> str:
        name = f"vq_{uuid.uuid4().hex[:12]}"
        self.sql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def start(self) -> None:
        started = self.run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.root / "data"), "-l",
                           str(self.root / "server.log"), "-o", f"{SERVER_OPTIONS} -k {self.socket_dir} -p {PORT}")
        if started.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise AssertionError(f"pg_ctl start failed: {started.stderr or started.stdout}\n{log[-2000:]}")

    def stop(self) -> None:
        data = str(self.root / "data")
        for mode in ("fast", "immediate"):
            try:
                if self.run("pg_ctl", "stop", "-w", "-t", "30", "-m", mode, "-D", data, timeout=60).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            if not (self.root / "data" / "postmaster.pid").exists():
                return


def _make(root: Path) -> Cluster:
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            postgres = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(f"the suite runs as root and PostgreSQL refuses root, but there is no user postgres: "
                        f"{INSTALL}", pytrace=False)
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(bindir(), root, as_user)
    made = cluster.run("initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                       "--locale=C", "--no-sync")
    if made.returncode != 0:
        raise AssertionError(f"initdb failed: {made.stderr or made.stdout}")
    (root / "run").mkdir()
    if as_user:
        shutil.chown(root / "run", "postgres", "postgres")
    return cluster


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="vq-pg-"))
    cluster: Cluster | None = None
    try:
        cluster = _make(root)
        cluster.start()
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_cluster: Cluster) -> Iterator[str]:
    """A new, empty database for one test; dropped afterwards, whatever connections it left."""
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)


BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test once on a SQLite file (in a directory the store must create) and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'lib' / 'vmqos.db'}"
    return str(request.getfixturevalue("pg_url"))
