"""The monitor's tables: flood events, quarantines in force, and per-IP usage totals.

They live beside the desired state but are never touched by a save of it: re-applying a host
file must not lift a quarantine or forget an hour of accounting.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.store.schema import Base, UtcDateTime, table_of


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_scope", "scope", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    port: Mapped[str] = mapped_column(String)
    instance: Mapped[str | None] = mapped_column(String)
    direction: Mapped[str | None] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)  # "detected", "ended", "quarantined", "lifted", "failed"
    detector: Mapped[str | None] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)


class QuarantineRow(Base):
    __tablename__ = "quarantines"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    qos: Mapped[str] = mapped_column(Text)  # JSON, the host file's shape of NetworkQos
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(UtcDateTime)


class UsageRow(Base):
    """Bytes and packets between one instance address and one remote address, per hour and per day."""

    __tablename__ = "usage"
    __table_args__ = (Index("ix_usage_period", "scope", "granularity", "period_start"),)

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    direction: Mapped[str] = mapped_column(String, primary_key=True)  # ingress (to the instance) / egress
    local_ip: Mapped[str] = mapped_column(String, primary_key=True)
    remote_ip: Mapped[str] = mapped_column(String, primary_key=True)
    granularity: Mapped[str] = mapped_column(String, primary_key=True)  # "hour" or "day"
    period_start: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    packets: Mapped[int] = mapped_column(BigInteger)


class UsageCursorRow(Base):
    """The last counter value seen for each accounting set element, so a restart counts nothing twice."""

    __tablename__ = "usage_cursors"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    direction: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    local_ip: Mapped[str] = mapped_column(String, primary_key=True)
    remote_ip: Mapped[str] = mapped_column(String, primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    packets: Mapped[int] = mapped_column(BigInteger)


events = table_of(EventRow)
quarantines = table_of(QuarantineRow)
usage = table_of(UsageRow)
usage_cursors = table_of(UsageCursorRow)
