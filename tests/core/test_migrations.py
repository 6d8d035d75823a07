"""The store's schema revisions (Alembic): every database is brought to head when a Store opens it.

- A migrated database is exactly what the models declare (alembic's compare_metadata), on SQLite
  and PostgreSQL. THIS is the test that fails when a table or column is added to a model without
  a revision: write one with `python -m vmqos.store.migrations "what changed"`.
- A first wave's database (tests/data/firstwave.sql, made by the first wave's own code, see
  tests/data/make_firstwave_db.py) is migrated in place: every object reads back as the first
  wave read it, and a second open changes nothing.
- A database made by create_all before migrations existed is stamped at the revision it matches.
- A newer vmqos's database is refused in one line; two processes opening a new database migrate it once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, inspect, text

from vmqos.core.errors import VmqosError
from vmqos.core.formats.hostfile import read_host, to_data
from vmqos.store import Store
from vmqos.store import monitor as mstore
from vmqos.store import qos
from vmqos.store.migrations import upgrade
from vmqos.store.migrations.models import full_metadata
from vmqos.store.migrations.versions import HEAD, v0001_first_wave, v0002_server_first_slice

DATA = Path(__file__).resolve().parents[1] / "data"
FIX = 'python -m vmqos.store.migrations "what changed"'


def differences(store: Store, metadata: MetaData | None = None) -> list[Any]:
    with store._engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata if metadata is not None else full_metadata()))


def version(store: Store) -> str | None:
    with store._engine.connect() as conn:
        return upgrade.current(conn)


# ------------------------------------------------------------------------------ models == migrations


def test_a_migrated_database_is_what_the_models_declare(db_url: str) -> None:
    with Store(db_url) as store:
        assert version(store) == HEAD
        found = differences(store)
    assert found == [], (f"the models differ from what the migrations make: {found}; a new table or column needs "
                         f"a revision in src/vmqos/store/migrations/versions ({FIX})")


def test_the_comparison_sees_a_table_and_a_column_no_revision_makes(db_url: str) -> None:
    """The test above is not vacuous: a model's new table and new column are both reported."""
    extra = MetaData()
    for table in full_metadata().tables.values():
        table.to_metadata(extra)
    Table("vq_new_things", extra, Column("id", Integer, primary_key=True))
    extra.tables["policies"].append_column(Column("colour", Integer, nullable=True))
    with Store(db_url) as store:
        found = differences(store, extra)
    assert {(d[0], d[1].name if d[0] == "add_table" else (d[2], d[3].name)) for d in found
            if isinstance(d, tuple)} == {("add_table", "vq_new_things"), ("add_column", ("policies", "colour"))}


def test_head_is_alembics_head_and_every_revision_is_in_one_line() -> None:
    """versions.HEAD (what an up-to-date database is compared with, without Alembic) is the newest revision."""
    scripts = upgrade.scripts()
    assert scripts.get_heads() == [HEAD], "a new revision moves HEAD in src/vmqos/store/migrations/versions/__init__.py"
    assert [s.revision for s in scripts.walk_revisions()][-1] == v0001_first_wave.revision


def test_opening_an_up_to_date_database_does_not_load_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vmqos.db'}"
    Store(url).close()
    code = f"import sys; from vmqos.store import Store; Store({url!r}).close(); print('alembic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


# --------------------------------------------------------------------------------- the first wave


def _first_wave_database(tmp_path: Path) -> Path:
    path = tmp_path / "vmqos.db"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "firstwave.sql").read_text())
    return path


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def seen(store: Store) -> dict[str, Any]:
    """What today's readers return, in the shape tests/data/make_firstwave_db.py recorded the first wave's."""
    scopes = store.scopes()
    return {
        "scopes": scopes,
        "revisions": {scope: [[r.id, r.at.isoformat(), r.actor, r.summary] for r in store.revisions(scope, 100)]
                      for scope in [*scopes, "gone"]},
        "applied": {scope: store.applied(scope) for scope in scopes},
        "volume_types": {n: [v.consumer, v.specs, v.qos_name] for n, v in store.volume_types("").items()},
        "volumes": {n: [v.type, v.size_gb, v.instance, v.device] for n, v in store.volumes("").items()},
        "events": [[e.id, e.at.isoformat(), e.port, e.instance, e.direction, e.kind, e.detector, e.message]
                   for e in mstore.events(store, "")],
        "quarantines": {d: [to_data(q.qos), q.reason, q.since.isoformat()]
                        for d, q in mstore.quarantines(store, "").items()},
        "usage": {g: [[u.key.direction, u.key.device, u.key.local_ip, u.key.remote_ip, u.period_start.isoformat(),
                       u.bytes, u.packets] for u in mstore.usage(store, "", granularity=g)] for g in ("hour", "day")},
        "usage_cursors": sorted([k.direction, k.device, k.local_ip, k.remote_ip, c.bytes, c.packets]
                                for k, c in mstore.usage_cursors(store, "").items()),
    }


