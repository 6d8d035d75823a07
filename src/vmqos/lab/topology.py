"""The shape of a lab, a hypervisor made of network namespaces: names, addresses and MACs (no I/O).

A lab named LAB is four kinds of namespace:

    LAB-host  the hypervisor: bridge br-int = 10.247.0.1/25 (the instances' gateway), one port
              tap-vmN per instance (the host end of a veth, as a VM's tap), the uplink
              wan0 = 10.247.0.129/30; it forwards IPv4 between them (net.ipv4.ip_forward=1).
    LAB-vmN   instance N (vm1..vm100): eth0, the other end of tap-vmN, = 10.247.0.(10+N)/25,
              default route via 10.247.0.1.
    LAB-wan   the internet: eth0, the other end of wan0, = 10.247.0.130/30, default route
              via 10.247.0.129, so it reaches the instances through LAB-host.

Every address is in 10.247.0.0/24 (instances 10.247.0.0/25, uplink 10.247.0.128/30) and exists
only inside the lab's namespaces: the root namespace is never touched, so the range cannot clash
with the host's own networks. MACs are deterministic, so captures and fdb entries read the same
on every run, and locally administered: 02:76:71 ("vq"), a role byte, the first byte of
sha256(LAB) so two labs never share a MAC by design, then the index. Roles: 00 an instance's
eth0, 01 its tap, 02 the wan's eth0, 03 the host's own devices (br-int 01, wan0 02).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from vmqos.core.errors import InvalidValue

DEFAULT_NAME = "lab"
DEFAULT_INSTANCES = 3
MAX_INSTANCES = 100  # vmN = 10.247.0.(10+N) must stay inside 10.247.0.0/25

LAB_NETWORK = "10.247.0.0/24"
INSTANCE_NETWORK = "10.247.0.0/25"
INSTANCE_PREFIX = 25
GATEWAY = "10.247.0.1"  # br-int in LAB-host
UPLINK_PREFIX = 30
UPLINK_GATEWAY = "10.247.0.129"  # wan0 in LAB-host
WAN_ADDRESS = "10.247.0.130"  # eth0 in LAB-wan

BRIDGE = "br-int"
UPLINK = "wan0"
GUEST_DEVICE = "eth0"
HOST, WAN = "host", "wan"

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,7}")  # no leading '-': `ip netns add -x` would read an option
_INSTANCE = re.compile(r"vm([1-9][0-9]*)")


@dataclass(frozen=True)
class LabInstance:
    """One guest of the lab (vmN, or the wan) and its port in LAB-host.

    Read back from the kernel (`LabStatus`), a field that the kernel lacks is "".
    """

    name: str  # vm1..vmN, or wan
    netns: str
    port: str  # its port in LAB-host: tap-vmN, or wan0
    address: str  # eth0's IPv4 address, without the prefix length
    mac: str  # eth0's MAC
    port_mac: str

    @property
    def prefix(self) -> int:
        return UPLINK_PREFIX if self.name == WAN else INSTANCE_PREFIX

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"

    @property
    def gateway(self) -> str:
        """Its default route's next hop: an address of LAB-host."""
        return UPLINK_GATEWAY if self.name == WAN else GATEWAY


