"""Reading a host file: the whole host (`read_host`) or one instance's QoS (`read`, the format API).

Ties the loader, the shape check and the builder together in the order a read needs them.
"""

from __future__ import annotations

from typing import Any

from vmqos.core.errors import FormatError
from vmqos.core.formats.hostfile.build import Builder
from vmqos.core.formats.hostfile.loader import load
from vmqos.core.formats.hostfile.messages import validate
from vmqos.core.formats.hostfile.places import FMT, Lines
from vmqos.core.model.document import Note, QosDocument
from vmqos.core.model.host import HostState
from vmqos.core.model.network import NetworkQos


def read_host_with_notes(text: str) -> tuple[HostState, tuple[Note, ...]]:
    """A host file as a HostState, and the notes of converting its Neutron policies and Nova flavors."""
    state, builder = _read(text)
    return state, tuple(builder.notes)


def read_host(text: str) -> HostState:
    """A host file (YAML or JSON) as a HostState; FormatError with the line of any mistake."""
    return _read(text)[0]


def _read(text: str) -> tuple[HostState, Builder]:
    data, lines = load(text)
    finder = Lines(lines)
    wire = validate(data, finder)
    builder = Builder(finder)
    return builder.host(wire), builder


def read(text: str, instance: str | None = None, **options: Any) -> QosDocument:
    """The QoS of ONE instance of a host file, without working out what is effective.

    The document is named after the instance; `cpu` is the instance's cpu, else its flavor's;
    `network` and `disk` are the flavor's (they apply to every port and disk the instance does
    not list otherwise); `disks` are the instance's own; `interfaces` maps each port device to
    the port's own policy, else its explicit `limits`, else its network's policy (ports with
    none of these are left out). How a flavor's quota and a port's policy combine on a real host
    is `vmqos.core.desired.effective`'s business, not this view's.

    `instance` names the instance when the file has several. A file without instances but with
    exactly one policy (or `instance` naming a policy) reads as that policy's network QoS.
    """
    state, builder = _read(text)
    if not state.instances:
        return _policy_document(state, builder, instance)
    if instance is None:
        if len(state.instances) > 1:
            raise FormatError(FMT, f"the file has {len(state.instances)} instances ({', '.join(state.instances)}); "
                                   "choose one of them")
        instance = next(iter(state.instances))
    spec = state.instances.get(instance)
    if spec is None:
        raise FormatError(FMT, f"no instance {instance!r} in the file; it has {', '.join(state.instances)}")
    flavor = None if spec.flavor is None else state.flavors[spec.flavor].qos
    notes: list[Note] = list(flavor.notes) if flavor is not None else []
    interfaces: dict[str, NetworkQos] = {}
    for port in spec.ports:
        policy = port.policy
        if policy is None and port.limits is None and port.network is not None:
            policy = state.networks[port.network].policy
        if port.policy is None and port.limits is not None:
            interfaces[port.device] = port.limits
        elif policy is not None:
            interfaces[port.device] = state.policies[policy].qos
            notes.extend(n for n in builder.policy_notes.get(policy, ()) if n not in notes)
    return QosDocument(
        name=spec.name,
        network=None if flavor is None else flavor.network,
        cpu=spec.cpu if spec.cpu is not None else (None if flavor is None else flavor.cpu),
        disk=None if flavor is None else flavor.disk,
        interfaces=interfaces,
        disks=dict(spec.disks),
        notes=tuple(notes),
    )


def _policy_document(state: HostState, builder: Builder, name: str | None) -> QosDocument:
    if not state.policies:
        raise FormatError(FMT, "the file has no instances and no policies; there is nothing to convert")
    if name is None:
        if len(state.policies) > 1:
            raise FormatError(FMT, f"the file has no instances and {len(state.policies)} policies "
                                   f"({', '.join(state.policies)}); choose one of them")
        name = next(iter(state.policies))
    policy = state.policies.get(name)
    if policy is None:
        raise FormatError(FMT, f"no instance or policy {name!r} in the file; its policies are "
                               f"{', '.join(state.policies)}")
    return QosDocument(name=policy.name, network=policy.qos, notes=builder.policy_notes.get(name, ()))
