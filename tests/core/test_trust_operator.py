"""Issue 13 items 16-18 ("Trust", what an operator meets): `top`'s cells, `apply`'s progress, and
read-only commands run without privileges."""

from __future__ import annotations

import re

import pytest

from vmqos.cli.top import _rows, row_cells, utilisation_cell
from vmqos.core.analysis.rates import FlowRate
from vmqos.core.analysis.samples import PortRates
from vmqos.core.units import human_pps, human_rate, human_size

AVERAGE, PEAK = 262_144_000, 524_288_000
RAW_FLOAT = re.compile(r"\d\.\d{4,}")  # 548.8502154478151: a float printed whole


def rate(delivered: float, offered: float | None = None, *, limit: int | None = AVERAGE, pps: float = 0.0,
         dropped_pps: float = 0.0) -> FlowRate:
    return FlowRate(seconds=1.0, offered_bps=offered if offered is not None else delivered, delivered_bps=delivered,
                    offered_pps=pps, delivered_pps=pps, dropped_pps=dropped_pps, backlog_bytes=0, limit_bps=limit)


def one_row(flow: FlowRate, peak: int | None = None) -> dict:
    port_rates = {"tap-vm1": PortRates("tap-vm1", "vm1", {"ingress": flow}, None)}
    rows = _rows(port_rates, {("tap-vm1", "ingress"): peak} if peak else {})
    assert len(rows) == 1
    return rows[0]


def test_a_port_at_its_peak_says_it_is_spending_its_burst() -> None:
    row = one_row(rate(PEAK), peak=PEAK)
    assert row["peak_bps"] == PEAK
    assert utilisation_cell(row) == "200% (peak 2×)"
    assert row_cells(row)[-1] == "200% (peak 2×)"


def test_above_the_average_without_a_peak_is_an_overshoot_and_not_marked() -> None:
    assert utilisation_cell(one_row(rate(PEAK))) == "200%"
    assert utilisation_cell(one_row(rate(AVERAGE / 2), peak=PEAK)) == "50%"  # below the average: no mark
    assert utilisation_cell(one_row(rate(PEAK * 0.75), peak=int(AVERAGE * 1.5))) == "150% (peak 1.5×)"


def test_every_rate_cell_has_a_unit_and_never_a_raw_float() -> None:
    row = one_row(rate(548.8502154478151, 1_234.5678, pps=3.3333333, dropped_pps=0.123456), peak=None)
    cells = row_cells(row)
    assert not [c for c in cells if RAW_FLOAT.search(c)], cells
    _, _, _, limit, offered, delivered, dropped, pps, util = cells
    assert delivered == "549 bit/s"
    assert offered == "1.235 kbit/s"
    assert dropped.endswith("0 pkt/s") and "bit/s" in dropped
    assert pps == "3 pkt/s"
    assert limit == "262.144 Mbit/s"
    assert util == "0%"


def test_human_formatters_round_a_measured_float() -> None:
    assert human_rate(548.8502154478151) == "549 bit/s"
    assert human_rate(999.6) == "1 kbit/s"
    assert human_rate(0.4) == "0 bit/s"
    assert human_rate(262_144_000) == "262.144 Mbit/s"  # integers as before
    assert human_size(12.75) == "13 B"
    assert human_pps(1234.56) == "1,235 pkt/s"
    assert human_pps(10_000) == "10,000 pkt/s"


# ----------------------------------------------------------------------------- item 18: apply's progress

from vmqos.core.model.host import HostState, InstanceSpec, PortSpec  # noqa: E402
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos  # noqa: E402
from vmqos.core.plan.host import plan_host  # noqa: E402
from vmqos.core.desired.ports import empty_plan  # noqa: E402
from vmqos.drivers.fake import FakeKernel, fake_drivers  # noqa: E402
from vmqos.reconcile.execute import PHASES, Reconciler  # noqa: E402

MANY = [f"tap{i}" for i in range(20)]  # above CONCURRENT_MIN_PORTS: nft runs beside ip and tc


