"""The values vmqos writes into cgroup files and reads back from them (pure: no I/O).

cgroup v1 and v2 name the same limits differently:

    CPU weight   v1 cpu.shares (2..262144, default 1024)   v2 cpu.weight (1..10000, default 100)
    CPU cap      v1 cpu.cfs_quota_us (-1 = none) and cpu.cfs_period_us   v2 cpu.max "QUOTA|max PERIOD"
    disk         v1 blkio.throttle.{read,write}_{bps,iops}_device "MAJ:MIN N" (N = 0 clears)
                 v2 io.max "MAJ:MIN rbps=N wbps=N riops=N wiops=N" (max = none)
    usage        v1 cpuacct.usage (ns), cpu.stat (nr_throttled, throttled_time ns),
                 blkio.throttle.io_service_bytes / io_serviced
                 v2 cpu.stat (usage_usec, nr_throttled, throttled_usec), io.stat

Shares become a v2 weight with the OCI (runc) conversion, 1024 -> 100 (`vmqos.core.model.cpu`);
libvirt instead writes shares raw into cpu.weight, which is Nova LP#1978489.

Disk throttling in the kernel limits bytes and I/Os per second for reads and for writes, per
device. QEMU's throttling, which libvirt `<iotune>` and Cinder front-end specs describe, can do
more: a total of reads and writes, bursts (`*_max`, `*_max_length`), a size that counts as one
I/O (`size_iops_sec`) and groups of disks sharing one budget (`group_name`). Those keys apply to
VMs only; `unsupported_keys` says which keys a mechanism cannot enforce and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from vmqos.core.errors import InvalidValue, UnsupportedError
from vmqos.core.model.cpu import (
    SHARES_DEFAULT,
    WEIGHT_DEFAULT,
    CpuQos,
    weight_to_shares,
)
from vmqos.core.model.disk import DiskQos

V1, V2 = "v1", "v2"
DEFAULT_PERIOD_US = 100_000

# Roles: what vmqos needs from a cgroup, whichever controller provides it on a host.
CPU, CPUACCT, IO = "cpu", "cpuacct", "io"
ROLES = (CPU, CPUACCT, IO)
V1_CONTROLLER = {CPU: "cpu", CPUACCT: "cpuacct", IO: "blkio"}
V2_CONTROLLER = {CPU: "cpu", CPUACCT: "cpu", IO: "io"}  # v2's cpu.stat exists in every group

CPU_V1_FILES = ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us")
CPU_V2_FILES = ("cpu.weight", "cpu.max")

# The disk keys the kernel enforces, with their v1 file and v2 io.max key.
CGROUP_DISK_KEYS = ("read_bytes_sec", "write_bytes_sec", "read_iops_sec", "write_iops_sec")
BLKIO_FILES = {
    "read_bytes_sec": "blkio.throttle.read_bps_device",
    "write_bytes_sec": "blkio.throttle.write_bps_device",
    "read_iops_sec": "blkio.throttle.read_iops_device",
    "write_iops_sec": "blkio.throttle.write_iops_device",
}
IO_MAX_KEYS = {"read_bytes_sec": "rbps", "write_bytes_sec": "wbps", "read_iops_sec": "riops",
               "write_iops_sec": "wiops"}
U64_MAX = 2**64 - 1

DevNo = tuple[int, int]


def devno_text(devno: DevNo) -> str:
    return f"{devno[0]}:{devno[1]}"


def parse_devno(text: str) -> DevNo:
    major, sep, minor = text.strip().partition(":")
    if not sep or not major.isdigit() or not minor.isdigit():
        raise InvalidValue("device", text, "expected MAJOR:MINOR such as 7:0")
    return int(major), int(minor)


# ------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Hierarchy:
    """Where one role lives on a host: the mount of its v1 hierarchy or of the unified v2 tree."""

    version: str
    mount: str
    controller: str  # v1: the mounted controller (cpu, cpuacct, blkio); v2: cpu or io

    @property
    def is_v2(self) -> bool:
        return self.version == V2


@dataclass(frozen=True)
class CgroupLayout:
    """Which hierarchy holds each role (cpu, cpuacct, io); a role missing here is not available."""

    roles: dict[str, Hierarchy] = field(default_factory=dict)
    v2_mount: str | None = None

    def hierarchy(self, role: str) -> Hierarchy | None:
        return self.roles.get(role)

    def mounts(self, roles: Iterable[str] = ROLES) -> list[Hierarchy]:
        """The distinct hierarchies a group of these roles lives in (a task is placed in each)."""
        seen: dict[str, Hierarchy] = {}
        for role in roles:
            h = self.roles.get(role)
            if h is not None and h.mount not in seen:
                seen[h.mount] = h
        return list(seen.values())

    def describe(self) -> dict[str, str]:
        return {role: f"cgroup {h.version} ({h.controller} at {h.mount})" for role, h in self.roles.items()}


def detect_layout(mounts: str, v2_controllers: str | None) -> CgroupLayout:
    """The layout from /proc/mounts and the unified root's cgroup.controllers (None: not readable).

    A controller mounted as a v1 hierarchy is v1's, even when the unified tree exists (hybrid
    hosts, like ours: v1 holds cpu, cpuacct and blkio, v2 only hugetlb). Otherwise a controller
    listed in the unified root's cgroup.controllers is v2's. v2 usage (cpu.stat) needs no
    controller, so on a v2 host cpuacct is always available.
    """
    v1: dict[str, str] = {}
    v2_mount = None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        _, mount, fstype, options = parts[:4]
        mount = mount.replace("\\040", " ")
        if fstype == "cgroup2" and v2_mount is None:
            v2_mount = mount
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in ("cpu", "cpuacct", "blkio") and option not in v1:
                    v1[option] = mount
    available = set((v2_controllers or "").split()) if v2_mount else set()
    roles: dict[str, Hierarchy] = {}
    for role in ROLES:
        if V1_CONTROLLER[role] in v1:
            roles[role] = Hierarchy(V1, v1[V1_CONTROLLER[role]], V1_CONTROLLER[role])
        elif v2_mount and (V2_CONTROLLER[role] in available or role == CPUACCT):
            roles[role] = Hierarchy(V2, v2_mount, V2_CONTROLLER[role])
    return CgroupLayout(roles, v2_mount)


# ---------------------------------------------------------------------------------------------- CPU


def cpu_files(cpu: CpuQos, version: str) -> dict[str, str]:
    """The files and values that put `cpu` on a group, in the order to write them; unset = the default."""
    period = cpu.period_us or DEFAULT_PERIOD_US
    if version == V1:
        return {"cpu.shares": str(cpu.shares or SHARES_DEFAULT), "cpu.cfs_period_us": str(period),
                "cpu.cfs_quota_us": str(cpu.quota_us if cpu.quota_us is not None else -1)}
    weight = cpu.weight if cpu.shares is not None else WEIGHT_DEFAULT
    quota = str(cpu.quota_us) if cpu.quota_us is not None else "max"
    return {"cpu.weight": str(weight), "cpu.max": f"{quota} {period}"}


@dataclass(frozen=True)
class CpuReadback:
    """A group's CPU values as the kernel holds them."""

    version: str
    shares: int | None = None  # v1 cpu.shares
    weight: int | None = None  # v2 cpu.weight
    quota_us: int | None = None  # None: no cap
    period_us: int = DEFAULT_PERIOD_US

    def qos(self) -> CpuQos:
        """As the model states it; the kernel's defaults (1024 shares, weight 100, 100 ms period) read as unset."""
        if self.version == V1:
            shares = None if self.shares in (None, SHARES_DEFAULT) else self.shares
        else:
            shares = None if self.weight in (None, WEIGHT_DEFAULT) else weight_to_shares(self.weight)
        period = None if self.period_us == DEFAULT_PERIOD_US and self.quota_us is None else self.period_us
        return CpuQos(shares=shares, period_us=period, quota_us=self.quota_us)

    @property
    def cpus(self) -> float | None:
        return None if self.quota_us is None else self.quota_us / self.period_us

    def as_json(self) -> dict[str, object]:
        return {"version": self.version, "shares": self.shares, "weight": self.weight, "quota_us": self.quota_us,
                "period_us": self.period_us, "cpus": self.cpus}


