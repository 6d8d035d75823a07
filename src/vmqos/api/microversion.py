"""Microversions and fault bodies, as Nova (compute) and Cinder (volume) answer them.

A client asks for a microversion with `OpenStack-API-Version: compute 2.61` (Nova also reads the
legacy `X-OpenStack-Nova-API-Version: 2.61`) or `OpenStack-API-Version: volume 3.66`; no header
means the minimum, `latest` the maximum; a malformed one is 400 and one out of range 406 (Nova's
and Cinder's wsgi.Resource). Every answer, errors included, says which version it is and that it
varies with the header. Errors are the fault body both services share: `{"badRequest": {"code":
400, "message": ...}}`, the key named after the status (wsgi.Fault._fault_names).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from vmqos.services.openstack_input import Fault

FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
               409: "conflictingRequest", 413: "overLimit", 415: "badMediaType", 429: "overLimit",
               501: "notImplemented", 503: "serviceUnavailable"}
_VERSION = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@dataclass(frozen=True)
class Service:
    """One microversioned API: its name in the header, its range, and Nova's legacy header if any."""

    name: str
    minimum: tuple[int, int]
    maximum: tuple[int, int]
    legacy_header: str | None = None


def shown(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _asked(request: Request, service: Service) -> str | None:
    """microversion_parse.get_version: the service's entry of OpenStack-API-Version, else the legacy header."""
    for header in request.headers.getlist("OpenStack-API-Version"):
        for item in header.split(","):
            parts = item.strip().split(None, 1)
            if len(parts) == 2 and parts[0].lower() == service.name:
                return parts[1].strip()
    if service.legacy_header is not None:
        legacy = request.headers.get(service.legacy_header)
        if legacy:
            return legacy.strip()
    return None


def negotiate(request: Request, service: Service) -> tuple[int, int]:
    """The version this request is answered at; remembered on the request for the response headers."""
    asked = _asked(request, service)
    if asked is None:
        version = service.minimum
    elif asked == "latest":
        version = service.maximum
    else:
        match = _VERSION.match(asked)
        if match is None:
            raise Fault(400, f"API Version String {asked} is of invalid format. Must be of format "
                             "MajorNum.MinorNum.")
        version = (int(match.group(1)), int(match.group(2)))
        if not service.minimum <= version <= service.maximum:
            raise Fault(406, f"Version {shown(version)} is not supported by the API. Minimum is "
                             f"{shown(service.minimum)} and maximum is {shown(service.maximum)}.")
    request.state.microversion = (service, version)
    return version


def add_headers(request: Request, response: Response) -> None:
    chosen = getattr(request.state, "microversion", None)
    if chosen is None:
        return
    service, version = chosen
    response.headers["OpenStack-API-Version"] = f"{service.name} {shown(version)}"
    vary = ["OpenStack-API-Version"]
    if service.legacy_header is not None:
        response.headers[service.legacy_header] = shown(version)
        vary.append(service.legacy_header)
    response.headers["Vary"] = ", ".join(vary)


class VersionedRoute(APIRoute):
    """A route whose answers carry the microversion headers (the errors get them in `fault`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def versioned(request: Request) -> Response:
            response = await handler(request)
            add_headers(request, response)
            return response

        return versioned


def fault(request: Request, status: int, message: str) -> JSONResponse:
    """Nova's and Cinder's error body for `status`."""
    response = JSONResponse({FAULT_NAMES.get(status, "computeFault"): {"code": status, "message": message}},
                            status_code=status)
    add_headers(request, response)
    return response
