"""The desired-state store: each scope's HostState, what was applied to each port, and the history.

A CLI and a daemon share one database, so every change of desired state is ONE transaction
(a reader sees the state before or after it, never half of it) and every read of a whole state
is one snapshot. SQLite runs in WAL mode with a busy timeout so that readers never wait for a
writer and writers wait for each other instead of failing. Bulk rows go through SQLAlchemy Core
(executemany), which is what keeps 10,000 ports fast; the ORM classes only declare the tables.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    union,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from vmqos.core.errors import ConflictError, InvalidValue, VmqosError
from vmqos.core.errors import NotFound as NotFoundError
from vmqos.core.formats.hostfile import from_data, to_data
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.host import (
    EgressMode,
    Flavor,
    HostState,
    InstanceSpec,
    NetworkSpec,
    Policy,
    PortSpec,
)
from vmqos.core.model.network import NetworkQos
from vmqos.core.model.volume import Volume, VolumeType
from vmqos.store import monitor_tables as _monitor_tables  # noqa: F401  (its tables, created with the rest)
from vmqos.store import schema as t

ENV = "VMQOS_DB"
DEFAULT_URL = "sqlite:////var/lib/vmqos/vmqos.db"
BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another one before giving up
_FIX = f"pass --db URL (or set {ENV}) to use another database"


def default_url() -> str:
    """The database to use when none is named: $VMQOS_DB, else the host's own SQLite file."""
    return os.environ.get(ENV) or DEFAULT_URL


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

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_url()
        self._engine, self._shown = _open(self.url)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    # desired state -------------------------------------------------------------------------------

    def load(self, scope: str) -> HostState:
        """The scope's desired state; an empty HostState when nothing is stored."""
        _check_scope(scope)
        with self._tx(f"reading scope {scope!r}") as conn:
            rows = _Decoder.read(conn, scope)
        try:
            return _Decoder().state(rows)
        except (VmqosError, ValueError, TypeError, AttributeError) as exc:  # not what `save` wrote
            raise VmqosError(f"the database {self._shown} holds an invalid scope {scope!r}: {exc}; "
                             "save the scope again to replace it") from None

    def save(self, scope: str, state: HostState, *, actor: str = "cli", summary: str = "") -> int:
        """Replace the scope's whole desired state in one transaction; the new revision's id."""
        _check_scope(scope)
        rows = _encode(scope, state)  # before the transaction, which holds the write lock
        with self._tx(f"saving scope {scope!r}", write=scope) as conn:
            for table in reversed(t.STATE_TABLES):
                conn.execute(delete(table).where(table.c.scope == scope))
            for table in t.STATE_TABLES:
                if rows[table.name]:
                    conn.execute(insert(table), rows[table.name])
            result = conn.execute(insert(t.revisions).values(
                scope=scope, at=datetime.now(UTC), actor=actor, summary=summary))
            return int(result.inserted_primary_key[0])

    def scopes(self) -> list[str]:
        """Scopes with desired state or with something applied (which may still need removing)."""
        query = union(*(select(table.c.scope) for table in (*t.STATE_TABLES[:-1], t.applied)))
        with self._tx("listing scopes") as conn:
            return sorted(conn.execute(query).scalars())

    def revisions(self, scope: str, limit: int = 20) -> list[Revision]:
        """The scope's last `limit` changes, newest first."""
        _check_scope(scope)
        r = t.revisions.c
        query = select(r.id, r.scope, r.at, r.actor, r.summary).where(r.scope == scope)
        with self._tx(f"reading the history of scope {scope!r}") as conn:
            rows = conn.execute(query.order_by(r.id.desc()).limit(limit)).all()
        return [Revision(*row) for row in rows]

    # volume types and volumes: objects of their own, each change one transaction ------------------

    def volume_types(self, scope: str) -> dict[str, VolumeType]:
        _check_scope(scope)
        v = t.volume_types.c
        query = select(v.name, v.consumer, v.specs, v.qos_name).where(v.scope == scope).order_by(v.name)
        with self._tx(f"reading the volume types of scope {scope!r}") as conn:
            rows = conn.execute(query).tuples().all()
        return {name: VolumeType(name, consumer, json.loads(specs), qos_name) for name, consumer, specs, qos_name in rows}

    def save_volume_type(self, scope: str, vtype: VolumeType, *, actor: str = "cli") -> int:
        """Create or replace a volume type (the volumes of that type keep it)."""
        _check_scope(scope)
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
        _check_scope(scope)
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
        _check_scope(scope)
        o = t.volumes.c
        query = select(o.name, o.type, o.size_gb, o.instance, o.device).where(o.scope == scope).order_by(o.name)
        with self._tx(f"reading the volumes of scope {scope!r}") as conn:
            rows = conn.execute(query).tuples().all()
        return {row[0]: Volume(*row) for row in rows}

    def save_volume(self, scope: str, volume: Volume, *, actor: str = "cli", summary: str = "") -> int:
        """Create or replace a volume; its type must exist in the scope."""
        _check_scope(scope)
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
        _check_scope(scope)
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
        _check_scope(scope)
        a = t.applied.c
        with self._tx(f"reading what was applied in scope {scope!r}") as conn:
            return dict(conn.execute(select(a.device, a.fingerprint).where(a.scope == scope)).tuples().all())

    def record_applied(self, scope: str, device: str, fingerprint: str | None) -> None:
        """Remember what was applied to `device`; None forgets it (the port's QoS was removed)."""
        self.record_applied_many(scope, {device: fingerprint})

    def record_applied_many(self, scope: str, fingerprints: dict[str, str | None]) -> None:
        """`record_applied` for many devices in one transaction."""
        _check_scope(scope)
        if not fingerprints:
            return
        now = datetime.now(UTC)
        a = t.applied.c
        forget = delete(t.applied).where(a.scope == scope, a.device == bindparam("dev"))
        rows = [{"scope": scope, "device": device, "fingerprint": fp, "applied_at": now}
                for device, fp in fingerprints.items() if fp is not None]
        with self._tx(f"recording what was applied in scope {scope!r}", write=scope) as conn:
            conn.execute(forget, [{"dev": device} for device in fingerprints])
            if rows:
                conn.execute(insert(t.applied), rows)

    # transactions ---------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, action: str, write: str | None = None) -> Iterator[Connection]:
        """One transaction; `write` names the scope it changes. Database errors become one line."""
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
            raise VmqosError(f"{action} in the database {self._shown} failed: {_reason(exc)}") from None


