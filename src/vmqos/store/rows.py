"""A HostState as rows of the state tables and back, each object stored as its host-file JSON.

Encoding refuses what the foreign keys would, with a clearer message; decoding reads each equal
JSON text once into one shared frozen object, which is what keeps a load of 10,000 ports fast.
The host file's codec (its pydantic models: ~0.15 s of import) is imported by the functions that
encode or decode, not with the store: `vmqos server init`, `server user` and `identity` never need it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select

from vmqos.core.errors import ConflictError
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.host import (
    EgressMode,
    Flavor,
    HostState,
    InstanceSpec,
    NetworkSpec,
    Policy,
    PortSpec,
    UplinkSpec,
)
from vmqos.core.model.network import NetworkQos
from vmqos.store import schema as t


def _json(obj: NetworkQos | CpuQos | DiskQos | Flavor) -> str:
    from vmqos.core.formats.hostfile import to_data  # lazy: see the module's docstring
    return json.dumps(to_data(obj), separators=(",", ":"), ensure_ascii=False)


Changed = dict[str, set[str]]  # table name -> the keys of the objects that differ


def changed(base: HostState, new: HostState) -> Changed:
    """The objects of each table that differ between two states (compared by identity first: a state
    changed by `changed_port` shares every object it did not change, so this costs little)."""
    found: Changed = {}
    for table, before, after in (("policies", base.policies, new.policies), ("flavors", base.flavors, new.flavors),
                                 ("networks", base.networks, new.networks),
                                 ("instances", base.instances, new.instances)):
        found[table] = {name for name in before.keys() | after.keys()
                        if before.get(name) is not after.get(name) and before.get(name) != after.get(name)}
    return found


def encode(scope: str, state: HostState, only: Changed | None = None) -> dict[str, list[dict[str, Any]]]:
    """The rows of every state table; refuses what the foreign keys would, with a clearer message.

    `only`: the rows of these objects alone (an instance's rows include its ports'); every reference
    and name is still checked, which is cheap, while encoding the JSON of 1,000 ports is not."""
    from vmqos.core.formats.hostfile import to_data  # lazy: see the module's docstring
    for kind, objects in (("policy", state.policies), ("flavor", state.flavors), ("network", state.networks),
                          ("instance", state.instances)):
        for key, obj in objects.items():
            if obj.name != key:
                raise ConflictError(f"{kind} {key!r} is named {obj.name!r}; a {kind}'s key and name must be equal")
    texts: dict[NetworkQos, str] = {}  # many ports share their limits: encode each once

    def network(qos: NetworkQos | None) -> str | None:
        if qos is None:
            return None
        if qos not in texts:
            texts[qos] = _json(qos)
        return texts[qos]

    def wanted(table: str, name: str) -> bool:
        return only is None or name in only[table]

    rows: dict[str, list[dict[str, Any]]] = {
        "policies": [{"scope": scope, "name": n, "origin": p.origin, "qos": network(p.qos)}
                     for n, p in state.policies.items() if wanted("policies", n)],
        "flavors": [{"scope": scope, "name": n, "doc": _json(f)} for n, f in state.flavors.items()
                    if wanted("flavors", n)],
        "networks": [{"scope": scope, "name": n, "policy": _ref(state.policies, net.policy, f"network {n!r}",
                                                                "policy")}
                     for n, net in state.networks.items() if wanted("networks", n)],
        "instances": [], "ports": [], "port_addresses": [],
        # one row at most, always encoded (cheap): the save compares it and writes it only if it changed
        "uplinks": [] if state.uplink is None else [{"scope": scope, "device": state.uplink.device,
                                                      "capacity_bps": state.uplink.capacity_bps,
                                                      "oversubscribe": state.uplink.oversubscribe}],
    }
    owners: dict[str, str] = {}
    for name, inst in state.instances.items():
        encoded = wanted("instances", name)
        if encoded:
            rows["instances"].append({
                "scope": scope, "name": name,
                "flavor": _ref(state.flavors, inst.flavor, f"instance {name!r}", "flavor"),
                "cpu": None if inst.cpu is None else _json(inst.cpu),
                "disks": json.dumps({d: to_data(q) for d, q in inst.disks.items()}, separators=(",", ":")),
            })
        for position, port in enumerate(inst.ports):
            if port.device in owners:
                raise ConflictError(f"port {port.device!r} is listed twice (instances {owners[port.device]!r} and "
                                    f"{name!r}); device names are unique in a network namespace")
            owners[port.device] = name
            where = f"port {port.device!r}"
            network_ref = _ref(state.networks, port.network, where, "network")
            policy_ref = _ref(state.policies, port.policy, where, "policy")
            if encoded:
                rows["ports"].append({
                    "scope": scope, "device": port.device, "instance": name, "network": network_ref,
                    "policy": policy_ref, "limits": network(port.limits),
                    "egress_mode": EgressMode(port.egress_mode).value, "window_clamp": port.window_clamp,
                    "mtu": port.mtu, "position": position,
                })
                if port.addresses:
                    rows["port_addresses"].append({"scope": scope, "device": port.device,
                                                   "addresses": json.dumps(list(port.addresses))})
    return rows


def _ref(table: dict[str, Any], name: str | None, where: str, kind: str) -> str | None:
    if name is not None and name not in table:
        raise ConflictError(f"{where}: {kind} {name!r} is not defined in the same state; define it or drop the "
                            "reference")
    return name


def canonical(table: str, column: str, text: str, key: str) -> str:
    """A stored JSON text as this vmqos would write it (decoded and encoded again): how a row that an
    older vmqos or another tool wrote in another form (`10000kbit` for `10mbit`) compares equal."""
    from vmqos.core.formats.hostfile import from_data, to_data  # lazy: see the module's docstring
    data = json.loads(text)
    path = (table, key, column)
    if table in ("policies", "ports"):
        return _json(from_data(NetworkQos, data, path=path))
    if table == "flavors":
        return _json(from_data(Flavor, data, path=path, name=key))
    if column == "cpu":
        return _json(from_data(CpuQos, data, path=path))
    return json.dumps({d: to_data(from_data(DiskQos, q, path=(*path, d))) for d, q in data.items()},
                      separators=(",", ":"))


class Decoder:
    """Rows back into a HostState; equal JSON texts are decoded once, into one shared frozen object."""

    def __init__(self) -> None:
        self.cache: dict[tuple[type, str], Any] = {}

    @staticmethod
    def read(conn: Connection, scope: str) -> dict[str, list[tuple[Any, ...]]]:
        """The scope's rows as plain tuples (a Row's attributes cost more than the rest of a load)."""
        p, f, n, i, o = t.policies.c, t.flavors.c, t.networks.c, t.instances.c, t.ports.c
        u, a = t.uplinks.c, t.port_addresses.c
        queries = {
            "policies": select(p.name, p.origin, p.qos).where(p.scope == scope).order_by(p.name),
            "flavors": select(f.name, f.doc).where(f.scope == scope).order_by(f.name),
            "networks": select(n.name, n.policy).where(n.scope == scope).order_by(n.name),
            "instances": select(i.name, i.flavor, i.cpu, i.disks).where(i.scope == scope).order_by(i.name),
            "ports": select(o.instance, o.device, o.network, o.policy, o.limits, o.egress_mode,
                            o.window_clamp, o.mtu)
            .where(o.scope == scope).order_by(o.instance, o.position),
            "port_addresses": select(a.device, a.addresses).where(a.scope == scope),
            "uplinks": select(u.device, u.capacity_bps, u.oversubscribe).where(u.scope == scope),
        }  # dicts come out in name order: the database keeps no other
        return {name: list(conn.execute(query).tuples().all()) for name, query in queries.items()}

    def part(self, kind: type, text: str, *path: str | int) -> Any:
        key = (kind, text)
        if key not in self.cache:
            from vmqos.core.formats.hostfile import from_data  # lazy: see the module's docstring

            self.cache[key] = from_data(kind, json.loads(text), path=path)
        return self.cache[key]

    def state(self, rows: dict[str, list[tuple[Any, ...]]]) -> HostState:
        from vmqos.core.formats.hostfile import from_data  # lazy: see the module's docstring
        policies = {name: Policy(name, self.part(NetworkQos, qos, "policies", name), origin)
                    for name, origin, qos in rows["policies"]}
        flavors = {name: from_data(Flavor, json.loads(doc), path=("flavors", name), name=name)
                   for name, doc in rows["flavors"]}
        networks = {name: NetworkSpec(name, policy) for name, policy in rows["networks"]}
        ports: dict[str, list[PortSpec]] = {}
        addresses_of = {device: tuple(json.loads(text)) for device, text in rows.get("port_addresses", ())}
        for instance, device, network, policy, limits, egress_mode, window_clamp, mtu in rows["ports"]:
            own = ports.setdefault(instance, [])
            if limits is not None:
                limits = self.part(NetworkQos, limits, "instances", instance, "ports", len(own), "limits")
            own.append(PortSpec(device, network, policy, limits, egress_mode, bool(window_clamp), mtu,
                                addresses_of.get(device, ())))
        instances = {}
        for name, flavor, cpu, disks in rows["instances"]:
            if cpu is not None:
                cpu = self.part(CpuQos, cpu, "instances", name, "cpu")
            instances[name] = InstanceSpec(name, flavor, cpu, tuple(ports.get(name, ())), self.disks(name, disks))
        uplink = next((UplinkSpec(device, capacity, bool(over)) for device, capacity, over in rows.get("uplinks", ())),
                      None)
        return HostState(policies=policies, flavors=flavors, networks=networks, instances=instances, uplink=uplink)

    def disks(self, instance: str, text: str) -> dict[str, DiskQos]:
        from vmqos.core.formats.hostfile import from_data  # lazy: see the module's docstring
        if text == "{}":
            return {}
        return {name: from_data(DiskQos, data, path=("instances", instance, "disks", name))
                for name, data in json.loads(text).items()}
