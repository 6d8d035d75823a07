"""Reading and writing the monitor's tables (events, quarantines, usage) through a `Store`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from vmqos.core.analysis.usage import (
    GRANULARITIES,
    Counted,
    UsageKey,
    UsageTotal,
    period_start,
)
from vmqos.core.formats.hostfile import from_data, to_data
from vmqos.core.model.network import NetworkQos
from vmqos.store import monitor_tables as m
from vmqos.store.engine import check_scope
from vmqos.store.store import Store


@dataclass(frozen=True)
class Event:
    id: int
    scope: str
    at: datetime
    port: str
    instance: str | None
    direction: str | None
    kind: str
    detector: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "netns": self.scope or None, "at": self.at.isoformat(), "port": self.port,
                "instance": self.instance, "direction": self.direction, "kind": self.kind,
                "detector": self.detector, "message": self.message}


@dataclass(frozen=True)
class Quarantine:
    device: str
    qos: NetworkQos
    reason: str
    since: datetime


def add_event(store: Store, scope: str, at: datetime, port: str, kind: str, message: str, *,
              instance: str | None = None, direction: str | None = None, detector: str | None = None) -> int:
    check_scope(scope)
    with store._tx("recording an event", write=scope) as conn:
        result = conn.execute(insert(m.events).values(scope=scope, at=at, port=port, instance=instance,
                                                      direction=direction, kind=kind, detector=detector,
                                                      message=message))
        return int(result.inserted_primary_key[0])


def events(store: Store, scope: str, *, after_id: int = 0, since: datetime | None = None, port: str | None = None,
           limit: int = 1000) -> list[Event]:
    """Events in the order they happened (after `after_id`, at or after `since`), at most `limit`."""
    check_scope(scope)
    e = m.events.c
    query = select(e.id, e.scope, e.at, e.port, e.instance, e.direction, e.kind, e.detector, e.message).where(
        e.scope == scope, e.id > after_id)
    if since is not None:
        query = query.where(e.at >= since)
    if port is not None:
        query = query.where(e.port == port)
    with store._tx("reading events") as conn:
        rows = conn.execute(query.order_by(e.id.desc()).limit(limit)).all()
    return [Event(*row) for row in reversed(rows)]


def quarantines(store: Store, scope: str) -> dict[str, Quarantine]:
    check_scope(scope)
    q = m.quarantines.c
    with store._tx("reading quarantines") as conn:
        rows = conn.execute(select(q.device, q.qos, q.reason, q.since).where(q.scope == scope)).all()
    return {device: Quarantine(device, from_data(NetworkQos, json.loads(qos), path=("quarantine", device)), reason,
                               since) for device, qos, reason, since in rows}


def put_quarantine(store: Store, scope: str, quarantine: Quarantine) -> None:
    check_scope(scope)
    q = m.quarantines.c
    with store._tx("recording a quarantine", write=scope) as conn:
        conn.execute(delete(m.quarantines).where(q.scope == scope, q.device == quarantine.device))
        conn.execute(insert(m.quarantines).values(scope=scope, device=quarantine.device,
                                                  qos=json.dumps(to_data(quarantine.qos)), reason=quarantine.reason,
                                                  since=quarantine.since))


def lift_quarantine(store: Store, scope: str, device: str) -> bool:
    check_scope(scope)
    q = m.quarantines.c
    with store._tx("lifting a quarantine", write=scope) as conn:
        return conn.execute(delete(m.quarantines).where(q.scope == scope, q.device == device)).rowcount > 0


def usage_cursors(store: Store, scope: str) -> dict[UsageKey, Counted]:
    check_scope(scope)
    c = m.usage_cursors.c
    with store._tx("reading usage cursors") as conn:
        rows = conn.execute(select(c.direction, c.device, c.local_ip, c.remote_ip, c.bytes, c.packets)
                            .where(c.scope == scope)).all()
    return {UsageKey(d, dev, lo, re): Counted(b, p) for d, dev, lo, re, b, p in rows}


def _upsert(dialect: str, table: Any, rows: list[dict[str, Any]], keys: list[str], add: bool) -> Any:
    stmt = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(rows)
    value = {c: (table.c[c] + stmt.excluded[c]) if add else stmt.excluded[c] for c in ("bytes", "packets")}
    return stmt.on_conflict_do_update(index_elements=keys, set_=value)


def record_usage(store: Store, scope: str, at: datetime, counted: dict[UsageKey, Counted],
                 current: dict[UsageKey, Counted]) -> None:
    """Add `counted` to the hour and day totals of `at`, and move the cursors to `current`, in one
    transaction: a crash between the two can neither lose nor double an interval."""
    check_scope(scope)
    totals = [{"scope": scope, "device": k.device, "direction": k.direction, "local_ip": k.local_ip,
               "remote_ip": k.remote_ip, "granularity": g, "period_start": period_start(at, g),
               "bytes": v.bytes, "packets": v.packets} for k, v in counted.items() for g in GRANULARITIES]
    cursors = [{"scope": scope, "direction": k.direction, "device": k.device, "local_ip": k.local_ip,
                "remote_ip": k.remote_ip, "bytes": v.bytes, "packets": v.packets} for k, v in current.items()]
    with store._tx("recording usage", write=scope) as conn:
        dialect = conn.dialect.name
        for chunk in _chunks(totals, 500):
            conn.execute(_upsert(dialect, m.usage, chunk, [c.name for c in m.usage.primary_key], add=True))
        c = m.usage_cursors.c
        conn.execute(delete(m.usage_cursors).where(c.scope == scope))  # elements that expired go too
        for chunk in _chunks(cursors, 500):
            conn.execute(insert(m.usage_cursors), chunk)


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def usage(store: Store, scope: str, *, granularity: str = "hour", since: datetime | None = None,
          port: str | None = None) -> list[UsageTotal]:
    check_scope(scope)
    u = m.usage.c
    query = select(u.direction, u.device, u.local_ip, u.remote_ip, u.period_start, u.bytes, u.packets).where(
        u.scope == scope, u.granularity == granularity)
    if since is not None:
        query = query.where(u.period_start >= period_start(since, granularity))
    if port is not None:
        query = query.where(u.device == port)
    query = query.order_by(u.period_start, u.device, u.direction, u.bytes.desc())
    with store._tx("reading usage") as conn:
        rows = conn.execute(query).all()
    return [UsageTotal(UsageKey(d, dev, lo, re), granularity, start, b, p) for d, dev, lo, re, start, b, p in rows]
