"""The reconciler over the in-memory fake kernel: order, replace-only, rollback, adoption, drift, no root."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
    TrafficMatch,
)
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import chain_from, chain_to, ifb_name
from vmqos.core.plan.objects import ForeignFilter, IfbLink, NftChain, NftRule, NftSet, Qdisc
from vmqos.drivers.fake import FakeKernel, fake_drivers
from vmqos.reconcile.execute import Reconciler

from tests.reconcile_steps import in_sync, settle

PORTS = ("tap0", "tap1")


def state(rate: int, devices=PORTS, mode: EgressMode = EgressMode.SHAPE, pps: int | None = 2000,
          classes: bool = False) -> HostState:
    shares = (TrafficClass("web", 60, TrafficMatch("tcp", (80, 443))), TrafficClass("rest", 40)) if classes else ()
    qos = NetworkQos(
        ingress=DirectionQos(bandwidth=BandwidthLimit(rate), packet_rate=PacketRateLimit(pps) if pps else None,
                             classes=shares),
        egress=DirectionQos(bandwidth=BandwidthLimit(rate // 2), dscp=18))
    return HostState(instances={d: InstanceSpec(d, ports=(PortSpec(d, limits=qos, egress_mode=mode),))
                                for d in devices})


def reconciler(kernel: FakeKernel, netns: str | None = None) -> Reconciler:
    tc, nft, batch = fake_drivers(kernel, netns)
    return Reconciler(netns, tc=tc, nft=nft, batch=batch)


def left(rec: Reconciler, port: str) -> list:
    return [o for o in rec.observe([port]).objects[port] if not isinstance(o, NftSet)]  # sets are shared


def index(kernel: FakeKernel, text: str) -> int:
    return next(i for i, c in enumerate(kernel.journal) if c.write and text in c.text)


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel(PORTS)


# -- order -----------------------------------------------------------------------------------------

def test_from_empty_links_then_queues_then_nft(kernel):
    rec = reconciler(kernel)
    results, record = settle(rec, state(20_000_000))
    assert all(r.writes > 5 for r in results) and set(record) == set(PORTS)
    tools = [c.tool for c in kernel.writes()]
    # every ip line, then tc, then the AQM programs (bpf(2) and netlink, on the HTB roots tc made), then nft
    assert tools == sorted(tools, key=["ip", "tc", "netlink", "nft"].index)
    assert not any(" del" in c.text or c.text.startswith("delete") for c in kernel.writes())
    assert in_sync(rec, state(20_000_000))


def test_in_bulk_nft_runs_beside_tc_and_a_forwarding_chain_waits_for_its_ifb(kernel, monkeypatch):
    import threading

    monkeypatch.setattr("vmqos.reconcile.execute.CONCURRENT_MIN_PORTS", 1)
    rec = reconciler(kernel)
    threads: list[str] = []
    run_nft = rec._run_nft
    monkeypatch.setattr(rec, "_run_nft", lambda ops, failed, *encoded: (
        threads.append(threading.current_thread().name), run_nft(ops, failed, *encoded))[1])
    settle(rec, state(20_000_000))
    assert threads and threads[0] != threading.main_thread().name  # the early nft ran beside ip and tc
    for port in PORTS:
        assert index(kernel, f"link set {ifb_name(port)} up") < index(kernel, f"add chain {chain_from(port)}")
    assert in_sync(rec, state(20_000_000))


# -- replace-only ----------------------------------------------------------------------------------

def _limiters_always_there(kernel: FakeKernel) -> None:
    for port in PORTS:
        for dev in (port, ifb_name(port)):
            root = kernel.root(dev)
            assert root is not None and root.qdisc_kind == "htb", f"{dev} unlimited for a moment"
        assert chain_from(port) in kernel.chains and chain_to(port) in kernel.chains


@pytest.mark.parametrize("netlink", [True, False])
def test_a_rate_change_is_replaced_in_place_never_deleted_and_re_added(kernel, monkeypatch, netlink):
    rec = reconciler(kernel)
    _, record = settle(rec, state(20_000_000, classes=True))
    if not netlink:  # as many changes as a bulk change: tc -batch, still replace-only
        monkeypatch.setattr("vmqos.reconcile.execute.LIVE_REPLACE_LIMIT", 0)
    kernel.clear_journal()
    kernel.watchers.append(_limiters_always_there)
    results, _ = settle(rec, state(40_000_000, classes=True), applied=record, verify=False)
    assert all(op.action == "replace" for r in results for op in r.ops)
    writes = kernel.writes()
    # the egress direction's AQM (no traffic classes there) changes in its map, through the driver, either way
    assert writes and {c.tool for c in writes} == ({"netlink"} if netlink else {"tc", "netlink"})
    assert all(" replace " in f" {c.text} " or c.text.startswith("vmqos aqm program") for c in writes)
    assert in_sync(rec, state(40_000_000, classes=True))


# -- rollback --------------------------------------------------------------------------------------

@pytest.mark.parametrize("held", [None, 10_000_000])
@pytest.mark.parametrize("concurrent", [False, True])
@pytest.mark.parametrize("failing", ["tc", "ip", "nft"])
def test_a_failing_port_is_rolled_back_and_the_other_keeps_its_new_state(kernel, monkeypatch, failing, concurrent,
                                                                        held):
    """From empty (held None) or from an applied rate: the failed port gets back exactly what it held."""
    if concurrent:
        monkeypatch.setattr("vmqos.reconcile.execute.CONCURRENT_MIN_PORTS", 1)
    rec = reconciler(kernel)
    if held:
        settle(rec, state(held))
    plans = plan_host(state(20_000_000))
    bad = {"tc": Qdisc("tap1", "1:99", "99:", "bfifo", limit_bytes=100_000),
           "ip": IfbLink("vqi-name-too-long-for-linux"),
           "nft": NftChain("to_tap1_bad", "egress", "tap1", 0, (NftRule("vq_no_such_counter"),))}[failing]
    plans["tap1"] = replace(plans["tap1"], objects=plans["tap1"].objects + (bad,))
    results, record = rec.reconcile(plans)
    by_port = {r.port: r for r in results}
    assert by_port["tap0"].error is None and "tap0" in record
    assert by_port["tap1"].error and by_port["tap1"].rolled_back and "tap1" not in record
    assert {"tc": "1:99", "ip": "vqi-name-too-long", "nft": "nftables transaction"}[failing] in by_port["tap1"].error
    assert in_sync(rec, state(20_000_000, devices=("tap0",)))
    if held:
        assert in_sync(rec, state(held, devices=("tap1",)))
    else:
        assert left(rec, "tap1") == []


def test_a_failed_live_change_puts_the_port_back_to_what_it_held(kernel):
    rec = reconciler(kernel)
    settle(rec, state(10_000_000))
    kernel.fail("class replace dev tap1 parent 1:1", "RTNETLINK answers: Invalid argument", times=1)
    results, record = rec.reconcile(plan_host(state(60_000_000)))
    by_port = {r.port: r for r in results}
    assert by_port["tap1"].rolled_back and "Invalid argument" in (by_port["tap1"].error or "")
    assert set(record) == {"tap0"}
    assert in_sync(rec, state(10_000_000, devices=("tap1",))) and in_sync(rec, state(60_000_000, devices=("tap0",)))


def test_an_nft_timeout_fails_every_port_once_and_rolls_them_back(kernel):
    rec = reconciler(kernel)
    kernel.nft_timeout = True
    results, record = rec.reconcile(plan_host(state(20_000_000)))
    assert not record and all("did not finish" in (r.error or "") and r.rolled_back for r in results)
    assert len([c for c in kernel.journal if c.text == "timed out"]) == 1  # not retried port by port
    kernel.nft_timeout = False
    assert all(left(rec, p) == [] for p in PORTS)


# -- adoption --------------------------------------------------------------------------------------

def test_a_kernel_that_holds_exactly_the_plan_is_adopted_without_a_write(kernel):
    for plan in plan_host(state(30_000_000)).values():
        for obj in plan.objects:
            kernel.plant(obj)
    results, record = reconciler(kernel).reconcile(plan_host(state(30_000_000)))
    assert [r.writes for r in results] == [0, 0] and not kernel.writes() and set(record) == set(PORTS)


def test_a_restart_with_recorded_fingerprints_trusts_them_and_reads_nothing(kernel):
    _, record = settle(reconciler(kernel), state(30_000_000))
    kernel.clear_journal()
    results, again = reconciler(kernel).reconcile(plan_host(state(30_000_000)), applied=record, verify=False)
    assert all(r.skipped and not r.ops for r in results) and again == {}
    assert kernel.journal == []  # not even read


# -- drift -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("foreign", [Qdisc("tap0", "root", "5:", "tbf"), "filter"])
def test_a_foreign_object_is_drift_until_forced(kernel, foreign):
    rec = reconciler(kernel)
    if foreign == "filter":
        settle(rec, state(10_000_000, devices=("tap0",)))
        foreign = ForeignFilter("tap0", "1:", 5, "all", "bpf")
    kernel.plant(foreign)
    kernel.clear_journal()
    results, record = rec.reconcile(plan_host(state(10_000_000, devices=("tap0",))))
    error = results[0].error or ""
    assert error.startswith("drift: ") and error.endswith(" that vmqos did not make (run `vmqos check`; "
                                                          "`--force` replaces it)")
    assert not kernel.writes() and record == {} and foreign in kernel.objects("tap0")
    settle(rec, state(10_000_000, devices=("tap0",)), force=True)
    assert foreign not in kernel.objects("tap0") and in_sync(rec, state(10_000_000, devices=("tap0",)))


def test_an_htb_root_the_kernel_cannot_change_in_place_is_drift_until_forced(kernel):
    """The one change that deletes and re-adds (the kernel refuses to change an HTB root's options)
    is never made without the operator's --force."""
    rec = reconciler(kernel)
    settle(rec, state(10_000_000, devices=("tap0",)))
    root = kernel.root("tap0")
    assert root is not None
    kernel.plant(replace(root, default_minor=0x20))
    kernel.clear_journal()
    results, _ = rec.reconcile(plan_host(state(10_000_000, devices=("tap0",))))
    assert "drift: recreate qdisc tap0 root" in (results[0].error or "") and not kernel.writes()
    settle(rec, state(10_000_000, devices=("tap0",)), force=True)
    assert [c.text for c in kernel.writes()][:2] == ["qdisc del dev tap0 root",
                                                     "qdisc add dev tap0 root handle 1: htb default 10"]
    assert in_sync(rec, state(10_000_000, devices=("tap0",)))


def test_a_rule_edited_in_vmqos_table_is_put_back_without_force(kernel):
    """vmqos's own chains are not drift to guard: a rule someone changed is replaced (as the kernel tier has it)."""
    rec = reconciler(kernel)
    settle(rec, state(10_000_000, devices=("tap0",)))
    chain = kernel.chains[chain_to("tap0")]
    kernel.plant(replace(chain, rules=chain.rules[:1]))
    results, _ = settle(rec, state(10_000_000, devices=("tap0",)))
    assert [op.describe() for op in results[0].ops] == [f"replace nft-chain vmqos {chain_to('tap0')}"]


# -- dry runs and missing devices --------------------------------------------------------------

def test_a_dry_run_writes_nothing(kernel):
    results, record = reconciler(kernel).reconcile(plan_host(state(10_000_000)), dry_run=True)
    assert all(r.ops and r.error is None for r in results) and record == {}
    assert not kernel.writes() and not kernel.chains and kernel.objects("tap0") == []


def test_clearing_a_port_whose_device_is_gone_removes_its_ifb_and_chains(kernel):
    settle(reconciler(kernel), state(10_000_000, devices=("tap0",)))
    kernel.remove_device("tap0")  # as libvirt removes a tap
    plan = plan_host(state(10_000_000, devices=("tap0",)))["tap0"]
    results, record = reconciler(kernel).reconcile({"tap0": replace(plan, objects=())})
    assert results[0].error is None and record == {"tap0": None}
    assert ifb_name("tap0") not in kernel.devices and not kernel.chains and not kernel.table


def test_setting_a_port_whose_device_is_gone_errors(kernel):
    results, record = reconciler(kernel, "ns1").reconcile(plan_host(state(10_000_000, devices=("tap9",))))
    assert results[0].error == "device tap9 does not exist in netns ns1" and record == {}
    assert not kernel.writes()


# -- idempotence -------------------------------------------------------------------------------

ports_st = st.lists(st.sampled_from(["tap0", "tap1", "tap-a"]), min_size=1, max_size=3, unique=True)
qos_st = st.tuples(st.integers(min_value=1_000_000, max_value=10**10), st.sampled_from(list(EgressMode)),
                   st.none() | st.integers(min_value=100, max_value=10**6), st.booleans())


def _host(ports: list[str], qos: tuple) -> HostState:
    rate, mode, pps, classes = qos
    return state(rate, devices=tuple(ports), mode=mode, pps=pps, classes=classes and mode is EgressMode.SHAPE)


@settings(max_examples=50, deadline=None)
@given(ports=ports_st, first=qos_st, second=qos_st)
def test_reconciling_twice_is_a_no_op_the_second_time(ports, first, second):
    kernel = FakeKernel(["tap0", "tap1", "tap-a"])
    rec = reconciler(kernel)
    settle(rec, _host(ports, first))
    _, record = settle(rec, _host(ports, second))
    kernel.clear_journal()
    again, _ = settle(rec, _host(ports, second))
    assert all(not r.ops for r in again) and not kernel.writes()
    trusted, _ = settle(rec, _host(ports, second), applied=record, verify=False)
    assert all(r.skipped for r in trusted)
    assert in_sync(rec, _host(ports, second))


# -- issue 13 item 7: an inner HTB class keeps the quantum it was created with -----------------------

@pytest.mark.parametrize("netlink", [False, True])
def test_a_port_lowered_below_the_quantum_clamp_converges_and_a_repeat_writes_nothing(kernel, monkeypatch,
                                                                                     netlink):
    """The fake holds what sch_htb holds: only a leaf takes a new quantum, so 1:1 keeps 60000 from its
    creation at 100 Mbit/s while the plan at 1 and 3 Mbit/s says 12500 and 37500."""
    if not netlink:  # tc -batch instead of netlink
        monkeypatch.setattr("vmqos.reconcile.execute.LIVE_REPLACE_LIMIT", 0)
    rec = reconciler(kernel)
    settle(rec, state(100_000_000))
    for rate in (3_000_000, 1_000_000):
        settle(rec, state(rate))
        assert in_sync(rec, state(rate)), f"not in sync at {rate} bit/s"
        again, _ = settle(rec, state(rate))
        assert [r.writes for r in again] == [0, 0]
