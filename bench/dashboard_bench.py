#!/usr/bin/env python3
"""Dashboard benchmark: a host page with 1,000 ports in headless Chromium, while the server pushes a frame a second.

Usage (from the repository root; no root, no kernel: the agent's reports are synthetic):

    .venv/bin/python bench/dashboard_bench.py --ports 10 1000 --seconds 20 --runs 3

One `vmqos server` (uvicorn, one worker) on a throw-away SQLite database holding N native ports on one
host (`PUT /v1/hosts/{host}/ports/{device}` rows, 10 Mbit/s egress each). A reporter thread plays the
host's agent: it registers, then posts one report a second with every port's status and a sample of
made-up rates (so every row of the page changes every second). Debian's Chromium (playwright, never a
downloaded browser) logs in as admin and opens the host page (#/host/bench-host), which renders one row
per port and direction (2 N rows) and takes the server's pushed frames over its one SSE stream.

Measured per run:
- first render, cold: from the navigation (a new page with the session cookie) to the first frame's rows
  in the DOM and a paint after it (performance.now() in the page, whose origin is the navigation);
- first render, warm: from the route change (the page already loaded) to the same;
- update: the time the page's script spends applying one pushed frame (view.update), p50 and p95;
- frame time while updating: the intervals between animation frames over --seconds (ideal 16.7 ms at
  60 Hz), p50, p95 and max, and the long tasks (> 50 ms) the browser reported;
- the server's side: GET /dashboard/api/hosts/{host} (the frame the stream builds each second), p50.
The smallest --ports is the baseline of the same run. Median of --runs runs. Prints a Markdown table and
a JSON document (also written to --json if given).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from vmqos.core.formats.hostfile import policy_from_data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_bench import start_server  # noqa: E402  (one way to start the server, shared with the API bench)
from vmqos.services import fleet_desired, identity
from vmqos.store import Store

ADMIN_PASSWORD = "bench-secret"
AGENT_PASSWORD = "bench-agent"
HOST = "bench-host"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _devices(count: int) -> list[str]:
    return [f"tapbench{i:05d}" for i in range(count)]


def _populate(db: str, count: int) -> None:
    """admin, the host's agent account, and N native rows on the host."""
    from vmqos.services import identity_admin as admin
    from vmqos.services.identity_admin import OPERATOR
    from vmqos.services.identity_input import read_project, read_user

    with Store(db) as store:
        identity.bootstrap(store, ADMIN_PASSWORD)
        project = admin.create_project(store, OPERATOR, read_project({"project": {"name": "service"}}, create=True))
        user = admin.create_user(store, OPERATOR, read_user({"user": {"name": "agent-bench", "password": AGENT_PASSWORD,
                                                                      "vmqos_host": HOST}}, create=True))
        admin.grant(store, OPERATOR, project.id, user.id, admin.resolve_role(store, "service").id)
        for device in _devices(count):
            fleet_desired.set_port(store, HOST, device, policy_from_data(f"native:{device}",
                                                                         {"egress": {"rate": "10mbit"}}))


def _token(http: httpx.Client, user: str, password: str, project: str) -> dict[str, str]:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}
    answer = http.post("/v3/auth/tokens", json=body)
    answer.raise_for_status()
    return {"X-Auth-Token": answer.headers["X-Subject-Token"]}


