"""The instances the server was told of through the native API: each one's flavor and its devices.

The server has no Nova servers API: a Neutron port's `device_id` says which instance it belongs to,
but not the flavor the instance was booted with. `PUT /v1/hosts/{host}/instances/{id}` records it
(services.fleet_instance_flavors), so that a port's effective QoS takes the flavor from the server
itself rather than from the agent's inventory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update

from vmqos.store.fleet_tables import fleet_instances
from vmqos.store.store import Store

_W = "fleet-instances"  # the writer lock's name


@dataclass(frozen=True)
class StoredInstance:
    host: str
    instance_id: str
    flavor: str
    devices: tuple[str, ...]
    updated_at: datetime


def _stored(row: tuple[str, str, str, str, datetime]) -> StoredInstance:
    host, instance_id, flavor, devices, at = row
    return StoredInstance(host, instance_id, flavor, tuple(json.loads(devices)), at)


def read(store: Store, host: str, instance_id: str | None = None) -> list[StoredInstance]:
    """The host's instances (the one with `instance_id`, if given), by id."""
    c = fleet_instances.c
    query = select(c.host, c.instance_id, c.flavor, c.devices, c.updated_at).where(c.host == host)
    if instance_id is not None:
        query = query.where(c.instance_id == instance_id)
    with store._tx(f"reading the instances of host {host}") as conn:
        return [_stored(tuple(row)) for row in conn.execute(query.order_by(c.instance_id))]


def save(store: Store, instance: StoredInstance) -> bool:
    """Record the instance (replacing what was recorded of it); True when it is new."""
    c = fleet_instances.c
    values = {"flavor": instance.flavor, "devices": json.dumps(list(instance.devices)),
              "updated_at": instance.updated_at}
    with store._tx(f"recording instance {instance.instance_id} of host {instance.host}", write=_W) as conn:
        where = (c.host == instance.host, c.instance_id == instance.instance_id)
        if conn.execute(update(fleet_instances).where(*where).values(**values)).rowcount:
            return False
        conn.execute(insert(fleet_instances).values(host=instance.host, instance_id=instance.instance_id, **values))
        return True


def remove(store: Store, host: str, instance_id: str) -> bool:
    c = fleet_instances.c
    with store._tx(f"forgetting instance {instance_id} of host {host}", write=_W) as conn:
        return bool(conn.execute(delete(fleet_instances).where(c.host == host, c.instance_id == instance_id))
                    .rowcount)
