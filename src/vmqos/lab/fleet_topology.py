"""The shape of a lab fleet: N lab hosts and a control namespace that joins them (names, addresses; no I/O).

A fleet named F with N hosts is N labs and one more namespace:

    F1 .. FN   each a whole lab (`vmqos.lab.topology`): F<i>-host with its instances F<i>-vmK and
               its F<i>-wan. The lab's instance addresses repeat from lab to lab, as tenant networks
               do on real hypervisors: the labs never reach one another through them.
    F-ctl      the control plane's network: bridge br-mgmt = 10.248.0.1/24, where `vmqos server`
               listens; one veth per host, mgmt-h<i> in br-mgmt, its peer mgmt0 = 10.248.0.(10+i)/24
               in F<i>-host, where that host's agent runs.

The management network is a second range, 10.248.0.0/24, only inside the fleet's namespaces; cutting
one host off the server (a partition) is setting its mgmt0 down, in its namespace only (which takes
its route to the server away).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmqos.core.errors import InvalidValue
from vmqos.lab.topology import Lab

MAX_HOSTS = 9  # F<i> must stay a valid lab name (8 characters) for every fleet name of up to 7
MGMT_BRIDGE = "br-mgmt"
MGMT_DEVICE = "mgmt0"
MGMT_NETWORK = "10.248.0.0/24"
MGMT_PREFIX = 24
SERVER_ADDRESS = "10.248.0.1"
SERVER_PORT = 9696  # Neutron's port: the fleet's server is alone in its namespace

_NAME = re.compile(r"[a-z][a-z0-9]{0,6}")


@dataclass(frozen=True)
class FleetHost:
    """One lab host of the fleet: its lab, its management address and the agent's account."""

    index: int
    lab: Lab
    mgmt_address: str
    mgmt_peer: str  # the veth end in F-ctl's bridge

    @property
    def name(self) -> str:
        """The host's name for the server (`binding:host_id`, the agent's --host): the lab's name."""
        return self.lab.name

    @property
    def netns(self) -> str:
        return self.lab.host_ns

    @property
    def agent_user(self) -> str:
        return f"agent-{self.name}"


@dataclass(frozen=True)
class Fleet:
    """The names and addresses of the fleet `name` with `hosts` lab hosts, computed and validated."""

    name: str
    hosts: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidValue("fleet name", self.name, "use 1 to 7 of a-z and 0-9, starting with a letter "
                                                         "(e.g. fleet); its hosts are NAME1..NAMEn")
        if isinstance(self.hosts, bool) or not isinstance(self.hosts, int) or not 1 <= self.hosts <= MAX_HOSTS:
            raise InvalidValue("hosts", self.hosts, f"use 1 to {MAX_HOSTS}")

    @property
    def ctl_ns(self) -> str:
        return f"{self.name}-ctl"

    @property
    def server_url(self) -> str:
        return f"http://{SERVER_ADDRESS}:{SERVER_PORT}"

    @property
    def auth_url(self) -> str:
        return f"{self.server_url}/v3"

    @property
    def listen(self) -> str:
        return f"{SERVER_ADDRESS}:{SERVER_PORT}"

    def host(self, index: int) -> FleetHost:
        if not 1 <= index <= self.hosts:
            raise InvalidValue("host", index, f"use 1 to {self.hosts}")
        return FleetHost(index, Lab(f"{self.name}{index}"), f"10.248.0.{10 + index}", f"mgmt-h{index}")

    def all_hosts(self) -> tuple[FleetHost, ...]:
        return tuple(self.host(i) for i in range(1, self.hosts + 1))
