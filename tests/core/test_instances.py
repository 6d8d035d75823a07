"""Pure instance logic: --disk parsing, instance changes, effective CPU/disk with sources, Cinder per-GB
volumes, the libvirt parameter mapping; and the volume store."""

from __future__ import annotations

import pytest

from vmqos.core.desired.instances import (
    InstanceChange,
    changed_instance,
    check_cgroup_instance,
    effective_instance,
    parse_disk_option,
    volume_qos,
)
from vmqos.core.errors import ConflictError, InvalidValue, NotFound, UnsupportedError
from vmqos.core.formats.cinder import compute_frontend
from vmqos.core.model import (
    BandwidthLimit,
    CpuQos,
    DirectionQos,
    DiskQos,
    NetworkQos,
    QosDocument,
)
from vmqos.core.model.host import Flavor, HostState, InstanceSpec
from vmqos.core.model.volume import Volume, VolumeType
from vmqos.drivers.libvirt_driver import (
    cpu_params,
    disk_from_params,
    interface_params,
    iotune_params,
    parse_domain_xml,
)
from vmqos.store import Store

FLAVOR = Flavor("m1", QosDocument(cpu=CpuQos(shares=512, quota_us=50000),
                                  disk=DiskQos(read_bytes_sec=1_000_000, write_bytes_sec=1_024_000)))
STATE = HostState(flavors={"m1": FLAVOR}, instances={"vm1": InstanceSpec("vm1", flavor="m1")})
GOLD = VolumeType("gold", "front-end", {"write_bytes_sec_per_gb": "1048576", "write_bytes_sec_per_gb_min": "2097152",
                                        "write_iops_sec_per_gb": "50", "write_iops_sec_max": "400"})


def test_parse_disk_option():
    assert parse_disk_option("loop0:read_bytes_sec=1mb,write_iops_sec=100") == (
        "loop0", {"read_bytes_sec": 1048576, "write_iops_sec": 100})
    assert parse_disk_option("7:0:write_bytes_sec=0") == ("7:0", {"write_bytes_sec": 0})
    assert parse_disk_option("/dev/loop3:") == ("/dev/loop3", {})
    for bad in ("loop0", "loop0:foo=1", "loop0:read_iops_sec=1.5", "loop0:read_iops_sec=1,read_iops_sec=2"):
        with pytest.raises(InvalidValue):
            parse_disk_option(bad)


def test_instance_values_replace_the_flavors_field_by_field_and_zero_returns_to_it():
    state, _ = changed_instance(STATE, "vm1", InstanceChange(cpu_quota_us=20000))
    eff = effective_instance(state, "vm1")
    assert eff.cpu == CpuQos(shares=512, quota_us=20000)
    assert eff.cpu_sources == {"shares": "flavor m1", "quota_us": "instance"}
    state, _ = changed_instance(state, "vm1", InstanceChange(cpu_quota_us=0))
    assert effective_instance(state, "vm1").cpu == FLAVOR.qos.cpu


def test_unknown_instance_is_added():
    state, spec = changed_instance(HostState(), "vm7", InstanceChange(cpu_shares=2048))
    assert spec.cpu == CpuQos(shares=2048) and "vm7" in state.instances


def test_flavor_disk_applies_to_own_disks_and_instance_keys_win():
    state, _ = changed_instance(STATE, "vm1", InstanceChange(disks={"loop0": {"write_bytes_sec": 4096}}))
    eff = effective_instance(state, "vm1")
    assert eff.disks["loop0"] == DiskQos(read_bytes_sec=1_000_000, write_bytes_sec=4096)
    assert eff.disk_sources["loop0"] == {"read_bytes_sec": "flavor m1", "write_bytes_sec": "instance"}


def test_a_read_write_key_replaces_a_total_of_the_same_kind():
    flavor = Flavor("t", QosDocument(disk=DiskQos(total_bytes_sec=100, total_bytes_sec_max=200, total_iops_sec=5)))
    state = HostState(flavors={"t": flavor}, instances={"vm1": InstanceSpec("vm1", flavor="t")})
    state, _ = changed_instance(state, "vm1", InstanceChange(disks={"vda": {"read_bytes_sec": 10}}))
    assert effective_instance(state, "vm1").disks["vda"] == DiskQos(read_bytes_sec=10, total_iops_sec=5)


def test_removing_an_own_disk():
    state, _ = changed_instance(STATE, "vm1", InstanceChange(disks={"loop0": {}}))
    state, _ = changed_instance(state, "vm1", InstanceChange(remove_disks=("loop0",)))
    assert effective_instance(state, "vm1").disks == {}
    with pytest.raises(NotFound):
        changed_instance(state, "vm1", InstanceChange(remove_disks=("loop0",)))


