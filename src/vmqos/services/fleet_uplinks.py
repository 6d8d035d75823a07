"""A host's uplink on the native API (issue 16): set, read and remove it; what the agents follow of it.

Guaranteed minimums (Neutron's minimum_bandwidth rules, a native policy's `min`) are shares of the
link a host's ports have in common; the host's uplink says which device that is and what it
carries. It is part of the host's desired state: a change takes the next global revision in the
desired rows' writer transaction (`store.fleet_uplinks`), so the host's agent is woken by it as by a
port's change, and finds it in `/desired` (`Snapshot.uplink`) and `/desired/changes`
(`Changes.uplink`, with `uplink: null` once removed). The server only records it: the agent plans
it (`core.plan.uplink`) and reports whether it holds, or why it was refused.
"""

from __future__ import annotations

from vmqos.core.errors import NotFound
from vmqos.core.model.host import UplinkSpec
from vmqos.services import fleet_access as access
from vmqos.services.fleet_wire import DesiredUplink, HostUplink, Uplink, check_host
from vmqos.services.identity import Caller
from vmqos.store import Store
from vmqos.store import fleet as desired_records
from vmqos.store import fleet_status as status_records
from vmqos.store import fleet_uplinks as records
from vmqos.store.fleet_uplinks import UplinkRow


def _uplink(row: UplinkRow) -> Uplink | None:
    if row.device is None or row.capacity_bps is None:
        return None
    return Uplink(device=row.device, capacity_bps=row.capacity_bps, oversubscribe=row.oversubscribe)


def _not_found(host: str) -> NotFound:
    return NotFound(f"host {host} has no uplink (PUT /v1/hosts/{host}/uplink with device and capacity_bps sets one)")


def desired_uplink(store: Store, host: str, since: int | None = None) -> DesiredUplink | None:
    """The host's uplink for its agent: live (`since` None), or its change above `since` (a removal too)."""
    row = records.read(store, host)
    if row is None or (since is None and not row.live) or (since is not None and row.revision <= since):
        return None
    return DesiredUplink(revision=row.revision, uplink=_uplink(row))


def _view(store: Store, row: UplinkRow) -> HostUplink:
    uplink = _uplink(row)
    assert uplink is not None
    found = status_records.statuses(store, host=row.host, device=uplink.device).get((row.host, uplink.device))
    status = found.status if found is not None and found.status != "unknown" else "unknown"
    return HostUplink(host=row.host, uplink=uplink, revision=row.revision,
                      status=status,  # type: ignore[arg-type]
                      message=found.message if found is not None else "",
                      reported_at=found.reported_at if found is not None else None)


def show_uplink(store: Store, caller: Caller, host: str) -> HostUplink:
    """The host's uplink and its agent's last word on it (admin only; 404 when it has none)."""
    access.check_admin(caller, "reading a host's uplink")
    row = records.read(store, check_host(host))
    if row is None or not row.live:
        raise _not_found(host)
    return _view(store, row)


def set_uplink(store: Store, caller: Caller, host: str, body: Uplink) -> HostUplink:
    """Set the host's uplink (admin only); the same uplink again writes nothing (no new revision)."""
    access.check_admin(caller, "setting a host's uplink")
    check_host(host)
    UplinkSpec(body.device, body.capacity_bps, body.oversubscribe)  # the core's own checks, as a host file's
    with desired_records.desired_writer(store, f"setting the uplink of host {host}") as w:
        have = records.existing(w, host)
        if have is not None and (have.device, have.capacity_bps, have.oversubscribe) == \
                (body.device, body.capacity_bps, body.oversubscribe):
            row = have
        else:
            row = records.write(w, host, body.device, body.capacity_bps, body.oversubscribe)
    return _view(store, row)


def clear_uplink(store: Store, caller: Caller, host: str) -> None:
    """Remove the host's uplink (admin only; 404 when it has none): a tombstone its agent releases."""
    access.check_admin(caller, "removing a host's uplink")
    check_host(host)
    with desired_records.desired_writer(store, f"removing the uplink of host {host}") as w:
        have = records.existing(w, host)
        if have is None or not have.live:
            raise _not_found(host)
        records.write(w, host, None, None, False)
