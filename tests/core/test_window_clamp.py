"""A port's opt-in receive-window clamp: planned on a clsact, rendered, applied and changed in place (fake kernel)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vmqos.core.desired.effective import combine
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.diff import Operation, contains, diff
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.objects import Qdisc, U32Filter, WindowClamp
from vmqos.core.plan.planner import plan_port
from vmqos.core.plan.queues import KernelProfile, clamp_kmin
from vmqos.core.plan.render import tc_commands
from vmqos.core.plan.tc_objects import CLSACT_EGRESS, CLSACT_INGRESS
from vmqos.drivers.fake import FakeKernel, fake_drivers
from vmqos.reconcile.execute import Reconciler

from tests.reconcile_steps import in_sync, settle


def qos(towards: int | None, from_: int | None) -> NetworkQos:
    return NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(towards) if towards else None),
                      egress=DirectionQos(bandwidth=BandwidthLimit(from_) if from_ else None))


def clamps(objects) -> dict[str, WindowClamp]:
    return {o.parent: o for o in objects if isinstance(o, WindowClamp)}


def direct_plan(towards: int | None, from_: int | None, clamp: bool = True, mode: EgressMode = EgressMode.SHAPE):
    from vmqos.core.desired.effective import QosSource
    effective = combine((QosSource("port", qos(towards, from_)),), mtu=1500)
    return plan_port("tap0", effective, egress_mode=mode, window_clamp=clamp)


def test_off_by_default_and_on_a_clsact_with_one_program_per_hook_when_asked():
    assert not clamps(direct_plan(3_000_000, 10_000_000, clamp=False).objects)
    plan = direct_plan(3_000_000, 10_000_000)
    assert Qdisc("tap0", "ingress", "ffff:", "clsact") in plan.objects
    hooks = clamps(plan.objects)
    # the ingress hook carries the instance's ACKs: it governs what comes towards the instance
    assert hooks[CLSACT_INGRESS].rate_bytes == 3_000_000 // 8
    assert hooks[CLSACT_EGRESS].rate_bytes == 10_000_000 // 8
    assert {h.target_ns for h in hooks.values()} == {3_000_000}
    assert "window clamp" in (plan.ingress.mechanism or "") and "window clamp" in (plan.egress.mechanism or "")
    assert any(n.field == "window_clamp" and "RTT grows" in n.message for n in plan.notes)
    # created after the port's nft chains (so a policed port's ingress qdisc goes only once the chain forwards)
    kinds = [type(o).__name__ for o in plan.objects]
    assert kinds.index("Qdisc", kinds.index("NftChain")) > max(i for i, k in enumerate(kinds) if k == "NftChain")


def test_the_floor_is_three_segments_where_three_frames_fit_30_ms_else_two():
    profile = KernelProfile()
    assert clamp_kmin(1_000_000, 1500, profile) == 2  # three frames are 36 ms at 1 Mbit/s
    assert clamp_kmin(1_250_000, 1500, profile) == 3
    assert clamp_kmin(1_000_000_000, 1500, profile) == 3
    assert clamps(direct_plan(1_000_000, None).objects)[CLSACT_INGRESS].kmin == 2


def test_an_unshaped_direction_only_times_handshakes_and_police_mode_gets_a_warning_not_a_clamp():
    hooks = clamps(direct_plan(5_000_000, None).objects)
    assert hooks[CLSACT_INGRESS].rate_bytes == 625_000 and hooks[CLSACT_EGRESS].rate_bytes == 0
    policed = direct_plan(5_000_000, 5_000_000, mode=EgressMode.POLICE)
    assert not clamps(policed.objects)
    assert not any(isinstance(o, Qdisc) and o.qdisc_kind == "clsact" for o in policed.objects)
    assert any(n.field == "window_clamp" and n.level == "warning" for n in policed.notes)
    assert not clamps(direct_plan(None, None).objects)


def test_plan_shows_the_clsact_and_both_programs():
    plan = direct_plan(3_000_000, None)
    lines = [line for o in plan.objects if isinstance(o, (Qdisc, WindowClamp)) and o.device == "tap0"
             and (isinstance(o, WindowClamp) or o.qdisc_kind == "clsact")
             for line in tc_commands(Operation("create", o))]
    assert lines[0] == "tc qdisc add dev tap0 clsact"
    assert "parent ffff:fff2 prio 1 bpf" in lines[1] and "375000 bytes/s" in lines[1] and "at least 3 segments" in lines[1]
    assert "parent ffff:fff3" in lines[2] and "windows left alone" in lines[2]
    clamp = clamps(plan.objects)[CLSACT_INGRESS]
    assert tc_commands(Operation("delete", clamp)) == ["tc filter del dev tap0 parent ffff:fff2 protocol all prio 1"]


def test_deleting_the_clsact_takes_its_programs_and_the_htb_root_does_not():
    plan = direct_plan(3_000_000, 3_000_000)
    clsact = next(o for o in plan.objects if isinstance(o, Qdisc) and o.qdisc_kind == "clsact")
    root = next(o for o in plan.objects if isinstance(o, Qdisc) and o.parent == "root" and o.dev == "tap0")
    hooks = list(clamps(plan.objects).values())
    assert all(contains(clsact, h) for h in hooks) and not any(contains(root, h) for h in hooks)
    sparse = next(o for o in plan.objects if isinstance(o, U32Filter) and o.dev == "tap0")
    assert contains(root, sparse) and not contains(clsact, sparse)


def test_a_policed_port_switched_to_shape_recreates_its_ingress_hook_as_a_clsact():
    policed = direct_plan(3_000_000, 3_000_000, clamp=True, mode=EgressMode.POLICE)
    shaped = direct_plan(3_000_000, 3_000_000, clamp=True)
    ops = diff(shaped.objects, policed.objects)
    recreated = [op for op in ops if op.action == "recreate"]
    assert [op.obj.qdisc_kind for op in recreated] == ["clsact"] and recreated[0].disruptive


# -- through the reconciler, on the fake kernel ---------------------------------------------------------

def state(towards: int, from_: int, clamp: bool = True) -> HostState:
    return HostState(instances={"vm0": InstanceSpec("vm0", ports=(PortSpec("tap0", limits=qos(towards, from_),
                                                                            window_clamp=clamp),))})


@pytest.fixture
def rec() -> tuple[FakeKernel, Reconciler]:
    kernel = FakeKernel(["tap0"])
    tc, nft, batch = fake_drivers(kernel)
    return kernel, Reconciler(None, tc=tc, nft=nft, batch=batch)


def test_applied_adopted_changed_in_place_and_removed(rec):
    kernel, r = rec
    settle(r, state(3_000_000, 10_000_000))
    assert in_sync(r, state(3_000_000, 10_000_000))
    assert kernel.devices["tap0"].objects[("qdisc", "tap0", "ingress")].qdisc_kind == "clsact"
    # a rate change rewrites both hooks' configuration in place: no tc line, nothing deleted
    kernel.clear_journal()
    results, _ = settle(r, state(6_000_000, 20_000_000))
    clamp_ops = [op for x in results for op in x.ops if isinstance(op.obj, WindowClamp)]
    assert {op.action for op in clamp_ops} == {"replace"} and len(clamp_ops) == 2
    assert not any(" del" in c.text or c.text.startswith("delete") for c in kernel.writes())
    assert in_sync(r, state(6_000_000, 20_000_000))
    # switched off: the clsact goes, with its programs, and nothing else changes
    settle(r, state(6_000_000, 20_000_000, clamp=False))
    assert ("qdisc", "tap0", "ingress") not in kernel.devices["tap0"].objects
    assert not any(isinstance(o, WindowClamp) for o in kernel.devices["tap0"].objects.values())
    assert in_sync(r, state(6_000_000, 20_000_000, clamp=False))


def test_a_hook_whose_program_was_removed_by_hand_is_put_back(rec):
    kernel, r = rec
    _, record = settle(r, state(3_000_000, 3_000_000))
    objects = kernel.devices["tap0"].objects
    gone = next(k for k, o in objects.items() if isinstance(o, WindowClamp) and o.parent == CLSACT_EGRESS)
    objects[gone] = replace(objects[gone], rate_bytes=0)  # as a program left with an empty slot reads
    assert not in_sync(r, state(3_000_000, 3_000_000))
    settle(r, state(3_000_000, 3_000_000))
    assert in_sync(r, state(3_000_000, 3_000_000))


def test_a_clsact_that_holds_another_tools_program_is_not_deleted_without_force(rec):
    """A clsact is one of vmqos's kinds now; one someone else hung a program on stays drift until forced."""
    from vmqos.core.plan.objects import ForeignFilter

    kernel, r = rec
    settle(r, state(3_000_000, 3_000_000))
    objects = kernel.devices["tap0"].objects
    foreign = ForeignFilter("tap0", CLSACT_INGRESS, 7, "all", "bpf")
    objects[foreign.key] = foreign
    results, _ = r.reconcile(plan_host(state(3_000_000, 3_000_000, clamp=False)))
    assert results[0].error and "drift" in results[0].error and "would take" in results[0].error
    assert ("qdisc", "tap0", "ingress") in objects
    settle(r, state(3_000_000, 3_000_000, clamp=False), force=True)
    assert ("qdisc", "tap0", "ingress") not in objects
