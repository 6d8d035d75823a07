"""cgroup v1 and v2 file systems: create and remove groups, place tasks, write limits, read them back.

Which hierarchy holds each role (cpu limits, cpu usage, disk limits) is detected per host
(`vmqos.core.plan.cgroup_values.detect_layout`); a group is the same relative path in each hierarchy it
needs (on cgroup v1, cpu and cpuacct are often separate hierarchies: a task is placed in both).

Every change of a group's limits is all or nothing: the old value of each file is read before it
is written, every written value is read back (the kernel clamps some silently), and on any
failure the files already written are restored in reverse order before the error is raised.
vmqos only ever writes inside the groups it is asked to manage, never into a hierarchy's root.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time
from dataclasses import dataclass
from typing import Iterable

from vmqos.core.errors import InvalidValue, KernelError, NotFound, UnsupportedError
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.undo import UndoLog
from vmqos.drivers.privileges import CAP_DAC_OVERRIDE, refused
from vmqos.core.plan.cgroup_values import (
    CPU,
    CPU_V1_FILES,
    CPU_V2_FILES,
    CPUACCT,
    IO,
    ROLES,
    V1,
    CgroupLayout,
    CpuReadback,
    DevNo,
    Hierarchy,
    Usage,
    detect_layout,
    devno_text,
    disk_clear_files,
    disk_files,
    disks_from_files,
    parse_blkio_device_file,
    parse_cpu,
    parse_devno,
    parse_io_max,
    same_value,
    usage_v1,
    usage_v2,
)

PARENT = "vmqos"  # every group vmqos creates itself lives under this parent


def host_layout(mounts_file: str = "/proc/mounts") -> CgroupLayout:
    """The running host's layout."""
    with open(mounts_file) as f:
        mounts = f.read()
    layout = detect_layout(mounts, None)
    controllers = None
    if layout.v2_mount:
        try:
            with open(os.path.join(layout.v2_mount, "cgroup.controllers")) as f:
                controllers = f.read()
        except OSError:
            controllers = None
    return detect_layout(mounts, controllers)


def check_group_path(path: str) -> str:
    parts = path.strip("/").split("/")
    if not path.strip("/") or any(p in ("", ".", "..") or p.startswith("cgroup.") for p in parts):
        raise InvalidValue("cgroup", path, "a cgroup is a relative path such as vmqos/lab-vm1 (not the root, "
                                           "no '..')")
    return "/".join(parts)


def block_device(name: str) -> DevNo:
    """MAJOR:MINOR of a block device given as /dev/X, X, or MAJOR:MINOR; refuses partitions and non-devices."""
    if ":" in name:
        devno = parse_devno(name)
        sysfs = f"/sys/dev/block/{devno_text(devno)}"
        if not os.path.exists(sysfs):
            raise NotFound(f"no block device {devno_text(devno)} on this host (`lsblk` lists them)")
    else:
        path = name if name.startswith("/") else f"/dev/{name}"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound(f"no block device {path} (`lsblk` lists the host's block devices; a loop device comes "
                           "from `losetup -f --show FILE`)") from None
        if not stat.S_ISBLK(st.st_mode):
            raise InvalidValue("device", name, "not a block device; name one such as /dev/loop0, sda or 7:0")
        devno = (os.major(st.st_rdev), os.minor(st.st_rdev))
        sysfs = f"/sys/dev/block/{devno_text(devno)}"
    if os.path.exists(os.path.join(sysfs, "partition")):
        raise InvalidValue("device", name, "a partition: the kernel throttles whole disks; name the disk it is on")
    return devno


def device_name(devno: DevNo) -> str:
    """The kernel's name of a block device (loop0), or MAJ:MIN when it is gone."""
    try:
        return os.path.basename(os.readlink(f"/sys/dev/block/{devno_text(devno)}"))
    except OSError:
        return devno_text(devno)


def _hint(file: str, err: int) -> str:
    if file.startswith("blkio.") or file == "io.max":
        return "the device must exist and be a whole disk"
    if file in ("cpu.cfs_quota_us", "cpu.max"):
        return "the kernel refuses a quota below 1 ms, or above a parent group's own quota"
    if err == errno.EINVAL:
        return "the value is out of the kernel's range"
    return "check that the group exists and that vmqos runs as root"


def _write_undoable(tx: UndoLog, path: str, value: str, restore: str) -> None:
    """Write `value`, and record how to put `restore` back if a later write of the change fails."""
    _write(path, value)
    tx.add("", lambda: _write(path, restore))  # _write's error names the file


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        file = os.path.basename(path)
        denied = refused(f"writing {path}", exc.errno, CAP_DAC_OVERRIDE)
        if denied is not None:
            raise denied from None
        raise KernelError(f"{path}: the kernel refused {value!r}: {exc.strerror or exc} ({_hint(file, exc.errno or 0)})",
                          exc.errno) from None


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist: the group is missing, or this kernel lacks the file") from None
    except OSError as exc:
        raise KernelError(f"reading {path} failed: {exc.strerror or exc}", exc.errno) from None


