"""Effective QoS (precedence, most restrictive wins, sources) and the port planner's output."""

import pytest

from vmqos.core.desired.effective import QosSource, combine, effective_for_port
from vmqos.core.errors import UnsupportedError
from vmqos.core.model import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
    TrafficMatch,
)
from vmqos.core.model.document import QosDocument
from vmqos.core.model.host import (
    EgressMode,
    Flavor,
    HostState,
    InstanceSpec,
    NetworkSpec,
    Policy,
    PortSpec,
)
from vmqos.core.plan.diff import diff
from vmqos.core.plan.names import chain_from, ifb_name, nft_ident
from vmqos.core.plan.nft_objects import POLICE_MARK
from vmqos.core.plan.objects import (
    HtbClass,
    IfbLink,
    NftChain,
    NftLimit,
    Policer,
    Qdisc,
    U32Filter,
    rule_from_expr,
)
from vmqos.core.plan.planner import (
    KernelProfile,
    min_burst,
    plan_port,
    quantum,
    queue_limit,
)
from vmqos.core.plan.render import render

RESQUOTA = BandwidthLimit(262_144_000, 524_288_000, 134_217_728)


def egress(**kw):
    return NetworkQos(egress=DirectionQos(**kw))


def test_most_restrictive_wins_per_field_with_its_source():
    flavor = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10**8, 2 * 10**8, 10**6)))
    policy = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(5 * 10**7, None, 2 * 10**6)),
                        egress=DirectionQos(dscp=26))
    eff = combine([QosSource("port policy gold", policy), QosSource("flavor m1", flavor)])
    assert eff.ingress.rate_bps.value == 5 * 10**7 and eff.ingress.rate_bps.source == "port policy gold"
    # the policy has no peak: it caps the port at its rate, so no peak survives
    assert eff.ingress.peak_bps is None
    assert eff.ingress.burst_bytes.value == 10**6 and eff.ingress.burst_bytes.source == "flavor m1"
    assert eff.egress.dscp.value == 26 and eff.egress.rate_bps is None


def test_peak_survives_when_every_source_allows_it():
    a = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(100, 400)))
    b = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(200, 300)))
    eff = combine([QosSource("a", a), QosSource("b", b)])
    assert (eff.ingress.rate_bps.value, eff.ingress.peak_bps.value, eff.ingress.peak_bps.source) == (100, 300, "b")


def _state(port_policy=None, net_policy="net-pol"):
    pols = {"port-pol": Policy("port-pol", egress(bandwidth=BandwidthLimit(3_000_000))),
            "net-pol": Policy("net-pol", egress(bandwidth=BandwidthLimit(1_000_000), dscp=10))}
    port = PortSpec("tap-a", network="priv", policy=port_policy)
    inst = InstanceSpec("vm", flavor="f", ports=(port,))
    flavor = Flavor("f", QosDocument(network=egress(bandwidth=BandwidthLimit(2_000_000))))
    return HostState(policies=pols, flavors={"f": flavor}, networks={"priv": NetworkSpec("priv", net_policy)},
                     instances={"vm": inst}), inst, port


def test_port_policy_replaces_the_network_policy_as_in_neutron():
    state, inst, port = _state(port_policy="port-pol")
    eff = effective_for_port(state, inst, port)
    assert eff.egress.rate_bps.value == 2_000_000 and eff.egress.rate_bps.source == "flavor f"
    assert eff.egress.dscp is None  # the network policy does not apply at all
    state, inst, port = _state()
    eff = effective_for_port(state, inst, port)
    assert eff.egress.rate_bps.source == "network priv policy net-pol" and eff.egress.dscp.value == 10


def _plan(qos, **kw):
    return plan_port("tap-vm1", combine([QosSource("flavor m1.resquota", qos)]), **kw)


def _find(objs, cls, **attrs):
    return [o for o in objs if isinstance(o, cls) and all(getattr(o, k) == v for k, v in attrs.items())]


def test_seed_resquota_towards_the_instance():
    p = _plan(NetworkQos(ingress=DirectionQos(bandwidth=RESQUOTA)))
    (parent,) = _find(p.objects, HtbClass, dev="tap-vm1", classid="1:1")
    # The port's bucket is held to the average (a top-level class would run at its ceil forever);
    # the leaves reach the peak while the bucket's burst lasts.
    assert (parent.rate_bps, parent.ceil_bps, parent.burst_bytes, parent.cburst_bytes) == \
        (262_144_000, 262_144_000, 128 * 2**20, 128 * 2**20)
    (root,) = _find(p.objects, Qdisc, dev="tap-vm1", parent="root")
    assert root.qdisc_kind == "htb" and root.default_minor == 0x10
    (leaf,) = _find(p.objects, HtbClass, classid="1:10")
    assert leaf.parent == "1:1" and leaf.ceil_bps == 524_288_000
    assert any("4.1 s" in n.message for n in p.notes)
    commands = render(diff(p.objects, []))
    assert ("tc class replace dev tap-vm1 parent 1: classid 1:1 htb rate 262144kbit ceil 262144kbit burst 128mb "
            "cburst 128mb quantum 60000") in commands
    assert p.ingress.as_json()["burst_bytes"] == 134_217_728


