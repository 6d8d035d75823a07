"""Every host's uplink as the server wants it: one revisioned row per host (issue 16).

The uplink (the host's shared link, its capacity in bit/s, whether its guarantees may be
oversubscribed) is part of a host's desired state as its ports' rows are: a change takes the next
value of the fleet's global revision counter, inside the same writer transaction (the Neutron writer
lock, `store.fleet.desired_writer`), so that "what changed on my host since R" stays complete. A NULL
device is a tombstone: the uplink was removed and the agent releases its tree. A host has one row,
kept (tiny) after removal, so a tombstone is never compacted away from under an agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, String, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.store.fleet import DesiredWriter
from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store


class FleetUplinkRow(Base):
    __tablename__ = "fleet_uplinks"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str | None] = mapped_column(String)  # NULL: a tombstone (the uplink was removed)
    capacity_bps: Mapped[int | None] = mapped_column(BigInteger)
    oversubscribe: Mapped[bool] = mapped_column(Boolean)
    revision: Mapped[int] = mapped_column(BigInteger, index=True)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


fleet_uplinks = table_of(FleetUplinkRow)
_COLUMNS = ("host", "device", "capacity_bps", "oversubscribe", "revision", "changed_at")


@dataclass(frozen=True)
class UplinkRow:
    """One host's uplink row; `device` None: a tombstone."""

    host: str
    device: str | None
    capacity_bps: int | None
    oversubscribe: bool
    revision: int
    changed_at: datetime

    @property
    def live(self) -> bool:
        return self.device is not None


def _select(conn: Connection, *where: Any) -> list[UplinkRow]:
    u = fleet_uplinks.c
    return [UplinkRow(*row) for row in conn.execute(select(*(u[c] for c in _COLUMNS)).where(*where))]


def read(store: Store, host: str) -> UplinkRow | None:
    """The host's row (live or a tombstone), None when it never had an uplink."""
    with store._tx(f"reading the uplink of host {host}") as conn:
        found = _select(conn, fleet_uplinks.c.host == host)
    return found[0] if found else None


def live_devices(store: Store, hosts: list[str]) -> dict[str, str]:
    """Host -> its live uplink's device, for the hosts given."""
    u = fleet_uplinks.c
    with store._tx("reading the hosts' uplinks") as conn:
        return {r.host: r.device for r in _select(conn, u.host.in_(hosts), u.device.is_not(None))
                if r.device is not None}


def hosts_changed_since(store: Store, since: int) -> set[str]:
    """The hosts whose uplink changed above `since` (the index on revision): what the long poll's ticker
    wakes besides the hosts of the desired rows."""
    u = fleet_uplinks.c
    with store._tx("reading which uplinks changed") as conn:
        return {str(h) for h in conn.execute(select(u.host).where(u.revision > since)).scalars()}


def existing(w: DesiredWriter, host: str) -> UplinkRow | None:
    """The host's row, inside the writer's transaction."""
    found = _select(w.conn, fleet_uplinks.c.host == host)
    return found[0] if found else None


def write(w: DesiredWriter, host: str, device: str | None, capacity_bps: int | None, oversubscribe: bool) -> UplinkRow:
    """Write the host's row (device None: a tombstone) with the next revision, inside the writer's transaction."""
    revision = w.next_revision()
    values = {"device": device, "capacity_bps": capacity_bps, "oversubscribe": oversubscribe, "revision": revision,
              "changed_at": w.at}
    u = fleet_uplinks.c
    if not w.conn.execute(update(fleet_uplinks).where(u.host == host).values(**values)).rowcount:
        w.conn.execute(insert(fleet_uplinks).values(host=host, **values))
    return UplinkRow(host, device, capacity_bps, oversubscribe, revision, w.at)