class Reporter(threading.Thread):
    """The host's agent, as far as the server can tell: a report with every port a second."""

    def __init__(self, url: str, count: int) -> None:
        super().__init__(name="vq-bench-reporter", daemon=True)
        self.url, self.devices, self.stop = url, _devices(count), threading.Event()
        self.rng = random.Random(1)
        self.posted: list[float] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            agent = _token(http, "agent-bench", AGENT_PASSWORD, "service")
            revision = http.put(f"/v1/hosts/{HOST}", headers=agent, json={
                "agent_version": "bench", "netns": None, "inventory": {}}).json()["host"]["desired_revision"]
            while not self.stop.is_set():
                at = dt.datetime.now(dt.UTC).isoformat()
                samples = []
                for device in self.devices:
                    offered = self.rng.randrange(0, 20_000_000)
                    delivered = min(offered, 10_000_000)
                    samples.append({"device": device, "at": at, "interval_s": 1.0, "egress": {
                        "offered_bps": offered, "delivered_bps": delivered, "dropped_bps": offered - delivered,
                        "offered_pps": offered // 12_000, "delivered_pps": delivered // 12_000,
                        "dropped_pps": (offered - delivered) // 12_000},
                        "ingress": {"offered_bps": offered // 20, "delivered_bps": offered // 20}})
                started = time.monotonic()
                http.post(f"/v1/hosts/{HOST}/reports", headers=agent, json={
                    "applied_revision": revision,
                    "ports": [{"device": d, "revision": revision, "status": "in_sync"} for d in self.devices],
                    "samples": samples}).raise_for_status()
                self.posted.append(time.monotonic() - started)
                self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


MEASURE_FRAMES = """async (seconds) => {
  const gaps = [], updates = [], longTasks = [];
  const observer = new PerformanceObserver((list) => { for (const e of list.getEntries()) longTasks.push(e.duration); });
  try { observer.observe({ type: "longtask", buffered: false }); } catch (e) { /* not offered */ }
  const seen = window.vmqos.frames;
  let last = performance.now(), lastFrame = window.vmqos.frames;
  const end = last + seconds * 1000;
  await new Promise((done) => {
    function tick(now) {
      gaps.push(now - last); last = now;
      if (window.vmqos.frames !== lastFrame) { lastFrame = window.vmqos.frames; updates.push(window.vmqos.lastFrameMs); }
      if (now < end) requestAnimationFrame(tick); else done();
    }
    requestAnimationFrame(tick);
  });
  observer.disconnect();
  return { gaps, updates, longTasks, frames: window.vmqos.frames - seen };
}"""

FIRST_RENDER = """async (rows) => {
  const start = performance.now();
  location.hash = "#/host/bench-host";
  while ((window.vmqos.renderedRows || 0) < rows) await new Promise((r) => requestAnimationFrame(r));
  await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - start;
}"""

COLD_RENDER = """async (rows) => {
  while ((window.vmqos.renderedRows || 0) < rows) await new Promise((r) => requestAnimationFrame(r));
  await new Promise((r) => requestAnimationFrame(r));
  return performance.now();
}"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_once(count: int, seconds: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="vq-dashbench-") as tmp:
        db = f"sqlite:///{tmp}/vmqos.db"
        _populate(db, count)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(db, port, Path(tmp) / "server.log", wait_s=60)
        reporter = Reporter(url, count)
        try:
            reporter.start()
            while len(reporter.posted) < 2:
                time.sleep(0.1)
            with httpx.Client(base_url=url, timeout=30) as http:
                admin = _token(http, "admin", ADMIN_PASSWORD, "admin")
                server_ms = []
                for _ in range(10):
                    started = time.perf_counter()
                    http.get(f"/dashboard/api/hosts/{HOST}", headers=admin).raise_for_status()
                    server_ms.append((time.perf_counter() - started) * 1000)
            rows = 2 * count
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    context = browser.new_context(viewport={"width": 1500, "height": 1000})
                    page = context.new_page()
                    page.set_default_timeout(60_000)
                    page.goto(url + "/")
                    page.fill("#login input[name=username]", "admin")
                    page.fill("#login input[name=password]", ADMIN_PASSWORD)
                    page.fill("#login input[name=project]", "admin")
                    page.click("#login button[type=submit]")
                    page.wait_for_selector("#hosts")
                    warm = page.evaluate(FIRST_RENDER, rows)
                    cold_page = context.new_page()
                    cold_page.set_default_timeout(60_000)
                    cold_page.goto(f"{url}/#/host/{HOST}")
                    cold = cold_page.evaluate(COLD_RENDER, rows)
                    cold_page.close()
                    measured = page.evaluate(MEASURE_FRAMES, seconds)
                finally:
                    browser.close()
        finally:
            reporter.stop.set()
            reporter.join(timeout=10)
            proc.terminate()
            proc.wait(timeout=10)
    gaps, updates = measured["gaps"][1:], [u for u in measured["updates"] if u is not None]
    return {"ports": count, "rows": rows, "first_render_cold_ms": cold, "first_render_warm_ms": warm,
            "update_p50_ms": _pct(updates, 0.5), "update_p95_ms": _pct(updates, 0.95),
            "frame_p50_ms": _pct(gaps, 0.5), "frame_p95_ms": _pct(gaps, 0.95), "frame_max_ms": max(gaps),
            "long_tasks": len(measured["longTasks"]), "long_task_ms": sum(measured["longTasks"]),
            "frames_pushed": measured["frames"], "server_view_p50_ms": statistics.median(server_ms),
            "report_post_p50_ms": statistics.median(reporter.posted) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for count in args.ports:
        runs = [run_once(count, args.seconds) for _ in range(args.runs)]
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in ("ports", "rows")}
        results.append({"ports": count, "rows": runs[0]["rows"], **median, "runs": runs})
    doc = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
           "cpus": os.cpu_count(), "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True,
                                                               text=True).stdout.strip(),
           "seconds": args.seconds, "runs": args.runs, "results": results}
    print("| ports (rows) | first render cold | first render warm | update p50 / p95 | frame p50 / p95 / max | "
          "long tasks (total) | server view p50 | report POST p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['ports']:,} ({r['rows']:,}) | {r['first_render_cold_ms']:.0f} ms | {r['first_render_warm_ms']:.0f} ms "
              f"| {r['update_p50_ms']:.1f} / {r['update_p95_ms']:.1f} ms | {r['frame_p50_ms']:.1f} / "
              f"{r['frame_p95_ms']:.1f} / {r['frame_max_ms']:.0f} ms | {r['long_tasks']:.0f} ({r['long_task_ms']:.0f} ms) "
              f"| {r['server_view_p50_ms']:.0f} ms | {r['report_post_p50_ms']:.0f} ms |")
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
