"""A host's desired state: policies, flavors, networks and the instances with their ports and disks."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from vmqos.core.errors import InvalidValue
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.document import QosDocument
from vmqos.core.model.network import NetworkQos

# Linux interface names: at most 15 bytes, no '/', no whitespace, not '.' or '..'.
IFNAMSIZ = 16


def check_device_name(name: str, field_name: str = "port") -> str:
    if (not isinstance(name, str) or not 1 <= len(name.encode()) < IFNAMSIZ or name in (".", "..")
            or any(c in name for c in "/: \t\n")):
        raise InvalidValue(field_name, name, "a Linux device name is 1 to 15 characters without '/', ':' or spaces")
    return name


NETNS_NAME_MAX = 255  # NAME_MAX: a namespace is a file in /run/netns


def check_netns_name(name: str, field_name: str = "--netns") -> str:
    """A network namespace's name as iproute2 takes it (ipnetns.c `invalid_name`): 1 to 255 bytes,
    no '/', not '.' or '..'. An empty name is refused, never read as "the host's own namespace":
    a script with an unset variable must not change the host's devices."""
    if (not isinstance(name, str) or not 1 <= len(name.encode(errors="surrogateescape")) <= NETNS_NAME_MAX
            or name in (".", "..") or "/" in name or "\0" in name):
        raise InvalidValue(field_name, name, "a network namespace name is 1 to 255 characters without '/' "
                                             "(leave the option out for the host's own namespace)")
    return name


class EgressMode(str, Enum):
    """How traffic sent by the instance is limited on the host."""

    SHAPE = "shape"  # forwarded by nft to an IFB device and queued by HTB: exact, TCP-friendly
    POLICE = "police"  # dropped above the rate by nftables at the port's ingress hook: cheap, bursty


@dataclass(frozen=True)
class Policy:
    """A named network QoS policy (a Neutron policy or one written in vmqos's own file)."""

    name: str
    qos: NetworkQos
    origin: str = "vmqos"


@dataclass(frozen=True)
class Flavor:
    name: str
    qos: QosDocument


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    policy: str | None = None


@dataclass(frozen=True)
class PortSpec:
    device: str
    network: str | None = None
    policy: str | None = None
    limits: NetworkQos | None = None  # set on the port itself (domiftune, `port set`)
    egress_mode: EgressMode = EgressMode.SHAPE
    mtu: int = 1500

    def __post_init__(self) -> None:
        check_device_name(self.device)
        try:
            object.__setattr__(self, "egress_mode", EgressMode(self.egress_mode))
        except ValueError:
            raise InvalidValue(f"port {self.device}.egress_mode", self.egress_mode, "use shape or police") from None
        if isinstance(self.mtu, bool) or not isinstance(self.mtu, int) or not 68 <= self.mtu <= 65535:
            raise InvalidValue(f"port {self.device}.mtu", self.mtu, "an MTU is from 68 to 65535 bytes")


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    flavor: str | None = None
    cpu: CpuQos | None = None
    ports: tuple[PortSpec, ...] = ()
    disks: dict[str, DiskQos] = field(default_factory=dict)


@dataclass(frozen=True)
class HostState:
    policies: dict[str, Policy] = field(default_factory=dict)
    flavors: dict[str, Flavor] = field(default_factory=dict)
    networks: dict[str, NetworkSpec] = field(default_factory=dict)
    instances: dict[str, InstanceSpec] = field(default_factory=dict)

    def ports(self) -> list[tuple[InstanceSpec, PortSpec]]:
        return [(inst, port) for inst in self.instances.values() for port in inst.ports]
