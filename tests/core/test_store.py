"""The desired-state store on a temporary SQLite file and on a fresh PostgreSQL database (`db_url`,
tests/pgcluster.py): round trips, scopes, history, what was applied, two stores on one database,
atomic saves, and every failure as one VmqosError line."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from test_format_hostfile import hosts, networks  # the host file's own strategies

import vmqos
from vmqos.core.errors import ConflictError, FormatError, VmqosError
from vmqos.core.formats.hostfile import from_data, read_host, to_data
from vmqos.core.model import (
    BandwidthLimit,
    CpuQos,
    DirectionQos,
    DiskQos,
    NetworkQos,
    PacketRateLimit,
    QosDocument,
)
from vmqos.core.model.host import (
    EgressMode,
    Flavor,
    HostState,
    InstanceSpec,
    NetworkSpec,
    Policy,
    PortSpec,
)
from vmqos.store import Revision, Store, default_url

DEMO = Path(vmqos.__file__).parent / "demo" / "host.yaml"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "lib" / "vmqos.db"  # the store creates the missing directories


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    with Store(db_url) as opened:
        yield opened


def _sql(store: Store, statement: str) -> list[tuple[object, ...]]:
    """A statement straight to the database, as another program would send it (either back end)."""
    with store._tx("test", write="test") as conn:
        result = conn.exec_driver_sql(statement)
        return [tuple(row) for row in result] if result.returns_rows else []


def limits(rate_mbit: int, **egress: object) -> NetworkQos:
    return NetworkQos(
        ingress=DirectionQos(bandwidth=BandwidthLimit(rate_mbit * 10**6, 2 * rate_mbit * 10**6, 65536),
                             packet_rate=PacketRateLimit(20_000, 2_000)),
        egress=DirectionQos(bandwidth=BandwidthLimit(rate_mbit * 10**6), **egress))  # type: ignore[arg-type]


def full_state() -> HostState:
    neutron = Policy("bw-limiter", NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(3_000_000, None, 37500))),
                     origin="neutron")
    gold = Policy("gold", limits(100, dscp=26, min_bps=10**7))
    flavor = Flavor("m1.small", QosDocument(name="m1.small", cpu=CpuQos(shares=512, period_us=100_000, quota_us=20_000),
                                            disk=DiskQos(read_bytes_sec=10 * 2**20, read_iops_sec=500),
                                            network=limits(50)))
    ports = (  # deliberately not in name order: a port keeps its place in its instance
        PortSpec("tap-z", network="private", policy="bw-limiter"),
        PortSpec("tap-a", network="private", limits=limits(200, dscp=46), egress_mode=EgressMode.POLICE, mtu=9000),
        PortSpec("tap-m", limits=NetworkQos(egress=DirectionQos(packet_rate=PacketRateLimit(1000)))),
    )
    return HostState(
        policies={"bw-limiter": neutron, "gold": gold},
        flavors={"m1.small": flavor},
        networks={"private": NetworkSpec("private", policy="gold"), "public": NetworkSpec("public")},
        instances={
            "vm1": InstanceSpec("vm1", flavor="m1.small", cpu=CpuQos(shares=1024), ports=ports,
                                disks={"vda": DiskQos(total_iops_sec=1000, total_iops_sec_max=2000),
                                       "vdb": DiskQos(write_bytes_sec=2**20, group_name="slow")}),
            "vm2": InstanceSpec("vm2", ports=(PortSpec("tap-vm2", network="public"),)),
            "idle": InstanceSpec("idle"),
        },
    )


# ----------------------------------------------------------------------------------- round trips


def test_demo_host_file_round_trips(store: Store) -> None:
    state = read_host(DEMO.read_text())
    assert state.policies["bw-limiter"].origin == "neutron"
    store.save("", state)
    loaded = store.load("")
    assert loaded == state
    assert loaded.flavors["m1.resquota"].qos.notes == state.flavors["m1.resquota"].qos.notes


def test_full_state_round_trips_with_port_order(store: Store) -> None:
    state = full_state()
    store.save("", state)
    loaded = store.load("")
    assert loaded == state
    assert [p.device for p in loaded.instances["vm1"].ports] == ["tap-z", "tap-a", "tap-m"]
    assert loaded.instances["vm1"].ports[1].egress_mode is EgressMode.POLICE


def test_a_ports_window_clamp_is_stored_and_read_back(store: Store) -> None:
    state = full_state()
    vm1 = state.instances["vm1"]
    clamped = replace(vm1, ports=(replace(vm1.ports[0], window_clamp=True), *vm1.ports[1:]))
    state = replace(state, instances={**state.instances, "vm1": clamped})
    store.save("", state)
    loaded = store.load("")
    assert loaded == state
    assert [p.window_clamp for p in loaded.instances["vm1"].ports] == [True, False, False]
    rows = _sql(store, "SELECT device, window_clamp FROM ports ORDER BY device")
    assert [(device, bool(on)) for device, on in rows] == [
        ("tap-a", False), ("tap-m", False), ("tap-vm2", False), ("tap-z", True)]
    store.save("", full_state())  # switched off again: the row's update, not only its insert, carries it
    assert [p.window_clamp for p in store.load("").instances["vm1"].ports] == [False, False, False]


def test_nothing_stored_loads_an_empty_state(store: Store) -> None:
    assert store.load("") == HostState()
    assert store.applied("") == {} and store.revisions("") == [] and store.scopes() == []


def test_an_emptied_scope_loads_empty_and_leaves_the_list(store: Store) -> None:
    store.save("lab", full_state())
    store.save("lab", HostState())
    assert store.load("lab") == HostState() and store.scopes() == []
    assert len(store.revisions("lab")) == 2


def test_values_are_stored_as_the_host_file_writes_them(store: Store) -> None:
    store.save("", full_state())
    [(qos,)] = _sql(store, "SELECT limits FROM ports WHERE device = 'tap-a'")
    [(origin,)] = _sql(store, "SELECT origin FROM policies WHERE name = 'bw-limiter'")
    assert isinstance(qos, str)
    assert json.loads(qos)["egress"] == {"rate": "200mbit", "dscp": 46}
    assert origin == "neutron"


ROUND_TRIP = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@ROUND_TRIP
@given(hosts())
def test_any_host_state_round_trips(store: Store, state: HostState) -> None:
    store.save("prop", state)
    assert store.load("prop") == state


@ROUND_TRIP
@given(networks())
def test_network_qos_round_trips_through_plain_data(qos: NetworkQos) -> None:
    data = to_data(qos)
    assert from_data(NetworkQos, data) == qos
    assert from_data(NetworkQos, json.loads(json.dumps(data))) == qos


@pytest.mark.parametrize("data", [
    {"egress": {"rate": "fast"}},
    {"egress": {"rate": True}},
    {"egress": {"peak": "1mbit"}},
    {"egress": {"pps": "100"}},
    {"ingress": {"dscp": 26}},
    {"egress": {"rate": "1mbit", "bogus": 1}},
    [],
])
def test_plain_data_the_host_file_refuses_is_refused(data: object) -> None:
    with pytest.raises(FormatError):
        from_data(NetworkQos, data, path=("instances", "vm1", "ports", 0, "limits"))


# ----------------------------------------------------------------------------- scopes and saving


def test_scopes_are_independent(store: Store) -> None:
    host, lab = full_state(), read_host(DEMO.read_text())
    store.save("", host)
    store.save("lab-host", lab)
    assert store.load("") == host and store.load("lab-host") == lab
    assert store.scopes() == ["", "lab-host"]
    store.save("lab-host", HostState(instances={"x": InstanceSpec("x", ports=(PortSpec("tap-vm1"),))}))
    assert store.load("") == host  # same device and instance names elsewhere: untouched


def test_save_replaces_the_whole_state(store: Store) -> None:
    state = full_state()
    store.save("", state)
    smaller = HostState(policies={"gold": state.policies["gold"]}, networks={"private": state.networks["private"]},
                        instances={"vm1": InstanceSpec("vm1", ports=state.instances["vm1"].ports[1:2])})
    store.save("", smaller)
    loaded = store.load("")
    assert loaded == smaller and [p.device for _, p in loaded.ports()] == ["tap-a"]


def test_revisions_are_recorded_newest_first(store: Store) -> None:
    before = datetime.now(UTC)
    ids = [store.save("", full_state(), actor=actor, summary=summary)
           for actor, summary in (("apply", "3 ports"), ("port set", "port tap-a"), ("cli", ""))]
    store.save("other", HostState())
    assert ids == sorted(ids) and len(set(ids)) == 3
    history = store.revisions("")
    assert [(r.id, r.actor, r.summary) for r in history] == [
        (ids[2], "cli", ""), (ids[1], "port set", "port tap-a"), (ids[0], "apply", "3 ports")]
    assert all(isinstance(r, Revision) and r.scope == "" and r.at.tzinfo is not None and r.at >= before.replace(
        microsecond=0) for r in history)
    assert history[0].at >= history[-1].at
    assert [r.id for r in store.revisions("", limit=1)] == [ids[2]]
    assert len(store.revisions("other")) == 1


def test_the_last_revision_of_a_scope_moves_with_every_change_and_only_with_its_own(store: Store) -> None:
    """What the monitor's plan cache keys on (`WatchedPlans`)."""
    def last(scope: str) -> int:
        found = store.revisions(scope, limit=1)
        return found[0].id if found else 0

    assert last("") == 0
    first = store.save("", full_state())
    assert last("") == first
    store.save("other", HostState())
    assert last("") == first  # another scope's change
    store.record_applied("", "tap-a", "f")
    assert last("") == first  # what the kernel holds is not the desired state
    second = store.save("", full_state())
    assert last("") == second > first


