"""What the use cases return: frozen values that the CLI reads by attribute and `to_json` prints.

Fields that were lists before these types existed (a report's results, notes, operations) stay
lists, so callers and tests that compare them with lists keep working; new fields are tuples.

Field order is the key order of `--json` (`vmqos.services.serialize`); metadata renames, skips
or converts a field where the JSON has always said it differently. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vmqos.core.desired.instances import EffectiveInstance
from vmqos.core.model.document import Note
from vmqos.core.model.host import EgressMode
from vmqos.core.observed import ForeignHook
from vmqos.core.plan.cgroup_values import CpuReadback
from vmqos.core.plan.planner import Enforced
from vmqos.core.analysis.flows import Flow
from vmqos.reconcile.execute import PortResult
from vmqos.services.serialize import json_field, kernel_object_json

if TYPE_CHECKING:  # types only: results do no I/O, the libvirt driver is not imported at run time
    from vmqos.drivers.libvirt_driver import DomainInfo


# -- ports: apply, check, show -------------------------------------------------------------------

@dataclass(frozen=True)
class ApplyReport:
    """What a change of ports did: per port, the operations, or the error that rolled it back."""

    ok: bool = field(init=False)
    writes: int = field(init=False)
    results: list[PortResult] = field(metadata=json_field("ports"))
    notes: list[Note] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", all(r.error is None for r in self.results))
        object.__setattr__(self, "writes", sum(r.writes for r in self.results))


@dataclass(frozen=True)
class StoredOnly:
    """`port set --config`: the desired state changed, the kernel was not touched."""

    ok: bool = True
    writes: int = 0
    ports: tuple[PortResult, ...] = ()
    stored_only: bool = True


def _hook_texts(hooks: list[ForeignHook]) -> list[str]:
    return [f"{h.family} {h.table} {h.chain} ({h.hook})" for h in hooks]


@dataclass(frozen=True)
class PortDrift:
    """How one port's kernel state differs from its desired state (`vmqos check`)."""

    port: str
    ok: bool = field(init=False)
    missing_device: bool
    operations: list[str] = field(metadata=json_field("operations_needed"))
    foreign_hooks: list[ForeignHook] = field(metadata=json_field("foreign_nft_hooks", encode=_hook_texts))

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", not self.operations and not self.foreign_hooks and not self.missing_device)


@dataclass(frozen=True)
class HostCheck:
    """Every managed port of a scope against its desired state."""

    ok: bool = field(init=False)
    ports: list[PortDrift]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", all(d.ok for d in self.ports))


@dataclass(frozen=True)
class PortDesired:
    ingress: Enforced
    egress: Enforced


def _objects_json(objects: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [kernel_object_json(o) for o in objects]


@dataclass(frozen=True)
class PortKernel:
    in_sync: bool
    missing_device: bool
    operations_needed: tuple[str, ...]
    objects: tuple[Any, ...] = field(metadata=json_field(encode=_objects_json))  # KernelObjects as read


@dataclass(frozen=True)
class PortShow:
    """`vmqos port show`: desired limits with sources, the kernel's objects, and the counters."""

    port: str
    netns: str | None
    instance: str | None
    egress_mode: EgressMode | None
    window_clamp: bool | None  # the port's receive-window clamp; None, as egress_mode, for a port no longer desired
    desired: PortDesired
    kernel: PortKernel
    counters: dict[str, Flow]  # per direction present: offered, delivered, dropped
    device_counters: dict[str, int]  # the device's own, before any limiter
    notes: tuple[Note, ...]


# -- instances (cgroups) -------------------------------------------------------------------------

@dataclass(frozen=True)
class InstanceReport:
    """What `instance set` / `instance apply` did to a lab instance."""

    instance: str
    writes: int
    live: bool
    stored: bool
    effective: EffectiveInstance
    notes: list[Note] = field(default_factory=list, metadata=json_field(skip=True))


@dataclass(frozen=True)
class InstanceKernel:
    cpu: CpuReadback
    disks: dict[str, dict[str, int | str]]  # device name -> cgroup key -> value
    in_sync: bool


@dataclass(frozen=True)
class InstanceUsage:
    """What the instance's group used; disks by device name."""

    cpu_seconds: float | None
    cpu_ns: int | None
    nr_periods: int | None
    nr_throttled: int | None
    throttled_seconds: float | None
    io: dict[str, dict[str, int]]


@dataclass(frozen=True)
class InstanceShow:
    """`vmqos instance show`: desired values with sources, the cgroups' values, the usage."""

    instance: str
    lab: str
    scope: str
    cgroups: dict[str, str]  # role -> group directory
    layout: dict[str, str]  # role -> hierarchy
    pids: tuple[int, ...]
    desired: EffectiveInstance
    kernel: InstanceKernel
    usage: InstanceUsage
    volumes: tuple[str, ...]


# -- volumes ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VolumeTypeInfo:
    name: str
    consumer: str
    specs: dict[str, str]
    qos_name: str | None
    applied_on_host: bool
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class VolumeInfo:
    """A volume, its type's specs and the limits computed for its size; `writes` after a live change."""

    name: str
    type: str | None
    size_gb: int
    instance: str | None
    device: str | None
    consumer: str | None
    specs: dict[str, str]
    applied_on_host: dict[str, int | str]
    notes: tuple[Note, ...]
    writes: int | None = field(default=None, metadata=json_field(omit_none=True))


# -- libvirt domains ------------------------------------------------------------------------------

@dataclass(frozen=True)
class VmReport:
    """What `vm set` / `vm apply` did: the libvirt calls made, the tap's reconcile."""

    domain: str
    live: bool
    config: bool
    applied: list[str]
    network: ApplyReport | None
    effective: EffectiveInstance
    notes: list[Note]

    @property
    def writes(self) -> int:
        return len(self.applied)


@dataclass(frozen=True)
class LibvirtValues:
    """One side (live or the definition) as libvirt reports it; `{"error": ...}` where it cannot."""

    disks: dict[str, dict[str, Any]]
    interfaces: dict[str, dict[str, Any]]
    cpu: dict[str, Any]


@dataclass(frozen=True)
class VmKernel:
    qemu_pid: int | None
    cgroups: dict[str, Any] | None = field(default=None, metadata=json_field(omit_none=True))  # running only
    ports: dict[str, PortShow | None] = field(default_factory=dict)  # None: a tap vmqos does not limit


@dataclass(frozen=True)
class VmShow:
    """`vmqos vm show`: desired values, libvirt's live and defined values, the cgroups and taps."""

    domain: DomainInfo
    uri: str
    desired: EffectiveInstance
    libvirt: dict[str, LibvirtValues]  # "live", "config"
    kernel: VmKernel
