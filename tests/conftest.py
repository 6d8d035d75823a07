"""Shared test settings: hypothesis profiles sized for CI on two cores; matplotlib's cache kept in tmp;
the throw-away PostgreSQL cluster and the two back ends' fixtures (tests/pgcluster.py)."""

import os
import shutil
import tempfile
import time

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pgcluster"]  # postgres_cluster, pg_url, db_url

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

# The longest files first (server tier: minutes each under the real `openstack` CLI). Under
# `pytest -n auto --dist loadfile` each worker takes whole files in the queue's order, so a long file
# queued last is a tail the other worker waits out idle; started first, the short files fill in
# around it. xdist's own order is by the number of tests a file has, which put the fuzz file (then two
# tests of 30 s; one of ~45 s since it sends each case to both back ends) last: `make test` turns it off
# (--no-loadscope-reorder), so this order is the queue's. Measured with --durations (2026-12-07); a renamed file only loses its place. Under xdist the
# summary prints each file's seconds and when each worker ended (below): the data to keep this list true.
_LONGEST_FIRST = (
    # the fresh-clone CI of 2026-12-07 18:33 UTC, its 30 longest files by their seconds (106 s down to 15 s)
    "tests/server/test_fuzz.py",
    "tests/kernel/test_agent_kill_1000.py",
    "tests/kernel/test_cni.py",
    "tests/server/test_openstack_cli.py",
    "tests/server/test_identity_cli.py",
    "tests/server/test_networks_ports.py",
    "tests/server/test_native_cli.py",
    "tests/kernel/test_fleet.py",
    "tests/kernel/test_unprivileged.py",
    "tests/kernel/test_all_in_one.py",
    "tests/core/test_cli_instances.py",
    "tests/server/test_osc_forkserver.py",
    "tests/server/test_cinder_qos.py",
    "tests/kernel/test_crash_and_writers.py",
    "tests/core/test_store.py",
    "tests/core/test_contracts.py",
    "tests/server/test_fleet_api.py",
    "tests/server/test_neutron_rules_cli.py",
    "tests/server/test_neutron_rbac_cli.py",
    "tests/server/test_nova_flavors.py",
    "tests/server/test_fleet_cli.py",
    "tests/kernel/test_agent.py",
    "tests/server/test_external_keystone.py",
    "tests/kernel/test_cni_server.py",
    "tests/kernel/test_fleet_uplink.py",
    "tests/kernel/test_tbf_leaf_drops.py",
    "tests/server/test_fleet_desired.py",
    "tests/server/test_tls.py",
    "tests/server/test_api.py",
    "tests/core/test_concurrent_writers.py",
    # long in earlier runs, shorter since
    "tests/server/test_native_objects.py",
    "tests/server/test_policy_ports.py",
    "tests/server/test_uplink_api.py",
    "tests/server/test_fleet_fanout.py",
    "tests/kernel/test_fleet_policies.py",
    "tests/server/test_fleet_fastpoll.py",
)


def pytest_collection_modifyitems(config, items):
    """Under xdist only: the longest files first, every file's own order kept (the sort is stable)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: place for place, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


_KERNEL_TIER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel") + os.sep


def pytest_itemcollected(item):
    """Every test under tests/kernel gets the mark kernel_tier, by its path: `make test` runs the kernel tier's
    `rates` tests in the same pytest run as the traffic, virt and browser tiers (-m "rates or not kernel_tier"),
    a selection by directory that no file's own marks can get wrong. Set during collection: before -m selects."""
    if str(item.path).startswith(_KERNEL_TIER):
        item.add_marker("kernel_tier")


# What keeps _LONGEST_FIRST true: under xdist, the controller sums each file's durations and notes when
# each worker's last test ended; the summary prints both, so that a run shows its idle tail (the gap
# between the workers' ends) and the files' current order of length.
_WORKERS: dict[str, float] = {}  # worker -> seconds from the session's start to its last report
_FILES: dict[str, float] = {}  # file -> its tests' setup + call + teardown seconds
_STARTED = [time.monotonic()]


def pytest_sessionstart(session):
    _STARTED[0] = time.monotonic()


def pytest_runtest_logreport(report):
    node = getattr(report, "node", None)  # set on the xdist controller's copy of a worker's report
    if node is None:
        return
    _WORKERS[node.gateway.id] = time.monotonic() - _STARTED[0]
    if getattr(report, "context", None) is not None:  # a subtest's report (schemathesis' operations): its
        return                                         # seconds are inside its test's call already
    path = report.nodeid.split("::", 1)[0]
    _FILES[path] = _FILES.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _WORKERS:
        return
    terminalreporter.write_sep("-", "xdist: when each worker ended (the idle tail), the longest files")
    ends = ", ".join(f"{worker} {end:.0f} s" for worker, end in sorted(_WORKERS.items()))
    terminalreporter.write_line(f"last test ended: {ends}; tail {max(_WORKERS.values()) - min(_WORKERS.values()):.0f} s")
    longest = sorted(_FILES.items(), key=lambda kv: -kv[1])[:30]
    terminalreporter.write_line("; ".join(f"{path} {seconds:.0f} s" for path, seconds in longest))


@pytest.fixture(scope="session", autouse=True)
def matplotlib_cache():
    """Plots (vmqos verify) build a font cache on first use: in a directory of the session, not in ~."""
    if "MPLCONFIGDIR" in os.environ:
        yield
        return
    path = tempfile.mkdtemp(prefix="vq-mpl-")
    os.environ["MPLCONFIGDIR"] = path
    try:
        yield
    finally:
        del os.environ["MPLCONFIGDIR"]
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes():
    """Passwords the tests' own process hashes (the fixtures' admin and users, in-process API tests) are
    argon2id with the smallest cost (1 pass over 8 KiB) instead of the default (3 passes over 64 MiB, 4 lanes).

    Why: a hash carries its parameters, and a verification costs what its hash's parameters say. With the
    default, every login - each `openstack` CLI call, each `vmqos ... --server` call gets its own token -
    costs its server ~0.24 s of CPU (measured 2026-12-07 on the CI machine), a few hundred times in
    `make test`'s first phase. No test is about argon2's cost: they prove who may log in and what a token
    may do, and the code path (argon2id, the dummy hash of unknown and locked users, lockouts) is the same.
    Users a server subprocess creates itself (`openstack user create`, `vmqos server init` run as a
    command) keep the default, as in production."""
    from argon2 import PasswordHasher

    from vmqos.services import identity

    saved = identity._HASHER
    identity._HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    identity._dummy_hash.cache_clear()
    try:
        yield
    finally:
        identity._HASHER = saved
        identity._dummy_hash.cache_clear()


_CACHES = {".pytest_cache", ".hypothesis", "__pycache__", ".mypy_cache"}


@pytest.fixture(autouse=True)
def nothing_left_in_the_working_directory():
    """A test writes into its tmp_path, never where it was started (a plot, a database...)."""
    before = set(os.listdir("."))
    yield
    left = set(os.listdir(".")) - before - _CACHES
    assert not left, f"the test left {sorted(left)} in {os.getcwd()}"