def test_a_first_wave_database_is_migrated_in_place_and_reads_as_before(tmp_path: Path) -> None:
    expected = json.loads((DATA / "firstwave.json").read_text())
    path = _first_wave_database(tmp_path)
    url = f"sqlite:///{path}"
    with Store(url) as store:
        assert version(store) == HEAD
        for scope, text in expected.pop("states").items():
            assert store.load(scope) == read_host(text), scope
        assert seen(store) == expected
        assert differences(store) == []
        # the rows of a migrated database go on: new revisions after the old ones, the new tables usable
        assert store.save("", store.load(""), actor="test") == 10
        assert qos.list_policies(store) == []
    after = _dump(path)
    with Store(url) as store:
        assert version(store) == HEAD
    assert _dump(path) == after, "a second open changed the database"


def test_the_first_wave_dump_has_no_revision_until_opened(tmp_path: Path) -> None:
    path = _first_wave_database(tmp_path)
    with sqlite3.connect(path) as db:
        tables_before = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables_before == {*v0001_first_wave.TABLES, "sqlite_sequence"}
    with Store(f"sqlite:///{path}") as store:
        assert set(inspect(store._engine).get_table_names()) >= {
            *v0001_first_wave.TABLES, *v0002_server_first_slice.TABLES, "alembic_version"}


# ------------------------------------------------------------------ databases made by create_all


def _create_all(url: str, tables: tuple[str, ...]) -> None:
    """A database as main's create_all left it before migrations: `tables` and no alembic_version."""
    metadata = full_metadata()
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            metadata.create_all(conn, tables=[metadata.tables[name] for name in tables])
    finally:
        engine.dispose()


def test_todays_schema_made_by_create_all_is_stamped_and_its_rows_kept(db_url: str) -> None:
    from vmqos.services import identity

    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    _create_all(db_url, v0001_first_wave.TABLES + v0002_server_first_slice.TABLES)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO identity_roles (id, name) VALUES ('r1', 'admin')")
    engine.dispose()
    with identity.open_store(db_url) as store:
        assert version(store) == HEAD
        assert differences(store) == []
        assert identity.bootstrap(store, "pw").name == "admin"  # the existing role is reused, not duplicated
        with store._tx("test") as conn:
            assert conn.exec_driver_sql("SELECT id FROM identity_roles WHERE name = 'admin'").scalars().all() == ["r1"]


def test_a_database_with_only_some_of_the_servers_tables_gets_the_others(db_url: str) -> None:
    """main created the server's tables only where their module was imported: stamp the first wave, make the rest."""
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    _create_all(db_url, v0001_first_wave.TABLES + ("qos_policies", "qos_rules"))
    with Store(db_url) as store:
        assert version(store) == HEAD
        assert differences(store) == []


def test_a_database_with_some_first_wave_tables_but_not_all_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    _create_all(url, ("events", "usage"))
    with pytest.raises(VmqosError, match="not made by vmqos") as caught:
        Store(url)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------- newer schema, concurrent openers


def test_a_database_from_a_newer_vmqos_is_refused_in_one_line(db_url: str) -> None:
    with Store(db_url) as store:
        with store._tx("test", write="test") as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    for read_only in (False, True):
        with pytest.raises(upgrade.SchemaTooNew) as caught:
            Store(db_url, read_only=read_only)
        message = str(caught.value)
        assert "\n" not in message and "'9999_from_the_future'" in message and "upgrade vmqos" in message