def test_volume_per_gb_exactly_as_cinder_and_the_flavor_does_not_apply():
    vol = Volume("v1", "gold", 1, "vm1", "loop1")
    eff = effective_instance(STATE, "vm1", {"v1": vol}, {"gold": GOLD})
    # 1 GiB: max(2 MiB/s minimum, 1 MiB/s x 1) = 2 MiB/s; iops min(50 x 1, cap 400) = 50
    assert eff.disks["loop1"] == DiskQos(write_bytes_sec=2097152, write_iops_sec=50)
    assert eff.disk_sources["loop1"]["write_iops_sec"] == "volume v1 (type gold, 1 GiB)"
    big = effective_instance(STATE, "vm1", {"v1": Volume("v1", "gold", 10, "vm1", "loop1")}, {"gold": GOLD})
    assert big.disks["loop1"] == DiskQos(write_bytes_sec=10 * 1048576, write_iops_sec=400)  # capped by _max
    # the same numbers as the Cinder format computes
    specs = {k: v for k, v in GOLD.specs.items()}
    assert compute_frontend(specs, 10)[0] == big.disks["loop1"]


def test_backend_volume_type_is_never_applied_and_says_so():
    back = VolumeType("slow", "back-end", {"total_iops_sec": "100"})
    qos, notes = volume_qos(Volume("v", "slow", 5), back)
    assert qos is None and any("never applied on the host" in n.message for n in notes)
    both = VolumeType("both", "both", {"read_iops_sec": "100"})
    qos, notes = volume_qos(Volume("v", "both", 5), both)
    assert qos == DiskQos(read_iops_sec=100) and notes


def test_cgroup_instances_refuse_qemu_only_keys_with_their_source():
    vtype = VolumeType("q", "front-end", {"total_iops_sec": "100", "total_iops_sec_max": "200"})
    eff = effective_instance(STATE, "vm1", {"v": Volume("v", "q", 1, "vm1", "loop2")}, {"q": vtype})
    with pytest.raises(UnsupportedError, match=r"from volume v \(type q"):
        check_cgroup_instance(eff)


def test_libvirt_parameter_mapping():
    assert cpu_params(CpuQos(shares=512, quota_us=20000, period_us=100000)) == {
        "cpu_shares": 512, "vcpu_quota": 20000, "vcpu_period": 100000}
    assert cpu_params(CpuQos()) == {"vcpu_quota": -1}
    params = iotune_params(DiskQos(read_bytes_sec=100, read_bytes_sec_max=200, read_bytes_sec_max_length=5))
    assert params["read_bytes_sec"] == 100 and params["total_bytes_sec"] == 0
    assert params["read_bytes_sec_max_length"] == 5 and "write_iops_sec_max_length" not in params
    assert iotune_params(DiskQos(), {"write_iops_sec_max_length": 9})["write_iops_sec_max_length"] == 1
    assert disk_from_params(params) == DiskQos(read_bytes_sec=100, read_bytes_sec_max=200,
                                               read_bytes_sec_max_length=5)
    net = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(8_000_000, 16_000_000, 102400)))
    assert interface_params(net) == {"inbound.average": 1000, "inbound.peak": 2000, "inbound.burst": 100,
                                     "inbound.floor": 0, "outbound.average": 0, "outbound.peak": 0,
                                     "outbound.burst": 0}


def test_domain_xml_parsing():
    xml = """<domain type='kvm'><name>d</name><vcpu>2</vcpu><devices>
      <disk type='file' device='disk'><source file='/a.img'/><target dev='vda'/></disk>
      <disk type='file' device='cdrom'><target dev='hdc'/></disk>
      <interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='tap0'/></interface>
      <interface type='network'/></devices></domain>"""
    kind, vcpus, ifaces, disks = parse_domain_xml(xml)
    assert kind == "kvm" and vcpus == 2
    assert [(i.target, i.type) for i in ifaces] == [("tap0", "ethernet"), (None, "network")]
    assert [(d.target, d.device, d.source) for d in disks] == [("vda", "disk", "/a.img"), ("hdc", "cdrom", None)]


def test_volume_store_round_trip_and_references(tmp_path):
    with Store(f"sqlite:///{tmp_path}/v.db") as store:
        store.save_volume_type("lab-host", GOLD)
        store.save_volume("lab-host", Volume("v1", "gold", 1))
        store.save_volume("lab-host", Volume("v1", "gold", 3, "vm1", "loop0"))
        assert store.volume_types("lab-host") == {"gold": GOLD}
        assert store.volumes("lab-host") == {"v1": Volume("v1", "gold", 3, "vm1", "loop0")}
        assert store.volumes("") == {}
        with pytest.raises(NotFound):
            store.save_volume("lab-host", Volume("v2", "nope", 1))
        with pytest.raises(ConflictError, match="already holds volume"):
            store.save_volume("lab-host", Volume("v2", "gold", 1, "vm1", "loop0"))
        with pytest.raises(ConflictError, match="used by the volumes v1"):
            store.delete_volume_type("lab-host", "gold")
        # `apply` replaces the host state; the volumes survive it
        store.save("lab-host", HostState())
        assert "v1" in store.volumes("lab-host")
        store.delete_volume("lab-host", "v1")
        store.delete_volume_type("lab-host", "gold")
        assert store.volume_types("lab-host") == {}
        assert any("volume type gold" in r.summary for r in store.revisions("lab-host"))
