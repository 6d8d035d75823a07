"""Guaranteed minimums on the uplink (issue 16), without root: the planner, the host file and store, the
reconciler over the fake kernel (replace-only, drift, prune)."""

from __future__ import annotations

import json

import pytest

from vmqos.cli.main import main
from vmqos.core.desired.ports import empty_plan
from vmqos.core.errors import FormatError, InvalidValue, VmqosError
from vmqos.core.formats.hostfile import read_host, write_host
from vmqos.core.model.host import HostState, InstanceSpec, Policy, PortSpec, UplinkSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.diff import diff
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import chain_from, chain_to, ifb_name
from vmqos.core.plan.objects import HtbClass, IfbLink, NftChain, NftRule, Qdisc, U32Filter, rule_from_expr
from vmqos.core.plan.uplink import (
    UPLINK_MARK_BASE,
    Member,
    Oversubscribed,
    assign_minors,
    marks,
    plan_uplink,
)
from vmqos.drivers.fake import FakeKernel, fake_drivers
from vmqos.reconcile.execute import Reconciler
from vmqos.store import Store

MBIT = 1_000_000
UP = UplinkSpec("wan0", 100 * MBIT)


def _classes(plan, dev):
    return {o.classid: o for o in plan.objects if isinstance(o, HtbClass) and o.dev == dev}


def _state(g1: int = 50, g2: int = 30, limit2: int | None = None, uplink: UplinkSpec | None = UP) -> HostState:
    def qos(g: int, limit: int | None = None) -> NetworkQos:
        side = DirectionQos(min_bps=g * MBIT, bandwidth=BandwidthLimit(limit * MBIT) if limit else None)
        return NetworkQos(ingress=side, egress=side)

    policies = {"g1": Policy("g1", qos(g1)), "g2": Policy("g2", qos(g2, limit2))}
    instances = {
        "vm1": InstanceSpec("vm1", ports=(PortSpec("tap-vm1", policy="g1", addresses=("10.0.0.11", "fd00::11")),)),
        "vm2": InstanceSpec("vm2", ports=(PortSpec("tap-vm2", policy="g2", addresses=("10.0.0.12",)),)),
        "vm3": InstanceSpec("vm3", ports=(PortSpec("tap-vm3"),)),
    }
    return HostState(policies=policies, instances=instances, uplink=uplink)


def test_each_guarantee_has_its_class_and_the_rest_share_the_default_in_both_directions():
    plans = plan_host(_state(limit2=40))
    up = plans["wan0"]
    minors = assign_minors(["tap-vm1", "tap-vm2"])
    for dev in ("wan0", ifb_name("wan0")):
        classes = _classes(up, dev)
        assert classes["1:1"].rate_bps == classes["1:1"].ceil_bps == 100 * MBIT
        assert classes["1:10"].rate_bps == 20 * MBIT and classes["1:10"].ceil_bps == 100 * MBIT
        vm1, vm2 = classes[f"1:{minors['tap-vm1']:x}"], classes[f"1:{minors['tap-vm2']:x}"]
        assert (vm1.rate_bps, vm1.ceil_bps) == (50 * MBIT, 100 * MBIT)
        assert (vm2.rate_bps, vm2.ceil_bps) == (30 * MBIT, 40 * MBIT)  # its own limit is its ceiling
        assert vm1.quantum > vm2.quantum > 0  # surplus lent in the ratio of the rates
        assert Qdisc(dev, "root", "1:", "htb", default_minor=0x10) in up.objects
    assert IfbLink(ifb_name("wan0")) in up.objects


def test_towards_the_instances_by_destination_address_ipv4_and_ipv6():
    up = plan_host(_state())["wan0"]
    minors = assign_minors(["tap-vm1", "tap-vm2"])
    filters = [o for o in up.objects if isinstance(o, U32Filter)]
    assert all(f.dev == ifb_name("wan0") and f.parent == "1:" for f in filters)
    by_class = {(f.protocol, f.flowid): f.matches_ for f in filters}
    assert by_class[("ip", f"1:{minors['tap-vm1']:x}")] == ("u32 0x0a00000b 0xffffffff at 16",)
    assert by_class[("ipv6", f"1:{minors['tap-vm1']:x}")][-1] == "u32 0x00000011 0xffffffff at 36"
    assert by_class[("ip", f"1:{minors['tap-vm2']:x}")] == ("u32 0x0a00000c 0xffffffff at 16",)
    assert len({f.prio for f in filters}) == len(filters) == 3
    chains = {o.name: o for o in up.objects if isinstance(o, NftChain)}
    assert chains[chain_from("wan0")].hook == "ingress"
    assert chains[chain_from("wan0")].rules == (NftRule("", fwd_to=ifb_name("wan0")),)