# ----------------------------------------------------------------------------------------- opening


def _open(url: str) -> tuple[Engine, str]:
    """An engine with the tables created, or a VmqosError that says how to name another database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise VmqosError(f"{url!r} is not a database URL (e.g. {DEFAULT_URL} or postgresql://host/vmqos); "
                         f"{_FIX}") from None
    shown = parsed.render_as_string(hide_password=True)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        _make_parent(parsed, shown)
    try:
        engine = create_engine(parsed, future=True)
    except ImportError as exc:
        raise VmqosError(f"cannot open the database {shown}: its driver is missing ({exc}); install it or "
                         f"{_FIX}") from None
    except SQLAlchemyError as exc:
        raise VmqosError(f"cannot open the database {shown}: {_reason(exc)}; {_FIX}") from None
    if sqlite:
        _tune_sqlite(engine)
    try:
        with engine.begin() as conn:
            t.metadata.create_all(conn)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise VmqosError(f"cannot open the database {shown}: {_reason(exc)}; {_FIX}") from None
    return engine, shown


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


def _reason(exc: SQLAlchemyError) -> str:
    message = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
    return (message.strip().splitlines() or [type(exc).__name__])[0]


def _check_scope(scope: str) -> None:
    if not isinstance(scope, str) or "/" in scope or "\0" in scope or scope in (".", ".."):
        raise InvalidValue("scope", scope, "a scope is '' (the host's own namespace) or a network namespace name")


# ------------------------------------------------------------------------------------------- rows


def _json(obj: NetworkQos | CpuQos | DiskQos | Flavor) -> str:
    return json.dumps(to_data(obj), separators=(",", ":"), ensure_ascii=False)


def _encode(scope: str, state: HostState) -> dict[str, list[dict[str, Any]]]:
    """The rows of every state table; refuses what the foreign keys would, with a clearer message."""
    for kind, objects in (("policy", state.policies), ("flavor", state.flavors), ("network", state.networks),
                          ("instance", state.instances)):
        for key, obj in objects.items():
            if obj.name != key:
                raise ConflictError(f"{kind} {key!r} is named {obj.name!r}; a {kind}'s key and name must be equal")
    texts: dict[NetworkQos, str] = {}  # many ports share their limits: encode each once

    def network(qos: NetworkQos | None) -> str | None:
        if qos is None:
            return None
        if qos not in texts:
            texts[qos] = _json(qos)
        return texts[qos]

    rows: dict[str, list[dict[str, Any]]] = {
        "policies": [{"scope": scope, "name": n, "origin": p.origin, "qos": network(p.qos)}
                     for n, p in state.policies.items()],
        "flavors": [{"scope": scope, "name": n, "doc": _json(f)} for n, f in state.flavors.items()],
        "networks": [{"scope": scope, "name": n, "policy": _ref(state.policies, net.policy, f"network {n!r}",
                                                                "policy")}
                     for n, net in state.networks.items()],
        "instances": [], "ports": [],
    }
    owners: dict[str, str] = {}
    for name, inst in state.instances.items():
        rows["instances"].append({
            "scope": scope, "name": name, "flavor": _ref(state.flavors, inst.flavor, f"instance {name!r}", "flavor"),
            "cpu": None if inst.cpu is None else _json(inst.cpu),
            "disks": json.dumps({d: to_data(q) for d, q in inst.disks.items()}, separators=(",", ":")),
        })
        for position, port in enumerate(inst.ports):
            if port.device in owners:
                raise ConflictError(f"port {port.device!r} is listed twice (instances {owners[port.device]!r} and "
                                    f"{name!r}); device names are unique in a network namespace")
            owners[port.device] = name
            where = f"port {port.device!r}"
            rows["ports"].append({
                "scope": scope, "device": port.device, "instance": name,
                "network": _ref(state.networks, port.network, where, "network"),
                "policy": _ref(state.policies, port.policy, where, "policy"),
                "limits": network(port.limits), "egress_mode": EgressMode(port.egress_mode).value,
                "mtu": port.mtu, "position": position,
            })
    return rows


def _ref(table: dict[str, Any], name: str | None, where: str, kind: str) -> str | None:
    if name is not None and name not in table:
        raise ConflictError(f"{where}: {kind} {name!r} is not defined in the same state; define it or drop the "
                            "reference")
    return name


class _Decoder:
    """Rows back into a HostState; equal JSON texts are decoded once, into one shared frozen object."""

    def __init__(self) -> None:
        self.cache: dict[tuple[type, str], Any] = {}

    @staticmethod
    def read(conn: Connection, scope: str) -> dict[str, list[tuple[Any, ...]]]:
        """The scope's rows as plain tuples (a Row's attributes cost more than the rest of a load)."""
        p, f, n, i, o = t.policies.c, t.flavors.c, t.networks.c, t.instances.c, t.ports.c
        queries = {
            "policies": select(p.name, p.origin, p.qos).where(p.scope == scope).order_by(p.name),
            "flavors": select(f.name, f.doc).where(f.scope == scope).order_by(f.name),
            "networks": select(n.name, n.policy).where(n.scope == scope).order_by(n.name),
            "instances": select(i.name, i.flavor, i.cpu, i.disks).where(i.scope == scope).order_by(i.name),
            "ports": select(o.instance, o.device, o.network, o.policy, o.limits, o.egress_mode, o.mtu)
            .where(o.scope == scope).order_by(o.instance, o.position),
        }  # dicts come out in name order: the database keeps no other
        return {name: conn.execute(query).tuples().all() for name, query in queries.items()}

    def part(self, kind: type, text: str, *path: str | int) -> Any:
        key = (kind, text)
        if key not in self.cache:
            self.cache[key] = from_data(kind, json.loads(text), path=path)
        return self.cache[key]

    def state(self, rows: dict[str, list[tuple[Any, ...]]]) -> HostState:
        policies = {name: Policy(name, self.part(NetworkQos, qos, "policies", name), origin)
                    for name, origin, qos in rows["policies"]}
        flavors = {name: from_data(Flavor, json.loads(doc), path=("flavors", name), name=name)
                   for name, doc in rows["flavors"]}
        networks = {name: NetworkSpec(name, policy) for name, policy in rows["networks"]}
        ports: dict[str, list[PortSpec]] = {}
        for instance, device, network, policy, limits, egress_mode, mtu in rows["ports"]:
            own = ports.setdefault(instance, [])
            if limits is not None:
                limits = self.part(NetworkQos, limits, "instances", instance, "ports", len(own), "limits")
            own.append(PortSpec(device, network, policy, limits, egress_mode, mtu))
        instances = {}
        for name, flavor, cpu, disks in rows["instances"]:
            if cpu is not None:
                cpu = self.part(CpuQos, cpu, "instances", name, "cpu")
            instances[name] = InstanceSpec(name, flavor, cpu, tuple(ports.get(name, ())), self.disks(name, disks))
        return HostState(policies=policies, flavors=flavors, networks=networks, instances=instances)

    def disks(self, instance: str, text: str) -> dict[str, DiskQos]:
        if text == "{}":
            return {}
        return {name: from_data(DiskQos, data, path=("instances", instance, "disks", name))
                for name, data in json.loads(text).items()}
