"""The desired-state store: each scope's HostState, what was applied to each port, and the history.

A CLI and a daemon share one database, so every change of desired state is ONE transaction
(a reader sees the state before or after it, never half of it) and every read of a whole state
is one snapshot. SQLite runs in WAL mode with a busy timeout so that readers never wait for a
writer and writers wait for each other instead of failing. Bulk rows go through SQLAlchemy Core
(executemany), which is what keeps 10,000 ports fast; the ORM classes only declare the tables.

Opening the database lives in `engine`, the rows of a state in `rows`; this module is the API.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, delete, insert, select, text, union
from sqlalchemy.exc import SQLAlchemyError

from vmqos.core.errors import ConflictError, VmqosError
from vmqos.core.errors import NotFound as NotFoundError
from vmqos.core.model.host import HostState
from vmqos.core.model.volume import Volume, VolumeType
from vmqos.store import schema as t
from vmqos.store.delta import KEYS, current, check_fresh, delta, keyed, write
from vmqos.store.engine import check_scope, default_url, open_engine, reason, sqlite_file
from vmqos.store.health import FileWatch, ServerWatch, abandon
from vmqos.store.readonly import open_read_only
from vmqos.store.rows import Decoder, changed, encode
from vmqos.store.writer import WriterLocks


@dataclass(frozen=True)
class Revision:
    """One change of a scope's desired state: who made it, when, and what they said it was."""

    id: int
    scope: str
    at: datetime
    actor: str
    summary: str


