"""Trust (issue 13 item 3): a change of one port writes that port's rows, and a stale writer is refused.

The store used to save a scope by deleting every row of it and inserting the whole state again:
`port set` on one port of 200 rewrote 200 port rows, and a writer that did not hold the writer
lock saved its whole stale copy over the others' changes. SQLite triggers count here what each
save really writes, row by row (whatever statements the store chooses), and writers that skip the
lock on purpose show that different ports' changes survive and a stale one is refused. The last
test is the atomicity a reader relies on: a reader that takes no lock (`vmqos check`) sees one
whole state or the other, never half of a save.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import text

from vmqos.core.desired.ports import PortChange, changed_port, without_port
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.services import ports as port_service
from vmqos.store import Store
from vmqos.store.delta import StaleState

SCOPE = "vqrows"
PORTS = 200
MBIT = 1_000_000
TRACKED = ("policies", "flavors", "networks", "instances", "ports", "applied")


def _qos(rate_mbit: int) -> NetworkQos:
    return NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate_mbit * MBIT)),
                      egress=DirectionQos(bandwidth=BandwidthLimit(rate_mbit * MBIT)))


def _state(n: int, rate_mbit: int = 10) -> HostState:
    return HostState(instances={f"vm{i}": InstanceSpec(f"vm{i}", ports=(
        PortSpec(f"vqp{i}", limits=_qos(rate_mbit + i % 3), egress_mode=EgressMode.SHAPE),)) for i in range(n)})


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file holding PORTS ports, with triggers that log every row written to a state table."""
    url = f"sqlite:///{tmp_path}/vq.db"
    with Store(url) as store:
        store.save(SCOPE, _state(PORTS))
        store.record_applied_many(SCOPE, {f"vqp{i}": f"fp{i}" for i in range(PORTS)})
        with store._engine.begin() as conn:
            conn.execute(text("CREATE TABLE vq_writes (tbl TEXT, op TEXT)"))
            for table in TRACKED:
                for op in ("INSERT", "UPDATE", "DELETE"):
                    conn.execute(text(f"CREATE TRIGGER vq_{table}_{op} AFTER {op} ON {table} "
                                      f"BEGIN INSERT INTO vq_writes VALUES ('{table}', '{op.lower()}'); END"))
    return url


def _writes(store: Store) -> list[tuple[str, str]]:
    """The rows written since the last call: (table, operation), sorted."""
    with store._engine.begin() as conn:
        found = sorted(conn.execute(text("SELECT tbl, op FROM vq_writes")).tuples().all())
        conn.execute(text("DELETE FROM vq_writes"))
    return [tuple(row) for row in found]  # type: ignore[misc]


def test_port_set_among_200_ports_writes_that_ports_row_only(db: str) -> None:
    with Store(db) as store:
        port_service.set_port(store, SCOPE, "vqp7", PortChange(inbound="9900,0,0"), live=False, config=True)
        assert _writes(store) == [("ports", "update")]
        port_service.set_port(store, SCOPE, "vqnew", PortChange(inbound="500,0,0"), live=False, config=True)
        assert _writes(store) == [("instances", "insert"), ("ports", "insert")]
        port_service.clear_port(store, SCOPE, "vqnew", kernel=_no_kernel)
        written = _writes(store)
        assert ("ports", "delete") in written and all(table in ("ports", "instances") for table, _ in written)
        assert len(written) <= 2, written  # the port, and its instance if it left it empty
        limits = {p.device: p.limits for _, p in store.load(SCOPE).ports()}
        assert len(limits) == PORTS and limits["vqp7"] != limits["vqp8"]


def test_apply_of_a_whole_state_with_one_change_writes_one_row(db: str) -> None:
    with Store(db) as store:
        changed, _ = changed_port(_state(PORTS), "vqp3", PortChange(outbound="100,0,0"))
        store.save(SCOPE, changed, actor="apply")
        assert _writes(store) == [("ports", "update")]
        store.save(SCOPE, changed, actor="apply")  # the same again: a revision, no row
        assert _writes(store) == []
        store.save(SCOPE, without_port(changed, "vqp3"), actor="apply")
        assert _writes(store) == [("ports", "delete")]  # its instance stays, as `port clear` leaves it
        assert len(store.load(SCOPE).ports()) == PORTS - 1


