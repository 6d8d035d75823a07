"""Conditional writes on /v1: a port's revision as its ETag, If-Match / If-None-Match on a write.

`vmqos port set --server` reads a port, changes it and writes it whole; two such writers at once
would lose the first one's change (the last PUT wins). The ETag is the row's revision (the store's
global revision at which it last changed, `desired_revision`), so a writer sends back what it read
in If-Match and the store compares it in the write's own transaction: 412 when someone wrote in
between (services.fleet_desired.Expect). `If-None-Match: *` asks that the device have no limit yet
(a writer that read 404). Without either header a write is unconditional, as before.
"""

from __future__ import annotations

from fastapi import Response

from vmqos.core.errors import InvalidValue
from vmqos.services.fleet_desired import Expect

# What an If-Match or If-None-Match can hold: visible ASCII, spaces between the tags of a list
# (RFC 9110 entity-tags). Declared in the OpenAPI document, so that clients and the fuzz test send
# header values HTTP can carry; uvicorn refuses a control character itself, before any route.
TAG_HEADER = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"


def etag(revision: int | None) -> str | None:
    return None if revision is None else f'"{revision}"'


def set_etag(response: Response, revision: int | None) -> None:
    tag = etag(revision)
    if tag is not None:
        response.headers["ETag"] = tag


def read_expect(if_match: str | None, if_none_match: str | None) -> Expect:
    """The Expect the headers ask for; a tag that is not one of ours is refused (400), naming the header."""
    if if_match is not None and if_none_match is not None:
        raise InvalidValue("If-Match", if_match, "give If-Match (the ETag you read) or If-None-Match: * (the device "
                                                 "had no limits), not both")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise InvalidValue("If-None-Match", if_none_match, "only '*' is understood: the device must have no "
                                                               "limits yet")
        return Expect(absent=True)
    if if_match is None:
        return Expect()
    tag = if_match.strip()
    tag = tag[2:] if tag.startswith("W/") else tag
    tag = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else tag
    if not tag.isdigit() or len(tag) > 19:
        raise InvalidValue("If-Match", if_match, 'give the ETag a GET of the port answered, e.g. "42" (its '
                                                 "desired_revision)")
    return Expect(revision=int(tag))
