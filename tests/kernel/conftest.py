"""Kernel tier: a throwaway network namespace per test, removed in a finalizer even on failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            return f"needs {tool}: run `make test`, which installs it"
    return None


def require(tier: str, reason: str | None) -> None:
    """Skip a test that cannot run here, but fail it in CI, where a missing tool is a bug of `make`."""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{tier} tier cannot run in CI: {reason}")
        pytest.skip(reason)


def _made_netns():
    name = f"vqk{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def netns():
    require("kernel", _missing())
    yield from _made_netns()


@pytest.fixture
def peer_netns(netns):
    """A second namespace beside `netns` (an instance's, a guest's), deleted after the test."""
    yield from _made_netns()


@pytest.fixture
def fleet_name():
    """A lab fleet's name (`vq` + 5 hex); the fleet, whatever it holds, is brought down after the test."""
    from vmqos.lab import fleet as fleets

    require("kernel", _missing())
    name = f"vq{uuid.uuid4().hex[:5]}"
    try:
        yield name
    finally:
        fleets.fleet_down(name)


def sh(ns: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run a rendered command inside the namespace, as an operator would paste it."""
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], capture_output=True, text=True,
                          timeout=30)
