"""The web dashboard's routes: its page, its log-in, its views as JSON, and one live stream per page.

The page (src/vmqos/web, served at `/` to a browser and under /dashboard/static) is a client of this
same server. It logs in with the server's own identity (POST /dashboard/session: Keystone's password
check, services.identity), and the token is kept in an HttpOnly, SameSite=Strict cookie the page's
script cannot read. `session_middleware` turns that cookie into the X-Auth-Token every route already
reads, so the dashboard's writes go through the very routes the openstack CLI uses (Neutron's
/v2.0/qos/policies and rules: the same validation, the same messages, the same authorization); a
write that arrives with the cookie needs the double-submit CSRF token too (the `vmqos_csrf` cookie's
value echoed in the X-CSRF-Token header, which another site's page can neither read nor set).

The views are services.dashboard_views' read models; the stream (`GET /dashboard/stream`) sends the
page's view as a server-sent event whenever an agent's report moved the live history (at most every
STREAM_TICK_S), so a page of 1,000 rows is one message a second, not a request per row.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

import vmqos
from vmqos.api import auth
from vmqos.api import models as m
from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.services import dashboard_views as views
from vmqos.services import fleet_hosts
from vmqos.services.dashboard_live import LiveHistory
from vmqos.services.identity import Caller, NotAuthenticated
from vmqos.store import Store

WEB = Path(vmqos.__file__).parent / "web"
SESSION_COOKIE = "vmqos_session"
CSRF_COOKIE = "vmqos_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STREAM_TICK_S = 0.25
STREAM_KEEPALIVE_S = 15.0

router = APIRouter(prefix="/dashboard", tags=["dashboard"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": m.NeutronErrorResponse} for code in (400, 401, 403, 404)}


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(max_length=4096)
    project: str = Field(min_length=1, max_length=255)
    domain: str = Field("Default", min_length=1, max_length=255)


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _live(request: Request) -> LiveHistory:
    live: LiveHistory = request.app.state.live
    return live


def _csrf_error(message: str) -> JSONResponse:
    return JSONResponse({"NeutronError": {"type": "CsrfRefused", "message": message, "detail": ""}}, status_code=403)


async def session_middleware(request: Request) -> Response | None:
    """The dashboard's cookie as the caller's X-Auth-Token (a request that brings its own token is left
    alone); a write with the cookie must echo the CSRF cookie in X-CSRF-Token, else 403."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or "x-auth-token" in request.headers:
        return None
    if request.method not in SAFE_METHODS and request.url.path != "/dashboard/session":
        sent, kept = request.headers.get(CSRF_HEADER, ""), request.cookies.get(CSRF_COOKIE, "")
        if not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
            return _csrf_error(f"a write with the dashboard's session cookie needs the {CSRF_HEADER} header equal "
                               f"to the {CSRF_COOKIE} cookie (reload the page, or send X-Auth-Token instead)")
    request.scope["headers"] = [*request.scope["headers"], (b"x-auth-token", token.encode("latin-1"))]
    return None


def index() -> FileResponse:
    """The page itself (served at / to a browser: a request that accepts text/html)."""
    return FileResponse(WEB / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                            "img-src 'self' data:; frame-ancestors 'none'"})


@router.get("", include_in_schema=False)
def dashboard_page() -> FileResponse:
    return index()


# ------------------------------------------------------------------ session


def _set_session(response: Response, request: Request, token: str, max_age: int) -> str:
    secure = request.url.scheme == "https"
    csrf = secrets.token_urlsafe(24)
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", httponly=False, samesite="strict",
                        secure=secure)
    return csrf


@router.post("/session", responses=ERRORS, summary="Log in to the dashboard (the token goes in an HttpOnly cookie)")
def log_in(request: Request, response: Response, body: Login) -> views.Who:
    service = auth.local(request)
    domain = {"name": body.domain}
    issued = service.issue({"name": body.username, "domain": domain}, body.password,
                           {"name": body.project, "domain": domain})
    max_age = max(1, int((issued.caller.expires_at - issued.caller.issued_at).total_seconds()))
    _set_session(response, request, issued.token, max_age)
    return views.who(issued.caller)


@router.get("/session", responses=ERRORS, summary="Who the dashboard's session is")
def session(who: Caller = Depends(auth.caller)) -> views.Who:
    return views.who(who)


