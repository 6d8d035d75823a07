"""The tag routes of a taggable Neutron resource, through services.neutron_tags.

Status codes are those of Neutron's tagging extension (neutron/extensions/tagging.py: index 200,
show 204, update 201 with a null body, update_all 200, delete 204, delete_all 204; POST adds tags,
tag-creation, 201) and the paths openstacksdk's TagMixin uses (`{base_path}/{id}/tags[/{tag}]`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse

from vmqos.api import models as m
from vmqos.api.network import ERRORS, caller, store_of
from vmqos.api.openapi_body import json_body
from vmqos.services import neutron_tags
from vmqos.services.identity import Caller
from vmqos.services.neutron_tags import Taggable

_TAGS_BODY = json_body(m.Tags)


def tag_routes(router: APIRouter, prefix: str, kind: Taggable[Any]) -> None:
    """Serve `{prefix}/{resource_id}/tags[/{tag}]` for the objects of `kind` on `router`."""
    path = prefix + "/{resource_id}/tags"
    what = kind.member

    @router.get(path, responses={200: {"model": m.Tags}, **ERRORS}, summary=f"The {what}'s tags")
    def get_tags(request: Request, resource_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        return {"tags": neutron_tags.get_tags(kind, store_of(request), who, resource_id)}

    @router.put(path, responses={200: {"model": m.Tags}, **ERRORS}, openapi_extra=_TAGS_BODY,
                summary=f"Replace the {what}'s tags")
    def replace_tags(request: Request, resource_id: str, body: Any = Body(None),
                     who: Caller = Depends(caller)) -> dict[str, Any]:
        return {"tags": neutron_tags.replace_tags(kind, store_of(request), who, resource_id, body)}

    @router.post(path, status_code=201, responses={201: {"model": m.Tags}, **ERRORS}, openapi_extra=_TAGS_BODY,
                 summary=f"Add tags to the {what} (tag-creation)")
    def add_tags(request: Request, resource_id: str, body: Any = Body(None),
                 who: Caller = Depends(caller)) -> dict[str, Any]:
        return {"tags": neutron_tags.add_tags(kind, store_of(request), who, resource_id, body)}

    @router.delete(path, status_code=204, responses=ERRORS, summary=f"Remove every tag of the {what}")
    def remove_tags(request: Request, resource_id: str, who: Caller = Depends(caller)) -> Response:
        neutron_tags.remove_tags(kind, store_of(request), who, resource_id)
        return Response(status_code=204)

    @router.get(path + "/{tag}", status_code=204, responses=ERRORS,
                summary=f"204 when the {what} has the tag, 404 otherwise")
    def has_tag(request: Request, resource_id: str, tag: str, who: Caller = Depends(caller)) -> Response:
        neutron_tags.has_tag(kind, store_of(request), who, resource_id, tag)
        return Response(status_code=204)

    @router.put(path + "/{tag}", status_code=201, responses=ERRORS,
                summary="Add one tag (Neutron answers 201 with a null body)")
    def add_tag(request: Request, resource_id: str, tag: str, who: Caller = Depends(caller)) -> JSONResponse:
        neutron_tags.add_tag(kind, store_of(request), who, resource_id, tag)
        return JSONResponse(None, status_code=201)

    @router.delete(path + "/{tag}", status_code=204, responses=ERRORS, summary="Remove one tag")
    def remove_tag(request: Request, resource_id: str, tag: str, who: Caller = Depends(caller)) -> Response:
        neutron_tags.remove_tag(kind, store_of(request), who, resource_id, tag)
        return Response(status_code=204)
