"""Pure cgroup values: layouts, CPU files for v1/v2, disk lines, read-back parsers, usage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.core.errors import UnsupportedError
from vmqos.core.model.cpu import (
    SHARES_MAX,
    SHARES_MIN,
    CpuQos,
    shares_to_weight,
    weight_to_shares,
)
from vmqos.core.model.disk import DiskQos
from vmqos.core.plan.cgroup_values import (
    CPU,
    CPUACCT,
    IO,
    V1,
    V2,
    CpuReadback,
    check_cgroup_disk,
    cpu_files,
    detect_layout,
    disk_files,
    disks_from_files,
    parse_cpu,
    parse_io_max,
    unsupported_keys,
    usage_v1,
    usage_v2,
)

# /proc/mounts of our machines (hybrid: v1 holds cpu, cpuacct and blkio; v2 only hugetlb)
HYBRID = """tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
SYSTEMD_V1 = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n" \
             "cgroup /sys/fs/cgroup/blkio cgroup rw,blkio 0 0\n"
PURE_V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"


def test_hybrid_host_uses_v1_for_every_role_even_with_a_unified_tree():
    layout = detect_layout(HYBRID, "hugetlb\n")
    assert {r: (h.version, h.mount) for r, h in layout.roles.items()} == {
        CPU: (V1, "/sys/fs/cgroup/cpu"), CPUACCT: (V1, "/sys/fs/cgroup/cpuacct"), IO: (V1, "/sys/fs/cgroup/blkio")}
    assert len(layout.mounts()) == 3  # a task is placed in three hierarchies


def test_comounted_cpu_and_cpuacct_are_one_hierarchy():
    layout = detect_layout(SYSTEMD_V1, None)
    assert layout.roles[CPU].mount == layout.roles[CPUACCT].mount == "/sys/fs/cgroup/cpu,cpuacct"
    assert len(layout.mounts()) == 2


def test_pure_v2_host():
    layout = detect_layout(PURE_V2, "cpuset cpu io memory pids\n")
    assert {r: h.version for r, h in layout.roles.items()} == {CPU: V2, CPUACCT: V2, IO: V2}
    assert layout.mounts() == [layout.roles[CPU]]


def test_v2_without_the_cpu_controller_still_reports_usage_but_no_limits():
    layout = detect_layout(PURE_V2, "memory pids\n")
    assert set(layout.roles) == {CPUACCT}


def test_cpu_files_v1_and_v2():
    cpu = CpuQos(shares=512, quota_us=20000)
    assert cpu_files(cpu, V1) == {"cpu.shares": "512", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "20000"}
    assert cpu_files(cpu, V2) == {"cpu.weight": str(shares_to_weight(512)), "cpu.max": "20000 100000"}
    assert cpu_files(CpuQos(), V1) == {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1"}
    assert cpu_files(CpuQos(), V2) == {"cpu.weight": "100", "cpu.max": "max 100000"}


def test_oci_conversion_anchors():
    assert shares_to_weight(1024) == 100 and shares_to_weight(2) == 1 and shares_to_weight(262144) == 10000


@given(st.integers(SHARES_MIN, SHARES_MAX), st.none() | st.integers(1000, 10**6), st.integers(1000, 10**6))
def test_cpu_files_read_back_as_the_same_qos(shares, quota, period):
    cpu = CpuQos(shares=shares, quota_us=quota, period_us=period)
    v1 = parse_cpu(cpu_files(cpu, V1), V1)
    assert v1.qos() == CpuQos(shares=None if shares == 1024 else shares, quota_us=quota,
                              period_us=None if period == 100000 and quota is None else period)
    v2 = parse_cpu(cpu_files(cpu, V2), V2)
    assert v2.weight == shares_to_weight(shares) and v2.quota_us == quota and v2.period_us == period
    # the weight reads back as the smallest shares with that weight
    assert shares_to_weight(weight_to_shares(v2.weight)) == v2.weight


def test_cpu_readback_cpus():
    assert CpuReadback(V1, shares=1024, quota_us=20000, period_us=100000).cpus == 0.2
    assert CpuReadback(V2, weight=100).cpus is None


def test_disk_lines_v1_and_v2():
    disk = DiskQos(read_bytes_sec=1048576, write_iops_sec=100)
    assert disk_files((7, 0), disk, V1) == {
        "blkio.throttle.read_bps_device": "7:0 1048576", "blkio.throttle.write_bps_device": "7:0 0",
        "blkio.throttle.read_iops_device": "7:0 0", "blkio.throttle.write_iops_device": "7:0 100"}
    assert disk_files((7, 0), disk, V2) == {"io.max": "7:0 rbps=1048576 wbps=max riops=max wiops=100"}


@given(st.dictionaries(st.sampled_from(["read_bytes_sec", "write_bytes_sec", "read_iops_sec", "write_iops_sec"]),
                       st.integers(1, 2**40), min_size=1))
def test_disk_files_read_back(values):
    disk = DiskQos(**values)
    v1 = {name: line + "\n" for name, line in disk_files((8, 16), disk, V1).items() if not line.endswith(" 0")}
    assert disks_from_files(v1, V1) == {(8, 16): disk}
    assert disks_from_files({"io.max": disk_files((8, 16), disk, V2)["io.max"]}, V2) == {(8, 16): disk}


def test_io_max_parser_skips_max_and_reads_several_devices():
    text = "7:0 rbps=1048576 wbps=max riops=max wiops=max\n8:0 rbps=max wbps=max riops=10 wiops=max\n"
    assert parse_io_max(text) == {(7, 0): {"rbps": 1048576}, (8, 0): {"riops": 10}}


def test_unsupported_keys_name_the_reason():
    disk = DiskQos(total_bytes_sec=10, total_bytes_sec_max=20, total_bytes_sec_max_length=5, read_iops_sec=5,
                   size_iops_sec=4096, group_name="g")
    bad = unsupported_keys(disk)
    assert set(bad) == {"total_bytes_sec", "total_bytes_sec_max", "total_bytes_sec_max_length", "size_iops_sec",
                        "group_name"}
    assert "read_bytes_sec and write_bytes_sec" in bad["total_bytes_sec"]
    assert "burst" in bad["total_bytes_sec_max"]
    with pytest.raises(UnsupportedError, match="not a VM.*vmqos vm set"):
        check_cgroup_disk(disk, "vm1 disk loop0")
    check_cgroup_disk(DiskQos(read_iops_sec=5, write_bytes_sec=1), "fine")


def test_usage_parsers():
    u = usage_v1("2000000000\n", "nr_periods 50\nnr_throttled 40\nthrottled_time 3000000000\n",
                 "7:0 Read 4096\n7:0 Write 1048576\n7:0 Sync 0\n7:0 Total 1052672\nTotal 1052672\n",
                 "7:0 Read 1\n7:0 Write 256\nTotal 257\n")
    assert u.cpu_ns == 2 * 10**9 and u.nr_throttled == 40 and u.throttled_ns == 3 * 10**9
    assert u.io == {(7, 0): {"read_bytes": 4096, "write_bytes": 1048576, "read_ios": 1, "write_ios": 256}}
    v = usage_v2("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\nnr_throttled 1\n"
                 "throttled_usec 10\n", "7:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n")
    assert v.cpu_ns == 1_500_000 and v.throttled_ns == 10_000
    assert v.io == {(7, 0): {"read_bytes": 1, "write_bytes": 2, "read_ios": 3, "write_ios": 4}}
    assert v.as_json()["io"] == {"7:0": {"read_bytes": 1, "write_bytes": 2, "read_ios": 3, "write_ios": 4}}