def test_applied_fingerprints_are_written_per_port_and_unchanged_ones_not_at_all(db: str) -> None:
    with Store(db) as store:
        store.record_applied_many(SCOPE, {f"vqp{i}": f"fp{i}" for i in range(PORTS)})
        assert _writes(store) == []
        store.record_applied_many(SCOPE, {"vqp1": "other", "vqp2": None, "vqx": "new", "vqgone": None})
        assert _writes(store) == [("applied", "delete"), ("applied", "insert"), ("applied", "update")]
        applied = store.applied(SCOPE)
        assert applied["vqp1"] == "other" and "vqp2" not in applied and applied["vqx"] == "new"
        assert applied["vqp0"] == "fp0" and len(applied) == PORTS


def _no_kernel(netns: str | None) -> port_service.Reconciler:  # clear_port's kernel: nothing to clear here
    class Nothing:
        def __enter__(self) -> Nothing:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def reconcile(self, plans: dict, **kwargs: object) -> tuple[list, dict]:
            return [], {}

    return Nothing()  # type: ignore[return-value]


def test_a_stale_writer_is_refused_and_one_of_another_port_keeps_both_changes(db_url: str) -> None:
    """Writers that skip the writer lock on purpose: the rows decide alone."""
    with Store(db_url) as a, Store(db_url) as b:
        a.save(SCOPE, _state(20))
        seen_a, seen_b = a.load(SCOPE), b.load(SCOPE)
        a.save(SCOPE, changed_port(seen_a, "vqp1", PortChange(inbound="7700,0,0"))[0], base=seen_a)
        with pytest.raises(StaleState, match=r"port 'vqp1' was changed by another writer.*read the scope again"):
            b.save(SCOPE, changed_port(seen_b, "vqp1", PortChange(inbound="5500,0,0"))[0], base=seen_b)
        b.save(SCOPE, changed_port(seen_b, "vqp2", PortChange(inbound="6600,0,0"))[0], base=seen_b)
        rates = {p.device: p.limits.ingress.bandwidth.rate_bps for _, p in a.load(SCOPE).ports()
                 if p.limits and p.limits.ingress.bandwidth}
        assert rates["vqp1"] == 7700 * 8000 and rates["vqp2"] == 6600 * 8000 and rates["vqp3"] == 10 * MBIT


def _unlocked_writer(url: str, barrier, i: int, rounds: int) -> None:
    """Load, change its own port, save with its base; on a refusal, read again and repeat (no lock)."""
    with Store(url) as store:
        barrier.wait(timeout=30)
        for k in range(rounds):
            for _attempt in range(200):
                seen = store.load(SCOPE)
                try:
                    store.save(SCOPE, changed_port(seen, f"vqp{i}", PortChange(inbound=f"{100 * i + k + 1},0,0"))[0],
                               base=seen)
                    break
                except StaleState:
                    continue
            else:
                raise AssertionError(f"writer {i} was refused 200 times")


def test_eight_unlocked_processes_ten_changes_each_lose_nothing(db_url: str) -> None:
    with Store(db_url) as store:
        store.save(SCOPE, _state(8))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_unlocked_writer, args=(db_url, barrier, i, 10)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 8
    with Store(db_url) as store:
        rates = {p.device: p.limits.ingress.bandwidth.rate_bps for _, p in store.load(SCOPE).ports()
                 if p.limits and p.limits.ingress.bandwidth}
        assert rates == {f"vqp{i}": (100 * i + 10) * 8000 for i in range(8)}
        assert len(store.revisions(SCOPE, limit=200)) == 1 + 80


def _flipper(url: str, flips: int) -> None:
    with Store(url) as store:
        for k in range(flips):
            store.save(SCOPE, _state(PORTS, rate_mbit=10 if k % 2 else 50), actor="apply")


def test_a_reader_without_the_lock_sees_one_whole_state_or_the_other(db_url: str) -> None:
    with Store(db_url) as store:
        store.save(SCOPE, _state(PORTS, rate_mbit=10))
    ctx = multiprocessing.get_context("fork")
    writer = ctx.Process(target=_flipper, args=(db_url, 12))
    writer.start()
    kinds = set()
    try:
        with Store(db_url, read_only=True) as reader:
            while writer.is_alive() or not kinds:
                rates = {p.limits.ingress.bandwidth.rate_bps // MBIT - int(p.device[3:]) % 3
                         for _, p in reader.load(SCOPE).ports() if p.limits and p.limits.ingress.bandwidth}
                assert len(rates) == 1, f"a read saw two saves at once: {sorted(rates)}"
                kinds |= rates
    finally:
        writer.join(timeout=120)
    assert writer.exitcode == 0
    assert kinds <= {10, 50}


