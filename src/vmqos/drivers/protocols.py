"""What the rooms above ask of the kernel, libvirt and cgroups, as typing.Protocol classes.

The reconciler (and later the services) are written against these, not against pyroute2, `nft`
or libvirt-python: the real drivers satisfy them structurally (mypy checks it), and so does the
in-memory fake kernel of `vmqos.drivers.fake`, on which the reconciler's ordering, rollback and
adoption are tested without root. The two value types the kernel drivers return (what one device
holds; a failed line of a batch) live here too, so that a fake needs nothing but the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.network import NetworkQos
from vmqos.core.observed import NftState, TcStats
from vmqos.core.plan.cgroup_values import DevNo
from vmqos.core.plan.diff import Operation
from vmqos.core.plan.objects import KernelObject

if TYPE_CHECKING:  # types only: the real drivers are not imported at run time
    from vmqos.drivers.batch import run_batch
    from vmqos.drivers.cgroup import Group
    from vmqos.drivers.libvirt_driver import DomainInfo, Libvirt
    from vmqos.drivers.nft import Nft
    from vmqos.drivers.tc_netlink import TcNetlink

Encoded = tuple[str, int]  # one nft transaction as its JSON text, and its number of commands


@dataclass
class DeviceTc:
    """What one device holds: vmqos-shaped objects (foreign ones included) and their counters."""

    device: str
    exists: bool = True
    objects: list[KernelObject] | None = None
    stats: dict[tuple[Any, ...], TcStats] | None = None


@dataclass(frozen=True)
class LineFailure:
    """One line of an `ip -batch` / `tc -batch` that the kernel refused, or that is not known to have
    run (not sent, or after the point where the tool stopped): either way, not done."""

    index: int  # 0-based index into the lines given
    message: str
    errno: int | None


class TcDriver(Protocol):
    """tc and links of one network namespace: read back, look up, and the live-change fast path."""

    def read(self, devices: Iterable[str]) -> dict[str, DeviceTc]:
        """Each device's objects and counters (exists=False for a device that is not there)."""
        ...

    def exists(self, device: str) -> bool:
        """Whether the device exists now (not a cached answer)."""
        ...

    def can_replace(self, obj: KernelObject) -> bool:
        """Whether `replace` can change this object in place (one netlink request)."""
        ...

    def replace(self, obj: KernelObject) -> None:
        """Change one class or leaf queue in place; KernelError/NotFound when refused."""
        ...

    def forget(self, devices: Iterable[str] = ()) -> None:
        """Drop what is cached about these devices (they were just created or deleted)."""
        ...

    def link_stats(self, device: str) -> dict[str, int]:
        """The device's own counters."""
        ...

    def close(self) -> None: ...


class BatchRunner(Protocol):
    """`ip -force -batch` / `tc -force -batch`: every line tried, the refused ones returned."""

    def __call__(self, tool: str, lines: Sequence[str], netns: str | None) -> list[LineFailure]: ...


class NftDriver(Protocol):
    """vmqos's nftables table: read back, and changed in atomic transactions."""

    def read(self, devices: Iterable[str] | None = None) -> NftState: ...

    def apply(self, ops: Sequence[Operation]) -> None:
        """One transaction for these operations; KernelError (nothing applied) when refused."""
        ...

    def encode(self, ops: Sequence[Operation]) -> Encoded:
        """The transaction of `ops`, built ahead (while the devices it needs are created)."""
        ...

    def run_encoded(self, payload: str, commands: int) -> None:
        """Run a transaction `encode` built."""
        ...

    def remove_table_if_empty(self) -> bool: ...


class CgroupGroup(Protocol):
    """One cgroup the services limit (vmqos.drivers.cgroup.Group)."""

    @property
    def path(self) -> str: ...

    def exists(self) -> bool: ...

    def apply(self, cpu: CpuQos | None, disks: dict[DevNo, DiskQos] | None) -> int:
        """CPU and disk limits exactly these, all or nothing; returns the files written."""
        ...


class LibvirtConnection(Protocol):
    """The domain calls `vmqos.services.vms` makes (vmqos.drivers.libvirt_driver.Libvirt)."""

    @property
    def uri(self) -> str: ...

    def domain(self, name: str) -> Any: ...

    def info(self, name_or_dom: Any) -> DomainInfo: ...

    def domains(self) -> list[DomainInfo]: ...

    def cpu(self, name: str, flags: int = ...) -> dict[str, Any]: ...

    def set_cpu(self, name: str, cpu: CpuQos, flags: int) -> dict[str, int]: ...

    def disk(self, name: str, target: str, flags: int = ...) -> dict[str, Any]: ...

    def set_disk(self, name: str, target: str, disk: DiskQos, flags: int) -> dict[str, Any]: ...

    def interface(self, name: str, device: str, flags: int = ...) -> dict[str, Any]: ...

    def set_interface(self, name: str, device: str, qos: NetworkQos, flags: int) -> dict[str, int]: ...

    def qemu_pid(self, name: str) -> int | None: ...

    def close(self) -> None: ...


if TYPE_CHECKING:
    def _real_drivers_satisfy_the_protocols(tc: TcNetlink, nft: Nft, group: Group, lv: Libvirt) -> tuple[
            TcDriver, NftDriver, BatchRunner, CgroupGroup, LibvirtConnection]:
        """Never called: mypy checks here that each real driver is what its protocol says."""
        return tc, nft, run_batch, group, lv
