"""A host's uplink at /v1/hosts/{host}/uplink (issue 16): where its ports' guaranteed minimums are held.

Admin only. The body is services.fleet_wire's `Uplink` (device, capacity in bit/s, oversubscribe);
a body the model refuses is 422 (as a native policy's), a host without an uplink 404, both
Neutron-shaped as the rest of /v1. The answer joins the agent's last report on it: `error` with
one line when it refused the uplink (guarantees above the capacity) or could not place it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from vmqos.api import auth
from vmqos.api import models as m
from vmqos.services import fleet_uplinks
from vmqos.services.fleet_wire import HostUplinkAnswer, Uplink
from vmqos.services.identity import Caller
from vmqos.store import Store

router = APIRouter(prefix="/v1", tags=["fleet"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": m.NeutronErrorResponse}
                                           for code in (400, 401, 403, 404, 422)}


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.get("/hosts/{host}/uplink", responses=ERRORS,
            summary="The host's uplink and its agent's last word on it (admin; 404 when it has none)")
def show_uplink(request: Request, host: str, who: Caller = Depends(auth.caller)) -> HostUplinkAnswer:
    return HostUplinkAnswer(uplink=fleet_uplinks.show_uplink(_store(request), who, host))


@router.put("/hosts/{host}/uplink", responses=ERRORS,
            summary="Set the host's uplink: device, capacity in bit/s, oversubscribe (admin); its agent follows")
def set_uplink(request: Request, host: str, body: Uplink, who: Caller = Depends(auth.caller)) -> HostUplinkAnswer:
    return HostUplinkAnswer(uplink=fleet_uplinks.set_uplink(_store(request), who, host, body))


@router.delete("/hosts/{host}/uplink", status_code=204, responses=ERRORS,
               summary="Remove the host's uplink (admin): its agent releases the uplink's tree")
def clear_uplink(request: Request, host: str, who: Caller = Depends(auth.caller)) -> Response:
    fleet_uplinks.clear_uplink(_store(request), who, host)
    return Response(status_code=204)
