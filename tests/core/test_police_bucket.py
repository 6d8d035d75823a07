"""Police mode's bucket keeps its tokens across live changes (issue 13 item 2).

nft's byte limit cannot be changed in place and starts full (one second of traffic) when created,
so each rate change or shape -> police switch handed the instance another second. The bucket is
now vmqos's eBPF program on the port's tc ingress (`Policer`), whose rate a change rewrites in its
map; nft drops and counts what it marks. These tests hold the plan, the diff, the order of the
phases, the state carried across a rate change and the fake kernel to that.
"""

from __future__ import annotations

import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from vmqos.core.desired.effective import QosSource, combine
from vmqos.core.model.host import EgressMode
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, PacketRateLimit
from vmqos.core.plan.diff import diff, replay
from vmqos.core.plan.names import chain_from
from vmqos.core.plan.nft_objects import POLICE_MARK, NftLimit
from vmqos.core.plan.objects import NftChain, Policer, Qdisc, rule_from_expr
from vmqos.core.plan.planner import plan_port
from vmqos.core.plan.render import render
from vmqos.drivers import bpf_police
from vmqos.drivers.fake import FakeKernel, fake_drivers
from vmqos.reconcile.decide import apply_phases, split_policers
from vmqos.reconcile.execute import Reconciler

PORT = "tap-vm1"
NSEC = 1_000_000_000


def police(rate: int, dscp: int | None = None, pps: int | None = None, mode: EgressMode = EgressMode.POLICE):
    qos = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(rate), dscp=dscp,
                                         packet_rate=PacketRateLimit(pps) if pps else None))
    return plan_port(PORT, combine([QosSource("t", qos)]), egress_mode=mode)


def _one(objects, cls):
    (found,) = [o for o in objects if isinstance(o, cls)]
    return found


def test_the_police_rule_drops_what_the_bucket_marks_and_no_nft_limit_is_planned():
    plan = police(50_000_000)
    bucket = _one(plan.objects, Policer)
    chain = next(o for o in plan.objects if isinstance(o, NftChain) and o.name == chain_from(PORT))
    (rule,) = [r for r in chain.rules if r.mark_bit]
    assert rule.text() == f'meta mark & {POLICE_MARK:#x} == {POLICE_MARK:#x} counter name "{chain_from(PORT)}_dropped" drop'
    assert rule_from_expr(rule.expr()) == rule
    assert not [o for o in plan.objects if isinstance(o, NftLimit)]
    assert Qdisc(PORT, "ingress", "ffff:", "ingress") in plan.objects
    assert bucket.bucket_bytes == bucket.burst_bytes  # the burst, no hidden second (issue 13 item 2)
    assert bucket.burst_bytes == 50_000_000 // 8 * 1500 // 1514  # police mode's default: one second
    script = "\n".join(render(diff(plan.objects, [])))
    assert "limit rate over" not in script and "vmqos police program on tap-vm1 ingress" in script


def test_a_rate_change_is_one_in_place_change_of_the_bucket_and_nothing_else():
    before, after = police(50_000_000, dscp=10), police(20_000_000, dscp=10)
    ops = diff(after.objects, before.objects)
    assert [(op.action, type(op.obj)) for op in ops] == [("replace", Policer)]
    # ... which the driver applies to the running program's map (tc cannot load one): never a new bucket
    rest, loads = split_policers({PORT: ops})
    assert rest == {} and loads == {PORT: ops}


def test_a_change_of_other_rules_leaves_the_bucket_alone():
    for before, after in ((police(50_000_000, dscp=10), police(50_000_000, dscp=18)),
                          (police(50_000_000), police(50_000_000, pps=5000))):
        ops = diff(after.objects, before.objects)
        assert ops and not [op for op in ops if isinstance(op.obj, Policer)], ops


def test_shape_to_police_loads_the_bucket_before_the_chain_drops_on_its_mark_and_back():
    shaped, policed = police(50_000_000, mode=EgressMode.SHAPE), police(50_000_000)
    phases = apply_phases({PORT: diff(policed.objects, shaped.objects)}, 16)
    assert [type(op.obj) for op in phases.tc_up.ops[PORT]] == [Qdisc, Policer]
    assert any(isinstance(op.obj, NftChain) for op in phases.nft.ops[PORT])  # after tc_up
    back = apply_phases({PORT: diff(shaped.objects, policed.objects)}, 16)
    assert any(isinstance(op.obj, NftChain) for op in back.nft.ops[PORT])
    # the chain forwards to the IFB first; the bucket and its qdisc go with the deletions, after it
    assert {type(op.obj) for op in back.tc_down.ops[PORT]} >= {Qdisc}
    assert diff(shaped.objects, replay(policed.objects, diff(shaped.objects, policed.objects))) == []


