"""The /v1 fleet protocol's bodies (docs/fleet-protocol.md), one definition for the server and the agent.

The API declares its requests and answers with these models (so /openapi.json is the contract),
the use cases return them, and `services.server_client` parses the answers into them and sends
requests built from them: a field changed here changes both ends at once. A policy travels in the
host file's form (`core.formats.hostfile.policy_to_data`); `Desired.as_policy` reads it back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from vmqos.core.errors import InvalidValue, RevisionGone, VmqosError
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.core.model.host import Policy, check_device_name
from vmqos.services.wire_skew import FromAgent

PortStatus = Literal["in_sync", "drift", "error", "pending"]
HostStatus = Literal["in_sync", "drift", "error", "unknown", "unreachable"]
MAX_ITEMS = 20_000  # per list of a report: a host's every port, with room to spare
MAX_TEXT = 4096
MAX_REVISION = 2**63 - 1  # revisions are 64-bit integers in the store


def _device(value: str) -> str:
    try:
        return check_device_name(value, "device")
    except VmqosError as exc:
        raise ValueError(str(exc)) from None


def check_host(value: str) -> str:
    """A host's name as Neutron's binding:host_id and the agent's --host give it."""
    if not 1 <= len(value) <= 255 or value != value.strip() or any(c in "/\x00" or not c.isprintable()
                                                                    for c in value):
        raise InvalidValue("host", value, "a host name is 1 to 255 printable characters, without '/' or "
                                          "surrounding spaces (the agent's --host, a port's binding:host_id)")
    return value


def _utc(value: datetime) -> datetime:
    """An instant; one without a zone is read as UTC (what the agents send)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _at_most(items: list[Any]) -> list[Any]:
    """Checked here, not declared (maxItems): a generator of examples would build lists that long."""
    if len(items) > MAX_ITEMS:
        raise ValueError(f"{len(items)} items: give at most {MAX_ITEMS} in one request (split it)")
    return items


Device = Annotated[str, AfterValidator(_device)]
Instant = Annotated[datetime, AfterValidator(_utc)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Open(BaseModel):
    """What an agent finds on its host: kept as sent, fields beyond these included."""

    model_config = ConfigDict(frozen=True, extra="allow")


# ------------------------------------------------------------------ desired state


class Desired(Wire):
    """One (host, device) row: the policy the device must hold, or None: release the device."""

    device: str
    port_id: str | None = Field(description="the Neutron port's id; null for a row set with the native API")
    source: Literal["neutron", "native"]
    revision: int = Field(description="the global revision at which the row last changed")
    policy_name: str | None = Field(description="the policy's name in the agent's scope (neutron:<QoS policy "
                                                "id> for Neutron's, vmqos:<policy id> for a native row that "
                                                "follows a /v1 policy); null for a tombstone")
    policy: dict[str, Any] | None = Field(description="the policy in the host file's form; null: a tombstone, "
                                                      "the device must be released")
    addresses: list[str] = Field(default_factory=list, description="the instance's addresses on the port (a Neutron "
                                 "port's fixed_ips): the host's uplink holds its guarantee by them")

    def as_policy(self) -> Policy | None:
        """The vmqos Policy the device must hold; None for a tombstone."""
        if self.policy is None:
            return None
        return policy_from_data(self.policy_name or f"native:{self.device}", self.policy, path=("policy",))


MIN_CAPACITY_BPS, MAX_CAPACITY_BPS = 1_000_000, 4_000_000_000_000  # core.model.host.UplinkSpec's bounds


class Uplink(Wire):
    """A host's uplink (issue 16): its shared link, where the ports' guaranteed minimums are held."""

    device: Device = Field(description="the host's physical or bond device (the lab's wan0)")
    capacity_bps: int = Field(ge=MIN_CAPACITY_BPS, le=MAX_CAPACITY_BPS,
                              description="what the link carries, in bit/s (10 Gbit/s: 10000000000)")
    oversubscribe: bool = Field(default=False, description="guarantees above the capacity are scaled down to fit "
                                                           "(with a warning) instead of refused")


class DesiredUplink(Wire):
    revision: int = Field(description="the global revision at which the host's uplink last changed")
    uplink: Uplink | None = Field(description="null: the uplink was removed, its tree must be released")


class Snapshot(Wire):
    host: str
    revision: int = Field(description="the global revision at the time of reading: the next `since`")
    ports: list[Desired]
    uplink: DesiredUplink | None = Field(default=None, description="the host's uplink; null: it has none")


class Changes(Wire):
    host: str
    revision: int = Field(description="the next `since`")
    changes: list[Desired] = Field(description="rows of the host above `since`, tombstones included, in "
                                               "revision order")
    uplink: DesiredUplink | None = Field(default=None, description="the host's uplink, when it changed above "
                                                                   "`since`")


class HostUplink(Wire):
    """A host's uplink as the server wants it, with what its agent last reported of it."""

    host: str
    uplink: Uplink
    revision: int
    status: Literal["in_sync", "drift", "error", "pending", "unknown"] = Field(
        description="the agent's last word on the uplink; error: refused (one line why in message) or failed")
    message: str
    reported_at: datetime | None


