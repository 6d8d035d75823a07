"""Following the server: register, read the desired state once, then long-poll its changes forever.

Each answer is kept in the cache before anything else happens (`services.agent_cache.keep`), then
the devices it changed are handed to the enforcer. Without a revision (a new agent) or after `410
Gone` the whole desired state is read and diffed with the cache: only what differs is applied.

The server may be gone at any moment: the agent then keeps enforcing what it has and tries again
after a pause that doubles from `BACKOFF_MIN_S` up to `backoff_max_s`; it says so once when the
server goes and once when it comes back (`Reachability`), not once per try. When it comes back the
watch resumes from the cached revision: what changed meanwhile comes as one page.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from vmqos.agent.feed import DesiredFeed
from vmqos.core.errors import RevisionGone, VmqosError
from vmqos.core.fleet.desired import DesiredPort
from vmqos.core.fleet.inventory import HostInventory
from vmqos.services import agent_cache
from vmqos.services.agent_cache import Kept
from vmqos.store import Store
from vmqos.store.health import DatabaseGone

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 5.0  # a server back (or a partition healed) is followed again within about 5 s


class Backoff:
    """Pauses that double from `low` up to `high`, each drawn within ±20 % so that a fleet whose server
    came back does not reconnect in lockstep; `reset` after a success."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, max(low, high)
        self.current = low

    def next(self) -> float:
        pause = self.current
        self.current = min(self.high, self.current * 2)
        return pause * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.current = self.low


class Reachability:
    """The server reachable or not, logged once per change of state (and of the kind of failure)."""

    def __init__(self, server: str, what: str) -> None:
        self.server, self.what = server, what
        self.failing: str | None = None  # the kind of the failure under way (its class name)
        self.last_error = ""

    def ok(self, detail: str = "") -> bool:
        """A success; True when it ends a failure."""
        if self.failing is None:
            return False
        log.info("server %s answers again (%s)%s", self.server, self.what, detail)
        self.failing, self.last_error = None, ""
        return True

    def failed(self, exc: VmqosError, pause: float, detail: str) -> None:
        kind = type(exc).__name__
        self.last_error = str(exc)
        if self.failing != kind:
            log.warning("server %s: %s failed: %s; %s; trying again with pauses of up to %g s", self.server,
                        self.what, exc, detail, pause)
        self.failing = kind


class Follower:
    """The server's desired state for one host, followed into the cache; `run` until `stop` is set."""

    def __init__(self, feed: DesiredFeed, store: Store, host: str, server: str, *,
                 on_change: Callable[[Kept], None], inventory: Callable[[], HostInventory],
                 wait_s: float = 30.0, backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.feed, self.store, self.host, self.server = feed, store, host, server
        self.on_change, self.inventory = on_change, inventory
        self.wait_s = wait_s
        self.backoff = Backoff(BACKOFF_MIN_S, backoff_max_s)
        self.reach = Reachability(server, "following the desired state")
        self.revision, self.rows = agent_cache.load(store, host)
        self.uplink = agent_cache.load_uplink(store, host)  # the host's uplink (issue 16); None: none
        self.registered = False
        self.reloads = 0  # full reads of the desired state (the first, and one per 410)

    def step(self) -> Kept | None:
        """One exchange: register if not yet, then one read (full, or the changes after the revision)."""
        if not self.registered:
            self.feed.register(self.inventory())
            self.registered = True
            log.info("registered host %s with %s", self.host, self.server)
        if self.revision is None:
            page = self.feed.desired()
            self.reloads += 1
        else:
            try:
                page = self.feed.changes(self.revision, self.wait_s)
            except RevisionGone:
                log.info("server %s no longer keeps the changes after revision %d: reading the whole desired "
                         "state of host %s again", self.server, self.revision, self.host)
                page = self.feed.desired()
                self.reloads += 1
        kept = agent_cache.keep(self.store, self.host, self.rows, page, self.uplink)
        before = self.revision
        self.revision, self.rows, self.uplink = kept.revision, kept.rows, kept.uplink
        if kept.uplink_changed:
            log.info("revision %d: the uplink is now %s", kept.revision, kept.uplink.spec if kept.uplink else "none")
        if kept.changes:
            log.info("revision %s -> %d: %d devices changed (%s)", before if before is not None else "none",
                     kept.revision, len(kept.changes), ", ".join(c.device for c in kept.changes[:10])
                     + (", ..." if len(kept.changes) > 10 else ""))
        if kept.changes or kept.revision != before:
            self.on_change(kept)  # a revision that changed nothing here is applied too
        return kept

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except DatabaseGone:
                raise
            except VmqosError as exc:
                pause = self.backoff.next()
                self.registered = False  # register again when it is back: it may have lost the host
                self.reach.failed(exc, self.backoff.high,
                                  f"enforcing the cached revision {self.revision if self.revision is not None else '(none)'}"
                                  f" of {len(self.rows)} ports meanwhile")
                stop.wait(pause)
                continue
            self.reach.ok(f"; following from revision {self.revision}")
            self.backoff.reset()

    @property
    def cached(self) -> dict[str, DesiredPort]:
        return self.rows
