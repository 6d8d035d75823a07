"""What a host's kernel must hold for the Neutron ports bound to it: device -> vmqos Policy.

Read from the API's objects (ports bound to the host, their networks, the QoS policies) with the
rules of `core.desired.neutron_ports`: the device is Nova's tap name or binding:profile's
"device"; the policy is the port's own, else its network's when Neutron would apply it. The
policy becomes the vmqos model's Policy (`services.policies.as_policy`), named by its id
("neutron:<id>") so that two Neutron policies of one name never share a slot in a scope.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from vmqos.core.desired.neutron_ports import device_name, effective_policy, policy_name
from vmqos.core.errors import VmqosError
from vmqos.core.model.host import Policy
from vmqos.services.policies import as_policy
from vmqos.store import Store
from vmqos.store import neutron_ports as records
from vmqos.store import qos as qos_records
from vmqos.store.neutron_ports import StoredPort
from vmqos.store.qos import StoredPolicy


@dataclass(frozen=True)
class PortBinding:
    """One Neutron port bound to the host: its device, and the policy that applies (None: none does)."""

    port_id: str
    device: str
    policy_id: str | None = None
    source: str | None = None  # "port" or "network": where the policy comes from
    policy: Policy | None = None
    addresses: tuple[str, ...] = ()  # the port's fixed_ips: the instance's addresses, for the host's uplink

    @property
    def limits(self) -> bool:
        """Whether the port holds anything on the kernel (a policy without rules holds nothing)."""
        return self.policy is not None and not self.policy.qos.is_empty


@dataclass(frozen=True)
class HostBindings:
    """The host's ports by device (the first port to name a device keeps it), and why others were left out."""

    ports: dict[str, PortBinding]
    problems: tuple[str, ...] = ()


def host_bindings(store: Store, host: str) -> HostBindings:
    """Every port bound to `host`, with its device and its effective policy."""
    networks = {n.id: n.qos_policy_id for n in records.list_networks(store)}
    policies = {p.id: p for p in qos_records.list_policies(store)}
    return bind(host, records.list_ports(store, host_id=host), networks, policies)


def enforced_policy(stored: StoredPolicy) -> Policy:
    """The Policy a port of the QoS policy holds, named by the policy's id (VmqosError: it cannot be read)."""
    return replace(as_policy(stored), name=policy_name(stored.id))


def bind(host: str, ports: Iterable[StoredPort], network_policies: Mapping[str, str | None],
         policies: Mapping[str, StoredPolicy], converted: dict[str, Policy] | None = None) -> HostBindings:
    """THE rule, for the enforcer and the fleet's desired rows alike: `ports` bound to `host`, in
    creation order, by device. The first port to name a device keeps it; a port whose device name
    or policy cannot be read is left out (a problem), and so does not hold its device.

    Decisions are per device, so the ports that name some devices decide those devices exactly as
    the host's every port would. `network_policies` maps a network id to its QoS policy id;
    `converted` caches the vmqos Policy of each QoS policy across calls."""
    converted = {} if converted is None else converted
    found: dict[str, PortBinding] = {}
    problems = []
    for port in ports:
        try:
            device = device_name(port.id, port.profile)
        except VmqosError as exc:
            problems.append(f"port {port.id}: {exc}")
            continue
        if device in found:
            problems.append(f"port {port.id}: device {device} on host {host} is port {found[device].port_id}'s; "
                            "give one of them another binding:profile device")
            continue
        chosen = effective_policy(port.qos_policy_id, network_policies.get(port.network_id), port.device_owner)
        binding = PortBinding(port.id, device, addresses=port.fixed_ips)
        stored = policies.get(chosen.policy_id) if chosen else None
        if chosen is not None and stored is not None:
            if stored.id not in converted:
                try:
                    converted[stored.id] = enforced_policy(stored)
                except VmqosError as exc:  # every stored policy reads (services.policies checks), but not blindly
                    problems.append(f"port {port.id}: QoS policy {stored.id} cannot be enforced: {exc}")
                    continue
            binding = replace(binding, policy_id=stored.id, source=chosen.source, policy=converted[stored.id])
        found[device] = binding
    return HostBindings(found, tuple(problems))
