"""A host's desired state as the server sends it: one row per device, revisioned (pure).

A row carries a vmqos Policy in the host file's form (`hostfile.to_data` of its QoS, plus `origin`),
or null: a tombstone, the device must be released. The agent gives every row's policy the name
`fleet:<device>` in its scope's desired state: a row says nothing of the policy's own name, and one
name per device keeps two rows from ever sharing (or fighting over) one policy slot.

What a reload changes (`reload_changes`): after `410 Gone` the agent reads every live row again;
the rows that differ from its cache, and a tombstone for each cached device the server no longer
has, are what it must apply: the same work as a page of changes, nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vmqos.core.errors import InvalidValue
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.core.formats.hostfile.dump import dump_policy
from vmqos.core.model.host import Policy, UplinkSpec, check_addresses, check_device_name

SOURCES = ("neutron", "native")
POLICY_PREFIX = "fleet:"  # the agent's policies in its scope: "fleet:<device>"


@dataclass(frozen=True)
class DesiredPort:
    """One desired row: what `device` must hold (None: a tombstone), as of `revision`."""

    device: str
    revision: int
    policy: Policy | None
    port_id: str | None = None
    source: str = "native"
    addresses: tuple[str, ...] = ()  # the instance's addresses (Neutron's fixed_ips), for the host's uplink

    def __post_init__(self) -> None:
        check_device_name(self.device, "desired.device")
        object.__setattr__(self, "addresses", check_addresses(f"desired {self.device}.addresses", self.addresses))
        if isinstance(self.revision, bool) or not isinstance(self.revision, int) or self.revision < 0:
            raise InvalidValue(f"desired {self.device}.revision", self.revision, "a revision is an integer >= 0")
        if self.source not in SOURCES:
            raise InvalidValue(f"desired {self.device}.source", self.source, f"one of {', '.join(SOURCES)}")

    @property
    def tombstone(self) -> bool:
        return self.policy is None

    def same_content(self, other: DesiredPort) -> bool:
        """Whether the two rows want the same thing (their revisions aside)."""
        return (self.policy, self.port_id, self.source, self.addresses) == \
            (other.policy, other.port_id, other.source, other.addresses)


@dataclass(frozen=True)
class DesiredUplink:
    """The host's uplink as of `revision` (issue 16); `spec` None: a tombstone, the uplink was removed."""

    revision: int
    spec: UplinkSpec | None


@dataclass(frozen=True)
class DesiredPage:
    """An answer of the server: every live row (`full`, from /desired) or the rows changed after a
    revision (tombstones included, from /desired/changes), and the revision to ask from next.
    `uplink`: on a full page the host's uplink (None: it has none); on a page of changes its change
    (None: unchanged)."""

    revision: int
    ports: tuple[DesiredPort, ...] = ()
    full: bool = False
    uplink: DesiredUplink | None = None


def uplink_after(cached: DesiredUplink | None, page: DesiredPage) -> tuple[DesiredUplink | None, bool]:
    """(the host's live uplink after `page`, whether what it wants changed). A change older than the
    cached uplink (a page that crossed a newer one) is ignored, as a row's is."""
    if page.full:
        new = page.uplink if page.uplink is not None and page.uplink.spec is not None else None
    elif page.uplink is None or (cached is not None and page.uplink.revision < cached.revision):
        return cached, False
    else:
        new = page.uplink if page.uplink.spec is not None else None
    before = cached.spec if cached is not None else None
    return new, before != (new.spec if new is not None else None)


