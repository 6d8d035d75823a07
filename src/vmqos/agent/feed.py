"""How the agent talks to the server: the `DesiredFeed` protocol, and where the real one comes from.

The agent is written against this protocol, not against HTTP: the server's typed client
(`vmqos.services.server_client.ServerClient`, the /v1 routes of docs/fleet-protocol.md) satisfies
it, and the tests give an in-memory fake. Every method raises a VmqosError subclass when the
server cannot be reached or refuses; `changes` raises RevisionGone (410) when `since` is older than
what the server keeps, and the agent reads `desired()` again.
"""

from __future__ import annotations

from typing import Protocol

from vmqos.core.errors import UnsupportedError
from vmqos.core.fleet.desired import DesiredPage
from vmqos.core.fleet.inventory import HostInventory
from vmqos.core.fleet.report import AgentReport


class DesiredFeed(Protocol):
    """One host's side of the /v1 API (docs/fleet-protocol.md, "The agent's loop")."""

    def register(self, inventory: HostInventory) -> object:
        """`PUT /v1/hosts/{host}`: the host and what the agent found on it."""
        ...

    def desired(self) -> DesiredPage:
        """`GET /v1/hosts/{host}/desired`: every live row and the revision (a page with full=True)."""
        ...

    def changes(self, since: int, wait: float) -> DesiredPage:
        """`GET /v1/hosts/{host}/desired/changes?since=R&wait=S`: rows above `since`, tombstones
        included, at once or after up to `wait` seconds (full=False); RevisionGone on 410."""
        ...

    def report(self, report: AgentReport) -> None:
        """`POST /v1/hosts/{host}/reports`."""
        ...


def feed_for(server: str, host: str) -> DesiredFeed:
    """The feed of `vmqos agent --server URL --host NAME` (credentials from the OS_* variables)."""
    # MERGE (issue 15, server side): return ServerClient(server, host)  # vmqos.services.server_client
    raise UnsupportedError(f"vmqos agent: this build has no client for the server's /v1 API yet, so it cannot "
                           f"follow {server}; it comes with the server side of issue 15")
