"""Traffic tier: live changes of a police-mode port under a TCP flow never refill its bucket
(issue 13 item 2).

nft's byte limit holds at least one second of traffic and starts full whenever it is created
(kernel-lab-facts §2b; nft_limit_init), and the kernel cannot change a limit object's rate: each
rate change or shape -> police switch handed the instance one more second (100 ms samples of
471-541 Mbit/s against 50). The bucket is now vmqos's eBPF program on the port's tc ingress, whose
rate lives in a map that a change rewrites in place, keeping the bucket's tokens; a new bucket (a
switch to police) starts with the configured burst only.

What passed the police rule (the chain's `passed` counter, IP bytes, as the bucket counts them) is
read every 100 ms and run through the one token bucket the limit is meant to be: nft's old size
(one second of traffic plus the burst), full at the flow's start, refilled at the rate in force
for each sample's longest possible span (from the start of the previous read to the end of this
one: a read takes a few ms), never above its size at the end of a sample. It must never go below
minus one 64 KiB GSO aggregate (a read can fall on either side of one) and 20 ms of traffic. A
fresh bucket at a change is a second of traffic that this bucket does not have: it goes negative.
Not a bound on each 100 ms sample alone: policed TCP alternates 0 and about twice the rate per
100 ms (its losses cost a 200 ms RTO, and the bucket refills meanwhile), which the bucket allows.

The bucket is capped after a sample's traffic is taken from it, not before: a bucket that is full
when a sample starts passes its size plus the sample's refill within it (it is capped at every
instant, and refills as it drains). Capping first allowed only the size, which made the model
about 0.1 s of traffic stricter than the bucket at the flow's start, an error that a lower rate
after a change magnified (0.02 s at 50 Mbit/s read as 0.05 s at 20). The order is that of the
bucket the docstring states; the margin is unchanged.
"""

from __future__ import annotations

import threading
import time

import pytest

from vmqos.core.model.host import EgressMode
from vmqos.core.plan.names import chain_from
from vmqos.core.desired.ports import PortChange
from vmqos.drivers.nft import Nft

from .harness import finish_client, iperf_server, kill, log, start_client
from .test_limits import LIBVIRT_KBPS, policy_file

pytestmark = [pytest.mark.traffic, pytest.mark.kernel]

MBIT = 1_000_000
GSO_MAX = 65_536
MTU = 1500


def police_bytes(mbit: int) -> int:
    """The police rule's rate in IP bytes/s for a frame rate (the planner's MTU scaling)."""
    return mbit * MBIT * MTU // (8 * (MTU + 14))


class Passed:
    """The chain's `passed` counter read every 100 ms in a thread: (read start, read end, bytes)."""

    def __init__(self, netns: str, port: str) -> None:
        self.nft, self.name = Nft(netns), f"{chain_from(port)}_passed"
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            value = self.nft.counters()[self.name].bytes
            self.samples.append((t0, time.monotonic(), value))
            next_at += 0.1
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> "Passed":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _run(lab, ports, changes: list[PortChange], limits_mbit: list[int]) -> None:
    """A 6 s TCP flow from vm1; after 1 s, `changes` one after the other every 0.4 s. `limits_mbit[i]` is
    the limit in force after change i (index 0: before the first change)."""
    vm1 = lab.instance(1)
    seconds = 6
    with iperf_server(lab.wan_ns), Passed(ports.netns, vm1.port) as passed:
        client = start_client(vm1.netns, lab.wan_address, seconds)
        applied: list[tuple[float, float]] = []
        try:
            time.sleep(1.0)
            for change in changes:
                t0 = time.monotonic()
                ports.set(vm1.port, change)
                applied.append((t0, time.monotonic()))
                time.sleep(max(0.0, 0.4 - (time.monotonic() - t0)))
            finish_client(client, seconds)
        finally:
            kill(client)
    start = passed.samples[0][0]
    rates, below = [], []
    tokens = None
    for (s0, _, b0), (r0, r1, b1) in zip(passed.samples, passed.samples[1:]):  # s0: previous read's start
        # the limit in force: the higher of the two around a change that ran during this sample
        before = sum(1 for _, end in applied if end <= r0)
        during = sum(1 for begin, _ in applied if begin < r1)
        rate = police_bytes(max(limits_mbit[before], limits_mbit[during]))
        size = rate + rate // 100  # nft's bucket: one second of traffic plus the burst (10 ms)
        tokens = min(size, (size if tokens is None else tokens) + rate * (r1 - s0) - (b1 - b0))
        rates.append((round(r0 - start, 1), round((b1 - b0) * 8 / (r1 - s0) / MBIT),
                      max(limits_mbit[before], limits_mbit[during]), round(tokens / rate, 2)))
        # One aggregate may land on either side of a read, and a read's instant is known only within
        # its span: 20 ms of traffic more. A refilled bucket showed up as -0.6 s or less (the nft
        # limit objects before the bucket moved to tc: issue 13's note), far outside this margin.
        if tokens < -(GSO_MAX + rate // 50):
            below.append(rates[-1])
            tokens = 0.0  # count each refill once
    log(f"police under {len(changes)} live changes: (t s, passed Mbit/s, limit Mbit/s, bucket s) per 100 ms "
        f"{rates}; changes took {[round(b - a, 3) for a, b in applied]} s")
    assert len(passed.samples) >= 40
    assert not below, f"more passed than one token bucket allows across {len(changes)} live changes: {below}"


def test_police_port_keeps_its_bucket_across_live_changes_of_its_other_rules(lab, ports, tmp_path):
    """A DSCP mark toggled 10 times rewrites the chain each time; the rate stays 50 Mbit/s."""
    vm1 = lab.instance(1)
    rate = f"{50 * MBIT // LIBVIRT_KBPS},0,0"
    marks = [policy_file(tmp_path, f"dscp{m}", {"type": "dscp_marking", "dscp_mark": m}) for m in (10, 18)]
    ports.set(vm1.port, PortChange(outbound=rate, egress_mode=EgressMode.POLICE, policy=marks[0]))
    _run(lab, ports, [PortChange(policy=marks[(i + 1) % 2]) for i in range(10)], [50] * 11)


def test_police_port_rate_changes_never_refill_its_bucket(lab, ports):
    vm1 = lab.instance(1)
    rates = [50, 20] * 6
    ports.set(vm1.port, PortChange(outbound=f"{rates[0] * MBIT // LIBVIRT_KBPS},0,0", egress_mode=EgressMode.POLICE))
    _run(lab, ports, [PortChange(outbound=f"{r * MBIT // LIBVIRT_KBPS},0,0") for r in rates[1:11]], rates[:11])


def test_a_shape_to_police_switch_never_lets_more_than_the_limit_through(lab, ports):
    vm1 = lab.instance(1)
    rate = f"{50 * MBIT // LIBVIRT_KBPS},0,0"
    ports.set(vm1.port, PortChange(outbound=rate, egress_mode=EgressMode.SHAPE))
    modes = [EgressMode.POLICE, EgressMode.SHAPE] * 5
    _run(lab, ports, [PortChange(egress_mode=m) for m in modes], [50] * 11)
