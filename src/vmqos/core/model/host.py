"""A host's desired state: policies, flavors, networks and the instances with their ports and disks."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

from vmqos.core.errors import InvalidValue
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.document import QosDocument
from vmqos.core.model.network import NetworkQos

# Linux interface names: at most 15 bytes, no '/', ':' or whitespace, not '.' or '..' (the
# kernel's dev_valid_name). vmqos manages a narrower set, every name its command paths carry
# faithfully (tests/core/test_trust_names.py):
# - '#', "'", '"': iproute2's batch reader cuts a line at '#' even inside quotes and has no
#   escapes, so tc would read another line than the one planned (and exit on the broken quote,
#   skipping every later port of the batch);
# - '\\' and '*': nft reads a trailing '*' in an interface name as a wildcard (nft 1.0.6 aborts on
#   `update @set { "d*" . ... }`) and '\\' as its escape;
# - a leading '@': nft's JSON reads such a string as a set reference, not a name;
# - control and other non-printable characters: no terminal, log line or one-line error shows them.
IFNAMSIZ = 16
_NOT_IN_DEVICE_NAMES = "/:#'\"\\*"
# with ' ': the one character that is both printable and a space (str.isspace) in all of Unicode, so this
# set and isprintable() refuse what a per-character loop over isspace/isprintable did, in C (the agent
# checks every row's device: 10,000 rows at one shared policy's change; tests/core checks every code point)
_NOT_IN_DEVICE_NAMES_SET = frozenset(_NOT_IN_DEVICE_NAMES + " ")


def check_device_name(name: str, field_name: str = "port") -> str:
    if (not isinstance(name, str) or not 1 <= len(name.encode(errors="surrogatepass")) < IFNAMSIZ
            or name in (".", "..") or name.startswith("@")
            or not name.isprintable() or not _NOT_IN_DEVICE_NAMES_SET.isdisjoint(name)):
        raise InvalidValue(field_name, name, "a Linux device name is 1 to 15 characters without '/', ':' or spaces "
                                             "(15 bytes, printable); vmqos also refuses '#', quotes, '\\', '*' and a "
                                             "leading '@', which iproute2's batch lines and nft cannot carry")
    return name


def check_object_name(kind: str, name: str) -> str:
    """A policy, flavor, network or instance name: shown in tables, logs and one-line errors, and
    never given to a kernel tool, so any printable text (empty for an unnamed converted policy; the
    host file refuses empty keys itself); a control character or a line break would forge or split
    the lines that show it."""
    if not isinstance(name, str) or not name.isprintable():
        raise InvalidValue(f"{kind} name", name, f"a {kind} name is printable text, without control characters "
                                                 "or line breaks")
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


def check_addresses(field_name: str, addresses: object) -> tuple[str, ...]:
    """IP addresses of an instance (no prefix length), each family's canonical text, in the order given."""
    if isinstance(addresses, str) or not isinstance(addresses, (tuple, list)):
        raise InvalidValue(field_name, addresses, "give a list of IP addresses, e.g. [10.0.0.5, fd00::5]")
    out: list[str] = []
    for item in addresses:
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise InvalidValue(field_name, item, "an instance's address is one IPv4 or IPv6 address without a "
                                                 "prefix length, e.g. 10.0.0.5 or fd00::5") from None
    if len(set(out)) != len(out):
        raise InvalidValue(field_name, list(addresses), "each address once")
    return tuple(out)


@dataclass(frozen=True)
class UplinkSpec:
    """The host's shared link (its physical or bond device; the lab's `wan` side of the host namespace)
    and its capacity: the guaranteed minimums of the ports are shared out on it (`core.plan.uplink`).
    The capacity is what the device can carry, in bit/s; the plan shapes the link to it, so that the
    queue, and with it the sharing, is on this host and not in the switch."""

    device: str
    capacity_bps: int
    oversubscribe: bool = False  # guarantees above the capacity: scaled down with a warning instead of refused

    def __post_init__(self) -> None:
        check_device_name(self.device, "uplink.device")
        if isinstance(self.capacity_bps, bool) or not isinstance(self.capacity_bps, int) or \
                not 1_000_000 <= self.capacity_bps <= 4_000_000_000_000:
            raise InvalidValue("uplink.capacity", self.capacity_bps, "an uplink's capacity is from 1mbit to 4tbit, "
                                                                       "e.g. 10gbit")


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

    def __post_init__(self) -> None:
        check_object_name("policy", self.name)


@dataclass(frozen=True)
class Flavor:
    name: str
    qos: QosDocument

    def __post_init__(self) -> None:
        check_object_name("flavor", self.name)


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    policy: str | None = None

    def __post_init__(self) -> None:
        check_object_name("network", self.name)


@dataclass(frozen=True)
class PortSpec:
    device: str
    network: str | None = None
    policy: str | None = None
    limits: NetworkQos | None = None  # set on the port itself (domiftune, `port set`)
    egress_mode: EgressMode = EgressMode.SHAPE
    # The receive-window clamp (shape mode only): lowers the TCP window in the ACKs the port forwards,
    # so that a sender without ECN (BBR, cubic) cannot keep a long queue at the port's shaper. Opt-in,
    # since it rewrites the tenant's TCP headers.
    window_clamp: bool = False
    mtu: int = 1500
    # The instance's addresses on this port (Neutron's fixed_ips): how the uplink's plan finds the
    # traffic towards the instance, whose guarantee it holds. Canonical text, IPv4 and IPv6.
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_device_name(self.device)
        object.__setattr__(self, "addresses", check_addresses(f"port {self.device}.addresses", self.addresses))
        try:
            object.__setattr__(self, "egress_mode", EgressMode(self.egress_mode))
        except ValueError:
            raise InvalidValue(f"port {self.device}.egress_mode", self.egress_mode, "use shape or police") from None
        if not isinstance(self.window_clamp, bool):
            raise InvalidValue(f"port {self.device}.window_clamp", self.window_clamp, "use true or false")
        if isinstance(self.mtu, bool) or not isinstance(self.mtu, int) or not 68 <= self.mtu <= 65535:
            raise InvalidValue(f"port {self.device}.mtu", self.mtu, "an MTU is from 68 to 65535 bytes")


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    flavor: str | None = None
    cpu: CpuQos | None = None
    ports: tuple[PortSpec, ...] = ()
    disks: dict[str, DiskQos] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_object_name("instance", self.name)


@dataclass(frozen=True)
class HostState:
    policies: dict[str, Policy] = field(default_factory=dict)
    flavors: dict[str, Flavor] = field(default_factory=dict)
    networks: dict[str, NetworkSpec] = field(default_factory=dict)
    instances: dict[str, InstanceSpec] = field(default_factory=dict)
    uplink: UplinkSpec | None = None

    def ports(self) -> list[tuple[InstanceSpec, PortSpec]]:
        return [(inst, port) for inst in self.instances.values() for port in inst.ports]
