"""Fixtures of the cgroup tests: a vq5 group, a loop device on a file in tmp_path, a vq5 lab."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.kernel.conftest import require


def missing_cgroups() -> str | None:
    if os.geteuid() != 0:
        return "needs root (cgroups, loop devices, namespaces)"
    for tool in ("ip", "losetup", "dd", "taskset"):
        if shutil.which(tool) is None:
            return f"needs {tool}: run `make deps`"
    from vmqos.drivers.cgroup import host_layout

    layout = host_layout()
    for role in ("cpu", "cpuacct", "io"):
        if layout.hierarchy(role) is None:
            return f"this kernel has no cgroup hierarchy for {role}"
    return None


@pytest.fixture
def group():
    require("kernel", missing_cgroups())
    from vmqos.drivers.cgroup import Group, host_layout

    g = Group(host_layout(), f"vq5k{uuid.uuid4().hex[:8]}")
    g.create()
    try:
        yield g
    finally:
        g.remove(kill=True)


@pytest.fixture
def loop_device(tmp_path):
    require("kernel", missing_cgroups())
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(256 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def lab5(tmp_path):
    """A lab vq5<hex> with two instances and a store in tmp_path; removed at the end."""
    require("kernel", missing_cgroups())
    from vmqos.lab import lab_down, lab_up
    from vmqos.store import Store

    name = f"vq5{uuid.uuid4().hex[:5]}"
    try:
        lab_up(name, 2)
        with Store(f"sqlite:///{tmp_path}/store.db") as store:
            yield name, store
    finally:
        lab_down(name)
