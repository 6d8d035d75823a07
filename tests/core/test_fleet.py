"""The fleet protocol's values (core.fleet): desired rows and pages, reload diffs, inventory and
Nova's domain metadata, report bodies and port statuses. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.core.analysis.rates import FlowRate
from vmqos.core.analysis.samples import PortRates
from vmqos.core.errors import FormatError, InvalidValue
from vmqos.core.fleet.desired import (
    DesiredPage,
    DesiredPort,
    applied,
    page_from_wire,
    policy_of,
    port_from_wire,
    port_to_wire,
    reload_changes,
)
from vmqos.core.fleet.inventory import Domain, HostInventory, HostPort, LabInstance, read_domain, to_wire
from vmqos.core.fleet.report import AgentReport, PortStatus, RateSample, port_status
from vmqos.core.fleet.report import to_wire as report_wire

ROW = {"device": "tap4f1a2b3c-1d", "port_id": "4f1a2b3c-1d00", "source": "neutron", "revision": 7,
       "policy": {"egress": {"rate": 3000000, "burst": 37500}, "origin": "neutron"}}


def port(device: str, revision: int, rate: int | None) -> DesiredPort:
    policy = None if rate is None else policy_of(device, {"egress": {"rate": rate}})
    return DesiredPort(device, revision, policy)


def test_a_row_reads_and_writes_as_the_protocol_says():
    row = port_from_wire(ROW)
    assert (row.device, row.port_id, row.source, row.revision) == ("tap4f1a2b3c-1d", "4f1a2b3c-1d00", "neutron", 7)
    assert row.policy is not None and row.policy.name == "fleet:tap4f1a2b3c-1d" and row.policy.origin == "neutron"
    assert row.policy.qos.egress.bandwidth is not None and row.policy.qos.egress.bandwidth.rate_bps == 3_000_000
    assert port_from_wire(port_to_wire(row)) == row
    assert port_from_wire({**ROW, "policy": None}).tombstone


@pytest.mark.parametrize("bad, field", [({**ROW, "revision": -1}, "revision"), ({**ROW, "revision": "7"}, "revision"),
                                        ({**ROW, "source": "nova"}, "source"), ({**ROW, "device": "a/b"}, "device"),
                                        ({**ROW, "port_id": 3}, "port_id"), ({**ROW, "policy": [1]}, "policy")])
def test_a_bad_row_is_one_line_naming_its_field(bad, field):
    with pytest.raises((InvalidValue, FormatError)) as caught:  # a policy is read as a host file's is
        port_from_wire(bad)
    assert field in str(caught.value)


def test_a_policy_the_host_file_refuses_is_a_format_error_naming_where():
    with pytest.raises(FormatError) as caught:
        port_from_wire({**ROW, "policy": {"egress": {"rate": "fast"}}})
    assert "tap4f1a2b3c-1d" in str(caught.value) and "egress.rate" in str(caught.value)


def test_pages_read_their_own_key():
    full = page_from_wire({"host": "h", "revision": 9, "ports": [ROW]}, full=True)
    changes = page_from_wire({"host": "h", "revision": 9, "changes": [{**ROW, "policy": None}]}, full=False)
    assert full.full and full.revision == 9 and not full.ports[0].tombstone
    assert not changes.full and changes.ports[0].tombstone
    with pytest.raises(InvalidValue):
        page_from_wire({"revision": 9, "ports": [ROW]}, full=False)


def test_a_page_parses_each_policy_text_once_and_gives_every_row_what_its_own_parse_gives():
    texts = [{"egress": {"rate": 3000000, "burst": 37500}, "origin": "neutron"}, {"ingress": {"rate": "10mbit"}}]
    rows = [{**ROW, "device": f"tap{i}", "policy": dict(texts[i % 2])} for i in range(6)]  # equal texts, not one dict
    page = page_from_wire({"revision": 9, "changes": rows}, full=False)
    assert [p.policy for p in page.ports] == [policy_of(r["device"], r["policy"]) for r in rows]
    assert [p.policy.name for p in page.ports if p.policy] == [f"fleet:tap{i}" for i in range(6)]
    first, second, third = (p.policy for p in page.ports[:3])
    assert first is not None and second is not None and third is not None
    assert first.qos is third.qos and first.qos is not second.qos  # one parse per text
    fast = [{**ROW, "device": f"tap{i}", "policy": {"egress": {"rate": "fast"}}} for i in range(2)]
    with pytest.raises(FormatError, match="tap0"):  # the first row of a refused text says it, as before
        page_from_wire({"revision": 9, "changes": fast}, full=False)
    # neutron's form may name its policy, which must be the row's own (fleet:<device>): parsed per row
    named = {"neutron": {"name": "fleet:tap0", "rules": [{"type": "bandwidth_limit", "max_kbps": 1000,
                                                          "direction": "egress"}]}}
    with pytest.raises(FormatError, match="'fleet:tap0' differs from the policy's key 'fleet:tap1'"):
        page_from_wire({"revision": 9, "changes": [{**ROW, "device": f"tap{i}", "policy": named}
                                                   for i in range(2)]}, full=False)


def test_a_reload_changes_what_differs_and_tombstones_what_is_gone():
    cached = {"a": port("a", 1, 1_000_000), "b": port("b", 2, 2_000_000), "c": port("c", 3, 3_000_000)}
    page = DesiredPage(10, (port("a", 1, 1_000_000), port("b", 8, 5_000_000), port("d", 9, 4_000_000)), full=True)
    changes = reload_changes(cached, page)
    assert [(c.device, c.revision, c.tombstone) for c in changes] == [("b", 8, False), ("d", 9, False),
                                                                       ("c", 10, True)]
    assert sorted(applied(cached, changes)) == ["a", "b", "d"]


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 3), max_size=4),
       st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 3), max_size=4))
def test_a_reload_brings_any_cache_to_the_page(before, after):
    """Whatever the cache held, the cache after a reload's changes is exactly the page's live rows."""
    cached = {d: port(d, 1, (r + 1) * 1_000_000) for d, r in before.items()}
    page = DesiredPage(5, tuple(port(d, 2, (r + 1) * 1_000_000) for d, r in after.items()), full=True)
    result = applied(cached, reload_changes(cached, page))
    assert {d: p.policy for d, p in result.items()} == {p.device: p.policy for p in page.ports}


def test_an_older_change_does_not_undo_a_newer_row():
    cached = {"a": port("a", 5, 2_000_000)}
    assert applied(cached, [port("a", 4, None)]) == cached
    assert applied(cached, [port("a", 6, None)]) == {}


NOVA_DOMAIN = """<domain type='kvm'>
  <name>instance-00000001</name>
  <uuid>629b29b9-b0fb-4766-b27d-f4a686d5cbda</uuid>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:name>vm1</nova:name>
      <nova:flavor name="m1.small"><nova:vcpus>1</nova:vcpus></nova:flavor>
      <nova:ports>
        <nova:port uuid="4f1a2b3c-1d00-4e00-8000-000000000001"><nova:ip type="fixed" address="10.0.0.5"/></nova:port>
        <nova:port uuid="4f1a2b3c-1d00-4e00-8000-000000000002"/>
      </nova:ports>
    </nova:instance>
  </metadata>
  <devices>
    <disk type='file' device='disk'><source file='/var/lib/nova/instances/x/disk'/><target dev='vda'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc'/></disk>
    <interface type='bridge'><mac address='fa:16:3e:00:00:01'/><target dev='tap4f1a2b3c-1d'/></interface>
    <interface type='bridge'><mac address='fa:16:3e:00:00:02'/></interface>
  </devices>
