"""Cinder QoS specs: consumers, capacity-based keys computed as Cinder does, dropped keys, round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmqos.core.errors import ConflictError, FormatError, InvalidValue, UnsupportedError
from vmqos.core.formats import cinder, get_format
from vmqos.core.model import (
    DISK_FRONTEND_KEYS,
    BandwidthLimit,
    CpuQos,
    DirectionQos,
    DiskQos,
    NetworkQos,
    QosDocument,
)


def spec(specs: dict, consumer: str | None = "front-end", size: int | None = None, name: str = "gold",
         wrap: bool = True) -> str:
    inner: dict = {"name": name, "specs": specs}
    if consumer is not None:
        inner["consumer"] = consumer
    obj: dict = {"qos_specs": inner} if wrap else inner
    if size is not None:
        obj["volume"] = {"size": size}
    return json.dumps(obj)


def test_registered_format() -> None:
    assert get_format("cinder") is cinder


def test_absolute_front_end_keys_as_strings() -> None:
    doc = cinder.read(spec({"read_iops_sec": "500", "write_iops_sec": "300", "read_iops_sec_max": "1000",
                            "total_bytes_sec": 104857600, "size_iops_sec": "4096"}))
    assert doc.name == "gold"
    assert doc.disk == DiskQos(read_iops_sec=500, write_iops_sec=300, read_iops_sec_max=1000,
                               total_bytes_sec=104_857_600, size_iops_sec=4096)
    assert doc.notes == ()
    assert doc.network is None and doc.cpu is None


# ------------------------------------------------------------------------------------ per-GB keys


def test_per_gb_times_size() -> None:
    doc = cinder.read(spec({"read_iops_sec_per_gb": "20"}, size=50))
    assert doc.disk == DiskQos(read_iops_sec=1000)
    assert doc.notes == ()


def test_per_gb_min_raises_small_volumes() -> None:
    doc = cinder.read(spec({"read_iops_sec_per_gb": "20", "read_iops_sec_per_gb_min": "2000"}, size=50))
    assert doc.disk == DiskQos(read_iops_sec=2000)
    # A large volume is above the minimum: 20 x 500 = 10000.
    assert cinder.read(spec({"read_iops_sec_per_gb": "20", "read_iops_sec_per_gb_min": "2000"}, size=500)).disk \
        == DiskQos(read_iops_sec=10_000)


def test_max_is_consumed_as_cap_with_note() -> None:
    doc = cinder.read(spec({"read_iops_sec_per_gb": "20", "read_iops_sec_max": "1500"}, size=100))
    assert doc.disk == DiskQos(read_iops_sec=1500)  # min(2000, 1500); no read_iops_sec_max burst left
    (note,) = doc.notes
    assert note.field == "read_iops_sec_max" and note.level == "info"
    assert "cap" in note.message and "burst" in note.message


def test_cap_above_value_still_consumed() -> None:
    disk, notes = cinder.compute_frontend({"read_iops_sec_per_gb": 20, "read_iops_sec_max": 1500}, 50)
    assert disk == DiskQos(read_iops_sec=1000)
    assert [n.field for n in notes] == ["read_iops_sec_max"]


def test_max_without_per_gb_stays_a_burst() -> None:
    disk, notes = cinder.compute_frontend({"read_iops_sec": 1000, "read_iops_sec_max": 1500}, 50)
    assert disk == DiskQos(read_iops_sec=1000, read_iops_sec_max=1500)
    assert notes == ()


def test_min_and_cap_together_and_bytes() -> None:
    disk, _ = cinder.compute_frontend({"write_bytes_sec_per_gb": "1048576", "write_bytes_sec_per_gb_min": "10485760",
                                       "write_bytes_sec_max": "52428800"}, 100)
    assert disk == DiskQos(write_bytes_sec=52_428_800)  # min(max(10 MiB, 100 MiB), 50 MiB)


def test_total_per_gb() -> None:
    disk, _ = cinder.compute_frontend({"total_iops_sec_per_gb": 3, "total_bytes_sec_per_gb": 1000}, 7)
    assert disk == DiskQos(total_iops_sec=21, total_bytes_sec=7000)


def test_size_option_overrides_file_and_is_needed_without_volume() -> None:
    text = spec({"read_iops_sec_per_gb": "20"}, size=50)
    assert cinder.read(text, size_gb=10).disk == DiskQos(read_iops_sec=200)
    bare = spec({"read_iops_sec_per_gb": "20"}, wrap=False)
    assert cinder.read(bare, size_gb=3).disk == DiskQos(read_iops_sec=60)
    with pytest.raises(InvalidValue, match="volume size"):
        cinder.read(bare)
    with pytest.raises(InvalidValue, match="size"):
        cinder.compute_frontend({"total_iops_sec_per_gb": 1}, None)


def test_no_size_needed_without_per_gb() -> None:
    assert cinder.read(spec({"read_iops_sec": 5}, wrap=False)).disk == DiskQos(read_iops_sec=5)


def test_per_gb_overrides_absolute_with_warning() -> None:
    disk, notes = cinder.compute_frontend({"read_iops_sec": 100, "read_iops_sec_per_gb": 2}, 10)
    assert disk == DiskQos(read_iops_sec=20)
    assert [(n.field, n.level) for n in notes] == [("read_iops_sec", "warning")]


def test_per_gb_min_alone_is_dropped() -> None:
    disk, notes = cinder.compute_frontend({"read_iops_sec": 100, "read_iops_sec_per_gb_min": 500}, 10)
    assert disk == DiskQos(read_iops_sec=100)
    assert [n.field for n in notes] == ["read_iops_sec_per_gb_min"]


def test_zero_cap_means_no_limit_with_warning() -> None:
    disk, notes = cinder.compute_frontend({"read_iops_sec_per_gb": 20, "read_iops_sec_max": 0}, 10)
    assert disk == DiskQos()
    assert any(n.level == "warning" and "no limit" in n.message for n in notes)


def test_zero_is_unset() -> None:
    assert cinder.compute_frontend({"read_iops_sec": "0", "write_iops_sec": 5}, None)[0] == DiskQos(write_iops_sec=5)


# ------------------------------------------------------------------------------------ dropped keys


def test_dropped_keys_are_warned() -> None:
    disk, notes = cinder.compute_frontend(
        {"read_iops_sec": 100, "read_iops_sec_max": 200, "read_iops_sec_max_length": 60, "group_name": "g1",
         "maxIOPSperGB": "10"}, None)
    assert disk == DiskQos(read_iops_sec=100, read_iops_sec_max=200)
    by_field = {n.field: n for n in notes}
    assert set(by_field) == {"read_iops_sec_max_length", "group_name", "maxIOPSperGB"}
    assert all(n.level == "warning" and "Nova" in n.message and "drop" in n.message for n in notes)


# --------------------------------------------------------------------------------------- consumers


def test_back_end_is_never_applied() -> None:
    doc = cinder.read(spec({"read_iops_sec": "500", "maxIOPS": "9"}, consumer="back-end"))
    assert doc.disk is None
    (note,) = doc.notes
    assert note.level == "warning" and "never applied on the host" in note.message
    assert "front-end or both" in note.message


def test_default_consumer_is_back_end() -> None:
    doc = cinder.read(spec({"read_iops_sec": "500"}, consumer=None))
    assert doc.disk is None and "back-end" in doc.notes[0].message


def test_back_end_needs_no_size_or_valid_values() -> None:
    doc = cinder.read(spec({"iops_per_gb": "x", "read_iops_sec_per_gb": "20"}, consumer="back-end"))
    assert doc.disk is None


def test_both_applies_front_end_keys_with_note() -> None:
    doc = cinder.read(spec({"read_iops_sec_per_gb": "20"}, consumer="both", size=50))
    assert doc.disk == DiskQos(read_iops_sec=1000)
    assert [(n.field, n.level) for n in doc.notes] == [("qos_specs.consumer", "info")]
    assert "back end" in doc.notes[0].message


def test_cli_show_output_with_properties() -> None:
    text = json.dumps({"consumer": "front-end", "id": "a", "name": "cli", "properties": {"read_iops_sec": "7"}})
    assert cinder.read(text).disk == DiskQos(read_iops_sec=7)


# -------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text", ['{"qos_specs": ', "[1]", '{"qos_specs": {"name": "x"}}',
                                  '{"qos_specs": {"specs": []}}', '{"qos_specs": {"specs": {}}, "volume": 5}'])
def test_format_errors(text: str) -> None:
    with pytest.raises(FormatError):
        cinder.read(text)


def test_bad_json_has_line() -> None:
    with pytest.raises(FormatError) as err:
        cinder.read('{\n"qos_specs": {\n"specs": {"a": 1,}}}')
    assert err.value.line == 3


@pytest.mark.parametrize("specs,size", [
    ({"read_iops_sec": "fast"}, None), ({"read_iops_sec": -1}, None), ({"read_iops_sec_per_gb": "1.5"}, 10),
    ({"read_iops_sec_per_gb": "2"}, 0),
])
def test_invalid_values(specs: dict, size: int | None) -> None:
    with pytest.raises(InvalidValue):
        cinder.read(spec(specs, size=size))


def test_invalid_consumer() -> None:
    with pytest.raises(InvalidValue, match="front-end, back-end or both"):
        cinder.read(spec({}, consumer="frontend"))


def test_total_with_read_conflicts() -> None:
    with pytest.raises(ConflictError):
        cinder.read(spec({"total_iops_sec": 100, "read_iops_sec_per_gb": 1}, size=5))


# --------------------------------------------------------------------------------------------- write


def test_write_absolute_strings() -> None:
    doc = QosDocument(name="gold", disk=DiskQos(read_iops_sec=1000, read_iops_sec_max=2000, write_bytes_sec=10))
    obj = json.loads(cinder.write(doc))
    assert obj == {"qos_specs": {"name": "gold", "consumer": "front-end", "specs": {
        "write_bytes_sec": "10", "read_iops_sec": "1000", "read_iops_sec_max": "2000"}}}
    assert cinder.write(doc).startswith('{\n  "qos_specs"')


def test_write_per_gb_result_is_absolute() -> None:
    doc = cinder.read(spec({"read_iops_sec_per_gb": "20", "read_iops_sec_max": "1500"}, size=100))
    assert json.loads(cinder.write(doc))["qos_specs"]["specs"] == {"read_iops_sec": "1500"}


@pytest.mark.parametrize("doc,words", [
    (QosDocument(disk=DiskQos(read_iops_sec=1, read_iops_sec_max=2, read_iops_sec_max_length=5)),
     "read_iops_sec_max_length"),
    (QosDocument(disk=DiskQos(read_iops_sec=1, group_name="g")), "group_name"),
    (QosDocument(disks={"vda": DiskQos(read_iops_sec=1), "vdb": DiskQos(read_iops_sec=2)}), "vda"),
    (QosDocument(disk=DiskQos(read_iops_sec=1),
                 network=NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(1000)))), "network"),
    (QosDocument(cpu=CpuQos(shares=100)), "CPU"),
])
def test_write_unsupported(doc: QosDocument, words: str) -> None:
    with pytest.raises(UnsupportedError, match=words):
        cinder.write(doc)


def test_write_same_disk_everywhere_and_name_option() -> None:
    disk = DiskQos(total_iops_sec=9)
    obj = json.loads(cinder.write(QosDocument(disks={"vda": disk, "vdb": disk}), name="n"))
    assert obj["qos_specs"]["name"] == "n" and obj["qos_specs"]["specs"] == {"total_iops_sec": "9"}


# --------------------------------------------------------------------------------------- properties

OPTIONS = cinder.PER_GB_OPTIONS
value = st.integers(0, 10**9)
size_gb = st.integers(1, 64 * 1024)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OPTIONS), value, st.none() | value, st.none() | value, size_gb, st.booleans())
def test_computed_equals_min_max_formula(option: str, per_gb: int, minimum: int | None, cap: int | None,
                                         size: int, as_strings: bool) -> None:
    specs: dict = {f"{option}_per_gb": per_gb}
    if minimum is not None:
        specs[f"{option}_per_gb_min"] = minimum
    if cap is not None:
        specs[f"{option}_max"] = cap
    if as_strings:
        specs = {k: str(v) for k, v in specs.items()}
    disk, notes = cinder.compute_frontend(specs, size)
    scaled = max(minimum or 0, per_gb * size)
    expected = scaled if cap is None else min(scaled, cap)
    assert getattr(disk, option) == (expected or None)  # 0 is "no limit"
    assert disk.items() == ({option: expected} if expected else {})
    assert any(n.field == f"{option}_max" for n in notes) == (cap is not None)


@st.composite
def frontend_disks(draw: st.DrawFn) -> DiskQos:
    """Any DiskQos that Cinder front-end specs can state: the 13 keys, in combinations libvirt accepts."""
    values: dict[str, int] = {}
    for kind in ("bytes", "iops"):
        scopes = draw(st.sampled_from([("total",), ("read", "write"), ("read",), ("write",), ()]))
        for scope in scopes:
            key = f"{scope}_{kind}_sec"
            if draw(st.booleans()) or len(scopes) == 1:
                values[key] = draw(st.integers(1, 10**12))
                if draw(st.booleans()):
                    values[f"{key}_max"] = values[key] + draw(st.integers(0, 10**12))
    if draw(st.booleans()) and any(k.endswith("_iops_sec") for k in values):  # QEMU needs an IOPS limit
        values["size_iops_sec"] = draw(st.integers(1, 1 << 20))
    return DiskQos(**values)


@settings(max_examples=200, deadline=None)
@given(frontend_disks(), st.sampled_from(["front-end", "both"]))
def test_roundtrip_model_write_read(disk: DiskQos, consumer: str) -> None:
    text = cinder.write(QosDocument(name="rt", disk=disk))
    back = cinder.read(text)
    assert back.disk == disk and back.name == "rt" and back.notes == ()
    specs = json.loads(text)["qos_specs"]["specs"]
    assert set(specs) <= set(DISK_FRONTEND_KEYS) and all(isinstance(v, str) for v in specs.values())
    # Cinder's own document with `both` reads to the same disk.
    assert cinder.read(spec(specs, consumer=consumer)).disk == disk


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(OPTIONS), st.tuples(st.integers(1, 10**6), st.none() | value,
                                                              st.none() | st.integers(1, 10**12)), max_size=6),
       size_gb)
def test_roundtrip_per_gb_read_write_read(per_gb: dict, size: int) -> None:
    specs: dict = {}
    for option, (rate, minimum, cap) in per_gb.items():
        specs[f"{option}_per_gb"] = str(rate)
        if minimum is not None:
            specs[f"{option}_per_gb_min"] = str(minimum)
        if cap is not None:
            specs[f"{option}_max"] = str(cap)
    scopes = {o.split("_")[0] + o[o.index("_"):] for o in per_gb}
    for kind in ("iops", "bytes"):
        if f"total_{kind}_sec" in scopes and (f"read_{kind}_sec" in scopes or f"write_{kind}_sec" in scopes):
            with pytest.raises(ConflictError):
                cinder.read(spec(specs, size=size))
            return
    first = cinder.read(spec(specs, size=size))
    second = cinder.read(cinder.write(first))
    assert second.disk == first.disk
    assert set(second.disk.items()) == set(per_gb)  # every computed value is >= 1 here
