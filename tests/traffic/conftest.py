"""Traffic tier: one lab `vqt<4 hex>` with 3 instances for the session, removed even on failure.

Each test gets a fresh desired-state store in its tmp_path and the ports it limited are cleared
in a finalizer, so a failing test leaves no limit behind for the next one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field

import pytest

from tests.kernel.conftest import require
from vmqos.core.desired.ports import PortChange
from vmqos.lab import Lab, lab_down, lab_up
from vmqos.services.ports import clear_port, set_port
from vmqos.services.results import ApplyReport
from vmqos.services.serialize import to_json
from vmqos.store import Store

TOOLS = ("ip", "tc", "nft", "iperf3", "hping3", "tcpdump", "ping", "ss")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"needs {tool}: run `make test`, which installs it"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def _namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def _remove_leftovers(name: str) -> None:
    """Whatever lab_down could not remove: the name is random, so its prefix is this session's alone."""
    for ns in _namespaces():
        if ns.startswith(f"{name}-"):
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                subprocess.run(["kill", "-9", pid], check=False)
            subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture(scope="session")
def lab():
    require("traffic", _missing())
    name = f"vqt{uuid.uuid4().hex[:4]}"
    try:
        status = lab_up(name, 3)
        assert not status.problems, status.problems
        yield Lab(name)
    finally:
        try:
            lab_down(name)  # kills every process left in its namespaces, then deletes them
        finally:
            _remove_leftovers(name)


@dataclass
class Ports:
    """set_port/clear_port on the lab's host namespace with this test's store; remembers what to clear."""

    store: Store
    netns: str
    touched: list[str] = field(default_factory=list)

    def set(self, device: str, change: PortChange) -> ApplyReport:
        if device not in self.touched:
            self.touched.append(device)
        report = set_port(self.store, self.netns, device, change)
        assert report is not None and report.ok, to_json(report) if report else None
        return report

    def clear(self, device: str) -> ApplyReport:
        report = clear_port(self.store, self.netns, device)
        assert report.ok, to_json(report)
        return report


@pytest.fixture
def ports(lab, tmp_path):
    store = Store(f"sqlite:///{tmp_path}/vq.db")
    helper = Ports(store, lab.host_ns)
    try:
        yield helper
    finally:
        errors = []
        try:
            for device in reversed(helper.touched):
                try:
                    report = clear_port(store, lab.host_ns, device)
                    if not report.ok:
                        errors.append(to_json(report))
                except Exception as exc:  # keep clearing the others
                    errors.append(f"{device}: {exc}")
        finally:
            store.close()
        assert not errors, f"clearing the ports failed: {errors}"