def test_from_the_instances_the_port_marks_and_the_uplink_turns_the_mark_into_its_class():
    plans = plan_host(_state())
    minors = assign_minors(["tap-vm1", "tap-vm2"])
    assert marks(plans["wan0"]) == {UPLINK_MARK_BASE | m: f"1:{m:x}" for m in minors.values()}
    for port in ("tap-vm1", "tap-vm2"):
        chain = next(o for o in plans[port].objects if isinstance(o, NftChain) and o.name == chain_from(port))
        assert chain.rules[-1] == NftRule("", set_mark=UPLINK_MARK_BASE | minors[port])
    chain = next(o for o in plans["tap-vm3"].objects if isinstance(o, NftChain) and o.name == chain_from("tap-vm3"))
    assert all(r.set_mark is None for r in chain.rules)  # no guarantee: the default class
    to_chain = next(o for o in plans["wan0"].objects if isinstance(o, NftChain) and o.name == chain_to("wan0"))
    assert to_chain.hook == "egress" and to_chain.dev == "wan0"


def test_without_an_uplink_nothing_changes_and_the_note_says_how_to_enforce_it():
    plans = plan_host(_state(uplink=None))
    assert "wan0" not in plans
    assert any("name the uplink in the host file" in n.message for n in plans["tap-vm1"].notes)
    assert all(r.set_mark is None for o in plans["tap-vm1"].objects if isinstance(o, NftChain) for r in o.rules)


def test_oversubscribed_guarantees_are_refused_naming_the_ports_and_the_numbers():
    with pytest.raises(Oversubscribed) as err:
        plan_host(_state(g1=80, g2=30))
    text = str(err.value)
    assert "110 Mbit/s" in text and "100 Mbit/s" in text and "tap-vm1 80 Mbit/s" in text and "tap-vm2 30 Mbit/s" in text
    assert "oversubscribe" in text


def test_check_guarantees_refuses_as_the_plan_does_and_warns_with_oversubscribe():
    """The check `vmqos uplink set --server` asks before it writes: the plan's own words, per direction."""
    from vmqos.core.plan.uplink import check_guarantees

    with pytest.raises(Oversubscribed) as err:
        check_guarantees(UP, {"tap-vm1": 10 * MBIT}, {"tap-vm1": 80 * MBIT, "tap-vm2": 30 * MBIT})
    assert str(err.value).startswith("uplink wan0: the guaranteed minimums from the instances add up to 110 Mbit/s, "
                                      "more than its capacity of 100 Mbit/s (tap-vm1 80 Mbit/s, tap-vm2 30 Mbit/s)")
    assert check_guarantees(UP, {"a": 60 * MBIT}, {"a": 100 * MBIT, "b": 0}) == []  # fits exactly; 0 is none
    notes = check_guarantees(UplinkSpec("wan0", 100 * MBIT, oversubscribe=True), {"a": 70 * MBIT, "b": 70 * MBIT}, {})
    assert [n.field for n in notes] == ["uplink.towards the instances"] and "scaled" in notes[0].message


def test_oversubscribe_scales_them_down_to_fit_with_a_warning():
    up = plan_host(_state(g1=80, g2=30, uplink=UplinkSpec("wan0", 100 * MBIT, oversubscribe=True)))["wan0"]
    classes = _classes(up, "wan0")
    leaves = [c for cid, c in classes.items() if cid not in ("1:1",)]
    assert sum(c.rate_bps for c in leaves) <= 100 * MBIT
    assert any("oversubscribe is on" in n.message for n in up.notes)


def test_a_guarantee_towards_an_instance_without_addresses_is_refused():
    state = _state()
    vm2 = state.instances["vm2"]
    state.instances["vm2"] = InstanceSpec("vm2", ports=(PortSpec("tap-vm2", policy="g2"),))
    with pytest.raises(VmqosError, match="tap-vm2.*needs the instance's addresses"):
        plan_host(state)
    assert vm2.ports[0].addresses == ("10.0.0.12",)


def test_class_minors_are_stable_while_other_ports_come_and_go():
    """A port keeps its class when others are added, unless one of them hashes to its slot first (here
    tap-b, moved by one of 200 new ports: the class moves, a create before a delete)."""
    few = assign_minors(["tap-a", "tap-b", "tap-c"])
    many = assign_minors(["tap-a", "tap-b", "tap-c"] + [f"tap-{i}" for i in range(200)])
    assert many["tap-a"] == few["tap-a"] and many["tap-c"] == few["tap-c"]
    assert many["tap-b"] == few["tap-b"] + 1  # the collision: the next free slot
    assert len(set(many.values())) == len(many) and all(0x100 <= m <= 0xEFF for m in many.values())


def test_a_changed_guarantee_is_a_class_replace_never_a_new_tree():
    before, after = plan_host(_state())["wan0"], plan_host(_state(g2=20))["wan0"]
    ops = diff(after.objects, before.objects)
    assert ops and all(op.action == "replace" and isinstance(op.obj, HtbClass) for op in ops)


