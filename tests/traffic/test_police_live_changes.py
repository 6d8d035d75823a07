"""Traffic tier: live changes of a police-mode port under a TCP flow never let more through than
the limit and the burst allow (issue 13 item 2).

The rule, sampled every 100 ms: what passed in a sample of real elapsed time t is at most
limit x t + burst. It is measured where it cannot be wrong: at the receiver (the wan's eth0 rx
bytes, frames, downstream of the policer and of the shaper alike; nothing queues between the
policer and it), read over netlink in this process, each read between two clock readings of its
own (a few microseconds apart): t runs from the start of the previous read to the end of this one.
The limit is the one in force during the sample (the higher of the two around a change that ran in
it), the burst the port's (256 KiB, given explicitly: with police mode's default of one second the
rule would allow 11 times the rate over 100 ms and could not tell a refilled bucket). The margin is
one maximum-size GSO aggregate (64 KiB): the policer passes an aggregate a few microseconds before
the receiver counts it, so one aggregate can land in the sample after the one its tokens belong to.

main at 550277a failed it in every scenario, 1 to 28 samples a run (highest 115-250 Mbit/s against
bounds of 76-96; docs/benchmarks.md §4): its bucket held one second of traffic beyond the burst. Besides each sample, the whole run goes through
the one token bucket the limit is: full (the burst) at the start, refilled at the limit in force
over each sample's elapsed time, capped at the burst after the sample's bytes are taken (it is
capped at every instant and refills as it drains); it never goes below minus one aggregate. A
bucket refilled by a change (nft's limit objects before the eBPF bucket) takes it below that.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from vmqos.core.model.host import EgressMode
from vmqos.core.desired.ports import PortChange
from vmqos.drivers.counters import CounterReader
from vmqos.lab.topology import GUEST_DEVICE

from .harness import finish_client, iperf_server, kill, log, sh, start_client
from .test_limits import LIBVIRT_KBPS, policy_file

pytestmark = [pytest.mark.traffic, pytest.mark.kernel]

MBIT = 1_000_000
GSO_MAX = 65_536  # the largest aggregate (gso_max_size)
BURST = 256 * 1024  # bytes (frames): the port's explicit burst


class Received:
    """The receiver's rx bytes (frames) read every 100 ms in a thread: (read start, read end, bytes)."""

    def __init__(self, netns: str, device: str) -> None:
        self.reader = CounterReader(netns)
        self.index = int(json.loads(sh(netns, "ip", "-j", "link", "show", "dev", device).stdout)[0]["ifindex"])
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            value = self.reader.links()[self.index].rx_bytes
            self.samples.append((t0, time.monotonic(), value))
            next_at += 0.1
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> "Received":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.reader.close()


def _run(lab, ports, changes: list[PortChange], limits_mbit: list[int]) -> None:
    """A 6 s TCP flow from vm1; after 1 s, `changes` one after the other every 0.4 s. `limits_mbit[i]` is
    the limit in force after change i (index 0: before the first change)."""
    vm1 = lab.instance(1)
    seconds = 6
    with iperf_server(lab.wan_ns), Received(lab.wan_ns, GUEST_DEVICE) as received:
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
    start = received.samples[0][0]
    rows, over, below = [], [], []
    tokens = float(BURST)
    for (s0, _, b0), (r0, r1, b1) in zip(received.samples, received.samples[1:]):  # s0: previous read's start
        # the limit in force: the higher of the two around a change that ran during this sample
        before = sum(1 for _, end in applied if end <= s0)
        during = sum(1 for begin, _ in applied if begin < r1)
        mbit = max(limits_mbit[before:during + 1])
        rate, elapsed, passed = mbit * MBIT / 8, r1 - s0, b1 - b0
        bound = rate * elapsed + BURST + GSO_MAX
        tokens = min(float(BURST), tokens + rate * elapsed - passed)
        rows.append((round(r0 - start, 1), round(passed * 8 / elapsed / MBIT), round(bound * 8 / elapsed / MBIT),
                     mbit, round(tokens / BURST, 2)))
        if passed > bound:
            over.append(rows[-1])
        if tokens < -GSO_MAX:
            below.append(rows[-1])
            tokens = 0.0  # count each refill once
    reads = [r1 - r0 for r0, r1, _ in received.samples]
    log(f"police under {len(changes)} live changes: (t s, received Mbit/s, bound Mbit/s, limit Mbit/s, bucket/burst) "
        f"per 100 ms {rows}; mean {(received.samples[-1][2] - received.samples[0][2]) * 8 / (received.samples[-1][1] - start) / MBIT:.1f} "
        f"Mbit/s; reads took at most {max(reads) * 1e6:.0f} us; changes took {[round(b - a, 3) for a, b in applied]} s")
    assert len(received.samples) >= 40
    assert received.samples[-1][2] - received.samples[0][2] > BURST * 4, "hardly anything was sent: the test proves nothing"
    assert not over, f"100 ms samples above limit x elapsed + burst + one aggregate across {len(changes)} live changes: {over}"
    assert not below, f"more passed than one token bucket of the burst allows across {len(changes)} live changes: {below}"


def _rate(mbit: int) -> str:
    """libvirt's `average,peak,burst` (kB/s, kB/s, KiB) with the test's explicit burst."""
    return f"{mbit * MBIT // LIBVIRT_KBPS},0,{BURST // 1024}"


def test_police_port_keeps_its_bucket_across_live_changes_of_its_other_rules(lab, ports, tmp_path):
    """A DSCP mark toggled 10 times rewrites the chain each time; the rate stays 50 Mbit/s."""
    vm1 = lab.instance(1)
    rate = _rate(50)
    marks = [policy_file(tmp_path, f"dscp{m}", {"type": "dscp_marking", "dscp_mark": m}) for m in (10, 18)]
    ports.set(vm1.port, PortChange(outbound=rate, egress_mode=EgressMode.POLICE, policy=marks[0]))
    _run(lab, ports, [PortChange(policy=marks[(i + 1) % 2]) for i in range(10)], [50] * 11)


def test_police_port_rate_changes_never_refill_its_bucket(lab, ports):
    vm1 = lab.instance(1)
    rates = [50, 20] * 6
    ports.set(vm1.port, PortChange(outbound=_rate(rates[0]), egress_mode=EgressMode.POLICE))
    _run(lab, ports, [PortChange(outbound=_rate(r)) for r in rates[1:11]], rates[:11])


def test_a_shape_to_police_switch_never_lets_more_than_the_limit_through(lab, ports):
    vm1 = lab.instance(1)
    ports.set(vm1.port, PortChange(outbound=_rate(50), egress_mode=EgressMode.SHAPE))
    modes = [EgressMode.POLICE, EgressMode.SHAPE] * 5
    _run(lab, ports, [PortChange(egress_mode=m) for m in modes], [50] * 11)