class HostUplinkAnswer(Wire):
    uplink: HostUplink


# ------------------------------------------------------------------ hosts


class InventoryPort(Open):
    device: str
    kind: str | None = None
    mac: str | None = None


class DomainInterface(Open):
    device: str | None = None
    mac: str | None = None


class DomainDisk(Open):
    target: str
    source: str | None = None


class NovaInstance(Open):
    instance_uuid: str | None = None
    flavor: str | None = None
    port_ids: list[str] = []


class Domain(Open):
    name: str
    uuid: str | None = None
    state: str | None = None
    interfaces: list[DomainInterface] = []
    disks: list[DomainDisk] = []
    nova: NovaInstance | None = None


class LabInstance(Open):
    name: str
    ports: list[str] = []


class Inventory(Open):
    ports: Annotated[list[InventoryPort], AfterValidator(_at_most)] = Field(default_factory=list)
    domains: Annotated[list[Domain], AfterValidator(_at_most)] = Field(default_factory=list)
    instances: Annotated[list[LabInstance], AfterValidator(_at_most)] = Field(default_factory=list)


class Registration(FromAgent):
    agent_version: Annotated[str, Field(max_length=255)]
    netns: Annotated[str, Field(max_length=255)] | None = None
    inventory: Inventory = Inventory()


class Host(Wire):
    name: str
    registered_at: datetime | None = Field(description="null for a host with desired rows whose agent never "
                                                       "registered")
    last_seen: datetime | None
    agent_version: str | None
    netns: str | None
    status: HostStatus
    desired_revision: int = Field(description="the highest revision among the host's rows (0: none)")
    applied_revision: int | None = Field(description="what the agent last reported applied; null before then")
    ports: int = Field(description="the host's live desired rows")
    inventory: Inventory | None


class HostAnswer(Wire):
    host: Host


class HostList(Wire):
    hosts: list[Host]


# ------------------------------------------------------------------ reports


class Rates(FromAgent):
    offered_bps: Count = 0
    delivered_bps: Count = 0
    dropped_bps: Count = 0
    offered_pps: Count = 0
    delivered_pps: Count = 0
    dropped_pps: Count = 0


class Sample(FromAgent):
    device: Device
    at: Instant
    interval_s: float = Field(gt=0, le=3600)
    ingress: Rates = Rates()
    egress: Rates = Rates()


class PortReport(FromAgent):
    device: Device
    revision: Annotated[int, Field(ge=0, le=MAX_REVISION)] | None = Field(description="the revision of the row "
                                                                                       "applied")
    status: PortStatus
    message: Text = ""


class EventReport(FromAgent):
    device: Device
    at: Instant
    kind: Annotated[str, Field(min_length=1, max_length=64)]
    message: Text = ""
    instance: Annotated[str, Field(max_length=255)] | None = None
    direction: Literal["ingress", "egress"] | None = None
    detector: Annotated[str, Field(max_length=64)] | None = None


class QuarantineReport(FromAgent):
    device: Device
    since: Instant
    reason: Text = ""
    lifted: bool = False
    qos: dict[str, Any] | None = Field(None, description="the quarantine's limits in the host file's form")


MAX_USAGE_LINES = 1000  # per port: 4 windows x the agent's top 50 (core.fleet.report.USAGE_TOP), with room


