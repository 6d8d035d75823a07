"""The checks every request passes before its route, as one plain ASGI middleware.

Each check looks at the request and answers in the route's place (a Response) or lets it through
(None); none of them touches the answer. They were three `@app.middleware("http")` functions, each
a Starlette BaseHTTPMiddleware: a task, a stream of the answer and a copy of the request per layer
and per request, about 40 % of a long poll's cost at a fleet's change (a thousand agents' answers
and polls again, bench/fleet_bench.py; docs/benchmarks.md §7). Here they are plain calls.

A check that reads the body (`await request.body()`) leaves it to the route: it is handed on as the
first message of the request, later messages (a client's disconnect) come from the connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Check = Callable[[Request], Awaitable[Response | None]]


class Checks:
    """`checks` in order, on every HTTP request; the first answer wins."""

    def __init__(self, app: ASGIApp, checks: Sequence[Check]) -> None:
        self.app, self.checks = app, tuple(checks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        for check in self.checks:
            refused = await check(request)
            if refused is not None:
                await refused(scope, receive, send)
                return
        body: Any = getattr(request, "_body", None)  # read by a check: Starlette keeps it on the request
        if body is None:
            await self.app(scope, receive, send)
            return
        handed = False

        async def again() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, again, send)
