"""Disk QoS of one disk: QEMU's throttling keys as libvirt `<iotune>` and Cinder front-end specs name them.

Rates are bytes/s and I/O operations per second. `*_max` is a burst ceiling, `*_max_length`
the seconds it may last, `size_iops_sec` the I/O size that counts as one operation, and
`group_name` a throttle group shared by several disks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from vmqos.core.errors import ConflictError, InvalidValue

_BASE = tuple(f"{scope}_{kind}_sec" for kind in ("bytes", "iops") for scope in ("total", "read", "write"))
# The 13 keys that Cinder front-end specs and Nova pass to libvirt <iotune>.
DISK_FRONTEND_KEYS: tuple[str, ...] = _BASE + tuple(f"{key}_max" for key in _BASE) + ("size_iops_sec",)
DISK_LENGTH_KEYS: tuple[str, ...] = tuple(f"{key}_max_length" for key in _BASE)
# Every integer key, in libvirt's order of the 13 first.
DISK_KEYS: tuple[str, ...] = DISK_FRONTEND_KEYS + DISK_LENGTH_KEYS
# QEMU's THROTTLE_VALUE_MAX (util/throttle.c): "bps/iops/max values must be within [0, 1e15]".
THROTTLE_VALUE_MAX = 10**15
_IOPS = tuple(f"{scope}_iops_sec" for scope in ("total", "read", "write"))


@dataclass(frozen=True)
class DiskQos:
    total_bytes_sec: int | None = None
    read_bytes_sec: int | None = None
    write_bytes_sec: int | None = None
    total_iops_sec: int | None = None
    read_iops_sec: int | None = None
    write_iops_sec: int | None = None
    total_bytes_sec_max: int | None = None
    read_bytes_sec_max: int | None = None
    write_bytes_sec_max: int | None = None
    total_iops_sec_max: int | None = None
    read_iops_sec_max: int | None = None
    write_iops_sec_max: int | None = None
    size_iops_sec: int | None = None
    total_bytes_sec_max_length: int | None = None
    read_bytes_sec_max_length: int | None = None
    write_bytes_sec_max_length: int | None = None
    total_iops_sec_max_length: int | None = None
    read_iops_sec_max_length: int | None = None
    write_iops_sec_max_length: int | None = None
    group_name: str | None = None

    def __post_init__(self) -> None:
        for key in DISK_KEYS:
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise InvalidValue(key, value, "disk limits are positive integers; leave a key out for no limit")
            if value is not None and key not in DISK_LENGTH_KEYS and value > THROTTLE_VALUE_MAX:
                raise InvalidValue(key, value, f"QEMU takes rates and sizes up to {THROTTLE_VALUE_MAX} (10^15); "
                                               "leave the key out for no limit")
        if self.group_name is not None and not self.group_name.strip():
            raise InvalidValue("group_name", self.group_name, "a throttle group needs a non-empty name")
        for kind in ("bytes", "iops"):
            for suffix in ("", "_max"):
                total = getattr(self, f"total_{kind}_sec{suffix}")
                split = [k for k in (f"read_{kind}_sec{suffix}", f"write_{kind}_sec{suffix}") if getattr(self, k)]
                if total is not None and split:
                    raise ConflictError(
                        f"total_{kind}_sec{suffix} cannot be combined with {' and '.join(split)} "
                        "(Cinder and libvirt refuse it); keep either the total or the read/write pair"
                    )
        for key in _BASE:
            base, burst, length = getattr(self, key), getattr(self, f"{key}_max"), getattr(self, f"{key}_max_length")
            if burst is not None and base is not None and burst < base:
                raise InvalidValue(f"{key}_max", burst, f"a burst ceiling must be at least {key} ({base})")
            if burst is not None and base is None:
                raise ConflictError(f"{key}_max: a burst ceiling needs {key} set as well (QEMU refuses it alone)")
            if length is not None and burst is None:
                raise ConflictError(f"{key}_max_length: a burst length needs {key}_max set as well")

    def check_qemu(self, where: str) -> None:
        """What QEMU refuses when the limits reach it whole (an attach, a `vm set`): checked on the
        values a disk ends up with, not on an instance's partial override of a flavor's."""
        if self.size_iops_sec is not None and not any(getattr(self, k) for k in _IOPS):
            raise ConflictError(f"{where}: size_iops_sec ({self.size_iops_sec}) needs an IOPS limit as well "
                                "(QEMU: \"iops size requires an iops value to be set\"); add total_iops_sec or "
                                "read_iops_sec/write_iops_sec, or remove size_iops_sec")

    @classmethod
    def from_items(cls, items: Mapping[str, int | str | None]) -> "DiskQos":
        """From values shaped as `items()` returns them (DISK_KEYS and group_name); the constructor
        validates every value, and an unknown key is a TypeError as for any keyword."""
        return cls(**items)  # type: ignore[arg-type]

    def items(self) -> dict[str, int | str]:
        """The keys that are set, in libvirt's order."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def is_empty(self) -> bool:
        return not self.items()


# Every field of DiskQos: the integer keys, then the throttle group's name.
DISK_FIELDS: tuple[str, ...] = DISK_KEYS + ("group_name",)
