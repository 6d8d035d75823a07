"""libvirt XML: the seed's m1.resquota domain, every refusal, and read/write round trips."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.core.errors import ConflictError, FormatError, InvalidValue, UnsupportedError
from vmqos.core.formats import get_format, libvirt
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

# The three interfaces Nova wrote for m1.resquota (seed 003, lines 631-680), trimmed to the QoS.
SEED_INTERFACE = """
    <interface type='bridge'>
      <mac address='fa:16:3e:{mac}'/>
      <source bridge='br-int'/>
      <virtualport type='openvswitch'>
        <parameters interfaceid='bb8410ad-a026-4e9a-8f0b-0e8f611d5588'/>
      </virtualport>
      <bandwidth>
        <inbound average='32768' peak='65536' burst='131072'/>
        <outbound average='32768' peak='65536' burst='131072'/>
      </bandwidth>
      <target dev='{dev}'/>
      <model type='virtio'/>
    </interface>"""
SEED_DOMAIN = (
    "<domain type='kvm'>\n  <name>instance-00000001</name>\n"
    "  <cputune>\n    <shares>512</shares>\n  </cputune>\n  <devices>\n"
    "    <disk type='file' device='disk'>\n      <target dev='vda' bus='virtio'/>\n"
    "      <iotune>\n        <read_bytes_sec>1000000</read_bytes_sec>\n"
    "        <write_bytes_sec>1024000</write_bytes_sec>\n      </iotune>\n    </disk>\n"
    "    <disk type='file' device='cdrom'>\n      <target dev='hda'/>\n    </disk>"
    + "".join(SEED_INTERFACE.format(mac=mac, dev=dev) for mac, dev in (
        ("8d:f3:ae", "tapbb8410ad-a0"), ("60:1e:07", "tapa1e966cd-47"), ("15:9c:1c", "tape0bb2633-17")))
    + "\n  </devices>\n</domain>\n"
)
SEED_LIMIT = BandwidthLimit(rate_bps=262_144_000, peak_bps=524_288_000, burst_bytes=134_217_728)
SEED_NETWORK = NetworkQos(ingress=DirectionQos(bandwidth=SEED_LIMIT), egress=DirectionQos(bandwidth=SEED_LIMIT))


def bandwidth_xml(inbound: str = "", outbound: str = "") -> str:
    parts = [f"<inbound {inbound}/>" if inbound else "", f"<outbound {outbound}/>" if outbound else ""]
    return f"<bandwidth>{''.join(parts)}</bandwidth>"


# --- the seed ---------------------------------------------------------------------------------


def test_registered_as_a_format():
    assert get_format("libvirt") is libvirt


def test_seed_domain_gives_every_interface_the_flavor_limits():
    doc = libvirt.read(SEED_DOMAIN)
    assert doc.name == "instance-00000001"
    assert doc.network is None and doc.disk is None
    assert list(doc.interfaces) == ["tapbb8410ad-a0", "tapa1e966cd-47", "tape0bb2633-17"]
    assert all(qos == SEED_NETWORK for qos in doc.interfaces.values())
    assert doc.cpu == CpuQos(shares=512)
    assert doc.disks == {"vda": DiskQos(read_bytes_sec=1_000_000, write_bytes_sec=1_024_000)}  # cdrom skipped


def test_seed_outbound_peak_is_read_with_a_note_per_interface():
    doc = libvirt.read(SEED_DOMAIN)
    fields = [note.field for note in doc.notes]
    assert fields == [f"{dev}.outbound.peak" for dev in doc.interfaces]
    assert "drops peak on outbound" in doc.notes[0].message


def test_seed_bare_bandwidth_units():
    doc = libvirt.read(bandwidth_xml("average='32768' peak='65536' burst='131072'",
                                     "average='32768' peak='65536' burst='131072'"))
    assert doc.network == SEED_NETWORK
    assert doc.network.ingress.bandwidth.rate_bps == 262_144_000
    assert doc.network.ingress.bandwidth.peak_bps == 524_288_000
    assert doc.network.ingress.bandwidth.burst_bytes == 134_217_728
    assert doc.interfaces == {}


def test_seed_domain_round_trips_through_the_minimal_domain():
    doc = libvirt.read(SEED_DOMAIN)
    text = libvirt.write(doc)
    root = ET.fromstring(text)
    assert root.tag == "domain" and root.get("type") == "kvm"
    inbound = root.find("devices/interface/bandwidth/inbound")
    assert inbound.attrib == {"average": "32768", "peak": "65536", "burst": "131072"}
    assert root.findtext("cputune/shares") == "512"
    assert root.findtext("devices/disk/iotune/write_bytes_sec") == "1024000"
    assert libvirt.read(text) == doc


# --- reading ----------------------------------------------------------------------------------


def test_absent_and_zero_attributes_are_unset():
    doc = libvirt.read(bandwidth_xml("average='1000' peak='0' burst='0'"))
    assert doc.network.ingress == DirectionQos(bandwidth=BandwidthLimit(8_000_000))
    assert doc.network.egress.is_empty


def test_inbound_floor_is_a_guaranteed_minimum():
    doc = libvirt.read(bandwidth_xml("average='1000' floor='200'"))
    assert doc.network.ingress.min_bps == 1_600_000
    only_floor = libvirt.read(bandwidth_xml("floor='200'"))
    assert only_floor.network.ingress == DirectionQos(min_bps=1_600_000)


def test_floor_only_ignores_peak_with_a_note():
    doc = libvirt.read(bandwidth_xml("floor='200' peak='300'"))
    assert doc.network.ingress == DirectionQos(min_bps=1_600_000)
    assert [note.field for note in doc.notes] == ["inbound.peak"]


def test_bare_iotune_and_cputune():
    doc = libvirt.read("<iotune><total_iops_sec>500</total_iops_sec><total_iops_sec_max>900</total_iops_sec_max>"
                       "<total_iops_sec_max_length>10</total_iops_sec_max_length><group_name> g1 </group_name>"
                       "<read_bytes_sec>0</read_bytes_sec></iotune>")
    assert doc.disk == DiskQos(total_iops_sec=500, total_iops_sec_max=900, total_iops_sec_max_length=10,
                               group_name="g1")
    cpu = libvirt.read("<cputune><shares>2048</shares><period>100000</period><quota>-1</quota>"
                       "<vcpupin vcpu='0' cpuset='1'/></cputune>")
    assert cpu.cpu == CpuQos(shares=2048, period_us=100_000)
    assert libvirt.read("<cputune><period>0</period><quota>50000</quota></cputune>").cpu == CpuQos(quota_us=50_000)


def test_wrapper_reads_its_children_and_name():
    doc = libvirt.read("<qos><name>m1</name>" + bandwidth_xml(outbound="average='12800'")
                       + "<cputune><shares>512</shares></cputune><extra/></qos>")
    assert doc.name == "m1"
    assert doc.network.egress.bandwidth == BandwidthLimit(102_400_000)
    assert doc.cpu == CpuQos(shares=512)
    assert [(note.field, note.level) for note in doc.notes] == [("extra", "info")]


def test_interface_without_target_and_without_bandwidth():
    doc = libvirt.read("<domain><devices><interface type='network'>" + bandwidth_xml("average='5'")
                       + "</interface><interface type='network'><target dev='vnet1'/></interface></devices></domain>")
    assert doc.interfaces["interface0"].ingress.bandwidth == BandwidthLimit(40_000)
    assert doc.interfaces["vnet1"] == NetworkQos()
    assert doc.name is None and doc.cpu is None


@pytest.mark.parametrize(
    ("xml", "field"),
    [
        (bandwidth_xml(outbound="average='10' floor='5'"), "outbound.floor"),
        (bandwidth_xml("peak='10' burst='5'"), "inbound.average"),
        (bandwidth_xml(outbound="burst='5'"), "outbound.average"),
        (bandwidth_xml("average='abc'"), "inbound.average"),
        (bandwidth_xml("average='-1'"), "inbound.average"),
        (bandwidth_xml("average='4294967296'"), "inbound.average"),
        (bandwidth_xml("average='10' burst='1.5'"), "inbound.burst"),
        (bandwidth_xml("average='10' peak='5'"), "inbound.peak"),
        (bandwidth_xml("average='10' floor='20'"), "inbound.floor"),
        (bandwidth_xml("average='10' avg='20'"), "inbound.avg"),
        ("<bandwidth><sideways average='1'/></bandwidth>", "bandwidth.sideways"),
        ("<iotune><read_bytes_per_sec>5</read_bytes_per_sec></iotune>", "iotune.read_bytes_per_sec"),
        ("<iotune><read_bytes_sec>lots</read_bytes_sec></iotune>", "iotune.read_bytes_sec"),
        ("<cputune><shares>0</shares></cputune>", "cputune.shares"),
        ("<cputune><shares>-5</shares></cputune>", "cputune.shares"),
        ("<cputune><period>10</period></cputune>", "cputune.period"),
        ("<cputune><quota>10</quota></cputune>", "cputune.quota"),
        ("<domain><devices><interface><target dev='vnet7'/>" + bandwidth_xml(outbound="floor='1'")
         + "</interface></devices></domain>", "vnet7.outbound.floor"),
    ],
)
def test_invalid_values_name_the_field(xml, field):
    with pytest.raises(InvalidValue) as exc:
        libvirt.read(xml)
    assert exc.value.field == field
    assert field in str(exc.value)


def test_outbound_floor_message_says_inbound_only():
    with pytest.raises(InvalidValue, match="floor only on inbound"):
        libvirt.read(bandwidth_xml(outbound="average='10' floor='5'"))


def test_peak_without_average_says_mandatory():
    with pytest.raises(InvalidValue, match="average or floor are mandatory"):
        libvirt.read(bandwidth_xml("peak='10'"))


@pytest.mark.parametrize(
    "xml",
    [
        "<bandwidth><inbound average='1'/><inbound average='2'/></bandwidth>",
        "<iotune><total_bytes_sec>5</total_bytes_sec><read_bytes_sec>5</read_bytes_sec></iotune>",
        "<qos><cputune/><cputune/></qos>",
        "<domain><devices><disk><target dev='vda'/></disk><disk><target dev='vda'/></disk></devices></domain>",
    ],
)
def test_conflicts(xml):
    with pytest.raises(ConflictError):
        libvirt.read(xml)


def test_malformed_xml_reports_the_line():
    with pytest.raises(FormatError) as exc:
        libvirt.read("<bandwidth>\n  <inbound average='1'>\n</bandwidth>\n")
    assert exc.value.line == 3
    assert exc.value.fmt == "libvirt"


def test_entities_are_refused():
    with pytest.raises(FormatError):
        libvirt.read('<!DOCTYPE x [<!ENTITY a "1000">]><bandwidth><inbound average="&a;"/></bandwidth>')


def test_wrapper_without_known_children_is_not_libvirt():
    with pytest.raises(FormatError, match="contains no"):
        libvirt.read("<html><body/></html>")


# --- writing ----------------------------------------------------------------------------------


def test_single_part_is_written_bare_and_several_are_wrapped():
    bare = libvirt.write(QosDocument(network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(102_400_000)))))
    assert ET.fromstring(bare).tag == "bandwidth"
    assert "<outbound average=\"12800\" />" in bare
    both = libvirt.write(QosDocument(name="m1", cpu=CpuQos(shares=512), disk=DiskQos(read_iops_sec=100)))
    root = ET.fromstring(both)
    assert [child.tag for child in root] == ["name", "iotune", "cputune"]
    assert root.tag == "qos" and root.findtext("name") == "m1"
    assert both.count("\n") > 5  # pretty-printed


def test_writing_rounds_to_whole_units():
    limit = BandwidthLimit(rate_bps=12_000, peak_bps=8_000_001, burst_bytes=1)
    root = ET.fromstring(libvirt.write(QosDocument(network=NetworkQos(ingress=DirectionQos(bandwidth=limit)))))
    assert root.find("inbound").attrib == {"average": "2", "peak": "1000", "burst": "1"}


def test_floor_is_written_on_inbound():
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(80_000), min_bps=16_000))
    assert ET.fromstring(libvirt.write(QosDocument(network=qos))).find("inbound").attrib == {
        "average": "10", "floor": "2"}


@pytest.mark.parametrize(
    ("direction", "field", "fix"),
    [
        (("egress", DirectionQos(min_bps=8000)), "egress.min_bps", "neutron"),
        (("ingress", DirectionQos(packet_rate=PacketRateLimit(1000))), "ingress.packet_rate", "neutron"),
        (("egress", DirectionQos(min_pps=10)), "egress.min_pps", "neutron"),
        (("egress", DirectionQos(dscp=46)), "egress.dscp", "neutron"),
        (("ingress", DirectionQos(bandwidth=BandwidthLimit(8000),
                                  classes=(TrafficClass("all", 100),))), "ingress.classes", "vmqos"),
    ],
)
def test_unsupported_fields_name_the_field_and_the_format(direction, field, fix):
    key, value = direction
    doc = QosDocument(network=NetworkQos(**{key: value}))
    with pytest.raises(UnsupportedError) as exc:
        libvirt.write(doc)
    assert field in str(exc.value) and fix in str(exc.value)


def test_min_pps_any_is_unsupported():
    with pytest.raises(UnsupportedError, match="min_pps_any"):
        libvirt.write(QosDocument(network=NetworkQos(min_pps_any=5)))


def test_document_default_beside_different_interfaces_is_unsupported():
    doc = QosDocument(network=SEED_NETWORK, interfaces={"vnet0": NetworkQos()})
    with pytest.raises(UnsupportedError, match="interface"):
        libvirt.write(doc)
    same = QosDocument(network=SEED_NETWORK, interfaces={"vnet0": SEED_NETWORK})
    assert libvirt.read(libvirt.write(same)).interfaces == {"vnet0": SEED_NETWORK}


def test_empty_document_round_trips():
    assert libvirt.read(libvirt.write(QosDocument())) == QosDocument()


# --- round trips --------------------------------------------------------------------------------

units = st.integers(1, U32)


@st.composite
def direction_attrs(draw, inbound: bool) -> dict[str, int]:
    """A valid <inbound>/<outbound> in libvirt units (zeros are unset and may be written)."""
    if inbound and draw(st.booleans()):
        return {"floor": draw(units)}
    average = draw(units)
    attrs = {"average": average, "peak": draw(st.just(0) | st.integers(average, U32)),
             "burst": draw(st.integers(0, U32))}
    if inbound:
        attrs["floor"] = draw(st.just(0) | st.integers(1, average))
    return attrs


def attrs_text(attrs: dict[str, int], keep_zero: bool) -> str:
    return " ".join(f"{key}='{value}'" for key, value in attrs.items() if value or keep_zero)


@st.composite
def bandwidth_texts(draw) -> str:
    keep_zero = draw(st.booleans())
    inbound = draw(st.none() | direction_attrs(True))
    outbound = draw(st.none() | direction_attrs(False))
    return bandwidth_xml(attrs_text(inbound, keep_zero) if inbound else "",
                         attrs_text(outbound, keep_zero) if outbound else "")


@given(bandwidth_texts())
def test_bandwidth_text_read_write_read(text):
    doc = libvirt.read(text)
    written = libvirt.write(doc)
    assert libvirt.read(written) == doc
    # The written attributes are the non-zero ones of the input, exactly.
    if doc.network is not None:
        ours = ET.fromstring(written)
        theirs = ET.fromstring(text)
        for tag in ("inbound", "outbound"):
            expected = {k: v for k, v in (theirs.find(tag).attrib if theirs.find(tag) is not None else {}).items()
                        if v != "0"}
            got = ours.find(tag).attrib if ours.find(tag) is not None else {}
            assert got == expected


def direction_model(attrs: dict[str, int] | None) -> DirectionQos:
    if not attrs:
        return DirectionQos()
    limit = None
    if attrs.get("average"):
        limit = BandwidthLimit(attrs["average"] * 8000, attrs["peak"] * 8000 or None, attrs["burst"] * 1024 or None)
    return DirectionQos(bandwidth=limit, min_bps=attrs.get("floor", 0) * 8000 or None)


networks = st.builds(
    lambda i, o: NetworkQos(ingress=direction_model(i), egress=direction_model(o)),
    st.none() | direction_attrs(True), st.none() | direction_attrs(False),
)
cpus = st.builds(
    CpuQos,
    shares=st.none() | st.integers(2, 262_144),
    period_us=st.none() | st.integers(1000, 1_000_000),
    quota_us=st.none() | st.integers(1000, 2**40),
).filter(lambda cpu: not cpu.is_empty)


@st.composite
def disks(draw) -> DiskQos:
    """A valid DiskQos with any of the 20 keys: total or read/write per kind, bursts over their base."""
    values: dict[str, object] = {}
    for kind in ("bytes", "iops"):
        for scope in draw(st.sampled_from([(), ("total",), ("read",), ("write",), ("read", "write")])):
            key = f"{scope}_{kind}_sec"
            values[key] = draw(st.integers(1, 10**12))
            if draw(st.booleans()):
                values[f"{key}_max"] = draw(st.integers(values[key], 2 * 10**12))
                if draw(st.booleans()):
                    values[f"{key}_max_length"] = draw(st.integers(1, 3600))
    if draw(st.booleans()):
        values["size_iops_sec"] = draw(st.integers(512, 1 << 20))
    if draw(st.booleans()):
        values["group_name"] = draw(st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True))
    return DiskQos(**values)


@given(network=st.none() | networks, cpu=st.none() | cpus, disk=st.none() | disks())
def test_model_write_read_bare(network, cpu, disk):
    network = None if network is None or network.is_empty else network
    disk = None if disk is None or disk.is_empty else disk
    doc = QosDocument(network=network, cpu=cpu, disk=disk)
    assert replace(libvirt.read(libvirt.write(doc)), notes=()) == doc


@given(
    name=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    interfaces=st.dictionaries(st.from_regex(r"tap[0-9a-f]{1,8}", fullmatch=True), networks, max_size=3),
    disk_map=st.dictionaries(st.from_regex(r"vd[a-z]", fullmatch=True), disks(), min_size=1, max_size=3),
    cpu=st.none() | cpus,
)
def test_model_write_read_domain(name, interfaces, disk_map, cpu):
    doc = QosDocument(name=name, cpu=cpu, interfaces=interfaces, disks=disk_map)
    text = libvirt.write(doc)
    assert ET.fromstring(text).tag == "domain"
    back = libvirt.read(text)
    assert replace(back, notes=()) == doc
    assert libvirt.read(libvirt.write(back)) == back