@router.delete("/session", status_code=204, responses=ERRORS, summary="Log out (the token is revoked)")
def log_out(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    sent, kept = request.headers.get(CSRF_HEADER, ""), request.cookies.get(CSRF_COOKIE, "")
    if token and (not kept or not hmac.compare_digest(sent.encode(), kept.encode())):
        return _csrf_error(f"logging out needs the {CSRF_HEADER} header equal to the {CSRF_COOKIE} cookie")
    if token:
        try:
            auth.local(request).revoke(token)
        except NotAuthenticated:
            pass
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


# ------------------------------------------------------------------ views


@router.get("/api/fleet", responses=ERRORS, summary="The fleet view: hosts, top talkers, recent events")
def fleet_view(request: Request, who: Caller = Depends(auth.caller)) -> views.FleetView:
    return views.fleet(_store(request), who)


@router.get("/api/hosts/{host}", responses=ERRORS, summary="A host's ports, one row per port and direction")
def host_view(request: Request, host: str, who: Caller = Depends(auth.caller)) -> views.HostView:
    return views.host(_store(request), who, host)


@router.get("/api/hosts/{host}/ports/{device}", responses=ERRORS, summary="A port: limits, status, history, events")
def port_view(request: Request, host: str, device: str, who: Caller = Depends(auth.caller)) -> views.PortView:
    return views.port(_store(request), who, _live(request), host, device)


@router.get("/api/events", responses=ERRORS, summary="The newest events and the quarantines in force")
def events_view(request: Request, who: Caller = Depends(auth.caller)) -> views.EventsView:
    return views.events(_store(request), who)


@router.post("/api/quarantines/{host}/{device}/lift", status_code=202, responses=ERRORS,
             summary="Ask the host's agent to lift a quarantine (admin): done at its next report")
def lift(request: Request, host: str, device: str, who: Caller = Depends(auth.caller)) -> Response:
    fleet_hosts.request_lift(_store(request), who, host, device)
    _live(request).touch()
    return Response(status_code=202)


# ------------------------------------------------------------------ the live stream


ViewName = Literal["fleet", "host", "port", "events"]


def _frame(store: Store, caller: Caller, live: LiveHistory, view: ViewName, host: str | None, device: str | None,
           since: float | None) -> BaseModel:
    if view == "fleet":
        return views.fleet(store, caller)
    if view == "events":
        return views.events(store, caller)
    if host is None:
        raise InvalidValue("host", None, "the host and port views need ?host=NAME")
    if view == "host":
        return views.host(store, caller, host)
    if device is None:
        raise InvalidValue("device", None, "the port view needs ?device=NAME")
    return views.port(store, caller, live, host, device, since)


def _event(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


@router.get("/stream", responses=ERRORS, include_in_schema=False,  # an endless text/event-stream, not a JSON API
            summary="Server-sent events: the page's view, again whenever it changes")
async def stream(request: Request, view: ViewName = Query(...), host: str | None = Query(None),
                 device: str | None = Query(None)) -> StreamingResponse:
    authenticator = auth.authenticator(request)
    token = request.headers.get("X-Auth-Token")
    caller = await run_in_threadpool(authenticator.validate, token)  # 401 before the stream starts
    store, live = _store(request), _live(request)
    first = await run_in_threadpool(_frame, store, caller, live, view, host, device, None)

    async def frames() -> AsyncIterator[bytes]:
        nonlocal caller
        sent_version, last = live.version, asyncio.get_running_loop().time()
        since = _last_point(first)
        yield _event("view", first.model_dump_json())
        while not await request.is_disconnected():
            await asyncio.sleep(STREAM_TICK_S)
            if request.app.state.fleet_watch.closing:  # the server stops (api.stop_signals): the page reconnects
                return
            now = asyncio.get_running_loop().time()
            if live.version == sent_version:
                if now - last >= STREAM_KEEPALIVE_S:
                    last = now
                    yield b": keep-alive\n\n"
                continue
            sent_version, last = live.version, now
            try:
                caller = await run_in_threadpool(authenticator.validate, token)
                frame = await run_in_threadpool(_frame, store, caller, live, view, host, device, since)
            except VmqosError as exc:  # logged out, expired, the port gone: said, then the stream ends
                yield _event("failed", json.dumps({"message": str(exc), "status": getattr(exc, "http_status", 500)}))
                return
            since = _last_point(frame, since)
            yield _event("view", frame.model_dump_json())

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _last_point(frame: BaseModel, since: float | None = None) -> float | None:
    """The newest history point the page has (a port view's next frame sends only newer ones)."""
    if isinstance(frame, views.PortView) and frame.history:
        return frame.history[-1].at
    return since