def _open(url: str, i: int, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        with Store(url) as store:
            store.save(f"s{i}", store.load(""))
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 (reported by the parent)
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_database_at_once_migrate_it_once(db_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(db_url, i, barrier, results)) for i in range(6)]
    for proc in procs:
        proc.start()
    said = []
    try:
        for _ in procs:  # drained before joining: a child exits only once its message is out
            said.append(results.get(timeout=90))
    except queue.Empty:
        pass
    for proc in procs:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
    assert (sorted(said), [p.exitcode for p in procs]) == (["ok"] * 6, [0] * 6)
    with Store(db_url) as store:
        with store._tx("test") as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [HEAD]
        assert differences(store) == []


def test_a_policy_shared_before_rbac_keeps_being_shared(db_url: str) -> None:
    """0003 derives `shared` from RBAC entries: a policy stored shared before it gets its '*' entry."""
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    _create_all(db_url, v0001_first_wave.TABLES + v0002_server_first_slice.TABLES)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        for policy_id, shared in (("p-shared", True), ("p-private", False)):
            conn.execute(text(
                "INSERT INTO qos_policies (id, project_id, name, description, shared, is_default, revision_number, "
                "tags, created_at, updated_at) VALUES (:id, 'proj', :id, '', :shared, :no, 1, '[]', "
                "'2026-12-01 00:00:00', '2026-12-01 00:00:00')"), {"id": policy_id, "shared": shared, "no": False})
    engine.dispose()
    with Store(db_url) as store:
        assert version(store) == HEAD
        entries = [(e.object_id, e.project_id, e.action, e.target_project) for e in qos.list_rbac(store)]
        assert entries == [("p-shared", "proj", "access_as_shared", "*")]
        assert {p.id: p.shared for p in qos.list_policies(store)} == {"p-shared": True, "p-private": False}


def test_ports_stored_before_the_window_clamp_have_it_off(db_url: str) -> None:
    """0015 adds `ports.window_clamp`: a port already stored reads back with the clamp off, as it was."""
    from alembic import command

    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(upgrade.config(conn), "0014_uplink_api")
        conn.execute(text("INSERT INTO instances (scope, name, flavor, cpu, disks) "
                          "VALUES ('', 'vm1', NULL, NULL, '{}')"))
        conn.execute(text("INSERT INTO ports (scope, device, instance, network, policy, limits, egress_mode, mtu, "
                          "position) VALUES ('', 'tap1', 'vm1', NULL, NULL, NULL, 'police', 9000, 0)"))
    engine.dispose()
    with Store(db_url) as store:
        assert version(store) == HEAD
        assert differences(store) == []
        [port] = store.load("").instances["vm1"].ports
    assert (port.device, port.egress_mode.value, port.mtu, port.window_clamp) == ("tap1", "police", 9000, False)


def test_networks_and_ports_made_before_tags_have_none(db_url: str) -> None:
    """0004 adds `tags` to neutron_networks and neutron_ports: the rows already there read back with none."""
    from alembic import command

    from vmqos.store import neutron_ports

    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(upgrade.config(conn), "0003_neutron_networks_ports_rbac")
        stamp = "'2026-12-01 00:00:00'"
        conn.execute(text(
            "INSERT INTO neutron_networks (id, project_id, name, description, admin_state_up, shared, mtu, "
            f"revision_number, created_at, updated_at) VALUES ('n1', 'proj', 'net', '', :yes, :no, 1500, 3, {stamp}, "
            f"{stamp})"), {"yes": True, "no": False})
        conn.execute(text(
            "INSERT INTO neutron_ports (id, project_id, network_id, name, description, admin_state_up, mac_address, "
            "device_id, device_owner, host_id, profile, vnic_type, revision_number, created_at, updated_at) VALUES "
            f"('p1', 'proj', 'n1', 'port', '', :yes, 'fa:16:3e:00:00:01', '', '', 'h1', '{{}}', 'normal', 2, {stamp}, "
            f"{stamp})"), {"yes": True})
    engine.dispose()
    with Store(db_url) as store:
        assert version(store) == HEAD
        assert differences(store) == []
        assert [(n.id, n.tags, n.revision_number) for n in neutron_ports.list_networks(store)] == [("n1", (), 3)]
        assert [(p.id, p.tags, p.host_id) for p in neutron_ports.list_ports(store)] == [("p1", (), "h1")]
