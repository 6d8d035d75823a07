"""The long poll's Watch (api.fleet_watch) driven directly, on SQLite and PostgreSQL: a poll at the
ticker's revision waits without a read of its own, and the protocol's guarantees hold with it —
resumable from any revision, no revision missed through a run of changes, 410 when the rows above
a waiter's revision were compacted away.

The ticker is driven by hand (`tick()`, its own task slowed to an hour) where a test needs to know
which tick read what. No timed assertion: a woken poll is only checked to have its rows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from vmqos.api import fleet_watch
from vmqos.api.fleet_watch import Watch
from vmqos.core.errors import RevisionGone
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.services import fleet_desired
from vmqos.store import Store

pytestmark = pytest.mark.server


def _gold(rate: int):
    return policy_from_data("gold", {"egress": {"rate": f"{rate}kbit"}})


@pytest.fixture()
def store(db_url):
    with Store(db_url) as opened:
        yield opened


@pytest.fixture()
def reads(monkeypatch):
    """Every read a poll makes of its own (fleet_desired.changes), as (host, since)."""
    seen: list[tuple[str, int]] = []
    real = fleet_desired.changes

    def counted(store, host, since):
        seen.append((host, since))
        return real(store, host, since)

    monkeypatch.setattr(fleet_desired, "changes", counted)
    return seen


async def _until(condition, what: str) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def test_a_poll_at_the_tickers_revision_waits_without_a_read_and_is_woken_with_its_rows(store, reads, monkeypatch):
    monkeypatch.setattr(fleet_watch, "TICK_S", 3600.0)  # ticks by hand
    fleet_desired.set_port(store, "h1", "vq-a", _gold(1000))

    async def scenario():
        watch = Watch(store)
        await watch.start()
        try:
            at = watch.seen
            assert at is not None and at > 0
            poll = asyncio.create_task(watch.changes("h1", at, 30))
            other = asyncio.create_task(watch.changes("h2", at, 30))
            await _until(lambda: "h1" in watch._events and "h2" in watch._events, "both polls wait")
            assert reads == []  # neither read: nothing above `at` that the next tick will not bring
            await asyncio.to_thread(fleet_desired.set_port, store, "h1", "vq-a", _gold(2000))
            await asyncio.to_thread(fleet_desired.set_port, store, "h1", "vq-b", _gold(3000))
            await watch.tick()
            found = await asyncio.wait_for(poll, 30)
            assert not other.done()  # h2's rows did not change: not woken
            other.cancel()
            return at, found
        finally:
            await watch.stop()

    at, found = asyncio.run(scenario())
    assert reads == []  # answered from the tick's one read too
    assert found.revision == at + 2
    assert [(r.device, r.revision, r.policy["egress"]["rate"]) for r in found.changes] == \
        [("vq-a", at + 1, "2mbit"), ("vq-b", at + 2, "3mbit")]


def test_a_poll_below_the_tickers_revision_or_without_a_wait_reads_at_once(store, reads, monkeypatch):
    monkeypatch.setattr(fleet_watch, "TICK_S", 3600.0)
    first = fleet_desired.set_port(store, "h1", "vq-a", _gold(1000)).revision

    async def scenario():
        watch = Watch(store)
        await watch.start()
        try:
            # a change the ticker has not read yet: a poll without a wait still sees it
            await asyncio.to_thread(fleet_desired.set_port, store, "h1", "vq-b", _gold(2000))
            now = await watch.changes("h1", watch.seen, 0)
            behind = await watch.changes("h1", first - 1, 30)  # below `seen`: its own read, answered at once
            return now, behind
        finally:
            await watch.stop()

    now, behind = asyncio.run(scenario())
    assert [r.device for r in now.changes] == ["vq-b"] and now.revision == first + 1
    assert [r.device for r in behind.changes] == ["vq-a", "vq-b"] and behind.revision == first + 1
    assert reads == [("h1", first), ("h1", first - 1)]


def test_no_revision_is_missed_by_agents_that_poll_again_at_once_through_a_run_of_changes(store, reads):
    """Two agents follow h1 and h2 (the real ticker, every 0.1 s) while 40 changes are made from another
    thread, some a few ms apart (several per tick), some a tick apart: each agent's folded rows equal its
    host's snapshot at the end, every answer's revision is above the one before, and every row it held is
    above the poll's `since` and not above the answer's revision."""
    fleet_desired.set_port(store, "h1", "vq-0", _gold(100))

    async def scenario():
        watch = Watch(store)
        await watch.start()
        done = threading.Event()
        agents = {host: {"rows": {}, "answers": [], "since": fleet_desired.snapshot(store, host)}
                  for host in ("h1", "h2")}
        for state in agents.values():
            state["rows"] = {r.device: r for r in state["since"].ports}
            state["since"] = state["since"].revision

        async def follow(host):
            state = agents[host]
            while not (done.is_set() and state["since"] >= target[0]):
                page = await watch.changes(host, state["since"], 5)
                for row in page.changes:
                    assert state["since"] < row.revision <= page.revision, (host, state["since"], row, page.revision)
                    if row.policy is None:
                        state["rows"].pop(row.device, None)
                    else:
                        state["rows"][row.device] = row
                if page.changes:
                    state["answers"].append(page.revision)
                assert page.revision >= state["since"]
                state["since"] = page.revision

        target = [0]

        def changer():
            for i in range(40):
                host = "h1" if i % 3 else "h2"
                target[0] = fleet_desired.set_port(store, host, f"vq-{i % 5}", _gold(1000 + i)).revision
                if i % 7 == 6:  # a tombstone too: the device just set is released again
                    fleet_desired.clear_port(store, host, f"vq-{i % 5}")
                    target[0] += 1
                time.sleep(0.003 if i % 4 else 0.15)
            done.set()

        try:
            followers = [asyncio.create_task(follow(h)) for h in agents]
            await asyncio.to_thread(changer)
            await asyncio.wait_for(asyncio.gather(*followers), 60)
        finally:
            await watch.stop()
        return agents, target[0]

    agents, last = asyncio.run(scenario())
    for host, state in agents.items():
        want = {r.device: r for r in fleet_desired.snapshot(store, host).ports}
        assert state["rows"] == want, host
        assert state["answers"] == sorted(set(state["answers"])), host  # strictly increasing
        assert state["since"] >= last
    assert len(reads) < sum(len(s["answers"]) for s in agents.values()) + 10  # most polls again did not read


def test_waiters_whose_rows_were_compacted_away_are_sent_to_read_and_get_410(store, monkeypatch):
    monkeypatch.setattr(fleet_watch, "TICK_S", 3600.0)
    fleet_desired.set_port(store, "h1", "vq-a", _gold(1000))

    async def scenario():
        watch = Watch(store)
        await watch.start()
        try:
            at = watch.seen
            poll = asyncio.create_task(watch.changes("h1", at, 30))
            await _until(lambda: "h1" in watch._events, "the poll waits")
            await asyncio.to_thread(fleet_desired.clear_port, store, "h1", "vq-a")  # a tombstone above `at`
            forgotten = fleet_desired.compact(store, now=datetime.now(UTC) + timedelta(days=30))
            await watch.tick()
            with pytest.raises(RevisionGone, match="read /v1/hosts/h1/desired again"):
                await asyncio.wait_for(poll, 30)
            return forgotten
        finally:
            await watch.stop()

    assert asyncio.run(scenario()) == 1


def test_the_tickers_batch_conversion_gives_what_each_row_alone_gives(store):
    """`desired_batch` (one parse per distinct policy text, no second validation) is `desired` row by row:
    rows sharing a policy, another policy, addresses, a native row without, tombstones."""
    from vmqos.store import fleet as records

    fleet_desired.set_port(store, "h1", "vq-1", _gold(1000))
    fleet_desired.set_port(store, "h1", "vq-2", _gold(1000), addresses=["10.0.0.5", "fd00::5"])
    fleet_desired.set_port(store, "h2", "vq-1", _gold(1000))
    fleet_desired.set_port(store, "h2", "vq-2", _gold(2000))
    fleet_desired.set_port(store, "h3", "vq-9", _gold(3000))
    fleet_desired.clear_port(store, "h3", "vq-9")
    _, rows = records.changed_since(store, 0)
    assert len(rows) == 5 and any(r.policy is None for r in rows) and any(r.addresses for r in rows)
    batch = fleet_desired.desired_batch(rows)
    alone = [fleet_desired.desired(r) for r in rows]
    assert [d.model_dump_json() for d in batch] == [d.model_dump_json() for d in alone]
    assert batch == alone
    assert batch[0].policy is batch[2].policy  # one parse for the rows of one text
