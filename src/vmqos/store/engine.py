"""Opening the database: which one (default URL, $VMQOS_DB), its tables, and SQLite tuned for sharing.

A CLI and a daemon share one database: SQLite runs in WAL mode with a busy timeout so that
readers never wait for a writer and writers wait for each other instead of failing. Every way
opening can fail becomes one VmqosError that says how to name another database.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.store import monitor_tables as _monitor_tables  # noqa: F401  (its tables, created with the rest)
from vmqos.store import schema as t
from vmqos.store.writer import opening

ENV = "VMQOS_DB"
DEFAULT_URL = "sqlite:////var/lib/vmqos/vmqos.db"
BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another one before giving up
_FIX = f"pass --db URL (or set {ENV}) to use another database"


def default_url() -> str:
    """The database to use when none is named: $VMQOS_DB, else the host's own SQLite file."""
    return os.environ.get(ENV) or DEFAULT_URL



def parse_url(url: str) -> tuple[URL, str]:
    """The URL, and how to show it (without its password), or a VmqosError naming the fix."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise VmqosError(f"{url!r} is not a database URL (e.g. {DEFAULT_URL} or postgresql://host/vmqos); "
                         f"{_FIX}") from None
    return parsed, parsed.render_as_string(hide_password=True)


def open_engine(url: str) -> tuple[Engine, str]:
    """An engine with the tables created, or a VmqosError that says how to name another database."""
    parsed, shown = parse_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        _make_parent(parsed, shown)
    try:
        engine = create_engine(parsed, future=True)
    except ImportError as exc:
        raise VmqosError(f"cannot open the database {shown}: its driver is missing ({exc}); install it or "
                         f"{_FIX}") from None
    except SQLAlchemyError as exc:
        raise VmqosError(f"cannot open the database {shown}: {reason(exc)}; {_FIX}") from None
    database = parsed.database or ""
    local = sqlite and database not in ("", ":memory:") and not database.startswith("file:")
    if sqlite:
        _tune_sqlite(engine)
    try:
        with opening(database) if local else nullcontext(), engine.begin() as conn:
            t.metadata.create_all(conn)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise VmqosError(f"cannot open the database {shown}: {reason(exc)}; {_FIX}") from None
    return engine, shown


def sqlite_file(url: str) -> str | None:
    """The path of the SQLite file `url` names; None for another database or one in memory."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def _make_parent(url: URL, shown: str) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    parent = Path(database).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        hint = "run as root or " if isinstance(exc, PermissionError) else ""
        raise VmqosError(f"cannot open the database {shown}: cannot create the directory {parent} "
                         f"({exc.strerror or exc}); {hint}{_FIX}") from None


def _tune_sqlite(engine: Engine) -> None:
    """WAL and a busy timeout for sharing the file; BEGIN issued by us so that reads are snapshots."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver would only BEGIN before writes
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable across crashes of vmqos, enough in WAL
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the lock up front: it waits (busy timeout) rather than failing on upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("vmqos_write") else "BEGIN")


def reason(exc: SQLAlchemyError) -> str:
    message = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
    return (message.strip().splitlines() or [type(exc).__name__])[0]


def check_scope(scope: str) -> None:
    if not isinstance(scope, str) or "/" in scope or "\0" in scope or scope in (".", ".."):
        raise InvalidValue("scope", scope, "a scope is '' (the host's own namespace) or a network namespace name")

