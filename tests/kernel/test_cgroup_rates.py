"""Rates under cgroup limits, measured with the kernel's own counters (cpuacct.usage, blkio stats).

Each test runs a few seconds, samples a steady-state window (the first second is skipped so that
start-up and the throttle's first slice do not count), and judges with the tolerance of issue 5:
20 % quota -> 20 % +- 3 points of one CPU, shares 2:1 on one CPU -> about 2:1, 1 MiB/s direct
writes -> +- 10 %, an IOPS limit likewise. What is measured is the limit, never our own speed.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.kernel.cgroup_fixtures import lab5, loop_device  # noqa: F401  (fixtures)
from vmqos.core.desired.instances import InstanceChange
from vmqos.drivers.cgroup import block_device
from vmqos.services.instances import instance_set, lab_group

pytestmark = [pytest.mark.kernel, pytest.mark.rates]

BUSY = [sys.executable, "-c", "while True: pass"]


def cpu_seconds(group) -> float:  # type: ignore[no-untyped-def]
    return (group.usage().cpu_ns or 0) / 1e9


def measure_cpu(groups, seconds: float) -> list[float]:  # type: ignore[no-untyped-def]
    time.sleep(1.0)
    t0, before = time.monotonic(), [cpu_seconds(g) for g in groups]
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return [(cpu_seconds(g) - b) / elapsed for g, b in zip(groups, before)]


def test_a_20_percent_quota_holds_a_busy_loop_to_20_percent(lab5):
    from vmqos.lab import lab_spawn

    name, store = lab5
    instance_set(store, name, "vm1", InstanceChange(cpu_quota_us=20000, cpu_period_us=100000))
    proc = lab_spawn(name, "vm1", BUSY)
    try:
        [share] = measure_cpu([lab_group(name, "vm1")], 5.0)
    finally:
        proc.kill()
        proc.wait()
    print(f"\n20 % quota: measured {share:.4f} CPU")
    assert 0.17 <= share <= 0.23
    stat = lab_group(name, "vm1").usage()
    assert stat.nr_throttled and stat.nr_throttled > 40  # throttled in (nearly) every period


def test_shares_2_to_1_split_one_cpu_about_2_to_1(lab5):
    from vmqos.lab import lab_spawn

    name, store = lab5
    instance_set(store, name, "vm1", InstanceChange(cpu_shares=2048))
    instance_set(store, name, "vm2", InstanceChange(cpu_shares=1024))
    procs = [lab_spawn(name, inst, ["taskset", "-c", "0", *BUSY]) for inst in ("vm1", "vm2")]
    try:
        a, b = measure_cpu([lab_group(name, "vm1"), lab_group(name, "vm2")], 5.0)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    print(f"\nshares 2048:1024 on CPU 0: {a:.3f} vs {b:.3f} CPU, ratio {a / b:.2f}")
    assert 1.7 <= a / b <= 2.35
    assert a + b > 0.6  # they did get (most of) the CPU between them


def io_counter(group, devno, key: str) -> int:  # type: ignore[no-untyped-def]
    return group.usage().io.get(devno, {}).get(key, 0)


def measure_io(group, devno, key: str, seconds: float) -> float:  # type: ignore[no-untyped-def]
    time.sleep(1.0)
    t0, before = time.monotonic(), io_counter(group, devno, key)
    time.sleep(seconds)
    return (io_counter(group, devno, key) - before) / (time.monotonic() - t0)


def _dd(name: str, device: str, bs: str):  # type: ignore[no-untyped-def]
    from vmqos.lab import lab_spawn

    return lab_spawn(name, "vm1", ["dd", "if=/dev/zero", f"of={device}", f"bs={bs}", "count=100000", "oflag=direct"],
                     stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))


def test_direct_writes_limited_to_1_mib_per_second(lab5, loop_device):
    name, store = lab5
    instance_set(store, name, "vm1", InstanceChange(disks={loop_device: {"write_bytes_sec": 1048576}}))
    group, devno = lab_group(name, "vm1"), block_device(loop_device)
    proc = _dd(name, loop_device, "64k")
    try:
        rate = measure_io(group, devno, "write_bytes", 4.0)
    finally:
        proc.kill()
        proc.wait()
    print(f"\nwrite_bytes_sec 1 MiB/s: measured {rate / 1048576:.3f} MiB/s")
    assert 0.9 * 1048576 <= rate <= 1.1 * 1048576


def test_direct_writes_limited_to_100_iops(lab5, loop_device):
    name, store = lab5
    instance_set(store, name, "vm1", InstanceChange(disks={loop_device: {"write_iops_sec": 100}}))
    group, devno = lab_group(name, "vm1"), block_device(loop_device)
    proc = _dd(name, loop_device, "4k")
    try:
        rate = measure_io(group, devno, "write_ios", 4.0)
    finally:
        proc.kill()
        proc.wait()
    print(f"\nwrite_iops_sec 100: measured {rate:.1f} IOPS")
    assert 90 <= rate <= 110
