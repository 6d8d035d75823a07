"""The agent's cache: the desired rows the server sent for its host, and the revision they are at.

`vmqos agent` keeps them in its own store (SQLite by default, beside the scope's desired state, its
marks in `neutron_enforced` and the monitor's tables), so that a restart, a reboot or a dead server
never removes a limit: on start it enforces what is cached before it asks the server anything,
then resumes the watch from the cached revision.

The rows and the revision change in ONE transaction: a crash between them would resume the watch
after changes it never kept (and miss them for good) or keep changes under an older revision (and
apply them twice, which is harmless, but the first is not).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Integer, String, Text, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.core.fleet.desired import DesiredPort, DesiredUplink, policy_of
from vmqos.core.formats.hostfile.dump import dump_policy
from vmqos.store import agent_uplink
from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

WRITER = "agent"  # the writer lock of the cache's tables


class AgentDesiredRow(Base):
    """A live desired row of the agent's host (a tombstone deletes its row)."""

    __tablename__ = "agent_desired"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    port_id: Mapped[str | None] = mapped_column(String)
    source: Mapped[str] = mapped_column(String)
    revision: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(Text)  # JSON: the host file's policy (its QoS, and origin)
    addresses: Mapped[str | None] = mapped_column(Text)  # JSON list of the instance's IPs; NULL: none


class AgentWatchRow(Base):
    """Where the host's watch stands: the server's revision its rows are at."""

    __tablename__ = "agent_watch"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


agent_desired = table_of(AgentDesiredRow)
agent_watch = table_of(AgentWatchRow)


def cached(store: Store, host: str) -> tuple[int | None, dict[str, DesiredPort]]:
    """(the revision, device -> row) cached for `host`; (None, {}) when nothing is."""
    d, w = agent_desired.c, agent_watch.c
    with store._tx(f"reading the agent's cache of host {host!r}") as conn:
        revision = conn.execute(select(w.revision).where(w.host == host)).scalar()
        rows = conn.execute(select(d.device, d.port_id, d.source, d.revision, d.policy, d.addresses)
                            .where(d.host == host)).all()
    ports = {device: DesiredPort(device, rev, policy_of(device, json.loads(policy)), port_id, source,
                                 tuple(json.loads(addresses)) if addresses else ())
             for device, port_id, source, rev, policy, addresses in rows}
    return revision, ports


def save(store: Store, host: str, revision: int, changes: list[DesiredPort], *, replace_all: bool = False,
         uplink: tuple[DesiredUplink | None] | None = None) -> None:
    """Keep `changes` (a tombstone deletes its device's row) and `revision`, in one transaction;
    `replace_all`: `changes` are every live row (the others go). `uplink`: (the host's uplink now,) when
    it changed (store.agent_uplink), in the same transaction."""
    d, w = agent_desired.c, agent_watch.c
    rows = [{"host": host, "device": p.device, "port_id": p.port_id, "source": p.source, "revision": p.revision,
             "policy": json.dumps(dump_policy(p.policy), sort_keys=True),
             "addresses": json.dumps(list(p.addresses)) if p.addresses else None}
            for p in changes if p.policy is not None]
    with store._tx(f"saving the agent's cache of host {host!r}", write=WRITER) as conn:
        if replace_all:
            conn.execute(delete(agent_desired).where(d.host == host))
        else:
            for p in changes:
                conn.execute(delete(agent_desired).where(d.host == host, d.device == p.device))
        if rows:
            conn.execute(insert(agent_desired), rows)
        if uplink is not None:
            agent_uplink.keep(conn, host, uplink[0])
        conn.execute(delete(agent_watch).where(w.host == host))
        conn.execute(insert(agent_watch).values(host=host, revision=revision, updated_at=datetime.now(UTC)))
