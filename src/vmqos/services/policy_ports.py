"""Native ports that follow a vmqos policy (/v1/policies) by its id: attach, re-derive, refuse deletion.

A device set with `policy_id` holds a desired row like any native row: the policy's content, resolved
(what an agent applies, without asking for the policy), and the id. The content is read under the
desired rows' writer lock, in the transaction that writes the row; a change of the policy (PUT
/v1/policies/ID) rewrites every row that names it in the policy's own transaction, with the next
revision (`then_replaced`): the agents waiting on the long poll wake and apply it live, with the
same handles (the reconciler replaces classes, never deletes a root). A policy that rows name cannot
be deleted: 409 naming the devices, as Neutron's QosPolicyInUse names the port (`then_deleted`).

Who may attach what: setting a native port is an admin's (services.fleet_hosts.set_native); the
policy must be one the caller sees (an admin sees every project's), another's is 404 as on
/v1/policies; a Neutron policy is attached through Neutron (409).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection

from vmqos.core.errors import ConflictError, NotFound
from vmqos.core.formats.hostfile import policy_from_data, policy_to_data
from vmqos.core.model.host import Policy, check_device_name
from vmqos.services import fleet_desired
from vmqos.services.fleet_desired import NATIVE, Expect
from vmqos.services.fleet_wire import Desired, check_host
from vmqos.services.identity import Caller
from vmqos.store import Store
from vmqos.store import fleet as records
from vmqos.store import native_policies as policy_records
from vmqos.store import qos as neutron_records
from vmqos.store.fleet import DesiredRow, DesiredWriter
from vmqos.store.native_policies import StoredNativePolicy
from vmqos.store.neutron_tables import Then

PREFIX = "vmqos:"  # a row's policy_name: vmqos:<policy id>, as Neutron's rows say neutron:<policy id>
SHOWN_IN_USE = 5  # devices a 409 names (then "and N more")


class QosPolicyInUse(ConflictError):
    """A vmqos policy that ports follow cannot be deleted (409, Neutron's QosPolicyInUse)."""


def row_policy(row: StoredNativePolicy) -> Policy:
    """The Policy a device that follows `row` holds, under its agent-scope name vmqos:<id>."""
    return policy_from_data(PREFIX + row.id, json.loads(row.qos), path=("qos",))


def _not_found(policy_id: str) -> NotFound:
    return NotFound(f"policy_id: no vmqos policy {policy_id} in your project (GET /v1/policies lists those you see)")


def _resolve(w: DesiredWriter, caller: Caller, policy_id: str) -> Policy:
    found = policy_records.read_in(w.conn, policy_id)
    if found is not None and (caller.is_admin or (caller.project is not None
                                                  and caller.project.id == found.project_id)):
        return row_policy(found)
    if found is None and neutron_records.read_policies(w.conn, [policy_id]):
        raise ConflictError(f"policy_id: {policy_id} is a Neutron QoS policy: attach it through Neutron (openstack "
                            "port set --qos-policy POLICY PORT); a native port follows a vmqos policy (/v1/policies)")
    raise _not_found(policy_id)


def attach(store: Store, caller: Caller, host: str, device: str, policy_id: str,
           expect: Expect = Expect(), addresses: Iterable[str] = ()) -> Desired:
    """Make the device of a host follow the vmqos policy `policy_id` (the caller's right to set native ports
    is checked by the caller of this function). 404 for a policy the caller does not see, 409 for a
    Neutron policy or a device a Neutron port names, 412 when `expect` does not hold."""
    check_host(host)
    check_device_name(device, "device")
    with records.desired_writer(store, f"attaching policy {policy_id} to device {device} on host {host}") as w:
        policy = _resolve(w, caller, policy_id)
        return fleet_desired.write_native(w, host, device, policy, expect, policy_id=policy_id, addresses=addresses)


def then_replaced(policy_id: str) -> Then:
    """After a policy's change, in its transaction: every live row that names it takes its new content, with
    the next revision (one revision for all of them); rows already equal are left alone."""
    def run(conn: Connection) -> None:
        w = DesiredWriter(conn, datetime.now(UTC))
        found = policy_records.read_in(conn, policy_id)
        rows = w.rows_of_policy(policy_id)
        if found is None or not rows:
            return
        policy = row_policy(found)
        text = json.dumps(policy_to_data(policy), sort_keys=True, separators=(",", ":"))
        changed = [DesiredRow(r.host, r.device, None, NATIVE, policy.name, text, 0, w.at, policy_id, r.addresses)
                   for r in rows.values() if (r.policy_name, r.policy) != (policy.name, text)]
        if changed:
            w.write(changed, rows.keys())
    return run


def then_deleted(policy_id: str) -> Then:
    """Before a policy's deletion, in its transaction: QosPolicyInUse (409) naming the devices that follow it."""
    def run(conn: Connection) -> None:
        keys = sorted(DesiredWriter(conn, datetime.now(UTC)).rows_of_policy(policy_id))
        if keys:
            named = ", ".join(f"{device} on host {host}" for host, device in keys[:SHOWN_IN_USE])
            more = f" and {len(keys) - SHOWN_IN_USE} more" if len(keys) > SHOWN_IN_USE else ""
            raise QosPolicyInUse(f"policy {policy_id} is used by device(s) {named}{more}: set those ports to another "
                                 "policy or clear them (vmqos port clear DEV --server URL --host HOST), then delete it")
    return run
