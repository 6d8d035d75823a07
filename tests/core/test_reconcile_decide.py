"""The reconciler's pure decisions: what is read back, what is drift, and the order of an apply."""

from __future__ import annotations

from dataclasses import replace

from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, PacketRateLimit
from vmqos.core.plan.diff import Operation, diff
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import chain_from, chain_to, ifb_name
from vmqos.core.plan.objects import Aqm, HtbClass, IfbLink, NftChain, NftCounter, NftSet, Qdisc, U32Filter, is_nft
from vmqos.reconcile.decide import (
    Phase,
    _parts,
    apply_phases,
    decide_port,
    empties_table,
    restore_ops,
    to_record,
    what_to_read,
)
from vmqos.reconcile.execute import PortResult


def state(rate: int, devices=("tap0", "tap1"), egress: int | None = None, mode=EgressMode.SHAPE) -> HostState:
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate), packet_rate=PacketRateLimit(2000)),
                     egress=DirectionQos(bandwidth=BandwidthLimit(egress or rate // 2), dscp=18))
    return HostState(instances={d: InstanceSpec(d, ports=(PortSpec(d, limits=qos, egress_mode=mode),))
                                for d in devices})


def recorded(plans) -> dict[str, str]:
    return {p: plan.fingerprint for p, plan in plans.items()}


# -- what to read ------------------------------------------------------------------------------

def test_verify_reads_every_device_and_chain():
    plans = plan_host(state(10_000_000))
    wanted = what_to_read(plans, recorded(plans), verify=True)
    assert wanted.tc == {"tap0": ("tap0", ifb_name("tap0")), "tap1": ("tap1", ifb_name("tap1"))}
    assert wanted.nft == ("tap0", "tap1") and not wanted.skipped and not wanted.nothing


def test_unchanged_fingerprints_are_trusted_without_reading():
    plans = plan_host(state(10_000_000))
    wanted = what_to_read(plans, recorded(plans), verify=False)
    assert wanted.nothing and wanted.skipped == {"tap0", "tap1"}


def test_a_change_towards_the_instance_reads_only_the_port_and_from_it_only_the_ifb():
    before = plan_host(state(10_000_000, devices=("tap0",), egress=5_000_000))
    faster_in = plan_host(state(20_000_000, devices=("tap0",), egress=5_000_000))
    wanted = what_to_read(faster_in, recorded(before), verify=False)
    assert wanted.tc == {"tap0": ("tap0",)} and not wanted.skipped
    faster_out = plan_host(state(10_000_000, devices=("tap0",), egress=7_000_000))
    assert what_to_read(faster_out, recorded(before), verify=False).tc == {"tap0": (ifb_name("tap0"),)}


def test_an_unknown_or_old_style_fingerprint_is_read_back_whole():
    plans = plan_host(state(10_000_000, devices=("tap0",)))
    nft_part = plans["tap0"].fingerprint.split(";", 1)[1]
    wanted = what_to_read(plans, {"tap0": "tc:0123456789abcdef;" + nft_part}, verify=False)
    assert wanted.tc == {"tap0": ("tap0", ifb_name("tap0"))} and wanted.nft == ()
    assert what_to_read(plans, {}, verify=False).nft == ("tap0",)
    assert _parts(None) == (None, None, None) and _parts("tc:a;nft:b") == (None, None, "nft:b")


# -- what to change ----------------------------------------------------------------------------

def test_a_port_whose_device_is_gone_errors_when_set_and_not_when_cleared():
    plan = plan_host(state(10_000_000, devices=("tap9",)))["tap9"]
    setting = decide_port("tap9", plan.objects, read=("tap9",), seen_tc=[], seen_nft=[], missing=True,
                          force=False, netns="ns1")
    assert setting.error == "device tap9 does not exist in netns ns1" and not setting.ops
    no_netns = decide_port("tap9", plan.objects, read=(), seen_tc=[], seen_nft=[], missing=True, force=False,
                           netns=None)
    assert no_netns.error == "device tap9 does not exist"
    clearing = decide_port("tap9", (), read=("tap9",), seen_tc=[], seen_nft=[NftCounter("to_tap9_passed")],
                           missing=True, force=False, netns=None)
    assert clearing.error is None
    assert [op.describe() for op in clearing.ops] == ["delete nft-counter vmqos to_tap9_passed"]


def test_a_foreign_root_qdisc_is_drift_until_forced():
    plan = plan_host(state(10_000_000, devices=("tap0",)))["tap0"]
    tbf = Qdisc("tap0", "root", "5:", "tbf")
    blocked = decide_port("tap0", plan.objects, read=("tap0", ifb_name("tap0")), seen_tc=[tbf], seen_nft=None,
                          missing=False, force=False, netns=None)
    assert blocked.error == ("drift: replace qdisc tap0 root replaces qdisc tap0 root that vmqos did not make "
                             "(run `vmqos check`; `--force` replaces it)")
    assert blocked.ops  # shown, not run
    forced = decide_port("tap0", plan.objects, read=("tap0", ifb_name("tap0")), seen_tc=[tbf], seen_nft=None,
                         missing=False, force=True, netns=None)
    assert forced.error is None and forced.ops[0] == Operation("replace", plan.objects[0], tbf)


def test_parts_not_read_are_trusted_as_planned():
    plan = plan_host(state(10_000_000, devices=("tap0",)))["tap0"]
    on_port = [o for o in plan.objects if not is_nft(o) and o.device == "tap0"]
    decision = decide_port("tap0", plan.objects, read=("tap0",), seen_tc=on_port, seen_nft=None, missing=False,
                           force=False, netns=None)
    assert decision.ops == [] and decision.error is None
    assert sorted(map(repr, decision.before or [])) == sorted(map(repr, plan.objects))


def test_restoring_leaves_foreign_objects_alone():
    plan = plan_host(state(10_000_000, devices=("tap0",)))["tap0"]
    tbf = Qdisc("tap0", "root", "5:", "tbf")
    ops = restore_ops([tbf, *plan.objects[:3]], [])
    assert all(op.action == "create" for op in ops) and tbf not in [op.obj for op in ops]


# -- in which order ----------------------------------------------------------------------------

def _from_empty(rate: int = 10_000_000, devices=("tap0", "tap1")) -> dict[str, list[Operation]]:
    return {p: diff(plan.objects, []) for p, plan in plan_host(state(rate, devices=devices)).items()}


def test_phases_from_empty_links_then_queues_then_nft_and_nothing_to_delete():
    phases = apply_phases(_from_empty(), concurrent_min=16)
    assert [p.name for p in phases.ordered()] == ["nft early", "links up", "nft forwarding", "tc up", "nft",
                                                  "tc down", "links down"]
    assert all(isinstance(op.obj, IfbLink) for ops in phases.links_up.ops.values() for op in ops)
    assert {type(op.obj) for ops in phases.tc_up.ops.values() for op in ops} == {Qdisc, HtbClass, U32Filter, Aqm}
    assert set(phases.nft.ops) == {"tap0", "tap1"} and not phases.early
    assert not phases.tc_down.ops and not phases.links_down.ops


def test_in_bulk_new_nft_objects_go_early_and_forwarding_chains_once_the_links_exist():
    phases = apply_phases(_from_empty(), concurrent_min=2)
    assert phases.early == {"tap0", "tap1"} and not phases.nft.ops
    then = [op.obj for ops in phases.early_then.ops.values() for op in ops]
    assert [o.name for o in then] == [chain_from("tap0"), chain_from("tap1")]  # type: ignore[attr-defined]
    first = {type(op.obj) for ops in phases.early_first.ops.values() for op in ops}
    assert first == {NftSet, NftCounter, NftChain}
    assert chain_to("tap0") in [getattr(op.obj, "name", "") for op in phases.early_first.ops["tap0"]]


def test_a_change_that_replaces_rules_waits_for_tc_and_links_go_last():
    old = plan_host(state(10_000_000, devices=("tap0",)))["tap0"].objects
    police = plan_host(state(10_000_000, devices=("tap0",), mode=EgressMode.POLICE))["tap0"].objects
    phases = apply_phases({"tap0": diff(police, old)}, concurrent_min=1)
    assert not phases.early  # a new counter, and the chain's rules replaced: all of it after tc
    assert {op.action for op in phases.nft.ops["tap0"]} == {"create", "replace"}
    assert "tap0" not in phases.tc_down.ops  # the IFB's queues go with it
    assert [op.describe() for op in phases.links_down.ops["tap0"]] == [f"delete link {ifb_name('tap0')}"]


def test_a_phase_leaves_out_ports_that_failed_before_it_unless_told_not_to():
    ops = {"a": [Operation("create", IfbLink("vqia"))], "b": [Operation("create", IfbLink("vqib"))]}
    assert list(Phase("x", "ip", ops).live({"a": "boom"})) == ["b"]
    assert list(Phase("x", "ip", ops, skip_failed=False).live({"a": "boom"})) == ["a", "b"]


def test_fingerprints_recorded_only_for_ports_changed_or_in_sync_and_forgotten_when_cleared():
    plans = plan_host(state(10_000_000, devices=("tap0", "tap1", "tap2")))
    plans["tap2"] = replace(plans["tap2"], objects=())
    results = {"tap0": PortResult("tap0"), "tap1": PortResult("tap1", error="boom"), "tap2": PortResult("tap2")}
    assert to_record(plans, results, dry_run=False) == {"tap0": plans["tap0"].fingerprint, "tap2": None}
    assert to_record(plans, results, dry_run=True) == {}
    skipped = {"tap0": PortResult("tap0", skipped=True)}
    assert to_record(plans, skipped, dry_run=False) == {}
    assert empties_table([Operation("delete", NftCounter("x"))])
    assert not empties_table([Operation("delete", IfbLink("y"))])
