"""The agent's cache of its host's uplink (issue 16): the one the server last sent, with its revision.

Kept beside the cached rows (`store.agent`) and saved in the same transaction as the revision they
are at (`store.agent.save(uplink=...)`), so that a restart enforces the cached uplink before the
server is asked anything, as it does the ports. No row: the host has no uplink.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Connection, String, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.core.fleet.desired import DesiredUplink
from vmqos.core.model.host import UplinkSpec
from vmqos.store.schema import Base, table_of
from vmqos.store.store import Store


class AgentUplinkRow(Base):
    __tablename__ = "agent_uplinks"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String)
    capacity_bps: Mapped[int] = mapped_column(BigInteger)
    oversubscribe: Mapped[bool] = mapped_column(Boolean)
    revision: Mapped[int] = mapped_column(BigInteger)


agent_uplinks = table_of(AgentUplinkRow)


def cached(store: Store, host: str) -> DesiredUplink | None:
    u = agent_uplinks.c
    with store._tx(f"reading the agent's cached uplink of host {host!r}") as conn:
        row = conn.execute(select(u.device, u.capacity_bps, u.oversubscribe, u.revision).where(u.host == host)).first()
    if row is None:
        return None
    device, capacity, over, revision = row
    return DesiredUplink(int(revision), UplinkSpec(device, int(capacity), bool(over)))


def keep(conn: Connection, host: str, uplink: DesiredUplink | None) -> None:
    """Inside the cache's save transaction: the host's uplink now (None or a tombstone: none)."""
    u = agent_uplinks.c
    conn.execute(delete(agent_uplinks).where(u.host == host))
    if uplink is not None and uplink.spec is not None:
        conn.execute(insert(agent_uplinks).values(host=host, device=uplink.spec.device,
                                                  capacity_bps=uplink.spec.capacity_bps,
                                                  oversubscribe=uplink.spec.oversubscribe, revision=uplink.revision))