def host(rate: int, devices: list[str]) -> HostState:
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate)),
                     egress=DirectionQos(bandwidth=BandwidthLimit(rate // 2), dscp=18))
    return HostState(instances={d: InstanceSpec(d, ports=(PortSpec(d, limits=qos),)) for d in devices})


def fake_reconciler(kernel: FakeKernel) -> Reconciler:
    tc, nft, batch = fake_drivers(kernel)
    return Reconciler(None, tc=tc, nft=nft, batch=batch)


def heard(calls: list[tuple[str, int, int]]) -> dict[str, list[tuple[int, int]]]:
    """Per phase, what it was told; checks that each phase starts at 0, never goes back and ends full."""
    by_phase: dict[str, list[tuple[int, int]]] = {}
    for phase, done, total in calls:
        assert phase in PHASES, phase
        assert 0 <= done <= total, (phase, done, total)
        by_phase.setdefault(phase, []).append((done, total))
    for phase, seen in by_phase.items():
        assert seen[0][0] == 0, (phase, seen)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen), (phase, seen)
        assert seen[-1][0] == seen[-1][1] > 0, (phase, seen)
    return by_phase


def test_reconcile_reports_its_phases_in_order_over_the_fake_kernel() -> None:
    kernel = FakeKernel(MANY)
    calls: list[tuple[str, int, int]] = []
    with fake_reconciler(kernel) as rec:
        results, _ = rec.reconcile(plan_host(host(100_000_000, MANY)), progress=lambda *a: calls.append(a))
    assert all(r.error is None for r in results)
    phases = heard(calls)
    assert set(phases) == {"reading back", "links", "queues", "nft"}
    assert phases["links"][-1] == (len(MANY), len(MANY))  # one IFB per port (egress shaped)
    assert phases["queues"][-1] == (len(MANY), len(MANY))
    assert phases["nft"][-1] == (len(MANY), len(MANY))
    first = [p for i, (p, _, _) in enumerate(calls) if p not in [q for q, _, _ in calls[:i]]]
    assert first[0] == "reading back"
    assert calls.index(("reading back", len(MANY), len(MANY))) < min(
        calls.index((p, 0, len(MANY))) for p in ("links", "queues", "nft"))

    calls.clear()  # removing ports: deletions, reported after the rest
    with fake_reconciler(kernel) as rec:
        rec.reconcile({p: empty_plan(p) for p in MANY[:5]}, progress=lambda *a: calls.append(a))
    phases = heard(calls)
    assert phases["deletions"][-1] == (5, 5)
    assert "links" not in phases and "queues" not in phases

    calls.clear()  # nothing to change: only the reading back is heard
    with fake_reconciler(kernel) as rec:
        rec.reconcile(plan_host(host(100_000_000, MANY[5:])), progress=lambda *a: calls.append(a))
    assert set(heard(calls)) == {"reading back"}


HOST_FILE = """version: 1
instances:
""" + "".join(f"""  vm{i}:
    ports:
      - device: tap{i}
        limits: {{ingress: {{rate: 100mbit}}, egress: {{rate: 50mbit}}}}
""" for i in range(3))


@pytest.fixture
def fake_apply(tmp_path, monkeypatch):
    """`vmqos apply` in-process over the fake kernel: (argv prefix, the stderr console)."""
    import vmqos.services.ports as ports_service
    from vmqos.cli import output

    kernel = FakeKernel([f"tap{i}" for i in range(3)])
    monkeypatch.setattr(ports_service, "Reconciler", lambda netns=None: fake_reconciler(kernel))
    (tmp_path / "host.yaml").write_text(HOST_FILE)
    return ["apply", "-f", str(tmp_path / "host.yaml"), "--db", f"sqlite:///{tmp_path}/v.db"], output.stderr


def run_cli(argv: list[str]) -> int:
    from vmqos.cli.main import main

    try:
        return main(argv)
    except SystemExit as exc:  # the kernel commands exit with their status
        return int(exc.code or 0)


def test_apply_prints_nothing_extra_when_stderr_is_not_a_terminal(fake_apply, capsys) -> None:
    argv, console = fake_apply
    assert not console.is_terminal
    assert run_cli(argv) == 0
    out = capsys.readouterr()
    assert out.err == "", out.err
    assert "tap0: " in out.out and "change(s)" in out.out


def test_apply_shows_progress_on_a_terminal_but_not_with_json(fake_apply, capsys, monkeypatch) -> None:
    argv, console = fake_apply
    monkeypatch.setattr(console, "_force_terminal", True)  # what a terminal on stderr makes it
    monkeypatch.setattr(console, "is_interactive", True)
    assert run_cli([*argv, "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == "", out.err
    assert run_cli(argv) == 0  # the kernel is in place now: planning, reading back, saving
    err = capsys.readouterr().err
    for phase in ("planning", "reading back", "saving"):
        assert phase in err, err


# ------------------------------------------------------------- item 16: without privileges, read-only

import errno  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402

from vmqos.cli.errors import os_error  # noqa: E402
from vmqos.core.errors import NotFound, PrivilegeError, VmqosError  # noqa: E402
from vmqos.drivers import privileges  # noqa: E402
from vmqos.drivers.process import run  # noqa: E402
from vmqos.drivers.tc_decode import kernel_error  # noqa: E402
from vmqos.store import Store  # noqa: E402


@pytest.fixture
def unprivileged(monkeypatch):
    """This process as if it had no capability at all (CapEff 0)."""
    monkeypatch.setattr(privileges, "effective_capabilities", lambda: 0)


@pytest.fixture
def privileged(monkeypatch):
    monkeypatch.setattr(privileges, "effective_capabilities", lambda: -1)


def test_a_refused_netns_is_one_line_naming_the_privilege(unprivileged) -> None:
    def pyroute2_refuses(netns: str, flags: int) -> None:
        raise OSError(errno.EPERM, "failed to open netns", netns)  # what pyroute2's child sends back

    with pytest.raises(PrivilegeError) as caught:
        privileges.open_in_netns("vqlab-host", pyroute2_refuses)
    message = str(caught.value)
    assert message.startswith("opening network namespace vqlab-host needs root (CAP_SYS_ADMIN): run vmqos as root")
    assert "\n" not in message and caught.value.exit_code == 77
    assert privileges.open_in_netns(None, lambda: "socket of this namespace") == "socket of this namespace"


def test_a_refused_netns_with_the_capability_blames_the_sandbox(privileged) -> None:
    def refuses(netns: str, flags: int) -> None:
        raise OSError(errno.EPERM, "failed to open netns", netns)

    with pytest.raises(VmqosError) as caught:
        privileges.open_in_netns("vqlab-host", refuses)
    assert not isinstance(caught.value, PrivilegeError)
    assert "although vmqos has CAP_SYS_ADMIN" in str(caught.value)


def test_a_tool_refused_for_want_of_privileges_says_so(unprivileged, tmp_path) -> None:
    tool = ["sh", "-c", "echo 'Error: cache initialization failed: Operation not permitted' >&2; exit 1"]
    for check in (True, False):  # nft's readers look at the output themselves (check=False)
        with pytest.raises(PrivilegeError, match=r"^running sh -c .* needs root \(CAP_NET_ADMIN\)"):
            run(tool, check=check)
    assert run(["sh", "-c", "echo 'No such file or directory' >&2; exit 1"], check=False).returncode == 1


def test_a_refusal_is_not_blamed_on_privileges_when_vmqos_has_them(privileged) -> None:
    tool = ["sh", "-c", "echo 'RTNETLINK answers: Operation not permitted' >&2; exit 2"]
    assert run(tool, check=False).returncode == 2
    error = kernel_error("replace class tap0 1:1", errno.EPERM)
    assert not isinstance(error, PrivilegeError) and "although vmqos has CAP_NET_ADMIN" in str(error)


def test_a_netlink_refusal_without_the_capability_is_a_privilege_error(unprivileged) -> None:
    error = kernel_error("replace class tap0 1:1", errno.EPERM)
    assert isinstance(error, PrivilegeError)
    assert str(error).startswith("replace class tap0 1:1 needs root (CAP_NET_ADMIN)")
    assert not isinstance(kernel_error("replace class tap0 1:1", errno.ENOENT), PrivilegeError)


def test_capabilities_are_read_from_proc() -> None:
    caps = privileges.effective_capabilities()
    assert (caps == -1) or caps >= 0
    if os.geteuid() == 0 and caps != -1:
        assert privileges.missing(privileges.CAP_NET_ADMIN) == []


def test_an_untranslated_os_error_never_prints_an_empty_file_name() -> None:
    assert os_error(OSError(errno.EPERM, "failed to open netns")) == \
        "failed to open netns (permission denied: run vmqos as root)"
    assert os_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")) == \
        "/x: No such file or directory"


def test_a_read_only_store_writes_nothing_at_open(tmp_path) -> None:
    """Opening for writing sets WAL (a header write) and creates tables; read-only does neither."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (a)")  # a database in rollback-journal mode, without vmqos's tables
    conn.commit()
    conn.close()
    before, stamp = path.read_bytes(), os.stat(path).st_mtime_ns
    with Store(f"sqlite:///{path}", read_only=True) as store:
        with pytest.raises(VmqosError, match="no such table"):  # one line, the file untouched
            store.load("")
    assert path.read_bytes() == before and os.stat(path).st_mtime_ns == stamp
    assert sorted(os.listdir(tmp_path)) == ["old.db"]


def test_a_read_only_store_reads_what_was_written_and_refuses_to_write(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    with Store(url) as writer:
        writer.save("", host(100_000_000, ["tap0"]))
    with Store(url, read_only=True) as store:
        assert [p.device for _, p in store.load("").ports()] == ["tap0"]
        assert store.revisions("")[0].actor == "cli"
        with pytest.raises(VmqosError, match="readonly|read-only|query_only"):
            store.save("", host(1_000_000, ["tap1"]))


def test_a_read_only_store_of_a_missing_file_is_empty_and_creates_nothing(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/not/yet/v.db"
    with Store(url, read_only=True) as store:
        assert store.load("").instances == {}
        assert store.scopes() == []
    assert os.listdir(tmp_path) == []


def test_a_read_only_store_of_a_file_whose_schema_a_writer_is_making_is_empty(tmp_path) -> None:
    """An agent's first start creates its cache file, then its tables in one transaction: a reader
    in between (`port show`, a test waiting for the agent) sees an empty database, not 'no such table'."""
    path = tmp_path / "agent.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE policies (a)")  # the writer's transaction, not committed
    with Store(f"sqlite:///{path}", read_only=True) as store:
        assert store.load("").instances == {} and store.scopes() == []
    conn.rollback()
    conn.close()


def test_a_namespace_is_opened_never_created() -> None:
    """pyroute2 creates a missing namespace unless told not to (O_CREAT by default): one deleted
    between the check and the open must be an error, not a new namespace for the next steps."""
    seen: dict[str, object] = {}

    def opener(**kwargs: object) -> str:
        seen.update(kwargs)
        if kwargs.get("flags") != 0:
            return "a new, empty namespace"
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    with pytest.raises(NotFound, match="network namespace 'vqgone' does not exist"):
        privileges.open_in_netns("vqgone", opener)
    assert seen == {"netns": "vqgone", "flags": 0}
