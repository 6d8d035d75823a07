"""Tags on Neutron's resources (standard-attr-tag, tag-creation): one implementation for all of them.

Neutron serves every taggable resource's tags through one controller (neutron/extensions/tagging.py
TaggingController): GET/PUT/POST/DELETE on `{collection}/{id}/tags` and GET/PUT/DELETE on
`{collection}/{id}/tags/{tag}`, at most 50 tags of at most 255 characters each, a change raising the
resource's revision_number. Here a resource says, as a `Taggable`, how its objects are found for a
caller, who may change them and how they are saved with other tags; the rules are this module's.

One difference with Neutron, kept on purpose: a tag request on an object the caller does not see
answers the resource's own "not found" (Neutron's tag controller reads the object with an elevated
context and answers 403, which tells that it exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Generic, TypeVar

from vmqos.services.identity import Caller
from vmqos.services.neutron_input import (
    MAX_TAG_LEN,
    MAX_TAGS_COUNT,
    NeutronError,
    check_string,
    check_unique_strings,
    invalid_input,
)
from vmqos.store import Store

T = TypeVar("T")


@dataclass(frozen=True)
class Taggable(Generic[T]):
    """A resource whose objects carry tags."""

    collection: str  # "policies", "networks", "ports": how Neutron's messages name the resource type
    member: str  # "policy", "network", "port": its policy rules are get_{member}:tags, update_{member}:tags, ...
    find: Callable[[Store, Caller, str], T]  # the object if the caller sees it, else the resource's 404
    may_change: Callable[[Caller, T], bool]  # beyond `can_write`: the owner's project, or an admin
    tags_of: Callable[[T], tuple[str, ...]]
    retag: Callable[[Store, T, tuple[str, ...], datetime | None], None]  # save it with these tags, revision + 1


def check_limit(collection: str, tags: Any) -> None:
    """validate_tags_limit: at most 50 distinct tags on one object."""
    if len(set(tags)) > MAX_TAGS_COUNT:
        raise NeutronError(400, "BadRequest", f"Bad {collection} request: The number of tags exceed the "
                                              f"per-resource limit of {MAX_TAGS_COUNT}.")


def _one_tag(tag: str) -> str:
    problem = check_string(tag, MAX_TAG_LEN)
    if problem:
        raise invalid_input(problem)
    return tag


def _tags_body(kind: Taggable[Any], body: Any) -> list[str]:
    if not isinstance(body, dict) or "tags" not in body:
        raise invalid_input("Invalid tags body")
    problem = check_unique_strings(body["tags"], MAX_TAG_LEN)
    if problem:
        raise invalid_input(problem)
    tags = list(body["tags"])
    check_limit(kind.collection, tags)
    return tags


def _target(kind: Taggable[T], store: Store, caller: Caller, object_id: str, action: str) -> T:
    found = kind.find(store, caller, object_id)
    if action != "get" and (not caller.can_write or not kind.may_change(caller, found)):
        raise NeutronError(403, "PolicyNotAuthorized", f"rule:{action}_{kind.member}:tags is disallowed by policy")
    return found


def _set(kind: Taggable[T], store: Store, found: T, tags: list[str], at: datetime | None) -> None:
    if tuple(tags) != kind.tags_of(found):
        kind.retag(store, found, tuple(tags), at)


def get_tags(kind: Taggable[Any], store: Store, caller: Caller, object_id: str) -> list[str]:
    return list(kind.tags_of(_target(kind, store, caller, object_id, "get")))


def has_tag(kind: Taggable[Any], store: Store, caller: Caller, object_id: str, tag: str) -> None:
    """Nothing when the object has the tag; TagNotFound (404) otherwise."""
    if _one_tag(tag) not in kind.tags_of(_target(kind, store, caller, object_id, "get")):
        raise NeutronError(404, "TagNotFound", f"Tag {tag} could not be found.")


def replace_tags(kind: Taggable[Any], store: Store, caller: Caller, object_id: str, body: Any,
                 *, at: datetime | None = None) -> list[str]:
    """PUT .../tags: the body's tags, and only those."""
    tags = _tags_body(kind, body)
    _set(kind, store, _target(kind, store, caller, object_id, "update"), tags, at)
    return tags


def add_tags(kind: Taggable[Any], store: Store, caller: Caller, object_id: str, body: Any,
             *, at: datetime | None = None) -> list[str]:
    """POST .../tags (tag-creation): add the tags not there yet; the answer is the body's list."""
    tags = _tags_body(kind, body)
    found = _target(kind, store, caller, object_id, "create")
    have = kind.tags_of(found)
    _set(kind, store, found, [*have, *(t for t in tags if t not in have)], at)
    return tags


def add_tag(kind: Taggable[Any], store: Store, caller: Caller, object_id: str, tag: str,
            *, at: datetime | None = None) -> None:
    found = _target(kind, store, caller, object_id, "update")
    have = kind.tags_of(found)
    if _one_tag(tag) not in have:
        check_limit(kind.collection, [*have, tag])
        _set(kind, store, found, [*have, tag], at)


def remove_tag(kind: Taggable[Any], store: Store, caller: Caller, object_id: str, tag: str,
               *, at: datetime | None = None) -> None:
    found = _target(kind, store, caller, object_id, "delete")
    have = kind.tags_of(found)
    if _one_tag(tag) not in have:
        raise NeutronError(404, "TagNotFound", f"Tag {tag} could not be found.")
    _set(kind, store, found, [t for t in have if t != tag], at)


def remove_tags(kind: Taggable[Any], store: Store, caller: Caller, object_id: str,
                *, at: datetime | None = None) -> None:
    _set(kind, store, _target(kind, store, caller, object_id, "delete"), [], at)
