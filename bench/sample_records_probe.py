#!/usr/bin/env python3
"""Issue 17's remaining cost, measured without the kernel: Python's per-port records against a columnar pass.

Usage (no root needed; measured runs under the benchmarks' lock):

    flock /tmp/vmqos-bench.lock .venv/bin/python bench/sample_records_probe.py --ports 1000 10000 --passes 7

`Sampler` runs its real arrays path over N ports planned as `sample_bench.py` plans them, but its
three reads return arrays filled in advance (what the C decoder would have written): what is timed
is only what the process does with the counters once read. Per pass:

  records   `Sampler(columns=False).sample` + `rates`: a `PortSample` (flows, link, counters) per
            port and a `PortRates` per port (the path before the columnar sample)
  sampler   the sampler's columnar sample as built (issue 17): `Sampler.sample` + `rates`, the
            columns from the same arrays, no record per port (every port moving, below its limits),
            and `Detectors.update` after it
  columnar  the same figures as numpy columns: the flows of every port from the same arrays
            (`queued_flow`'s formula, vectorised), the rates against the previous pass, and the
            ports whose offered packet rate or drop rate reach a threshold (what the detectors
            look at): no object per port

The columnar figures are checked against the records' for every port (offered/delivered/dropped
bits and packets per second, both directions) before anything is timed. A candidate for the
columnar sample of docs/benchmarks.md §6; "sampler" is the sampler's code since.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from array import array
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apply_bench as ab  # noqa: E402

from vmqos.core.plan.host import plan_host  # noqa: E402
from vmqos.core.plan.names import ifb_name  # noqa: E402
from vmqos.drivers.counter_arrays import LINK_FIELDS, NFT_FIELDS, QDISC_FIELDS, kind_words  # noqa: E402
from vmqos.monitor.sampler import Sampler, rates  # noqa: E402


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


class FakeArrays:
    """Stands for `ArrayReader`: returns the arrays of the current `tick`, as the decoder fills them."""

    def __init__(self, n: int, layout_sizes: tuple[int, int, int], devices: tuple[int, int]) -> None:
        self.n, self.sizes, self.devices, self.tick = n, layout_sizes, devices, 0
        self.rng = np.random.default_rng(17)
        nq, nl, nc = layout_sizes
        self.q = np.zeros((nq, QDISC_FIELDS), dtype=np.uint64)
        self.q[:, 0] = 1
        htb = kind_words("htb")
        self.q[:, 3], self.q[:, 4] = htb[0], htb[1]
        self.links = np.zeros((nl, LINK_FIELDS), dtype=np.uint64)
        self.links[:, 0] = 1
        self.c = np.zeros((nc, NFT_FIELDS), dtype=np.uint64)
        self.c[:, 0] = 1

    def advance(self) -> None:
        """One second of traffic on every port: sent bytes/packets grow, some drops, some backlog."""
        nq = self.q.shape[0]
        packets = self.rng.integers(0, 8000, nq).astype(np.uint64)
        self.q[:, 6] += packets
        self.q[:, 5] += packets * np.uint64(1400)
        self.q[:, 7] += self.rng.integers(0, 20, nq).astype(np.uint64)
        self.q[:, 10] = self.rng.integers(0, 5, nq).astype(np.uint64)
        self.q[:, 9] = self.q[:, 10] * np.uint64(1400)
        self.links[:, 1:5] += self.rng.integers(0, 8000, (self.links.shape[0], 4)).astype(np.uint64)
        # the nft counters (SYNs, packet-rate drops) stay still: the columns here leave them out

    def links_(self, layout: Any) -> tuple[array, tuple[int, int]]:
        return array("Q", self.links.tobytes()), self.devices

    def qdiscs(self, layout: Any, by_get: bool = False, slots: Any = None) -> array:
        return array("Q", self.q.tobytes())

    def counters(self, layout: Any, table: str = "vmqos", names: Any = None) -> tuple[array, list[Any]]:
        return array("Q", self.c.tobytes()), []

    def leaves_by_get(self, leaves: Any, batch: int = 256) -> array:
        return array("Q", bytes(8 * QDISC_FIELDS * 2 * len(leaves)))


class Columnar:
    """The candidate: every port's flows and rates as columns, from the same arrays."""

    def __init__(self, fake: FakeArrays) -> None:
        self.fake = fake
        self.previous: tuple[float, np.ndarray] | None = None

    def flows(self) -> np.ndarray:
        """(2N ports x directions, 5): offered bytes, delivered bytes, offered, delivered, dropped packets."""
        q = self.fake.q.astype(np.int64)
        nbytes, packets, drops, backlog, qlen = q[:, 5], q[:, 6], q[:, 7], q[:, 9], q[:, 10]
        mean = np.where(packets > 0, nbytes // np.maximum(packets, 1), 0)
        return np.stack([nbytes + backlog + drops * mean, nbytes, packets + drops + qlen, packets, drops], axis=1)

    def step(self, now: float, pps_threshold: float, drop_threshold: float) -> np.ndarray:
        f = self.flows()
        hot = np.zeros(0, dtype=np.int64)
        if self.previous is not None:
            then, before = self.previous
            seconds = now - then
            r = (f - before) / seconds
            r[:, :2] *= 8
            self.rates = r
            hot = np.flatnonzero((r[:, 2] >= pps_threshold) | (r[:, 4] >= drop_threshold))
        self.previous = (now, f)
        return hot


def columnar_sampler(plans: Any, ports: list[str], fake: FakeArrays, passes: int) -> tuple[float, float]:
    """Median CPU ms of the sampler's own columnar pass (sample + rates), and of the detectors after
    it, on the same arrays; the passes a second apart, every port moving (its TBF leaves read every
    pass) but below its limits (no drops: no detector's condition holds)."""
    from vmqos.core.analysis.detect import Detectors

    detectors = Detectors()
    with Sampler(None, method="arrays") as sampler:
        sampler._names = {idx: name for i, p in enumerate(ports) for idx, name in ((2 * i + 1, p), (2 * i + 2, ifb_name(p)))}
        sampler._devices = (len(sampler._names), sum(sampler._names))
        sampler._names_at = time.monotonic()
        reader = sampler._arrays
        assert reader is not None
        reader.links = fake.links_  # type: ignore[method-assign]
        reader.qdiscs = fake.qdiscs  # type: ignore[method-assign]
        reader.counters = fake.counters  # type: ignore[method-assign]
        reader.leaves_by_get = fake.leaves_by_get  # type: ignore[method-assign]
        previous = sampler.sample(plans)
        out, detect = [], []
        for _ in range(passes):
            drops = fake.q[:, 7].copy()
            fake.advance()
            fake.q[:, 7] = drops  # traffic below the limits: no drops, no detector's condition holds
            c0 = cpu_seconds()
            current = sampler.sample(plans)
            object.__setattr__(current, "monotonic", previous.monotonic + 1.0)  # a second apart, as the monitor's
            got = rates(previous, current)
            c1 = cpu_seconds()
            detectors.update(current.monotonic, got)
            out.append(c1 - c0)
            detect.append(cpu_seconds() - c1)
            previous = current
    return 1000 * statistics.median(out), 1000 * statistics.median(detect)


def one_size(n: int, passes: int) -> dict[str, Any]:
    plans = plan_host(ab.host_state(n))
    ports = list(plans)
    with Sampler(None, method="arrays", columns=False) as sampler:
        # names and devices as the link dump would have shown them: port i at 2i+1, its IFB at 2i+2
        sampler._names = {idx: name for i, p in enumerate(ports) for idx, name in ((2 * i + 1, p), (2 * i + 2, ifb_name(p)))}
        sampler._devices = (len(sampler._names), sum(sampler._names))
        sampler._names_at = time.monotonic()
        slots = sampler._slots_of(sampler._watch(plans))
        fake = FakeArrays(n, slots.layout.sizes(), sampler._devices)
        reader = sampler._arrays
        assert reader is not None
        reader.links = fake.links_  # type: ignore[method-assign]
        reader.qdiscs = fake.qdiscs  # type: ignore[method-assign]
        reader.counters = fake.counters  # type: ignore[method-assign]
        reader.leaves_by_get = fake.leaves_by_get  # type: ignore[method-assign]
        col = Columnar(fake)
        previous = sampler.sample(plans)
        col.step(previous.monotonic, 1e9, 1e9)
        # correctness first: the columns equal the records, port for port
        fake.advance()
        current = sampler.sample(plans)
        got = rates(previous, current)
        col.step(current.monotonic, 1e9, 1e9)
        for i, port in enumerate(ports):
            for d, row in (("ingress", 2 * i), ("egress", 2 * i + 1)):
                want, have = got[port].rates[d], col.rates[row]
                assert np.allclose([want.offered_bps, want.delivered_bps, want.offered_pps, want.delivered_pps,
                                    want.dropped_pps], have, rtol=1e-9), (port, d, want, have)
        previous = current
        records, columnar = [], []
        for _ in range(passes):
            fake.advance()
            c0 = cpu_seconds()
            current = sampler.sample(plans)
            rates(previous, current)
            records.append(cpu_seconds() - c0)
            previous = current
            c0 = cpu_seconds()
            col.step(time.monotonic(), 5000.0, 1000.0)
            columnar.append(cpu_seconds() - c0)
        built = columnar_sampler(plans, ports, fake, passes)
    return {"ports": n, "records_ms": 1000 * statistics.median(records), "sampler_ms": built[0],
            "detectors_ms": built[1],
            "columnar_ms": 1000 * statistics.median(columnar), "passes": passes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--passes", type=int, default=7)
    args = ap.parse_args()
    import timeit

    x = list(range(1000))
    print(f"calibration sum(range(1000)): {min(timeit.repeat(lambda: sum(x), number=2000, repeat=5)) / 2 * 1000:.2f} µs; "
          f"load average {os.getloadavg()}")
    print("| ports | records: `sample` + `rates` (arrays given) | columnar candidate (numpy) | ratio | "
          "the sampler's columns: `sample` + `rates` | + detectors |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.ports:
        r = one_size(n, args.passes)
        print(f"| {n:,} | {r['records_ms']:.1f} ms | {r['columnar_ms']:.2f} ms | "
              f"{r['records_ms'] / r['columnar_ms']:.0f}× | {r['sampler_ms']:.1f} ms | {r['detectors_ms']:.2f} ms |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
