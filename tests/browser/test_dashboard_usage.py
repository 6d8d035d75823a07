"""Browser tier without a kernel: the port page draws the per-IP usage an agent reported.

The server runs in process (uvicorn in a thread, SQLite), the agent's report is posted by the test, and
Debian's headless Chromium opens the port page: the table holds a row per address pair with this hour's
and today's bytes in each direction, and a port with no usage says so. Cost: a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.inproc import PASSWORD, add_agent, headers, made, policy, port
from vmqos.api.app import create_app
from vmqos.services import identity

from .test_dashboard import CHROMIUM, CHROMIUM_ARGS, log_in


@contextmanager
def signed_in_page(sync_api: Any, url: str, user: str, project: str) -> Iterator[Any]:
    """Debian's headless Chromium with a page logged in to the dashboard at `url`; closed after."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            log_in(page, url, user, PASSWORD, project)
            yield page
        finally:
            browser.close()

pytestmark = pytest.mark.browser


@pytest.fixture()
def sync_api() -> Any:
    """Playwright's sync API, or a skip that says how to get Debian's Chromium."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}: run `make test`, which installs it")
    return pytest.importorskip("playwright.sync_api")


def two_bound_ports(api: httpx.Client) -> list[str]:
    """alice's two ports ("a", "b") under a 3 Mbit/s policy, bound to host h1: their tap names."""
    admin, alice = headers(api), headers(api, "alice", "demo")  # type: ignore[arg-type]
    p3 = policy(api, alice, "p3", 3000)  # type: ignore[arg-type]
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=alice), "network")
    taps = []
    for name in ("a", "b"):
        found = port(api, alice, net["id"], name, qos_policy_id=p3)  # type: ignore[arg-type]
        api.put(f"/v2.0/ports/{found['id']}", json={"port": {"binding:host_id": "h1"}},
                headers=admin).raise_for_status()
        taps.append("tap" + found["id"][:11])
    return taps


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    uvicorn = pytest.importorskip("uvicorn")
    db = f"sqlite:///{tmp_path / 'vmqos.db'}"
    with identity.open_store(db) as store:
        identity.bootstrap(store, PASSWORD)
        identity.add_user(store, "alice", PASSWORD, "demo", "member")
        add_agent(store, "agent-h1", "h1")
    app = create_app(db)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    bound = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _lines(*entries: tuple[str, str, str, int]) -> list[dict[str, Any]]:
    starts = {"hour": "2026-12-07T01:00:00Z", "day": "2026-12-07T00:00:00Z"}
    return [{"direction": d, "local_ip": "10.0.0.5", "remote_ip": r, "granularity": g, "period_start": starts[g],
             "bytes": b, "packets": max(1, b // 1500)} for d, r, g, b in entries]


def test_the_port_page_shows_the_reported_usage_per_address_pair(server: str, sync_api: Any):
    with httpx.Client(base_url=server) as api:
        taps = two_bound_ports(api)
        agent = headers(api, "agent-h1", "service")  # type: ignore[arg-type]
        revision = api.put("/v1/hosts/h1", json={"agent_version": "0.1.0"}, headers=agent).json()["host"][
            "desired_revision"]
        usage = {"device": taps[0], "at": "2026-12-07T01:30:00Z",
                 "lines": _lines(("ingress", "192.0.2.7", "hour", 3_000_000), ("ingress", "192.0.2.7", "day", 8_000_000),
                                 ("egress", "192.0.2.7", "day", 2_500), ("egress", "198.51.100.9", "day", 12_000_000))}
        report = {"applied_revision": revision, "usage": [usage],
                  "ports": [{"device": t, "revision": revision, "status": "in_sync"} for t in taps],
                  "samples": [{"device": t, "at": "2026-12-07T01:30:00Z", "interval_s": 1.0} for t in taps]}
        api.post("/v1/hosts/h1/reports", json=report, headers=agent).raise_for_status()
    with signed_in_page(sync_api, server, "alice", "demo") as page:
        page.goto(f"{server}/#/port/h1/{taps[0]}")
        page.wait_for_selector("#usage-table tbody tr")
        rows = page.eval_on_selector_all(
            "#usage-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        assert rows == [["10.0.0.5", "198.51.100.9", "—", "—", "—", "12.0 MB"],  # today's biggest first
                        ["10.0.0.5", "192.0.2.7", "3.00 MB", "—", "8.00 MB", "2.50 kB"]]
        page.goto(f"{server}/#/port/h1/{taps[1]}")
        page.wait_for_selector("#port-usage #usage-note:has-text('No per-IP usage reported')")
