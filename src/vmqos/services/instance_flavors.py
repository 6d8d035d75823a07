"""An instance's flavor known to the server itself: `PUT /v1/hosts/{host}/instances/{id}`.

The server has no Nova servers API (only flavors), so it did not know which flavor an instance was
booted with: a port's effective QoS took it from the agent's inventory alone (libvirt's Nova
metadata), and a host without libvirt (a lab, a container host) had no flavor at all. Here whoever
boots the instance (an admin, a deployment tool, or the host's agent) records it: the flavor's
name and the devices of its ports on the host. A port is the instance's when its Neutron port's
`device_id` is the instance's id, or when its device is one of those recorded. The flavor must be
one the server has (exactly one flavor of that name), as Nova refuses a server of an unknown flavor.

Who: an admin, or the host's agent (services.fleet_access.check_host), for writes and reads alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field

from vmqos.core.errors import InvalidValue, NotFound
from vmqos.services import fleet_access as access
from vmqos.services.fleet_wire import Device, Wire, check_host
from vmqos.services.identity import Caller
from vmqos.store import Store
from vmqos.store import fleet_instances as records
from vmqos.store import nova as nova_records
from vmqos.store.fleet_instances import StoredInstance

MAX_DEVICES = 64


class InstanceBody(Wire):
    """What the server records of an instance on a host."""

    flavor: Annotated[str, Field(min_length=1, max_length=255)] = Field(
        description="the name of the flavor it was booted with (a flavor of /compute/v2.1/flavors)")
    devices: Annotated[list[Device], Field(max_length=MAX_DEVICES)] = Field(
        default_factory=list, description="its ports' devices on the host (a Neutron port whose device_id is the "
                                          "instance's id is found without being listed)")


class RecordedInstance(Wire):
    host: str
    id: str
    flavor: str
    devices: list[str]
    updated_at: datetime


class RecordedInstanceAnswer(Wire):
    instance: RecordedInstance


def check_instance_id(value: str) -> str:
    if not 1 <= len(value) <= 255 or value != value.strip() or any(c in "/\x00" or not c.isprintable()
                                                                    for c in value):
        raise InvalidValue("instance id", value, "an instance's id is 1 to 255 printable characters without '/' "
                                                 "(Nova's server id, as a port's device_id names it)")
    return value


def _recorded(found: StoredInstance) -> RecordedInstance:
    return RecordedInstance(host=found.host, id=found.instance_id, flavor=found.flavor, devices=list(found.devices),
                            updated_at=found.updated_at)


def _check_flavor(store: Store, name: str) -> None:
    matching = [f for f in nova_records.list_flavors(store) if f.name == name]
    if len(matching) != 1:
        fix = ("no flavor has that name: create it (openstack flavor create) or give the name `openstack flavor "
               "list` shows" if not matching else
               f"{len(matching)} flavors have that name: rename one (the effective QoS would have to guess)")
        raise InvalidValue("flavor", name, fix)


def record(store: Store, caller: Caller, host: str, instance_id: str, body: InstanceBody,
           *, now: datetime | None = None) -> tuple[RecordedInstance, bool]:
    """Record (or replace) the instance's flavor and devices on the host; True when it is new."""
    access.check_host(caller, check_host(host), "recording an instance")
    check_instance_id(instance_id)
    _check_flavor(store, body.flavor)
    stored = StoredInstance(host, instance_id, body.flavor, tuple(dict.fromkeys(body.devices)),
                            now or datetime.now(UTC))
    created = records.save(store, stored)
    return _recorded(stored), created


def show(store: Store, caller: Caller, host: str, instance_id: str) -> RecordedInstance:
    access.check_host(caller, check_host(host), "reading an instance")
    found = records.read(store, host, check_instance_id(instance_id))
    if not found:
        raise NotFound(f"instance {instance_id} on host {host}: the server was told nothing of it (PUT "
                       f"/v1/hosts/{host}/instances/{instance_id} records it)")
    return _recorded(found[0])


def forget(store: Store, caller: Caller, host: str, instance_id: str) -> None:
    access.check_host(caller, check_host(host), "forgetting an instance")
    if not records.remove(store, host, check_instance_id(instance_id)):
        raise NotFound(f"instance {instance_id} on host {host}: the server was told nothing of it")


def flavor_of(store: Store, host: str, device: str, instance_id: str | None) -> str | None:
    """The recorded flavor of the instance the device belongs to: the one whose id is `instance_id` (the
    Neutron port's device_id), else one that lists the device; None when the server was told of neither."""
    found = records.read(store, host)
    by_id = [i for i in found if instance_id and i.instance_id == instance_id]
    by_device = [i for i in found if device in i.devices]
    for instance in by_id or by_device:
        return instance.flavor
    return None
