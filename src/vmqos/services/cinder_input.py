"""Cinder's QoS-spec, volume-type and volume bodies read as Cinder v3 reads them, and the QoS check.

The schemas are cinder/api/schemas/qos_specs.py, volume_types.py and volumes.py, with the checks
of cinder/utils.py (validate_dictionary_string_length) and cinder/volume/api.py (the size). Cinder
itself stores any QoS spec; vmqos enforces the front-end ones on the host, so a front-end or both
spec is read here as the vmqos model reads it (core.formats.cinder: the 13 keys Nova hands to
libvirt and the per-GB keys, integers, no total beside a read/write of one kind, within QEMU's
range at the sizes of the volumes it applies to) and refused with Cinder's InvalidQoSSpecs words,
`Invalid qos specs: <reason>`. A back-end spec is for the storage and is stored as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vmqos.core.errors import VmqosError
from vmqos.core.formats import cinder
from vmqos.core.model import QosDocument
from vmqos.services.openstack_input import (
    decoded,
    CINDER_BOOLEAN_ENUM,
    CINDER_KEY,
    Fault,
    bad_request,
    body_object,
    boolean,
    int_like,
    invalid,
    metadata,
    only,
    printable,
    required,
    text,
)

_FRONTEND_KEYS = sorted(cinder.FRONTEND_INPUT_KEYS)


@dataclass(frozen=True)
class VolumeInput:
    """A volume as POST /volumes gives it: a size, and optionally a name, a type (name or id), metadata."""

    size: int
    name: str | None
    description: str | None
    volume_type: str | None
    availability_zone: str | None
    metadata: dict[str, str]


def _invalid_input(reason: str) -> Fault:
    return bad_request(f"Invalid input received: {reason}")


def _strings(specs: dict[str, Any]) -> dict[str, str]:
    """cinder.utils.validate_dictionary_string_length: keys 1-255 characters, values strings of at most 255."""
    for key, value in specs.items():
        if not 1 <= len(key) <= 255:
            raise _invalid_input(f'Key "{key}" has more than 255 characters.' if key else
                                 'Key "" has a minimum character requirement of 1.')
        if not isinstance(value, str):
            raise _invalid_input(f'Value for key "{key}" is not a string or unicode')
        if len(value) > 255:
            raise _invalid_input(f'Value for key "{key}" has more than 255 characters.')
    return dict(specs)


def _name(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(field, value, f"{value!r} is not of type 'string'")
    stripped = value.strip()
    if not stripped or not all(printable(c) for c in stripped):
        raise bad_request(f"An invalid 'name' value was provided. Name has only whitespace, is empty or has "
                          f"characters that are not printable: {value!r}")
    if len(value) > 255:
        raise invalid(field, value, f"{value!r} is too long")
    return stripped


# ------------------------------------------------------------------ QoS specs


def read_qos_create(body: Any) -> tuple[str, str, dict[str, str]]:
    """POST /qos-specs: (name, consumer, specs); the consumer defaults to Cinder's back-end."""
    body = decoded(body)
    values = dict(body_object(body, "qos_specs"))
    required("qos_specs", values, ("name",))
    name = _name("name", values.pop("name"))
    only("", body, ("qos_specs",))
    specs = _strings(values)
    consumer = specs.pop("consumer", cinder.DEFAULT_CONSUMER)
    return name, consumer, specs


def read_qos_set(body: Any) -> dict[str, str]:
    """PUT /qos-specs/{id}: the keys to add or change (`consumer` among them)."""
    body = decoded(body)
    if not isinstance(body, dict) or "qos_specs" not in body:
        raise bad_request("'qos_specs' is a required property")
    only("", body, ("qos_specs",))
    values = body["qos_specs"]
    if isinstance(values, dict) and any(v is None for v in values.values()):
        raise bad_request("Invalid qos specs: a QoS spec's value is a string; "
                          "remove a key with `openstack volume qos unset --property KEY`")
    return _strings(metadata("qos_specs", values, numbers=False, keys=CINDER_KEY))


def read_keys(body: Any) -> list[str]:
    """PUT /qos-specs/{id}/delete_keys: {"keys": [...]}, unique strings of 1 to 255 characters."""
    body = decoded(body)
    if not isinstance(body, dict) or "keys" not in body:
        raise bad_request("'keys' is a required property")
    keys = body["keys"]
    if not isinstance(keys, list):
        raise invalid("keys", keys, f"{keys!r} is not of type 'array'")
    for key in keys:
        if not isinstance(key, str) or not 1 <= len(key) <= 255:
            raise invalid("keys", keys, f"{key!r} is not a string of 1 to 255 characters")
    if len(set(keys)) != len(keys):
        raise invalid("keys", keys, f"{keys!r} has non-unique elements")
    only("", body, ("keys",))
    return keys


