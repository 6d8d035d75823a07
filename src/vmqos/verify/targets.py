"""What `vmqos verify` measures: the port, the instance behind it and the peer, and the port's limits.

A target comes from a lab (`lab_target`), from namespaces of this host (`endpoint`), or names a
remote peer (`remote_endpoint`); `port_state` reads the port's limits as `vmqos port show` does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from vmqos.core.analysis.iperf import first_address
from vmqos.core.analysis.judge import Limit
from vmqos.core.analysis.samples import PortLimits
from vmqos.core.desired.ports import empty_plan, scope_of
from vmqos.core.errors import InvalidValue, MissingValue, NotFound
from vmqos.core.model.network import DIRECTIONS
from vmqos.core.plan.planner import PortPlan
from vmqos.drivers.process import check_netns, netns_exists, run
from vmqos.lab import Lab
from vmqos.lab.topology import instance_index
from vmqos.services.ports import desired_plans, show_port
from vmqos.store import Store


@dataclass(frozen=True)
class Endpoint:
    name: str  # vm1, wan, the namespace, or the remote address
    netns: str | None  # None: outside this host (a remote peer, where an iperf3 server listens)
    address: str

    @property
    def where(self) -> str:
        return self.netns or f"remote {self.address}"


@dataclass(frozen=True)
class Target:
    """A port in its namespace, the instance behind it and the peer it talks to through the port."""

    port: str
    netns: str | None  # the port's namespace: the desired state's scope
    instance: Endpoint
    peer: Endpoint
    instance_name: str | None = None
    lab: str | None = None

    def __post_init__(self) -> None:
        versions = {ipaddress.ip_address(e.address).version for e in (self.instance, self.peer)}
        if len(versions) > 1:
            raise InvalidValue("--peer-address", self.peer.address,
                               f"the instance end is {self.instance.address} and the peer end {self.peer.address}: "
                               "give both ends addresses of one family (--instance-address, --peer-address)")


@dataclass(frozen=True)
class PortState:
    """The port's plan as desired (applied when in sync), and its limits per direction."""

    plan: PortPlan
    limits: dict[str, Limit]
    in_sync: bool
    instance: str | None


# -- what to verify ------------------------------------------------------------------------------

def lab_target(lab_name: str, what: str) -> Target:
    """`vm1` or `tap-vm1` of a lab: the port in LAB-host, the instance LAB-vm1, the peer LAB-wan."""
    lab = Lab(lab_name)
    name = what.removeprefix("tap-")
    try:
        inst = lab.instance(instance_index(name))
    except InvalidValue:
        raise InvalidValue("PORT|INSTANCE", what, f"name an instance of lab {lab_name} (vm1, vm2, ...) or its "
                                                  "port (tap-vm1, ...)") from None
    for ns in (lab.host_ns, inst.netns, lab.wan_ns):
        if not netns_exists(ns):
            raise NotFound(f"lab {lab_name!r} has no namespace {ns}: `vmqos lab up --name {lab_name}` builds it")
    wan = lab.wan
    return Target(inst.port, lab.host_ns, Endpoint(inst.name, inst.netns, inst.address),
                  Endpoint(wan.name, wan.netns, wan.address), inst.name, lab_name)


def endpoint(role: str, netns: str | None, address: str | None) -> Endpoint:
    """An endpoint in a namespace of this host, IPv4 or IPv6; its address defaults to the
    namespace's first global IPv4 address, or IPv6 when it has none."""
    if netns is None:
        raise MissingValue(f"--{role}-netns NS is needed without --lab: the namespace of the {role} end, where its "
                            "traffic runs (a lab instance: --lab LAB)")
    check_netns(netns)
    if address is None:
        address = first_address(run(["ip", "-j", "addr", "show"], netns).stdout)
        if address is None:
            raise NotFound(f"namespace {netns} has no global IPv4 or IPv6 address: give --{role}-address")
    return Endpoint(netns, netns, _address(f"--{role}-address", address))


def _address(option: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidValue(option, text, "an IPv4 or IPv6 address, e.g. 10.0.0.2 or fd00::2") from None


def remote_endpoint(address: str) -> Endpoint:
    """A peer outside this host: vmqos cannot start processes there, so an iperf3 server must
    already listen on it (`iperf3 -s`); the instance's end runs the client both ways (-R towards
    the instance)."""
    address = _address("--peer-remote", address)
    return Endpoint(address, None, address)


def port_state(store: Store, netns: str | None, port: str) -> PortState:
    """The port's effective limits, read as `vmqos port show` and the sampler read them."""
    shown = show_port(store, netns, port)  # NotFound when vmqos does not manage it
    scope = scope_of(netns)
    plan = desired_plans(store, scope, store.load(scope), [port]).get(port, empty_plan(port))
    caps = PortLimits.of(plan)
    limits = {d: Limit(caps.bps(d), caps.pps(d), getattr(plan, d).peak_bps, getattr(plan, d).burst_bytes)
              for d in DIRECTIONS}
    return PortState(plan, limits, shown.kernel.in_sync, shown.instance)

