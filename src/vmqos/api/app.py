"""The API server's application: its routes, its one database, and every error as the client expects it.

One server answers as Keystone (/v3) and as Neutron (/, /v2.0), so that the real `openstack` CLI
needs nothing but OS_AUTH_URL. The root document lists Neutron's v2.0 and Keystone's v3 in the
list form both Neutron and keystoneauth read: the network service finds v2.0 in it and an auth URL
without /v3 finds v3. `vmqos server` starts it through uvicorn by the import string
"vmqos.api.app:create_app" (the command line never imports this room, a contract), with the
database named in $VMQOS_DB.

It answers as Nova (/compute/v2.1) and Cinder (/volume/v3/{project_id}) too, whose errors are
their shared fault body, routed by path as Neutron's are.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from vmqos import __version__
from vmqos.api import (compute, dashboard, fleet, identity, identity_admin, microversion, native, network,
                       neutron_policies, neutron_ports, neutron_rbac, neutron_rules, volume, volume_volumes)
from vmqos.api import fleet_uplinks, poll_log, stop_signals
from vmqos.api.checks import Checks
from vmqos.api.fleet_fastpoll import FastPoll
from vmqos.api.fleet_watch import Watch
from vmqos.core.errors import ConflictError, InvalidValue, NotFound, VmqosError
from vmqos.services import authn, fleet_desired
from vmqos.services.authn import Authenticator, ServerAuth
from vmqos.services.dashboard_live import LiveHistory
from vmqos.services.identity import NotAuthenticated
from vmqos.services.neutron_input import NeutronError
from vmqos.store import Store

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}
_HTTP_TYPES = {400: "HTTPBadRequest", 403: "HTTPForbidden", 404: "HTTPNotFound", 405: "HTTPMethodNotAllowed",
               409: "HTTPConflict"}


def _neutron(request: Request) -> bool:
    return request.url.path.startswith("/v2.0")


def _fleet(request: Request) -> bool:
    """The native API (/v1) and the dashboard's routes answer errors in Neutron's shape, its type the
    error's own name."""
    path = request.url.path
    return path.startswith(("/v1/", "/dashboard/")) or path in ("/v1", "/dashboard")


def _nova_or_cinder(request: Request) -> bool:
    """Nova (/compute) and Cinder (/volume) answer errors with the same fault body."""
    return request.url.path.startswith((compute.PREFIX, volume.PREFIX))


def neutron_error(status: int, type_: str, message: str) -> JSONResponse:
    return JSONResponse({"NeutronError": {"type": type_, "message": message, "detail": ""}}, status_code=status)


def _unauthenticated(request: Request, exc: Exception) -> JSONResponse:
    """keystonemiddleware's (for /v2.0) and Keystone's 401: the same body, and where to get a token
    (this server's /v3, or the external Keystone it validates tokens with)."""
    response = identity.keystone_error(401, "Unauthorized", "The request you have made requires authentication.")
    uri = request.app.state.auth.auth_url(f"{identity.base_url(request)}/v3")
    response.headers["WWW-Authenticate"] = f'Keystone uri="{uri}"'
    return response


def _vmqos_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, NeutronError):
        return neutron_error(exc.http_status, exc.type, str(exc))
    status = getattr(exc, "http_status", 500)
    if isinstance(exc, NotAuthenticated):
        return _unauthenticated(request, exc)
    if _nova_or_cinder(request):
        return microversion.fault(request, status, str(exc))
    if _fleet(request):
        return neutron_error(status, type(exc).__name__, str(exc))
    if _neutron(request):
        kind = ("InvalidInput" if isinstance(exc, InvalidValue) else "Conflict" if isinstance(exc, ConflictError)
                else "NotFound" if isinstance(exc, NotFound) else _HTTP_TYPES.get(status, "HTTPInternalServerError"))
        return neutron_error(status, kind, str(exc))
    return identity.keystone_error(status, _TITLES.get(status, "Error"), str(exc))


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status_code", 500)
    if _nova_or_cinder(request):
        return microversion.fault(request, status, "The resource could not be found." if status == 404
                                  else str(getattr(exc, "detail", "")))
    if _neutron(request) or _fleet(request):
        message = "The resource could not be found." if status == 404 else str(getattr(exc, "detail", ""))
        return neutron_error(status, _HTTP_TYPES.get(status, "HTTPError"), message)
    return identity.keystone_error(status, _TITLES.get(status, "Error"), str(getattr(exc, "detail", "")))


def _bad_body(request: Request, exc: Exception) -> JSONResponse:
    """A body that is not JSON (the only thing FastAPI itself checks here): Neutron's MalformedRequestBody.
    /v1 declares its bodies and queries as models: what they refuse is named, field and reason."""
    if _fleet(request) and isinstance(exc, RequestValidationError):
        if request.url.path.startswith("/v1/policies") and request.method != "GET":  # a policy's write: 422,
            # as the model's own refusals; a list's bad limit or marker is a query's 400
            return neutron_error(422, "PolicyInvalid", _first_problem(exc, with_value=True))
        if request.url.path.endswith("/uplink") and request.method == "PUT":  # an uplink's body too
            return neutron_error(422, "UplinkInvalid", _first_problem(exc, with_value=True))
        return neutron_error(400, "InvalidInput", _first_problem(exc))
    if _nova_or_cinder(request):
        return microversion.fault(request, 400, "Malformed request body")
    if _neutron(request):
        return neutron_error(400, "MalformedRequestBody", "Malformed request body: the body is not JSON.")
    return identity.keystone_error(400, "Bad Request", "Malformed request body: the body is not JSON.")