def test_dangling_references_and_duplicate_devices_are_refused(store: Store) -> None:
    store.save("", full_state())
    bad = [
        HostState(instances={"vm": InstanceSpec("vm", ports=(PortSpec("tap0", policy="nope"),))}),
        HostState(instances={"vm": InstanceSpec("vm", flavor="nope")}),
        HostState(networks={"n": NetworkSpec("n", policy="nope")}),
        HostState(instances={"a": InstanceSpec("a", ports=(PortSpec("tap0"),)),
                             "b": InstanceSpec("b", ports=(PortSpec("tap0"),))}),
        HostState(policies={"key": Policy("other-name", NetworkQos())}),
    ]
    for state in bad:
        with pytest.raises(ConflictError):
            store.save("", state)
    assert store.load("") == full_state() and len(store.revisions("")) == 1


def test_a_save_that_fails_midway_changes_nothing(store: Store) -> None:
    store.save("", full_state())
    with pytest.raises(VmqosError, match="saving scope ''"):
        store.save("", read_host(DEMO.read_text()), actor=None)  # type: ignore[arg-type]  # fails last
    assert store.load("") == full_state() and len(store.revisions("")) == 1


def test_readers_never_see_half_a_state(db_url: str) -> None:
    def state(tag: str) -> HostState:
        return HostState(instances={f"{tag}{i}": InstanceSpec(f"{tag}{i}", ports=(PortSpec(f"{tag}-{i}"),))
                                    for i in range(300)})

    a, b = state("a"), state("b")
    with Store(db_url) as writer, Store(db_url) as reader:
        writer.save("", a)
        seen: list[HostState] = []
        done = threading.Event()

        def write() -> None:
            for i in range(15):
                writer.save("", b if i % 2 == 0 else a)
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        while not seen or not done.is_set():
            seen.append(reader.load(""))
        thread.join()
    assert seen and all(s in (a, b) for s in seen)


