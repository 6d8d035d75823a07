"""vmqos's own policies on the native API (/v1/policies): the model's full network QoS, typed.

Neutron's rules say a rate and a burst per direction, a packet rate, a DSCP mark and minimums; the
vmqos model says more: a peak above the rate, traffic classes that share a direction's limit, a
packet burst, a minimum packet rate for either direction (core.model.network). Here a policy is
that model as JSON in canonical integer units (bit/s, bytes, packet/s), read and written whole.

Two kinds are listed together: vmqos's own (origin "vmqos", stored in store.native_policies,
readable and writable here) and the Neutron policies the caller sees, in this same form (origin
"neutron", read-only here: they change through /v2.0, whose rules they are). A write is checked by
the model itself: a value it refuses is answered 422 with the model's message, which names the
field, the value and the fix (`PolicyInvalid`). A write may be conditional (If-Match with the
policy's `revision`): 412 when someone wrote in between.

Egress mode (shape or police) is not a policy's: the model holds it per port (PortSpec), so it is
not here.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field

from vmqos.core.errors import ConflictError, NotFound, VmqosError
from vmqos.core.formats.hostfile import policy_from_data, policy_to_data
from vmqos.core.model.host import Policy as ModelPolicy
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
    TrafficMatch,
)
from vmqos.services import policies as neutron_policies
from vmqos.services import policy_ports
from vmqos.services.fleet_wire import Wire
from vmqos.services.neutron_listing import Listing, Page, read_query, select
from vmqos.services.identity import Caller, Forbidden
from vmqos.store import Store
from vmqos.store import native_policies as records
from vmqos.store import qos as neutron_records
from vmqos.store.native_policies import StoredNativePolicy

Big = Annotated[int, Field(ge=0, le=2**63 - 1)]
Name = Annotated[str, Field(min_length=1, max_length=255)]


class PolicyInvalid(VmqosError):
    """The model refused a policy's value (422): the message names the field, the value and the fix."""

    http_status = 422


class Bandwidth(Wire):
    rate_bps: Big = Field(description="the long-term rate, bit/s (L2 frames)")
    peak_bps: Big | None = Field(default=None, description="bursts may reach this rate, bit/s (at least rate_bps)")
    burst_bytes: Big | None = Field(default=None, description="how much may pass at peak, bytes (null: vmqos's default)")


class PacketRate(Wire):
    pps: Big = Field(description="packets per second")
    burst_packets: Big | None = None


class Match(Wire):
    protocol: Literal["tcp", "udp", "icmp", "sctp", "icmpv6"] | None = None
    ports: Annotated[list[Annotated[int, Field(ge=0, le=2**31)]], Field(max_length=64)] = Field(default_factory=list)
    dscp: Annotated[int, Field(ge=0, le=2**31)] | None = None


class Class(Wire):
    name: Name
    share_percent: Annotated[int, Field(ge=0, le=2**31)] = Field(description="its share of the direction's limit")
    match: Match | None = Field(default=None, description="null: the class that takes what no other matches")


class Direction(Wire):
    bandwidth: Bandwidth | None = None
    packet_rate: PacketRate | None = None
    dscp: Annotated[int, Field(ge=0, le=2**31)] | None = Field(default=None, description="egress only: the mark set")
    min_bps: Big | None = Field(default=None, description="guaranteed minimum, bit/s")
    min_pps: Big | None = None
    classes: Annotated[list[Class], Field(max_length=250)] = Field(default_factory=list)


class NetworkPolicy(Wire):
    """A policy's network QoS, from the instance's point of view: ingress towards it, egress sent by it."""

    ingress: Direction = Direction()
    egress: Direction = Direction()
    min_pps_any: Big | None = Field(default=None, description="a minimum packet rate for either direction")


class PolicyBody(Wire):
    """What a client writes (POST creates, PUT replaces)."""

    name: Name
    description: Annotated[str, Field(max_length=255)] = ""
    qos: NetworkPolicy


class NativePolicy(Wire):
    id: str
    origin: Literal["vmqos", "neutron"] = Field(description="neutron: read-only here, change it through /v2.0")
    project_id: str
    name: str
    description: str
    revision: int = Field(description="what a conditional write sends back in If-Match (also the ETag)")
    qos: NetworkPolicy


class NativePolicyAnswer(Wire):
    policy: NativePolicy


class PageLink(Wire):
    rel: Literal["next", "previous"]
    href: str = Field(description="the same list from the other side of this page (Neutron's links)")


class NativePolicyList(Wire):
    policies: list[NativePolicy]
    policies_links: list[PageLink] | None = Field(default=None, description="only on a paged list (`limit`): Neutron's "
                                                                    "next / previous links")


