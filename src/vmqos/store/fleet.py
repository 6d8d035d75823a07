"""The fleet's desired rows: read per host since a revision, and rewritten in one transaction.

Every change of a row takes the next value of one global counter, inside a transaction that holds
the Neutron writer lock (`neutron_tables.WRITER`): the writes of the Neutron objects and of the rows
take turns, and revisions are given out and committed in order. That is what makes "the rows of
my host above R" a complete answer: no row with a smaller revision can commit after one with a
larger one, so an agent that advanced to R never misses a row.

`DesiredWriter` is that transaction: the use case (services.fleet_desired) reads the Neutron objects
it decides from and the rows it compares with through it, and writes what changed; this module
holds the SQL, the use case the decisions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, delete, func, insert, select, tuple_, union, update

from vmqos.store.fleet_tables import FLOOR, REVISION, fleet_counters, fleet_desired, fleet_devices
from vmqos.store.neutron_ports import StoredPort, read_networks, read_ports
from vmqos.store.neutron_tables import WRITER, neutron_networks, neutron_ports
from vmqos.store.qos import StoredPolicy, read_policies
from vmqos.store.store import Store

CHUNK = 2000  # ids (or keys) per IN list: far below SQLite's and PostgreSQL's limits on parameters
Key = tuple[str, str]  # (host, device)
T = TypeVar("T")

_COLUMNS = ("host", "device", "port_id", "source", "policy_name", "policy", "revision", "changed_at", "policy_id",
            "addresses")


@dataclass(frozen=True)
class DesiredRow:
    """One row of `fleet_desired`; `policy` is its JSON text, None for a tombstone."""

    host: str
    device: str
    port_id: str | None
    source: str
    policy_name: str | None
    policy: str | None
    revision: int
    changed_at: datetime
    policy_id: str | None = None  # the vmqos policy a native row names (its content is `policy`, resolved)
    addresses: str | None = None  # JSON list of the instance's addresses (for the host's uplink); None: none

    @property
    def key(self) -> Key:
        return self.host, self.device


@dataclass(frozen=True)
class Counters:
    revision: int  # the last revision given out (0 before the first)
    floor: int  # tombstones at or below it were compacted: a `since` below it cannot be answered


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _counters(conn: Connection) -> Counters:
    c = fleet_counters.c
    found = dict(conn.execute(select(c.name, c.value).where(c.name.in_((REVISION, FLOOR)))).tuples().all())
    return Counters(int(found.get(REVISION, 0)), int(found.get(FLOOR, 0)))


def _set_counter(conn: Connection, name: str, value: int) -> None:
    c = fleet_counters.c
    if not conn.execute(update(fleet_counters).where(c.name == name).values(value=value)).rowcount:
        conn.execute(insert(fleet_counters).values(name=name, value=value))


def _rows(conn: Connection, *where: Any) -> list[DesiredRow]:
    d = fleet_desired.c
    return [DesiredRow(*row) for row in conn.execute(select(*(d[c] for c in _COLUMNS)).where(*where))]


# ------------------------------------------------------------------ reading


def counters(store: Store) -> Counters:
    """The counter and the floor: one or two indexed rows, what the long poll's ticker reads."""
    with store._tx("reading the fleet's revision") as conn:
        return _counters(conn)


def host_rows(store: Store, host: str, *, since: int | None = None) -> tuple[Counters, list[DesiredRow]]:
    """The counters and, in the same snapshot, the host's live rows (`since` None) or every row of
    the host above `since` (tombstones too), in revision order."""
    d = fleet_desired.c
    where: list[Any] = [d.host == host]
    where.append(d.policy.is_not(None) if since is None else d.revision > since)
    with store._tx(f"reading the desired state of host {host}") as conn:
        found = _counters(conn)
        rows = _rows(conn, *where)
    return found, sorted(rows, key=lambda r: (r.revision, r.device))


def changed_since(store: Store, since: int) -> tuple[int, list[DesiredRow]]:
    """The counter and, in the same snapshot, every row above `since` (the index on revision): what the
    long poll's ticker hands to the agents that wait at `since`, without a read each."""
    with store._tx("reading what changed") as conn:
        now = _counters(conn).revision
        found = _rows(conn, fleet_desired.c.revision > since)
    return now, sorted(found, key=lambda r: (r.revision, r.device))


def rows(store: Store, *, host: str | None = None, device: str | None = None, live: bool = True,
         project_id: str | None = None) -> list[DesiredRow]:
    """Rows (the live ones, unless `live` is False) of a host, of one device, or of the Neutron ports
    of one project, by host and device."""
    d = fleet_desired.c
    where: list[Any] = [d.policy.is_not(None)] if live else []
    if host is not None:
        where.append(d.host == host)
    if device is not None:
        where.append(d.device == device)
    if project_id is not None:
        where.append(d.port_id.in_(select(neutron_ports.c.id).where(neutron_ports.c.project_id == project_id)))
    with store._tx("reading desired rows") as conn:
        return sorted(_rows(conn, *where), key=lambda r: r.key)


