"""libvirt tier: the driver against libvirt's test driver, and a real TCG domain under a real libvirtd.

A real domain gets CPU limits through libvirt's scheduler parameters (read back through libvirt
and from its cgroup files), disk limits through QEMU's throttling (read back through libvirt),
and network limits through vmqos's planner on its tap (read back from the kernel's qdiscs);
`--config` writes `<cputune>`, `<iotune>` and `<bandwidth>` into its definition.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from vmqos.core.desired.instances import InstanceChange
from vmqos.core.errors import InvalidValue, KernelError, NotFound
from vmqos.core.model import BandwidthLimit, CpuQos, DirectionQos, DiskQos, NetworkQos
from vmqos.core.plan.names import chain_from, ifb_name
from vmqos.drivers.libvirt_driver import CONFIG, LIVE, disk_from_params
from vmqos.store import Store

pytestmark = pytest.mark.libvirt


def test_test_driver_lists_domains_with_interfaces_and_disks(test_driver):
    [dom] = test_driver.domains()
    assert dom.name == "test" and dom.running and dom.persistent
    assert [i.target for i in dom.interfaces] == ["testnet0"]
    assert [d.target for d in dom.disks] == ["vda"]
    with pytest.raises(NotFound, match="domains: test"):
        test_driver.domain("vq5-none")


def test_test_driver_block_io_tune_live_and_config(test_driver):
    # the test driver wants every *_sec with its *_sec_max >= it; QEMU does not
    disk = DiskQos(total_bytes_sec=1048576, total_bytes_sec_max=2097152, read_iops_sec=200, read_iops_sec_max=400,
                   write_iops_sec=100, write_iops_sec_max=100)
    for flags in (LIVE, CONFIG):
        test_driver.set_disk("test", "vda", disk, flags)
        assert disk_from_params(test_driver.disk("test", "vda", flags)) == disk


def test_test_driver_interface_parameters_in_the_definition(test_driver):
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(8_000_000, 16_000_000, 102400)),
                     egress=DirectionQos(bandwidth=BandwidthLimit(4_000_000, None, 51200)))
    test_driver.set_interface("test", "testnet0", qos, CONFIG)
    got = test_driver.interface("test", "testnet0", CONFIG)
    assert (got["inbound.average"], got["inbound.peak"], got["inbound.burst"]) == (1000, 2000, 100)
    assert (got["outbound.average"], got["outbound.burst"]) == (500, 50)


def test_test_driver_scheduler_is_a_stub_and_says_so(test_driver):
    with pytest.raises(KernelError, match="test driver only stubs the scheduler"):
        test_driver.set_cpu("test", CpuQos(shares=512), LIVE)


def test_vm_commands_against_the_test_driver(tmp_path, test_driver):
    from vmqos.services.serialize import to_json
    from vmqos.services.vms import vm_list, vm_set

    assert [d["name"] for d in to_json(vm_list("test:///default"))] == ["test"]
    with Store(f"sqlite:///{tmp_path}/s.db") as store:
        report = vm_set(store, "test:///default", "test", InstanceChange(
            disks={"vda": {"read_bytes_sec": 1000, "read_bytes_sec_max": 2000}}), live=True, config=False)
        assert report.applied == ["disk vda {'read_bytes_sec': 1000, 'read_bytes_sec_max': 2000}"]
        assert store.load("").instances["test"].disks["vda"] == DiskQos(read_bytes_sec=1000, read_bytes_sec_max=2000)
        with pytest.raises(NotFound, match="no disk vdz"):
            vm_set(store, "test:///default", "test", InstanceChange(disks={"vdz": {"read_iops_sec": 1}}))


# ------------------------------------------------------------------------------- a real QEMU domain


def tc(tap: str, what: str) -> str:
    return subprocess.run(["tc", what, "show", "dev", tap], capture_output=True, text=True).stdout


def test_real_domain_cpu_disk_and_network_live_read_back_through_libvirt_and_the_kernel(qemu_domain, tmp_path):
    from vmqos.services.ports import clear_port
    from vmqos.services.serialize import to_json
    from vmqos.services.vms import vm_set, vm_show

    d = qemu_domain
    name, tap, uri, lv = d["name"], d["tap"], d["uri"], d["lv"]
    assert d["booted"], "the TCG guest did not print its marker on the serial console"
    with Store(f"sqlite:///{tmp_path}/s.db") as store:
        try:
            change = InstanceChange(cpu_shares=512, cpu_quota_us=20000, cpu_period_us=100000,
                                    disks={"vda": {"total_bytes_sec": 1048576, "read_iops_sec": 200,
                                                   "read_iops_sec_max": 400, "read_iops_sec_max_length": 5}})
            report = vm_set(store, uri, name, change, outbound="12800,0,0", inbound="1000,2000,100", live=True,
                            config=False)
            assert report.network is not None and report.network.ok
            # through libvirt
            cpu = lv.cpu(name, LIVE)
            assert (cpu["cpu_shares"], cpu["vcpu_quota"], cpu["vcpu_period"]) == (512, 20000, 100000)
            assert disk_from_params(lv.disk(name, "vda", LIVE)) == DiskQos(
                total_bytes_sec=1048576, read_iops_sec=200, read_iops_sec_max=400, read_iops_sec_max_length=5)
            # through the kernel: the domain's cgroup files, the tap's qdiscs
            shown = to_json(vm_show(store, uri, name))
            cg = shown["kernel"]["cgroups"]
            assert cg["cpu.shares"] == "512"
            assert cg["vcpus"]["vcpu0"]["cpu.cfs_quota_us"] == "20000"
            port = shown["kernel"]["ports"][tap]
            assert port["kernel"]["in_sync"]
            assert port["desired"]["egress"]["rate_bps"] == 102_400_000
            assert port["desired"]["ingress"]["rate_bps"] == 8_000_000
            # the average is shared by the bulk class and the sparse class of short packets (2 %), each
            # up to the peak: 7840 + 160 kbit/s
            classes = tc(tap, "class")
            assert "1:10 parent 1:1 leaf 1010: prio 1 rate 7840Kbit ceil 16Mbit" in classes, classes
            assert "1:f parent 1:1 leaf f: prio 0 rate 160Kbit ceil 16Mbit" in classes, classes
            ifb = ifb_name(tap)  # what the VM sends: nft's ingress hook on the tap forwards it to the IFB's HTB
            assert f'fwd to "{ifb}"' in subprocess.run(["nft", "list", "chain", "netdev", "vmqos", chain_from(tap)],
                                                        capture_output=True, text=True).stdout
            assert "htb 1: root" in subprocess.run(["tc", "qdisc", "show", "dev", ifb], capture_output=True,
                                                   text=True).stdout
            # libvirt's own bandwidth is untouched: vmqos never asked it to run tc
            assert lv.interface(name, tap, LIVE).get("inbound.average", 0) == 0
            # a failing step restores what was changed before it (the disk does not exist)
            with pytest.raises(NotFound):
                vm_set(store, uri, name, InstanceChange(cpu_shares=300, disks={"vdq": {"read_iops_sec": 5}}))
            assert lv.cpu(name, LIVE)["cpu_shares"] == 512
        finally:
            clear_port(store, None, tap)
    assert "htb" not in tc(tap, "qdisc")


def test_real_domain_config_goes_into_the_definition(qemu_domain_started, tmp_path):
    """The definition, the running domain's cgroup, a destroyed domain: libvirt's and the host's, no guest's
    (the domain is not waited for to boot)."""
    from vmqos.core.formats import libvirt as libvirt_format
    from vmqos.services.vms import vm_set

    d = qemu_domain_started
    name, tap, uri, lv = d["name"], d["tap"], d["uri"], d["lv"]
    with Store(f"sqlite:///{tmp_path}/s.db") as store:
        report = vm_set(store, uri, name, InstanceChange(cpu_shares=700, cpu_quota_us=50000,
                                                         disks={"vda": {"write_bytes_sec": 2097152}}),
                        inbound="1000,2000,100", live=False, config=True)
        assert any("next start" in n.message for n in report.notes)
    doc = libvirt_format.read(lv.config_xml(name))
    assert doc.cpu == CpuQos(shares=700, quota_us=50000)
    assert doc.disks["vda"] == DiskQos(write_bytes_sec=2097152)
    assert doc.interfaces[tap].ingress.bandwidth == BandwidthLimit(8_000_000, 16_000_000, 102400)
    assert lv.cpu(name, LIVE)["cpu_shares"] == 1024  # the running domain is untouched
    with pytest.raises(InvalidValue, match="not running"):
        lv.domain(name).destroy()
        vm_set(Store(f"sqlite:///{tmp_path}/t.db"), uri, name, InstanceChange(cpu_shares=600), live=True,
               config=False)


def test_libvirtd_pidfiles_are_ours_or_left_alone(libvirtd):
    assert os.path.exists("/run/libvirtd.pid") and os.path.exists("/run/virtlogd.pid")