# ------------------------------------------------------------------ model <-> wire


def _direction(qos: DirectionQos) -> Direction:
    bw, pr = qos.bandwidth, qos.packet_rate
    return Direction(
        bandwidth=None if bw is None else Bandwidth(rate_bps=bw.rate_bps, peak_bps=bw.peak_bps,
                                                    burst_bytes=bw.burst_bytes),
        packet_rate=None if pr is None else PacketRate(pps=pr.pps, burst_packets=pr.burst_packets),
        dscp=qos.dscp, min_bps=qos.min_bps, min_pps=qos.min_pps,
        classes=classes_to_wire(qos.classes))


def classes_to_wire(classes: tuple[TrafficClass, ...]) -> list[Class]:
    return [Class(name=c.name, share_percent=c.share_percent,
                  match=None if c.match is None else Match(protocol=c.match.protocol,  # type: ignore[arg-type]
                                                           ports=list(c.match.ports), dscp=c.match.dscp))
            for c in classes]


def to_wire(qos: NetworkQos) -> NetworkPolicy:
    return NetworkPolicy(ingress=_direction(qos.ingress), egress=_direction(qos.egress), min_pps_any=qos.min_pps_any)


def _model_direction(wire: Direction, where: str) -> DirectionQos:
    try:
        bandwidth = None if wire.bandwidth is None else BandwidthLimit(
            wire.bandwidth.rate_bps, wire.bandwidth.peak_bps, wire.bandwidth.burst_bytes)
        packet_rate = None if wire.packet_rate is None else PacketRateLimit(wire.packet_rate.pps,
                                                                             wire.packet_rate.burst_packets)
        classes = tuple(TrafficClass(c.name, c.share_percent,
                                     None if c.match is None else TrafficMatch(c.match.protocol, tuple(c.match.ports),
                                                                               c.match.dscp))
                        for c in wire.classes)
        return DirectionQos(bandwidth=bandwidth, packet_rate=packet_rate, dscp=wire.dscp, min_bps=wire.min_bps,
                            min_pps=wire.min_pps, classes=classes)
    except VmqosError as exc:
        raise PolicyInvalid(f"qos.{where}: {exc}") from None


def to_model(wire: NetworkPolicy) -> NetworkQos:
    """The model's NetworkQos, or PolicyInvalid with the model's own message under the field's path."""
    ingress, egress = _model_direction(wire.ingress, "ingress"), _model_direction(wire.egress, "egress")
    try:
        return NetworkQos(ingress=ingress, egress=egress, min_pps_any=wire.min_pps_any)
    except VmqosError as exc:
        raise PolicyInvalid(f"qos: {exc}") from None


def model_policy(policy: NativePolicy) -> ModelPolicy:
    return ModelPolicy(name=policy.name, qos=to_model(policy.qos), origin=policy.origin)


def _native(row: StoredNativePolicy) -> NativePolicy:
    qos = policy_from_data(row.name, json.loads(row.qos), path=("qos",)).qos
    return NativePolicy(id=row.id, origin="vmqos", project_id=row.project_id, name=row.name,
                        description=row.description, revision=row.revision, qos=to_wire(qos))


def _from_neutron(stored: neutron_records.StoredPolicy) -> NativePolicy:
    return NativePolicy(id=stored.id, origin="neutron", project_id=stored.project_id, name=stored.name or "",
                        description=stored.description or "", revision=stored.revision_number,
                        qos=to_wire(neutron_policies.as_policy(stored).qos))


# ------------------------------------------------------------------ use cases


def _check_reader(caller: Caller, action: str) -> None:
    """A project's reader, member or admin; an agent's service account reads desired rows, not policies."""
    if caller.is_service and not caller.is_admin:
        raise Forbidden(f"{action} (user {caller.user.name} is an agent's service account)")
    if caller.project is None and not caller.is_admin:
        raise Forbidden(f"{action} (user {caller.user.name}'s token is scoped to no project)")


def _check_writer(caller: Caller, action: str) -> None:
    _check_reader(caller, action)
    if not caller.can_write:
        raise Forbidden(f"{action} (user {caller.user.name} is a reader of its project: a member or admin writes)")


def _mine(caller: Caller, row: StoredNativePolicy) -> bool:
    return caller.is_admin or (caller.project is not None and caller.project.id == row.project_id)


def _not_found(policy_id: str) -> NotFound:
    return NotFound(f"policy {policy_id}: no such policy in your project (GET /v1/policies lists those you see)")


