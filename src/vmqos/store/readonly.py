"""Opening the database for the commands that only read it (check, port show, events, top, ...).

Opening for writing writes even when nothing changes: it makes the parent directory, sets the
journal mode to WAL (a write to the file's header), creates missing tables. An operator who may
read the database but not write it (a non-root user, a read-only mount) must still be able to
look, so opening here writes nothing, ever:

- SQLite is opened with `mode=ro` and only the pragmas that change the connection, not the file;
  `query_only` refuses a write by mistake.
- A WAL database is read through its `-shm` index, which exists while any connection has it open.
  When none has and this user may not create the index in the directory, SQLite cannot read it
  with `mode=ro` (3.22's read-only WAL needs the index to exist). If there is no `-wal` file either,
  every committed change is in the main file, and it is read as `immutable` (no index, no locks)
  -- each transaction on a fresh connection that checks again, and a transaction during which
  the main file changed (a writer came and checkpointed) fails instead of returning a torn read.
- A file that does not exist reads as an empty database: nothing was stored yet, which is what
  opening for writing would have shown (after creating it). So does one that holds no table yet:
  a writer (an agent's first start) has created the file and is making its schema, in one
  transaction this reader must not read half of.
- PostgreSQL: every transaction is read-only (`default_transaction_read_only`), which the server
  enforces; the schema is not migrated (the writers' business) but one stamped by a newer vmqos
  is refused, as opening for writing refuses it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from vmqos.core.errors import VmqosError
from vmqos.store import monitor_tables as _monitor_tables  # noqa: F401  (its tables, for the empty database)
from vmqos.store import schema as t
from vmqos.store.engine import _FIX, BUSY_TIMEOUT_MS, create, parse_url, reason
from vmqos.store.migrations import upgrade


def open_read_only(url: str) -> tuple[Engine, str]:
    """An engine that never writes to the database, or a VmqosError that says how to name another one."""
    parsed, shown = parse_url(url)
    database = parsed.database or ""
    try:
        if parsed.get_backend_name() != "sqlite":
            postgres = parsed.get_backend_name() == "postgresql"
            engine = create(parsed, **({"connect_args": {"options": "-c default_transaction_read_only=on"}}
                                       if postgres else {}))
            return _checked(engine, shown) or _empty(), shown
        if database in ("", ":memory:") or database.startswith("file:") or not Path(database).exists():
            return _empty(), shown
        path = os.path.abspath(database)
        if not os.access(path, os.R_OK):
            raise VmqosError(f"cannot open the database {shown}: this user may not read {path}; run the command "
                             f"as root or {_FIX}")
        engine = create_engine("sqlite://", creator=lambda: _connect(path, shown), poolclass=NullPool, future=True)
        _guard(engine, path, shown)
        return _checked(engine, shown) or _empty(), shown
    except ImportError as exc:
        raise VmqosError(f"cannot open the database {shown}: its driver is missing ({exc}); install it or "
                         f"{_FIX}") from None
    except SQLAlchemyError as exc:
        raise VmqosError(f"cannot open the database {shown}: {reason(exc)}; {_FIX}") from None


def _checked(engine: Engine, shown: str) -> Engine | None:
    """The engine, unless a newer vmqos stamped the database (SchemaTooNew); one behind reads as it is.
    None (the engine disposed) when the database has no table at all yet; one with other tables (not
    vmqos's) is read as it is, and says which table it lacks."""
    try:
        with engine.connect() as conn:
            upgrade.is_current(conn, shown)
            blank = not inspect(conn).get_table_names()
    except BaseException:
        engine.dispose()
        raise
    if blank:
        engine.dispose()
        return None
    return engine


def _empty() -> Engine:
    """No database yet: an empty one in memory, with the tables, which nothing writes to."""
    engine = create_engine("sqlite://", future=True)
    with engine.begin() as conn:
        t.metadata.create_all(conn)
    return engine


# id of an immutable connection -> the main file's (inode, size, mtime) when it was opened
_STAMPS: dict[int, tuple[int, int, int]] = {}


def _connect(path: str, shown: str) -> sqlite3.Connection:
    """A read-only connection: through the WAL index when it can be used, else of an immutable file."""
    conn = _open(f"file:{quote(path)}?mode=ro")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the index (-shm), if WAL
        return conn
    except sqlite3.DatabaseError:
        conn.close()
    if os.path.exists(path + "-wal"):
        raise VmqosError(f"cannot read the database {shown} without writing: its last changes are in "
                         f"{path}-wal, which only a process that may write {os.path.dirname(path)} can read; "
                         "run the command as root (any vmqos command as root folds them in)")
    stamp = _stat(path)
    conn = _open(f"file:{quote(path)}?immutable=1")
    _STAMPS[id(conn)] = stamp
    return conn


def _open(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")
    return conn


def _stat(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _guard(engine: Engine, path: str, shown: str) -> None:
    """Reads are snapshots (BEGIN issued by us); an immutable read fails if the file changed under it."""

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        stamp = _STAMPS.get(id(conn.connection.dbapi_connection))
        if stamp is not None and _stat(path) != stamp:  # a writer checkpointed into the file meanwhile
            raise VmqosError(f"the database {shown} was changed by a writer while it was read without a lock "
                             "(this user may not write its directory); run the command again")

    @event.listens_for(engine, "close")
    def _close(dbapi_connection: Any, record: Any) -> None:
        _STAMPS.pop(id(dbapi_connection), None)
