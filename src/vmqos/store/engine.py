"""Opening the database: which one (default URL, $VMQOS_DB), its schema, and SQLite tuned for sharing.

A CLI and a daemon share one database: SQLite runs in WAL mode with a busy timeout so that
readers never wait for a writer and writers wait for each other instead of failing. PostgreSQL
is reached through psycopg 3 (`postgresql://` means `postgresql+psycopg://`). Opening brings the
schema to the newest revision (`migrations.upgrade`), under a lock that makes two processes
opening a new database take turns: the `opening` flock beside a SQLite file, an advisory lock on
PostgreSQL. Every way opening can fail becomes one VmqosError that says how to name another database.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.store.migrations import upgrade
from vmqos.store.writer import opening

ENV = "VMQOS_DB"
DEFAULT_URL = "sqlite:////var/lib/vmqos/vmqos.db"
BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another one before giving up
CONNECT_TIMEOUT_S = 10  # PostgreSQL: a server that does not answer is an error, not a hang (libpq waits forever)
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
    if parsed.drivername == "postgresql":  # SQLAlchemy's default would be psycopg2, which vmqos does not ship
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed, parsed.render_as_string(hide_password=True)


def create(parsed: URL, **options: Any) -> Engine:
    """The engine for a parsed URL: on PostgreSQL, connections checked before use (a restarted server
    leaves dead ones in the pool) and a connect timeout unless the URL sets one."""
    if parsed.get_backend_name() == "postgresql":
        options.setdefault("pool_pre_ping", True)
        args = options.setdefault("connect_args", {})
        if "connect_timeout" not in parsed.query:
            args.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    return create_engine(parsed, future=True, **options)


def open_engine(url: str) -> tuple[Engine, str]:
    """An engine on a database at the newest schema, or a VmqosError that says how to name another one."""
    parsed, shown = parse_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        _make_parent(parsed, shown)
    try:
        engine = create(parsed)
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
        with opening(database) if local else nullcontext():  # PostgreSQL: _migrate locks in the database
            _migrate(engine, shown)
    except VmqosError:
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        raise VmqosError(f"cannot open the database {shown}: {reason(exc)}; {_FIX}") from None
    return engine, shown


def _migrate(engine: Engine, shown: str) -> None:
    """Bring the schema to head. SQLite: the caller holds the `opening` flock, and the transaction
    takes the write lock up front. PostgreSQL: a database at head is not locked at all (one query);
    one behind is migrated under a transaction-scoped advisory lock, and checked again under it."""
    with engine.connect() as conn:
        if upgrade.is_current(conn, shown):
            return
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw = conn.connection.dbapi_connection
        if sqlite:  # outside a transaction, or SQLite ignores it: see _foreign_keys_after
            raw.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
        try:
            conn.execution_options(vmqos_write=True)
            with conn.begin():
                if not sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), dict(zip("ab", upgrade.ADVISORY_KEY)))
                upgrade.upgrade(conn, shown)
                if sqlite:
                    _foreign_keys_after(conn, shown)
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]


def _foreign_keys_after(conn: Connection, shown: str) -> None:
    """A revision that changes a column on SQLite copies its table, drops the old one and renames the
    copy (Alembic's batch mode): with foreign keys on, the drop would delete or refuse the rows that
    reference it. They are off during the migration and checked before it commits instead."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
    if broken is not None:
        raise VmqosError(f"cannot open the database {shown}: upgrading its schema would leave a row of table "
                         f"{broken[0]} referring to a missing row of {broken[2]}; nothing was changed; report it "
                         "as a bug of the revision, and use the previous vmqos meanwhile")


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

