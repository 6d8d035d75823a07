"""libvirt: a domain's interfaces and disks, and its CPU, disk and interface tunables, live or in its XML.

CPU goes through `setSchedulerParametersFlags` (cpu_shares, vcpu_quota, vcpu_period: libvirt
writes them into the domain's cgroups, the quota per vCPU thread as Nova's `<cputune>` means
it), disks through `setBlockIoTune` (QEMU's throttling: every key of `<iotune>`), and, for the
persistent definition only, interfaces through `setInterfaceParameters` (`<bandwidth>`). A live
network limit is never given to libvirt: libvirt's own tc needs sfq, fw and police, which a host
may lack (then it fails half-way, kernel-lab-facts.md §6); vmqos shapes the tap itself.

libvirt-python is an optional dependency (`pip install 'vmqos[libvirt]'`, which `make` does).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import defusedxml.ElementTree as SafeET

from vmqos.core.errors import InvalidValue, KernelError, NotFound, UnsupportedError
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DISK_FRONTEND_KEYS, DISK_LENGTH_KEYS, DiskQos
from vmqos.core.model.network import NetworkQos
from vmqos.core.formats.libvirt_units import network_to_units
from vmqos.core.plan.cgroup_values import CPU
from vmqos.drivers.cgroup import host_layout

DEFAULT_URI = "qemu:///system"
LIVE, CONFIG = 1, 2  # VIR_DOMAIN_AFFECT_LIVE, VIR_DOMAIN_AFFECT_CONFIG


def _module() -> Any:
    try:
        import libvirt
    except ImportError:
        raise UnsupportedError("the libvirt Python binding is missing: install vmqos with its libvirt extra "
                               "(`pip install 'vmqos[libvirt]'`, which `make deps` does; it builds against "
                               "libvirt-dev)") from None
    libvirt.registerErrorHandler(lambda *_: None, None)  # errors become exceptions, not stderr noise
    return libvirt


@dataclass(frozen=True)
class Interface:
    target: str | None  # the host device (tap), None when libvirt has not named one
    mac: str | None
    type: str


@dataclass(frozen=True)
class Disk:
    target: str  # vda
    source: str | None
    device: str  # disk, cdrom


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: str
    persistent: bool
    vcpus: int
    interfaces: tuple[Interface, ...]
    disks: tuple[Disk, ...]
    driver: str  # kvm, qemu, test

    @property
    def running(self) -> bool:
        return self.state == "running"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "uuid": self.uuid, "state": self.state, "persistent": self.persistent,
                "vcpus": self.vcpus, "type": self.driver,
                "interfaces": [i.__dict__ for i in self.interfaces], "disks": [d.__dict__ for d in self.disks]}


_STATES = {0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shut off", 6: "crashed",
           7: "suspended"}


def parse_domain_xml(xml: str) -> tuple[str, int, tuple[Interface, ...], tuple[Disk, ...]]:
    """(type, vcpus, interfaces, disks) of a domain XML (pure)."""
    root = SafeET.fromstring(xml)
    ifaces = []
    for iface in root.findall("devices/interface"):
        target, mac = iface.find("target"), iface.find("mac")
        ifaces.append(Interface(target.get("dev") if target is not None else None,
                                mac.get("address") if mac is not None else None, iface.get("type", "")))
    disks = []
    for disk in root.findall("devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        dev = target.get("dev") if target is not None else None
        if not dev:
            continue
        src = None
        if source is not None:
            src = source.get("file") or source.get("dev") or source.get("name")
        disks.append(Disk(dev, src, disk.get("device", "disk")))
    vcpu = root.findtext("vcpu")
    return root.get("type", ""), int(vcpu) if vcpu and vcpu.strip().isdigit() else 1, tuple(ifaces), tuple(disks)


def cpu_params(cpu: CpuQos) -> dict[str, int]:
    """Scheduler parameters for libvirt; an unset quota is -1 (no cap), unset shares/period are left alone."""
    params: dict[str, int] = {"vcpu_quota": cpu.quota_us if cpu.quota_us is not None else -1}
    if cpu.shares is not None:
        params["cpu_shares"] = cpu.shares
    if cpu.period_us is not None:
        params["vcpu_period"] = cpu.period_us
    return params


def iotune_params(disk: DiskQos, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """`<iotune>` keys for setBlockIoTune so that the disk ends up with exactly these limits: unset rates
    are 0 (no limit); a burst length is sent when set, or as 1 (QEMU's default; 0 is refused) where
    `current` has a longer one to undo."""
    params: dict[str, Any] = {key: getattr(disk, key) or 0 for key in DISK_FRONTEND_KEYS}
    for key in DISK_LENGTH_KEYS:
        if getattr(disk, key):
            params[key] = getattr(disk, key)
        elif current and int(current.get(key) or 0) > 1:
            params[key] = 1
    if disk.group_name:
        params["group_name"] = disk.group_name
    return params


def implicit_group(name: Any) -> bool:
    """QEMU names the throttle group of a disk without one after the device (/machine/peripheral/...)."""
    return not name or str(name).startswith("/machine/")


def disk_from_params(params: dict[str, Any]) -> DiskQos:
    """blockIoTune's answer as DiskQos; lengths of 1 and QEMU's implicit group names read as unset."""
    values: dict[str, Any] = {}
    for key in DISK_FRONTEND_KEYS:
        if params.get(key):
            values[key] = int(params[key])
    for key in DISK_LENGTH_KEYS:
        burst = key.removesuffix("_length")
        if params.get(key) and params.get(burst) and int(params[key]) > 1:
            values[key] = int(params[key])
    if not implicit_group(params.get("group_name")) and values:
        values["group_name"] = params["group_name"]
    return DiskQos.from_items(values)


def interface_params(qos: NetworkQos) -> dict[str, int]:
    """setInterfaceParameters' fields (libvirt units: kB/s and KiB; 0 clears) for `<bandwidth>`."""
    inbound, outbound = network_to_units("libvirt", qos, inbound_floor_ok=True)
    out = {}
    for way, units in (("inbound", inbound), ("outbound", outbound)):
        for attr, value in zip(("average", "peak", "burst", "floor"), units):
            if attr == "floor" and way == "outbound":
                continue
            out[f"{way}.{attr}"] = value
    return out


class Libvirt:
    """One connection to a libvirt URI."""

    def __init__(self, uri: str | None = None) -> None:
        self.lv = _module()
        self.uri = uri or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI
        try:
            self.conn = self.lv.open(self.uri)
        except self.lv.libvirtError as exc:
            hint = " (is libvirtd running? start it with `libvirtd -d`)" if "qemu" in self.uri else ""
            raise KernelError(f"cannot connect to libvirt at {self.uri}: {exc.get_error_message()}{hint}") from None

    def close(self) -> None:
        try:
            self.conn.close()
        except self.lv.libvirtError:
            pass

    def __enter__(self) -> Libvirt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, action: str, exc: Any, fix: str = "") -> KernelError:
        return KernelError(f"libvirt ({self.uri}): {action}: {exc.get_error_message()}" + (f"; {fix}" if fix else ""))

    # -- domains ---------------------------------------------------------------------------------

    def domain(self, name: str) -> Any:
        try:
            return self.conn.lookupByName(name)
        except self.lv.libvirtError:
            names = ", ".join(d.name for d in self.domains()) or "none"
            raise NotFound(f"libvirt ({self.uri}) has no domain {name!r} (domains: {names})") from None

    def info(self, name_or_dom: Any) -> DomainInfo:
        dom = self.domain(name_or_dom) if isinstance(name_or_dom, str) else name_or_dom
        kind, vcpus, ifaces, disks = parse_domain_xml(dom.XMLDesc(0))
        state = _STATES.get(dom.state()[0], "unknown")
        return DomainInfo(dom.name(), dom.UUIDString(), state, bool(dom.isPersistent()), vcpus, ifaces, disks, kind)

    def domains(self) -> list[DomainInfo]:
        try:
            return sorted((self.info(d) for d in self.conn.listAllDomains(0)), key=lambda d: d.name)
        except self.lv.libvirtError as exc:
            raise self._fail("listing domains", exc) from None

    def config_xml(self, name: str) -> str:
        return self.domain(name).XMLDesc(self.lv.VIR_DOMAIN_XML_INACTIVE)

    # -- CPU -------------------------------------------------------------------------------------

    def cpu(self, name: str, flags: int = LIVE) -> dict[str, Any]:
        dom = self.domain(name)
        try:
            return dict(dom.schedulerParametersFlags(flags))
        except self.lv.libvirtError as exc:
            raise self._fail(f"reading the scheduler parameters of {name}", exc,
                             "this driver cannot report them") from None

    def set_cpu(self, name: str, cpu: CpuQos, flags: int) -> dict[str, int]:
        if self.uri.startswith("qemu") or self.uri.startswith("lxc"):
            hierarchy = host_layout().hierarchy(CPU)
            cpu.check_host(cgroup_v2=bool(hierarchy and hierarchy.is_v2), raw_shares_to_weight=True)
        params = cpu_params(cpu)
        try:
            self.domain(name).setSchedulerParametersFlags(params, flags)
        except self.lv.libvirtError as exc:
            raise self._fail(f"setting {params} on {name}", exc,
                             "libvirt's test driver only stubs the scheduler; the qemu driver supports it") from None
        return params

    # -- disks -----------------------------------------------------------------------------------

    def disk(self, name: str, target: str, flags: int = LIVE) -> dict[str, Any]:
        try:
            return dict(self.domain(name).blockIoTune(target, flags))
        except self.lv.libvirtError as exc:
            raise self._fail(f"reading the I/O limits of {name} {target}", exc) from None

    def set_disk(self, name: str, target: str, disk: DiskQos, flags: int) -> dict[str, Any]:
        params = iotune_params(disk, self.disk(name, target, flags))
        try:
            self.domain(name).setBlockIoTune(target, params, flags)
        except self.lv.libvirtError as exc:
            raise self._fail(f"setting the I/O limits of {name} {target}", exc) from None
        return params

    # -- interfaces ------------------------------------------------------------------------------

    def interface(self, name: str, device: str, flags: int = LIVE) -> dict[str, Any]:
        try:
            return dict(self.domain(name).interfaceParameters(device, flags))
        except self.lv.libvirtError as exc:
            raise self._fail(f"reading the bandwidth of {name} {device}", exc) from None

    def set_interface(self, name: str, device: str, qos: NetworkQos, flags: int) -> dict[str, int]:
        """`<bandwidth>` through libvirt; vmqos uses it for the persistent definition (CONFIG) only."""
        params = interface_params(qos)
        try:
            self.domain(name).setInterfaceParameters(device, params, flags)
        except self.lv.libvirtError as exc:
            raise self._fail(f"setting the bandwidth of {name} {device}", exc) from None
        return params

    # -- where the kernel has it -----------------------------------------------------------------

    def qemu_pid(self, name: str) -> int | None:
        """The QEMU process of a running qemu:///system domain (its pidfile), or None."""
        try:
            with open(f"/run/libvirt/qemu/{name}.pid") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None