def test_seed_bw_limiter_and_dscp():
    p = _plan(egress(bandwidth=BandwidthLimit(3_000_000, None, 37_500), dscp=26))
    ifb = ifb_name("tap-vm1")
    assert p.ifb == ifb and _find(p.objects, IfbLink, name=ifb)
    (parent,) = _find(p.objects, HtbClass, dev=ifb, classid="1:1")
    assert (parent.rate_bps, parent.burst_bytes) == (3_000_000, 37_500)
    # No tc redirect: nft's ingress hook feeds the IFB, after counting, limiting and marking, because
    # tc's ingress runs first and what the IFB re-injects skips nft's hook.
    assert not _find(p.objects, U32Filter, dev="tap-vm1") and not _find(p.objects, Qdisc, dev="tap-vm1")
    (chain,) = _find(p.objects, NftChain, name=chain_from("tap-vm1"))
    assert chain.hook == "ingress" and {r.dscp for r in chain.rules} == {None, 26}
    assert chain.rules[-1].fwd_to == ifb and chain.forwards_to() == (ifb,)
    assert "ip dscp set 26" in " ".join(r.text() for r in chain.rules)
    assert chain.rules[-1].text() == f'fwd to "{ifb}"' and chain.rules[-1].expr() == [{"fwd": {"dev": ifb}}]
    assert rule_from_expr(chain.rules[-1].expr()) == chain.rules[-1]
    # the IFB's queues come first in the plan: they exist before anything is sent to them
    assert p.objects.index(chain) > p.objects.index(parent)


def test_police_mode_compensates_for_the_missing_l2_header_in_a_bucket_of_the_burst():
    p = _plan(egress(bandwidth=BandwidthLimit(100_000_000, None, 125_000)), egress_mode=EgressMode.POLICE)
    assert not _find(p.objects, IfbLink)
    assert _find(p.objects, Qdisc) == [Qdisc("tap-vm1", "ingress", "ffff:", "ingress")]
    (chain,) = [c for c in _find(p.objects, NftChain) if c.hook == "ingress"]
    (police,) = [r for r in chain.rules if r.mark_bit]
    (bucket,) = _find(p.objects, Policer)
    assert police.mark_bit == POLICE_MARK and police.verdict == "drop" and not _find(p.objects, NftLimit)
    # the bucket counts IP bytes (as nft's limit did): full-size frames are held to the frame rate
    rate = 100_000_000 * 1500 // (8 * 1514)
    assert (bucket.rate_bytes, bucket.burst_bytes, bucket.bucket_bytes) == \
        (rate, 125_000 * 1500 // 1514, 125_000 * 1500 // 1514)  # the bucket is the burst, nothing more
    assert p.objects.index(bucket) < p.objects.index(chain)  # it marks before the rule drops
    assert any("its bucket is the burst (123844 bytes)" in n.message for n in p.notes)
    # without a burst, police mode's default is one second of traffic (TCP through a policer needs it),
    # shape mode's 10 ms
    default = _plan(egress(bandwidth=BandwidthLimit(100_000_000)), egress_mode=EgressMode.POLICE)
    assert _find(default.objects, Policer)[0].burst_bytes == 12_500_000 * 1500 // 1514
    assert default.egress.burst_bytes == 12_500_000
    assert "police default (1000 ms" in default.egress.source["burst_bytes"]
    assert _plan(egress(bandwidth=BandwidthLimit(100_000_000))).egress.burst_bytes == 125_000
    with pytest.raises(UnsupportedError, match="shape"):
        _plan(egress(bandwidth=BandwidthLimit(10**8), classes=(TrafficClass("web", 50, TrafficMatch("tcp", (80,))),
                                                               TrafficClass("rest", 50))),
              egress_mode=EgressMode.POLICE)


def test_bursts_floors_quanta_and_queues():
    prof = KernelProfile()
    assert min_burst(1_000_000, 1500, prof) == 3028  # two frames beat one 4 ms tick at 1 Mbit/s
    assert min_burst(10**9, 1500, prof) == 500_000  # one tick at 1 Gbit/s
    assert quantum(100_000, 1500, prof) == 1514 and quantum(1_000_000, 1500, prof) == 12_500 and quantum(10**10, 1500, prof) == 60_000
    assert queue_limit(10**6, prof) == 131_072 and queue_limit(10**9, prof) == 2_500_000
    p = _plan(NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10**8, None, 2000))))
    (parent,) = _find(p.objects, HtbClass, classid="1:1")
    assert parent.burst_bytes == min_burst(10**8, 1500, prof)
    assert any("raised" in n.message for n in p.notes)
    p = _plan(NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10**8))))
    (parent,) = _find(p.objects, HtbClass, classid="1:1")
    assert parent.burst_bytes == 125_000 and "default" in p.ingress.source["burst_bytes"]


