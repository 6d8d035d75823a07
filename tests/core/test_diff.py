"""The diff: empty when nothing changed, replace-only, and never an unlimited moment in between."""

from hypothesis import given
from hypothesis import strategies as st

from vmqos.core.desired.effective import QosSource, combine
from vmqos.core.model import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
    TrafficMatch,
)
from vmqos.core.model.host import EgressMode
from vmqos.core.plan.diff import diff, replay
from vmqos.core.plan.names import chain_from, ifb_name
from vmqos.core.plan.objects import Aqm, HtbClass, NftChain, Policer, Qdisc
from vmqos.core.plan.tc_objects import POLICER_PRIO
from vmqos.core.plan.planner import plan_port
from vmqos.core.plan.render import render

PORT = "tap-q"

rates = st.integers(min_value=100_000, max_value=10**10)


@st.composite
def bandwidths(draw):
    rate = draw(rates)
    peak = draw(st.none() | st.integers(min_value=rate, max_value=rate * 4))
    burst = draw(st.none() | st.integers(min_value=3028, max_value=max(3028, rate // 8)))
    return BandwidthLimit(rate, peak, burst)


@st.composite
def classes(draw):
    if not draw(st.booleans()):
        return ()
    web = draw(st.integers(min_value=1, max_value=60))
    match = draw(st.sampled_from([TrafficMatch("tcp", (80, 443)), TrafficMatch("udp"), TrafficMatch(dscp=46)]))
    return (TrafficClass("a", web, match), TrafficClass("rest", 100 - web) if web < 100 else ())


@st.composite
def directions(draw, egress=False):
    bw = draw(st.none() | bandwidths())
    cls = draw(classes()) if bw is not None else ()
    cls = tuple(c for c in cls if c)
    pps = draw(st.none() | st.builds(PacketRateLimit, st.integers(1, 10**6)))
    dscp = draw(st.none() | st.sampled_from([10, 26, 46])) if egress else None
    return DirectionQos(bandwidth=bw, packet_rate=pps, dscp=dscp, classes=cls)


@st.composite
def plans(draw):
    qos = NetworkQos(ingress=draw(directions()), egress=draw(directions(egress=True)))
    mode = draw(st.sampled_from(list(EgressMode)))
    if mode is EgressMode.POLICE and qos.egress.classes:
        mode = EgressMode.SHAPE
    return plan_port(PORT, combine([QosSource("t", qos)]), egress_mode=mode), qos


def limited(objects, qos):
    """Per direction that has a byte limit: is something enforcing it right now?"""
    keys = {o.key: o for o in objects}
    out = {}
    if qos.ingress.bandwidth is not None:
        root = keys.get(("qdisc", PORT, "root"))
        out["ingress"] = isinstance(root, Qdisc) and ("class", PORT, "1:1") in keys and ("class", PORT, "1:10") in keys
    if qos.egress.bandwidth is not None:
        ifb = ifb_name(PORT)
        chain = keys.get(("nft-chain", "vmqos", chain_from(PORT)))
        shaped = (isinstance(chain, NftChain) and ifb in chain.forwards_to() and ("qdisc", ifb, "root") in keys
                  and ("class", ifb, "1:10") in keys)
        # the police rule drops what the port's bucket (tc ingress) marks: both exist, or nothing polices
        policed = isinstance(chain, NftChain) and any(r.mark_bit for r in chain.rules) and isinstance(
            keys.get(("filter", PORT, "ffff:", POLICER_PRIO)), Policer) and ("qdisc", PORT, "ingress") in keys
        out["egress"] = shaped or policed
    return out


@given(plans())
def test_applying_a_plan_then_planning_again_does_nothing(plan_qos):
    plan, _ = plan_qos
    ops = diff(plan.objects, [])
    assert all(op.action == "create" for op in ops)
    observed = replay([], ops)
    assert diff(plan.objects, observed) == []
    assert render(diff(plan.objects, observed)) == []


@given(plans(), plans())
def test_any_change_is_replace_only_and_never_unlimited(before, after):
    (old, old_qos), (new, new_qos) = before, after
    ops = diff(new.objects, old.objects)
    assert not any(op.disruptive for op in ops)  # our own objects are always changed in place
    state = list(old.objects)
    both = {d for d in ("ingress", "egress")
            if limited(old.objects, old_qos).get(d) and limited(new.objects, new_qos).get(d)}
    for op in ops:
        state = replay(state, [op])
        for direction in both:
            assert limited(state, new_qos).get(direction) or limited(state, old_qos).get(direction), (
                f"{direction} unlimited after {op.describe()}")
    final = {o.key: o for o in state}
    assert final.keys() == {o.key for o in new.objects}
    assert all(o.matches(final[o.key]) for o in new.objects)  # equal as the kernel stores them
    assert diff(new.objects, state) == []


def test_a_live_rate_change_is_two_class_replaces():
    def plan(rate):
        qos = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(rate)))
        return plan_port(PORT, combine([QosSource("t", qos)]))
    ops = diff(plan(102_400_000).objects, plan(10**9).objects)
    # the port's bucket, the sparse class, the leaf, the leaf's queue (sized by time at the rate) and the
    # AQM's rate (its map, rewritten by the driver), all in place
    assert [op.action for op in ops] == ["replace"] * 5
    assert [type(op.obj) for op in ops] == [HtbClass, HtbClass, HtbClass, Qdisc, Aqm]
    assert [cmd.split()[:3] for cmd in render(ops)] == ([["tc", "class", "replace"]] * 3 + [["tc", "qdisc", "replace"]]
                                                        + [["#", "vmqos", "aqm"]])


def test_a_foreign_htb_root_needs_a_recreate_which_is_flagged():
    plan = plan_port(PORT, combine([QosSource("t", NetworkQos(ingress=DirectionQos(
        bandwidth=BandwidthLimit(10**8))))]))
    foreign = Qdisc(PORT, "root", "5:", "htb", default_minor=0)
    ops = diff(plan.objects, [foreign])
    assert ops[0].action == "recreate" and ops[0].disruptive
    assert render(ops)[:2] == [f"tc qdisc del dev {PORT} root", f"tc qdisc add dev {PORT} root handle 1: htb default 10"]
    tbf = Qdisc(PORT, "root", "8001:", "tbf")
    assert diff(plan.objects, [tbf])[0].action == "replace"  # another kind is grafted over atomically


def test_clearing_deletes_containers_only():
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10**8)),
                     egress=DirectionQos(bandwidth=BandwidthLimit(10**8), dscp=26))
    plan = plan_port(PORT, combine([QosSource("t", qos)]))
    commands = render(diff([], plan.objects))
    assert f"tc qdisc del dev {PORT} root" in commands
    assert f"ip link del {ifb_name(PORT)}" in commands
    assert not any(c.startswith("tc class del") for c in commands)
    # Only the shared accounting sets stay: other ports feed them; they go with the table.
    assert [type(o).__name__ for o in replay(plan.objects, diff([], plan.objects))] == ["NftSet"] * 4


def test_nft_objects_go_to_their_port_even_when_port_names_hold_underscores():
    from vmqos.reconcile.decide import nft_by_port

    from vmqos.core.observed import CounterValue, NftState
    from vmqos.core.plan.names import chain_to
    from vmqos.core.plan.objects import NftCounter

    ports = ["tap_a", "tap_a_b", "tap-a"]  # tap-a's identifier is tap_a_<hash>
    state = NftState(
        chains={chain_to(p): NftChain(chain_to(p), "egress", "", 0) for p in ports},
        counters={f"{chain_to(p)}_{suffix}": CounterValue(0, 0) for p in ports for suffix in ("offered", "pps_dropped")}
        | {"to_other_offered": CounterValue(0, 0)})
    grouped = nft_by_port(ports, state)
    for port in ports:
        names = sorted(o.name for o in grouped[port] if isinstance(o, NftCounter))
        assert names == sorted(f"{chain_to(port)}_{s}" for s in ("offered", "pps_dropped"))
        assert [o.dev for o in grouped[port] if isinstance(o, NftChain)] == [port]  # nft 1.0.6 omits the device