class Store:
    """Desired state per scope ("" is the host's own network namespace) in a SQL database."""

    def __init__(self, url: str | None = None, *, read_only: bool = False) -> None:
        """`read_only`: for a command that only reads; it never writes the database, not even at open
        (`vmqos.store.readonly`), so a user who may only read it can use it."""
        self.url = url or default_url()
        self.read_only = read_only
        self._engine, self._shown = (open_read_only if read_only else open_engine)(self.url)
        self._writers = WriterLocks(self._engine, self.url, self._shown)
        self._file = FileWatch.of(database) if (database := sqlite_file(self.url)) else None
        self._server = ServerWatch(self._engine, self._shown) if self._engine.dialect.name == "postgresql" else None

    def check_file(self) -> None:
        """For a long-running process, once a pass: the SQLite file it opened is still the one at its
        path, and writable, or the PostgreSQL server still answers (`vmqos.store.health`); DatabaseGone,
        one line, otherwise."""
        if self._file is not None:
            self._file.check()
        elif self._server is not None:
            self._server.check()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None and self._file.frozen():
            abandon(self._engine)  # closing would write the WAL index of an immutable file: SIGBUS
            return
        self._engine.dispose()

    def writer(self, scope: str) -> AbstractContextManager[None]:
        """Be the only writer of `scope` (threads and processes alike) until the block ends.

        Every use case that loads a scope, changes the kernel and saves holds it around all three:
        without it two writers' kernel changes interleave on one device, and the second save of one
        port is refused as stale (`save(base=...)`) after its kernel change was made (`vmqos.store.writer`)."""
        check_scope(scope)
        return self._writers.hold(scope)

    # desired state -------------------------------------------------------------------------------

    def load(self, scope: str) -> HostState:
        """The scope's desired state; an empty HostState when nothing is stored."""
        check_scope(scope)
        with self._tx(f"reading scope {scope!r}") as conn:
            rows = Decoder.read(conn, scope)
        try:
            return Decoder().state(rows)
        except (VmqosError, ValueError, TypeError, AttributeError) as exc:  # not what `save` wrote
            raise VmqosError(f"the database {self._shown} holds an invalid scope {scope!r}: {exc}; "
                             "save the scope again to replace it") from None

    def save(self, scope: str, state: HostState, *, actor: str = "cli", summary: str = "",
             base: HostState | None = None) -> int:
        """Make `state` the scope's desired state in one transaction; the new revision's id.

        Only the rows that differ are written (`vmqos.store.delta`): `base` is the state the writer
        read and changed; a row it changes that another writer changed since is a StaleState refusal
        (nothing is saved). Without `base` the state replaces whatever is stored (a host file)."""
        check_scope(scope)
        only = None if base is None else changed(base, state)  # the objects a change made differ
        new = keyed(encode(scope, state, only))  # before the transaction, which holds the write lock
        old = None if base is None else keyed(encode(scope, base, only))
        with self._tx(f"saving scope {scope!r}", write=scope) as conn:
            if old is None:
                stored = {name: current(conn, scope, name) for name in KEYS}
                change = delta(stored, new)
            else:
                change = delta(old, new)
                stored = check_fresh(conn, scope, old, change)
            write(conn, scope, change, stored)
            return self._revision(conn, scope, actor, summary)

    def scopes(self) -> list[str]:
        """Scopes with desired state or with something applied (which may still need removing)."""
        query = union(*(select(table.c.scope) for table in (*t.STATE_TABLES[:-1], t.applied)))
        with self._tx("listing scopes") as conn:
            return sorted(conn.execute(query).scalars())

    def revisions(self, scope: str, limit: int = 20) -> list[Revision]:
        """The scope's last `limit` changes, newest first."""
        check_scope(scope)
        r = t.revisions.c
        query = select(r.id, r.scope, r.at, r.actor, r.summary).where(r.scope == scope)
        with self._tx(f"reading the history of scope {scope!r}") as conn:
            rows = conn.execute(query.order_by(r.id.desc()).limit(limit)).all()
        return [Revision(*row) for row in rows]

    # volume types and volumes: objects of their own, each change one transaction ------------------

    def volume_types(self, scope: str) -> dict[str, VolumeType]:
        check_scope(scope)
        v = t.volume_types.c
        query = select(v.name, v.consumer, v.specs, v.qos_name).where(v.scope == scope).order_by(v.name)
        with self._tx(f"reading the volume types of scope {scope!r}") as conn:
            rows = conn.execute(query).tuples().all()
        return {name: VolumeType(name, consumer, json.loads(specs), qos_name) for name, consumer, specs, qos_name in rows}

    def save_volume_type(self, scope: str, vtype: VolumeType, *, actor: str = "cli") -> int:
        """Create or replace a volume type (the volumes of that type keep it)."""
        check_scope(scope)
        v = t.volume_types.c
        row = {"scope": scope, "name": vtype.name, "consumer": vtype.consumer,
               "specs": json.dumps(vtype.specs, sort_keys=True), "qos_name": vtype.qos_name}
        with self._tx(f"saving volume type {vtype.name!r}", write=scope) as conn:
            found = conn.execute(select(v.name).where(v.scope == scope, v.name == vtype.name)).first()
            if found:
                conn.execute(t.volume_types.update().where(v.scope == scope, v.name == vtype.name).values(**row))
            else:
                conn.execute(insert(t.volume_types), [row])
            return self._revision(conn, scope, actor, f"volume type {vtype.name}")

    def delete_volume_type(self, scope: str, name: str, *, actor: str = "cli") -> int:
        check_scope(scope)
        v, o = t.volume_types.c, t.volumes.c
        with self._tx(f"deleting volume type {name!r}", write=scope) as conn:
            users = conn.execute(select(o.name).where(o.scope == scope, o.type == name)).scalars().all()
            if users:
                raise ConflictError(f"volume type {name!r} is used by the volumes {', '.join(sorted(users))}; "
                                    "delete them or give them another type first")
            if not conn.execute(delete(t.volume_types).where(v.scope == scope, v.name == name)).rowcount:
                raise NotFoundError(f"no volume type {name!r} (`vmqos volume-type list` shows them)")
            return self._revision(conn, scope, actor, f"deleted volume type {name}")

    def volumes(self, scope: str) -> dict[str, Volume]:
        check_scope(scope)
        o = t.volumes.c
        query = select(o.name, o.type, o.size_gb, o.instance, o.device).where(o.scope == scope).order_by(o.name)
        with self._tx(f"reading the volumes of scope {scope!r}") as conn:
            rows = conn.execute(query).tuples().all()
        return {row[0]: Volume(*row) for row in rows}

    def save_volume(self, scope: str, volume: Volume, *, actor: str = "cli", summary: str = "") -> int:
        """Create or replace a volume; its type must exist in the scope."""
        check_scope(scope)
        o, v = t.volumes.c, t.volume_types.c
        row = {"scope": scope, "name": volume.name, "type": volume.type, "size_gb": volume.size_gb,
               "instance": volume.instance, "device": volume.device}
        with self._tx(f"saving volume {volume.name!r}", write=scope) as conn:
            if volume.type is not None and not conn.execute(
                    select(v.name).where(v.scope == scope, v.name == volume.type)).first():
                raise NotFoundError(f"no volume type {volume.type!r} (`vmqos volume-type create` makes one)")
            if volume.instance is not None:
                taken = conn.execute(select(o.name).where(
                    o.scope == scope, o.instance == volume.instance, o.device == volume.device,
                    o.name != volume.name)).scalars().first()
                if taken:
                    raise ConflictError(f"device {volume.device} of instance {volume.instance} already holds volume "
                                        f"{taken!r}; detach it first")
            conn.execute(delete(t.volumes).where(o.scope == scope, o.name == volume.name))
            conn.execute(insert(t.volumes), [row])
            return self._revision(conn, scope, actor, summary or f"volume {volume.name}")

    def delete_volume(self, scope: str, name: str, *, actor: str = "cli") -> int:
        check_scope(scope)
        o = t.volumes.c
        with self._tx(f"deleting volume {name!r}", write=scope) as conn:
            if not conn.execute(delete(t.volumes).where(o.scope == scope, o.name == name)).rowcount:
                raise NotFoundError(f"no volume {name!r} (`vmqos volume list` shows them)")
            return self._revision(conn, scope, actor, f"deleted volume {name}")

    @staticmethod
    def _revision(conn: Connection, scope: str, actor: str, summary: str) -> int:
        result = conn.execute(insert(t.revisions).values(scope=scope, at=datetime.now(UTC), actor=actor,
                                                         summary=summary))
        return int(result.inserted_primary_key[0])

    # what the reconciler applied ------------------------------------------------------------------

    def applied(self, scope: str) -> dict[str, str]:
        """Device -> the fingerprint the reconciler last applied to it."""
        check_scope(scope)
        a = t.applied.c
        with self._tx(f"reading what was applied in scope {scope!r}") as conn:
            return dict(conn.execute(select(a.device, a.fingerprint).where(a.scope == scope)).tuples().all())

    def record_applied(self, scope: str, device: str, fingerprint: str | None) -> None:
        """Remember what was applied to `device`; None forgets it (the port's QoS was removed)."""
        self.record_applied_many(scope, {device: fingerprint})

    def record_applied_many(self, scope: str, fingerprints: dict[str, str | None]) -> None:
        """`record_applied` for many devices in one transaction, writing only the rows that change: a
        device whose stored fingerprint is already the one given keeps its row (and its applied_at:
        when that fingerprint was first applied); None deletes a row, a new one is inserted."""
        check_scope(scope)
        if not fingerprints:
            return
        now = datetime.now(UTC)
        a = t.applied.c
        query = select(a.device, a.fingerprint).where(a.scope == scope)
        if len(fingerprints) <= 500:  # else the whole scope: cheaper than a long IN list
            query = query.where(a.device.in_(list(fingerprints)))
        with self._tx(f"recording what was applied in scope {scope!r}", write=scope) as conn:
            stored = dict(conn.execute(query).tuples().all())
            forget = [{"dev": d} for d, fp in fingerprints.items() if fp is None and d in stored]
            changed = [{"dev": d, "fingerprint": fp, "applied_at": now} for d, fp in fingerprints.items()
                       if fp is not None and d in stored and stored[d] != fp]
            added = [{"scope": scope, "device": d, "fingerprint": fp, "applied_at": now}
                     for d, fp in fingerprints.items() if fp is not None and d not in stored]
            if forget:
                conn.execute(delete(t.applied).where(a.scope == scope, a.device == bindparam("dev")), forget)
            if changed:
                conn.execute(t.applied.update().where(a.scope == scope, a.device == bindparam("dev")), changed)
            if added:
                conn.execute(insert(t.applied), added)

    # transactions ---------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, action: str, write: str | None = None) -> Iterator[Connection]:
        """One transaction; `write` names the scope it changes. Database errors become one line."""
        if write is not None and self._file is not None:
            self._file.check()  # never write to a deleted file, nor touch an immutable one's mapping
        try:
            with self._engine.connect() as conn:
                postgres = conn.dialect.name == "postgresql"
                if write is not None:
                    conn.execution_options(vmqos_write=True)
                elif postgres:  # one snapshot for every statement of a read
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    if write is not None and postgres:  # writers of one scope take turns
                        conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"),
                                     {"a": 0x766D71, "b": zlib.crc32(write.encode()) - 2**31})
                    yield conn
        except SQLAlchemyError as exc:
            raise VmqosError(f"{action} in the database {self._shown} failed: {reason(exc)}") from None
