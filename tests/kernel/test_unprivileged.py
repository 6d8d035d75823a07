"""Issue 13 item 16: vmqos run without privileges, against a database it may read but not write.

Dropping privileges needs root (the kernel tier's rule). The command runs as `nobody` when this
Python is reachable by nobody, otherwise as uid 0 with every capability dropped and the
`noroot` securebits set (the virtualenv's interpreter may live under /root, mode 700): either
way it has no CAP_NET_ADMIN, no CAP_SYS_ADMIN and no CAP_DAC_OVERRIDE, and the database and
its directory belong to nobody with no write bit. Read-only commands then work; commands that
must read the kernel say in one line what needs root; never `: failed to open netns`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Iterator

import pytest

import vmqos
from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.store import Store
from vmqos.store.monitor import add_event

from .conftest import _missing, require

SRC = str(Path(vmqos.__file__).resolve().parent.parent)
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NO_CAPS = ["setpriv", "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
           "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]
READ_ONLY = (["events"], ["quarantine", "list"], ["usage", "--no-collect"], ["volume", "list"])
KERNEL = (["check"], ["port", "show", "tap-vq1"])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "VMQOS_DB": ""}


@pytest.fixture(scope="module", params=["nobody", "no-capabilities"])
def drop(request) -> list[str]:
    require("kernel", _missing() or (None if os.path.exists("/usr/bin/setpriv") else "needs setpriv (util-linux)"))
    if request.param == "no-capabilities":
        return NO_CAPS
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import vmqos"], env=_env(), capture_output=True,
                           timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run {sys.executable} here (the no-capabilities run stands in)")
    return NOBODY


def make_readable_db(scopes: list[str], writer_open: bool) -> Iterator[str]:
    """A database with one port and one event, that nobody may read but not write (nor its directory);
    `writer_open`: a root process holds it open meanwhile (its WAL index exists); else none does.
    Not under tmp_path: pytest's base directory is root's, mode 700."""
    home = Path(tempfile.mkdtemp(prefix="vqdb-"))
    url = f"sqlite:///{home}/vmqos.db"
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10_000_000)))
    writer = None
    try:
        with Store(url) as store:
            state = HostState(instances={"vq1": InstanceSpec("vq1", ports=(PortSpec("tap-vq1", limits=qos),))})
            for scope in scopes:
                store.save(scope, state)
                add_event(store, scope, datetime.now(UTC), "tap-vq1", "flood", "a test event")
        if writer_open:
            writer = Store(url)
            writer.load("")  # its pooled connection keeps the -wal and -shm files
        for path in home.iterdir():
            os.chown(path, 65534, 65534)
            path.chmod(0o444)
        os.chown(home, 65534, 65534)
        home.chmod(0o555)
        yield url
    finally:
        if writer is not None:
            writer.close()
        home.chmod(0o755)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(params=["idle", "writer-open"])
def readable_db(request) -> Iterator[str]:
    yield from make_readable_db([""], request.param == "writer-open")


@pytest.fixture
def readable_db_of(netns) -> Iterator[str]:
    """The database with the port in this namespace and in `netns`."""
    yield from make_readable_db(["", netns], False)


def vmqos_cli(prefix: list[str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "vmqos.cli.main", *args], env=_env(),
                          capture_output=True, text=True, timeout=60)


def test_read_only_commands_work_without_write_access(drop, readable_db) -> None:
    for args in READ_ONLY:
        done = vmqos_cli(drop, [*args, "--db", readable_db, "--json"])
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == ""
        if args == ["events"]:
            assert "a test event" in done.stdout


def test_kernel_commands_say_what_needs_root(drop, readable_db_of, netns) -> None:
    readable_db = readable_db_of
    for args in KERNEL:
        # another namespace: entering it needs CAP_SYS_ADMIN
        done = vmqos_cli(drop, [*args, "--netns", netns, "--db", readable_db])
        assert done.returncode == 77, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines == [f"vmqos: error: opening network namespace {netns} needs root (CAP_SYS_ADMIN): run vmqos "
                         "as root (e.g. with sudo), or give it these capabilities (systemd: AmbientCapabilities=)"]
        # its own namespace (the test's, entered as root before dropping): nftables needs CAP_NET_ADMIN
        done = vmqos_cli(["ip", "netns", "exec", netns, *drop], [*args, "--db", readable_db])
        assert done.returncode == 77, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs root (CAP_NET_ADMIN)" in lines[0], lines
        assert ": failed to open netns" not in done.stderr and "readonly database" not in done.stderr
