"""Containers attached by a CNI runtime: their host-side veth as a port of an instance, through the same door.

`vmqos-cni` (vmqos.cni) calls these for ADD, CHECK and DEL. A container is an instance of the desired
state of the namespace the plugin runs in (`cni-` + its id's first 12 characters), its host-side veth
that instance's port with the limits of the network configuration; so `vmqos top`, `port show`, the
monitor and `verify` see it as any lab instance, and `vmqos port set DEV` changes its limits live.
The kernel is changed by the reconciler (`services.ports.reconcile_ports`: replace-only, a failed port
rolled back), under the scope's writer, as `port set` does.

The attachment row (`store.containers`) is written before the kernel is touched, so a plugin killed
mid-ADD leaves a row that DEL finds; DEL clears the port whether its device still exists or not, and
removes the IFB and chains of vmqos's naming the port left behind (a crash's, or a device deleted
first). Nothing here raises for a container that was never attached: DEL must succeed then.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace

from vmqos.core.desired.ports import _find_port, scope_of, without_port
from vmqos.core.errors import ConflictError, InvalidValue, NotFound, VmqosError
from vmqos.core.formats.cni import instance_name
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, Policy, PortSpec
from vmqos.core.model.network import NetworkQos
from vmqos.core.plan.names import chain_owners, counter_port, ifb_name
from vmqos.core.plan.orphans import Orphans, find_orphans
from vmqos.drivers.veth import current_netns_name, name_of_index, peer_index
from vmqos.reconcile.execute import Reconciler
from vmqos.services.ports import Kernel, reconcile_ports, show_port
from vmqos.services.results import ApplyReport, PortShow
from vmqos.store import Store
from vmqos.store import containers as rows
from vmqos.store.qos import list_policies

ACTOR = "vmqos-cni"


@dataclass(frozen=True)
class ContainerWant:
    """What a runtime's ADD asks for one attachment (CNI's key: network, container id, interface)."""

    network: str
    container_id: str
    ifname: str
    netns_path: str
    qos: NetworkQos
    egress_mode: EgressMode = EgressMode.SHAPE
    policy: str | None = None  # a policy of the scope's desired state, or a Neutron policy's name
    server_policy: Policy | None = None  # `policy` as a vmqos server gave it (services.server_policies): wins


@dataclass(frozen=True)
class Attached:
    scope_netns: str | None  # the namespace whose scope holds the port (None: the host's own)
    device: str
    instance: str
    report: ApplyReport


def plugin_netns() -> str | None:
    """The namespace the plugin runs in, by name (None: the host's own): its ports are that scope's."""
    return current_netns_name()


def host_device(netns_path: str, ifname: str, candidates: tuple[str, ...], scope_netns: str | None) -> str:
    """The host side of the container's `ifname`: its veth peer, which prevResult must list as a host
    interface (the bandwidth plugin's rule; an empty list is trusted, for a network plugin of 0.3.0
    that lists none)."""
    name = name_of_index(peer_index(netns_path, ifname), scope_netns)
    if name is None:
        raise NotFound(f"the veth peer of {ifname} in {netns_path} is not in "
                       f"{'netns ' + scope_netns if scope_netns else 'the host namespace'}, where vmqos-cni runs")
    if candidates and name not in candidates:
        raise NotFound(f"the veth peer {name} of {ifname} is not among prevResult's host interfaces "
                       f"({', '.join(candidates)}); chain vmqos-cni after the plugin that made the veth")
    return name


def named_policy(store: Store, state: HostState, name: str) -> Policy:
    """A policy by name: the scope's own, else a Neutron policy of the server sharing this database."""
    if name in state.policies:
        return state.policies[name]
    found = [p for p in list_policies(store) if p.name == name]
    if len(found) > 1:
        ids = ", ".join(p.id for p in found)
        raise ConflictError(f"policy: {len(found)} Neutron policies are named {name!r} ({ids}); rename one, or set "
                            "the policy on the port with `vmqos port set`")
    if not found:
        known = sorted(set(state.policies) | {p.name for p in list_policies(store) if p.name})
        raise InvalidValue("policy", name, f"it is neither in this scope's desired state nor a Neutron policy of this "
                                           f"database (known: {', '.join(known) or 'none'}); create it with "
                                           "`openstack network qos policy create` on the vmqos server, or name the "
                                           "server's database in vmqosDatabase")
    from vmqos.services.policies import as_policy  # the Neutron rules read as the model's policy

    return as_policy(found[0])


def _with_container(state: HostState, instance: str, port: PortSpec, policy: Policy | None) -> HostState:
    state = without_port(state, port.device)  # a device reused after a crash leaves its old instance
    instances = dict(state.instances)
    old = instances.get(instance)
    others = tuple(p for p in old.ports if p.device != port.device) if old else ()
    instances[instance] = InstanceSpec(instance, ports=others + (port,))
    policies = dict(state.policies)
    if policy is not None:
        policies[policy.name] = policy
    return replace(state, instances=instances, policies=policies)


def _without_container_port(state: HostState, instance: str, device: str) -> HostState:
    state = without_port(state, device)
    inst = state.instances.get(instance)
    if inst is not None and not inst.ports and not (inst.flavor or inst.cpu or inst.disks):
        state = replace(state, instances={k: v for k, v in state.instances.items() if k != instance})
    return state


def attach(store: Store, want: ContainerWant, candidates: tuple[str, ...], *,
           kernel: Kernel | None = None) -> Attached:
    """ADD: the veth's limits on the kernel and in the desired state. Idempotent: a second ADD, or one
    after a crash, converges on the same objects (the reconciler replaces, never adds twice)."""
    scope_netns = plugin_netns()
    scope = scope_of(scope_netns)
    device = host_device(want.netns_path, want.ifname, candidates, scope_netns)
    with store.writer(scope):
        before = rows.find(store, want.network, want.container_id, want.ifname)
        instance = instance_name(want.container_id)
        if any(r.instance == instance and r.container_id != want.container_id for r in rows.listed(store, scope)):
            instance = "cni-" + want.container_id  # two ids with the same first 12 characters: the whole id
        rows.record(store, rows.Attachment(want.network, want.container_id, want.ifname, scope, device, instance,
                                           want.netns_path, socket.gethostname()))  # the intent, first
        state = store.load(scope)
        if before is not None and before.device and before.device != device:  # an older ADD's veth
            _clear(store, scope_netns, state, before.device, before.instance, kernel)
            state = store.load(scope)
        policy = want.server_policy or (named_policy(store, state, want.policy) if want.policy else None)
        port = PortSpec(device, policy=policy.name if policy else None,
                        limits=None if want.qos.is_empty else want.qos, egress_mode=want.egress_mode)
        new_state = _with_container(state, instance, port, policy)
        report = reconcile_ports(store, scope_netns, new_state, [device], kernel=kernel)
        if not report.ok:
            return Attached(scope_netns, device, instance, report)  # rolled back; the row stays for DEL
        store.save(scope, new_state, actor=ACTOR, summary=f"container {want.container_id[:12]} port {device}",
                   base=state)
        rows.record(store, rows.Attachment(want.network, want.container_id, want.ifname, scope, device, instance,
                                           want.netns_path, socket.gethostname(), rows.ADDED))
    return Attached(scope_netns, device, instance, report)


def _clear(store: Store, scope_netns: str | None, state: HostState, device: str, instance: str,
           kernel: Kernel | None) -> ApplyReport:
    """The port's objects off the kernel (device there or gone), then what of it is left loose."""
    scope = scope_of(scope_netns)
    report = reconcile_ports(store, scope_netns, state, [], clear=[device], kernel=kernel)
    if kernel is None:
        with Reconciler(scope_netns) as rec:
            known = {p.device for _, p in state.ports()} | set(store.applied(scope))
            found = find_orphans(rec.inventory(), known - {device})
            owners = chain_owners([device])
            mine = Orphans(ifbs=tuple(i for i in found.ifbs if i == ifb_name(device)),
                           chains=tuple(c for c in found.chains if c in owners),
                           counters=tuple(c for c in found.counters if counter_port(c, owners) == device))
            if mine:
                report = ApplyReport(report.results + rec.remove_loose(mine), report.notes)
    if all(r.error is None or r.error.startswith(f"device {device} does not exist") for r in report.results):
        store.save(scope, _without_container_port(state, instance, device), actor=ACTOR,
                   summary=f"released port {device}", base=state)
        store.record_applied_many(scope, {device: None})
    return report


def detach(store: Store, network: str, container_id: str, ifname: str, *,
           kernel: Kernel | None = None) -> ApplyReport | None:
    """DEL: everything the attachment made, whether the container's namespace or the veth still exist
    or not. None when nothing was attached (DEL twice, DEL of a failed ADD): that is success too."""
    found = rows.find(store, network, container_id, ifname)
    if found is None:
        return None
    scope_netns = found.scope or None
    report = None
    with store.writer(found.scope):
        if found.device:
            state = store.load(found.scope)
            report = _clear(store, scope_netns, state, found.device, found.instance, kernel)
            failed = [r.error for r in report.results if r.error
                      and not r.error.startswith(f"device {found.device} does not exist")]
            if failed:
                raise VmqosError(f"port {found.device} of container {container_id[:12]} could not be cleared: "
                                 f"{failed[0]}")
        rows.forget(store, network, container_id, ifname)
    return report


def check(store: Store, network: str, container_id: str, ifname: str, netns_path: str,
          candidates: tuple[str, ...]) -> PortShow:
    """CHECK: the attachment exists, its veth is still the container's, and the kernel holds what the
    desired state says (drift fails: a foreign qdisc, a removed chain, changed classes)."""
    found = rows.find(store, network, container_id, ifname)
    if found is None or found.state != rows.ADDED or not found.device:
        raise NotFound(f"container {container_id[:12]} has no finished attachment to network {network} on {ifname}"
                       " (ADD did not run or did not finish)")
    scope_netns = found.scope or None
    device = host_device(netns_path, ifname, candidates, scope_netns)
    if device != found.device:
        raise ConflictError(f"the veth peer of {ifname} is {device} now, not {found.device} which ADD limited; "
                            "run ADD again")
    shown = show_port(store, scope_netns, device)
    state = store.load(found.scope)
    owner = _find_port(state, device)
    if owner is None or owner[0].name != found.instance:
        raise ConflictError(f"port {device} is no longer the port of instance {found.instance} in the desired state "
                            f"({'instance ' + owner[0].name if owner else 'not managed'})")
    if not shown.kernel.in_sync:
        raise ConflictError(f"port {device} drifted from its limits: {'; '.join(shown.kernel.operations_needed)} "
                            "would bring it back (ADD again, or `vmqos apply`)")
    return shown
