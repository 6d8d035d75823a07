"""An in-process fake of the server's side of the fleet protocol, behind the agent's DesiredFeed.

`FakeServer` holds one host's desired rows the way docs/fleet-protocol.md says the server does:
a global revision, live rows and tombstones, compaction (then `changes` below it is 410, here
RevisionGone), and a switch that makes it unreachable. `FakeFeed` is the agent's side of it.

With a `path`, the server's state lives in a JSON file and the reports in a JSON-lines file beside
it, so that an agent in another process (tests/kernel/agent_proc.py) follows the same fake server
as the test that changes it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from vmqos.core.errors import RevisionGone, VmqosError
from vmqos.core.fleet.desired import DesiredPage, page_from_wire
from vmqos.core.fleet.inventory import HostInventory, to_wire as inventory_wire
from vmqos.core.fleet.report import AgentReport, to_wire as report_wire


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `probe` until it is truthy (its value), for at most `timeout` s: a bound, not a measurement."""
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if seen:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; last seen {seen!r}")
        time.sleep(0.02)


class ServerUnreachable(VmqosError):
    """What the real client raises when the server does not answer."""


class FakeServer:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.state: dict[str, Any] = {"revision": 0, "rows": {}, "compacted": 0, "down": False}
        self.reports: list[dict[str, Any]] = []
        self.registrations: list[dict[str, Any]] = []
        self.calls: list[str] = []
        if path is not None:
            if path.exists():
                self.state = json.loads(path.read_text())
            else:
                self._save()

    # -- the test's side ------------------------------------------------------------------------

    def _load(self) -> None:
        if self.path is not None:
            self.state = json.loads(self.path.read_text())

    def _save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state))
            os.replace(tmp, self.path)

    def _change(self, device: str, row: dict[str, Any]) -> int:
        with self._lock:
            self._load()
            self.state["revision"] += 1
            row = {**row, "device": device, "revision": self.state["revision"]}
            self.state["rows"][device] = row
            self._save()
            return self.state["revision"]

    def put(self, device: str, policy: dict[str, Any], port_id: str | None = None, source: str = "native",
            addresses: list[str] | None = None) -> int:
        """A row for `device` (the host file's policy data, e.g. {"egress": {"rate": 3000000}})."""
        return self._change(device, {"port_id": port_id, "source": source, "policy": policy,
                                     "addresses": addresses or []})

    def set_uplink(self, uplink: dict[str, Any] | None) -> int:
        """The host's uplink ({"device", "capacity_bps", "oversubscribe"}), or None: removed (a tombstone)."""
        with self._lock:
            self._load()
            self.state["revision"] += 1
            self.state["uplink"] = {"revision": self.state["revision"], "uplink": uplink}
            self._save()
            return int(self.state["revision"])

    def delete(self, device: str) -> int:
        """A tombstone."""
        old = self.state["rows"].get(device, {})
        return self._change(device, {"port_id": old.get("port_id"), "source": old.get("source", "native"),
                                     "policy": None})

    def compact(self) -> None:
        """Forget the tombstones: `changes` from below the current revision is 410 from now on."""
        with self._lock:
            self._load()
            self.state["rows"] = {d: r for d, r in self.state["rows"].items() if r["policy"] is not None}
            self.state["compacted"] = self.state["revision"]
            self._save()

    def set_down(self, down: bool) -> None:
        with self._lock:
            self._load()
            self.state["down"] = down
            self._save()

    def all_reports(self) -> list[dict[str, Any]]:
        if self.path is None:
            return list(self.reports)
        lines = self.path.with_suffix(".reports").read_text().splitlines() if \
            self.path.with_suffix(".reports").exists() else []
        return [json.loads(line) for line in lines]

    # -- the agent's side (through FakeFeed) -----------------------------------------------------

    def _answer(self, call: str) -> dict[str, Any]:
        with self._lock:
            self._load()
            self.calls.append(call)
            if self.state["down"]:
                raise ServerUnreachable("cannot reach the server at http://fake: Connection refused")
            return json.loads(json.dumps(self.state))

    def record(self, kind: str, body: dict[str, Any]) -> None:
        if self.path is None:
            (self.reports if kind == "report" else self.registrations).append(body)
            return
        with open(self.path.with_suffix(".reports" if kind == "report" else ".registrations"), "a") as f:
            f.write(json.dumps(body) + "\n")


class FakeFeed:
    """The agent's DesiredFeed over a FakeServer."""

    def __init__(self, server: FakeServer, poll_s: float = 0.02) -> None:
        self.server, self.poll_s = server, poll_s

    def register(self, inventory: HostInventory) -> object:
        self.server._answer("register")
        body = inventory_wire(inventory)
        self.server.record("register", body)
        return body

    def desired(self) -> DesiredPage:
        state = self.server._answer("desired")
        rows = [r for r in state["rows"].values() if r["policy"] is not None]
        uplink = state.get("uplink")
        return page_from_wire({"revision": state["revision"], "ports": rows,
                               "uplink": uplink if uplink and uplink["uplink"] else None}, full=True)

    def changes(self, since: int, wait: float) -> DesiredPage:
        deadline = time.monotonic() + wait
        while True:
            state = self.server._answer("changes")
            if since < state["compacted"]:
                raise RevisionGone(f"revision {since} is older than what the server keeps ({state['compacted']})")
            rows = [r for r in state["rows"].values() if r["revision"] > since]
            uplink = state.get("uplink") if (state.get("uplink") or {}).get("revision", 0) > since else None
            if rows or uplink or time.monotonic() >= deadline:
                return page_from_wire({"revision": state["revision"], "changes": rows, "uplink": uplink}, full=False)
            time.sleep(self.poll_s)

    def report(self, report: AgentReport) -> None:
        self.server._answer("report")
        self.server.record("report", report_wire(report))
