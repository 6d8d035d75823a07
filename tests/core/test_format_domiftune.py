"""virsh domiftune arguments: the seed's limits, every refusal, DomiftuneArgs and round trips."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.core.errors import FormatError, InvalidValue, UnsupportedError
from vmqos.core.formats import domiftune, get_format
from vmqos.core.formats.domiftune import (
    CLEAR,
    DomiftuneArgs,
    parse_args,
    parse_direction,
    parse_direction_arg,
)
from vmqos.core.model import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    QosDocument,
    TrafficClass,
)

U32 = 2**32 - 1
SEED_LIMIT = BandwidthLimit(rate_bps=262_144_000, peak_bps=524_288_000, burst_bytes=134_217_728)


def network(doc: QosDocument) -> NetworkQos:
    assert doc.network is not None
    return doc.network


def test_registered_as_a_format():
    assert get_format("domiftune") is domiftune


# --- the seed ---------------------------------------------------------------------------------


def test_seed_outbound_average_only():
    doc = domiftune.read("--outbound 12800,0,0")
    assert network(doc).egress == DirectionQos(bandwidth=BandwidthLimit(102_400_000))
    assert network(doc).ingress.is_empty
    assert [(note.field, note.level) for note in doc.notes] == [("--inbound", "info")]  # not given


def test_seed_flavor_limits_as_domiftune():
    doc = domiftune.read("--inbound 32768,65536,131072 --outbound 32768,65536,131072")
    assert network(doc).ingress.bandwidth == SEED_LIMIT
    assert network(doc).egress.bandwidth == SEED_LIMIT
    assert [note.field for note in doc.notes] == ["--outbound"]
    assert "drops peak on outbound" in doc.notes[0].message
    assert domiftune.write(doc) == "--inbound 32768,65536,131072 --outbound 32768,65536,131072\n"


# --- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "--inbound 1000,2000,100 --outbound 12800",
        "--inbound=1000,2000,100 --outbound=12800,0,0 --live --config",
        "--current --outbound 12800,, --inbound 1000,2000,100,0",
        "virsh domiftune vm1 vnet0 --inbound 1000,2000,100 --outbound 12800",
        "virsh -c qemu:///system domiftune --domain vm1 --interface vnet0 --inbound 1000,2000,100 --outbound 12800",
        "domiftune vm1 --interface vnet0 --inbound '1000,2000,100' --outbound 12800",
    ],
)
def test_spellings(text):
    qos = network(domiftune.read(text))
    assert qos.ingress == DirectionQos(bandwidth=BandwidthLimit(8_000_000, 16_000_000, 102_400))
    assert qos.egress == DirectionQos(bandwidth=BandwidthLimit(102_400_000))


def test_virsh_prefix_gives_the_interface_as_name():
    assert domiftune.read("virsh domiftune vm1 vnet0 --inbound 10").name == "vnet0"
    assert domiftune.read("--inbound 10").name is None
    args = parse_args("domiftune --interface tap1 --domain dom --outbound 1")
    assert (args.domain, args.interface) == ("dom", "tap1")


def test_empty_fields_and_floor():
    qos = network(domiftune.read("--inbound 1000,,100,250 --outbound 0"))
    assert qos.ingress == DirectionQos(bandwidth=BandwidthLimit(8_000_000, None, 102_400), min_bps=2_000_000)
    assert qos.egress.is_empty


def test_floor_only_inbound():
    assert network(domiftune.read("--inbound 0,0,0,5")).ingress == DirectionQos(min_bps=40_000)


@pytest.mark.parametrize("text", ["--inbound 0 --outbound 0", "--inbound 0,0,0,0 --outbound 0,0", ""])
def test_clears_read_as_no_limit(text):
    doc = domiftune.read(text)
    assert doc.network is None


def test_parse_args_distinguishes_unchanged_clear_and_set():
    args = parse_args("--inbound 0 --outbound 100,200")
    assert args.inbound is CLEAR
    assert args.outbound == (BandwidthLimit(800_000, 1_600_000), None)
    assert parse_args("--outbound 5").inbound is None
    assert parse_args("--inbound 10,0,0,4").inbound == (BandwidthLimit(80_000), 32_000)
    assert parse_args("--inbound 0,0,0,4").inbound == (None, 32_000)
    with pytest.raises(FrozenInstanceError):
        args.inbound = None  # type: ignore[misc]


def test_parse_direction_arg():
    assert parse_direction_arg("--inbound", "1000,2000,100") == BandwidthLimit(8_000_000, 16_000_000, 102_400)
    assert parse_direction_arg("--outbound", "12800") == BandwidthLimit(102_400_000)
    assert parse_direction_arg("--outbound", "0") is None
    assert parse_direction("--inbound", "0,0,0") is CLEAR
    with pytest.raises(InvalidValue) as exc:
        parse_direction_arg("--inbound", "10,0,0,5")
    assert exc.value.field == "--inbound" and "floor" in exc.value.fix
    with pytest.raises(InvalidValue):
        parse_direction_arg("--sideways", "10")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("--inbound 10,abc", "--inbound", ("average,peak,burst[,floor]", "unsigned integers", "kB/s", "KiB")),
        ("--outbound x", "--outbound", ("average,peak,burst", "kB/s")),
        ("--inbound -10", "--inbound", ("unsigned",)),
        ("--inbound 1.5", "--inbound", ("unsigned",)),
        ("--outbound 10,0,0,5", "--outbound", ("floor only on inbound",)),
        ("--inbound 1,2,3,4,5", "--inbound", ("too many fields",)),
        ("--inbound 4294967296", "--inbound", ("4294967295",)),
        ("--outbound 10,4294967296", "--outbound", ("4294967295",)),
        ("--inbound 0,10,5", "--inbound", ("mandatory",)),
        ("--outbound 0,0,5", "--outbound", ("mandatory",)),
        ("--inbound 100,50", "--inbound", ("peak must be at least average",)),
        ("--inbound 100,0,0,200", "--inbound", ("must not exceed average",)),
        ("--inbound", "--inbound", ("average,peak,burst",)),
        ("--inbound=", "--inbound", ("average,peak,burst",)),
        ("--inbound 1 --inbound 2", "--inbound", ("twice",)),
        ("--outbund 10", "--outbund", ("--outbound",)),
        ("-o 10", "-o", ("--inbound",)),
        ("--live=yes", "--live", ("--live",)),
        ("vm1 vnet0 extra --inbound 1", "arguments", ("at most",)),
        ("vm1 --domain vm2 --inbound 1", "--domain", ("positional",)),
    ],
)
def test_invalid_arguments_name_the_option(text, field, words):
    with pytest.raises(InvalidValue) as exc:
        domiftune.read(text)
    assert exc.value.field == field
    for word in words:
        assert word in str(exc.value)


@pytest.mark.parametrize("text", ["--inbound '10", "virsh list --all"])
def test_unreadable_command_lines(text):
    with pytest.raises(FormatError):
        domiftune.read(text)


# --- writing ----------------------------------------------------------------------------------


def test_write_states_both_directions():
    doc = QosDocument(network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(102_400_000))))
    assert domiftune.write(doc) == "--inbound 0 --outbound 12800,0,0\n"


def test_write_empty_document_clears_both():
    assert domiftune.write(QosDocument()) == "--inbound 0 --outbound 0\n"


def test_write_floor_and_rounding():
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(12_000, 8_000_001, 1), min_bps=7_000))
    assert domiftune.write(QosDocument(network=qos)) == "--inbound 2,1000,1,1 --outbound 0\n"
    floor_only = NetworkQos(ingress=DirectionQos(min_bps=16_000))
    assert domiftune.write(QosDocument(network=floor_only)) == "--inbound 0,0,0,2 --outbound 0\n"


def test_write_command_line_for_one_interface():
    doc = QosDocument(name="vnet0", interfaces={
        "vnet0": NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(8000))),
        "vnet1": NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(16000))),
    })
    assert domiftune.write(doc, interface="vnet1", domain="my vm") == (
        "virsh domiftune 'my vm' vnet1 --inbound 0 --outbound 2,0,0\n")
    with pytest.raises(UnsupportedError, match="vnet0, vnet1"):
        domiftune.write(doc)
    single = QosDocument(name="tap0", network=NetworkQos())
    assert domiftune.write(single, domain="vm").startswith("virsh domiftune vm tap0 --inbound 0")
    with pytest.raises(UnsupportedError, match="interface"):
        domiftune.write(QosDocument(), domain="vm")


@pytest.mark.parametrize(
    ("qos", "words"),
    [
        (NetworkQos(egress=DirectionQos(min_bps=8000)), ("egress.min_bps", "neutron")),
        (NetworkQos(ingress=DirectionQos(packet_rate=PacketRateLimit(100))), ("ingress.packet_rate", "neutron")),
        (NetworkQos(egress=DirectionQos(dscp=10)), ("egress.dscp", "neutron")),
        (NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(8000), classes=(TrafficClass("x", 100),))),
         ("ingress.classes", "vmqos")),
        (NetworkQos(min_pps_any=3), ("min_pps_any",)),
    ],
)
def test_unsupported(qos, words):
    with pytest.raises(UnsupportedError) as exc:
        domiftune.write(QosDocument(network=qos))
    for word in words:
        assert word in str(exc.value)


# --- round trips --------------------------------------------------------------------------------


@st.composite
def direction_fields(draw, inbound: bool) -> list[int]:
    """Fields of one option in libvirt units: a clear, a floor only, or a limit."""
    choice = draw(st.sampled_from(["clear", "floor", "limit"] if inbound else ["clear", "limit"]))
    if choice == "clear":
        return [0]
    if choice == "floor":
        return [0, 0, 0, draw(st.integers(1, U32))]
    average = draw(st.integers(1, U32))
    fields = [average, draw(st.just(0) | st.integers(average, U32)), draw(st.integers(0, U32))]
    if inbound:
        fields.append(draw(st.integers(0, average)))
    return fields


@st.composite
def command_lines(draw) -> tuple[list[int], list[int], str]:
    inbound, outbound = draw(direction_fields(True)), draw(direction_fields(False))
    parts = [("--inbound", inbound), ("--outbound", outbound)]
    if draw(st.booleans()):
        parts.reverse()
    sep = draw(st.sampled_from([" ", "="]))
    # virsh accepts trailing fields left out: drop trailing zeros sometimes.
    def spell(fields: list[int]) -> str:
        if draw(st.booleans()):
            while len(fields) > 1 and fields[-1] == 0:
                fields = fields[:-1]
        return ",".join(map(str, fields))
    return inbound, outbound, " ".join(f"{option}{sep}{spell(fields)}" for option, fields in parts)


@given(command_lines())
def test_text_read_write_read(case):
    inbound, outbound, text = case
    doc = domiftune.read(text)
    written = domiftune.write(doc)
    assert domiftune.read(written) == doc

    def canonical(fields: list[int], width: int) -> str:
        if not any(fields):
            return "0"
        fields = (fields + [0] * width)[:width]
        return ",".join(map(str, fields if width == 3 or fields[3] else fields[:3]))
    assert written == f"--inbound {canonical(inbound, 4)} --outbound {canonical(outbound, 3)}\n"


def model_direction(fields: list[int]) -> DirectionQos:
    fields = fields + [0] * (4 - len(fields))
    average, peak, burst, floor = fields
    limit = BandwidthLimit(average * 8000, peak * 8000 or None, burst * 1024 or None) if average else None
    return DirectionQos(bandwidth=limit, min_bps=floor * 8000 or None)


@given(direction_fields(True), direction_fields(False))
def test_model_write_read(inbound, outbound):
    qos = NetworkQos(ingress=model_direction(inbound), egress=model_direction(outbound))
    doc = QosDocument(network=None if qos.is_empty else qos)
    assert replace(domiftune.read(domiftune.write(doc)), notes=()) == doc
    args = parse_args(domiftune.write(doc))
    assert (args.inbound is CLEAR) == qos.ingress.is_empty
    assert isinstance(args, DomiftuneArgs)
