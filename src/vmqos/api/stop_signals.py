"""The server's long waits end at once when it is told to stop (SIGTERM, Ctrl-C), not after the grace.

uvicorn, on SIGTERM, stops accepting, then waits up to its graceful-shutdown timeout for the requests
under way, and only then runs the application's shutdown. The agents' long polls
(`/v1/hosts/H/desired/changes?wait=30`), `vmqos events --follow` and the dashboard's event streams are
requests under way that would end only by themselves: each stop of a server with agents waited out the
whole grace (5 s, `vmqos server`'s SHUTDOWN_GRACE_S), even for a poll whose agent had already exited
(a waiting poll does not read its socket, so it does not see the client go). No ASGI message says
"stopping" before the requests are done, so the application chains its own step before the handler
uvicorn installed for the signal: the waits are told, answer as a timeout would (the state now), and
uvicorn's handler runs as before. Outside the main thread (a test's in-process client) nothing is
installed: no signal reaches that application.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def before_stop_signals(step: Callable[[], None]) -> Callable[[], None]:
    """Run `step` in the running loop when SIGINT or SIGTERM arrives, then the handler that was there
    (uvicorn's); the function that takes the chain off again. Only a Python-level handler is chained:
    a signal left to its default (or ignored) keeps that meaning."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    chained: dict[int, tuple[Any, Any]] = {}
    for sig in STOP_SIGNALS:
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(step)
            previous(signum, frame)

        signal.signal(sig, handler)
        chained[sig] = (handler, previous)

    def undo() -> None:
        for sig, (handler, previous) in chained.items():
            if signal.getsignal(sig) is handler:  # uvicorn may have put its predecessor back already
                signal.signal(sig, previous)

    return undo
