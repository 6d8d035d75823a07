#!/usr/bin/env python3
"""API benchmark: what the HTTP framework costs on top of the use cases it calls.

Usage (from the repository root; no root needed):

    .venv/bin/python bench/api_bench.py --policies 1000 --requests 200 --runs 3

One `vmqos server` (uvicorn, one worker, no access log) on a loopback port over a throw-away
SQLite database that holds N QoS policies with one bandwidth-limit rule each. A client with one
kept-alive connection (httpx) sends the requests one after the other, as an agent or the CLI does.
The same operations are then called straight into `services/` with the same caller (the token
validated once per call, as the route does), in this process. For each operation:

  policy list   GET /v2.0/qos/policies (all N)      services.policies.list_policies
  policy show   GET /v2.0/qos/policies/{id}         services.policies.show_policy
  port show     GET /v2.0/ports/{id}                services.neutron_ports.show_port (a port bound to a
                                                    host, with the first policy; its network has the second)
  rule update   PUT .../bandwidth_limit_rules/{id}  services.policy_rules.update_rule (max_kbps alternates)

Reported: requests/s, p50 and p99 latency over HTTP, the same for the direct calls, and the ratio
of the p50s (the framework's overhead, both sides in this run). Median of --runs runs.
Prints a Markdown table and a JSON document (also written to --json if given).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any, Callable

import httpx

from vmqos.services import identity, networks, neutron_ports, policies, policy_rules
from vmqos.store import Store

ADMIN_PASSWORD = "bench-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _populate(db: str, count: int) -> tuple[str, str, str, str]:
    """N policies with one rule each, and a network and a port that carry two of them; the token, and the
    policy, rule and port the single-object calls use."""
    with Store(db) as store:
        identity.bootstrap(store, ADMIN_PASSWORD)
        issued = identity.authenticate(store, {"name": "admin", "domain": {"id": "default"}}, ADMIN_PASSWORD,
                                       {"name": "admin", "domain": {"id": "default"}})
        made_ids = []
        first_rule = ""
        for i in range(max(2, count)):
            made = policies.create_policy(store, issued.caller, {"policy": {"name": f"bench-{i:05d}"}})
            rule = policy_rules.create_rule(store, issued.caller, made["id"], "bandwidth_limit",
                                            {"bandwidth_limit_rule": {"max_kbps": 10_000 + i, "max_burst_kbps": 800}})
            made_ids.append(made["id"])
            first_rule = first_rule or rule["id"]
        network = networks.create_network(store, issued.caller, {"network": {
            "name": "bench-net", "qos_policy_id": made_ids[1]}})
        port = neutron_ports.create_port(store, issued.caller, {"port": {
            "name": "bench-port", "network_id": network["id"], "qos_policy_id": made_ids[0],
            "binding:host_id": "bench-host", "device_id": "bench-instance"}})
    return issued.token, made_ids[0], first_rule, port["id"]


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"per_s": len(samples) / sum(samples), "p50_ms": statistics.median(ordered) * 1e3, "p99_ms": p99 * 1e3}


def _timed(call: Callable[[int], None], count: int) -> dict[str, float]:
    call(-1)  # warm
    samples = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def start_server(db: str, port: int, log: Path, wait_s: float = 30) -> subprocess.Popen[bytes]:
    """`vmqos`'s API app under uvicorn, one worker, in a process of its own; returned once it answers `/`."""
    env = dict(os.environ, VMQOS_DB=db)
    code = ("import uvicorn; uvicorn.run('vmqos.api.app:create_app', factory=True, host='127.0.0.1', "
            f"port={port}, workers=1, access_log=False, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not start: {log.read_text()}")
        time.sleep(0.1)


def run_once(count: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vq-apibench-") as tmp:
        db = f"sqlite:///{tmp}/vmqos.db"
        token, policy_id, rule_id, port_id = _populate(db, count)
        port = _free_port()
        proc = start_server(db, port, Path(tmp) / "server.log")
        try:
            base = f"http://127.0.0.1:{port}/v2.0/qos/policies"
            rule_url = f"{base}/{policy_id}/bandwidth_limit_rules/{rule_id}"
            headers = {"X-Auth-Token": token}
            with httpx.Client(headers=headers, timeout=30) as client:
                def http(method: str, url: str, body: Callable[[int], Any] | None = None) -> Callable[[int], None]:
                    def call(i: int) -> None:
                        response = client.request(method, url, json=body(i) if body else None)
                        assert response.status_code == 200, response.text
                    return call

                rule_body = lambda i: {"bandwidth_limit_rule": {"max_kbps": 20_000 + (i % 2)}}  # noqa: E731
                over_http = {
                    "policy list": _timed(http("GET", base), max(10, requests // 10)),
                    "policy show": _timed(http("GET", f"{base}/{policy_id}"), requests),
                    "port show": _timed(http("GET", f"http://127.0.0.1:{port}/v2.0/ports/{port_id}"), requests),
                    "rule update": _timed(http("PUT", rule_url, rule_body), requests),
                }
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        with Store(db) as store:
            def direct(use: Callable[[Any, int], Any]) -> Callable[[int], None]:
                def call(i: int) -> None:
                    use(identity.validate(store, token), i)
                return call

            direct_calls = {
                "policy list": _timed(direct(lambda who, i: policies.list_policies(store, who, {})),
                                      max(10, requests // 10)),
                "policy show": _timed(direct(lambda who, i: policies.show_policy(store, who, policy_id)), requests),
                "port show": _timed(direct(lambda who, i: neutron_ports.show_port(store, who, port_id)), requests),
                "rule update": _timed(direct(lambda who, i: policy_rules.update_rule(
                    store, who, policy_id, "bandwidth_limit", rule_id, rule_body(i))), requests),
            }
    return {"http": over_http, "direct": direct_calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200, help="requests per single-object operation")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    calibration = min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5)) / 10_000 * 1e6
    runs = [run_once(args.policies, args.requests) for _ in range(args.runs)]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for side in ("http", "direct"):
        for op in runs[0][side]:
            table.setdefault(op, {})[side] = {k: statistics.median(r[side][op][k] for r in runs)
                                              for k in runs[0][side][op]}
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, calibration sum(range(1000)) {calibration:.2f} µs, "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {args.policies} policies, median of {args.runs} runs\n")
    print("| operation | HTTP req/s | HTTP p50 | HTTP p99 | direct calls/s | direct p50 | direct p99 | p50 ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for op, sides in table.items():
        h, d = sides["http"], sides["direct"]
        print(f"| {op} | {h['per_s']:.0f} | {h['p50_ms']:.2f} ms | {h['p99_ms']:.2f} ms | {d['per_s']:.0f} | "
              f"{d['p50_ms']:.2f} ms | {d['p99_ms']:.2f} ms | {h['p50_ms'] / d['p50_ms']:.2f}x |")
    document = {"policies": args.policies, "runs": runs, "median": table, "calibration_us": calibration}
    print("\n" + json.dumps(document["median"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
