"""Kernel tier: real cgroup v1 groups (named vq5...), a cgroup v2 tree laid out as the kernel does in
tmp_path, lab instances' cgroups, and instance set/show on a real loop device."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.kernel.cgroup_fixtures import group, lab5, loop_device  # noqa: F401  (fixtures)
from vmqos.core.desired.instances import InstanceChange
from vmqos.core.errors import KernelError, UnsupportedError
from vmqos.core.model.cpu import CpuQos, shares_to_weight
from vmqos.core.model.disk import DiskQos
from vmqos.core.plan.cgroup_values import detect_layout
from vmqos.drivers.cgroup import Group, block_device
from vmqos.services.instances import instance_set, instance_show, lab_group
from vmqos.services.serialize import to_json

pytestmark = pytest.mark.kernel


def read(group: Group, role: str, name: str) -> str:
    with open(group.file(role, name)) as f:
        return f.read().strip()


def test_v1_cpu_values_are_written_and_read_back(group):
    assert group.apply(CpuQos(shares=512, quota_us=20000, period_us=50000), None) == 3
    assert (read(group, "cpu", "cpu.shares"), read(group, "cpu", "cpu.cfs_quota_us"),
            read(group, "cpu", "cpu.cfs_period_us")) == ("512", "20000", "50000")
    assert group.read_cpu().cpus == 0.4
    assert group.apply(CpuQos(shares=512, quota_us=20000, period_us=50000), None) == 0  # nothing to change
    group.apply(CpuQos(), None)  # back to the kernel's defaults
    assert read(group, "cpu", "cpu.cfs_quota_us") == "-1" and read(group, "cpu", "cpu.shares") == "1024"


def test_v1_disk_lines_on_a_loop_device(group, loop_device):
    devno = block_device(loop_device)
    group.apply(None, {devno: DiskQos(read_bytes_sec=10485760, write_iops_sec=100)})
    assert read(group, "io", "blkio.throttle.read_bps_device") == f"{devno[0]}:{devno[1]} 10485760"
    assert read(group, "io", "blkio.throttle.write_iops_device") == f"{devno[0]}:{devno[1]} 100"
    assert group.read_disks() == {devno: DiskQos(read_bytes_sec=10485760, write_iops_sec=100)}
    group.apply(None, {})  # a device no longer wanted is cleared
    assert group.read_disks() == {} and read(group, "io", "blkio.throttle.read_bps_device") == ""


def test_a_refused_write_restores_what_was_written_before(group):
    group.apply(CpuQos(shares=300), None)
    with pytest.raises(KernelError, match="restored to its previous limits"):
        # 7:250 is no device: the kernel refuses the blkio line after the CPU files were written
        group.apply(CpuQos(shares=2000, quota_us=10000), {(7, 250): DiskQos(read_iops_sec=5)})
    assert read(group, "cpu", "cpu.shares") == "300" and read(group, "cpu", "cpu.cfs_quota_us") == "-1"


def test_partitions_and_missing_devices_are_refused_clearly():
    with pytest.raises(Exception, match="no block device /dev/vq5nothing"):
        block_device("/dev/vq5nothing")
    with pytest.raises(Exception, match="not a block device"):
        block_device("/dev/null")


def test_a_task_is_placed_in_every_hierarchy_and_removal_kills_it(group):
    proc = subprocess.Popen(["sleep", "60"])
    try:
        group.add(proc.pid)
        with open(f"/proc/{proc.pid}/cgroup") as f:
            lines = f.read()
        for controller in ("cpu", "cpuacct", "blkio"):
            assert f":{controller}:/{group.path}\n" in lines, lines
        assert group.procs() == {proc.pid}
        assert group.remove(kill=True)
        assert proc.wait(timeout=5) == -9
        assert not any(os.path.isdir(d) for d in group.dirs())
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def v2_tree(tmp_path):
    """A unified hierarchy as the kernel lays it out: the root's controllers, and each group's files."""
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("memory\n")
    layout = detect_layout(f"cgroup2 {root} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n",
                           (root / "cgroup.controllers").read_text())
    return root, layout


def kernel_mkdir(path) -> None:  # what the kernel puts in a new v2 group
    path.mkdir(parents=True, exist_ok=True)
    for name, text in (("cgroup.procs", ""), ("cgroup.subtree_control", ""), ("cpu.weight", "100\n"),
                       ("cpu.max", "max 100000\n"), ("io.max", ""), ("cpu.stat", "usage_usec 0\n")):
        (path / name).write_text(text)


def test_v2_tree_enables_controllers_converts_shares_and_writes_io_max(v2_tree):
    root, layout = v2_tree
    kernel_mkdir(root / "vmqos" / "vq5v2")
    g = Group(layout, "vmqos/vq5v2")
    g.create()
    assert (root / "cgroup.subtree_control").read_text().split() == ["+cpu", "+io"]
    assert (root / "vmqos" / "cgroup.subtree_control").read_text().split() == ["+cpu", "+io"]
    g.apply(CpuQos(shares=512, quota_us=20000), {(7, 0): DiskQos(write_bytes_sec=1048576)})
    assert (root / "vmqos/vq5v2/cpu.weight").read_text() == str(shares_to_weight(512)) == "59"
    assert (root / "vmqos/vq5v2/cpu.max").read_text() == "20000 100000"
    assert (root / "vmqos/vq5v2/io.max").read_text() == "7:0 rbps=max wbps=1048576 riops=max wiops=max"
    back = g.read_cpu()
    assert (back.weight, back.quota_us, back.period_us, back.cpus) == (59, 20000, 100000, 0.2)
    assert g.read_disks() == {(7, 0): DiskQos(write_bytes_sec=1048576)}
    assert g.usage().cpu_ns == 0


def test_v2_without_the_cpu_controller_refuses_cpu_limits(tmp_path):
    layout = detect_layout(f"cgroup2 {tmp_path} cgroup2 rw 0 0\n", "hugetlb\n")  # our machines' unified tree
    with pytest.raises(UnsupportedError, match="no cgroup hierarchy for CPU limits"):
        Group(layout, "vmqos/x").read_cpu()


def test_lab_instances_have_their_own_cgroups_and_lab_exec_enters_them(lab5):
    from vmqos.lab import lab_down, lab_exec, lab_spawn

    name, _ = lab5
    g = lab_group(name, "vm1")
    assert g.exists() and lab_group(name, "vm2").exists()
    assert lab_exec(name, "vm1", ["sh", "-c", f"grep -q ':cpu:/vmqos/{name}-vm1$' /proc/self/cgroup"]) == 0
    proc = lab_spawn(name, "vm2", ["sleep", "60"])
    time.sleep(0.3)
    assert lab_group(name, "vm2").procs()
    lab_down(name)
    assert proc.wait(timeout=5) < 0
    assert not g.exists() and not lab_group(name, "vm2").exists()


def test_instance_set_and_show_on_a_loop_device(lab5, loop_device):
    name, store = lab5
    change = InstanceChange(cpu_shares=512, cpu_quota_us=20000,
                            disks={loop_device: {"write_bytes_sec": 1048576, "read_iops_sec": 200}})
    report = instance_set(store, name, "vm1", change)
    assert report.writes == 4
    shown = to_json(instance_show(store, name, "vm1"))
    dev = os.path.basename(loop_device)
    assert shown["kernel"]["in_sync"] and shown["kernel"]["disks"] == {dev: {"read_iops_sec": 200,
                                                                             "write_bytes_sec": 1048576}}
    assert shown["kernel"]["cpu"]["shares"] == 512 and shown["kernel"]["cpu"]["cpus"] == 0.2
    assert store.load(f"{name}-host").instances["vm1"].cpu == CpuQos(shares=512, quota_us=20000)
    # --live only: the kernel changes, the stored state does not
    instance_set(store, name, "vm1", InstanceChange(cpu_quota_us=0), config=False)
    assert to_json(instance_show(store, name, "vm1"))["kernel"]["in_sync"] is False
    # a key only QEMU has is refused before anything is written
    with pytest.raises(UnsupportedError, match="total_iops_sec"):
        instance_set(store, name, "vm1", InstanceChange(disks={loop_device: {"total_iops_sec": 10}}))


def test_cli_instance_show_json(lab5, loop_device, capsys):
    from vmqos.cli.main import main

    name, store = lab5
    db = ["--db", store.url, "--lab", name]
    assert main(["instance", "set", "vm2", "--cpu-quota", "30000", "--disk", f"{loop_device}:write_iops_sec=50",
                 *db]) == 0
    capsys.readouterr()
    assert main(["instance", "show", "vm2", "--json", *db]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kernel"]["cpu"]["quota_us"] == 30000 and data["desired"]["cpu"]["sources"] == {"quota_us": "instance"}
    assert main(["instance", "set", "vm2", "--disk", f"{loop_device}:read_bytes_sec_max=5", *db]) == 2


def test_volume_attach_extend_detach_live(lab5, loop_device):
    from vmqos.core.model.volume import VolumeType
    from vmqos.services.volumes import (
        volume_attach,
        volume_create,
        volume_detach,
        volume_extend,
    )

    name, store = lab5
    scope = f"{name}-host"
    store.save_volume_type(scope, VolumeType("gold", "front-end", {"write_iops_sec_per_gb": "10",
                                                                   "read_bytes_sec_per_gb": "1048576"}))
    store.save_volume_type(scope, VolumeType("archive", "back-end", {"read_iops_sec": "1"}))
    volume_create(store, scope, "v1", "gold", 2)
    _, writes = volume_attach(store, scope, "v1", "vm1", loop_device, lab=name)
    assert writes == 2
    g = lab_group(name, "vm1")
    devno = block_device(loop_device)
    assert g.read_disks() == {devno: DiskQos(read_bytes_sec=2 * 1048576, write_iops_sec=20)}
    volume_extend(store, scope, "v1", 5, lab=name)  # recomputed and applied now, not at the next attach
    assert g.read_disks() == {devno: DiskQos(read_bytes_sec=5 * 1048576, write_iops_sec=50)}
    volume_detach(store, scope, "v1", lab=name)
    assert g.read_disks() == {}
    # a back-end spec is stored, shown, and never applied
    volume_create(store, scope, "v2", "archive", 1)
    volume_attach(store, scope, "v2", "vm1", loop_device, lab=name)
    assert g.read_disks() == {}
