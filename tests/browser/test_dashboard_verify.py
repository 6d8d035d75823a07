"""Browser tier without a kernel: the port page lists the verify runs kept on the server and shows a plot.

The server runs in process (uvicorn in a thread, SQLite, the fixture of test_dashboard_usage), the run is
uploaded by the test as `vmqos verify --server` would, and Debian's headless Chromium opens the port
page as alice: a row per run (newest first) with its verdict and achieved vs limit, and the plot's <img>
loaded through the session cookie (naturalWidth is the PNG's width). Cost: a few seconds.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.inproc import headers
from tests.server.test_verify_runs_api import png, run_body

from .test_dashboard_usage import server, sync_api  # noqa: F401  (the in-process server and the browser's API)
from .test_dashboard_usage import signed_in_page, two_bound_ports

pytestmark = pytest.mark.browser


def test_the_port_page_lists_the_verify_runs_and_loads_the_plot(server: str, sync_api: Any):  # noqa: F811
    with httpx.Client(base_url=server) as api:
        tap, bare = two_bound_ports(api)
        agent = headers(api, "agent-h1", "service")  # type: ignore[arg-type]
        base = f"/v1/hosts/h1/ports/{tap}/verify-runs"
        api.post(base, json=run_body("2026-12-07T01:00:00Z", plot=png(64, 48)), headers=agent).raise_for_status()
        api.post(base, json=run_body("2026-12-07T01:10:00Z", ok=False, direction="ingress"),
                 headers=agent).raise_for_status()
    with signed_in_page(sync_api, server, "alice", "demo") as page:
        page.goto(f"{server}/#/port/h1/{tap}")
        page.wait_for_selector("#verify-table tbody tr")
        rows = page.eval_on_selector_all(
            "#verify-table tbody tr", "rows => rows.map(r => [...r.cells].slice(1).map(c => c.textContent))")
        assert rows == [["ingress tcp", "over the limit", "3.60 Mbit/s", "3.00 Mbit/s", "+20.0 %", "no plot"],
                        ["egress tcp", "pass", "2.99 Mbit/s", "3.00 Mbit/s", "-0.3 %", "plot"]]
        page.wait_for_function("() => { const i = document.querySelector('#verify-plot'); "
                               "return i && i.complete && i.naturalWidth > 0; }")
        assert page.eval_on_selector("#verify-plot", "i => [i.naturalWidth, i.naturalHeight]") == [64, 48]
        page.goto(f"{server}/#/port/h1/{bare}")  # a port never verified says how to
        page.wait_for_selector("#verify-runs #verify-note:has-text('No verify run kept')")
        assert page.query_selector("#verify-plot") is None
