"""A lab's names, addresses and MACs as documented, and the values it refuses (no kernel needed)."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

from vmqos.core.errors import InvalidValue
from vmqos.lab import Lab, LabInstance, lab_up
from vmqos.lab.topology import differences, instance_index


def _hash_byte(name: str) -> str:
    return f"{hashlib.sha256(name.encode()).digest()[0]:02x}"


def test_names_of_the_default_lab():
    lab = Lab()
    assert lab.name == "lab" and (lab.host_ns, lab.wan_ns) == ("lab-host", "lab-wan")
    assert (lab.ns("vm2"), lab.ns("host"), lab.ns("wan")) == ("lab-vm2", "lab-host", "lab-wan")


def test_instances_addresses_and_macs():
    h = _hash_byte("lab")
    vm1, vm2, vm3 = Lab("lab").instances(3)
    assert vm1 == LabInstance("vm1", "lab-vm1", "tap-vm1", "10.247.0.11", f"02:76:71:00:{h}:01", f"02:76:71:01:{h}:01")
    assert (vm2.address, vm3.address, vm3.mac, vm3.port_mac) == (
        "10.247.0.12", "10.247.0.13", f"02:76:71:00:{h}:03", f"02:76:71:01:{h}:03")
    assert (vm1.cidr, vm1.gateway) == ("10.247.0.11/25", "10.247.0.1")
    last = Lab("lab").instance(100)
    assert (last.name, last.address, last.mac) == ("vm100", "10.247.0.110", f"02:76:71:00:{h}:64")


def test_wan_and_host_addresses():
    lab = Lab("x1")
    h = _hash_byte("x1")
    assert lab.wan_address == "10.247.0.130"
    assert lab.wan == LabInstance("wan", "x1-wan", "wan0", "10.247.0.130", f"02:76:71:02:{h}:01", f"02:76:71:03:{h}:02")
    assert (lab.wan.cidr, lab.wan.gateway) == ("10.247.0.130/30", "10.247.0.129")
    assert (lab.gateway_cidr, lab.uplink_cidr, lab.bridge_mac) == ("10.247.0.1/25", "10.247.0.129/30",
                                                                   f"02:76:71:03:{h}:01")


def test_every_address_is_in_the_lab_range_and_distinct():
    lab = Lab()
    everything = [ipaddress.ip_interface(c) for c in (lab.gateway_cidr, lab.uplink_cidr, lab.wan.cidr,
                                                     *(i.cidr for i in lab.instances(100)))]
    assert all(a.ip in ipaddress.ip_network("10.247.0.0/24") for a in everything)
    assert len({a.ip for a in everything}) == len(everything)
    instances = ipaddress.ip_network("10.247.0.0/25")
    assert all(ipaddress.ip_interface(i.cidr).network == instances for i in lab.instances(100))
    assert ipaddress.ip_interface(lab.wan.cidr).network == ipaddress.ip_interface(lab.uplink_cidr).network


def test_macs_are_unicast_locally_administered_and_unique():
    lab = Lab("lab")
    macs = [lab.bridge_mac, lab.uplink_mac, lab.wan.mac, *(m for i in lab.instances(100) for m in (i.mac, i.port_mac))]
    assert all(int(m.split(":")[0], 16) & 0b11 == 0b10 for m in macs)
    assert len(set(macs)) == len(macs)
    assert Lab("lab").instances(2) == lab.instances(2)  # deterministic


@pytest.mark.parametrize("name", ["", "abcdefghi", "Lab", "a_b", "a b", "-ab", "a/b", "é", 3])
def test_bad_lab_names_are_refused(name):
    with pytest.raises(InvalidValue, match="lab name"):
        Lab(name)


@pytest.mark.parametrize("name", ["a", "lab", "lab-2", "12345678", "vq0a1b2c"])
def test_good_lab_names(name):
    assert Lab(name).host_ns == f"{name}-host"


@pytest.mark.parametrize("count", [0, 101, -1, True, "3"])
def test_instance_counts_outside_1_to_100_are_refused(count):
    with pytest.raises(InvalidValue, match="instances"):
        Lab().instances(count)


@pytest.mark.parametrize("inst", ["vm0", "vm101", "vm01", "db", "vm", "VM1", ""])
def test_unknown_instances_are_refused(inst):
    with pytest.raises(InvalidValue, match="instance"):
        Lab().ns(inst)


def test_instance_index():
    assert (instance_index("vm1"), instance_index("vm100")) == (1, 100)


def test_a_lab_owns_only_its_own_namespaces():
    lab = Lab("a")
    assert [lab.owns(ns) for ns in ("a-host", "a-wan", "a-vm1", "a-vm100")] == [True] * 4
    # Other labs' namespaces, including those of labs whose name starts with "a-".
    for ns in ("a-vm0", "a-vm101", "a-vm01", "a-x-host", "a-vm1-vm1", "a-host-wan", "ab-host", "a", "vqx1"):
        assert not lab.owns(ns), ns
    assert (lab.index_of("a-vm7"), lab.index_of("a-host")) == (7, None)


def test_differences_name_each_field():
    expected = Lab().instance(1)
    found = LabInstance("vm1", "lab-vm1", "", "10.247.0.99", expected.mac, "")
    assert differences(expected, expected) == []
    assert differences(expected, found) == [
        "vm1: port in the host namespace is missing, expected tap-vm1",
        "vm1: eth0 address is 10.247.0.99, expected 10.247.0.11",
        f"vm1: tap-vm1 MAC is missing, expected {expected.port_mac}",
    ]


def test_lab_up_validates_before_touching_the_kernel(monkeypatch):
    def no_io(*args, **kwargs):
        raise AssertionError("lab_up ran a command before validating")

    monkeypatch.setattr("vmqos.lab.netns_lab.run", no_io)
    with pytest.raises(InvalidValue, match="instances: 101"):
        lab_up("lab", 101)
    with pytest.raises(InvalidValue, match="lab name"):
        lab_up("Bad_Name", 2)
