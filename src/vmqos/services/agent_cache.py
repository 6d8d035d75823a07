"""The agent's cache as use cases: what it holds, keeping a page of the server's answer, what it wants.

The agent (`vmqos.agent`) reaches its store only through here and `services.enforcer`: the rows of
its host and their revision (`store.agent`), the devices they want on the kernel, and the lab
instances its scope holds for the inventory.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmqos.core.desired.ports import scope_of
from vmqos.core.fleet.desired import DesiredPage, DesiredPort, DesiredUplink, applied, reload_changes, uplink_after
from vmqos.core.fleet.inventory import LabInstance
from vmqos.services.enforcer import Wanted, WantedPorts, WantedUplink
from vmqos.store import Store
from vmqos.store import agent as records
from vmqos.store import agent_uplink as uplinks
from vmqos.store import neutron_ports as marks

DEFAULT_CACHE = "/var/lib/vmqos/agent.db"


def cache_url(path: str | None) -> str:
    """The agent's store: `--cache PATH` (a SQLite file, or a database URL), by default DEFAULT_CACHE."""
    path = path or DEFAULT_CACHE
    return path if "://" in path else f"sqlite:///{path}"


@dataclass(frozen=True)
class Kept:
    """A page kept: the rows now, the revision now, and the changes that made the difference."""

    revision: int
    rows: dict[str, DesiredPort]
    changes: tuple[DesiredPort, ...]
    uplink: DesiredUplink | None = None  # the host's uplink now (issue 16)
    uplink_changed: bool = False


def load(store: Store, host: str) -> tuple[int | None, dict[str, DesiredPort]]:
    """(revision, device -> row) of `host` in the cache; (None, {}) for an agent that never heard the server."""
    return records.cached(store, host)


def load_uplink(store: Store, host: str) -> DesiredUplink | None:
    """The host's uplink in the cache (None: none)."""
    return uplinks.cached(store, host)


def keep(store: Store, host: str, rows: dict[str, DesiredPort], page: DesiredPage,
         uplink: DesiredUplink | None = None) -> Kept:
    """Keep a page in the cache (rows and revision in one transaction) and say what it changed.

    A full page (`/desired`, after a start without a revision or a 410) is diffed with the rows: only
    what differs is a change, and a cached device it lacks gets a tombstone. A page of changes applies
    as it is, except a row older than the one cached (a page that crossed a newer one)."""
    if page.full:
        changes = reload_changes(rows, page)
    else:
        changes = [c for c in page.ports if c.device not in rows or c.revision >= rows[c.device].revision]
    now = applied(rows, changes)
    up, up_changed = uplink_after(uplink, page)
    records.save(store, host, page.revision, list(now.values()) if page.full else changes, replace_all=page.full,
                 uplink=(up,) if up != uplink else None)
    return Kept(page.revision, now, tuple(changes), up, up_changed)


def wanted(rows: dict[str, DesiredPort], server: str, uplink: DesiredUplink | None = None) -> WantedPorts:
    """What the enforcer must hold: every live row's policy (and its instance's addresses) on its device,
    and the host's uplink (None: none)."""
    return WantedPorts({device: Wanted(device, row.port_id or "", row.policy,
                                       f"revision {row.revision} of {server} ({row.source})", row.addresses)
                        for device, row in rows.items() if row.policy is not None},
                       uplink=WantedUplink(uplink.spec if uplink is not None else None,
                                           uplink.revision if uplink is not None else None))


def lab_instances(store: Store, netns: str | None) -> tuple[LabInstance, ...]:
    """The instances of the scope's desired state that are not the agent's own (a port it placed is
    stored as an instance named after its device: not an instance of the host's)."""
    scope = scope_of(netns)
    own = set(marks.enforced(store, scope))
    state = store.load(scope)
    return tuple(LabInstance(inst.name, tuple(p.device for p in inst.ports)) for inst in state.instances.values()
                 if not (inst.ports and {p.device for p in inst.ports} <= own and inst.name.rstrip("_") in own))