class UsageLine(FromAgent):
    direction: Literal["ingress", "egress"] = Field(description="ingress: towards the instance; egress: sent by it")
    local_ip: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="the instance's address")
    remote_ip: Annotated[str, Field(min_length=1, max_length=64)]
    granularity: Literal["hour", "day"]
    period_start: Instant
    bytes: Count = Field(description="frames' bytes (L2) that passed the port's limits in the window")
    packets: Count


class PortUsage(FromAgent):
    """A port's per-IP usage in the current hour and day, as the agent's store held it at `at` (the agent
    sends the biggest address pairs of each window only)."""

    device: Device
    at: Instant
    lines: Annotated[list[UsageLine], Field(max_length=MAX_USAGE_LINES)] = Field(default_factory=list)


class Report(FromAgent):
    applied_revision: Annotated[int, Field(ge=0, le=MAX_REVISION)] | None = None
    ports: Annotated[list[PortReport], AfterValidator(_at_most)] = Field(default_factory=list)
    samples: Annotated[list[Sample], AfterValidator(_at_most)] = Field(default_factory=list)
    events: Annotated[list[EventReport], AfterValidator(_at_most)] = Field(default_factory=list)
    quarantines: Annotated[list[QuarantineReport], AfterValidator(_at_most)] = Field(default_factory=list)
    usage: Annotated[list[PortUsage], AfterValidator(_at_most)] = Field(
        default_factory=list, description="per-IP usage of the ports whose usage changed (optional)")


class ReportAnswer(Wire):
    """The server's answer to a report: what the agent must do that the desired state does not say."""

    lift: list[str] = Field(default_factory=list, description="devices whose quarantine an admin asked to lift: "
                                                             "the agent lifts them and reports them lifted")


# ------------------------------------------------------------------ views


class Quarantine(Wire):
    host: str
    device: str
    since: datetime
    reason: str
    qos: dict[str, Any] | None


class Event(Wire):
    id: int
    host: str
    device: str
    at: datetime
    kind: str
    message: str
    instance: str | None
    direction: str | None
    detector: str | None


class Port(Wire):
    """A device of a host: what the server wants of it, joined with what its agent reported."""

    host: str
    device: str
    port_id: str | None
    source: Literal["neutron", "native"] | None = Field(description="null for a device only the agent reports")
    policy_name: str | None
    policy: dict[str, Any] | None
    policy_id: str | None = Field(default=None, description="the vmqos policy (/v1/policies) the device was set from")
    desired_revision: int | None
    applied_revision: int | None
    status: Literal["in_sync", "drift", "error", "pending", "unknown"] = Field(
        description="what the agent last reported; unknown before it did")
    message: str
    reported_at: datetime | None
    rates: Sample | None
    quarantine: Quarantine | None
    addresses: list[str] = Field(default_factory=list, description="the instance's addresses the row carries (for "
                                                                   "the host's uplink)")


class PortAnswer(Wire):
    port: Port


class UsageAnswer(Wire):
    usage: PortUsage | None = Field(description="the agent's last word on the port's per-IP usage; null: none yet")


class PortList(Wire):
    ports: list[Port]


class EventList(Wire):
    events: list[Event]


class QuarantineList(Wire):
    quarantines: list[Quarantine]


class NativePort(Wire):
    """A device's limits set with the native API (not Neutron's): the host file's policy form inline, or a
    vmqos policy named by its id (`policy_id`, GET /v1/policies), exactly one of the two."""

    policy: dict[str, Any] | None = Field(default=None, description="the limits inline, in the host file's policy form")
    policy_name: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        default=None, description="the inline limits' name in the agent's scope (default native:<device>)")
    policy_id: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        default=None, description="a vmqos policy's id: the device follows that policy, and every change of it")
    addresses: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=8)] = Field(
        default_factory=list, description="the instance's addresses on the device: the host's uplink holds the "
                                          "policy's guaranteed minimum towards the instance by them")

    @model_validator(mode="after")
    def _one_source(self) -> NativePort:
        if (self.policy is None) == (self.policy_id is None):
            raise ValueError("give the limits inline (policy) or a vmqos policy's id (policy_id), exactly one")
        if self.policy_id is not None and self.policy_name is not None:
            raise ValueError("policy_name names inline limits; a policy given by policy_id keeps its own name")
        return self
