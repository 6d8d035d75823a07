"""What `vmqos vm list|show|set` do: QoS of libvirt domains, live and in their definition.

A domain is an instance of the host's own scope (its taps are in the host's namespace), named
after the domain; its disks are keyed by target (vda) and its ports by tap device. CPU and disk
limits are applied through libvirt (QEMU throttles the disks, libvirt writes the domain's
cgroups); network limits through vmqos's own planner on the tap (never libvirt's tc).

Live changes are all or nothing: the CPU and disk values are read before they are changed, and
if a later step fails (another disk, the tap), the earlier ones are set back.
"""

from __future__ import annotations

from typing import Any

from vmqos.core.desired.instances import (
    EffectiveInstance,
    InstanceChange,
    changed_instance,
    effective_instance,
    with_domain,
)
from vmqos.core.errors import InvalidValue, KernelError, NotFound, VmqosError
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.document import Note
from vmqos.core.undo import UndoLog
from vmqos.core.desired.ports import PortChange, changed_port
from vmqos.core.model.network import NetworkQos
from vmqos.drivers.libvirt_driver import (
    CONFIG,
    LIVE,
    DomainInfo,
    Libvirt,
    check_flags,
    disk_from_params,
    domain_cgroup_values,
    implicit_group,
    libvirt_noqueue_only,
)
from vmqos.services.ports import reconcile_ports, show_port
from vmqos.services.results import ApplyReport, LibvirtValues, PortShow, VmKernel, VmReport, VmShow
from vmqos.store import Store

SCOPE = ""  # VMs' taps live in the host's own network namespace


def _apply_libvirt(lv: Libvirt, info: DomainInfo, eff: EffectiveInstance, flags: int, *, cpu: bool, disks: list[str],
                   undo: UndoLog, applied: list[str]) -> None:
    if cpu:
        before = lv.cpu(info.name, LIVE) if flags & LIVE else None
        params = lv.set_cpu(info.name, eff.cpu or CpuQos(), flags)
        applied.append(f"cpu {params}")
        if before is not None:
            keep = {k: v for k, v in before.items() if k in ("cpu_shares", "vcpu_quota", "vcpu_period")}
            undo.add(f"cpu of {info.name}", lambda: lv.domain(info.name).setSchedulerParametersFlags(keep, LIVE))
    for target in disks:
        before = lv.disk(info.name, target, LIVE) if flags & LIVE else None
        lv.set_disk(info.name, target, eff.disks.get(target, DiskQos()), flags)
        applied.append(f"disk {target} {eff.disks.get(target, DiskQos()).items()}")
        if before is not None:
            def restore(t: str = target, b: dict[str, Any] = before) -> None:
                lv.domain(info.name).setBlockIoTune(
                    t, {k: v for k, v in b.items() if k != "group_name" or not implicit_group(v)}, LIVE)

            undo.add(f"disk {target} of {info.name}", restore)


def vm_set(store: Store, connect: str | None, domain: str, change: InstanceChange, *, inbound: str | None = None,
           outbound: str | None = None, interface: str | None = None, live: bool = True,
           config: bool = True, force: bool = False) -> VmReport:
    if not live and not config:
        raise InvalidValue("--live/--config", "neither", "give --live, --config or neither (both)")
    with store.writer(SCOPE), Libvirt(connect) as lv:  # load, libvirt, the tap and save as one writer
        info = lv.info(domain)
        check_flags(info, live, config)
        loaded = store.load(SCOPE)
        state = with_domain(loaded, info)
        for dev in change.disks:
            if dev not in state.instances[domain].disks:
                raise NotFound(f"domain {domain} has no disk {dev} (disks: "
                               f"{', '.join(d.target for d in info.disks) or 'none'})")
        new_state, _ = changed_instance(state, domain, change)
        taps = [i.target for i in info.interfaces if i.target]
        port = None
        if inbound is not None or outbound is not None:
            if interface is None and len(taps) != 1:
                raise InvalidValue("--interface", interface, f"{domain} has the interfaces {', '.join(taps) or 'none'}"
                                                             "; name one")
            port = interface or taps[0]
            if port not in taps:
                raise NotFound(f"domain {domain} has no interface {port} (interfaces: {', '.join(taps) or 'none'})")
            new_state, _ = changed_port(new_state, port, PortChange(inbound=inbound, outbound=outbound))
        eff = effective_instance(new_state, domain, store.volumes(SCOPE), store.volume_types(SCOPE))
        applied: list[str] = []
        notes = list(eff.notes)
        network: ApplyReport | None = None
        disks = sorted(change.disks) if change.disks or change.remove_disks else []
        disks += [d for d in change.remove_disks if d not in disks]
        undo = UndoLog()
        try:
            if live:
                _apply_libvirt(lv, info, eff, LIVE, cpu=change.touches_cpu, disks=disks, undo=undo,
                               applied=applied)
                if port is not None:
                    adopt = libvirt_noqueue_only(port)
                    if adopt:
                        notes.append(Note(port, "replaced the noqueue root qdisc libvirt puts on its taps", "info"))
                    network = reconcile_ports(store, None, new_state, [port], force=force or adopt)
                    if not network.ok:
                        errors = "; ".join(r.error for r in network.results if r.error)
                        raise KernelError(f"tap {port}: {errors}")
            if config:
                _apply_libvirt(lv, info, eff, CONFIG, cpu=change.touches_cpu, disks=disks, undo=UndoLog(),
                               applied=applied)
                if port is not None:
                    qos = next(p for p in new_state.instances[domain].ports if p.device == port).limits
                    lv.set_interface(domain, port, qos or NetworkQos(), CONFIG)
                    applied.append(f"interface {port} <bandwidth> in the definition")
                    notes.append(Note(
                        f"{port} <bandwidth>", "written into the domain's definition: at its next start libvirt "
                        "applies it with its own tc (sfq, fw and police); on a host without them (like the "
                        "kernel-lab machines) the start fails; vmqos shapes the tap itself after the start "
                        "(`vmqos vm set --live`)"))
        except VmqosError:
            undo.rollback()  # best effort: the original error is what the operator must see
            raise
        store.save(SCOPE, new_state, actor="vm set", summary=f"vm {domain}", base=loaded)
        return VmReport(domain, live, config, applied, network, eff, notes)


