"""Shared test settings: hypothesis profiles sized for CI on two cores; matplotlib's cache kept in tmp;
the throw-away PostgreSQL cluster and the two back ends' fixtures (tests/pgcluster.py)."""

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pgcluster"]  # postgres_cluster, pg_url, db_url

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


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


_CACHES = {".pytest_cache", ".hypothesis", "__pycache__", ".mypy_cache"}


@pytest.fixture(autouse=True)
def nothing_left_in_the_working_directory():
    """A test writes into its tmp_path, never where it was started (a plot, a database...)."""
    before = set(os.listdir("."))
    yield
    left = set(os.listdir(".")) - before - _CACHES
    assert not left, f"the test left {sorted(left)} in {os.getcwd()}"