@dataclass(frozen=True)
class Lab:
    """The names, addresses and MACs of the lab `name`, computed and validated, never read."""

    name: str = DEFAULT_NAME

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidValue("lab name", self.name,
                               "use 1 to 8 characters of a-z, 0-9 and '-', not starting with '-' (e.g. lab, lab2)")

    @property
    def host_ns(self) -> str:
        return f"{self.name}-{HOST}"

    @property
    def wan_ns(self) -> str:
        return f"{self.name}-{WAN}"

    @property
    def gateway_cidr(self) -> str:
        return f"{GATEWAY}/{INSTANCE_PREFIX}"

    @property
    def uplink_cidr(self) -> str:
        return f"{UPLINK_GATEWAY}/{UPLINK_PREFIX}"

    @property
    def bridge_mac(self) -> str:
        """Set explicitly: a bridge would otherwise take the lowest MAC of its ports, and change with them."""
        return self._mac(3, 1)

    @property
    def uplink_mac(self) -> str:
        return self._mac(3, 2)

    @property
    def wan_address(self) -> str:
        return WAN_ADDRESS

    @property
    def wan(self) -> LabInstance:
        return LabInstance(WAN, self.wan_ns, UPLINK, WAN_ADDRESS, self._mac(2, 1), self.uplink_mac)

    def ns(self, inst: str) -> str:
        """The namespace of `vm1`..`vm100`, `wan` or `host`."""
        if inst in (HOST, WAN):
            return f"{self.name}-{inst}"
        return self.instance(instance_index(inst)).netns

    def instance(self, index: int) -> LabInstance:
        check_instance_count(index, "instance")
        name = f"vm{index}"
        return LabInstance(name, f"{self.name}-{name}", f"tap-{name}", f"10.247.0.{10 + index}",
                           self._mac(0, index), self._mac(1, index))

    def instances(self, count: int) -> tuple[LabInstance, ...]:
        """vm1..vm<count>."""
        check_instance_count(count)
        return tuple(self.instance(i) for i in range(1, count + 1))

    def index_of(self, netns: str) -> int | None:
        """N when `netns` is this lab's LAB-vmN, else None (another lab's, or not an instance's)."""
        prefix = f"{self.name}-"
        if not netns.startswith(prefix):
            return None
        match = _INSTANCE.fullmatch(netns[len(prefix):])
        return int(match.group(1)) if match and int(match.group(1)) <= MAX_INSTANCES else None

    def owns(self, netns: str) -> bool:
        """Whether `netns` is one of this lab's namespaces; no other lab's name can match (see tests)."""
        return netns in (self.host_ns, self.wan_ns) or self.index_of(netns) is not None

    def _mac(self, role: int, index: int) -> str:
        lab_byte = hashlib.sha256(self.name.encode()).digest()[0]
        return f"02:76:71:{role:02x}:{lab_byte:02x}:{index:02x}"


def check_instance_count(count: int, field: str = "instances") -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_INSTANCES:
        raise InvalidValue(field, count, f"use 1 to {MAX_INSTANCES}: instance N is 10.247.0.(10+N) in "
                                         f"{INSTANCE_NETWORK}")
    return count


def instance_index(inst: str) -> int:
    """3 for `vm3`; anything else than vm1..vm100 is refused."""
    match = _INSTANCE.fullmatch(inst) if isinstance(inst, str) else None
    if match is None or int(match.group(1)) > MAX_INSTANCES:
        raise InvalidValue("instance", inst, f"use vm1 to vm{MAX_INSTANCES}, {WAN} or {HOST}")
    return int(match.group(1))


def differences(expected: LabInstance, found: LabInstance) -> list[str]:
    """What the kernel has differently from the plan, one phrase each (empty when they agree)."""
    out = []
    for field in ("port", "address", "mac", "port_mac"):
        want, got = getattr(expected, field), getattr(found, field)
        if want != got:
            what = {"port": "port in the host namespace", "address": f"{GUEST_DEVICE} address",
                    "mac": f"{GUEST_DEVICE} MAC", "port_mac": f"{expected.port} MAC"}[field]
            out.append(f"{expected.name}: {what} is {got or 'missing'}, expected {want}")
    return out


@dataclass(frozen=True)
class LabStatus:
    """A lab as read back from the kernel; `problems` says where it differs from `Lab`'s plan."""

    name: str
    namespaces: tuple[str, ...]  # the lab's namespaces that exist: host, vm1.., wan
    bridge_mac: str  # br-int's, "" when missing
    gateway: str  # br-int's IPv4 address, "" when missing
    wan: LabInstance | None
    instances: tuple[LabInstance, ...]
    problems: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["network"] = LAB_NETWORK
        return data