def test_the_new_nft_statements_read_back_from_nft_json():
    for rule in (NftRule("", set_mark=0x5601C1), NftRule("", mark_is=0x5601C1, set_priority="1:1c1")):
        assert rule_from_expr(rule.expr()) == rule
    # as nft 1.0.6 lists them (measured)
    listed = [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 5636353}},
              {"mangle": {"key": {"meta": {"key": "priority"}}, "value": "1:101"}}]
    assert rule_from_expr(listed) == NftRule("", mark_is=0x560101, set_priority="1:101")


def test_host_file_round_trip_and_refusals():
    text = ("version: 1\nuplink: {device: wan0, capacity: 10gbit, oversubscribe: true}\n"
            "instances:\n  vm1:\n    ports: [{device: tap1, addresses: [10.0.0.5, 'FD00::5']}]\n")
    state = read_host(text)
    assert state.uplink == UplinkSpec("wan0", 10_000_000_000, True)
    assert state.instances["vm1"].ports[0].addresses == ("10.0.0.5", "fd00::5")
    assert read_host(write_host(state)) == state
    with pytest.raises(FormatError, match="line 2.*capacity"):
        read_host("version: 1\nuplink: {device: wan0, capacity: 10kbit}\n")
    with pytest.raises(FormatError, match="is a port of instance"):
        read_host("version: 1\nuplink: {device: tap1, capacity: 1gbit}\ninstances:\n  vm1:\n    ports: [{device: tap1}]\n")
    with pytest.raises(FormatError, match="addresses"):
        read_host("version: 1\ninstances:\n  vm1:\n    ports: [{device: tap1, addresses: [10.0.0.0/24]}]\n")
    with pytest.raises(InvalidValue):
        PortSpec("tap1", addresses=("10.0.0.1", "10.0.0.1"))


def test_the_store_keeps_the_uplink_and_the_addresses(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/vq.db")
    try:
        store.save("", _state())
        assert store.load("") == _state()
        store.save("", _state(uplink=None))
        assert store.load("").uplink is None
    finally:
        store.close()


def _reconciler(kernel: FakeKernel) -> Reconciler:
    tc, nft, batch = fake_drivers(kernel, None)
    return Reconciler(None, tc=tc, nft=nft, batch=batch)


def test_over_the_fake_kernel_applied_changed_in_place_and_removed():
    kernel = FakeKernel(["tap-vm1", "tap-vm2", "tap-vm3", "wan0"])
    rec = _reconciler(kernel)
    results, record = rec.reconcile(plan_host(_state()))
    assert all(r.error is None for r in results), [r.error for r in results]
    assert kernel.root("wan0") is not None and kernel.root(ifb_name("wan0")) is not None
    kernel.clear_journal()
    results, record = rec.reconcile(plan_host(_state(g2=20)), applied=record)
    changed = {r.port: [op.action for op in r.ops] for r in results if r.ops}
    assert set(changed) == {"wan0"} and set(changed["wan0"]) == {"replace"}
    plans = plan_host(_state(g2=20))
    seen = rec.observe(sorted(plans))
    assert all(not diff(plans[p].objects, seen.objects[p]) for p in plans)  # `check` sees no drift
    # the uplink leaves the host file: cleared as any port that is no longer wanted
    gone = plan_host(_state(g2=20, uplink=None))
    gone["wan0"] = empty_plan("wan0")
    results, _ = rec.reconcile(gone, applied=record)
    assert all(r.error is None for r in results)
    assert kernel.root("wan0") is None and ifb_name("wan0") not in kernel.devices
    assert chain_to("wan0") not in kernel.chains and chain_from("wan0") not in kernel.chains


def test_member_without_guarantee_is_not_in_a_class():
    up = plan_uplink(UP, [Member("tap-x", (), None, None)])
    assert set(_classes(up, "wan0")) == {"1:1", "1:10"}
    assert _classes(up, "wan0")["1:10"].rate_bps == 100 * MBIT


def test_vmqos_plan_shows_the_uplink_of_a_host_file_and_refuses_oversubscription_in_one_line(tmp_path, capsys):
    path = tmp_path / "host.yaml"
    path.write_text(write_host(_state()))
    assert main(["plan", "--uplink-of", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["port"] == "wan0" and out["egress"]["min_bps"] == 80 * MBIT
    assert any("meta priority set 1:" in line for line in out["commands"])
    assert any("tc filter add dev vqi" in line and "at 16" in line for line in out["commands"])
    path.write_text(write_host(_state(g1=80)))
    assert main(["plan", "--uplink-of", str(path)]) != 0
    err = capsys.readouterr().err
    assert "tap-vm1 80 Mbit/s" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