def parse_cpu(values: dict[str, str], version: str) -> CpuReadback:
    """The read-back of the files `cpu_files` writes (their contents as read)."""
    if version == V1:
        quota = int(values["cpu.cfs_quota_us"])
        return CpuReadback(V1, shares=int(values["cpu.shares"]), quota_us=None if quota < 0 else quota,
                           period_us=int(values["cpu.cfs_period_us"]))
    quota_text, _, period_text = values["cpu.max"].strip().partition(" ")
    return CpuReadback(V2, weight=int(values["cpu.weight"]),
                       quota_us=None if quota_text == "max" else int(quota_text),
                       period_us=int(period_text or DEFAULT_PERIOD_US))


def same_value(file: str, wanted: str, read: str) -> bool:
    """Whether the kernel kept what was written (it clamps v1 cpu.shares silently, e.g. 1 -> 2)."""
    return wanted.split() == read.split()


# --------------------------------------------------------------------------------------------- disk

_QEMU_ONLY = {
    "total": "the kernel throttles reads and writes separately and has no total of both; give read_{kind}_sec "
             "and write_{kind}_sec instead (e.g. half each)",
    "max": "bursts (*_max, *_max_length) are QEMU's: the kernel's throttle has no burst bucket",
    "size_iops_sec": "size_iops_sec (the I/O size that counts as one operation) is QEMU's: the kernel counts every "
                     "request as one I/O",
    "group_name": "throttle groups (group_name) are QEMU's: the kernel limits each device of a group on its own",
}


