"""What each back end must do alike, checked on SQLite and on PostgreSQL (`db_url`), and what only
PostgreSQL has: its advisory writer lock (seen in pg_locks, gone with a killed holder), a server
that goes away (DatabaseGone, one line) and comes back (the pool replaces its dead connections).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pgcluster import Cluster, _make

from vmqos.core.errors import ConflictError, VmqosError
from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.store import Store
from vmqos.store import monitor as mstore
from vmqos.store import qos, writer
from vmqos.store.health import DatabaseGone

STATE = HostState(instances={"vm": InstanceSpec("vm", ports=(PortSpec("tap0"),))})


def _policy(pid: str, **changes: object) -> qos.StoredPolicy:
    now = datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)
    values: dict[str, object] = dict(id=pid, project_id="p", name=pid, description="", shared=False, is_default=False,
                                     revision_number=1, tags=(), created_at=now, updated_at=now,
                                     rules=(qos.StoredRule(f"{pid}-r", pid, "bandwidth_limit", {"max_kbps": 3000}),))
    values.update(changes)
    return qos.StoredPolicy(**values)  # type: ignore[arg-type]


def test_times_come_back_as_the_same_instant_in_utc(db_url: str) -> None:
    at = datetime(2026, 12, 1, 10, 30, 15, 250000, tzinfo=timezone(timedelta(hours=2)))
    with Store(db_url) as store:
        mstore.add_event(store, "", at, "tap0", "detected", "flood")
        [event] = mstore.events(store, "")
        assert event.at == at and event.at.tzinfo == UTC and event.at.hour == 8
        assert store.revisions("") == []  # an event is no change of the desired state
        store.save("", STATE)
        [revision] = store.revisions("")
        assert revision.at.tzinfo == UTC and abs(revision.at - datetime.now(UTC)) < timedelta(minutes=1)


def test_revision_ids_only_grow_even_after_the_last_is_deleted(db_url: str) -> None:
    with Store(db_url) as store:
        first = store.save("", STATE)
        second = store.save("", STATE)
        with store._tx("test", write="") as conn:
            conn.exec_driver_sql(f"DELETE FROM revisions WHERE id = {second}")
        assert store.save("", STATE) > second > first


def test_json_text_keeps_every_character(db_url: str) -> None:
    tags = ("débit", "上限", "emoji ✓", 'quote " and \\ backslash')
    with Store(db_url) as store:
        qos.save_policy(store, _policy("p1", tags=tags, description="ünïcode"))
        [found] = qos.list_policies(store)
    assert found.tags == tags and found.description == "ünïcode" and found.rules[0].values == {"max_kbps": 3000}
    assert found.created_at == _policy("p1").created_at


def test_deleting_a_policy_row_deletes_its_rules(db_url: str) -> None:
    """ON DELETE CASCADE: SQLite enforces it only with foreign_keys on, which every connection sets."""
    with Store(db_url) as store:
        qos.save_policy(store, _policy("p1"))
        qos.save_policy(store, _policy("p2"))
        with store._tx("test", write="qos") as conn:
            conn.exec_driver_sql("DELETE FROM qos_policies WHERE id = 'p1'")
            assert conn.exec_driver_sql("SELECT id FROM qos_rules").scalars().all() == ["p2-r"]


def test_a_read_only_store_reads_and_cannot_write(db_url: str) -> None:
    with Store(db_url) as store:
        store.save("", STATE)
    with Store(db_url, read_only=True) as reader:
        assert reader.load("") == STATE and len(reader.revisions("")) == 1
        with pytest.raises(VmqosError) as caught:
            reader.save("", HostState())
        assert "\n" not in str(caught.value)
    with Store(db_url) as store:
        assert store.load("") == STATE


# ------------------------------------------------------------------------------------ SQLite only

_READ = ("import sqlite3, sys\n"
         "db = sqlite3.connect(sys.argv[1])\n"
         "print(','.join(r[0] for r in db.execute('SELECT summary FROM revisions ORDER BY id')))\n"
         "db.close()\n")


def test_a_writers_commits_survive_another_process_opening_and_closing_its_file(tmp_path: Path) -> None:
    """The file checks of every write (store.health) open nothing: closing a descriptor of the database,
    its -wal or its -shm would drop this process's SQLite locks, and the next process to close the
    database would take itself for the last, delete the -wal under this one, and its commits be lost."""
    path = tmp_path / "vmqos.db"
    with Store(f"sqlite:///{path}") as store:
        store.save("", STATE, summary="one")
        store.check_file()
        other = subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, timeout=60)
        assert other.stdout.strip() == "one", other.stderr
        assert Path(f"{path}-wal").exists(), "another process deleted the WAL of a database this one has open"
        store.save("", STATE, summary="two")
        fresh = subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, timeout=60)
        assert fresh.stdout.strip() == "one,two", fresh.stderr


# ------------------------------------------------------------------------------- PostgreSQL only


def _advisory_locks(store: Store) -> int:
    with store._tx("test") as conn:
        return int(conn.exec_driver_sql(
            f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = {writer._ADVISORY_CLASS} "
            "AND granted").scalar_one())


def _hold(url: str, ready: object) -> None:
    with Store(url) as store, store.writer("x"):
        ready.set()  # type: ignore[attr-defined]
        time.sleep(60)


@pytest.mark.postgres
def test_the_writer_lock_is_an_advisory_lock_released_when_its_holder_is_killed(pg_url: str) -> None:
    with Store(pg_url) as store:
        with store.writer("x"):
            assert _advisory_locks(store) == 1
        assert _advisory_locks(store) == 0
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Event()
        holder = ctx.Process(target=_hold, args=(pg_url, ready))
        holder.start()
        try:
            assert ready.wait(30)
            store._writers.wait_s = 0.3
            with pytest.raises(ConflictError, match="another vmqos has been changing it"):
                with store.writer("x"):
                    pass
            os.kill(holder.pid or 0, signal.SIGKILL)
            holder.join(10)
            store._writers.wait_s = 10.0  # the server notices the dead session and drops its lock
            with store.writer("x"):
                assert _advisory_locks(store) == 1
        finally:
            if holder.is_alive():
                holder.kill()
                holder.join(10)


@pytest.mark.postgres
def test_a_role_that_only_owns_its_database_is_enough(postgres_cluster: Cluster) -> None:
    """The README's set-up: createuser (no superuser) and createdb --owner; vmqos makes its tables."""
    role = f"vq_owner_{os.getpid()}"
    postgres_cluster.sql(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    name = postgres_cluster.create_database()
    try:
        postgres_cluster.sql(f'ALTER DATABASE "{name}" OWNER TO "{role}"')
        url = postgres_cluster.url(name).replace("//postgres@", f"//{role}@")
        with Store(url) as store, store.writer("x"):
            store.save("", STATE)
        with Store(url, read_only=True) as store:
            assert store.load("") == STATE
    finally:
        postgres_cluster.drop_database(name)
        postgres_cluster.sql(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.postgres
def test_a_database_with_no_table_yet_reads_as_empty_read_only(postgres_cluster: Cluster) -> None:
    """As a SQLite file whose schema a writer is making: a reader before the first writer's migration
    (a `port show` at a server's first start) sees nothing stored, not 'relation does not exist'."""
    name = postgres_cluster.create_database()
    try:
        with Store(postgres_cluster.url(name), read_only=True) as store:
            assert store.load("").instances == {} and store.scopes() == []
        with Store(postgres_cluster.url(name)) as writer:
            writer.save("", STATE)
        with Store(postgres_cluster.url(name), read_only=True) as store:
            assert store.load("") == STATE
    finally:
        postgres_cluster.drop_database(name)


@pytest.mark.postgres
def test_a_dropped_database_is_database_gone(postgres_cluster: Cluster) -> None:
    name = postgres_cluster.create_database()
    try:
        with Store(postgres_cluster.url(name)) as store:
            store.check_file()
            postgres_cluster.drop_database(name)
            with pytest.raises(DatabaseGone) as caught:
                store.check_file()
            assert "\n" not in str(caught.value) and "went away" in str(caught.value)
    finally:
        postgres_cluster.drop_database(name)


@pytest.mark.postgres
def test_a_server_that_goes_away_is_database_gone_and_one_that_comes_back_is_used_again() -> None:
    root = Path(tempfile.mkdtemp(prefix="vq-pg-gone-"))
    cluster: Cluster | None = None
    try:
        cluster = _make(root)
        cluster.start()
        name = cluster.create_database()
        with Store(cluster.url(name)) as store:
            store.save("", STATE)
            store.check_file()
            cluster.stop()
            with pytest.raises(DatabaseGone) as caught:
                store.check_file()
            assert "\n" not in str(caught.value) and "start its server again" in str(caught.value)
            with pytest.raises(VmqosError):
                store.load("")
            cluster.start()
            store.check_file()  # the pool's pre-ping replaced the connections the restart closed
            assert store.load("") == STATE
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