def vm_apply(store: Store, domain: str, connect: str | None) -> VmReport:
    """Apply a domain's stored CPU and disk limits live (after a volume change)."""
    with store.writer(SCOPE), Libvirt(connect) as lv:
        info = lv.info(domain)
        state = with_domain(store.load(SCOPE), info)
        eff = effective_instance(state, domain, store.volumes(SCOPE), store.volume_types(SCOPE))
        applied: list[str] = []
        undo = UndoLog()
        targets = [d.target for d in info.disks if d.device == "disk"]
        missing = [dev for dev in eff.disks if dev not in targets]
        if missing:
            raise NotFound(f"domain {domain} has no disk {', '.join(missing)} (disks: {', '.join(targets)})")
        try:
            _apply_libvirt(lv, info, eff, LIVE, cpu=False, disks=sorted(eff.disks), undo=undo, applied=applied)
        except VmqosError:
            undo.rollback()
            raise
        return VmReport(domain, True, False, applied, None, eff, list(eff.notes))


def vm_list(connect: str | None) -> tuple[DomainInfo, ...]:
    with Libvirt(connect) as lv:
        return tuple(lv.domains())


def vm_show(store: Store, connect: str | None, domain: str) -> VmShow:
    """Desired values, what libvirt reports (live and in the definition), the cgroups and the taps."""

    with Libvirt(connect) as lv:
        info = lv.info(domain)
        state = with_domain(store.load(SCOPE), info)
        eff = effective_instance(state, domain, store.volumes(SCOPE), store.volume_types(SCOPE))
        sides: dict[str, LibvirtValues] = {}
        for where, flags in (("live", LIVE), ("config", CONFIG)):
            if (where == "live" and not info.running) or (where == "config" and not info.persistent):
                continue
            disks: dict[str, dict[str, Any]] = {}
            interfaces: dict[str, dict[str, Any]] = {}
            try:
                cpu: dict[str, Any] = lv.cpu(domain, flags)
            except KernelError as exc:
                cpu = {"error": str(exc)}
            for disk in info.disks:
                if disk.device == "disk":
                    params = lv.disk(domain, disk.target, flags)
                    disks[disk.target] = disk_from_params(params).items()
            for iface in info.interfaces:
                if iface.target:
                    try:
                        interfaces[iface.target] = lv.interface(domain, iface.target, flags)
                    except KernelError as exc:
                        interfaces[iface.target] = {"error": str(exc)}
            sides[where] = LibvirtValues(disks, interfaces, cpu)
        pid = lv.qemu_pid(domain) if info.running else None
        ports: dict[str, PortShow | None] = {}
        for iface in info.interfaces:
            if iface.target and info.running:
                try:
                    ports[iface.target] = show_port(store, None, iface.target)
                except NotFound:
                    ports[iface.target] = None
        kernel = VmKernel(pid, domain_cgroup_values(pid) if pid is not None else None, ports)
        return VmShow(info, lv.uri, eff, sides, kernel)