def unsupported_keys(disk: DiskQos) -> dict[str, str]:
    """The keys of `disk` that cgroup throttling cannot enforce, each with the reason (empty: all fine)."""
    out: dict[str, str] = {}
    for key, _ in disk.items().items():
        if key in CGROUP_DISK_KEYS:
            continue
        if key == "group_name":
            out[key] = _QEMU_ONLY["group_name"]
        elif key == "size_iops_sec":
            out[key] = _QEMU_ONLY["size_iops_sec"]
        elif "_max" in key:
            out[key] = _QEMU_ONLY["max"]
        elif key.startswith("total_"):
            kind = "bytes" if "_bytes_" in key else "iops"
            out[key] = _QEMU_ONLY["total"].format(kind=kind)
    return out


def check_cgroup_disk(disk: DiskQos, where: str) -> None:
    """Refuse keys only QEMU enforces, all of them in one message, before anything is written."""
    bad = unsupported_keys(disk)
    if bad:
        reasons = "; ".join(f"{key}: {why}" for key, why in bad.items())
        raise UnsupportedError(
            f"{where}: this instance is not a VM, so its disks are throttled by the kernel (cgroup blkio/io), which "
            f"enforces only {', '.join(CGROUP_DISK_KEYS)}. {reasons}. Remove these keys (set them to 0), or give "
            "the disk to a VM (`vmqos vm set`), where QEMU enforces them")


def disk_files(devno: DevNo, disk: DiskQos, version: str) -> dict[str, str]:
    """The files and values that put `disk` on device `devno` of a group; unset keys clear their limit."""
    dev = devno_text(devno)
    if version == V1:
        return {BLKIO_FILES[key]: f"{dev} {getattr(disk, key) or 0}" for key in CGROUP_DISK_KEYS}
    parts = [f"{IO_MAX_KEYS[key]}={getattr(disk, key) or 'max'}" for key in CGROUP_DISK_KEYS]
    return {"io.max": f"{dev} {' '.join(parts)}"}


def disk_clear_files(devno: DevNo, version: str) -> dict[str, str]:
    return disk_files(devno, DiskQos(), version)


