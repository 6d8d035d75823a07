"""The long poll's well-formed requests answered below FastAPI: a plain ASGI layer in front of the application.

At a fleet's change a thousand agents are answered at once and poll again at once; per request the
server's event loop spent more in FastAPI and Starlette around the route (the middleware's checks,
route matching against every route, the dependency solving, the query's validation) than in the
long poll's own work (docs/benchmarks.md §7, `--profile`). This layer answers exactly the requests
an agent sends, `GET /v1/hosts/{host}/desired/changes?since=R[&wait=S]` with an X-Auth-Token and
nothing else (no cookie, no body), with the same steps the route takes (the trusted caller of
api.watch_auth, fleet_access.check_host, Watch.changes, the same serialization) and the same
errors (rendered by the application's own handler). Every other request, and every variant of this
one whose answer FastAPI shapes itself (a query it would refuse or coerce, a cookie, a body, another
method), goes on to the application unchanged: the FastAPI route stays, so /openapi.json still
documents the long poll and schemathesis still fuzzes it (its well-formed calls land here, the rest
there).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vmqos.api.fleet_watch import Watch
from vmqos.core.errors import VmqosError
from vmqos.services import fleet_access
from vmqos.services.fleet_wire import MAX_REVISION, check_host

_PATH = re.compile(r"/v1/hosts/([^/]+)/desired/changes")
# what FastAPI reads as the same numbers (no sign, no leading zero, no exponent: those it may coerce or
# refuse, and it answers them itself)
_SINCE = re.compile(rb"0|[1-9][0-9]{0,18}")
_WAIT = re.compile(rb"(?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,6})?")
_BODY_HEADERS = (b"content-length", b"transfer-encoding", b"cookie")

OnError = Callable[[Request, Exception], Response]


def _query(raw: bytes) -> tuple[int, float] | None:
    """(since, wait) from exactly `since=R` and at most one `wait=S`, else None (FastAPI answers it)."""
    since: int | None = None
    wait: float | None = None
    for part in raw.split(b"&"):
        key, sep, value = part.partition(b"=")
        if not sep:
            return None
        if key == b"since" and since is None and _SINCE.fullmatch(value):
            since = int(value)
        elif key == b"wait" and wait is None and _WAIT.fullmatch(value):
            wait = float(value)
        else:
            return None
    if since is None or since > MAX_REVISION:
        return None
    return since, 0.0 if wait is None else wait


class FastPoll:
    """Answers the agents' well-formed long polls itself; passes everything else to `app`."""

    def __init__(self, app: ASGIApp, on_error: OnError) -> None:
        self.app, self.on_error = app, on_error
        self.answered = 0  # long polls answered here (tests read it)

    def _mine(self, scope: Scope) -> tuple[str, int, float] | None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        path = _PATH.fullmatch(scope["path"])
        if path is None or "\x00" in scope["path"]:
            return None
        has_token = False
        for name, _ in scope["headers"]:
            if name in _BODY_HEADERS:
                return None
            has_token = has_token or name == b"x-auth-token"
        query = _query(scope["query_string"]) if has_token else None
        return None if query is None else (path.group(1), *query)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mine = self._mine(scope)
        if mine is None:
            await self.app(scope, receive, send)
            return
        host, since, wait = mine
        request = Request(scope, receive)
        watch: Watch = request.app.state.fleet_watch
        try:
            who = await watch.callers.caller(request)
            fleet_access.check_host(who, check_host(host), "reading the desired state")
            found = await watch.changes(host, since, wait)
        except VmqosError as exc:
            await self.on_error(request, exc)(scope, receive, send)
            return
        self.answered += 1
        # as the route (api.fleet.changes) answers: the model's own JSON, without `uplink` when it did not change
        body = found.model_dump_json(exclude={"uplink"} if found.uplink is None else None)
        await Response(body, media_type="application/json")(scope, receive, send)