def _first_problem(exc: RequestValidationError, *, with_value: bool = False) -> str:
    errors = exc.errors()
    if not errors:
        return "Invalid input: the request could not be read."
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "the body"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    given = ""
    if with_value and first.get("type") != "missing" and "input" in first:
        given = f" ({str(first['input'])[:80]!r} given)"
    return f"Invalid input for {where}{given}: {first.get('msg', 'not valid')}{more}"


async def _no_nul(request: Request) -> Response | None:
    """No NUL reaches a use case: PostgreSQL's text cannot hold one (a lookup of an id with a NUL was a
    500 there, found by the fuzz test), and no name or id vmqos stores has one. In a path it names
    nothing (404); in a query or a body it is refused (400), in the answering service's error shape."""
    if "\x00" in request.url.path:
        return _http_error(request, HTTPException(404))
    if "\x00" in unquote_plus(request.url.query):
        return _http_error(request, HTTPException(400, "Invalid input: a query parameter contains a NUL character."))
    body = await request.body()  # api.checks hands it on to the route
    if b"\x00" in body or b"\\u0000" in body:
        return _http_error(request, HTTPException(400, "Invalid input: the body contains a NUL character."))
    return None


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes as the application's own, as `@app.get` would add them. `app.include_router`
    (FastAPI 0.165) keeps the router and builds every route's state again, per application, at its first
    requests (~0.3 s of CPU at each server's start and each in-process application of the tests); the
    routers here carry their prefix already and are included with no option of their own, so that copy
    would be the same route."""
    app.router.routes.extend(router.routes)


def create_app(url: str | None = None, *, settings: ServerAuth | None = None,
               auth: Authenticator | None = None) -> FastAPI:
    """The application on the database `url` ($VMQOS_DB, else the host's default), authenticating as
    `settings` say (else as $VMQOS_AUTH and its companions say: `vmqos server` sets them), or with
    `auth` itself (tests inject one with their own clock)."""
    store = Store(url)
    authenticator = auth or authn.build(store, settings or ServerAuth.from_env())

    watch = Watch(store)
    summary = poll_log.install()  # the long poll's 200s: a line a minute, not one each (api.poll_log)
    summary.enabled = os.environ.get(poll_log.EVERY_POLL_ENV, "") != "1"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # every desired row again: what a crash between a Neutron write and its rows would have missed
        await run_in_threadpool(fleet_desired.refresh, store)
        await watch.start()
        said = asyncio.create_task(poll_log.summarize(summary), name="vmqos-poll-log")
        unchain = stop_signals.before_stop_signals(watch.close)  # a stop answers the long waits at once
        yield
        unchain()
        said.cancel()  # its last summary said on the way out
        await asyncio.gather(said, return_exceptions=True)
        await watch.stop()
        store.close()

    app = FastAPI(title="vmqos API", version=__version__, lifespan=lifespan,
                  description="Keystone v3 tokens, Neutron QoS policies, Nova flavors and Cinder QoS specs, "
                              "types and volumes for the openstack CLI; the fleet's native API (/v1) for the "
                              "agents (docs/fleet-protocol.md).")
    app.state.store = store
    app.state.auth = authenticator
    app.state.fleet_watch = watch
    app.state.live = LiveHistory()
    app.add_exception_handler(VmqosError, _vmqos_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _bad_body)
    # the cookie as a token first; a verify run's plot capped before the body is read; then no NUL
    app.add_middleware(Checks, checks=[dashboard.session_middleware, fleet.upload_cap, _no_nul])
    # outermost: the agents' well-formed long polls answered before the checks and FastAPI (api.fleet_fastpoll)
    app.add_middleware(FastPoll, on_error=_vmqos_error)

    @app.get("/", tags=["discovery"], summary="The API versions: Neutron's v2.0 and Keystone's v3 (a browser, "
                                              "which asks for text/html, gets the dashboard)",
             response_model=None)
    def versions(request: Request) -> dict[str, Any] | Response:
        if "text/html" in request.headers.get("accept", ""):
            return dashboard.index()
        return {"versions": [network.network_version(request), identity.identity_version(request)]}

    # /v1 first (native, fleet; native's before fleet's: /v1/events/changes is not a /v1/events query): a
    # request is matched against the routes in order, and the agents' long polls are most of a fleet's
    # requests (after the 300-odd Neutron, Nova and Cinder routes, matching cost 30 % of one); no other
    # router's paths start with /v1, so the order changes no answer
    for router in (native.router, fleet.router, fleet_uplinks.router, identity.router, identity_admin.router,
                   network.router, neutron_policies.router, neutron_rules.router, neutron_rbac.router,
                   neutron_ports.router, compute.router, volume.router, volume_volumes.router, dashboard.router):
        add_routes(app, router)
    app.mount("/dashboard/static", StaticFiles(directory=dashboard.WEB, check_dir=False), name="dashboard-static")

    return app