def spec_document(name: str, consumer: str, specs: dict[str, str], size_gb: int) -> QosDocument:
    """The spec as the vmqos model reads it for a volume of `size_gb` GiB, or Cinder's InvalidQoSSpecs."""
    if consumer not in cinder.CONSUMERS:
        raise bad_request(f"Invalid qos specs: Valid consumer of QoS specs are: {', '.join(cinder.CONSUMERS)}")
    if consumer != "back-end":
        for key in specs:
            if key not in cinder.FRONTEND_INPUT_KEYS:
                raise bad_request(
                    f"Invalid qos specs: {key!r} is not a front-end key: Nova hands only these to libvirt: "
                    f"{', '.join(_FRONTEND_KEYS)} (a back-end spec takes the storage's own keys)")
    text = json.dumps({"qos_specs": {"name": name, "consumer": consumer, "specs": specs}})
    try:
        return cinder.read(text, size_gb=size_gb)
    except VmqosError as exc:
        raise bad_request(f"Invalid qos specs: {exc}") from None


def check_spec(name: str, consumer: str, specs: dict[str, str], sizes: list[int]) -> None:
    """The spec reads at 1 GiB and at the size of every volume it applies to (per-GB keys scale)."""
    for size in sorted({1, *sizes}):
        spec_document(name, consumer, specs, size)


# ------------------------------------------------------------------ volume types


def read_type_create(body: Any) -> tuple[str, str | None, dict[str, str], bool]:
    """POST /types: (name, description, extra specs, public)."""
    body = decoded(body)
    values = body_object(body, "volume_type")
    name = _name("name", values["name"]) if "name" in values else ""
    description = text("description", values.get("description"), 255, nullable=True)
    specs = metadata("extra_specs", values.get("extra_specs") or {}, numbers=False, keys=CINDER_KEY)
    public = boolean("os-volume-type-access:is_public", values["os-volume-type-access:is_public"],
                     CINDER_BOOLEAN_ENUM) if "os-volume-type-access:is_public" in values else True
    required("volume_type", values, ("name",))
    only("volume_type", values, ("name", "description", "extra_specs", "os-volume-type-access:is_public"))
    only("", body, ("volume_type",))
    return name, description, specs, public


def read_type_update(body: Any) -> tuple[str | None, str | None, bool | None]:
    """PUT /types/{id}: (name, description, public), each None when not changed."""
    body = decoded(body)
    values = body_object(body, "volume_type")
    name = values.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise invalid("name", name, f"{name!r} is not a string of 1 to 255 characters")
    description = text("description", values.get("description"), 255, nullable=True)
    public = boolean("is_public", values["is_public"], CINDER_BOOLEAN_ENUM) \
        if values.get("is_public") is not None else None
    only("volume_type", values, ("name", "description", "is_public"))
    only("", body, ("volume_type",))
    if name is not None and not name.strip():
        raise bad_request("Volume type name can not be empty.")
    if name is None and description is None and public is None:
        raise bad_request("Specify volume type name, description, is_public or a combination thereof.")
    return (name.strip() if name else None), description, public


def read_type_specs(body: Any) -> dict[str, str]:
    """POST /types/{id}/extra_specs: {"extra_specs": {key: value}}."""
    body = decoded(body)
    if not isinstance(body, dict) or "extra_specs" not in body:
        raise bad_request("'extra_specs' is a required property")
    only("", body, ("extra_specs",))
    return _strings(metadata("extra_specs", body["extra_specs"], numbers=False, keys=CINDER_KEY))


def read_project(body: Any, action: str) -> str:
    """The project of an addProjectAccess / removeProjectAccess action."""
    body = decoded(body)
    values = body.get(action) if isinstance(body, dict) else None
    if not isinstance(values, dict) or not isinstance(values.get("project"), str) or not values["project"]:
        raise bad_request("Missing required element 'project' in request body.")
    return str(values["project"])


# ------------------------------------------------------------------ volumes


