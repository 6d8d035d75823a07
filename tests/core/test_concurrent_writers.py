"""Trust (issue 13 item 3): concurrent writers of one scope lose nothing and never mix.

Each use case loads the scope, changes it, works on the kernel and saves the whole scope. Without
one writer at a time, two `port set` each save their own copy and one change is lost, or a port
ends with one writer's inbound and the other's outbound. The writers here are processes (as two
CLIs are) and threads (as the server's workers will be), released together by a barrier; the
window between load and save is widened to what a kernel change costs (a sleep in the change).
Each runs on a SQLite file (flock) and on PostgreSQL (advisory locks), through `db_url`.
"""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from vmqos.core.desired.ports import PortChange
from vmqos.core.errors import ConflictError
from vmqos.services import ports as port_service
from vmqos.store import Store

SCOPE_NS = "vqwriters"
KERNEL_WORK_S = 0.03  # what a reconcile of one port costs, roughly: the window a second writer falls into


@pytest.fixture
def url(db_url):
    """A SQLite file, then a PostgreSQL database (tests/pgcluster.py)."""
    return db_url


def _slow_changes(monkeypatch_target=port_service) -> None:
    original = port_service.changed_port

    def slow(*args, **kwargs):
        found = original(*args, **kwargs)
        time.sleep(KERNEL_WORK_S)
        return found

    monkeypatch_target.changed_port = slow


def _writer(url: str, barrier, device: str, i: int) -> None:
    _slow_changes()
    with Store(url) as store:
        barrier.wait(timeout=30)
        port_service.set_port(store, SCOPE_NS, device, PortChange(inbound=f"{1000 + i},0,0", outbound=f"{2000 + i},0,0"),
                              live=False, config=True)


def _run_processes(url: str, devices: list[str]) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(devices))
    procs = [ctx.Process(target=_writer, args=(url, barrier, dev, i)) for i, dev in enumerate(devices)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def _limits(store: Store) -> dict[str, tuple[int | None, int | None]]:
    out = {}
    for _, port in store.load(SCOPE_NS).ports():
        limits = port.limits
        out[port.device] = (limits.ingress.bandwidth.rate_bps if limits and limits.ingress.bandwidth else None,
                            limits.egress.bandwidth.rate_bps if limits and limits.egress.bandwidth else None)
    return out


def _writer_of(rates: tuple[int | None, int | None]) -> tuple[int, int]:
    inbound, outbound = rates
    assert inbound is not None and outbound is not None
    return inbound // 8000 - 1000, outbound // 8000 - 2000


def test_twenty_processes_on_twenty_ports_lose_no_update(url):
    devices = [f"tap{i}" for i in range(20)]
    _run_processes(url, devices)
    with Store(url) as store:
        found = _limits(store)
        assert sorted(found) == sorted(devices), f"lost: {sorted(set(devices) - set(found))}"
        assert all(_writer_of(found[dev]) == (i, i) for i, dev in enumerate(devices))
        assert len(store.revisions(SCOPE_NS, limit=100)) == 20


def test_ten_processes_on_one_port_last_writer_wins_whole(url):
    _run_processes(url, ["tap0"] * 10)
    with Store(url) as store:
        inbound_of, outbound_of = _writer_of(_limits(store)["tap0"])
        assert inbound_of == outbound_of, "the port mixes two writers' changes"
        assert len(store.revisions(SCOPE_NS, limit=100)) == 10


@pytest.mark.parametrize("shared", [True, False], ids=["one store", "a store per thread"])
def test_threads_lose_no_update(url, monkeypatch, shared):
    original = port_service.changed_port
    monkeypatch.setattr(port_service, "changed_port",
                        lambda *a, **k: (time.sleep(KERNEL_WORK_S), original(*a, **k))[1])
    devices = [f"tap{i}" for i in range(12)]
    barrier = threading.Barrier(len(devices))
    common = Store(url)
    errors: list[BaseException] = []

    def write(i: int, dev: str) -> None:
        store = common if shared else Store(url)
        try:
            barrier.wait(timeout=30)
            port_service.set_port(store, SCOPE_NS, dev, PortChange(inbound=f"{1000 + i},0,0",
                                                                     outbound=f"{2000 + i},0,0"),
                                  live=False, config=True)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            if not shared:
                store.close()

    threads = [threading.Thread(target=write, args=(i, dev)) for i, dev in enumerate(devices)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    found = _limits(common)
    common.close()
    assert sorted(found) == sorted(devices)


def test_the_writer_lock_is_reentrant_and_excludes_other_processes(url):
    with Store(url) as store, store.writer("x"), store.writer("x"):
        with Store(url) as other, other.writer("x"):  # the same thread, another Store: no deadlock
            pass
        ctx = multiprocessing.get_context("fork")
        result = ctx.Queue()

        def try_lock() -> None:
            with Store(url) as theirs:
                theirs._writers.wait_s = 0.2
                try:
                    with theirs.writer("x"):
                        result.put("got it")
                except ConflictError as exc:
                    result.put(str(exc))
                with theirs.writer("y"):  # another scope is free
                    result.put("y free")

        proc = ctx.Process(target=try_lock)
        proc.start()
        proc.join(timeout=30)
        first, second = result.get(timeout=5), result.get(timeout=5)
        assert "another vmqos has been changing it" in first and "\n" not in first
        assert second == "y free"


def test_the_postgresql_writer_lock_is_not_the_key_each_write_transaction_takes():
    """On PostgreSQL the writer holds a session advisory lock on one connection while its writes take
    a transaction lock on another: one key for both would make every writer wait for itself."""
    import inspect

    from vmqos.store import store as store_module
    from vmqos.store import writer

    assert f"{writer._ADVISORY_CLASS:#x}" not in inspect.getsource(store_module.Store._tx)
    assert hex(writer._ADVISORY_CLASS) != "0x766d71"
