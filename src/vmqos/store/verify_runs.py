"""A port's verify runs as `vmqos verify --server` uploaded them: a summary (JSON) and a PNG each.

Only the KEEP newest of a (host, device) are kept: each insert deletes the older ones in the same
transaction, under the host's writer lock, so a port verified every minute holds a bounded number
of plots (KEEP x services.verify_wire.MAX_PLOT_BYTES at worst) and the list is one indexed read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, LargeBinary, String, Text, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

KEEP = 20  # runs per port


class VerifyRunRow(Base):
    __tablename__ = "verify_runs"
    __table_args__ = (Index("ix_verify_runs_host_device", "host", "device", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String)
    device: Mapped[str] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(UtcDateTime)  # when the run's load started
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text)  # JSON of services.verify_wire.VerifyRunUpload without its plot
    plot: Mapped[bytes | None] = mapped_column(LargeBinary)  # the PNG; NULL: uploaded without one


verify_runs = table_of(VerifyRunRow)
_COLUMNS = ("id", "host", "device", "at", "uploaded_at", "ok", "summary")


@dataclass(frozen=True)
class VerifyRunRecord:
    id: int
    host: str
    device: str
    at: datetime
    uploaded_at: datetime
    ok: bool
    summary: str  # JSON
    has_plot: bool


def add(store: Store, host: str, device: str, at: datetime, ok: bool, summary: str, plot: bytes | None,
        uploaded_at: datetime, keep: int = KEEP) -> int:
    """Store a run and drop the port's runs beyond the `keep` newest; the new run's id."""
    v = verify_runs.c
    with store._tx(f"recording a verify run of {device} on host {host}", write=f"fleet-host:{host}") as conn:
        made = conn.execute(insert(verify_runs).values(host=host, device=device, at=at, uploaded_at=uploaded_at,
                                                       ok=ok, summary=summary, plot=plot))
        new_id = int(made.inserted_primary_key[0])
        kept = select(v.id).where(v.host == host, v.device == device).order_by(v.id.desc()).limit(keep)
        conn.execute(delete(verify_runs).where(v.host == host, v.device == device,
                                               v.id.not_in(kept.scalar_subquery())))
    return new_id


def runs(store: Store, host: str, device: str, *, limit: int = KEEP) -> list[VerifyRunRecord]:
    """The port's runs, newest first, without their plots."""
    v = verify_runs.c
    query = (select(*(v[c] for c in _COLUMNS), v.plot.is_not(None)).where(v.host == host, v.device == device)
             .order_by(v.id.desc()).limit(limit))
    with store._tx("reading a port's verify runs") as conn:
        return [VerifyRunRecord(*row) for row in conn.execute(query)]


def plot(store: Store, host: str, device: str, run_id: int) -> bytes | None:
    """The run's PNG; None when the port has no such run or it came without a plot."""
    v = verify_runs.c
    with store._tx("reading a verify run's plot") as conn:
        found: bytes | None = conn.execute(select(v.plot).where(v.host == host, v.device == device,
                                                                 v.id == run_id)).scalar()
    return None if found is None else bytes(found)
