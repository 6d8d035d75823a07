"""The fleet's events are pruned when a report brings new ones: the newest EVENTS_KEPT (all hosts
together) and none received more than EVENT_DAYS ago (store.fleet_status), on SQLite and PostgreSQL.

The bound is lowered to 5 for the test; the days are the real 7, with the receipt times given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vmqos.store import Store
from vmqos.store import fleet_status
from vmqos.store.fleet_status import HostRecord, ReportRows

pytestmark = pytest.mark.server

NOW = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)


def _report(store: Store, host: str, messages: list[str], at: datetime) -> None:
    events = [{"device": "vq-tap", "at": at, "kind": "detected", "message": m, "instance": None, "direction": None,
               "detector": None} for m in messages]
    fleet_status.save_report(store, host, ReportRows(None, events=events), at)


def _kept(store: Store) -> list[str]:
    return sorted(e.message for e in fleet_status.events(store, limit=1000))


def test_a_report_with_events_prunes_them_to_the_newest_kept_and_the_last_seven_days(db_url, monkeypatch):
    monkeypatch.setattr(fleet_status, "EVENTS_KEPT", 5)
    with Store(db_url) as store:
        for host in ("h1", "h2"):
            fleet_status.register(store, HostRecord(host, NOW, NOW, "test", None, "{}", None))
        _report(store, "h1", ["old1", "old2", "old3"], NOW - timedelta(days=9))
        _report(store, "h2", ["mid1", "mid2"], NOW - timedelta(days=3))  # 5 in all: nothing goes
        assert _kept(store) == ["mid1", "mid2", "old1", "old2", "old3"]
        _report(store, "h1", ["mid3"], NOW - timedelta(days=3))  # 6: the oldest goes, whichever host made it
        assert _kept(store) == ["mid1", "mid2", "mid3", "old2", "old3"]
        _report(store, "h1", [], NOW)  # a report without events prunes nothing
        assert len(_kept(store)) == 5
        _report(store, "h2", ["new1"], NOW)  # received 9 days before this one: gone
        assert _kept(store) == ["mid1", "mid2", "mid3", "new1"]
        assert [e.host for e in fleet_status.events(store, limit=10)] == ["h2", "h1", "h2", "h2"]  # newest first
