"""Nova flavor extra specs: the seed's m1.resquota in every input shape, refusals, round trips."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.core.errors import ConflictError, FormatError, InvalidValue, UnsupportedError
from vmqos.core.formats import get_format, nova
from vmqos.core.model import (
    BandwidthLimit,
    CpuQos,
    DirectionQos,
    DiskQos,
    NetworkQos,
    PacketRateLimit,
    QosDocument,
    TrafficClass,
)

U32 = 2**32 - 1

# `openstack flavor show m1.resquota`, the properties cell (seed 003, line 79).
SEED_PROPERTIES = (
    "quota:cpu_shares='512', quota:disk_read_bytes_sec='1000000', quota:disk_write_bytes_sec='1024000', "
    "quota:vif_inbound_average='32768', quota:vif_inbound_burst='131072', quota:vif_inbound_peak='65536', "
    "quota:vif_outbound_average='32768', quota:vif_outbound_burst='131072', quota:vif_outbound_peak='65536'"
)
# `openstack flavor set m1.resquota --property ...` (seed 003, lines 59-67), one per line.
SEED_SPECS = {
    "quota:cpu_shares": "512",
    "quota:disk_read_bytes_sec": "1000000",
    "quota:disk_write_bytes_sec": "1024000",
    "quota:vif_outbound_average": "32768",
    "quota:vif_outbound_peak": "65536",
    "quota:vif_outbound_burst": "131072",
    "quota:vif_inbound_average": "32768",
    "quota:vif_inbound_peak": "65536",
    "quota:vif_inbound_burst": "131072",
}
SEED_LINES = ("# m1.resquota\n\n" + "".join(f"{key}={value}\n" for key, value in SEED_SPECS.items())
              + "hw:cpu_policy=shared\n")
SEED_LIMIT = BandwidthLimit(rate_bps=262_144_000, peak_bps=524_288_000, burst_bytes=134_217_728)
SEED_DOC = QosDocument(
    network=NetworkQos(ingress=DirectionQos(bandwidth=SEED_LIMIT), egress=DirectionQos(bandwidth=SEED_LIMIT)),
    cpu=CpuQos(shares=512),
    disk=DiskQos(read_bytes_sec=1_000_000, write_bytes_sec=1_024_000),
)


def without_notes(doc: QosDocument) -> QosDocument:
    return replace(doc, notes=())


# --- the seed in every shape ------------------------------------------------------------------


def test_registered_as_a_format():
    assert get_format("nova") is nova


@pytest.mark.parametrize(
    "text",
    [
        SEED_PROPERTIES,
        SEED_LINES,
        json.dumps(SEED_SPECS),
        json.dumps({key: int(value) for key, value in SEED_SPECS.items()}),
        json.dumps({"extra_specs": SEED_SPECS}),
    ],
    ids=["flavor-show", "lines", "json", "json-ints", "extra-specs"],
)
def test_seed_every_shape(text):
    doc = nova.read(text)
    assert without_notes(doc) == SEED_DOC
    assert doc.network.ingress.bandwidth.rate_bps == 262_144_000
    assert doc.network.ingress.bandwidth.peak_bps == 524_288_000
    assert doc.network.egress.bandwidth.burst_bytes == 134_217_728
    assert [note.field for note in doc.notes] == ["quota:vif_outbound_peak"]


def test_flavor_wrapper_gives_the_name():
    doc = nova.read(json.dumps({"flavor": {"name": "m1.resquota", "vcpus": 1, "extra_specs": SEED_SPECS}}))
    assert doc.name == "m1.resquota"
    assert without_notes(doc) == replace(SEED_DOC, name="m1.resquota")


def test_flavor_show_json_properties():
    doc = nova.read(json.dumps({"name": "m1.resquota", "properties": SEED_PROPERTIES}))
    assert without_notes(doc) == replace(SEED_DOC, name="m1.resquota")


def test_seed_writes_sorted_lines():
    assert nova.write(SEED_DOC) == "".join(f"{key}={SEED_SPECS[key]}\n" for key in sorted(SEED_SPECS))


def test_seed_writes_json_strings():
    assert json.loads(nova.write(SEED_DOC, json=True)) == SEED_SPECS


# --- reading ----------------------------------------------------------------------------------


def test_zero_and_unlimited_values_are_unset():
    doc = nova.read("quota:cpu_quota=-1\nquota:cpu_period=0\nquota:disk_total_iops_sec=0\n"
                    "quota:vif_inbound_average=0\nquota:cpu_shares=1024")
    assert doc.cpu == CpuQos(shares=1024)
    assert doc.disk is None and doc.network is None


def test_cpu_period_and_quota():
    assert nova.read("quota:cpu_period=20000\nquota:cpu_quota=10000").cpu == CpuQos(period_us=20_000, quota_us=10_000)


def test_peak_and_burst_without_average_are_ignored_with_a_note():
    doc = nova.read("quota:vif_inbound_peak=100\nquota:vif_inbound_burst=10\nquota:vif_outbound_average=5")
    assert doc.network == NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(40_000)))
    assert len(doc.notes) == 1
    assert "quota:vif_inbound_peak" in doc.notes[0].field and "quota:vif_inbound_burst" in doc.notes[0].field
    assert "quota:vif_inbound_average" in doc.notes[0].message


def test_vmware_keys_are_ignored_with_info_notes():
    doc = nova.read("quota:cpu_limit=1000\nquota:memory_shares_level=high\nquota:vif_reservation=10\n"
                    "quota:disk_io_limit=500")
    assert doc == replace(QosDocument(), notes=doc.notes)
    assert [(note.field, note.level) for note in doc.notes] == [
        ("quota:cpu_limit", "info"), ("quota:memory_shares_level", "info"),
        ("quota:vif_reservation", "info"), ("quota:disk_io_limit", "info")]
    assert all("VMware" in note.message for note in doc.notes)


def test_non_quota_keys_are_ignored_silently():
    doc = nova.read('{"hw:cpu_policy": "dedicated", "hw:numa_cpus.0": "0,1", "quota:cpu_shares": 300}')
    assert doc == QosDocument(cpu=CpuQos(shares=300))
    assert nova.read("hw:numa_cpus.0=0,1\naggregate_instance_extra_specs:ssd=true") == QosDocument()


def test_unknown_quota_key_lists_the_valid_ones():
    with pytest.raises(InvalidValue) as exc:
        nova.read("quota:vif_inbound_averge=100")
    assert exc.value.field == "quota:vif_inbound_averge"
    assert "quota:vif_inbound_average" in exc.value.fix and "quota:cpu_shares" in exc.value.fix


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("quota:cpu_shares=0", "quota:cpu_shares"),
        ("quota:cpu_shares=300000", "quota:cpu_shares"),
        ("quota:cpu_shares=-2", "quota:cpu_shares"),
        ("quota:cpu_shares=many", "quota:cpu_shares"),
        ("quota:cpu_period=500", "quota:cpu_period"),
        ("quota:cpu_period=-1", "quota:cpu_period"),
        ("quota:cpu_quota=10", "quota:cpu_quota"),
        ("quota:cpu_quota=1.5", "quota:cpu_quota"),
        ("quota:disk_read_bytes_sec=-1", "quota:disk_read_bytes_sec"),
        ("quota:disk_write_iops_sec=1e3", "quota:disk_write_iops_sec"),
        ("quota:vif_inbound_average=abc", "quota:vif_inbound_average"),
        ("quota:vif_outbound_burst=-5", "quota:vif_outbound_burst"),
        ("quota:vif_outbound_average=4294967296", "quota:vif_outbound_average"),
        ("quota:vif_inbound_average=100\nquota:vif_inbound_peak=50", "quota:vif_inbound_peak"),
        ('{"quota:vif_inbound_average": null}', "quota:vif_inbound_average"),
        ('{"quota:cpu_shares": true}', "quota:cpu_shares"),
    ],
)
def test_invalid_values_name_the_key(text, field):
    with pytest.raises(InvalidValue) as exc:
        nova.read(text)
    assert exc.value.field == field
    assert field in str(exc.value)


def test_zero_shares_message_explains_libvirt_refuses_it():
    with pytest.raises(InvalidValue, match=r"quota:cpu_shares.*refuse 0 shares"):
        nova.read("quota:cpu_shares=0")


def test_total_with_read_is_a_conflict():
    with pytest.raises(ConflictError, match="total_bytes_sec"):
        nova.read("quota:disk_total_bytes_sec=100\nquota:disk_read_bytes_sec=50")


def test_a_key_given_twice_differently_is_a_conflict():
    with pytest.raises(ConflictError, match="quota:cpu_shares"):
        nova.read("quota:cpu_shares=512\nquota:cpu_shares=1024")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("quota:cpu_shares=512\njust words\n", 2),
        ('{"quota:cpu_shares": "512",\n}', 2),
        ("quota:cpu_shares='512', oops", 1),
        ("[1, 2]", None),
        ('{"extra_specs": [1]}', None),
    ],
)
def test_unreadable_input_is_a_format_error(text, line):
    with pytest.raises(FormatError) as exc:
        nova.read(text)
    assert exc.value.fmt == "nova" and exc.value.line == line


# --- writing ----------------------------------------------------------------------------------


def test_write_only_set_keys_and_rounds():
    doc = QosDocument(network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(12_000, burst_bytes=1500))),
                      cpu=CpuQos(quota_us=50_000))
    assert nova.write(doc) == "quota:cpu_quota=50000\nquota:vif_outbound_average=2\nquota:vif_outbound_burst=1\n"


def test_write_empty_document():
    assert nova.write(QosDocument()) == ""
    assert json.loads(nova.write(QosDocument(), json=True)) == {}


def test_identical_interfaces_and_disks_write_one_set():
    doc = QosDocument(interfaces={"a": SEED_DOC.network, "b": SEED_DOC.network},
                      disks={"vda": SEED_DOC.disk, "vdb": SEED_DOC.disk}, cpu=SEED_DOC.cpu)
    assert nova.write(doc) == nova.write(SEED_DOC)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (QosDocument(network=NetworkQos(egress=DirectionQos(dscp=46))), ("egress.dscp", "neutron")),
        (QosDocument(network=NetworkQos(ingress=DirectionQos(packet_rate=PacketRateLimit(1000)))),
         ("ingress.packet_rate", "neutron")),
        (QosDocument(network=NetworkQos(ingress=DirectionQos(min_bps=8000))), ("ingress.min_bps", "neutron")),
        (QosDocument(network=NetworkQos(egress=DirectionQos(min_bps=8000))), ("egress.min_bps", "neutron")),
        (QosDocument(network=NetworkQos(min_pps_any=10)), ("min_pps_any", "neutron")),
        (QosDocument(network=NetworkQos(egress=DirectionQos(
            bandwidth=BandwidthLimit(8000), classes=(TrafficClass("rest", 100),)))), ("egress.classes", "vmqos")),
        (QosDocument(disk=DiskQos(read_iops_sec=100, read_iops_sec_max=200)), ("disk.read_iops_sec_max", "cinder")),
        (QosDocument(disk=DiskQos(size_iops_sec=4096)), ("disk.size_iops_sec", "cinder")),
        (QosDocument(disk=DiskQos(read_iops_sec=100, read_iops_sec_max=200, read_iops_sec_max_length=5)),
         ("disk.read_iops_sec_max", "cinder")),
        (QosDocument(disk=DiskQos(group_name="shared")), ("disk.group_name", "libvirt")),
        (QosDocument(interfaces={"vnet0": SEED_DOC.network, "vnet1": NetworkQos()}), ("vnet0, vnet1",)),
        (QosDocument(disks={"vda": SEED_DOC.disk, "vdb": DiskQos(total_iops_sec=5)}), ("vda, vdb",)),
    ],
)
def test_unsupported_names_the_field_and_the_format(doc, words):
    with pytest.raises(UnsupportedError) as exc:
        nova.write(doc)
    for word in words:
        assert word in str(exc.value)


# --- round trips --------------------------------------------------------------------------------


@st.composite
def vif_specs(draw, way: str) -> dict[str, int]:
    if not draw(st.booleans()):
        return {}
    average = draw(st.integers(1, U32))
    specs = {f"quota:vif_{way}_average": average}
    if draw(st.booleans()):
        specs[f"quota:vif_{way}_peak"] = draw(st.integers(average, U32))
    if draw(st.booleans()):
        specs[f"quota:vif_{way}_burst"] = draw(st.integers(1, U32))
    return specs


@st.composite
def disk_specs(draw) -> dict[str, int]:
    specs = {}
    for kind in ("bytes", "iops"):
        for scope in draw(st.sampled_from([(), ("total",), ("read",), ("write",), ("read", "write")])):
            specs[f"quota:disk_{scope}_{kind}_sec"] = draw(st.integers(1, 10**13))
    return specs


@st.composite
def cpu_specs(draw) -> dict[str, int]:
    specs = {}
    for key, values in (("shares", st.integers(2, 262_144)), ("period", st.integers(1000, 1_000_000)),
                        ("quota", st.integers(1000, 2**44 - 1))):
        if draw(st.booleans()):
            specs[f"quota:cpu_{key}"] = draw(values)
    return specs


extra_specs = st.builds(lambda *parts: {k: v for part in parts for k, v in part.items()},
                        vif_specs("inbound"), vif_specs("outbound"), disk_specs(), cpu_specs())


@given(extra_specs, st.sampled_from(["lines", "properties", "json"]))
def test_text_read_write_read(specs, shape):
    if shape == "lines":
        text = "".join(f"{key}={value}\n" for key, value in specs.items())
    elif shape == "properties":
        text = ", ".join(f"{key}='{value}'" for key, value in specs.items())
    else:
        text = json.dumps({"extra_specs": {key: str(value) for key, value in specs.items()}})
    doc = nova.read(text)
    written = nova.write(doc)
    # Writing gives back exactly the input keys and values, sorted.
    assert written == "".join(f"{key}={specs[key]}\n" for key in sorted(specs))
    assert nova.read(written) == doc
    assert nova.read(nova.write(doc, json=True)) == doc


@given(extra_specs)
def test_model_write_read(specs):
    # Build the model directly in canonical units, independent of the reader.
    directions = {}
    for way in ("inbound", "outbound"):
        average = specs.get(f"quota:vif_{way}_average")
        limit = None if average is None else BandwidthLimit(
            average * 8000,
            specs[f"quota:vif_{way}_peak"] * 8000 if f"quota:vif_{way}_peak" in specs else None,
            specs[f"quota:vif_{way}_burst"] * 1024 if f"quota:vif_{way}_burst" in specs else None,
        )
        directions[way] = DirectionQos(bandwidth=limit)
    network = NetworkQos(ingress=directions["inbound"], egress=directions["outbound"])
    disk = DiskQos(**{key.removeprefix("quota:disk_"): value for key, value in specs.items() if "disk_" in key})
    cpu = CpuQos(shares=specs.get("quota:cpu_shares"), period_us=specs.get("quota:cpu_period"),
                 quota_us=specs.get("quota:cpu_quota"))
    doc = QosDocument(network=None if network.is_empty else network, cpu=None if cpu.is_empty else cpu,
                      disk=None if disk.is_empty else disk)
    assert without_notes(nova.read(nova.write(doc))) == doc
