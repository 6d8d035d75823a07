"""Fidelity to the peers' own rules (issue 13, items 9, 11, 13, 14): what QEMU, libvirt, the kernel
and Cinder refuse is refused here too, with a message that names the field and the fix."""

import json

import pytest

from vmqos.core.errors import ConflictError, InvalidValue
from vmqos.core.formats import cinder
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import THROTTLE_VALUE_MAX, DiskQos


def _spec(specs: dict, consumer: str = "front-end", size: int | None = None) -> str:
    doc: dict = {"qos_specs": {"name": "t", "consumer": consumer, "specs": specs}}
    if size is not None:
        doc["volume"] = {"size": size}
    return json.dumps(doc)


def test_cinder_size_iops_without_an_iops_limit_is_refused_as_qemu_refuses_it():
    with pytest.raises(ConflictError, match="iops size requires an iops value"):
        cinder.read(_spec({"size_iops_sec": "4096", "total_bytes_sec": "1048576"}))
    doc = cinder.read(_spec({"size_iops_sec": "4096", "read_iops_sec": "100"}))
    assert doc.disk is not None and doc.disk.size_iops_sec == 4096


def test_cpu_quota_stops_where_the_kernel_and_libvirt_stop():
    assert CpuQos(quota_us=2**44 - 1).quota_us == 2**44 - 1
    with pytest.raises(InvalidValue, match="17592186044415"):
        CpuQos(quota_us=2**44)


@pytest.mark.parametrize("key", ["total_bytes_sec", "read_iops_sec", "write_bytes_sec_max", "size_iops_sec"])
def test_disk_values_stop_at_qemus_maximum(key):
    base = {"read_iops_sec": 1} if key == "size_iops_sec" else {}
    if key.endswith("_max"):
        base[key[:-4]] = THROTTLE_VALUE_MAX
    assert DiskQos.from_items({**base, key: THROTTLE_VALUE_MAX}).items()[key] == THROTTLE_VALUE_MAX
    with pytest.raises(InvalidValue, match=r"10\^15"):
        DiskQos.from_items({**base, key: THROTTLE_VALUE_MAX + 1})


def test_cinder_per_gb_values_beyond_qemus_range_are_refused_not_produced():
    with pytest.raises(InvalidValue, match="total_bytes_sec"):
        cinder.read(_spec({"total_bytes_sec_per_gb": str(2**64 // 10)}, size=100))


@pytest.mark.parametrize("consumer", ["Front-End", "FRONT-END", " front-end", "Both"])
def test_cinder_consumer_is_matched_exactly_as_cinder_does(consumer):
    with pytest.raises(InvalidValue, match="lower case"):
        cinder.read(_spec({"total_bytes_sec": "1000"}, consumer=consumer))


def test_per_gb_message_names_the_real_option():
    with pytest.raises(InvalidValue) as err:
        cinder.read(_spec({"total_bytes_sec_per_gb": "1000"}))
    assert "--size-gb" not in str(err.value) and "--size" in str(err.value)
