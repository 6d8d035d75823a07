"""Keystone v3's identity subset: version discovery, issuing, validating and revoking tokens.

Shapes are Keystone's (keystone/api/auth.py, keystone/token/token_formatters): the token in
`X-Subject-Token`, the body with the user, the project, the roles and a service catalog that
names this server as the `identity`, `network`, `compute` and `volumev3` endpoints, so that
keystoneauth finds Neutron, Nova and Cinder here once it has a token. Errors are Keystone's
`{"error": {code, message, title}}`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse

from vmqos.api import auth
from vmqos.api.models import KeystoneError
from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.services import identity
from vmqos.services.identity import Caller, NotAuthenticated

router = APIRouter()
VERSION = "v3.14"  # Keystone's identity API version since Ussuri; keystoneauth only needs v3
REGION = "RegionOne"
_UPDATED = "2020-04-07T00:00:00Z"
_MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def base_url(request: Request) -> str:
    """The URL the client reached this server at, without a trailing slash: every link is built on it."""
    return str(request.base_url).rstrip("/")


def keystone_error(code: int, title: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "title": title}}, status_code=code)


def identity_version(request: Request) -> dict[str, Any]:
    return {"id": VERSION, "status": "stable", "updated": _UPDATED, "media-types": _MEDIA,
            "links": [{"rel": "self", "href": f"{base_url(request)}/v3/"}]}


@router.get("/v3", tags=["identity"], summary="Keystone v3 version document")
@router.get("/v3/", include_in_schema=False)
def version_v3(request: Request) -> dict[str, Any]:
    return {"version": identity_version(request)}


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def _endpoints(url: str) -> list[dict[str, str]]:
    return [{"id": hashlib.sha1(f"{url} {i}".encode()).hexdigest(), "interface": i, "region": REGION,
             "region_id": REGION, "url": url} for i in ("public", "internal", "admin")]


def catalog(request: Request, project_id: str) -> list[dict[str, Any]]:
    """This server as every service it answers for; compute and volume at devstack's paths (the
    volume URL names the token's project, as Cinder's catalog entry does)."""
    base = base_url(request)
    return [{"id": "vmqos-identity", "type": "identity", "name": "keystone", "endpoints": _endpoints(f"{base}/v3")},
            {"id": "vmqos-network", "type": "network", "name": "neutron", "endpoints": _endpoints(base)},
            {"id": "vmqos-compute", "type": "compute", "name": "nova", "endpoints": _endpoints(f"{base}/compute/v2.1")},
            {"id": "vmqos-volumev3", "type": "volumev3", "name": "cinderv3",
             "endpoints": _endpoints(f"{base}/volume/v3/{project_id}")}]


def token_body(request: Request, caller: Caller) -> dict[str, Any]:
    domain = {"id": identity.DEFAULT_DOMAIN_ID, "name": identity.DEFAULT_DOMAIN_NAME}
    token: dict[str, Any] = {
        "methods": ["password"], "audit_ids": [caller.audit_id], "is_domain": False,
        "user": {"id": caller.user.id, "name": caller.user.name, "domain": domain, "password_expires_at": None},
        "issued_at": _time(caller.issued_at), "expires_at": _time(caller.expires_at),
    }
    if caller.project is not None:
        token["project"] = {"id": caller.project.id, "name": caller.project.name, "domain": domain}
        token["roles"] = [{"id": role.id, "name": role.name} for role in caller.roles]
        token["catalog"] = catalog(request, caller.project.id)
    return {"token": token}


def _password_request(body: Any) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """(user reference, password, project reference or None) from Keystone's auth body."""
    try:
        ident = body["auth"]["identity"]
        if "password" not in ident.get("methods", []):
            raise NotAuthenticated("The request you have made requires authentication.")
        user = ident["password"]["user"]
        scope = body["auth"].get("scope")
        project = scope.get("project") if isinstance(scope, dict) else None
        if not isinstance(user, dict) or not (project is None or isinstance(project, dict)):
            raise TypeError
        return user, user.get("password", ""), project
    except (KeyError, TypeError, AttributeError):
        raise InvalidValue("auth", "(the body)", "send Keystone's v3 password auth body: "
                                    "{\"auth\": {\"identity\": {\"methods\": [\"password\"], \"password\": "
                                    "{\"user\": {...}}}, \"scope\": {\"project\": {...}}}}") from None


@router.post("/v3/auth/tokens", status_code=201, tags=["identity"], summary="Issue a token (password method)",
             responses={401: {"model": KeystoneError}, 400: {"model": KeystoneError}})
def issue_token(request: Request, response: Response, body: Any = Body(None)) -> dict[str, Any]:
    service = auth.local(request)
    user, password, project = _password_request(body)
    issued = service.issue(user, password, project)
    response.headers["X-Subject-Token"] = issued.token
    return token_body(request, issued.caller)


def _subject(request: Request) -> Caller:
    """The token named by X-Subject-Token, asked about by a caller with a valid X-Auth-Token: its own
    user's, or any token for an admin and a service (Keystone's identity:validate_token policy lets
    `rule:service_role` validate tokens: that is how another server checks its callers)."""
    service = auth.local(request)
    asking = service.validate(request.headers.get("X-Auth-Token"))
    subject = request.headers.get("X-Subject-Token")
    try:
        caller = service.validate(subject)
    except NotAuthenticated:
        raise TokenNotFound("Failed to validate token") from None
    privileged = asking.is_admin or identity.SERVICE_ROLE in asking.role_names
    if subject != request.headers.get("X-Auth-Token") and not privileged and asking.user.id != caller.user.id:
        raise TokenNotFound("Failed to validate token")
    return caller


class TokenNotFound(VmqosError):
    """Keystone's 404 for a subject token that is unknown, expired or revoked."""

    http_status = 404


@router.get("/v3/auth/tokens", tags=["identity"], summary="Validate a token (X-Subject-Token)",
            responses={401: {"model": KeystoneError}, 404: {"model": KeystoneError}})
def validate_token(request: Request, response: Response) -> dict[str, Any]:
    caller = _subject(request)
    response.headers["X-Subject-Token"] = request.headers.get("X-Subject-Token", "")
    return token_body(request, caller)


@router.head("/v3/auth/tokens", tags=["identity"], summary="Check a token (X-Subject-Token)")
def check_token(request: Request) -> Response:
    _subject(request)
    return Response(status_code=200)


@router.delete("/v3/auth/tokens", status_code=204, tags=["identity"], summary="Revoke a token (X-Subject-Token)")
def revoke_token(request: Request) -> Response:
    _subject(request)
    auth.local(request).revoke(request.headers.get("X-Subject-Token", ""))
    return Response(status_code=204)