</domain>"""


def test_a_nova_domain_gives_its_flavor_ports_interfaces_and_disks():
    domain = read_domain(NOVA_DOMAIN, "running")
    assert (domain.name, domain.uuid, domain.state) == ("instance-00000001", "629b29b9-b0fb-4766-b27d-f4a686d5cbda",
                                                        "running")
    assert [(i.device, i.mac) for i in domain.interfaces] == [("tap4f1a2b3c-1d", "fa:16:3e:00:00:01"),
                                                              (None, "fa:16:3e:00:00:02")]
    assert [(d.target, d.source) for d in domain.disks] == [("vda", "/var/lib/nova/instances/x/disk"), ("hdc", None)]
    assert domain.nova is not None and domain.nova.flavor == "m1.small"
    assert domain.nova.instance_uuid == domain.uuid and len(domain.nova.port_ids) == 2


def test_a_domain_nova_did_not_start_has_no_nova_part_and_nova_1_0_reads_too():
    plain = NOVA_DOMAIN.replace("<nova:instance", "<other:instance").replace("</nova:instance", "</other:instance") \
        .replace("xmlns:nova=\"http://openstack.org/xmlns/libvirt/nova/1.1\"", "xmlns:other=\"urn:x\"") \
        .replace("nova:", "other:")
    assert read_domain(plain, "shut off").nova is None
    old = NOVA_DOMAIN.replace("nova/1.1", "nova/1.0")
    assert read_domain(old, "running").nova.flavor == "m1.small"  # type: ignore[union-attr]
    with pytest.raises(FormatError):
        read_domain("<network/>", "running")


def test_the_inventory_body_is_the_protocols():
    inv = HostInventory((HostPort("tap1", "tun", "fa:16:3e:00:00:01"),), (read_domain(NOVA_DOMAIN, "running"),),
                        (LabInstance("vm1", ("vq-vm1",)),))
    body = to_wire(inv)
    assert body["ports"] == [{"device": "tap1", "kind": "tun", "mac": "fa:16:3e:00:00:01"}]
    assert body["domains"][0]["nova"]["flavor"] == "m1.small" and body["domains"][0]["disks"][0]["target"] == "vda"
    assert body["instances"] == [{"name": "vm1", "ports": ["vq-vm1"]}]
    assert to_wire(HostInventory()) == {"ports": [], "domains": [], "instances": []}
    assert isinstance(inv.domains[0], Domain)


def test_a_report_body_is_the_protocols():
    at = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
    rate = FlowRate(1.0, 3_000_000.4, 2_000_000.0, 300.0, 200.0, 100.0, 0, 2_000_000)
    sample = RateSample.of(PortRates("tap1", "vm1", {"egress": rate}, None), at)
    body = report_wire(AgentReport(12, (PortStatus("tap1", 12, "in_sync"),), (sample,)))
    assert body["applied_revision"] == 12
    assert body["ports"] == [{"device": "tap1", "revision": 12, "status": "in_sync", "message": ""}]
    assert body["samples"][0]["at"] == "2026-12-07T01:02:03Z" and body["samples"][0]["interval_s"] == 1.0
    assert body["samples"][0]["egress"] == {"offered_bps": 3_000_000, "delivered_bps": 2_000_000,
                                            "dropped_bps": 1_000_000, "offered_pps": 300, "delivered_pps": 200,
                                            "dropped_pps": 100}
    assert body["samples"][0]["ingress"]["offered_bps"] == 0 and body["events"] == [] and body["quarantines"] == []


@pytest.mark.parametrize("kw, status", [
    ({"foreign": True}, "drift"),
    ({"error": "device tap1 does not exist", "missing": True}, "pending"),
    ({"error": "drift: replace qdisc ... that vmqos did not make"}, "drift"),
    ({"error": "tc -batch: RTNETLINK answers: Invalid argument"}, "error"),
    ({"absent": True}, "pending"),
    ({"in_sync": True}, "in_sync"),
    ({}, "pending"),
])
def test_a_ports_status(kw, status):
    args = {"in_sync": False, "error": None, "missing": False, "absent": False, "foreign": False, **kw}
    found = port_status("tap1", 3, **args)
    assert (found.status, found.revision) == (status, 3)
    if kw.get("error"):
        assert found.message == kw["error"]
