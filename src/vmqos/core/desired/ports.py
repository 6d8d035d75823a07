"""Edits of a host's desired state for its ports (pure): what `port set` and `port clear` change.

domiftune semantics throughout: an absent direction keeps its value, `0` clears it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vmqos.core.errors import NotFound
from vmqos.core.formats.domiftune import CLEAR, parse_direction
from vmqos.core.model.host import (
    EgressMode,
    HostState,
    InstanceSpec,
    Policy,
    PortSpec,
    check_device_name,
    check_netns_name,
)
from vmqos.core.model.network import DirectionQos, NetworkQos
from vmqos.core.plan.planner import Enforced, PortPlan


def scope_of(netns: str | None) -> str:
    """The store's scope of a namespace: its name, or "" for the caller's own (None). An empty or
    invalid name is refused here, where every use case starts, before the store or the kernel."""
    return "" if netns is None else check_netns_name(netns)


def empty_plan(port: str) -> PortPlan:
    return PortPlan(port, (), Enforced(), Enforced())


def _find_port(state: HostState, device: str) -> tuple[InstanceSpec, PortSpec] | None:
    for inst, port in state.ports():
        if port.device == device:
            return inst, port
    return None


def with_port(state: HostState, port: PortSpec) -> HostState:
    """`state` with `port` replaced, or added as an instance of its own when the host does not know it."""
    found = _find_port(state, port.device)
    instances = dict(state.instances)
    if found is None:
        name = port.device
        while name in instances:
            name += "_"
        instances[name] = InstanceSpec(name, ports=(port,))
    else:
        inst = found[0]
        instances[inst.name] = replace(inst, ports=tuple(port if p.device == port.device else p for p in inst.ports))
    return replace(state, instances=instances)


def without_port(state: HostState, device: str) -> HostState:
    """`state` without the port; an instance that `with_port` made for it alone goes too."""
    instances = {}
    for name, inst in state.instances.items():
        ports = tuple(p for p in inst.ports if p.device != device)
        if not ports and inst.ports and name.rstrip("_") == device and not (inst.flavor or inst.cpu or inst.disks):
            continue
        instances[name] = replace(inst, ports=ports)
    return replace(state, instances=instances)


def _direction(option: str, text: str | None, current: DirectionQos) -> DirectionQos:
    """domiftune semantics: absent keeps, `0` clears the bandwidth, a value replaces it."""
    if text is None:
        return current
    parsed = parse_direction(option, text)
    if parsed is CLEAR:
        return replace(current, bandwidth=None, min_bps=None)
    limit, floor = parsed
    return replace(current, bandwidth=limit, min_bps=floor if floor is not None else current.min_bps)


def changed_limits(limits: NetworkQos, inbound: str | None, outbound: str | None) -> NetworkQos:
    """`limits` with `--inbound`/`--outbound` applied as `port set` applies them (domiftune semantics,
    the same parser and messages): what a server's native PUT is sent by `port set --server`."""
    return replace(limits, ingress=_direction("--inbound", inbound, limits.ingress),
                   egress=_direction("--outbound", outbound, limits.egress))


@dataclass(frozen=True)
class PortChange:
    inbound: str | None = None
    outbound: str | None = None
    policy: Policy | None = None  # a policy read from a file, stored under its name
    policy_name: str | None = None  # a policy the store already has
    egress_mode: EgressMode | None = None
    window_clamp: bool | None = None  # the port's receive-window clamp (None: unchanged)
    addresses: tuple[str, ...] | None = None  # the instance's addresses on the port (None: unchanged)


def changed_port(state: HostState, device: str, change: PortChange) -> tuple[HostState, PortSpec]:
    check_device_name(device)
    found = _find_port(state, device)
    port = found[1] if found else PortSpec(device)
    limits = port.limits or NetworkQos()
    limits = changed_limits(limits, change.inbound, change.outbound)
    policies = dict(state.policies)
    policy = port.policy
    if change.policy is not None:
        policies[change.policy.name] = change.policy
        policy = change.policy.name
    elif change.policy_name is not None:
        if change.policy_name not in policies:
            known = ", ".join(sorted(policies)) or "none"
            raise NotFound(f"policy {change.policy_name!r} is not stored (known: {known}); give a policy file "
                           "(Neutron JSON or vmqos YAML) instead")
        policy = change.policy_name
    port = replace(port, limits=None if limits.is_empty else limits, policy=policy,
                   egress_mode=change.egress_mode or port.egress_mode,
                   window_clamp=change.window_clamp if change.window_clamp is not None else port.window_clamp,
                   addresses=port.addresses if change.addresses is None else change.addresses)
    state = replace(state, policies=policies)
    return with_port(state, port), port
