"""Every host's desired state as revisioned rows (host, device): what the agents (and the all-in-one
server, for its own host: `services.neutron_enforcer`) follow.

A Neutron row is derived from the ports, their networks and the QoS policies by THE rule of
`services.neutron_bindings.bind`: the device is Nova's tap
name or binding:profile's, the policy the port's own or its network's, the first port made keeps a
device two ports name; a policy without rules holds nothing. `refresh` recomputes the rows of some
ports (every port at a server's start), writes those whose content changed with the next revision,
and turns the rows of ports that no longer hold a limit into tombstones (unbound, moved, another
device, no policy, a policy without rules, deleted). A row that does not change keeps its revision,
so an agent is woken only for what concerns it. The Neutron writes run it inside their own
transaction (`then_ports`, `then_policy`, `then_network`): a write and its rows commit together.

It reads only what the ports concern: the ports themselves, their networks and policies, the rows
they hold, and the other ports that name the same devices (`fleet_devices`, indexed by host and
device). A policy shared by 10,000 of 100,000 ports reads 10,000 ports, not 100,000.

A native row is set with `set_port` for a host and device no Neutron port names (409 otherwise):
a Neutron port that comes to name it later takes the device over. A native row may name a vmqos
policy (`policy_id`, services.policy_ports): it holds the policy's content, re-derived when it changes.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from vmqos.core.desired.neutron_ports import device_name, policy_name
from vmqos.core.errors import ConflictError, InvalidValue, NotFound, PreconditionFailed, VmqosError
from vmqos.core.formats.hostfile import policy_from_data, policy_to_data
from vmqos.core.model.host import Policy, check_device_name
from vmqos.services import fleet_uplinks
from vmqos.services.fleet_wire import Changes, Desired, RevisionGone, Snapshot, check_host
from vmqos.services.neutron_bindings import PortBinding, bind, enforced_policy
from vmqos.store import Store
from vmqos.store import fleet as records
from vmqos.store.fleet import DesiredRow, DesiredWriter, Key
from vmqos.store.neutron_tables import Then
from vmqos.store.qos import StoredPolicy

log = logging.getLogger(__name__)

Pick = Callable[[DesiredWriter], Collection[str] | None]  # the ports a refresh recomputes (None: every port)
NEUTRON, NATIVE = "neutron", "native"
TOMBSTONE_DAYS = 7  # how long a released device's tombstone is kept: an agent away longer reads /desired again


@dataclass(frozen=True)
class Refreshed:
    """What one refresh did: the revision it wrote (None: nothing changed), the hosts whose rows
    changed, and how many Neutron ports it read (its cost)."""

    revision: int | None
    hosts: frozenset[str]
    rows: int
    ports_read: int
    problems: tuple[str, ...] = ()


def _policy_json(policy: Policy, cache: dict[str, str]) -> str:
    if policy.name not in cache:
        cache[policy.name] = json.dumps(policy_to_data(policy), sort_keys=True, separators=(",", ":"))
    return cache[policy.name]


def _same(have: DesiredRow | None, want: DesiredRow) -> bool:
    """Whether the row already says what `want` says; any tombstone says what another one says."""
    if have is None:
        return want.policy is None
    if want.policy is None:
        return have.policy is None
    return (have.source, have.port_id, have.policy_name, have.policy, have.addresses) == \
        (want.source, want.port_id, want.policy_name, want.policy, want.addresses)


def addresses_json(addresses: Iterable[str]) -> str | None:
    """A row's addresses as stored: a JSON list, None for none (the uplink's classes find the instance by them)."""
    found = list(addresses)
    return json.dumps(found, separators=(",", ":")) if found else None


def _decide(w: DesiredWriter, ids: Collection[str] | None) -> tuple[list[DesiredRow], dict[Key, DesiredRow], list[str]]:
    """The rows the ports `ids` (every port for None) concern, as they must be, and the rows as they are."""
    ports = {p.id: p for p in w.ports(ids)}
    old_claims = w.claims(ids)
    problems: list[str] = []
    claims: dict[str, Key] = {}
    for port in ports.values():
        if port.host_id:
            try:
                claims[port.id] = (port.host_id, device_name(port.id, port.profile))
            except VmqosError as exc:
                problems.append(f"port {port.id}: {exc}")
    w.set_claims([pid for pid, key in old_claims.items() if claims.get(pid) != key],
                 {pid: key for pid, key in claims.items() if old_claims.get(pid) != key})
    held = w.rows_of_ports(ids)
    keys = set(old_claims.values()) | set(claims.values()) | set(held)
    claimants: dict[Key, set[str]] = defaultdict(set)
    for pid, key in claims.items():
        claimants[key].add(pid)
    existing = held
    if ids is not None:  # the other ports that name these devices, or those the ports left: rare
        for others in (w.claimants_beside(claims), w.claimants(keys - set(claims.values()))):
            for key, more in others.items():
                claimants[key].update(more)
        existing = held | w.rows_at(keys - set(held))
        ports.update((p.id, p) for p in w.ports({pid for named in claimants.values() for pid in named} - set(ports)))
    by_host: dict[str, list[str]] = defaultdict(list)
    for (host, _device), pids in claimants.items():
        by_host[host].extend(pids)
    candidates = [ports[pid] for named in by_host.values() for pid in named]
    networks = w.network_policies(None if ids is None else {p.network_id for p in candidates})
    policy_ids = {p.qos_policy_id for p in candidates} | {networks.get(p.network_id) for p in candidates}
    policies = w.policies(None if ids is None else {i for i in policy_ids if i is not None})
    converted: dict[str, Policy] = {}
    decided: dict[Key, PortBinding] = {}
    for host, named in by_host.items():
        bound = bind(host, sorted((ports[pid] for pid in named), key=lambda p: (p.created_at, p.id)), networks,
                     policies, converted)
        problems.extend(bound.problems)
        decided.update(((host, device), binding) for device, binding in bound.ports.items())
    return _wanted(keys, decided, existing, w.at), existing, problems


def _wanted(keys: Iterable[Key], decided: dict[Key, PortBinding], existing: dict[Key, DesiredRow],
            at: datetime) -> list[DesiredRow]:
    """The rows at `keys` that must change: a Neutron port's limit, or a tombstone where a Neutron row
    holds nothing any more; a native row no Neutron port names is left alone."""
    texts: dict[str, str] = {}
    changed = []
    for key in sorted(keys):
        binding, have = decided.get(key), existing.get(key)
        if binding is not None and binding.limits:
            assert binding.policy is not None
            want = DesiredRow(*key, binding.port_id, NEUTRON, binding.policy.name,
                              _policy_json(binding.policy, texts), 0, at, addresses=addresses_json(binding.addresses))
        elif binding is not None:
            want = DesiredRow(*key, binding.port_id, NEUTRON, None, None, 0, at)
        elif have is not None and have.source == NEUTRON:
            want = DesiredRow(*key, have.port_id, NEUTRON, None, None, 0, at)
        else:
            continue
        if not _same(have, want):
            changed.append(want)
    return changed


def _run(w: DesiredWriter, pick: Pick) -> Refreshed:
    changed, existing, problems = _decide(w, pick(w))
    revision = w.write(changed, existing.keys()) if changed else None
    for problem in problems:
        log.warning("%s", problem)
    return Refreshed(revision, frozenset(r.host for r in changed), len(changed), w.ports_read, tuple(problems))


def _refresh(store: Store, what: str, pick: Pick) -> Refreshed:
    with records.desired_writer(store, f"refreshing the desired rows of {what}") as w:
        return _run(w, pick)


def _then(pick: Pick) -> Then:
    """The refresh as a Neutron write's `then`: in the write's own transaction, so that the write and its
    rows commit together or not at all (a refresh that fails undoes the write, as one error)."""
    def run(conn: Connection) -> None:
        _run(DesiredWriter(conn, datetime.now(UTC)), pick)

    return run


def refresh(store: Store, port_ids: Iterable[str] | None = None) -> Refreshed:
    """Recompute the rows of the Neutron ports `port_ids` (every port for None); ids of ports that no
    longer exist release what their rows held."""
    ids = None if port_ids is None else frozenset(port_ids)
    what = "every port" if ids is None else f"{len(ids)} port(s)"
    return _refresh(store, what, lambda w: ids)


def refresh_policy(store: Store, policy_id: str) -> Refreshed:
    """After a change of a QoS policy's rules: the ports that name it, and those of the networks that
    name it which have none of their own (found in the refresh's own transaction)."""
    return _refresh(store, f"the ports of QoS policy {policy_id}", lambda w: w.port_ids_of_policy(policy_id))


def refresh_network(store: Store, network_id: str) -> Refreshed:
    """After a change of a network's QoS policy: its ports."""
    return _refresh(store, f"the ports of network {network_id}", lambda w: w.port_ids_of_network(network_id))


def then_ports(port_ids: Iterable[str]) -> Then:
    """`refresh(port_ids)` inside a port write's transaction (store.neutron_ports.save_port's `then`)."""
    ids = frozenset(port_ids)
    return _then(lambda w: ids)


def then_policy(policy_id: str) -> Then:
    """`refresh_policy` inside a rule change's transaction (store.qos.save_policy's `then`)."""
    return _then(lambda w: w.port_ids_of_policy(policy_id))


def _enforced_text(stored: StoredPolicy) -> str | None:
    """The JSON every live row of the QoS policy holds; None when its ports hold nothing (no rule that
    limits) or it cannot be read (its ports are left out, `bind`)."""
    try:
        policy = enforced_policy(stored)
    except VmqosError:
        return None
    return None if policy.qos.is_empty else _policy_json(policy, {})


def then_rules(before: StoredPolicy, after: StoredPolicy) -> Then:
    """After a change of a QoS policy's rules, in its transaction. The rules decide what the policy's rows
    hold, not which ports hold one (devices, the first port's claim, the policy a port gets: `bind` reads
    no rule): when the policy held limits before and holds limits after, the rows that held it get the new
    text in one set-based UPDATE with one revision (`DesiredWriter.rewrite_policy`), without reading a
    port. When it held nothing before or holds nothing after (the first rule that limits added, the last
    removed), or cannot be read, its ports gain or lose rows: the full refresh (`then_policy`)."""
    full = then_policy(after.id)

    def run(conn: Connection) -> None:
        was, now = _enforced_text(before), _enforced_text(after)
        if was is None or now is None:
            full(conn)
        elif was != now:
            DesiredWriter(conn, datetime.now(UTC)).rewrite_policy(NEUTRON, policy_name(after.id), now)

    return run


def then_network(network_id: str) -> Then:
    """`refresh_network` inside a network write's transaction (store.neutron_ports.save_network's `then`)."""
    return _then(lambda w: w.port_ids_of_network(network_id))


def compact(store: Store, *, now: datetime | None = None, keep: timedelta = timedelta(days=TOMBSTONE_DAYS)) -> int:
    """Forget the tombstones older than `keep`; the number forgotten."""
    return records.compact(store, (now or datetime.now(UTC)) - keep)


# ------------------------------------------------------------------ what the agents read


def desired(row: DesiredRow) -> Desired:
    return Desired(device=row.device, port_id=row.port_id, source=row.source,  # type: ignore[arg-type]
                   revision=row.revision, policy_name=row.policy_name,
                   policy=None if row.policy is None else json.loads(row.policy),
                   addresses=json.loads(row.addresses) if row.addresses and row.policy is not None else [])


def desired_batch(rows: Iterable[DesiredRow]) -> list[Desired]:
    """`desired` of many rows at once, for the long poll's ticker: a shared policy's change brings 10,000 rows
    that hold one and the same policy text, so each distinct text is parsed once and its dict shared by
    its rows (nothing mutates them: they are only serialized); and the rows, read from our own store, where
    they were validated on the way in, are not validated again (`model_construct`). The same values as
    `desired` (tests/server/test_fleet_watch.py); ≈2 times less CPU on the event loop for 10,000 rows."""
    texts: dict[str, Any] = {}
    found = []
    for row in rows:
        policy = None
        if row.policy is not None:
            policy = texts.get(row.policy)
            if policy is None:
                policy = texts[row.policy] = json.loads(row.policy)
        found.append(Desired.model_construct(
            device=row.device, port_id=row.port_id, source=row.source, revision=row.revision,
            policy_name=row.policy_name, policy=policy,
            addresses=json.loads(row.addresses) if row.addresses and row.policy is not None else []))
    return found


def snapshot(store: Store, host: str) -> Snapshot:
    """Every live row of the host, and the revision at the time of reading (the next `since`)."""
    counters, rows = records.host_rows(store, check_host(host))
    return Snapshot(host=host, revision=counters.revision, ports=[desired(r) for r in rows],
                    uplink=fleet_uplinks.desired_uplink(store, host))


def changes(store: Store, host: str, since: int) -> Changes:
    """The rows of the host above `since`, tombstones included. RevisionGone (410) when `since` is below
    the compacted floor; InvalidValue (400) when it is above the current revision (not this server's)."""
    counters, rows = records.host_rows(store, check_host(host), since=since)
    if since > counters.revision:
        raise InvalidValue("since", since, f"the server's revision is {counters.revision}: give a revision it "
                                           "answered, or read /v1/hosts/{host}/desired again")
    if since < counters.floor:
        raise RevisionGone(f"since: revision {since} is older than what the server keeps (tombstones up to "
                           f"{counters.floor} were compacted); read /v1/hosts/{host}/desired again")
    return Changes(host=host, revision=counters.revision, changes=[desired(r) for r in rows],
                   uplink=fleet_uplinks.desired_uplink(store, host, since))


def host_wanted(store: Store, host: str) -> dict[str, tuple[str | None, Policy]]:
    """Device -> (Neutron port id or None, the Policy it must hold), from the host's live rows read back
    as policies: the tests compare it with what the bindings decide (the enforcers themselves read the
    wire answer, `snapshot`, as an agent does: services.neutron_enforcer.host_wanted)."""
    _counters, rows = records.host_rows(store, host)
    return {r.device: (r.port_id, policy_from_data(r.policy_name or f"{NATIVE}:{r.device}", json.loads(r.policy)))
            for r in rows if r.policy is not None}


# ------------------------------------------------------------------ native rows


def _check_native(w: DesiredWriter, host: str, device: str) -> DesiredRow | None:
    """The row at (host, device), which no Neutron port may name (409)."""
    named = sorted(w.claimants([(host, device)]).get((host, device), []))
    if named:
        raise ConflictError(f"device {device} on host {host} is Neutron port {named[0]}'s: change its QoS policy "
                            f"through Neutron (openstack port set --qos-policy POLICY {named[0]})")
    return w.rows_at([(host, device)]).get((host, device))


@dataclass(frozen=True)
class Expect:
    """What a conditional write expects the row to be: at `revision` (If-Match; a tombstone has one too),
    or without a live limit (`absent`: If-None-Match: *). Neither: an unconditional write."""

    revision: int | None = None
    absent: bool = False


def _check_expected(have: DesiredRow | None, expect: Expect, host: str, device: str) -> None:
    """412 unless the row is as the writer read it: checked in the writer's transaction, so that two
    read-modify-write clients never both win (the second's change would silently drop the first's)."""
    current = None if have is None else have.revision
    if expect.revision is not None and current != expect.revision:
        raise PreconditionFailed(
            f"device {device} on host {host}: it is at revision {current if current is not None else 'none'}, not "
            f"{expect.revision} as read (If-Match): someone changed it in between; read it again (GET) and "
            "apply the change to what it holds now")
    if expect.absent and have is not None and have.policy is not None:
        raise PreconditionFailed(
            f"device {device} on host {host}: it has limits since revision {have.revision} (If-None-Match: *): "
            "someone set them in between; read it again (GET) and apply the change to what it holds now")


def set_port(store: Store, host: str, device: str, policy: Policy, expect: Expect = Expect(),
             addresses: Iterable[str] = ()) -> Desired:
    """Give the device of a host the policy (and its instance's `addresses`, for the host's uplink), as a
    native row (409 when a Neutron port names the device; 412 when `expect` does not hold)."""
    check_host(host)
    check_device_name(device, "device")
    with records.desired_writer(store, f"setting device {device} on host {host}") as w:
        return write_native(w, host, device, policy, expect, addresses=addresses)


def write_native(w: DesiredWriter, host: str, device: str, policy: Policy, expect: Expect = Expect(),
                 policy_id: str | None = None, addresses: Iterable[str] = ()) -> Desired:
    """`set_port` in the writer's transaction; `policy_id`: the vmqos policy (/v1/policies) `policy` was
    resolved from, kept on the row so that a change of that policy re-derives it (services.policy_ports)."""
    text = json.dumps(policy_to_data(policy), sort_keys=True, separators=(",", ":"))
    ips = addresses_json(addresses)
    have = _check_native(w, host, device)
    _check_expected(have, expect, host, device)
    if have is not None and (have.source, have.policy_name, have.policy, have.policy_id, have.addresses) == \
            (NATIVE, policy.name, text, policy_id, ips):
        return desired(have)
    want = DesiredRow(host, device, None, NATIVE, policy.name, text, 0, w.at, policy_id, ips)
    revision = w.write([want], [] if have is None else [(host, device)])
    return desired(DesiredRow(host, device, None, NATIVE, policy.name, text, revision, w.at, policy_id, ips))


def clear_port(store: Store, host: str, device: str) -> None:
    """Release the device's native row (a tombstone); NotFound when it has none, 409 when it is Neutron's."""
    check_host(host)
    check_device_name(device, "device")
    with records.desired_writer(store, f"clearing device {device} on host {host}") as w:
        have = _check_native(w, host, device)
        if have is None or have.policy is None:
            raise NotFound(f"device {device} on host {host} has no limit set with the native API "
                           "(GET /v1/ports?host=HOST lists what is)")
        w.write([DesiredRow(host, device, None, NATIVE, None, None, 0, w.at)], [(host, device)])
