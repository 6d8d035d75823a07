"""The agent's decisions over the fake kernel and the fake server: no root, no netlink.

The kernel is `vmqos.drivers.fake` (what the reconciler writes, in order, in memory); the server
is tests/fakefeed.py. The agent runs its real threads, with the link watcher, libvirt and the
monitor left out (they need a kernel: tests/kernel/test_agent*.py).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakefeed import FakeFeed, FakeServer, wait_for
from vmqos.agent.daemon import Agent, AgentSettings
from vmqos.core.desired.ports import PortChange
from vmqos.core.plan.names import ifb_name
from vmqos.core.plan.objects import HtbClass
from vmqos.drivers.fake import FakeKernel, fake_drivers
from vmqos.reconcile.execute import Reconciler
from vmqos.services.ports import set_port
from vmqos.store import Store
from vmqos.store import neutron_ports as marks

RATE = {"egress": {"rate": 3_000_000}}


class Host:
    """A fake kernel, a cache store and a fake server; `agent()` starts an agent over them."""

    def __init__(self, tmp: Path) -> None:
        self.kernel = FakeKernel(["tap0", "tap1", "tap2"])
        self.server = FakeServer()
        self.db = f"sqlite:///{tmp / 'agent.db'}"
        self.agents: list[tuple[Agent, Store]] = []

    def reconciler(self, netns: str | None) -> Reconciler:
        tc, nft, batch = fake_drivers(self.kernel, netns)
        return Reconciler(netns, tc=tc, nft=nft, batch=batch)

    def agent(self, **settings: Any) -> Agent:
        store = Store(self.db)
        options = {"watch_links": False, "use_libvirt": False, "monitor": None, "wait_s": 0.5, "report_s": 0.1,
                   "retry_s": 0.2, "backoff_max_s": 0.2, **settings}
        agent = Agent(AgentSettings("http://fake", "compute1", **options), FakeFeed(self.server), store,
                      kernel=self.reconciler)
        self.agents.append((agent, store))
        return agent.start()

    def stop(self, agent: Agent) -> None:
        for entry in list(self.agents):
            if entry[0] is agent:
                agent.stop()
                entry[1].close()
                self.agents.remove(entry)

    def rates(self, device: str) -> set[int]:
        """The rates of the port's buckets (class 1:1) on the device and its IFB (where what the instance
        sends is shaped); the leaves below share them out."""
        objects = self.kernel.objects(device) + self.kernel.objects(ifb_name(device))
        return {o.rate_bps for o in objects if isinstance(o, HtbClass) and o.classid == "1:1"}

    def held(self, device: str) -> bool:
        return bool(self.kernel.objects(device) or self.kernel.objects(ifb_name(device)))


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    yield h
    for agent, store in h.agents:
        agent.stop()
        store.close()


def test_a_change_reaches_the_kernel_and_a_tombstone_releases_only_its_device(host):
    host.server.put("tap0", RATE)
    agent = host.agent()
    wait_for("tap0 limited", lambda: 3_000_000 in host.rates("tap0"))
    host.server.put("tap1", {"egress": {"rate": 5_000_000}}, port_id="p-1", source="neutron")
    wait_for("tap1 limited", lambda: 5_000_000 in host.rates("tap1"))
    host.server.put("tap0", {"egress": {"rate": 2_000_000}})
    wait_for("tap0 at its new rate", lambda: host.rates("tap0") == {2_000_000})
    host.server.delete("tap0")
    wait_for("tap0 released", lambda: not host.held("tap0"))
    assert host.rates("tap1") == {5_000_000}

    def stored() -> tuple[dict[str, str], list[str]]:
        with Store(host.db, read_only=True) as store:
            return marks.enforced(store, ""), [p.device for _, p in store.load("").ports()]
    wait_for("tap0 forgotten in the store", lambda: stored() == ({"tap1": "p-1"}, ["tap1"]))
    released = wait_for("the release reported", lambda: [p for r in host.server.reports for p in r["ports"]
                                                          if p["device"] == "tap0" and p["revision"] == 4])
    assert released[0] == {"device": "tap0", "revision": 4, "status": "in_sync", "message": "released"}
    report = wait_for("a report at revision 4", lambda: [r for r in host.server.reports if r["applied_revision"] == 4])
    assert {"device": "tap1", "revision": 2, "status": "in_sync", "message": ""} in report[-1]["ports"]
    wait_for("the release reported once", lambda: "tap0" not in {p["device"] for p in host.server.reports[-1]["ports"]})
    assert agent.follower.reloads == 1


def test_the_cache_is_enforced_before_the_server_is_asked_and_while_it_is_down(host, caplog):
    host.server.put("tap0", RATE)
    first = host.agent()
    wait_for("tap0 limited", lambda: 3_000_000 in host.rates("tap0"))
    host.stop(first)
    assert 3_000_000 in host.rates("tap0")  # stopping removed nothing
    host.kernel = FakeKernel(["tap0", "tap1", "tap2"])  # the host rebooted: its devices came back empty
    host.server.set_down(True)
    host.server.calls.clear()
    caplog.set_level(logging.INFO, logger="vmqos")
    agent = host.agent()
    assert 3_000_000 in host.rates("tap0")  # enforced by start(), before any thread ran
    wait_for("three failed tries", lambda: host.server.calls.count("register") >= 3)
    failures = [r for r in caplog.records if "following the desired state failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]  # once per state change, not per try
    host.server.put("tap1", RATE)  # a change made while the agent cannot see it
    host.server.set_down(False)
    wait_for("tap1 limited once the server is back", lambda: 3_000_000 in host.rates("tap1"))
    assert agent.follower.reloads == 0  # resumed from the cached revision: no full read
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_revision_gone_reloads_and_touches_only_what_differs(host):
    for device in ("tap0", "tap1"):
        host.server.put(device, RATE)
    agent = host.agent()
    wait_for("both limited", lambda: 3_000_000 in host.rates("tap0") and 3_000_000 in host.rates("tap1"))
    host.stop(agent)
    host.server.delete("tap0")
    host.server.put("tap2", RATE)
    host.server.compact()  # the tombstone of tap0 is gone: only a full read can tell
    host.kernel.clear_journal()
    agent = host.agent(resync_s=3600)
    wait_for("tap0 released and tap2 limited", lambda: not host.held("tap0") and host.rates("tap2"))
    assert agent.follower.reloads == 1
    time.sleep(0.3)
    touched = {c.text for c in host.kernel.writes()}
    assert not any("tap1" in text for text in touched), touched  # unchanged: not written


def test_a_device_that_a_host_file_manages_is_left_alone_and_reported_as_drift(host):
    with Store(host.db) as store:
        set_port(store, None, "tap0", PortChange(outbound="1000,0,0"), kernel=host.reconciler)
    host.server.put("tap0", RATE)
    host.agent()
    report = wait_for("a report with tap0's status",
                      lambda: [r for r in host.server.reports if r["ports"] and r["ports"][0]["status"] == "drift"])
    assert "leaves it alone" in report[-1]["ports"][0]["message"]
    assert host.rates("tap0") == {8_000_000}  # the operator's 1000 kB/s, untouched


def test_a_missing_device_is_pending_then_placed_by_a_retry(host):
    host.server.put("tap9", RATE)
    agent = host.agent()
    wait_for("tap9 pending", lambda: [r for r in host.server.reports
                                      if r["ports"] and r["ports"][0]["status"] == "pending"])
    host.kernel.add_port("tap9")
    wait_for("tap9 limited by a retry", lambda: 3_000_000 in host.rates("tap9"))
    wait_for("tap9 in sync", lambda: agent.statuses()[0].status == "in_sync")


def test_resync_repairs_drift(host):
    host.server.put("tap0", RATE)
    agent = host.agent(resync_s=0.3)
    wait_for("tap0 limited", lambda: 3_000_000 in host.rates("tap0"))
    host.kernel.devices[ifb_name("tap0")].objects.clear()  # someone deleted the qdiscs by hand
    wait_for("repaired", lambda: 3_000_000 in host.rates("tap0"))
    assert agent.passes >= 1


# ------------------------------------------------------------------ per-IP usage in the reports


def _totals(at, *entries):
    """Hour and day totals of `at` as the monitor folds them: (device, direction, remote, bytes) each."""
    from vmqos.core.analysis.usage import UsageKey, UsageTotal, period_start

    return [UsageTotal(UsageKey(d, dev, "10.0.0.5", remote), g, period_start(at, g), b, b // 100)
            for dev, d, remote, b in entries for g in ("hour", "day")]


def test_port_usage_keeps_the_current_windows_and_the_biggest_pairs_of_each():
    from datetime import UTC, datetime, timedelta

    from vmqos.core.fleet.report import port_usage, usage_changes

    at = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
    totals = _totals(at, *[("tap0", "egress", f"192.0.2.{i}", 1000 * i) for i in range(1, 8)],
                     ("tap0", "ingress", "192.0.2.1", 50), ("tap1", "egress", "192.0.2.1", 10))
    totals += _totals(at - timedelta(days=1), ("tap0", "egress", "198.51.100.1", 10**9))  # yesterday: left out
    found = port_usage(totals, at, top=3)
    assert sorted(found) == ["tap0", "tap1"]
    lines = [(ln.direction, ln.granularity, ln.remote_ip, ln.bytes) for ln in found["tap0"].lines]
    assert lines == [("egress", "day", "192.0.2.7", 7000), ("egress", "day", "192.0.2.6", 6000),
                     ("egress", "day", "192.0.2.5", 5000), ("egress", "hour", "192.0.2.7", 7000),
                     ("egress", "hour", "192.0.2.6", 6000), ("egress", "hour", "192.0.2.5", 5000),
                     ("ingress", "day", "192.0.2.1", 50), ("ingress", "hour", "192.0.2.1", 50)]
    earlier = port_usage(_totals(at - timedelta(hours=1), ("tap1", "egress", "198.51.100.1", 9)), at)
    assert [(ln.granularity, ln.bytes) for ln in earlier["tap1"].lines] == [("day", 9)]  # today's, not this hour's
    assert usage_changes(found, found) == {}
    again = port_usage(_totals(at, ("tap1", "egress", "192.0.2.1", 20)), at)
    assert list(usage_changes({**found, **again}, found)) == ["tap1"]

    from vmqos.core.fleet.report import AgentReport, to_wire
    from vmqos.services.fleet_wire import Report

    body = Report.model_validate(to_wire(AgentReport(None, usage=tuple(found.values()))))  # as the feed sends it
    assert [(u.device, len(u.lines)) for u in body.usage] == [("tap0", 8), ("tap1", 2)]
    assert body.usage[0].lines[0].period_start == at.replace(hour=0, minute=0)


def test_the_reporter_sends_a_ports_usage_when_it_changed_and_again_after_a_refused_report(tmp_path):
    from datetime import UTC, datetime

    from vmqos.agent.reports import Reporter
    from vmqos.core.analysis.usage import Counted, UsageKey
    from vmqos.store import monitor as mstore

    server, store = FakeServer(), Store(f"sqlite:///{tmp_path / 'agent.db'}")
    clock = [0.0]
    try:
        reporter = Reporter(FakeFeed(server), store, None, "http://fake", statuses=lambda: [], applied=lambda: None,
                            monitor=None, usage_s=60.0, clock=lambda: clock[0])

        def fold(remote: str, bytes_: int) -> None:
            key = UsageKey("egress", "tap0", "10.0.0.5", remote)
            mstore.record_usage(store, "", datetime.now(UTC), {key: Counted(bytes_, 1)}, {key: Counted(bytes_, 1)})

        assert reporter.step().usage == ()  # nothing counted yet
        assert "usage" not in server.reports[-1]  # an older server never sees the field it does not know
        fold("192.0.2.1", 5000)
        assert reporter.step().usage == ()  # read at most every usage_s
        clock[0] = 60.0
        sent = reporter.step().usage
        assert [(u.device, [(ln.granularity, ln.remote_ip, ln.bytes) for ln in u.lines]) for u in sent] == \
            [("tap0", [("day", "192.0.2.1", 5000), ("hour", "192.0.2.1", 5000)])]
        assert [u["device"] for u in server.reports[-1]["usage"]] == ["tap0"]
        clock[0] = 120.0
        assert reporter.step().usage == ()  # unchanged: not sent again
        fold("192.0.2.2", 700)
        server.set_down(True)
        clock[0] = 180.0
        assert len(reporter.step().usage) == 1  # built, not taken
        server.set_down(False)
        again = reporter.step().usage  # the next report carries it
        assert [ln.remote_ip for u in again for ln in u.lines] == ["192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.2"]
        assert reporter.step().usage == ()
    finally:
        store.close()


def test_a_report_carries_at_most_usage_ports_ports_usage_and_the_rest_follow(tmp_path):
    from datetime import UTC, datetime

    from vmqos.agent.reports import Reporter
    from vmqos.core.analysis.usage import Counted, UsageKey
    from vmqos.store import monitor as mstore

    server, store = FakeServer(), Store(f"sqlite:///{tmp_path / 'agent.db'}")
    try:
        reporter = Reporter(FakeFeed(server), store, None, "http://fake", statuses=lambda: [], applied=lambda: None,
                            monitor=None, usage_s=3600.0, usage_ports=2)
        keys = {UsageKey("ingress", f"tap{i}", "10.0.0.5", "192.0.2.1"): Counted(100 * (i + 1), 1) for i in range(5)}
        mstore.record_usage(store, "", datetime.now(UTC), keys, keys)
        sent = [[u.device for u in reporter.step().usage] for _ in range(4)]
        assert sent == [["tap0", "tap1"], ["tap2", "tap3"], ["tap4"], []]
        assert [len(r.get("usage", [])) for r in server.reports] == [2, 2, 1, 0]
    finally:
        store.close()


def _uplink_classes(host: Host) -> dict[str, set[int]]:
    """The rates of the port classes (not the link's 1:1 nor the default 1:10) of the uplink's two trees."""
    return {dev: {o.rate_bps for o in host.kernel.objects(dev)
                  if isinstance(o, HtbClass) and o.classid not in ("1:1", "1:10")}
            for dev in ("wan0", ifb_name("wan0"))}


def test_the_servers_uplink_is_planned_refused_when_oversubscribed_and_released(tmp_path):
    host = Host(tmp_path)
    host.kernel = FakeKernel(["tap0", "tap1", "wan0"])
    guarantee = {"egress": {"rate": 50_000_000, "min": 30_000_000}, "ingress": {"min": 20_000_000}}
    host.server.put("tap0", guarantee, addresses=["10.0.0.10", "fd00::a"])
    host.server.put("tap1", RATE)
    agent = host.agent()
    try:
        wait_for("tap0 limited", lambda: 50_000_000 in host.rates("tap0"))
        assert not host.held("wan0")
        host.server.set_uplink({"device": "wan0", "capacity_bps": 100_000_000})
        wait_for("tap0's classes on the uplink", lambda: _uplink_classes(host) == {
            "wan0": {30_000_000}, ifb_name("wan0"): {20_000_000}})
        wait_for("the uplink in sync", lambda: host.server.reports and {
            "device": "wan0", "revision": 3, "status": "in_sync", "message": ""} in host.server.reports[-1]["ports"])

        host.server.set_uplink({"device": "wan0", "capacity_bps": 25_000_000})  # under tap0's 30 Mbit/s
        wait_for("the refused tree gone", lambda: not host.held("wan0"))
        error = wait_for("the refusal reported", lambda: [p for p in host.server.reports[-1]["ports"]
                                                           if p["device"] == "wan0" and p["status"] == "error"])
        assert "tap0 30 Mbit/s" in error[0]["message"] and "25 Mbit/s" in error[0]["message"], error
        assert host.rates("tap0") == {50_000_000} and host.rates("tap1") == {3_000_000}  # the ports' own limits

        host.server.set_uplink({"device": "wan0", "capacity_bps": 25_000_000, "oversubscribe": True})
        scaled = wait_for("the tree back, scaled", lambda: _uplink_classes(host)["wan0"])
        assert max(scaled) < 25_000_000, scaled

        # a restart while the server is down enforces the cached uplink: the tree stays as it is
        host.stop(agent)
        host.server.set_down(True)
        agent = host.agent()
        assert agent.follower.uplink is not None and agent.follower.uplink.spec is not None
        assert agent.follower.uplink.spec.capacity_bps == 25_000_000
        time.sleep(0.5)  # a few passes (not a timed assertion: what must hold is that nothing changed)
        assert _uplink_classes(host)["wan0"] == scaled and agent.enforcer.uplink.placed is not None
        host.server.set_down(False)

        host.server.set_uplink(None)
        wait_for("the uplink released", lambda: not host.held("wan0"))
        wait_for("the release reported", lambda: {"device": "wan0", "revision": 6, "status": "in_sync",
                                                  "message": "released"} in host.server.reports[-1]["ports"])
        assert host.rates("tap0") == {50_000_000}
        with Store(host.db, read_only=True) as store:
            assert store.load("").uplink is None and "wan0" not in marks.enforced(store, "")
    finally:
        agent.stop()
        for _, store in host.agents:
            store.close()