def _tokens(tat: int, now: int, rate: int, bucket: int) -> int:
    return bucket - max(0, tat - now) * rate // NSEC


@given(st.integers(1_000, 10**9), st.integers(1_000, 10**9), st.integers(0, 10**9), st.integers(0, 10**6),
       st.integers(0, 3 * NSEC))
def test_a_rate_change_keeps_the_tokens_in_bytes_and_never_more_than_the_new_size(r1, r2, burst, _, debt):
    now = 10**12
    old, new = (r1, burst + r1), (r2, burst + r2)
    tat = now + min(debt, (burst + r1) * NSEC // r1)
    carried = bpf_police.carried_tat(tat, now, old, new)
    before, after = _tokens(tat, now, *old), _tokens(carried, now, *new)
    assert after <= min(new[1], before) + 1  # rounded up in time: never a byte more
    assert after >= min(new[1], before) - 1 - r2 // NSEC


def _passes(state: list[int], now: int, length: int, rate: int, bucket: int) -> bool:
    """The program's decision (`bpf_police.program`), in Python: GCRA with tat' = max(tat, now)."""
    cost, tau = length * NSEC // rate, bucket * NSEC // rate
    tat = max(state[0], now)
    if tat - now + min(cost, tau) > tau:
        return False
    state[0] = tat + cost
    return True


@given(st.lists(st.tuples(st.integers(0, 20_000_000), st.integers(64, 65_536), st.sampled_from([None, 0, 1])),
                min_size=2, max_size=80),
       st.sampled_from([(6_190_000, 262_144), (2_476_000, 262_144), (6_190_000, 30_000), (2_476_000, 6_190_000)]),
       st.sampled_from([(2_476_000, 262_144), (6_190_000, 30_000), (6_190_000, 6_190_000)]))
@example([(0, 65_536, None)] * 5 + [(1, 0, 1)] + [(0, 65_536, None)] * 4, (6_190_000, 262_144), (2_476_000, 262_144))
@example([(0, 65_536, None), (10_000_000, 65_536, None), (1_000_000, 65_536, None)], (6_190_000, 30_000),
         (6_190_000, 30_000))
@settings(max_examples=300)
def test_no_interval_passes_more_than_the_burst_plus_the_rate_across_rate_changes(packets, first, second):
    """The issue's rule on the program's arithmetic: any interval of t passes at most max burst + max
    rate x t, plus one aggregate when the burst is smaller than one (it passes a full bucket and goes
    into debt); a change (`carried_tat`) never adds tokens. `None` a packet, 0/1 a change to `first`/`second`."""
    now, config, state = 10**12, first, [10**12]
    passed: list[tuple[int, int]] = []
    for gap, length, change in packets:
        now += gap
        if change is not None:
            new = (first, second)[change]
            state[0] = bpf_police.carried_tat(state[0], now, config, new)
            config = new
        elif _passes(state, now, length, *config):
            passed.append((now, length))
    rate, burst = max(first[0], second[0]), max(first[1], second[1])
    extra = max(0, 65_536 - min(first[1], second[1]))
    for i, (start, _) in enumerate(passed):
        total = 0
        for j in range(i, len(passed)):
            total += passed[j][1]
            end = passed[j][0]
            assert total <= burst + rate * (end - start) // NSEC + extra + (j - i + 1), (start, end, total)


def test_the_program_is_whole_instructions_and_every_jump_lands_inside_it():
    code = bpf_police.program(map_fd=7)
    assert len(code) % 8 == 0
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    for i, (op, _, off, _) in enumerate(insns):
        if op & 0x07 == 0x05 and op not in (0x85, 0x95):  # a jump
            assert 0 <= i + 1 + off < len(insns), (i, op, off)
    assert insns[-1][0] == 0x95 and any(op == 0xDB for op, *_ in insns)  # exit; compare-and-swap


def test_the_fake_kernel_changes_the_bucket_in_place():
    kernel = FakeKernel([PORT])
    tc, nft, batch = fake_drivers(kernel, None)
    rec = Reconciler(None, tc=tc, nft=nft, batch=batch)
    results, _ = rec.reconcile({PORT: police(50_000_000)})
    assert not [r.error for r in results if r.error]
    results, _ = rec.reconcile({PORT: police(20_000_000)})
    assert [(op.action, type(op.obj)) for r in results for op in r.ops] == [("replace", Policer)]
    assert not [r.error for r in results if r.error]
    assert _one(tc.read([PORT])[PORT].objects, Policer) == _one(police(20_000_000).objects, Policer)