def test_traffic_classes_become_leaves_and_u32_filters():
    classes = (TrafficClass("web", 50, TrafficMatch("tcp", (80, 443))), TrafficClass("mail", 30,
               TrafficMatch("tcp", (25,))), TrafficClass("rest", 20))
    p = _plan(NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10**8), classes=classes)))
    rates = {c.classid: c.rate_bps for c in _find(p.objects, HtbClass) if c.classid != "1:1"}
    # the sparse class takes 2 % of the limit; the classes share the rest 50/30/20
    assert rates == {"1:f": 2_000_000, "1:10": 19_600_000, "1:11": 49_000_000, "1:12": 29_400_000}
    filters = _find(p.objects, U32Filter)
    assert len(filters) == 4 + 2 * 2 * 2 + 1 * 2 * 2  # sparse; ports x (sport, dport) x (IPv4, IPv6)
    assert len({f.prio for f in filters}) == len(filters)
    assert {f.flowid for f in filters} == {"1:10", "1:f", "1:11", "1:12"}
    assert [f.flowid for f in sorted(filters, key=lambda f: f.prio)][:4] == ["1:10", "1:10", "1:f", "1:f"]


def test_pps_limits_spare_gso_aggregates():
    p = _plan(NetworkQos(ingress=DirectionQos(packet_rate=PacketRateLimit(1000)),
                         egress=DirectionQos(packet_rate=PacketRateLimit(5000, 500))))
    chains = {c.hook: c for c in _find(p.objects, NftChain)}
    (to_pps,) = [r for r in chains["egress"].rules if r.limit_pps]
    (from_pps,) = [r for r in chains["ingress"].rules if r.limit_pps]
    assert (to_pps.limit_pps, to_pps.limit_pps_burst, to_pps.max_length) == (1000, 100, 1514)
    assert (from_pps.limit_pps, from_pps.limit_pps_burst, from_pps.max_length) == (5000, 500, 1500)
    assert not _find(p.objects, Qdisc)


def test_names_are_stable_short_and_valid():
    assert ifb_name("tap6ffab502-4a") == ifb_name("tap6ffab502-4a") and len(ifb_name("tap6ffab502-4a")) == 15
    assert nft_ident("tap_a") == "tap_a" and nft_ident("tap-a") != nft_ident("tap_a")
    assert nft_ident("tap-a").replace("_", "").isalnum()


def test_no_limit_plans_nothing_but_accounting():
    p = plan_port("tap-x", combine([]), accounting=False)
    assert p.objects == () and render(diff(p.objects, [])) == []
    counted = plan_port("tap-x", combine([]))
    assert {type(o).__name__ for o in counted.objects} == {"NftSet", "NftCounter", "NftChain"}
    assert not any(r.verdict or r.limit_pps or r.dscp for c in _find(counted.objects, NftChain) for r in c.rules)
    assert counted.ingress.mechanism is None and counted.egress.mechanism is None


def test_accounting_counts_syns_and_per_ip_after_the_limits():
    p = plan_port("tap-x", combine([QosSource("t", NetworkQos(egress=DirectionQos(packet_rate=PacketRateLimit(1000))))]))
    (frm,) = [c for c in _find(p.objects, NftChain) if c.hook == "ingress"]
    names = [r.counter or f"acct:{r.account_set}" for r in frm.rules]
    assert names[:2] == [f"{frm.name}_offered", f"{frm.name}_syn"] and names[-1] == f"{frm.name}_passed"
    assert names.index(f"{frm.name}_pps_dropped") < names.index("acct:acct_from4_v1")
    (acct4,) = [r for r in frm.rules if r.account_set == "acct_from4_v1"]
    assert acct4.text() == 'meta protocol ip update @acct_from4_v1 { "tap-x" . ip saddr . ip daddr }'
    assert rule_from_expr(acct4.expr()) == acct4
    syn = frm.rules[1]
    assert rule_from_expr(syn.expr()) == syn and "tcp flags & (fin|syn|rst|ack) == syn" in syn.text()
