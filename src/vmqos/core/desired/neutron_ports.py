"""A Neutron port on its host (pure): its device's name, the QoS policy that applies to it, and the
names the all-in-one enforcer gives the policies it places in a scope's desired state.

Device: Nova names a port's tap `tap` + the first 11 characters of the port id (nova.network.model
NIC_NAME_LEN = 14); a port that is not Nova's (a container's veth, a lab's device) says its device
in `binding:profile` under vmqos's key "device", e.g. `openstack port create --binding-profile
device=veth-web1 ...`.

Policy: neutron's QosRule.should_apply_to_port (neutron/objects/qos/rule.py): the port's own
policy always applies; its network's applies only when the port has none and is not a network
device (device_owner "network:..." or "neutron:..."), except a router's gateway ports
("network:router_gateway", "network:floatingip_agent_gateway"), which get it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from vmqos.core.errors import InvalidValue
from vmqos.core.model.host import HostState, check_device_name

PROFILE_DEVICE = "device"  # vmqos's key in binding:profile: the port's device on its host
NOVA_PREFIX, NOVA_ID_CHARS = "tap", 11  # nova.network.model: NIC_NAME_LEN 14 = "tap" + 11
NETWORK_DEVICE_OWNERS = ("network:", "neutron:")  # neutron_lib.constants.DEVICE_OWNER_PREFIXES
GATEWAY_OWNERS = ("network:floatingip_agent_gateway", "network:router_gateway")  # AGENT_GW, ROUTER_GW
POLICY_PREFIX = "neutron:"  # the enforcer's policies in a scope: "neutron:<QoS policy id>"


def profile_device(profile: Any) -> str | None:
    """The device binding:profile names (checked as a Linux device name), or None when it names none."""
    if not isinstance(profile, dict) or PROFILE_DEVICE not in profile:
        return None
    device = profile[PROFILE_DEVICE]
    if not isinstance(device, str):
        raise InvalidValue("binding:profile device", device, "give the port's device on its host as a string, "
                                                             "e.g. device=tap-vm1")
    return check_device_name(device, "binding:profile device")


def device_name(port_id: str, profile: Any = None) -> str:
    """The port's device on its host: binding:profile's "device", else Nova's tap name."""
    return profile_device(profile) or NOVA_PREFIX + port_id[:NOVA_ID_CHARS]


def network_policy_applies(device_owner: str) -> bool:
    """Whether a port with this device_owner gets its network's QoS policy (when it has none)."""
    gateway = device_owner.startswith(GATEWAY_OWNERS)
    return gateway or not device_owner.startswith(NETWORK_DEVICE_OWNERS)


@dataclass(frozen=True)
class EffectivePolicy:
    policy_id: str
    source: Literal["port", "network"]


def effective_policy(port_policy: str | None, network_policy: str | None, device_owner: str) -> EffectivePolicy | None:
    """The QoS policy that applies to the port, and where it comes from; None when none does."""
    if port_policy is not None:
        return EffectivePolicy(port_policy, "port")
    if network_policy is not None and network_policy_applies(device_owner):
        return EffectivePolicy(network_policy, "network")
    return None


def policy_name(policy_id: str) -> str:
    """The name of a Neutron QoS policy in a scope's desired state: its id, which a rename keeps."""
    return POLICY_PREFIX + policy_id


def without_unused_policies(state: HostState, prefix: str = POLICY_PREFIX) -> HostState:
    """`state` without the policies named `prefix`... that no port or network refers to any more
    (the enforcer's, left behind when their last port was released)."""
    used = {p.policy for _, p in state.ports()} | {n.policy for n in state.networks.values()}
    kept = {name: pol for name, pol in state.policies.items() if not name.startswith(prefix) or name in used}
    return state if len(kept) == len(state.policies) else replace(state, policies=kept)
