"""Bringing a database to the newest schema when a Store opens it: Alembic, run from code.

Every database goes through the revisions in `versions/`, SQLite and PostgreSQL alike; no
alembic.ini is read. Opening an up-to-date database costs a query or two (is there a version
table, and its row) and does not even import Alembic (a tenth of a second of every command's
start); the rest runs only when it is behind, in ONE transaction that the caller began and holds its
openers' lock around (`engine.open_engine`): a crash halfway leaves the database as it was.

A database made before migrations existed has no `alembic_version`: the first wave's (and
main's until now, where create_all made whatever tables the program had imported). It is
recognised by its tables, stamped at the revision it matches, then upgraded; its rows are kept.
A database stamped by a newer vmqos than this one is refused: this vmqos does not know what
its tables mean.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from vmqos.core.errors import VmqosError
from vmqos.store.migrations.versions import HEAD

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
# "vmm": the PostgreSQL advisory lock an opener holds while it migrates; the writers take "vmw"
# (store.writer) and "vmq" (each write transaction), so an opener never waits for a writer's lock.
ADVISORY_KEY = (0x766D6D, 0)


class SchemaTooNew(VmqosError):
    """The database was brought to a revision this vmqos does not have: a newer vmqos wrote it."""


@functools.cache
def scripts() -> ScriptDirectory:
    """The revisions shipped in this package (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(HERE))


@functools.cache
def known() -> frozenset[str]:
    return frozenset(script.revision for script in scripts().walk_revisions())


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without a file: the scripts here, and the connection env.py runs on."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def current(conn: Connection) -> str | None:
    """The revision the database is at; None when it has no version table (new, or made before migrations)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(versions) > 1:  # branches: vmqos never makes them
        raise VmqosError(f"the database has several schema revisions at once ({', '.join(sorted(versions))}); "
                         "vmqos keeps one line of revisions: restore the database from a backup")
    return versions[0] if versions else None


def is_current(conn: Connection, shown: str) -> bool:
    """Whether the database is at the head revision; SchemaTooNew if it is at one this vmqos lacks."""
    version = current(conn)
    if version == HEAD:
        return True
    if version is not None and version not in known():
        raise SchemaTooNew(f"the database {shown} has schema revision {version!r}, which this vmqos does not know "
                           f"(it knows up to {HEAD!r}): a newer vmqos wrote it; upgrade vmqos")
    return False


def legacy_revision(conn: Connection, shown: str) -> str | None:
    """The revision a database without a version table matches; None for one without vmqos's tables."""
    from vmqos.store.migrations.versions import v0001_first_wave as first_wave
    from vmqos.store.migrations.versions import v0002_server_first_slice as server_first_slice

    tables = set(inspect(conn).get_table_names())
    have = tables & set(first_wave.TABLES)
    if not have:
        return None
    if have != set(first_wave.TABLES):
        missing = ", ".join(sorted(set(first_wave.TABLES) - have))
        raise VmqosError(f"the database {shown} holds some of vmqos's tables ({', '.join(sorted(have))}) but not "
                         f"{missing}, and no schema revision: it was not made by vmqos; name another one with --db")
    return server_first_slice.revision if set(server_first_slice.TABLES) <= tables else first_wave.revision


def upgrade(conn: Connection, shown: str) -> None:
    """Stamp a database made before migrations, then bring it to head; on `conn`, in its transaction.

    The caller holds the openers' lock: this checks again what the fast path saw without it."""
    from alembic import command
    from alembic.util.exc import CommandError

    if is_current(conn, shown):
        return
    cfg = config(conn)
    before = current(conn)
    try:
        if before is None and (stamp := legacy_revision(conn, shown)) is not None:
            log.info("database %s: made before schema revisions, its tables are those of %s", shown, stamp)
            command.stamp(cfg, stamp)
            before = stamp
        command.upgrade(cfg, HEAD)
    except CommandError as exc:
        raise VmqosError(f"cannot upgrade the schema of the database {shown}: {exc}") from None
    log.info("database %s: schema upgraded from %s to %s", shown, before or "nothing", HEAD)
