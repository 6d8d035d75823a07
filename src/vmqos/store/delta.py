"""Saving a scope's desired state as the rows that changed, and refusing a writer whose copy is stale.

`vmqos port set` on one port of 1,000 used to delete the scope's 1,000 rows of every table and
insert them again: the write cost grew with the scope, and a writer that did not hold the scope's
writer lock (`vmqos.store.writer`) saved its whole stale copy over the changes of every other
port. Now a save compares the rows of the state the writer started from (`base`) with the rows of
the state it wants, and writes only the difference: an UPDATE of a changed row, an INSERT of a new
one, a DELETE of one that went. Rows it did not change are not touched, so two writers of two
different ports both keep their change, lock or no lock.

Before writing, every row it is about to write is read again in the same transaction and compared
with the writer's `base` row (JSON columns as the objects they encode, `rows.canonical`: a text an
older vmqos wrote as `10000kbit` is the `10mbit` the writer read): one that another writer changed
since is a `StaleState` refusal, and the transaction writes nothing, rather than an overwrite.
Without a `base` (a whole host file: `vmqos apply` replaces the scope) the current rows are the
base, and only the difference is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, select, update

from vmqos.core.errors import ConflictError, VmqosError
from vmqos.store import schema as t
from vmqos.store.rows import canonical

Rows = dict[str, list[dict[str, Any]]]  # what rows.encode returns: table name -> rows
Keyed = dict[str, dict[str, dict[str, Any]]]  # table name -> key -> row

# the uplinks table holds one row per scope: keyed by the scope, a new device is an UPDATE of that row
KEYS = {"policies": "name", "flavors": "name", "networks": "name", "instances": "name", "ports": "device",
        "uplinks": "scope", "port_addresses": "device"}
JSON_COLUMNS = {"policies": ("qos",), "flavors": ("doc",), "instances": ("cpu", "disks"), "ports": ("limits",)}
_READ_ALL_ABOVE = 500  # more keys than this: read the scope's whole table rather than a long IN list


class StaleState(ConflictError):
    """A row the writer changes was changed by another writer since the writer read the scope."""


@dataclass
class Delta:
    """What a save writes: per table, the rows to insert or update and the keys to delete."""

    put: Keyed = field(default_factory=dict)
    drop: dict[str, list[str]] = field(default_factory=dict)

    def touched(self, table: str) -> list[str]:
        return [*self.put.get(table, {}), *self.drop.get(table, ())]

    def size(self) -> int:
        return sum(map(len, self.put.values())) + sum(map(len, self.drop.values()))


def keyed(rows: Rows) -> Keyed:
    return {name: {row[KEYS[name]]: row for row in rows.get(name, ())} for name in KEYS}


def delta(base: Keyed, new: Keyed) -> Delta:
    """The rows of `new` that `base` lacks or holds otherwise, and the keys of `base` that `new` lacks."""
    found = Delta()
    for name in KEYS:
        before, after = base.get(name, {}), new.get(name, {})
        put = {key: row for key, row in after.items() if not _same(name, before.get(key), row)}
        drop = [key for key in before if key not in after]
        if put:
            found.put[name] = put
        if drop:
            found.drop[name] = drop
    return found


def current(conn: Connection, scope: str, name: str, keys: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """The stored rows of table `name` in `scope` (only those with `keys`, unless None), by key."""
    table = _table(name)
    key_column = table.c[KEYS[name]]
    query = select(*table.c).where(table.c.scope == scope)
    wanted = None if keys is None else list(keys)
    if wanted is not None and len(wanted) <= _READ_ALL_ABOVE:
        if not wanted:
            return {}
        query = query.where(key_column.in_(wanted))
    rows = {row[KEYS[name]]: dict(row) for row in conn.execute(query).mappings()}
    if wanted is not None and len(wanted) > _READ_ALL_ABOVE:
        rows = {key: rows[key] for key in wanted if key in rows}
    return rows


def check_fresh(conn: Connection, scope: str, base: Keyed, change: Delta) -> Keyed:
    """The stored rows that `change` touches, after checking each equals the writer's base row."""
    stored: Keyed = {}
    for name in KEYS:
        keys = change.touched(name)
        stored[name] = now = current(conn, scope, name, keys)
        for key in keys:
            if not _same(name, base.get(name, {}).get(key), now.get(key)):
                raise StaleState(f"scope {scope!r}: {name[:-1] if name != 'policies' else 'policy'} {key!r} was "
                                 "changed by another writer since this one read the scope; nothing was saved; "
                                 "read the scope again and repeat the change")
    return stored


def write(conn: Connection, scope: str, change: Delta, stored: Keyed) -> None:
    """Write `change` in the caller's transaction: parents first for the inserts and updates (a row's
    new reference exists before it), children first for the deletes (nothing still refers to a row
    deleted). A row's key never changes in an update, so an update breaks no reference."""
    for table in t.STATE_TABLES:
        name, key_name = table.name, KEYS[table.name]
        put = change.put.get(name, {})
        inserts = [row for key, row in put.items() if key not in stored.get(name, {})]
        updates = [{**{c: v for c, v in row.items() if c not in ("scope", key_name)}, "b_key": key}
                   for key, row in put.items() if key in stored.get(name, {})]
        if updates:
            conn.execute(update(table).where(and_(table.c.scope == scope, table.c[key_name] == bindparam("b_key"))),
                         updates)
        if inserts:
            conn.execute(insert(table), inserts)
    for table in reversed(t.STATE_TABLES):
        keys = change.drop.get(table.name)
        if keys:
            conn.execute(delete(table).where(table.c.scope == scope, table.c[KEYS[table.name]] == bindparam("b_key")),
                         [{"b_key": key} for key in keys])


def _same(name: str, a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    json_columns = JSON_COLUMNS.get(name, ())
    return all(a.get(c) == b.get(c) or (c in json_columns and _same_json(name, c, a.get(c), b.get(c), a[KEYS[name]]))
               for c in set(a) | set(b))


def _same_json(table: str, column: str, a: Any, b: Any, key: str) -> bool:
    """Two JSON texts of one object: equal as JSON, or once each is written as this vmqos writes it."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    try:
        return json.loads(a) == json.loads(b) or canonical(table, column, a, key) == canonical(table, column, b, key)
    except (VmqosError, ValueError, TypeError, AttributeError):  # not a text vmqos reads: not the same
        return False


def _table(name: str) -> Table:
    return next(table for table in t.STATE_TABLES if table.name == name)
