"""Keystone v3 request bodies for users and projects, read with Keystone's checks.

`POST /v3/users` and `PATCH /v3/users/{id}` take `{"user": {...}}`; projects likewise. Keystone's
JSON schemas (keystone/identity/schema.py, keystone/resource/schema.py) accept a name of 1 to 255
characters, booleans for `enabled`, strings or null for ids and `description`, and keep any other
attribute as an "extra" one, returned as sent; vmqos does the same, and reads one extra attribute
itself: `vmqos_host`, the host a service user is bound to (a real Keystone keeps it too, so the
same `openstack` or API call works against either). The `vmqos identity` commands build the same
values from their options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmqos.core.errors import VmqosError, shown
from vmqos.store.identity import DEFAULT_DOMAIN_ID

HOST_ATTRIBUTE = "vmqos_host"
# Keystone's user options that vmqos honours; the others (MFA, password expiry) are refused, not ignored.
USER_OPTIONS = ("ignore_lockout_failure_attempts",)
_USER_FIELDS = ("name", "password", "enabled", "default_project_id", HOST_ATTRIBUTE, "description", "email",
                "options", "domain_id")
_PROJECT_FIELDS = ("name", "description", "enabled", "domain_id", "parent_id", "is_domain", "tags", "options")
_READ_ONLY = ("id", "links", "password_expires_at", "federated")


class BadRequest(VmqosError):
    """A body Keystone's schema refuses (400), in Keystone's words: the field and what it must be."""

    http_status = 400


def invalid(field_name: str, value: object, expected: str) -> BadRequest:
    return BadRequest(f"Invalid input for field '{field_name}': {shown(value)} is not {expected}.")


@dataclass(frozen=True)
class UserInput:
    """A user's attributes as sent; `given` names those present (an update changes only them)."""

    given: frozenset[str]
    name: str = ""
    password: str | None = None
    enabled: bool = True
    default_project_id: str | None = None
    host: str | None = None
    description: str | None = None
    email: str | None = None
    options: dict[str, bool] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)  # attributes vmqos keeps but does not read


@dataclass(frozen=True)
class ProjectInput:
    given: frozenset[str]
    name: str = ""
    description: str = ""
    enabled: bool = True
    tags: tuple[str, ...] = ()
    other: dict[str, Any] = field(default_factory=dict)


def _member(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f"Expecting to find {key} in request body. The server could not comply with the request "
                         "since it is either malformed or otherwise incorrect. The client is assumed to be in error.")
    member: dict[str, Any] = body[key]
    return member


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255 or "\x00" in value:
        raise invalid("name", value, "a string of 1 to 255 characters, not only spaces, without NUL")
    return value


def _optional_string(field_name: str, value: object, longest: int = 255) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > longest or "\x00" in value):
        raise invalid(field_name, value, f"a string of at most {longest} characters (no NUL) or null")
    return value


def _boolean(field_name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise invalid(field_name, value, "of type 'boolean'")
    return value


def _domain(value: object) -> None:
    if value is not None and value != DEFAULT_DOMAIN_ID:
        raise invalid("domain_id", value, f"{DEFAULT_DOMAIN_ID!r}: vmqos has one domain, Default")


def host_name(value: object) -> str | None:
    """A host name as `vmqos_host` holds it: what the agent on that host reports as its name."""
    if value is None:
        return None
    if (not isinstance(value, str) or not 1 <= len(value) <= 253 or value != value.strip()
            or any(c.isspace() or c in "/\x00" for c in value)):
        raise invalid(HOST_ATTRIBUTE, value, "a host name of 1 to 253 characters without spaces or '/'")
    return value


def read_user(body: Any, *, create: bool) -> UserInput:
    user = _member(body, "user")
    if create and "name" not in user:
        raise invalid("name", None, "given: 'name' is a required property")
    values: dict[str, Any] = {}
    other = {k: v for k, v in user.items() if k not in _USER_FIELDS and k not in _READ_ONLY}
    if "name" in user:
        values["name"] = _name(user["name"])
    if "password" in user:
        password = user["password"]
        if password is not None and (not isinstance(password, str) or not 1 <= len(password) <= 4096):
            raise invalid("password", "(not shown)", "a string of 1 to 4096 characters or null")
        values["password"] = password
    if "enabled" in user:
        values["enabled"] = _boolean("enabled", user["enabled"])
    for key in ("default_project_id", "description", "email"):
        if key in user:
            values[key] = _optional_string(key, user[key])
    if HOST_ATTRIBUTE in user:
        values["host"] = host_name(user[HOST_ATTRIBUTE])
    if "domain_id" in user:
        _domain(user["domain_id"])
    if "options" in user:
        options = user["options"]
        if not isinstance(options, dict):
            raise invalid("options", options, "an object")
        for key, value in options.items():
            if key not in USER_OPTIONS:
                raise invalid(f"options.{key}", value, f"supported: vmqos honours only {', '.join(USER_OPTIONS)}")
            _boolean(f"options.{key}", value)
        values["options"] = dict(options)
    given = frozenset({*values, *(("other",) if other else ())})
    return UserInput(given, **values, other=other)


def read_project(body: Any, *, create: bool) -> ProjectInput:
    project = _member(body, "project")
    if create and "name" not in project:
        raise invalid("name", None, "given: 'name' is a required property")
    values: dict[str, Any] = {}
    other = {k: v for k, v in project.items() if k not in _PROJECT_FIELDS and k not in _READ_ONLY}
    if "name" in project:
        values["name"] = _name(project["name"])
    if "description" in project:
        values["description"] = _optional_string("description", project["description"], 65535) or ""
    if "enabled" in project:
        values["enabled"] = _boolean("enabled", project["enabled"])
    if "tags" in project:
        tags = project["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and 1 <= len(t) <= 255 and "\x00" not in t
                                                 for t in tags):
            raise invalid("tags", tags, "a list of strings of 1 to 255 characters")
        values["tags"] = tuple(dict.fromkeys(tags))
    _domain(project.get("domain_id"))
    if project.get("parent_id") not in (None, DEFAULT_DOMAIN_ID):
        raise invalid("parent_id", project["parent_id"], "null or 'default': vmqos has no project hierarchy")
    if project.get("is_domain") not in (None, False):
        raise invalid("is_domain", project["is_domain"], "false: vmqos has one domain, Default")
    if project.get("options") not in (None, {}):
        raise invalid("options", project["options"], "{}: vmqos supports no project option")
    given = frozenset({*values, *(("other",) if other else ())})
    return ProjectInput(given, **values, other=other)


def read_password_change(body: Any) -> tuple[str, str]:
    """(original password, new password) of `POST /v3/users/{id}/password`."""
    user = _member(body, "user")
    for key in ("original_password", "password"):
        if not isinstance(user.get(key), str):
            raise invalid(key, user.get(key), "given: a string is required")
    return user["original_password"], user["password"]
