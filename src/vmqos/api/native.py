"""The native API's (/v1) objects beyond the fleet's protocol: vmqos's own policies, volumes, a port's
effective QoS, and the events a follower reads as they come.

The routes are thin: typed bodies in, the use cases of services.native_policies and
services.native_views, typed answers out. A policy's revision is its ETag; PUT and DELETE take
If-Match (412 when someone wrote in between). A policy the model refuses is 422, its message the
model's (field, value, fix); a body of the wrong shape is 422 too on these routes (app._bad_body).

`GET /v1/events/changes?after=ID&wait=S` is the events' long poll: the events above ID at once if
there are any, else the first that come within `wait` seconds (read every POLL_S in a worker thread:
a follower is an operator's terminal, not a thousand agents, so no shared ticker as for /desired).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from vmqos.api import auth
from vmqos.api import models as m
from vmqos.api.conditional import TAG_HEADER, etag
from vmqos.api.fleet import ERRORS, _store
from vmqos.api.network import listed, params
from vmqos.core.errors import InvalidValue
from vmqos.services import fleet_hosts, instance_flavors, native_policies, native_views
from vmqos.services.fleet_wire import EventList
from vmqos.services.identity import Caller
from vmqos.services.instance_flavors import InstanceBody, RecordedInstanceAnswer
from vmqos.services.native_policies import NativePolicyAnswer, NativePolicyList, PolicyBody
from vmqos.services.native_views import EffectivePortAnswer, NativeVolumeAnswer, NativeVolumeList

router = APIRouter(prefix="/v1", tags=["native"])
WRITES = {**ERRORS, 412: {"model": m.NeutronErrorResponse}, 422: {"model": m.NeutronErrorResponse}}
POLL_S = 0.5
MAX_EVENT_WAIT_S = 60.0
MAX_EVENT_ID = 2**31 - 1  # the events' ids are 32-bit integers in the store (a bigger one was a 500 on PostgreSQL)


def _revision(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 19:
        raise InvalidValue("If-Match", if_match, 'give the ETag a GET of the policy answered, e.g. "3" (its '
                                                 "revision)")
    return int(tag)


def _tagged(response: Response, answer: NativePolicyAnswer) -> NativePolicyAnswer:
    response.headers["ETag"] = etag(answer.policy.revision) or ""
    return answer


# ------------------------------------------------------------------ policies


@router.get("/policies", responses=ERRORS, response_model_exclude_unset=True,
            summary="vmqos's own policies and the Neutron ones the caller sees, in vmqos's typed form (bit/s, "
                    "bytes, packet/s); paged as Neutron pages (limit, marker, page_reverse; by id)")
def list_policies(request: Request, who: Caller = Depends(auth.caller),
                  limit: int | None = Query(None, ge=0, description="at most this many, by id, with "
                                                                    "policies_links (0: all, unpaged)"),
                  marker: str | None = Query(None, max_length=255, description="the id of the last policy "
                                                                              "of the page before"),
                  page_reverse: bool = Query(False, description="the page before the marker")) -> NativePolicyList:
    page = native_policies.page_policies(_store(request), who, params(request))
    if page is None:
        return NativePolicyList(policies=native_policies.list_policies(_store(request), who))
    return NativePolicyList.model_validate(listed(request, "policies", page))


@router.post("/policies", status_code=201, responses=WRITES,
             summary="Create a vmqos policy of the caller's project (peak, classes, packet rate, DSCP, minimums)")
def create_policy(request: Request, response: Response, body: PolicyBody,
                  who: Caller = Depends(auth.caller)) -> NativePolicyAnswer:
    return _tagged(response, NativePolicyAnswer(policy=native_policies.create_policy(_store(request), who, body)))


@router.get("/policies/{policy_id}", responses=ERRORS, summary="One policy (its ETag: its revision)")
def show_policy(request: Request, response: Response, policy_id: str,
                who: Caller = Depends(auth.caller)) -> NativePolicyAnswer:
    return _tagged(response, NativePolicyAnswer(policy=native_policies.show_policy(_store(request), who, policy_id)))


@router.put("/policies/{policy_id}", responses=WRITES,
            summary="Replace a vmqos policy whole (409 for a Neutron policy; 412 when If-Match is not its revision)")
def replace_policy(request: Request, response: Response, policy_id: str, body: PolicyBody,
                   if_match: str | None = Header(None, pattern=TAG_HEADER,
                                                 description='the ETag read ("3"): write only if unchanged'),
                   who: Caller = Depends(auth.caller)) -> NativePolicyAnswer:
    found = native_policies.replace_policy(_store(request), who, policy_id, body, expect=_revision(if_match))
    return _tagged(response, NativePolicyAnswer(policy=found))


@router.delete("/policies/{policy_id}", status_code=204, responses=WRITES, summary="Delete a vmqos policy")
def delete_policy(request: Request, policy_id: str, if_match: str | None = Header(None, pattern=TAG_HEADER),
                  who: Caller = Depends(auth.caller)) -> Response:
    native_policies.delete_policy(_store(request), who, policy_id, expect=_revision(if_match))
    return Response(status_code=204)


# ------------------------------------------------------------------ volumes and a port's effective QoS


@router.get("/volumes", responses=ERRORS,
            summary="The caller's project's volumes with the disk QoS their type puts on the host (bytes/s, I/O/s)")
def list_volumes(request: Request, all_projects: bool = Query(False, description="admin: every project's"),
                 who: Caller = Depends(auth.caller)) -> NativeVolumeList:
    return NativeVolumeList(volumes=native_views.list_volumes(_store(request), who, all_projects=all_projects))


@router.get("/volumes/{volume_id}", responses=ERRORS, summary="One volume with its effective disk QoS")
def show_volume(request: Request, volume_id: str, who: Caller = Depends(auth.caller)) -> NativeVolumeAnswer:
    return NativeVolumeAnswer(volume=native_views.show_volume(_store(request), who, volume_id))


@router.get("/hosts/{host}/ports/{device}/effective", responses=ERRORS,
            summary="What the kernel should hold on the device: its policy and its instance's flavor combined, "
                    "the most restrictive value winning, each with its source")
def port_effective(request: Request, host: str, device: str,
                   who: Caller = Depends(auth.caller)) -> EffectivePortAnswer:
    return EffectivePortAnswer(effective=native_views.port_effective(_store(request), who, host, device))


@router.put("/hosts/{host}/instances/{instance_id}", responses=ERRORS,
            summary="Record an instance's flavor and devices on a host (admin or the host's agent): a port's "
                    "effective QoS then takes the flavor from the server (the server has no Nova servers API)")
def record_instance(request: Request, response: Response, host: str, instance_id: str, body: InstanceBody,
                    who: Caller = Depends(auth.caller)) -> RecordedInstanceAnswer:
    found, created = instance_flavors.record(_store(request), who, host, instance_id, body)
    response.status_code = 201 if created else 200
    return RecordedInstanceAnswer(instance=found)


@router.get("/hosts/{host}/instances/{instance_id}", responses=ERRORS,
            summary="What the server was told of an instance on a host (admin or the host's agent)")
def show_instance(request: Request, host: str, instance_id: str,
                  who: Caller = Depends(auth.caller)) -> RecordedInstanceAnswer:
    return RecordedInstanceAnswer(instance=instance_flavors.show(_store(request), who, host, instance_id))


@router.delete("/hosts/{host}/instances/{instance_id}", status_code=204, responses=ERRORS,
               summary="Forget an instance's record (admin or the host's agent)")
def forget_instance(request: Request, host: str, instance_id: str, who: Caller = Depends(auth.caller)) -> Response:
    instance_flavors.forget(_store(request), who, host, instance_id)
    return Response(status_code=204)


# ------------------------------------------------------------------ following the events


@router.get("/events/changes", responses=ERRORS,
            summary="The events above `after` (oldest first): at once if any, else the first within `wait` s")
async def event_changes(request: Request, after: int = Query(ge=0, le=MAX_EVENT_ID,
                                                             description="the id of the last event read (0: all)"),
                        wait: float = Query(0.0, ge=0, description=f"seconds to wait (capped at "
                                                                   f"{MAX_EVENT_WAIT_S:g})"),
                        host: str | None = Query(None), device: str | None = Query(None),
                        limit: int = Query(100, ge=1, le=fleet_hosts.EVENTS_LIMIT),
                        who: Caller = Depends(auth.caller)) -> EventList:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, MAX_EVENT_WAIT_S)
    while True:
        found = await run_in_threadpool(fleet_hosts.list_events, _store(request), who, host=host, device=device,
                                        limit=limit, after=after)
        if found or loop.time() >= deadline or request.app.state.fleet_watch.closing \
                or await request.is_disconnected():
            return EventList(events=found)
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))
