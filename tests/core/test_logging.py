"""Core tier: the logging options of the entry point, its JSON lines, and what the reconciler and
the monitor log, without root (the kernel's side is stood in for where a pass would read it)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from vmqos.cli.demo import demo_dir
from vmqos.cli.logs import HANDLER, JsonFormatter, StderrHandler, level_of
from vmqos.cli.main import main
from vmqos.core.analysis.detect import Thresholds
from vmqos.core.analysis.flows import Flow
from vmqos.core.analysis.samples import PortLimits, PortSample, Sample
from vmqos.core.desired.effective import QosSource, combine
from vmqos.core.errors import InvalidValue
from vmqos.core.model import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.planner import plan_port
from vmqos.monitor import daemon
from vmqos.reconcile.execute import Observed, Reconciler
from vmqos.store import Store

DEMO = Path(demo_dir())
VMQOS = [sys.executable, "-m", "vmqos.cli.main"]
PLAN = ["plan", "--port", "tap-vm1", "--flavor", str(DEMO / "m1.resquota.specs"), "--json"]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) vmqos[.\w]*: ")


@pytest.fixture(autouse=True)
def vmqos_logger(monkeypatch):
    """Each test starts with the `vmqos` logger as Python leaves it and puts it back after."""
    monkeypatch.delenv("VMQOS_LOG_LEVEL", raising=False)
    logger = logging.getLogger("vmqos")
    saved = logger.level, logger.propagate, list(logger.handlers)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    for handler in saved[2]:
        logger.addHandler(handler)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("VMQOS_DEBUG", "VMQOS_LOG_LEVEL")}
    return subprocess.run([*VMQOS, *args], check=False, capture_output=True, text=True, timeout=60, env={**base, **(env or {})})


def ours(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if h.get_name() == HANDLER]


# -- the options ------------------------------------------------------------------------------------


def test_the_level_asked_for():
    assert level_of(environ={}) is None
    assert level_of(1, environ={}) == logging.INFO
    assert level_of(2, environ={}) == logging.DEBUG and level_of(5, environ={}) == logging.DEBUG
    assert level_of(2, "error", environ={}) == logging.ERROR  # --log-level beats -v
    assert level_of(0, "WARNING", environ={}) == logging.WARNING
    assert level_of(environ={"VMQOS_LOG_LEVEL": "Info"}) == logging.INFO
    assert level_of(2, environ={"VMQOS_LOG_LEVEL": "error"}) == logging.DEBUG  # an option beats the environment
    with pytest.raises(InvalidValue, match="VMQOS_LOG_LEVEL"):
        level_of(environ={"VMQOS_LOG_LEVEL": "loud"})


@pytest.mark.parametrize("args,level", [
    (["-v"], logging.INFO), (["-vv"], logging.DEBUG), (["--verbose", "--verbose"], logging.DEBUG),
    (["-vv", "--log-level", "warning"], logging.WARNING), (["--log-level", "ERROR", "-v"], logging.ERROR),
    (["--log-json"], logging.WARNING),
])
def test_the_options_set_the_level_of_the_vmqos_logger_only(args, level, vmqos_logger, capsys):
    root_before = logging.getLogger().level, list(logging.getLogger().handlers)
    assert main([*args, *PLAN]) == 0
    assert vmqos_logger.level == level and len(ours(vmqos_logger)) == 1
    assert isinstance(ours(vmqos_logger)[0], StderrHandler) and not vmqos_logger.propagate
    assert (logging.getLogger().level, logging.getLogger().handlers) == root_before
    assert logging.getLogger("pyroute2").getEffectiveLevel() == logging.getLogger().level


def test_configuring_again_replaces_the_earlier_handler(vmqos_logger, capsys):
    for args in (["-vv"], ["-v"], [], ["--log-json"], []):
        assert main([*args, *PLAN]) == 0
        assert len(ours(vmqos_logger)) == 1
    assert vmqos_logger.level == logging.WARNING and vmqos_logger.propagate
    assert isinstance(ours(vmqos_logger)[0], logging.NullHandler)


def test_the_environment_sets_the_level_of_a_daemon_started_without_options(vmqos_logger, monkeypatch, capsys):
    monkeypatch.setenv("VMQOS_LOG_LEVEL", "debug")
    assert main(PLAN) == 0
    assert vmqos_logger.level == logging.DEBUG
    logging.getLogger("vmqos.monitor.daemon").debug("from the environment")
    assert "DEBUG vmqos.monitor.daemon: from the environment" in capsys.readouterr().err
    monkeypatch.setenv("VMQOS_LOG_LEVEL", "loud")
    assert main(PLAN) != 0
    err = capsys.readouterr().err
    assert err.startswith("vmqos: error:") and "VMQOS_LOG_LEVEL" in err and "debug, info, warning, error" in err


def test_help_shows_the_options_with_examples():
    result = run("--help")
    assert result.returncode == 0
    for text in ("-v, --verbose", "--log-level LEVEL", "--log-json", "VMQOS_LOG_LEVEL", "vmqos -v apply -f host.yaml",
                 "vmqos --log-json monitor"):
        assert text in result.stdout


# -- nothing changes by default ---------------------------------------------------------------------


def test_a_default_run_prints_nothing_more_on_stderr():
    default = run(*PLAN)
    verbose = run("-vv", *PLAN)
    assert default.returncode == verbose.returncode == 0 and default.stdout == verbose.stdout
    assert default.stderr.strip() and not any(LOG_LINE.match(line) for line in default.stderr.splitlines())
    assert [line for line in verbose.stderr.splitlines() if not LOG_LINE.match(line)] == default.stderr.splitlines()
    assert run(*PLAN, env={"VMQOS_LOG_LEVEL": ""}).stderr == default.stderr


def test_by_default_even_a_warning_of_vmqos_prints_nothing(capsys):
    assert main(PLAN) == 0
    capsys.readouterr()
    logging.getLogger("vmqos.reconcile.execute").warning("port tap1 failed: already in the command's report")
    assert capsys.readouterr().err == ""


# -- JSON lines -------------------------------------------------------------------------------------


def test_log_json_lines_parse_with_their_keys(capsys):
    assert main(["--log-json", "--log-level", "debug", *PLAN]) == 0
    capsys.readouterr()
    log = logging.getLogger("vmqos.test")
    log.info("port %(port)s: %(ops)d operations", {"port": "tap1", "ops": 3})
    log.warning("port %s failed", "tap2", extra={"port": "tap2", "rolled_back": True})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("a bug")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert set(first) == {"ts", "level", "logger", "message", "port", "ops"}
    assert (first["level"], first["logger"], first["message"], first["ops"]) == ("info", "vmqos.test",
                                                                                  "port tap1: 3 operations", 3)
    ts = datetime.fromisoformat(first["ts"])
    assert ts.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - ts) < timedelta(minutes=1)
    assert (second["level"], second["message"], second["port"], second["rolled_back"]) == ("warning",
                                                                                           "port tap2 failed", "tap2", True)
    assert third["level"] == "error" and "ValueError: boom" in third["exception"]


def test_json_formatter_keeps_values_it_cannot_encode_as_text():
    record = logging.LogRecord("vmqos.x", logging.INFO, __file__, 1, "at %s", (Path("/x"),), None)
    record.where = Path("/y")
    assert json.loads(JsonFormatter().format(record))["where"] == "/y"


# -- the reconciler ---------------------------------------------------------------------------------


def _plan(port: str, rate: int):
    return plan_port(port, combine([QosSource("t", NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(rate))))]))


def _offline(monkeypatch, failed: dict[str, str], rolled_back: bool) -> Reconciler:
    """A reconciler whose kernel holds nothing and whose writes fail for `failed` (no socket opened)."""
    rec = Reconciler.__new__(Reconciler)
    rec.netns = "lab-host"
    monkeypatch.setattr(rec, "observe", lambda ports, **kw: Observed({p: [] for p in ports}, {}, None, set()),
                        raising=False)
    monkeypatch.setattr(rec, "_apply", lambda ops, meanwhile=None, progress=None: dict(failed), raising=False)
    monkeypatch.setattr(rec, "_rollback", lambda port, before: rolled_back, raising=False)
    return rec


def test_a_pass_whose_ports_are_trusted_logs_one_line_at_info(caplog):
    rec = Reconciler.__new__(Reconciler)
    rec.netns = None
    plans = {p: _plan(p, 10_000_000) for p in ("tap1", "tap2")}
    with caplog.at_level(logging.INFO, logger="vmqos"):
        results, record = rec.reconcile(plans, applied={p: pl.fingerprint for p, pl in plans.items()}, verify=False)
    assert all(r.skipped for r in results) and record == {}
    (line,) = [r for r in caplog.records if r.name == "vmqos.reconcile.execute"]
    assert line.levelno == logging.INFO
    assert re.fullmatch(r"reconcile pass in this namespace: 2 ports planned, 0 read back, 0 changed, 0 failed, "
                        r"2 skipped, \d+\.\d{3} s", line.getMessage())


def test_a_failed_port_is_a_warning_with_its_error_and_its_rollback(monkeypatch, caplog):
    error = "tc class add dev tap2 ...: RTNETLINK answers: Invalid argument"
    rec = _offline(monkeypatch, {"tap2": error}, rolled_back=True)
    plans = {p: _plan(p, 10_000_000) for p in ("tap1", "tap2")}
    with caplog.at_level(logging.INFO, logger="vmqos"):
        results, record = rec.reconcile(plans)
    assert [r.error for r in results] == [None, error] and set(record) == {"tap1"}
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, f"port tap2 failed: {error} (rolled back to what it held before)") in lines
    summary = [m for level, m in lines if level == logging.INFO]
    assert len(summary) == 1 and summary[0].startswith(
        "reconcile pass in netns lab-host: 2 ports planned, 2 read back, 1 changed, 1 failed, 0 skipped, ")
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert (warning.port, warning.rolled_back) == ("tap2", True)  # type: ignore[attr-defined]


def test_a_port_left_half_changed_says_so_and_the_phases_are_debug(monkeypatch, caplog):
    rec = _offline(monkeypatch, {"tap1": "nft: Could not process rule"}, rolled_back=False)
    with caplog.at_level(logging.DEBUG, logger="vmqos"):
        rec.reconcile({"tap1": _plan("tap1", 5_000_000)}, dry_run=False)
    messages = [r.getMessage() for r in caplog.records]
    assert any("port tap1 failed: nft: Could not process rule (NOT rolled back: `vmqos check`" in m for m in messages)
    assert any(m.startswith("reconcile: reading back the queues of 1 ports") for m in messages)
    assert any(re.fullmatch(r"port tap1: \d+ operations to match its plan", m) for m in messages)
    with caplog.at_level(logging.INFO, logger="vmqos"):
        caplog.clear()
        rec.reconcile({"tap1": _plan("tap1", 5_000_000)}, dry_run=True)
    assert caplog.records[-1].getMessage().endswith("s (dry run: nothing written)")
    assert caplog.records[-1].args["changed"] == 1  # type: ignore[index,call-overload]


# -- the monitor ------------------------------------------------------------------------------------


class _FakeSampler:
    """Counters as a flood from vm1 on tap1 would leave them: 80,000 packets/s of 64 bytes."""

    def __init__(self, netns: str | None = None, **options: object) -> None:  # options: as Sampler's
        self.passes = 0

    def sample(self, plans, instances=None) -> Sample:
        n = self.passes
        self.passes += 1
        flow = Flow(offered_bytes=n * 80_000 * 64, offered_packets=n * 80_000, delivered_bytes=n * 1000,
                    delivered_packets=n * 10, dropped_packets=n * 79_990)
        port = PortSample("tap1", {"egress": flow}, None, {}, PortLimits(egress_pps=1000), (instances or {}).get("tap1"))
        return Sample(float(n), datetime.now(UTC), {"tap1": port})

    def close(self) -> None:
        pass


@pytest.fixture
def monitor(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon, "Sampler", _FakeSampler)
    with Store(f"sqlite:///{tmp_path}/m.db") as store:
        config = daemon.MonitorConfig(interval_s=0.01, thresholds=Thresholds(for_seconds=0), cooldown_s=5)
        with daemon.Monitor(store, "lab-host", config) as mon:
            monkeypatch.setattr(mon, "fold_usage", lambda at=None: 0)
            monkeypatch.setattr(mon, "plans", lambda: ({}, {"tap1": "vm1"}))  # as the store would name it
            yield mon


def test_a_detection_and_its_quarantine_are_logged_with_port_instance_and_reason(monitor, monkeypatch, caplog):
    import vmqos.services.monitoring

    done = SimpleNamespace(ok=True, results=[])
    monkeypatch.setattr(vmqos.services.monitoring, "reconcile_ports", lambda *a, **kw: done)
    with caplog.at_level(logging.INFO, logger="vmqos"):
        monitor.step(now=0.0)
        monitor.step(now=1.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    detected = [r.getMessage() for r in warnings if "detected" in r.getMessage()]
    assert any(m.startswith("port tap1 (instance vm1) egress: packet_rate detected: ") and "80,000" in m
               for m in detected), detected
    (quarantined,) = [r for r in warnings if "quarantined" in r.getMessage()]
    assert quarantined.getMessage().startswith("port tap1 (instance vm1) quarantined: ")
    assert (quarantined.port, quarantined.instance, quarantined.action) == ("tap1", "vm1", "quarantine")  # type: ignore[attr-defined]


def test_a_failed_quarantine_is_a_warning(monitor, monkeypatch, caplog):
    import vmqos.services.monitoring

    failed = SimpleNamespace(ok=False, results=[SimpleNamespace(error="device tap1 does not exist")])
    monkeypatch.setattr(vmqos.services.monitoring, "reconcile_ports", lambda *a, **kw: failed)
    with caplog.at_level(logging.INFO, logger="vmqos"):
        monitor.step(now=0.0)
        report = monitor.step(now=1.0)
    assert report.errors
    assert "port tap1 (instance vm1): quarantine failed: device tap1 does not exist" in caplog.messages


def test_the_daemon_logs_start_stop_and_a_pass_slower_than_its_interval(monitor, monkeypatch, caplog):
    step = monitor.step

    def slow_step(now=None):
        time.sleep(0.05)
        return step(now)

    monkeypatch.setattr(monitor, "step", slow_step)
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="vmqos"):
        monitor.run(stop, lambda report: stop.set())
    messages = caplog.messages
    assert messages[0].startswith("monitor started in netns lab-host: interval 0.01 s, respond on "
                                  "(triggers packet_rate, small_packets, syn_flood, cool-down 5 s)")
    assert any(re.fullmatch(r"monitor pass took 0\.\d\d s, longer than its interval of 0\.01 s \(1 ports\): "
                            r"\d+ pass\(es\) left out, the rates are over 0\.\d+ s", m)
               for m in messages), messages
    assert messages[-1] == "monitor stopped after 1 passes"


def test_a_monitor_stopped_by_an_error_says_so(monitor, monkeypatch, caplog):
    from vmqos.core.errors import VmqosError

    def broken(now=None):
        raise VmqosError("reading the database sqlite:///m.db failed: disk I/O error")

    monkeypatch.setattr(monitor, "step", broken)
    with caplog.at_level(logging.INFO, logger="vmqos"), pytest.raises(VmqosError):
        monitor.run(threading.Event())
    last = caplog.records[-1]
    assert last.levelno == logging.ERROR and last.getMessage() == (
        "monitor stopped by VmqosError after 0 passes: reading the database sqlite:///m.db failed: disk I/O error")
