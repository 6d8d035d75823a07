"""The long poll's waking: one ticker per application, shared by every waiting agent.

A thousand agents wait at once on `GET /v1/hosts/{host}/desired/changes?wait=S`; none of them holds
a thread or a database connection while it waits. The ticker reads the fleet's revision counter
every TICK_S (one indexed row, in a worker thread); when it moved, it reads the rows above the
revision it saw last (the index on revision), once for everyone, and sets the asyncio Event of
each host among them that has waiters. A waiter that waited at that very revision (every agent
that was up to date) is answered from those rows, without a read of its own: a thousand answers
cost one query, not a thousand. A change made by another process (another server on the same
PostgreSQL) moves the same counter, so it wakes them too, within a tick.

Each answered agent polls again at once, at the revision the ticker read last (`seen`): such a poll
waits without a read of its own, since every row above `seen` is in the ticker's next read, which
wakes the poll's host (its Event is taken before the poll yields, and the ticker filters by the
waiting hosts after its read). A thousand answers and a thousand polls again cost one query, not
a thousand and one. A poll with `wait=0` still reads: it asks for the state now, not at the last tick.

The ticker also forgets old tombstones once an hour (`fleet_desired.compact`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from vmqos.api.watch_auth import TrustedCallers
from vmqos.core.errors import VmqosError
from vmqos.services import fleet_desired
from vmqos.services.fleet_wire import Changes, Desired
from vmqos.store import Store
from vmqos.store import fleet as records
from vmqos.store import fleet_uplinks as uplink_records

log = logging.getLogger(__name__)

TICK_S = 0.1
MAX_WAIT_S = 60.0
COMPACT_S = 3600.0


@dataclass(frozen=True)
class _Batch:
    """The rows above `since` the ticker read at `revision`, by host (only the hosts with waiters)."""

    since: int
    revision: int
    rows: dict[str, list[Desired]]


class Watch:
    """The waiters of one application, by host, and the ticker that wakes them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: int | None = None
        self.floor = 0  # the compacted floor read with `seen`: a poll below it reads (and gets its 410)
        self._events: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._said: str | None = None
        self._batch: _Batch | None = None
        self.callers = TrustedCallers()  # the long poll's callers, trusted a while (api.watch_auth)
        self.closing = False  # the server stops: every wait answers now, as its timeout would (api.stop_signals)

    def running(self) -> bool:
        return self._task is not None and not self._task.done() and self._loop is asyncio.get_running_loop()

    async def start(self) -> None:
        """Start the ticker in the running loop (again, if it ran in another one: a test's client)."""
        self._loop = asyncio.get_running_loop()
        self._events.clear()
        self.closing = False
        counters = await run_in_threadpool(records.counters, self.store)
        self.seen, self.floor, self._batch = counters.revision, counters.floor, None
        self._task = asyncio.create_task(self._run(), name="vmqos-fleet-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, RuntimeError):
                pass
            self._task = None

    def close(self) -> None:
        """The server stops: wake every waiting poll (each answers the state now, as at its timeout) and
        answer the polls still to come at once, so that the stop does not wait out the longest poll."""
        self.closing = True
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    def _event(self, host: str) -> asyncio.Event:
        event = self._events.get(host)
        if event is None:
            event = self._events[host] = asyncio.Event()
        return event

    async def _run(self) -> None:
        next_compact = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self.tick()
                if time.monotonic() >= next_compact:
                    next_compact = time.monotonic() + COMPACT_S
                    await run_in_threadpool(fleet_desired.compact, self.store)
                self._said = None
            except VmqosError as exc:  # a database that went away: said once, tried again next tick
                if str(exc) != self._said:
                    log.warning("the fleet's long poll cannot read the revision: %s", exc)
                    self._said = str(exc)

    async def tick(self) -> None:
        """Wake the waiters of the hosts whose rows changed since the last tick, with those rows."""
        counters = await run_in_threadpool(records.counters, self.store)
        revision, floor = counters.revision, counters.floor
        if revision == self.seen and floor == self.floor:
            return
        if not self._events:
            self.seen, self.floor, self._batch = revision, floor, None
            return
        if self.seen is None or revision < self.seen or floor > self.seen:
            # another database under the same name, or rows above `seen` compacted away: everyone reads
            hosts, self.seen, self.floor, self._batch = set(self._events), revision, floor, None
        else:
            since = self.seen
            now, rows = await run_in_threadpool(records.changed_since, self.store, since)
            by_host: dict[str, list[Desired]] = {}
            waited = [row for row in rows if row.host in self._events]
            for row, found in zip(waited, fleet_desired.desired_batch(waited), strict=True):
                by_host.setdefault(row.host, []).append(found)
            # a host whose uplink changed is woken without a batch: its poll reads, and finds the uplink too
            # (read only when a revision above `since` is in no row: maybe an uplink's)
            uplinks = await run_in_threadpool(uplink_records.hosts_changed_since, self.store, since) \
                if len({r.revision for r in rows}) < now - since else set()
            uplinks &= set(self._events)
            self.seen, self.floor = now, floor
            self._batch = _Batch(since, now, {h: r for h, r in by_host.items() if h not in uplinks})
            hosts = set(by_host) | uplinks
        for host in hosts:
            event = self._events.pop(host, None)
            if event is not None:
                event.set()

    def _told_up_to(self, since: int) -> bool:
        """`since` is the revision the ticker read last (and not below the floor read with it): every row
        above it will be in the ticker's next read, so a poll at it need not read before it waits."""
        return since == self.seen and since >= self.floor

    def _answer(self, host: str, since: int) -> Changes | None:
        """The host's changes from the last batch, if it was read from `since` exactly."""
        batch = self._batch
        if batch is None or batch.since != since or host not in batch.rows:
            return None
        return Changes(host=host, revision=batch.revision, changes=batch.rows[host])

    async def changes(self, host: str, since: int, wait: float) -> Changes:
        """The host's changes since `since`: at once if there are any, else when the ticker sees some, else
        (empty) after `wait` seconds (at most MAX_WAIT_S)."""
        if not self.running():
            await self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), MAX_WAIT_S)
        woken, first = False, True
        while True:
            found = self._answer(host, since) if woken else None
            if found is None:
                event = self._event(host)  # taken before the read: a change after it sets this very event
                if first and wait > 0 and self._told_up_to(since):
                    found = Changes(host=host, revision=since, changes=[])  # the ticker's next read has the rest
                else:
                    found = await run_in_threadpool(fleet_desired.changes, self.store, host, since)
            first = False
            remaining = deadline - loop.time()
            if found.changes or found.uplink is not None or remaining <= 0 or self.closing:
                return found
            try:
                await asyncio.wait_for(event.wait(), remaining)
                woken = True
            except TimeoutError:
                woken = False
