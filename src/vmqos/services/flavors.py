"""Nova flavors, their extra specs and their access lists, as a project's callers may see and change them.

The use cases behind the API server's `/compute/v2.1/flavors`, with Nova's default policy: only an
admin creates, changes or deletes a flavor, its extra specs or its access list (403 with Nova's
PolicyNotAuthorized otherwise); everyone reads the public flavors and the private ones their
project may use, and a private flavor the project may not use is "not found" (Nova's query).
Every change of the extra specs is read as the vmqos model reads a flavor before it is stored
(nova_input.quota_document), so `flavor_qos` always gives the stored flavor as the model's Flavor:
the network, CPU and disk QoS that an instance of it gets.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from vmqos.core.errors import ConflictError, NotFound
from vmqos.core.model.host import Flavor
from vmqos.services.identity import Caller
from vmqos.services.nova_extra_specs import VALIDATED_FROM, check_extra_spec
from vmqos.services.nova_input import (
    Version,
    check_quota_spec,
    quota_document,
    read_description,
    read_extra_spec,
    read_extra_specs,
    read_flavor,
    read_tenant,
)
from vmqos.services.openstack_input import Fault, bad_request, decoded, forbidden, query_boolean
from vmqos.store import Store
from vmqos.store import identity as identity_records
from vmqos.store import nova as records
from vmqos.store.nova import StoredFlavor

MAX_LIMIT = 1000  # Nova's [api] max_limit
# Nova's sort keys (schemas/flavors.py VALID_SORT_KEYS) as the stored flavor's fields
SORT_KEYS = {"created_at": "created_at", "description": "description", "disabled": "disabled",
             "ephemeral_gb": "ephemeral", "flavorid": "id", "id": "created_at", "is_public": "is_public",
             "memory_mb": "ram", "name": "name", "root_gb": "disk", "rxtx_factor": "rxtx_factor", "swap": "swap",
             "updated_at": "updated_at", "vcpu_weight": "id", "vcpus": "vcpus"}
_QUERY = ("limit", "marker", "is_public", "minRam", "minDisk", "sort_key", "sort_dir")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _not_found(flavor_id: str) -> Fault:
    return Fault(404, f"Flavor {flavor_id} could not be found.")


def _admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise forbidden(f"os_compute_api:{action}")


def visible(caller: Caller, flavor: StoredFlavor) -> bool:
    """Nova's query for a non-admin context: public, or private with the caller's project on its list."""
    return caller.is_admin or flavor.is_public or (caller.project is not None and caller.project.id in flavor.projects)


def get(store: Store, caller: Caller, flavor_id: str) -> StoredFlavor:
    flavor = records.get_flavor(store, flavor_id)
    if flavor is None or not visible(caller, flavor):
        raise _not_found(flavor_id)
    return flavor


# ------------------------------------------------------------------ flavors


def _int_filter(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"Invalid {name} filter [{value}]") from None


def list_flavors(store: Store, caller: Caller, query: dict[str, list[str]], version: Version) -> list[StoredFlavor]:
    """The flavors GET /flavors and /flavors/detail answer with, filtered, sorted and paged as Nova does."""
    allowed = _QUERY + (("name",) if version >= (2, 102) else ())
    unknown = [key for key in query if key not in allowed]
    if unknown and version >= (2, 75):
        raise bad_request(f"Additional properties are not allowed ({', '.join(repr(k) for k in unknown)} "
                          f"{'were' if len(unknown) > 1 else 'was'} unexpected)")
    last = {key: values[-1] for key, values in query.items()}
    public: bool | None = True
    if caller.is_admin and "is_public" in last:
        raw = last["is_public"]
        public = None if raw.strip().lower() == "none" else query_boolean(raw)
        if public is None and raw.strip().lower() != "none":
            raise bad_request(f"Invalid is_public filter [{raw}]")
    min_ram = _int_filter("minRam", last["minRam"]) if "minRam" in last else None
    min_disk = _int_filter("minDisk", last["minDisk"]) if "minDisk" in last else None
    sort_key, sort_dir = last.get("sort_key") or "flavorid", last.get("sort_dir") or "asc"
    for name, value, valid in (("sort_key", sort_key, list(SORT_KEYS)), ("sort_dir", sort_dir, ["asc", "desc"])):
        if value not in valid:
            raise bad_request(f"Invalid input for query parameters {name}. Value: {value}. "
                              f"'{value}' is not one of {valid}")
    mine = caller.project.id if caller.project else None
    found = []
    for flavor in records.list_flavors(store):
        if public is not None and flavor.is_public != public and not (public and mine in flavor.projects):
            continue
        if not caller.is_admin and flavor.disabled:
            continue
        if (min_ram is not None and flavor.ram < min_ram) or (min_disk is not None and flavor.disk < min_disk):
            continue
        if "name" in allowed and "name" in last and flavor.name != last["name"]:
            continue
        found.append(flavor)
    field = SORT_KEYS[sort_key]
    found.sort(key=lambda f: (getattr(f, field) is None, "" if getattr(f, field) is None else getattr(f, field), f.id),
               reverse=sort_dir == "desc")
    return _page(found, last)


def _page(flavors: list[StoredFlavor], query: dict[str, str]) -> list[StoredFlavor]:
    limit = MAX_LIMIT
    if "limit" in query:
        if not query["limit"].isdigit():
            raise bad_request(f"Invalid input for query parameters limit. Value: {query['limit']}. "
                              f"'{query['limit']}' does not match '^[0-9]*$'")
        limit = min(int(query["limit"]), MAX_LIMIT)
    if "marker" in query:
        ids = [f.id for f in flavors]
        if query["marker"] not in ids:
            raise bad_request(f"marker [{query['marker']}] not found")
        flavors = flavors[ids.index(query["marker"]) + 1:]
    return flavors[:limit]


def show_flavor(store: Store, caller: Caller, flavor_id: str) -> StoredFlavor:
    return get(store, caller, flavor_id)


def create_flavor(store: Store, caller: Caller, body: Any, version: Version) -> StoredFlavor:
    _admin(caller, "os-flavor-manage:create")
    given = read_flavor(body, version)
    at = _now()
    flavor = StoredFlavor(given.id or str(uuid.uuid4()), given.name, given.ram, given.vcpus, given.disk,
                          given.ephemeral, given.swap, given.rxtx_factor, given.is_public, False, given.description,
                          {}, at, at)
    try:
        records.create_flavor(store, flavor)
    except ConflictError as exc:
        raise Fault(409, str(exc)) from None
    return flavor


def update_flavor(store: Store, caller: Caller, flavor_id: str, body: Any) -> StoredFlavor:
    """2.55's PUT: the description is the only thing a flavor lets change."""
    _admin(caller, "os-flavor-manage:update")
    description = read_description(body)
    changed = records.change_flavor(store, flavor_id, lambda f: replace(f, description=description), _now())
    if changed is None:
        raise _not_found(flavor_id)
    return changed


