"""Neutron at /v2.0: the version, the resources, the extensions, and what every Neutron route shares.

The routes themselves are in neutron_policies (qos/policies), neutron_rules (the five rule types,
their aliases, qos/rule-types), neutron_rbac (rbac-policies), neutron_ports (networks and ports) and
neutron_tags (the tags of policies, networks and ports); each needs a token
(X-Auth-Token) and runs as its caller through services/. A list answers `{collection: [...]}` with
`{collection}_links` when it was paged, as Neutron's base controller does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request

from vmqos.api import auth
from vmqos.api import models as m
from vmqos.services.identity import Caller
from vmqos.services.neutron_attributes import EXTENSIONS as PORT_EXTENSIONS
from vmqos.services.neutron_input import NeutronError
from vmqos.services.neutron_listing import Page, link_params
from vmqos.store import Store

router = APIRouter(prefix="/v2.0", tags=["network"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": m.NeutronErrorResponse} for code in (400, 403, 404, 409)}

# The extensions this server implements, as neutron-lib's api/definitions (and neutron/extensions) name them.
EXTENSIONS = (
    ("qos", "Quality of Service", "The Quality of Service extension.", "2015-06-08T10:00:00-00:00"),
    ("qos-bw-limit-direction", "Direction for QoS bandwidth limit rule",
     "Allow to configure QoS bandwidth limit rule with specific direction: ingress or egress",
     "2017-04-10T10:00:00-00:00"),
    ("qos-bw-minimum-ingress", "Ingress direction for QoS minimum bandwidth rule",
     "Allow to configure QoS minumum bandwidth rule with ingress direction.", "2018-07-09T10:00:00-00:00"),
    ("qos-default", "QoS default policy", "Expose the QoS default policy per project", "2017-041-06T10:00:00-00:00"),
    ("qos-pps", "QoS Rule Type Packet per Second Extension", "Add QoS Rule Type Packet per Second",
     "2021-05-12T10:00:00-00:00"),
    ("qos-pps-minimum", "QoS minimum packet rate rule", "Allow to configure QoS minimum packet rate rule.",
     "2021-07-14T10:00:00-00:00"),
    ("qos-pps-minimum-rule-alias", "QoS minimum packet rate rule alias",
     "API to enable GET, PUT and DELETE operations on QoS minimum packet rate rule without specifying policy ID",
     "2021-10-22T10:00:00-00:00"),
    ("qos-rule-type-details", "Details of QoS rule types",
     "Expose details about QoS rule types supported by loaded backend drivers", "2017-06-22T10:00:00-00:00"),
    ("qos-rule-type-filter", "Allow to filter the list of QoS rule types",
     'Allows to filter the QoS rule type list adding two new flags. "all_rules" prints all implemented QoS rule '
     'types."all_supported" prints all supported QoS rule types by the loaded mechanism drivers',
     "2022-02-02T10:00:00-00:00"),
    ("qos-rules-alias", "Quality of Service rules alias API",
     "API to enable GET, PUT and DELETE operations on QoS policy rules without specifying policy ID",
     "2018-10-07T10:00:00-00:00"),
    ("rbac-policies", "RBAC Policies",
     "Allows creation and modification of policies that control project access to resources.",
     "2015-06-17T12:15:12-00:00"),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled.",
     "2016-09-09T09:09:09-09:09"),
    ("standard-attr-description", "standard-attr-description",
     "Extension to add descriptions to standard attributes", "2016-02-10T10:00:00-00:00"),
    ("standard-attr-revisions", "Resource revision numbers",
     "This extension will display the revision number of neutron resources.", "2016-04-11T10:00:00-00:00"),
    ("standard-attr-tag", "Tag support for resources with standard attribute: network, port, policy",
     "Enables to set tag on resources with standard attribute.", "2017-01-01T00:00:00-00:00"),
    ("standard-attr-timestamp", "Resource timestamps",
     "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
     "2016-09-12T10:00:00-00:00"),
    ("tag-creation", "Tag creation extension", "Allow to create multiple tags for a resource",
     "2024-23-07T10:00:00-00:00"),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled.", "2016-06-12T00:00:00-00:00"),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled.",
     "2016-06-12T00:00:00-00:00"),
    ("filter-validation", "Filter parameters validation", "Provides validation on filter parameters.",
     "2018-07-04T10:00:00-00:00"),
) + PORT_EXTENSIONS  # networks and ports: binding, qos-port-network-policy, net-mtu, tag-ports-during-bulk-creation


def network_version(request: Request) -> dict[str, Any]:
    return {"id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{str(request.base_url).rstrip('/')}/v2.0/"}]}


def caller(request: Request) -> Caller:
    """The caller behind X-Auth-Token (keystonemiddleware's 401 otherwise), if it is a project's user
    (a service caller: 403 PolicyNotAuthorized, as Neutron's policy says)."""
    return auth.project_member(request, "Neutron", lambda message: NeutronError(403, "PolicyNotAuthorized", message))


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def fields_of(request: Request) -> list[str]:
    return [v for v in request.query_params.getlist("fields") if v]


def select_fields(view: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Only the attributes asked for with fields=, as Neutron answers (all when none is asked for)."""
    return {k: v for k, v in view.items() if k in fields} if fields else view


def listed(request: Request, collection: str, page: Page) -> dict[str, Any]:
    """A list answer: the items, and `{collection}_links` with absolute hrefs when the list was paged."""
    body: dict[str, Any] = {collection: page.items}
    if page.links:
        base = f"{str(request.base_url).rstrip('/')}{request.url.path}"
        body[f"{collection}_links"] = [
            {"rel": rel, "href": f"{base}?{urlencode(link_params(params(request), rel, extra))}"}
            for rel, extra in page.links]
    return body


@router.get("", summary="The v2.0 resources")
@router.get("/", include_in_schema=False)
def resources(request: Request) -> dict[str, Any]:
    base = f"{str(request.base_url).rstrip('/')}/v2.0"
    return {"resources": [{"name": name, "collection": collection,
                           "links": [{"rel": "self", "href": f"{base}/{collection}"}]}
                          for name, collection in (("policy", "qos/policies"), ("rbac_policy", "rbac-policies"),
                                                   ("network", "networks"), ("port", "ports"))]}


def _extension(alias: str, name: str, description: str, updated: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description, "updated": updated, "links": []}


@router.get("/extensions", summary="Extensions this server implements")
def extensions(who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"extensions": [_extension(*ext) for ext in EXTENSIONS]}


@router.get("/extensions/{alias}", responses=ERRORS)
def extension(alias: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    for ext in EXTENSIONS:
        if ext[0] == alias:
            return {"extension": _extension(*ext)}
    raise NeutronError(404, "HTTPNotFound", f"Extension with alias {alias} does not exist")
