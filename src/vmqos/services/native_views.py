"""The native API's views of what the Neutron and Cinder subsets hold: a port's effective QoS, volumes.

A port's effective QoS is what the kernel should hold on its device: every source of it combined by
THE rule of `core.desired.effective.combine` (the one `vmqos port show` uses on one host): the
port's own native limits, else the Neutron port's policy, else its network's (Neutron's
precedence), and the `quota:vif_*` of the flavor its instance was booted with, limits field by
field, the most restrictive winning, each value with its source. The instance's flavor comes from
the server's own record first (PUT /v1/hosts/{host}/instances/{id}, services.instance_flavors),
else from its host's agent (the inventory it registered: a libvirt domain's Nova metadata names the
flavor and the port ids); `flavor_source` says which; without either the flavor is not a source.
The desired row an agent follows carries the policy alone: on a Nova host, libvirt applies the
flavor's quota from the domain's own <bandwidth>, and the effective values say what both make.

A volume shows its type's QoS spec as the disk QoS it puts on the host, at the volume's size
(per-GB keys made absolute), in canonical units: bytes and I/O per second
(`services.cinder_volumes.volume_disk_qos`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vmqos.core.desired.effective import EffectiveDirection, QosSource, Sourced, combine
from vmqos.core.errors import VmqosError
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.services import cinder_volumes, fleet_hosts, instance_flavors
from vmqos.services.flavors import flavor_qos
from vmqos.services.fleet_wire import Inventory, Wire
from vmqos.services.identity import Caller
from vmqos.services.native_policies import Class, NetworkPolicy, classes_to_wire, to_wire
from vmqos.store import Store
from vmqos.store import fleet_status as status_records
from vmqos.store import nova as nova_records
from vmqos.store.neutron_ports import list_ports

# ------------------------------------------------------------------ a port's effective QoS


class SourcedValue(Wire):
    value: int
    source: str = Field(description="where the value comes from: 'port policy ID', 'flavor NAME', ...")


class EffectiveValues(Wire):
    rate_bps: SourcedValue | None = None
    peak_bps: SourcedValue | None = None
    burst_bytes: SourcedValue | None = None
    pps: SourcedValue | None = None
    pps_burst: SourcedValue | None = None
    dscp: SourcedValue | None = None
    min_bps: SourcedValue | None = None
    classes: list[Class] | None = None
    classes_source: str | None = None


class EffectivePort(Wire):
    host: str
    device: str
    port_id: str | None
    flavor: str | None = Field(description="the instance's flavor; null: unknown to the server (neither "
                                           "recorded nor in the agent's inventory), so not a source")
    flavor_source: Literal["server", "agent"] | None = Field(
        default=None, description="server: recorded with PUT /v1/hosts/{host}/instances/{id}; agent: the host's agent's "
                          "inventory (libvirt's Nova metadata)")
    sources: list[str] = Field(description="every source, in precedence order")
    ingress: EffectiveValues
    egress: EffectiveValues
    qos: NetworkPolicy = Field(description="the combined values, without their sources")
    notes: list[str] = Field(description="what works badly (core.model.checks), e.g. a burst below one MTU")


class EffectivePortAnswer(Wire):
    effective: EffectivePort


def _value(item: Sourced[int] | None) -> SourcedValue | None:
    return None if item is None else SourcedValue(value=item.value, source=item.source)


def _values(direction: EffectiveDirection) -> EffectiveValues:
    classes = direction.classes
    wire_classes = None if classes is None else classes_to_wire(classes.value)
    return EffectiveValues(rate_bps=_value(direction.rate_bps), peak_bps=_value(direction.peak_bps),
                           burst_bytes=_value(direction.burst_bytes), pps=_value(direction.pps),
                           pps_burst=_value(direction.pps_burst), dscp=_value(direction.dscp),
                           min_bps=_value(direction.min_bps), classes=wire_classes,
                           classes_source=None if classes is None else classes.source)


def _flavor_of(store: Store, host: str, device: str, port_id: str | None) -> str | None:
    """The flavor the host's agent found the port's instance booted with (libvirt's Nova metadata)."""
    found = status_records.hosts(store, host)
    if not found or not found[0].inventory:
        return None
    for domain in Inventory.model_validate_json(found[0].inventory).domains:
        if domain.nova is None or not domain.nova.flavor:
            continue
        if (port_id is not None and port_id in domain.nova.port_ids) or \
                any(i.device == device for i in domain.interfaces):
            return domain.nova.flavor
    return None


def _flavor_source(store: Store, name: str) -> QosSource | None:
    matching = [f for f in nova_records.list_flavors(store) if f.name == name]
    if len(matching) != 1:  # none, or two of one name: no source rather than a guess
        return None
    qos = flavor_qos(store, matching[0].id).qos.network
    return None if qos is None else QosSource(f"flavor {name}", qos)


def _policy_label(store: Store, port_id: str | None, policy_name: str | None) -> str:
    policy_id = (policy_name or "").removeprefix("neutron:")
    neutron = list_ports(store, port_id) if port_id else []
    if neutron and neutron[0].qos_policy_id is None:
        return f"network {neutron[0].network_id} policy {policy_id}"
    return f"port policy {policy_id}"


def port_effective(store: Store, caller: Caller, host: str, device: str) -> EffectivePort:
    """The device's effective QoS with the source of every value (to whoever may read the port: 404
    otherwise, as `show_port`)."""
    port = fleet_hosts.show_port(store, caller, host, device)
    sources: list[QosSource] = []
    if port.policy is not None:
        qos = policy_from_data(port.policy_name or "policy", port.policy, path=("policy",)).qos
        label = (f"vmqos policy {port.policy_id}" if port.policy_id is not None
                 else f"port {device} limits ({port.policy_name})" if port.source == "native"
                 else _policy_label(store, port.port_id, port.policy_name))
        sources.append(QosSource(label, qos))
    neutron = list_ports(store, port.port_id) if port.port_id else []
    flavor = instance_flavors.flavor_of(store, host, device, neutron[0].device_id if neutron else None)
    flavor_source: Literal["server", "agent"] | None = "server" if flavor is not None else None
    if flavor is None:
        flavor = _flavor_of(store, host, device, port.port_id)
        flavor_source = "agent" if flavor is not None else None
    if flavor is not None:
        try:
            found = _flavor_source(store, flavor)
        except VmqosError:  # a flavor whose specs no longer read: said as a note, not a failure of the view
            found = None
        if found is not None:
            sources.append(found)
    merged = combine(sources)
    return EffectivePort(host=host, device=device, port_id=port.port_id, flavor=flavor, flavor_source=flavor_source,
                         sources=[s.label for s in sources], ingress=_values(merged.ingress),
                         egress=_values(merged.egress), qos=to_wire(merged.qos()),
                         notes=[str(n) for n in merged.notes])


# ------------------------------------------------------------------ volumes


class NativeVolume(Wire):
    id: str
    project_id: str
    name: str | None
    size_gb: int
    status: str
    type_id: str | None
    qos_spec_id: str | None
    consumer: str | None = Field(description="front-end: the host enforces it; back-end: the storage does")
    disk: dict[str, int | str] | None = Field(description="the disk QoS on the host at this size: bytes/s and "
                                                           "I/O/s (QEMU's iotune keys); null: nothing on the host")
    notes: list[str]


class NativeVolumeAnswer(Wire):
    volume: NativeVolume


class NativeVolumeList(Wire):
    volumes: list[NativeVolume]


def _volume(store: Store, volume: cinder_volumes.StoredVolume) -> NativeVolume:
    qos = cinder_volumes.volume_disk_qos(store, volume.id)
    disk = None if qos.disk is None else {k: v for k, v in qos.disk.items().items() if v is not None}
    return NativeVolume(id=volume.id, project_id=volume.project_id, name=volume.name, size_gb=volume.size,
                        status=volume.status, type_id=volume.type_id, qos_spec_id=qos.qos_spec_id,
                        consumer=qos.consumer, disk=disk, notes=[str(n) for n in qos.notes])


def list_volumes(store: Store, caller: Caller, *, all_projects: bool = False) -> list[NativeVolume]:
    """The caller's project's volumes (every project's for an admin with `all_projects`)."""
    query = {"all_tenants": "1"} if all_projects and caller.is_admin else {}
    return [_volume(store, v) for v in cinder_volumes.list_volumes(store, caller, query)]


def show_volume(store: Store, caller: Caller, volume_id: str) -> NativeVolume:
    return _volume(store, cinder_volumes.get_volume(store, caller, volume_id))