def delete_flavor(store: Store, caller: Caller, flavor_id: str) -> None:
    _admin(caller, "os-flavor-manage:delete")
    if not records.delete_flavor(store, flavor_id):
        raise _not_found(flavor_id)


# ------------------------------------------------------------------ extra specs


def extra_specs(store: Store, caller: Caller, flavor_id: str) -> dict[str, str]:
    return get(store, caller, flavor_id).extra_specs


def extra_spec(store: Store, caller: Caller, flavor_id: str, key: str) -> dict[str, str]:
    specs = get(store, caller, flavor_id).extra_specs
    if key not in specs:
        raise Fault(404, f"Flavor {flavor_id} has no extra specs with key {key}.")
    return {key: specs[key]}


def _merged(flavor: StoredFlavor, specs: dict[str, str], drop: str | None = None) -> StoredFlavor:
    """The flavor with `specs` set (and `drop` removed), if the vmqos model reads its quota: specs."""
    merged = {k: v for k, v in flavor.extra_specs.items() if k != drop} | specs
    quota_document(merged)
    return replace(flavor, extra_specs=merged)


def _change_specs(store: Store, caller: Caller, flavor_id: str, specs: dict[str, str],
                  drop: str | None = None, version: Version = (2, 1)) -> None:
    get(store, caller, flavor_id)  # a private flavor the caller may not use is not found, as Nova's get_flavor
    for key, value in specs.items():  # in the body's order, as Nova checks them
        if key.startswith("quota:"):
            check_quota_spec(key, value)  # Nova's own words, before the model's; at every microversion
        elif version >= VALIDATED_FROM:
            check_extra_spec(key, value)
    if records.change_flavor(store, flavor_id, lambda f: _merged(f, specs, drop), _now()) is None:
        raise _not_found(flavor_id)