def uplink_from_wire(data: Any) -> DesiredUplink | None:
    """`{"revision": R, "uplink": {"device", "capacity_bps", "oversubscribe"} | null}`, or null."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise InvalidValue("desired uplink", data, "an object with revision and uplink")
    revision = data.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise InvalidValue("desired uplink.revision", revision, "a revision is an integer >= 0")
    spec = data.get("uplink")
    if spec is None:
        return DesiredUplink(revision, None)
    if not isinstance(spec, Mapping):
        raise InvalidValue("desired uplink.uplink", spec, "an object with device, capacity_bps and oversubscribe")
    return DesiredUplink(revision, UplinkSpec(spec.get("device"), spec.get("capacity_bps"),  # type: ignore[arg-type]
                                              bool(spec.get("oversubscribe", False))))


def policy_of(device: str, data: Any) -> Policy:
    """The Policy a row's policy data stands for (the host file's form), named for its device."""
    return policy_from_data(POLICY_PREFIX + device, data, path=("desired", device, "policy"))


def _shared_policy(device: str, data: Any, parsed: dict[str, Policy]) -> Policy:
    """`policy_of(device, data)`, parsed once per policy text of a page: a shared policy's change sends each
    host the same text in many rows (10 per host, 10,000 in all, for the fleet bench's one change), and
    its parse was a third of an agent's CPU per answer. Only vmqos's own form, whose parse does not read
    the policy's name but for an error (the first row of a text still raises it); a `neutron:` form
    compares its inner name with the device's policy name, so it is parsed per row."""
    if type(data) is not dict or "neutron" in data:
        return policy_of(device, data)
    try:
        key = json.dumps(data, sort_keys=True)
    except (TypeError, ValueError):  # not JSON's (a caller's own data): no key, the plain parse says what is wrong
        return policy_of(device, data)
    known = parsed.get(key)
    if known is None:
        known = parsed[key] = policy_of(device, data)
        return known
    return Policy(name=POLICY_PREFIX + device, qos=known.qos, origin=known.origin)


def port_from_wire(data: Any, parsed: dict[str, Policy] | None = None) -> DesiredPort:
    """One row of the protocol's JSON (`{"device", "port_id", "source", "revision", "policy"}`); `parsed`: the
    policies its page parsed so far, by text (`page_from_wire`)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("device"), str):
        raise InvalidValue("desired row", data, "an object with device, port_id, source, revision and policy")
    device = check_device_name(data["device"], "desired.device")
    port_id = data.get("port_id")
    if port_id is not None and not isinstance(port_id, str):
        raise InvalidValue(f"desired {device}.port_id", port_id, "a port id (text) or null")
    policy = None if data.get("policy") is None else \
        policy_of(device, data["policy"]) if parsed is None else _shared_policy(device, data["policy"], parsed)
    revision: Any = data.get("revision")  # checked by DesiredPort
    addresses: Any = tuple(data.get("addresses") or ()) if policy is not None else ()  # checked by DesiredPort
    return DesiredPort(device, revision, policy, port_id, data.get("source", "native"), addresses)


def port_to_wire(port: DesiredPort) -> dict[str, Any]:
    return {"device": port.device, "port_id": port.port_id, "source": port.source, "revision": port.revision,
            "policy": None if port.policy is None else dump_policy(port.policy), "addresses": list(port.addresses)}


def page_from_wire(data: Any, *, full: bool) -> DesiredPage:
    """`/desired` (full: its "ports") or `/desired/changes` (its "changes") as a page."""
    key = "ports" if full else "changes"
    if not isinstance(data, Mapping) or not isinstance(data.get(key), list):
        raise InvalidValue("desired answer", data, f"an object with revision and {key}")
    revision = data.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise InvalidValue("desired answer.revision", revision, "a revision is an integer >= 0")
    parsed: dict[str, Policy] = {}
    return DesiredPage(revision, tuple(port_from_wire(row, parsed) for row in data[key]), full,
                       uplink_from_wire(data.get("uplink")))


def reload_changes(cached: Mapping[str, DesiredPort], page: DesiredPage) -> list[DesiredPort]:
    """What a full page changes in `cached`: its rows that differ, and tombstones (at the page's
    revision) for the cached devices it no longer has."""
    live = {p.device: p for p in page.ports if not p.tombstone}
    out = [p for device, p in sorted(live.items())
           if device not in cached or not cached[device].same_content(p)]
    out += [DesiredPort(device, page.revision, None, old.port_id, old.source)
            for device, old in sorted(cached.items()) if device not in live]
    return out


def applied(cached: Mapping[str, DesiredPort], changes: Iterable[DesiredPort]) -> dict[str, DesiredPort]:
    """`cached` after `changes`: a row replaces its device's, a tombstone removes it; a change older
    than what is cached (a revision below the cached row's) is ignored."""
    out = dict(cached)
    for change in changes:
        old = out.get(change.device)
        if old is not None and change.revision < old.revision:
            continue
        if change.tombstone:
            out.pop(change.device, None)
        else:
            out[change.device] = change
    return out
