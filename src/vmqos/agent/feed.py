"""How the agent talks to the server: the `DesiredFeed` protocol, and where the real one comes from.

The agent is written against this protocol, not against HTTP: the server's typed client
(`vmqos.services.server_client.ServerClient`, the /v1 routes of docs/fleet-protocol.md) satisfies
it, and the tests give an in-memory fake. Every method raises a VmqosError subclass when the
server cannot be reached or refuses; `changes` raises RevisionGone (410) when `since` is older than
what the server keeps, and the agent reads `desired()` again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from vmqos import __version__
from vmqos.core.errors import InvalidValue
from vmqos.core.fleet import inventory as inventories
from vmqos.core.fleet import report as reports
from vmqos.core.fleet.desired import DesiredPage, page_from_wire
from vmqos.core.fleet.inventory import HostInventory
from vmqos.core.fleet.report import AgentReport
from vmqos.services.fleet_wire import Registration, Report
from vmqos.services.server_client import ServerClient


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

    def report(self, report: AgentReport) -> Sequence[str] | None:
        """`POST /v1/hosts/{host}/reports`: the devices whose quarantine an admin asked to lift."""
        ...


def _body(model: type[BaseModel], data: dict[str, Any], what: str) -> Any:
    """The request body the server's schema declares, from the agent's values (a value the schema
    refuses is the agent's error, said before anything is sent)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidValue(f"{what}.{'.'.join(str(p) for p in first['loc'])}", first.get("input"),
                           first["msg"]) from None


class ServerFeed:
    """The real feed: the server's typed client (`services.server_client`), its answers read into the
    agent's own protocol values (`core.fleet`), which the agent's tests' fake gives directly."""

    def __init__(self, client: ServerClient, netns: str | None = None) -> None:
        self.client, self.netns = client, netns

    def register(self, inventory: HostInventory) -> object:
        return self.client.register(_body(Registration, {"agent_version": __version__, "netns": self.netns,
                                                         "inventory": inventories.to_wire(inventory)}, "register"))

    def desired(self) -> DesiredPage:
        return page_from_wire(self.client.desired().model_dump(mode="json"), full=True)

    def changes(self, since: int, wait: float) -> DesiredPage:
        return page_from_wire(self.client.changes(since, wait).model_dump(mode="json"), full=False)

    def report(self, report: AgentReport) -> Sequence[str] | None:
        return tuple(self.client.report(_body(Report, reports.to_wire(report), "report")).lift)


def feed_for(server: str, host: str, netns: str | None = None) -> DesiredFeed:
    """The feed of `vmqos agent --server URL --host NAME` (credentials from the OS_* variables)."""
    return ServerFeed(ServerClient.from_env(server, host=host), netns)