def set_extra_specs(store: Store, caller: Caller, flavor_id: str, body: Any,
                    version: Version = (2, 1)) -> dict[str, Any]:
    """POST os-extra_specs: add or replace these keys; Nova answers with the body as it was sent."""
    _admin(caller, "os-flavor-extra-specs:create")
    body = decoded(body)
    _change_specs(store, caller, flavor_id, read_extra_specs(body), version=version)
    return dict(body)


def update_extra_spec(store: Store, caller: Caller, flavor_id: str, key: str, body: Any,
                      version: Version = (2, 1)) -> dict[str, Any]:
    _admin(caller, "os-flavor-extra-specs:update")
    body = decoded(body)
    _change_specs(store, caller, flavor_id, read_extra_spec(body, key), version=version)
    return dict(body)


def delete_extra_spec(store: Store, caller: Caller, flavor_id: str, key: str) -> None:
    _admin(caller, "os-flavor-extra-specs:delete")
    if key not in get(store, caller, flavor_id).extra_specs:
        raise Fault(404, f"Flavor {flavor_id} has no extra specs with key {key}.")
    _change_specs(store, caller, flavor_id, {}, drop=key)


# ------------------------------------------------------------------ access to private flavors


def access(store: Store, caller: Caller, flavor_id: str) -> tuple[str, ...]:
    """The projects that may use a private flavor (admin only, as Nova's os-flavor-access policy)."""
    _admin(caller, "os-flavor-access")
    flavor = get(store, caller, flavor_id)
    if flavor.is_public:
        raise Fault(404, "Access list not available for public flavors.")
    return flavor.projects


def add_access(store: Store, caller: Caller, flavor_id: str, body: Any, version: Version) -> tuple[str, ...]:
    _admin(caller, "os-flavor-access:add_tenant_access")
    tenant = read_tenant(body, "addTenantAccess")
    if identity_records.find_project(store, id=tenant) is None:  # nova.api.openstack.identity.verify_project_id
        raise bad_request(f"Project ID {tenant} is not a valid project.")
    flavor = get(store, caller, flavor_id)
    if version >= (2, 7) and flavor.is_public:
        raise Fault(409, "Can not add access to a public flavor.")
    try:
        if not records.add_access(store, flavor_id, tenant):
            raise _not_found(flavor_id)
    except ConflictError as exc:
        raise Fault(409, str(exc)) from None
    return get(store, caller, flavor_id).projects


def remove_access(store: Store, caller: Caller, flavor_id: str, body: Any) -> tuple[str, ...]:
    _admin(caller, "os-flavor-access:remove_tenant_access")
    tenant = read_tenant(body, "removeTenantAccess")
    get(store, caller, flavor_id)
    if not records.remove_access(store, flavor_id, tenant):
        raise Fault(404, f"Flavor access not found for {flavor_id} / {tenant} combination.")
    return get(store, caller, flavor_id).projects


# ------------------------------------------------------------------ the desired-state link


def flavor_qos(store: Store, flavor_id: str) -> Flavor:
    """The stored flavor as the vmqos model's Flavor: its `quota:` specs read by core.formats.nova (network
    per direction, CPU shares/period/quota, image-backed disk bytes and IOPS), with the reader's notes.

    For the agent and all-in-one enforcement: no caller, no policy; NotFound names the flavor."""
    flavor = records.get_flavor(store, flavor_id)
    if flavor is None:
        raise NotFound(f"no Nova flavor {flavor_id!r} (`openstack flavor list` shows them)")
    doc = quota_document(flavor.extra_specs)
    return Flavor(flavor.name, replace(doc, name=flavor.name))