def cgroup_of(pid: int, controller: str = "cpu") -> str | None:
    """The v1 group path of `pid` in `controller`'s hierarchy (from /proc/PID/cgroup)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(","):
                    return path
    except OSError:
        return None
    return None


def check_flags(info: DomainInfo, live: bool, config: bool) -> int:
    if live and not info.running:
        raise InvalidValue("--live", info.name, f"the domain is {info.state}, not running: use --config to change "
                                                "its definition")
    if config and not info.persistent:
        raise InvalidValue("--config", info.name, "a transient domain has no persistent definition: use --live")
    return (LIVE if live else 0) | (CONFIG if config else 0)


def libvirt_noqueue_only(tap: str) -> bool:
    """Whether the tap's only qdisc is the `noqueue` root libvirt puts on every tap it creates.

    vmqos owns a VM's tap; that qdisc is libvirt's default, not an operator's configuration, so
    replacing it needs no --force (anything else on the tap still does).
    """
    done = subprocess.run(["tc", "-j", "qdisc", "show", "dev", tap], capture_output=True, text=True)
    try:
        qdiscs = json.loads(done.stdout or "[]")
    except ValueError:
        return False
    return len(qdiscs) == 1 and qdiscs[0].get("kind") == "noqueue" and qdiscs[0].get("root") is True


def domain_cgroup_values(pid: int) -> dict[str, Any]:
    """The domain's cpu group as the kernel has it: shares of the domain, quota/period of each vCPU."""
    h = host_layout().hierarchy("cpu")
    path = cgroup_of_pid(pid)
    if h is None or path is None:
        return {}
    base = os.path.join(h.mount, path.lstrip("/"))
    # QEMU's main thread sits in an emulator/ child; the domain's group is its parent.
    if os.path.basename(base) == "emulator":
        base = os.path.dirname(base)
    out: dict[str, Any] = {"path": base}

    def read(p: str) -> str | None:
        try:
            with open(p) as f:
                return f.read().strip()
        except OSError:
            return None

    out["cpu.shares"] = read(os.path.join(base, "cpu.shares")) or read(os.path.join(base, "cpu.weight"))
    vcpus = {}
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if name.startswith("vcpu"):
            vcpus[name] = {"cpu.cfs_quota_us": read(os.path.join(base, name, "cpu.cfs_quota_us")),
                           "cpu.cfs_period_us": read(os.path.join(base, name, "cpu.cfs_period_us")),
                           "cpu.max": read(os.path.join(base, name, "cpu.max"))}
    out["vcpus"] = vcpus
    return out


def cgroup_of_pid(pid: int) -> str | None:
    return cgroup_of(pid, "cpu")