def read_volume(body: Any) -> VolumeInput:
    """POST /volumes (schemas/volumes.py create and volume/api.py's size check)."""
    body = decoded(body)
    values = body_object(body, "volume")
    only("", body, ("volume", "OS-SCH-HNT:scheduler_hints"))
    size = values.get("size")
    size = None if size is None else int_like("size", size, 1)
    for source in ("snapshot_id", "source_volid", "imageRef", "image_id", "backup_id", "consistencygroup_id",
                   "group_id"):
        if values.get(source) is not None:
            raise _invalid_input(f"{source}: vmqos keeps volumes as sizes and types, without data; create the "
                                 "volume empty, with --size")
    if values.get("multiattach"):
        raise bad_request("multiattach parameter has been removed. The default behavior is to use multiattach "
                          "enabled volume types. Contact your administrator to create a multiattach enabled "
                          "volume type and use it to create multiattach volumes.")
    if size is None:
        raise _invalid_input("Invalid volume size provided for create request: None (size argument must be an "
                             "integer (or string representation of an integer) and greater than zero).")
    name = values.get("name", values.get("display_name"))
    description = values.get("description", values.get("display_description"))
    for field, value in (("name", name), ("description", description)):
        if value is not None and (not isinstance(value, str) or len(value.strip()) > 255):
            raise invalid(field, value, f"{value!r} is not a string of at most 255 characters")
    vtype = values.get("volume_type")
    if vtype is not None and (not isinstance(vtype, str) or len(vtype) > 255):
        raise invalid("volume_type", vtype, f"{vtype!r} is not of type 'string', 'null'")
    zone = values.get("availability_zone")
    if zone is not None and not isinstance(zone, str):
        raise invalid("availability_zone", zone, f"{zone!r} is not of type 'string', 'null'")
    meta = metadata("metadata", values.get("metadata") or {}, numbers=False, keys=CINDER_KEY)
    return VolumeInput(size, name.strip() if name else name, description.strip() if description else description,
                       vtype or None, zone, meta)


@dataclass(frozen=True)
class VolumeUpdate:
    """What PUT /volumes/{id} changes: the name and the description, each when given (None clears it),
    and the metadata, which replaces the volume's when given (objects/volume.py save: keys not given go)."""

    changes: dict[str, str | None]
    metadata: dict[str, str] | None


def read_volume_update(body: Any) -> VolumeUpdate:
    """PUT /volumes/{id} (schemas/volumes.py update): name and description, or their v1 names display_name
    and display_description, strings or null, stripped; metadata as extra specs."""
    body = decoded(body)
    values = body_object(body, "volume")
    only("", body, ("volume",))
    only("volume", values, ("name", "description", "display_name", "display_description", "metadata"))
    changes: dict[str, str | None] = {}
    for field, alias in (("name", "display_name"), ("description", "display_description")):
        for key in (alias, field):  # the v2 name wins, as Cinder renames it last
            if key in values:
                value = values[key]
                if value is not None and (not isinstance(value, str) or len(value.strip()) > 255):
                    raise invalid(key, value, f"{value!r} is not a string of at most 255 characters")
                changes[field] = value.strip() if isinstance(value, str) else None
    meta = metadata("metadata", values["metadata"], numbers=False, keys=CINDER_KEY) if "metadata" in values \
        else None
    return VolumeUpdate(changes, meta)


def read_action(body: Any) -> tuple[str, Any]:
    """The action of POST /volumes/{id}/action: the body's one key and its value (Cinder's wsgi picks the
    method by the key; a body of no known key is "There is no such action")."""
    body = decoded(body)
    if not isinstance(body, dict) or len(body) != 1:
        raise bad_request("Malformed request body")
    ((action, value),) = body.items()
    return str(action), value


def read_extend(body: Any) -> int:
    """os-extend (schemas/volume_actions.py extend): {"os-extend": {"new_size": N}}, N a volume size."""
    values = body_object(body, "os-extend")
    only("os-extend", values, ("new_size",))
    required("os-extend", values, ("new_size",))
    return int_like("new_size", values["new_size"], 1)


def read_retype(body: Any) -> str:
    """os-retype (schemas/volume_actions.py retype): the new type's name or id, and a migration policy."""
    values = body_object(body, "os-retype")
    only("os-retype", values, ("new_type", "migration_policy"))
    required("os-retype", values, ("new_type",))
    if not isinstance(values["new_type"], str):
        raise invalid("new_type", values["new_type"], f"{values['new_type']!r} is not of type 'string'")
    policy = values.get("migration_policy")
    if policy not in (None, "on-demand", "never"):
        raise invalid("migration_policy", policy, f"{policy!r} is not one of ['on-demand', 'never']")
    return str(values["new_type"])
