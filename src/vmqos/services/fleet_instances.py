"""`GET /v1/instances`: the instances the server knows, from the Neutron ports that name one.

The server has no Nova servers API (only flavors), so an instance is what Neutron knows of it: a
port's `device_id` (Nova's server id), bound to a host (`binding:host_id`), with the device that port
is on that host (Nova's tap name, or binding:profile's `device`). Ports a network owns
(`network:dhcp`, routers) are not instances. The flavor an instance was booted with is not known to
the server: no field pretends to say it.

Who sees what is the fleet's rule (services.fleet_access.read_scope): an admin every instance, a
host's service user that host's, a project's member its project's.
"""

from __future__ import annotations

from vmqos.core.desired.neutron_ports import device_name
from vmqos.services import fleet_access as access
from vmqos.services.fleet_wire import check_host
from vmqos.services.identity import Caller
from vmqos.services.instance_wire import Instance, InstanceList, InstancePort
from vmqos.store import Store
from vmqos.store.neutron_ports import list_ports

__all__ = ["Instance", "InstanceList", "InstancePort", "list_instances"]

NETWORK_OWNED = "network:"  # Neutron's device_owner of DHCP ports, router interfaces, gateways


def list_instances(store: Store, caller: Caller, host: str | None = None) -> list[Instance]:
    """Every instance the caller may see (on `host` only, if given), in the order of their first port."""
    scope = access.read_scope(caller, None if host is None else check_host(host), "reading the fleet's instances")
    found: dict[str, Instance] = {}
    for port in list_ports(store, host_id=scope.host):
        if not port.device_id or port.device_owner.startswith(NETWORK_OWNED):
            continue
        if scope.project_id is not None and port.project_id != scope.project_id:
            continue
        bound = port.host_id or None
        line = InstancePort(port_id=port.id, device=device_name(port.id, port.profile), host=bound,
                            qos_policy_id=port.qos_policy_id)
        known = found.get(port.device_id)
        if known is None:
            found[port.device_id] = Instance(id=port.device_id, project_id=port.project_id,
                                             hosts=[bound] if bound else [], ports=[line])
        else:
            hosts = known.hosts + ([bound] if bound and bound not in known.hosts else [])
            found[port.device_id] = known.model_copy(update={"hosts": hosts, "ports": [*known.ports, line]})
    return list(found.values())