def rows_at(store: Store, keys: Collection[Key]) -> dict[Key, DesiredRow]:
    """The rows (live or tombstones) at `keys`."""
    d = fleet_desired.c
    with store._tx("reading desired rows") as conn:
        return {r.key: r for batch in chunks(sorted(keys))
                for r in _rows(conn, tuple_(d.host, d.device).in_(batch))}


def compact(store: Store, before: datetime) -> int:
    """Delete the tombstones that changed before `before` and raise the floor to the newest of them:
    an agent that asks for changes since a revision below it reads its whole host again (410).
    The number of tombstones deleted."""
    d = fleet_desired.c
    with store._tx("compacting the fleet's tombstones", write=WRITER) as conn:
        old = (d.policy.is_(None), d.changed_at < before)
        newest = conn.execute(select(func.max(d.revision)).where(*old)).scalar()
        if newest is None:
            return 0
        gone = conn.execute(delete(fleet_desired).where(*old)).rowcount
        if newest > _counters(conn).floor:
            _set_counter(conn, FLOOR, int(newest))
        return int(gone)


# ------------------------------------------------------------------ writing


class DesiredWriter:
    """One write transaction over the desired rows and what they are decided from."""

    def __init__(self, conn: Connection, at: datetime) -> None:
        self.conn, self.at = conn, at
        self.ports_read = 0  # how many Neutron ports this transaction read: a refresh's cost

    def counters(self) -> Counters:
        return _counters(self.conn)

    # the Neutron objects

    def ports(self, ids: Collection[str] | None) -> list[StoredPort]:
        """The ports with `ids` (every port for None), in creation order."""
        if ids is None:
            found = read_ports(self.conn)
        else:
            found = [p for batch in chunks(sorted(ids)) for p in read_ports(self.conn, neutron_ports.c.id.in_(batch))]
            found.sort(key=lambda p: (p.created_at, p.id))
        self.ports_read += len(found)
        return found

    def port_ids_of_policy(self, policy_id: str) -> list[str]:
        """The ports a QoS policy can apply to: those that name it, and those without their own on the
        networks that name it (one query over the two indexed columns)."""
        p, n = neutron_ports.c, neutron_networks.c
        own = select(p.id).where(p.qos_policy_id == policy_id)
        by_network = select(p.id).where(p.qos_policy_id.is_(None),
                                        p.network_id.in_(select(n.id).where(n.qos_policy_id == policy_id)))
        return [str(i) for i in self.conn.execute(union(own, by_network)).scalars()]

    def port_ids_of_network(self, network_id: str) -> list[str]:
        p = neutron_ports.c
        return [str(i) for i in self.conn.execute(select(p.id).where(p.network_id == network_id)).scalars()]

    def network_policies(self, ids: Collection[str] | None) -> dict[str, str | None]:
        """Network id -> its QoS policy id, for the networks with `ids` (every one for None)."""
        if ids is None:
            return {n.id: n.qos_policy_id for n in read_networks(self.conn)}
        return {n.id: n.qos_policy_id for batch in chunks(sorted(ids))
                for n in read_networks(self.conn, neutron_networks.c.id.in_(batch))}

    def policies(self, ids: Collection[str] | None) -> dict[str, StoredPolicy]:
        if ids is None:
            return {p.id: p for p in read_policies(self.conn)}
        return {p.id: p for batch in chunks(sorted(ids)) for p in read_policies(self.conn, batch)}

    # the devices the ports name

    def claims(self, port_ids: Collection[str] | None) -> dict[str, Key]:
        """Port id -> (host, device) it names, as last recorded (every port's for None)."""
        v = fleet_devices.c
        query = select(v.port_id, v.host, v.device)
        batches = [None] if port_ids is None else list(chunks(sorted(port_ids)))
        found: dict[str, Key] = {}
        for batch in batches:
            where = () if batch is None else (v.port_id.in_(batch),)
            found.update((pid, (host, device)) for pid, host, device in self.conn.execute(query.where(*where)))
        return found

    def claimants(self, keys: Collection[Key]) -> dict[Key, list[str]]:
        """(host, device) -> the ports that name it (the index on host and device)."""
        v = fleet_devices.c
        found: dict[Key, list[str]] = {}
        for batch in chunks(sorted(keys)):
            for pid, host, device in self.conn.execute(
                    select(v.port_id, v.host, v.device).where(tuple_(v.host, v.device).in_(batch))):
                found.setdefault((host, device), []).append(pid)
        return found

    def claimants_beside(self, port_ids: Collection[str]) -> dict[Key, list[str]]:
        """(host, device) -> the other ports that name what one of `port_ids` names (a join on the index:
        cheaper than asking for the keys themselves, and almost always empty)."""
        mine, other = fleet_devices.alias("mine"), fleet_devices.alias("other")
        found: dict[Key, list[str]] = {}
        for batch in chunks(sorted(port_ids)):
            query = select(other.c.port_id, other.c.host, other.c.device).join(
                mine, (mine.c.host == other.c.host) & (mine.c.device == other.c.device)
                & (mine.c.port_id != other.c.port_id)).where(mine.c.port_id.in_(batch))
            for pid, host, device in self.conn.execute(query):
                found.setdefault((host, device), []).append(pid)
        return found

    def set_claims(self, forget: Collection[str], claims: dict[str, Key]) -> None:
        """Forget what the ports `forget` named, then record `claims` (port id -> (host, device))."""
        v = fleet_devices.c
        for batch in chunks(sorted(set(forget) | set(claims))):
            self.conn.execute(delete(fleet_devices).where(v.port_id.in_(batch)))
        if claims:
            self.conn.execute(insert(fleet_devices), [{"port_id": pid, "host": host, "device": device}
                                                      for pid, (host, device) in claims.items()])

    # the rows

    def rows_of_ports(self, port_ids: Collection[str] | None) -> dict[Key, DesiredRow]:
        """The rows of the ports `port_ids` (every row for None)."""
        if port_ids is None:
            return {r.key: r for r in _rows(self.conn)}
        return {r.key: r for batch in chunks(sorted(port_ids))
                for r in _rows(self.conn, fleet_desired.c.port_id.in_(batch))}

    def rows_at(self, keys: Collection[Key]) -> dict[Key, DesiredRow]:
        d = fleet_desired.c
        return {r.key: r for batch in chunks(sorted(keys))
                for r in _rows(self.conn, tuple_(d.host, d.device).in_(batch))}

    def rows_of_policy(self, policy_id: str) -> dict[Key, DesiredRow]:
        """The live rows that name the vmqos policy `policy_id` (the index on policy_id)."""
        d = fleet_desired.c
        return {r.key: r for r in _rows(self.conn, d.policy_id == policy_id, d.policy.is_not(None))}

    def next_revision(self) -> int:
        """Take the next revision of the global counter (a change that is not a desired row: an uplink's)."""
        revision = _counters(self.conn).revision + 1
        _set_counter(self.conn, REVISION, revision)
        return revision

    def write(self, changed: Sequence[DesiredRow], existing: Collection[Key]) -> int:
        """Give `changed` (their revision is ignored) the next revision, updating the rows at `existing`
        keys and inserting the others; the revision given."""
        revision = _counters(self.conn).revision + 1
        _set_counter(self.conn, REVISION, revision)
        values = [{"host": r.host, "device": r.device, "port_id": r.port_id, "source": r.source,
                   "policy_name": r.policy_name, "policy": r.policy, "revision": revision, "changed_at": self.at,
                   "policy_id": r.policy_id, "addresses": r.addresses}
                  for r in changed]
        updates = [v for v in values if (v["host"], v["device"]) in existing]
        inserts = [v for v in values if (v["host"], v["device"]) not in existing]
        if updates:
            d = fleet_desired.c
            statement = update(fleet_desired).where(d.host == bindparam("b_host"), d.device == bindparam("b_device"))
            self.conn.execute(statement, [{k: v for k, v in row.items() if k not in ("host", "device")}
                                          | {"b_host": row["host"], "b_device": row["device"]} for row in updates])
        if inserts:
            self.conn.execute(insert(fleet_desired), inserts)
        return revision

    def rewrite_policy(self, source: str, policy_name: str, text: str) -> tuple[int | None, frozenset[str]]:
        """Set-based: every live row of `source` that holds the policy `policy_name` gets `text` and, all of
        them, one next revision, in one UPDATE (a policy shared by 10,000 ports is one statement, not
        10,000 rows built and compared in Python). The revision given (None: no row changed) and the
        hosts of the rows it gave it to (the index on revision)."""
        d = fleet_desired.c
        revision = _counters(self.conn).revision + 1
        changed = self.conn.execute(
            update(fleet_desired)
            .where(d.source == source, d.policy_name == policy_name, d.policy.is_not(None), d.policy != text)
            .values(policy=text, revision=revision, changed_at=self.at)).rowcount
        if not changed:
            return None, frozenset()
        _set_counter(self.conn, REVISION, revision)
        hosts = self.conn.execute(select(d.host).where(d.revision == revision).distinct()).scalars()
        return revision, frozenset(str(h) for h in hosts)


@contextmanager
def desired_writer(store: Store, action: str) -> Iterator[DesiredWriter]:
    """A DesiredWriter on one transaction that holds the Neutron writer lock, committed at the end."""
    with store._tx(action, write=WRITER) as conn:
        yield DesiredWriter(conn, datetime.now(UTC))
