"""What the instance commands do to lab instances: their CPU and disk QoS in their cgroups.

The effective values and their sources are computed in the core (`vmqos.core.desired.instances`);
this half writes them into the instance's cgroups, reads them back and keeps the desired state in
the store (VMs go through libvirt: `vmqos.services.vms`). A lab instance LAB-vmN lives in scope
LAB-host, the namespace that owns its port, under the name vmN, so a host file's
`instances: {vm1: ...}` and `instance set vm1 --lab LAB` are the same object.
"""

from __future__ import annotations

from vmqos.core.desired.instances import (
    EffectiveInstance,
    InstanceChange,
    changed_instance,
    check_cgroup_instance,
    effective_instance,
)
from vmqos.core.errors import InvalidValue, NotFound
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.plan.cgroup_values import CGROUP_DISK_KEYS, cpu_files, devno_text, parse_cpu
from vmqos.drivers.cgroup import PARENT, Group, block_device, device_name, host_layout
from vmqos.lab.topology import Lab, instance_index
from vmqos.services.results import InstanceKernel, InstanceReport, InstanceShow, InstanceUsage
from vmqos.store import Store

# -------------------------------------------------------------------------------- lab instances (I/O)


def lab_scope(lab: str) -> str:
    return Lab(lab).host_ns


def lab_group(lab: str, inst: str) -> Group:
    """The cgroup of a lab instance: vmqos/LAB-vmN in each hierarchy."""
    netns = Lab(lab).instance(instance_index(inst)).netns
    return Group(host_layout(), f"{PARENT}/{netns}")


def _lab_apply(group: Group, eff: EffectiveInstance, lab: str) -> int:
    if not group.exists():
        raise NotFound(f"lab {lab} has no cgroup for {eff.name} ({group.path}): `vmqos lab up --name {lab}` "
                       "creates it")
    check_cgroup_instance(eff)
    devnos = {}
    for dev, disk in eff.disks.items():
        devno = block_device(dev)
        if devno in devnos:
            raise InvalidValue("disk", dev, f"names the same device {devno_text(devno)} as another disk of "
                                            f"{eff.name}")
        devnos[devno] = DiskQos.from_items({k: v for k, v in disk.items().items() if k in CGROUP_DISK_KEYS})
    return group.apply(eff.cpu or CpuQos(), devnos)


def instance_set(store: Store, lab: str, inst: str, change: InstanceChange, *, live: bool = True,
                 config: bool = True) -> InstanceReport:
    """Change a lab instance's own CPU and disk values: in its cgroups (live), in the store (config)."""
    if not live and not config:
        raise InvalidValue("--live/--config", "neither", "give --live, --config or neither (both)")
    scope = lab_scope(lab)
    group = lab_group(lab, inst)  # validates the instance's name before anything is read or stored
    with store.writer(scope):  # load, cgroups and save as one writer
        state = store.load(scope)
        new_state, _ = changed_instance(state, inst, change)
        eff = effective_instance(new_state, inst, store.volumes(scope), store.volume_types(scope))
        check_cgroup_instance(eff)
        writes = _lab_apply(group, eff, lab) if live else 0
        if config:
            store.save(scope, new_state, actor="instance set", summary=f"instance {inst}", base=state)
        return InstanceReport(inst, writes, live, config, eff, list(eff.notes))


def instance_apply(store: Store, lab: str, inst: str) -> InstanceReport:
    """Make a lab instance's cgroups match its stored desired state (after a volume change, a flavor)."""
    scope = lab_scope(lab)
    with store.writer(scope):
        state = store.load(scope)
        eff = effective_instance(state, inst, store.volumes(scope), store.volume_types(scope))
        return InstanceReport(inst, _lab_apply(lab_group(lab, inst), eff, lab), True, False, eff, list(eff.notes))


def instance_show(store: Store, lab: str, inst: str) -> InstanceShow:
    """Desired values with their sources, what the cgroups hold, and what the instance used."""
    scope = lab_scope(lab)
    state = store.load(scope)
    eff = effective_instance(state, inst, store.volumes(scope), store.volume_types(scope))
    group = lab_group(lab, inst)
    if not group.exists():
        raise NotFound(f"lab {lab} has no cgroup for {inst} ({group.path}): `vmqos lab up --name {lab}` creates it")
    cpu = group.read_cpu()
    disks = {device_name(devno): qos.items() for devno, qos in group.read_disks().items()}
    usage = group.usage()
    wanted_disks: dict[str, dict[str, int | str]] = {}
    for dev, disk in eff.disks.items():
        try:
            wanted_disks[device_name(block_device(dev))] = {k: v for k, v in disk.items().items()
                                                            if k in CGROUP_DISK_KEYS}
        except (NotFound, InvalidValue):
            wanted_disks[dev] = disk.items()
    wanted_cpu = parse_cpu(cpu_files(eff.cpu or CpuQos(), cpu.version), cpu.version)
    in_sync = cpu == wanted_cpu and disks == {d: v for d, v in wanted_disks.items() if v}
    return InstanceShow(
        instance=inst, lab=lab, scope=scope, cgroups=group.describe(), layout=group.layout.describe(),
        pids=tuple(sorted(group.procs())), desired=eff,
        kernel=InstanceKernel(cpu=cpu, disks=disks, in_sync=in_sync),
        usage=InstanceUsage(cpu_seconds=None if usage.cpu_ns is None else usage.cpu_ns / 1e9,
                            cpu_ns=usage.cpu_ns, nr_periods=usage.nr_periods, nr_throttled=usage.nr_throttled,
                            throttled_seconds=None if usage.throttled_ns is None else usage.throttled_ns / 1e9,
                            io={device_name(d): v for d, v in usage.io.items()}),
        volumes=tuple(v.name for v in store.volumes(scope).values() if v.instance == inst),
    )