def list_policies(store: Store, caller: Caller) -> list[NativePolicy]:
    """vmqos's own policies of the caller's project (every project's for an admin), then the Neutron
    policies it sees, each kind by name."""
    _check_reader(caller, "listing policies")
    own = [_native(r) for r in records.read(store, project_id=None if caller.is_admin else _project(caller))]
    neutron = [_from_neutron(p) for p in neutron_records.list_policies(store) if neutron_policies.visible(caller, p)]
    return own + sorted(neutron, key=lambda p: (p.name, p.id))


PAGING = ("limit", "marker", "page_reverse")  # what GET /v1/policies reads of its query string
LISTING = Listing(filters={})  # no filters; Neutron's order: by id, the key, when a page is asked for


def page_policies(store: Store, caller: Caller, params: list[tuple[str, str]]) -> Page | None:
    """The page of `list_policies` that `limit`, `marker` and `page_reverse` ask for, read, ordered and linked
    as a Neutron list is (services.neutron_listing: by id; a marker the caller does not see starts from the
    beginning, as Neutron's object pager does with a marker it cannot load; limit 0: every policy). None
    when the query asks for no page: the list as `list_policies` orders it."""
    asked = [(k, v) for k, v in params if k in PAGING]
    if not any(k == "limit" and v not in ("", "0") for k, v in asked):
        read_query(asked, LISTING)  # a bad limit is refused even when it asks for no page
        return None
    query = read_query(asked, LISTING)
    return select([p.model_dump(mode="json") for p in list_policies(store, caller)], query)


def _project(caller: Caller) -> str:
    return caller.project.id if caller.project is not None else ""


def show_policy(store: Store, caller: Caller, policy_id: str) -> NativePolicy:
    _check_reader(caller, "reading a policy")
    found = records.read(store, policy_id)
    if found and _mine(caller, found[0]):
        return _native(found[0])
    neutron = neutron_records.list_policies(store, policy_id)
    if neutron and neutron_policies.visible(caller, neutron[0]):
        return _from_neutron(neutron[0])
    raise _not_found(policy_id)


def _data(name: str, body: PolicyBody) -> str:
    qos = to_model(body.qos)
    try:
        policy = ModelPolicy(name=name, qos=qos)
    except VmqosError as exc:  # a name the model refuses (a control character): 422 as every refusal here
        raise PolicyInvalid(str(exc)) from None
    return json.dumps(policy_to_data(policy), sort_keys=True, separators=(",", ":"))


def _writable(store: Store, caller: Caller, policy_id: str, action: str) -> StoredNativePolicy:
    _check_writer(caller, action)
    found = records.read(store, policy_id)
    if found and _mine(caller, found[0]):
        return found[0]
    neutron = neutron_records.list_policies(store, policy_id)
    if neutron and neutron_policies.visible(caller, neutron[0]):
        raise ConflictError(f"policy {policy_id} is a Neutron policy: change its rules through Neutron "
                            f"(openstack network qos rule set ... {policy_id}); /v1 writes vmqos's own policies")
    raise _not_found(policy_id)


def create_policy(store: Store, caller: Caller, body: PolicyBody, *, now: datetime | None = None) -> NativePolicy:
    """A new policy of the caller's project (its member or admin)."""
    _check_writer(caller, "creating a policy")
    at = now or datetime.now(UTC)
    row = StoredNativePolicy(str(uuid.uuid4()), _project(caller), body.name, body.description,
                             _data(body.name, body), 1, at, at)
    records.create(store, row)
    return _native(row)


def replace_policy(store: Store, caller: Caller, policy_id: str, body: PolicyBody, *, expect: int | None = None,
                   now: datetime | None = None) -> NativePolicy:
    """Replace a policy whole; conditional on its revision with `expect` (If-Match). The desired rows of the
    ports that follow it take its new content in the same transaction (services.policy_ports)."""
    have = _writable(store, caller, policy_id, "changing a policy")
    at = now or datetime.now(UTC)
    records.save(store, StoredNativePolicy(have.id, have.project_id, body.name, body.description,
                                           _data(body.name, body), have.revision + 1, have.created_at, at),
                 expect=expect, then=policy_ports.then_replaced(policy_id))
    return _native(records.read(store, policy_id)[0])


def delete_policy(store: Store, caller: Caller, policy_id: str, *, expect: int | None = None) -> None:
    """Delete a policy: 409 (QosPolicyInUse) while ports follow it."""
    _writable(store, caller, policy_id, "deleting a policy")
    if not records.remove(store, policy_id, expect=expect, then=policy_ports.then_deleted(policy_id)):
        raise _not_found(policy_id)