def parse_blkio_device_file(text: str) -> dict[DevNo, int]:
    """`7:0 1048576` lines of a v1 blkio.throttle.*_device file."""
    out: dict[DevNo, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and ":" in parts[0]:
            out[parse_devno(parts[0])] = int(parts[1])
    return out


def parse_io_max(text: str) -> dict[DevNo, dict[str, int]]:
    """v2 io.max: per device, the keys with a limit (`max` is no limit and is left out)."""
    out: dict[DevNo, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        limits = {}
        for item in parts[1:]:
            key, _, value = item.partition("=")
            if value and value != "max":
                limits[key] = int(value)
        out[parse_devno(parts[0])] = limits
    return out


def disks_from_files(files: dict[str, str], version: str) -> dict[DevNo, DiskQos]:
    """Every device a group limits, from the contents of its blkio/io.max files."""
    values: dict[DevNo, dict[str, int]] = {}
    if version == V1:
        for key, name in BLKIO_FILES.items():
            for devno, value in parse_blkio_device_file(files.get(name, "")).items():
                if value:
                    values.setdefault(devno, {})[key] = value
    else:
        names = {v: k for k, v in IO_MAX_KEYS.items()}
        for devno, limits in parse_io_max(files.get("io.max", "")).items():
            found = {names[k]: v for k, v in limits.items() if k in names and v < U64_MAX}
            if found:
                values[devno] = found
    return {devno: DiskQos.from_items(v) for devno, v in values.items()}


# -------------------------------------------------------------------------------------------- usage


def parse_keyed(text: str) -> dict[str, int]:
    """`key value` lines (cpu.stat) as a dict of integers."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_blkio_stat(text: str) -> dict[DevNo, dict[str, int]]:
    """v1 blkio.throttle.io_service_bytes / io_serviced: `7:0 Read 123` lines -> {devno: {read, write}}."""
    out: dict[DevNo, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0] and parts[1] in ("Read", "Write"):
            out.setdefault(parse_devno(parts[0]), {})[parts[1].lower()] = int(parts[2])
    return out


def parse_io_stat(text: str) -> dict[DevNo, dict[str, int]]:
    """v2 io.stat: `7:0 rbytes=1 wbytes=2 rios=3 wios=4 ...`."""
    out: dict[DevNo, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and ":" in parts[0]:
            out[parse_devno(parts[0])] = {k: int(v) for k, _, v in (p.partition("=") for p in parts[1:])
                                          if v.isdigit()}
    return out


@dataclass(frozen=True)
class Usage:
    """What a group used: CPU time, CPU throttling, bytes and I/Os per device."""

    cpu_ns: int | None = None
    nr_periods: int | None = None
    nr_throttled: int | None = None
    throttled_ns: int | None = None
    io: dict[DevNo, dict[str, int]] = field(default_factory=dict)  # read_bytes, write_bytes, read_ios, write_ios

    def as_json(self) -> dict[str, object]:
        return {"cpu_seconds": None if self.cpu_ns is None else self.cpu_ns / 1e9, "cpu_ns": self.cpu_ns,
                "nr_periods": self.nr_periods, "nr_throttled": self.nr_throttled,
                "throttled_seconds": None if self.throttled_ns is None else self.throttled_ns / 1e9,
                "io": {devno_text(d): v for d, v in self.io.items()}}


def usage_v1(cpuacct_usage: str | None, cpu_stat: str | None, service_bytes: str | None,
             serviced: str | None) -> Usage:
    stat = parse_keyed(cpu_stat or "")
    io: dict[DevNo, dict[str, int]] = {}
    for text, unit in ((service_bytes, "bytes"), (serviced, "ios")):
        for devno, values in parse_blkio_stat(text or "").items():
            for way, value in values.items():
                io.setdefault(devno, {})[f"{way}_{unit}"] = value
    return Usage(cpu_ns=int(cpuacct_usage) if cpuacct_usage and cpuacct_usage.strip().isdigit() else None,
                 nr_periods=stat.get("nr_periods"), nr_throttled=stat.get("nr_throttled"),
                 throttled_ns=stat.get("throttled_time"), io=io)


def usage_v2(cpu_stat: str | None, io_stat: str | None) -> Usage:
    stat = parse_keyed(cpu_stat or "")
    names = {"rbytes": "read_bytes", "wbytes": "write_bytes", "rios": "read_ios", "wios": "write_ios"}
    io = {devno: {names[k]: v for k, v in values.items() if k in names}
          for devno, values in parse_io_stat(io_stat or "").items()}
    usec = stat.get("usage_usec")
    throttled = stat.get("throttled_usec")
    return Usage(cpu_ns=None if usec is None else usec * 1000, nr_periods=stat.get("nr_periods"),
                 nr_throttled=stat.get("nr_throttled"), throttled_ns=None if throttled is None else throttled * 1000,
                 io=io)