# --------------------------------------------------------------------------------------- applied


def test_applied_fingerprints(store: Store) -> None:
    store.record_applied("", "tap-a", "fp1")
    store.record_applied("", "tap-a", "fp2")
    store.record_applied("lab", "tap-a", "lab-fp")
    assert store.applied("") == {"tap-a": "fp2"}
    store.record_applied_many("", {"tap-b": "b1", "tap-c": "c1", "tap-a": None, "tap-x": None})
    assert store.applied("") == {"tap-b": "b1", "tap-c": "c1"}
    store.record_applied("", "tap-b", None)
    store.record_applied_many("", {})
    assert store.applied("") == {"tap-c": "c1"}
    assert store.applied("lab") == {"tap-a": "lab-fp"}
    assert store.scopes() == ["", "lab"]  # something applied still needs the scope reconciled


def test_a_second_store_on_the_same_database_sees_the_first(db_url: str) -> None:
    with Store(db_url) as first, Store(db_url) as second:
        first.save("lab-host", full_state(), actor="daemon")
        assert second.load("lab-host") == full_state()
        second.record_applied("lab-host", "tap-a", "fp")
        assert first.applied("lab-host") == {"tap-a": "fp"}
        assert [r.actor for r in second.revisions("lab-host")] == ["daemon"]


