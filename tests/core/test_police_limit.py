"""Police mode's limiter is a named nft limit object (issue 13 item 2).

A byte limit written into a rule starts with a full bucket (one second of traffic) every time its
chain is flushed and refilled: each live change of a policed port let one more second through. A
named limit keeps its bucket across chain rewrites (measured on 6.18), so a change that keeps the
rate never re-creates it; the kernel cannot change a limit object's rate (`add limit` of an
existing name is accepted and ignored), so a new rate is a new object, named by its values.
"""

from __future__ import annotations

import re

from vmqos.core.desired.effective import QosSource, combine
from vmqos.core.model.host import EgressMode
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, PacketRateLimit
from vmqos.core.observed import NftState
from vmqos.core.plan.diff import diff, replay
from vmqos.core.plan.names import chain_from
from vmqos.core.plan.objects import NftChain, NftLimit, limit_from_json, rule_from_expr
from vmqos.core.plan.planner import plan_port
from vmqos.core.plan.render import render
from vmqos.drivers.fake import FakeKernel, fake_drivers
from vmqos.drivers.nft_json import transaction
from vmqos.reconcile.decide import nft_by_port

PORT = "tap-vm1"


def police(rate: int, dscp: int | None = None, pps: int | None = None):
    qos = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(rate), dscp=dscp,
                                         packet_rate=PacketRateLimit(pps) if pps else None))
    return plan_port(PORT, combine([QosSource("t", qos)]), egress_mode=EgressMode.POLICE)


def _limits(objects) -> list[NftLimit]:
    return [o for o in objects if isinstance(o, NftLimit)]


def test_the_police_rule_counts_into_a_named_limit_and_writes_no_limit_of_its_own():
    plan = police(50_000_000)
    (limit,) = _limits(plan.objects)
    (chain,) = [o for o in plan.objects if isinstance(o, NftChain) and o.name == chain_from(PORT)]
    (rule,) = [r for r in chain.rules if r.limit_name]
    assert rule.limit_name == limit.name and rule.verdict == "drop" and rule.limit_bytes_per_s is None
    assert rule.text() == f'limit name "{limit.name}" counter name "{chain_from(PORT)}_dropped" drop'
    assert rule_from_expr(rule.expr()) == rule
    assert plan.objects.index(limit) < plan.objects.index(chain)  # it exists before a rule refers to it
    script = "\n".join(render(diff(plan.objects, [])))
    assert f"add limit netdev vmqos {limit.name} {{ rate over {limit.rate_bytes} bytes/second" in script
    # no byte limit written into a rule: it would start full (a second of traffic) at each rewrite
    assert not re.search(r"limit rate over \d+ bytes/second", script)


def test_a_change_that_keeps_the_rate_rewrites_the_chain_but_keeps_the_limit_object():
    for before, after in ((police(50_000_000, dscp=10), police(50_000_000, dscp=18)),
                          (police(50_000_000), police(50_000_000, pps=5000))):
        ops = diff(after.objects, before.objects)
        assert any(op.action == "replace" and isinstance(op.obj, NftChain) for op in ops)
        assert not [op for op in ops if isinstance(op.obj, NftLimit)], ops
        cmds = transaction(ops)
        assert not [c for c in cmds if "limit" in next(iter(c.values()))], cmds
        # (a packet-rate limit stays in its rule: its bucket is its burst of packets, not a second)
        assert not re.search(r"limit rate over \d+ bytes/second", "\n".join(render(ops)))


def test_a_rate_change_adds_the_new_limit_before_the_rules_and_deletes_the_old_after_them():
    before, after = police(50_000_000), police(20_000_000)
    (old,), (new,) = _limits(before.objects), _limits(after.objects)
    assert old.name != new.name and new.rate_bytes < old.rate_bytes
    cmds = transaction(diff(after.objects, before.objects))
    verbs = [(verb, kind, spec.get("name") or spec.get("chain")) for c in cmds for verb, body in c.items()
             for kind, spec in body.items()]
    add, flush = verbs.index(("add", "limit", new.name)), verbs.index(("flush", "chain", chain_from(PORT)))
    rules = [i for i, v in enumerate(verbs) if v == ("add", "rule", chain_from(PORT))]
    assert add < flush < min(rules) and max(rules) < verbs.index(("delete", "limit", old.name))
    assert replay(before.objects, diff(after.objects, before.objects)) and \
        diff(after.objects, replay(before.objects, diff(after.objects, before.objects))) == []


def test_a_limit_object_is_read_back_as_nft_lists_it_and_goes_to_its_port():
    limit = _limits(police(50_000_000).objects)[0]
    listed = {"family": "netdev", "table": "vmqos", "name": limit.name, "handle": 7, "rate": limit.rate_bytes,
              "per": "second", "rate_unit": "bytes", "burst": limit.burst_bytes, "burst_unit": "bytes",
              "inv": True}
    assert limit_from_json(listed) == limit
    assert limit_from_json({**listed, "rate": 3, "rate_unit": "mbytes", "burst": 0}) == \
        NftLimit(limit.name, 3 * 1024 * 1024, 0)  # nft prints whole 1024-based units
    grouped = nft_by_port([PORT, "tap-vm10"], NftState(limits={limit.name: limit}))
    assert limit in grouped[PORT] and limit not in grouped["tap-vm10"]


def test_the_fake_kernel_keeps_the_limit_across_rewrites_and_ignores_a_re_add_as_the_kernel_does():
    kernel = FakeKernel([PORT])
    _, nft, _ = fake_drivers(kernel, None)
    before = police(50_000_000, dscp=10)
    nft.apply([op for op in diff(before.objects, []) if op.obj.key[0].startswith("nft")])
    (limit,) = _limits(before.objects)
    assert nft.read().limits == {limit.name: limit}
    after = police(50_000_000, dscp=18)
    ops = [op for op in diff(after.objects, nft.read().objects()) if op.obj.key[0].startswith("nft")]
    nft.apply(ops)
    assert nft.read().limits == {limit.name: limit}
    assert diff(after.objects, nft.read().objects()) == []
