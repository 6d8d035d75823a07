"""The fleet's native API at /v1 (docs/fleet-protocol.md): hosts, their desired state, reports, ports.

Every route needs a token (X-Auth-Token) and runs as its caller through services (who may do what:
services.fleet_access). The bodies are services.fleet_wire's models, so /openapi.json is the
protocol's exact schema; errors are Neutron-shaped, like the rest of the server.

The long poll (`GET /v1/hosts/{host}/desired/changes?since=R&wait=S`) is the one `async` route: it
waits on the application's Watch (api.fleet_watch) without a thread; every other route is plain
(FastAPI runs it in its thread pool), as the database calls under it are.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from vmqos.api import auth
from vmqos.api.conditional import TAG_HEADER, read_expect, set_etag
from vmqos.api import models as m
from vmqos.api.fleet_watch import MAX_WAIT_S, Watch
from vmqos.api.watch_auth import poller
from vmqos.services import fleet_access, fleet_desired, fleet_hosts, fleet_instances, verify_runs
from vmqos.services.dashboard_live import LiveHistory
from vmqos.services.fleet_wire import (
    MAX_REVISION,
    Changes,
    EventList,
    HostAnswer,
    HostList,
    NativePort,
    PortAnswer,
    PortList,
    QuarantineList,
    Registration,
    Report,
    ReportAnswer,
    Snapshot,
    UsageAnswer,
    check_host,
)
from vmqos.services.identity import Caller
from vmqos.services.verify_wire import MAX_PLOT_BYTES, MAX_UPLOAD_BYTES, VerifyRunAnswer, VerifyRunList, VerifyRunUpload
from vmqos.store import Store

router = APIRouter(prefix="/v1", tags=["fleet"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": m.NeutronErrorResponse}
                                           for code in (400, 401, 403, 404, 409, 410)}


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def watch_of(request: Request) -> Watch:
    found: Watch = request.app.state.fleet_watch
    return found


async def upload_cap(request: Request) -> Response | None:
    """413 before a verify run's body is read when its Content-Length says it cannot fit the plot's cap (the
    model refuses a bigger plot too, with 400, once it is read: a body sent without a length)."""
    length = request.headers.get("content-length", "")
    if request.method == "POST" and request.url.path.endswith("/verify-runs") and length.isdigit() \
            and int(length) > MAX_UPLOAD_BYTES:
        message = (f"a verify run's body of {length} bytes is too large: at most {MAX_UPLOAD_BYTES} (a plot of at "
                   f"most {MAX_PLOT_BYTES} bytes in base64, and the summary)")
        return JSONResponse({"NeutronError": {"type": "RequestEntityTooLarge", "message": message, "detail": ""}},
                            status_code=413)
    return None


# ------------------------------------------------------------------ hosts


@router.get("/hosts", responses=ERRORS, summary="Every host: registered by its agent, or with desired rows (admin)")
def list_hosts(request: Request, who: Caller = Depends(auth.caller)) -> HostList:
    return HostList(hosts=fleet_hosts.list_hosts(_store(request), who))


@router.put("/hosts/{host}", responses=ERRORS, summary="Register a host and what its agent found on it")
def register(request: Request, host: str, body: Registration, who: Caller = Depends(auth.caller)) -> HostAnswer:
    return HostAnswer(host=fleet_hosts.register(_store(request), who, host, body))


@router.get("/hosts/{host}", responses=ERRORS, summary="One host, with its derived status")
def show_host(request: Request, host: str, who: Caller = Depends(auth.caller)) -> HostAnswer:
    return HostAnswer(host=fleet_hosts.show_host(_store(request), who, host))


@router.get("/hosts/{host}/desired", responses=ERRORS,
            summary="The host's live desired rows and the revision to follow changes from")
def desired(request: Request, host: str, who: Caller = Depends(auth.caller)) -> Snapshot:
    fleet_access.check_host(who, check_host(host), "reading the desired state")
    return fleet_desired.snapshot(_store(request), host)


@router.get("/hosts/{host}/desired/changes", responses=ERRORS, response_model=Changes,
            summary="The host's rows above `since` (tombstones too): at once if any, else after up to `wait` s")
async def changes(request: Request, host: str,
                  since: int = Query(ge=0, le=MAX_REVISION,
                                     description="the revision of the last answer (/desired or /changes)"),
                  wait: float = Query(0.0, ge=0, description=f"seconds to wait for a change (capped at "
                                                             f"{MAX_WAIT_S:g})"),
                  who: Caller = Depends(poller)) -> Response:
    fleet_access.check_host(who, check_host(host), "reading the desired state")
    found = await watch_of(request).changes(host, since, wait)
    # serialized here, once, by the model itself: a thousand answers at one change are a thousand of these,
    # and FastAPI's own pass (validate the model again, then encode) costs ten times as much per answer
    # (without `uplink` when it did not change: the answer of a host without an uplink is as before it existed)
    return Response(found.model_dump_json(exclude={"uplink"} if found.uplink is None else None),
                    media_type="application/json")


@router.post("/hosts/{host}/reports", responses=ERRORS,
             summary="The agent's report: applied revision, port statuses, samples, events, quarantines; answered "
                     "with the quarantines to lift")
def report(request: Request, host: str, body: Report, who: Caller = Depends(auth.caller)) -> ReportAnswer:
    answer = fleet_hosts.report(_store(request), who, host, body)
    live: LiveHistory | None = getattr(request.app.state, "live", None)
    if live is not None:  # the dashboard's last minutes (services.dashboard_live)
        live.add(host, body.samples)
    return answer


# ------------------------------------------------------------------ instances and ports


@router.get("/instances", responses=ERRORS,
            summary="The instances the caller may see: the Neutron ports that name one (device_id), with their hosts")
def list_instances(request: Request, host: str | None = Query(None),
                   who: Caller = Depends(auth.caller)) -> fleet_instances.InstanceList:
    return fleet_instances.InstanceList(instances=fleet_instances.list_instances(_store(request), who, host))


@router.get("/ports", responses=ERRORS, summary="The devices the caller may see: desired joined with reported")
def list_ports(request: Request, host: str | None = Query(None), who: Caller = Depends(auth.caller)) -> PortList:
    return PortList(ports=fleet_hosts.list_ports(_store(request), who, host))


@router.get("/hosts/{host}/ports/{device}", responses=ERRORS, summary="One device of a host")
def show_port(request: Request, response: Response, host: str, device: str,
              who: Caller = Depends(auth.caller)) -> PortAnswer:
    found = fleet_hosts.show_port(_store(request), who, host, device)
    set_etag(response, found.desired_revision)  # what a conditional PUT sends back in If-Match
    return PortAnswer(port=found)


@router.get("/hosts/{host}/ports/{device}/usage", responses=ERRORS,
            summary="A device's per-IP usage of the current hour and day, as its agent last reported it")
def show_usage(request: Request, host: str, device: str, who: Caller = Depends(auth.caller)) -> UsageAnswer:
    return fleet_hosts.port_usage(_store(request), who, host, device)


@router.post("/hosts/{host}/ports/{device}/verify-runs", status_code=201, responses=ERRORS,
             summary="Keep a finished `vmqos verify` run of the device, with its plot (admin or the host's agent)")
def upload_verify_run(request: Request, host: str, device: str, body: VerifyRunUpload,
                      who: Caller = Depends(auth.caller)) -> VerifyRunAnswer:
    return VerifyRunAnswer(run=verify_runs.upload(_store(request), who, host, device, body))


@router.get("/hosts/{host}/ports/{device}/verify-runs", responses=ERRORS,
            summary="The device's verify runs, newest first, without their plots")
def list_verify_runs(request: Request, host: str, device: str,
                     limit: int = Query(verify_runs.KEEP, ge=1, le=verify_runs.KEEP),
                     who: Caller = Depends(auth.caller)) -> VerifyRunList:
    return VerifyRunList(runs=verify_runs.list_runs(_store(request), who, host, device, limit=limit))


@router.get("/hosts/{host}/ports/{device}/verify-runs/{run_id}/plot.png", responses={
    **ERRORS, 200: {"content": {"image/png": {}}, "description": "the run's plot"}},
            response_class=Response, summary="A verify run's plot (PNG)")
def verify_run_plot(request: Request, host: str, device: str, run_id: int = Path(ge=1, le=2**63 - 1),
                    who: Caller = Depends(auth.caller)) -> Response:
    return Response(verify_runs.plot(_store(request), who, host, device, run_id), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.put("/hosts/{host}/ports/{device}", responses={**ERRORS, 412: {"model": m.NeutronErrorResponse}},
            summary="Set a device's limits with the native API (admin; 409 when a Neutron port names it; 412 when "
                    "If-Match is not its ETag any more, or If-None-Match: * and it has limits)")
def set_port(request: Request, response: Response, host: str, device: str, body: NativePort,
             if_match: str | None = Header(None, pattern=TAG_HEADER,
                                           description='the ETag a GET answered ("42"): write only if nobody wrote since'),
             if_none_match: str | None = Header(None, pattern=TAG_HEADER,
                                                description="'*': write only if the device has no limits"),
             who: Caller = Depends(auth.caller)) -> PortAnswer:
    found = fleet_hosts.set_native(_store(request), who, host, device, body, read_expect(if_match, if_none_match))
    set_etag(response, found.desired_revision)
    return PortAnswer(port=found)


@router.delete("/hosts/{host}/ports/{device}", status_code=204, responses=ERRORS,
               summary="Release a device's native limits (admin)")
def clear_port(request: Request, host: str, device: str, who: Caller = Depends(auth.caller)) -> Response:
    fleet_hosts.clear_native(_store(request), who, host, device)
    return Response(status_code=204)


# ------------------------------------------------------------------ what the monitors found


@router.get("/events", responses=ERRORS, summary="The newest events the agents reported, newest first")
def list_events(request: Request, host: str | None = Query(None), device: str | None = Query(None),
                limit: int = Query(100, ge=1, le=fleet_hosts.EVENTS_LIMIT),
                who: Caller = Depends(auth.caller)) -> EventList:
    return EventList(events=fleet_hosts.list_events(_store(request), who, host=host, device=device, limit=limit))


@router.get("/quarantines", responses=ERRORS, summary="The quarantines in force")
def list_quarantines(request: Request, host: str | None = Query(None),
                     who: Caller = Depends(auth.caller)) -> QuarantineList:
    return QuarantineList(quarantines=fleet_hosts.list_quarantines(_store(request), who, host=host))
