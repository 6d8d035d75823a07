"""Trust (issue 13 item 8): a running monitor notices within one pass that its database file was
deleted or replaced, says so in one line and stops, instead of writing where nobody reads."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

import pytest

from vmqos.core.analysis.samples import Sample
from vmqos.core.errors import VmqosError
from vmqos.monitor import daemon
from vmqos.monitor.daemon import Monitor, MonitorConfig
from vmqos.store import Store
from vmqos.store.monitor import add_event


class _NoKernel:
    """The sampler without a kernel: every pass sees no ports."""

    def __init__(self, netns=None, **options) -> None:  # options: as Sampler takes them (nft_reads)
        self.passes = 0

    def sample(self, plans, instances=None) -> Sample:
        self.passes += 1
        return Sample(float(self.passes), datetime.now(UTC))

    def close(self) -> None:
        pass


@pytest.fixture
def monitor(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon, "Sampler", _NoKernel)
    path = tmp_path / "vmqos.db"
    with Store(f"sqlite:///{path}") as store, Monitor(store, None, MonitorConfig(interval_s=0.01)) as mon:
        yield mon, path


def _gone(exc: BaseException, path) -> None:
    message = str(exc)
    assert isinstance(exc, VmqosError) and str(path) in message and "\n" not in message


def test_a_deleted_database_stops_the_monitor_at_the_next_pass(monitor):
    mon, path = monitor
    mon.step()
    os.unlink(path)
    with pytest.raises(VmqosError) as caught:
        mon.step()
    _gone(caught.value, path)
    assert "was deleted" in str(caught.value)


def test_a_replaced_database_stops_the_monitor(monitor):
    mon, path = monitor
    mon.step()
    os.rename(path, f"{path}.old")
    path.write_bytes(b"")
    with pytest.raises(VmqosError, match="was replaced") as caught:
        mon.step()
    _gone(caught.value, path)


def test_the_run_loop_stops_within_one_pass_and_no_write_reaches_the_unlinked_file(monitor):
    mon, path = monitor
    stop = threading.Event()
    passes = []

    def on_step(report) -> None:
        passes.append(report)
        if len(passes) == 2:
            os.unlink(path)
        if len(passes) >= 5:  # bounded: a monitor that does not notice is stopped here and fails below
            stop.set()

    with pytest.raises(VmqosError, match="was deleted"):
        mon.run(stop, on_step)
    assert len(passes) == 2  # the pass after the deletion is the one that stopped
    with pytest.raises(VmqosError, match="was deleted"):  # and a write through the store is refused too
        add_event(mon.store, "", datetime.now(UTC), "tap0", "detected", "x")