def test_a_sqlite_file_is_shared_in_wal_mode(path: Path) -> None:
    with Store(f"sqlite:///{path}") as store:
        store.save("", full_state())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("url", [
    "sqlite:////proc/nope/x.db",
    "not a url",
    "nosuchdialect://host/db",
])
def test_a_database_that_cannot_be_opened_is_one_line(url: str) -> None:
    with pytest.raises(VmqosError) as caught:
        Store(url)
    message = str(caught.value)
    assert "\n" not in message and "--db URL" in message


@pytest.mark.postgres
def test_a_postgresql_database_that_cannot_be_opened_is_one_line(postgres_cluster, tmp_path: Path) -> None:
    for url in (postgres_cluster.url("vq_no_such_database"),  # the server says so
                f"postgresql://postgres@/vmqos?host={tmp_path}",  # no server on that socket
                "postgresql+nosuchdriver://host/db"):
        with pytest.raises(VmqosError) as caught:
            Store(url)
        assert "\n" not in str(caught.value) and "--db URL" in str(caught.value), url


@pytest.mark.postgres
def test_postgresql_urls_without_a_driver_use_psycopg(pg_url: str) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with Store(plain) as store:
        store.save("", full_state())
        assert store._engine.dialect.driver == "psycopg"
    with Store(pg_url) as store:
        assert store.load("") == full_state()


def test_a_directory_in_place_of_the_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(VmqosError, match=r"cannot open the database .*--db URL"):
        Store(f"sqlite:///{tmp_path}")


def test_invalid_stored_data_is_reported_not_raised_as_a_traceback(store: Store) -> None:
    store.save("", full_state())
    _sql(store, """UPDATE ports SET limits = '{"egress": {"rate": "fast"}}' WHERE device = 'tap-a'""")
    with pytest.raises(VmqosError, match=r"invalid scope ''.*instances\.vm1\.ports\[1\]\.limits\.egress"):
        store.load("")
    _sql(store, "UPDATE ports SET limits = 'not json' WHERE device = 'tap-a'")
    with pytest.raises(VmqosError, match="invalid scope"):
        store.load("")


def test_a_scope_is_a_namespace_name(store: Store) -> None:
    for scope in ("a/b", "..", None):
        with pytest.raises(VmqosError):
            store.load(scope)  # type: ignore[arg-type]


def test_default_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VMQOS_DB", raising=False)
    assert default_url() == "sqlite:////var/lib/vmqos/vmqos.db"
    monkeypatch.setenv("VMQOS_DB", "sqlite:////tmp/other.db")
    assert default_url() == "sqlite:////tmp/other.db"