def test_a_save_from_a_base_checks_every_reference_and_moves_a_port_between_instances(db: str) -> None:
    from dataclasses import replace

    from vmqos.core.errors import ConflictError
    from vmqos.core.model.host import Policy

    with Store(db) as store:
        seen = store.load(SCOPE)
        with_policy = replace(seen, policies={"gold": Policy("gold", _qos(5))})
        vm1 = with_policy.instances["vm1"]
        with_policy = replace(with_policy, instances={**with_policy.instances, "vm1": replace(
            vm1, ports=(replace(vm1.ports[0], policy="gold"),))})
        store.save(SCOPE, with_policy, base=seen)
        assert _writes(store) == [("policies", "insert"), ("ports", "update")]
        # the policy dropped while an unchanged port still names it: refused before any write
        with pytest.raises(ConflictError, match=r"port 'vqp1': policy 'gold' is not defined"):
            store.save(SCOPE, replace(with_policy, policies={}), base=with_policy)
        # vqp2 moves from vm2 to vm1: one port row updated, no row deleted and inserted
        vm1, vm2 = with_policy.instances["vm1"], with_policy.instances["vm2"]
        moved = replace(with_policy, instances={**with_policy.instances, "vm1": replace(vm1, ports=(*vm1.ports,
                        vm2.ports[0])), "vm2": replace(vm2, ports=())})
        store.save(SCOPE, moved, base=with_policy)
        assert _writes(store) == [("ports", "update")]
        again = store.load(SCOPE)
        assert [p.device for p in again.instances["vm1"].ports] == ["vqp1", "vqp2"]
        assert again.instances["vm2"].ports == () and len(again.ports()) == PORTS


def test_a_row_stored_in_another_form_of_the_same_limits_is_not_stale(db: str) -> None:
    """A row written as `10000kbit` by an older vmqos or another tool: the same limits as `10mbit`, so a
    writer that read it as such may change it; an apply of the same state rewrites nothing."""
    with Store(db) as store:
        with store._engine.begin() as conn:
            conn.execute(text("""UPDATE ports SET limits = '{ "egress": {"rate": "10000kbit"},
                              "ingress": {"rate": 10000000} }' WHERE device = 'vqp0'"""))
        _writes(store)
        store.save(SCOPE, _state(PORTS), actor="apply")
        assert _writes(store) == []
        port_service.set_port(store, SCOPE, "vqp0", PortChange(inbound="100,0,0"), live=False, config=True)
        assert _writes(store) == [("ports", "update")]


def test_the_uplink_and_port_addresses_are_written_only_when_they_change(db: str) -> None:
    """The two tables of issue 16's minimums go through the same row-by-row save: a new uplink device is
    an update of the scope's one row (its key is the scope), a port's addresses follow their port."""
    from dataclasses import replace

    from vmqos.core.model.host import UplinkSpec

    with Store(db) as store:
        with store._engine.begin() as conn:
            for table in ("uplinks", "port_addresses"):
                for op in ("INSERT", "UPDATE", "DELETE"):
                    conn.execute(text(f"CREATE TRIGGER vq_{table}_{op} AFTER {op} ON {table} "
                                      f"BEGIN INSERT INTO vq_writes VALUES ('{table}', '{op.lower()}'); END"))
        base = store.load(SCOPE)
        linked = replace(base, uplink=UplinkSpec("vqwan0", 100 * MBIT))
        store.save(SCOPE, linked, base=base)
        assert _writes(store) == [("uplinks", "insert")]
        moved = replace(linked, uplink=UplinkSpec("vqwan1", 200 * MBIT))
        store.save(SCOPE, moved, base=linked)
        assert _writes(store) == [("uplinks", "update")]
        vm3 = moved.instances["vm3"]
        addressed = replace(moved, instances={**moved.instances, "vm3": replace(
            vm3, ports=(replace(vm3.ports[0], addresses=("10.0.0.3", "fd00::3")),))})
        store.save(SCOPE, addressed, base=moved)
        assert _writes(store) == [("port_addresses", "insert")]
        store.save(SCOPE, replace(addressed, uplink=None), base=addressed)
        assert _writes(store) == [("uplinks", "delete")]
        loaded = store.load(SCOPE)
        assert loaded.uplink is None and loaded.instances["vm3"].ports[0].addresses == ("10.0.0.3", "fd00::3")
        stale = replace(addressed, uplink=UplinkSpec("vqwan2", 100 * MBIT))
        with pytest.raises(StaleState):
            store.save(SCOPE, stale, base=addressed)  # the uplink it read is gone: refused, not overwritten