@dataclass(frozen=True)
class Group:
    """One group: the same relative `path` in every hierarchy of `layout` that holds one of `roles`."""

    layout: CgroupLayout
    path: str
    roles: tuple[str, ...] = ROLES

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_group_path(self.path))

    # -- where -----------------------------------------------------------------------------------

    def hierarchy(self, role: str) -> Hierarchy:
        h = self.layout.hierarchy(role)
        if h is None or role not in self.roles:
            what = {CPU: "CPU limits (cpu controller)", CPUACCT: "CPU usage (cpuacct)", IO: "disk limits (blkio/io)"}
            raise UnsupportedError(f"this host has no cgroup hierarchy for {what[role]}: mount the controller "
                                   "(cgroup v1) or enable it in the unified tree (cgroup v2)")
        return h

    def dir(self, role: str) -> str:
        return os.path.join(self.hierarchy(role).mount, self.path)

    def file(self, role: str, name: str) -> str:
        return os.path.join(self.dir(role), name)

    def mounts(self) -> list[Hierarchy]:
        return self.layout.mounts(self.roles)

    def dirs(self) -> list[str]:
        return [os.path.join(h.mount, self.path) for h in self.mounts()]

    def exists(self) -> bool:
        return bool(self.mounts()) and all(os.path.isdir(d) for d in self.dirs())

    def describe(self) -> dict[str, str]:
        return {role: self.dir(role) for role in self.roles if self.layout.hierarchy(role) is not None}

    # -- lifecycle -------------------------------------------------------------------------------

    def create(self) -> None:
        """Create the group in each hierarchy (and its parents); on cgroup v2 enable cpu/io for it."""
        if not self.mounts():
            raise UnsupportedError("this host has no cgroup hierarchy for cpu, cpuacct or blkio/io")
        for h in self.mounts():
            if h.is_v2:
                self._enable_v2(h)
            target = os.path.join(h.mount, self.path)
            for attempt in range(20):  # another process may remove an empty parent meanwhile
                try:
                    os.makedirs(target, exist_ok=True)
                    break
                except FileNotFoundError:
                    time.sleep(0.01 * (attempt + 1))
                except OSError as exc:
                    denied = refused(f"creating cgroup {target}", exc.errno, CAP_DAC_OVERRIDE)
                    raise denied or KernelError(f"cannot create cgroup {target}: {exc.strerror or exc}",
                                                exc.errno) from None

    def _enable_v2(self, h: Hierarchy) -> None:
        """Each ancestor's cgroup.subtree_control must list the controllers the group uses."""
        wanted = [c for role, c in (("cpu", "cpu"), ("io", "io")) if role in self.roles
                  and (self.layout.hierarchy(role) or h).mount == h.mount
                  and (self.layout.hierarchy(role) or h).is_v2]
        if not wanted:
            return
        parts = self.path.split("/")
        for depth in range(len(parts)):
            parent = os.path.join(h.mount, *parts[:depth])
            os.makedirs(parent, exist_ok=True)
            control = os.path.join(parent, "cgroup.subtree_control")
            have = set(_read(control).split()) if os.path.exists(control) else set()
            missing = [c for c in wanted if c not in have]
            if missing:
                _write(control, " ".join(f"+{c}" for c in missing))

    def add(self, pid: int) -> None:
        """Move a process (all its threads) into the group in every hierarchy."""
        for d in self.dirs():
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def procs(self) -> set[int]:
        pids: set[int] = set()
        for d in self.dirs():
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids.update(int(p) for p in f.read().split())
            except FileNotFoundError:
                continue
        return pids

    def remove(self, *, kill: bool = True, timeout: float = 5.0) -> bool:
        """Kill the group's processes (never the caller), then remove it; False when it did not exist."""
        existing = [d for d in self.dirs() if os.path.isdir(d)]
        if not existing:
            return False
        deadline = time.monotonic() + timeout
        while kill:
            pids = self.procs() - {os.getpid()}
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise KernelError(f"cgroup {self.path}: processes {sorted(pids)} did not exit within {timeout:g} s")
            time.sleep(0.02)
        for d in existing:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.02)
                        continue
                    raise KernelError(f"cannot remove cgroup {d}: {exc.strerror or exc} (it still has tasks or "
                                      "child groups)", exc.errno) from None
        return True

    # -- CPU -------------------------------------------------------------------------------------

    def read_cpu(self) -> CpuReadback:
        h = self.hierarchy(CPU)
        names = CPU_V1_FILES if h.version == V1 else CPU_V2_FILES
        return parse_cpu({n: _read(self.file(CPU, n)) for n in names}, h.version)

    def _cpu_writes(self, cpu: CpuQos, tx: UndoLog) -> None:
        from vmqos.core.plan.cgroup_values import cpu_files

        h = self.hierarchy(CPU)
        wanted = cpu_files(cpu, h.version)
        old = {name: _read(self.file(CPU, name)).strip() for name in wanted}
        order = list(wanted)  # v1: shares, period, quota; v2: weight, max
        for name in order:
            if old[name].split() != wanted[name].split():
                _write_undoable(tx, self.file(CPU, name), wanted[name], old[name])
        for name, value in wanted.items():
            got = _read(self.file(CPU, name))
            if not same_value(name, value, got):
                raise KernelError(f"{self.file(CPU, name)}: wrote {value!r}, the kernel kept {got.strip()!r} "
                                  "(out of its range); use a value the kernel accepts")

    # -- disks -----------------------------------------------------------------------------------

    def _disk_file_text(self, names: Iterable[str]) -> dict[str, str]:
        return {n: _read(self.file(IO, n)) if os.path.exists(self.file(IO, n)) else "" for n in names}

    def read_disks(self) -> dict[DevNo, DiskQos]:
        h = self.hierarchy(IO)
        from vmqos.core.plan.cgroup_values import BLKIO_FILES

        names = BLKIO_FILES.values() if h.version == V1 else ["io.max"]
        return disks_from_files(self._disk_file_text(names), h.version)

    def _disk_writes(self, devno: DevNo, disk: DiskQos, tx: UndoLog) -> None:
        h = self.hierarchy(IO)
        wanted = disk_files(devno, disk, h.version)
        clear = disk_clear_files(devno, h.version)
        for name, value in wanted.items():
            path = self.file(IO, name)
            text = _read(path) if os.path.exists(path) else ""
            if h.version == V1:
                before = parse_blkio_device_file(text).get(devno, 0)
                restore = f"{devno_text(devno)} {before}"
                if before == int(value.split()[1]):
                    continue
            else:
                line = next((ln for ln in text.splitlines() if ln.split()[:1] == [devno_text(devno)]), None)
                restore = line or clear[name]
                if parse_io_max(line or "").get(devno, {}) == parse_io_max(value).get(devno, {}):
                    continue
            _write_undoable(tx, path, value, restore)
        got = self.read_disks().get(devno, DiskQos())
        if got != disk:
            raise KernelError(f"cgroup {self.path}: device {devno_text(devno)} reads back {got.items()} after "
                              f"writing {disk.items()}")

    # -- all at once -----------------------------------------------------------------------------

    def apply(self, cpu: CpuQos | None, disks: dict[DevNo, DiskQos] | None) -> int:
        """Make the group's CPU (None: leave alone) and disk limits (None: leave alone) exactly these.

        Devices limited now but absent from `disks` are cleared. All or nothing: on a failure every
        file written is restored and the error raised. Returns the number of files written.
        """
        tx = UndoLog()
        try:
            if cpu is not None:
                self._cpu_writes(cpu, tx)
            if disks is not None:
                current = self.read_disks()
                for devno in sorted(set(current) | set(disks)):
                    self._disk_writes(devno, disks.get(devno, DiskQos()), tx)
        except (KernelError, NotFound) as exc:
            problems = tx.rollback()
            suffix = "; the group was restored to its previous limits" if not problems else \
                "; restoring the previous limits failed too: " + "; ".join(problems)
            raise KernelError(f"{exc}{suffix}", getattr(exc, "errno", None)) from None
        return len(tx)

    def usage(self) -> Usage:
        acct, cpu, io = (self.layout.hierarchy(role) for role in (CPUACCT, CPU, IO))

        def maybe(role: str, name: str) -> str | None:
            if self.layout.hierarchy(role) is None:
                return None
            path = os.path.join(self.layout.hierarchy(role).mount, self.path, name)  # type: ignore[union-attr]
            try:
                return _read(path)
            except (NotFound, KernelError):
                return None

        if acct is not None and acct.version == V1:
            return usage_v1(maybe(CPUACCT, "cpuacct.usage"), maybe(CPU, "cpu.stat") if cpu else None,
                            maybe(IO, "blkio.throttle.io_service_bytes") if io else None,
                            maybe(IO, "blkio.throttle.io_serviced") if io else None)
        return usage_v2(maybe(CPUACCT, "cpu.stat"), maybe(IO, "io.stat") if io else None)


def remove_parent_if_empty(layout: CgroupLayout, parent: str = PARENT) -> None:
    """Remove vmqos's parent group where it has no child left (the kernel refuses otherwise)."""
    for h in layout.mounts():
        try:
            os.rmdir(os.path.join(h.mount, parent))
        except OSError:
            pass
