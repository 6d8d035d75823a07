#!/usr/bin/env python3
"""The server side of the fleet at scale: what a server start and a shared policy's rule change cost,
and how soon a thousand waiting long polls see the change.

Usage (from the repository root; no root needed):

    .venv/bin/python bench/fleet_server_bench.py --ports 100000 --hosts 1000 --shared 10000 [--db URL]

A throw-away SQLite database (or --db, e.g. a PostgreSQL database) gets N Neutron ports bound to
H hosts (written in bulk, straight into the tables: the bench measures the refresh, not the API);
--shared of them, spread over every host, carry one QoS policy, the others a policy each of 99
others. Then, timed:

  start        services.fleet_desired.refresh(store): every row, as a server does when it starts
  again        the same with nothing changed: no row written
  rule change  services.policy_rules.update_rule on the shared policy (max_kbps changes): the save
               and its refresh_policy, which reads only the shared policy's ports
  same rule    the same update with the same value: the refresh finds nothing to write
  changes      services.fleet_desired.changes for one host since the revision before the change
  long poll    one `vmqos server` (its own process: uvicorn, one worker) and one long poll
               (`GET /v1/hosts/{host}/desired/changes?wait=60`) per host, all waiting at once over HTTP
               (asyncio streams, one connection each, in this process); the shared rule changes (services.policy_rules, in
               this process, as another server on the same database would): the time from the change's
               commit until each poll has its answer (p50, p99, max), and how many got rows

Prints the numbers and the ports each refresh read, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert


from vmqos.services import fleet_desired, identity, policies, policy_rules
from vmqos.store import Store
from vmqos.store.neutron_tables import neutron_networks, neutron_ports

ADMIN_PASSWORD = "bench-secret"


def _populate(store: Store, ports: int, hosts: int, shared: int) -> tuple[Any, str, str]:
    identity.bootstrap(store, ADMIN_PASSWORD)
    caller = identity.authenticate(store, {"name": "admin", "domain": {"id": "default"}}, ADMIN_PASSWORD,
                                   {"name": "admin", "domain": {"id": "default"}}).caller
    assert caller.project is not None
    made = []
    for i in range(100):
        policy = policies.create_policy(store, caller, {"policy": {"name": f"bench-{i}"}})
        rule = policy_rules.create_rule(store, caller, policy["id"], "bandwidth_limit",
                                        {"bandwidth_limit_rule": {"max_kbps": 10_000 + i, "max_burst_kbps": 800}})
        made.append((policy["id"], rule["id"]))
    at = datetime.now(UTC)
    network = str(uuid.uuid4())
    common = {"description": "", "admin_state_up": True, "revision_number": 1, "created_at": at, "updated_at": at,
              "tags": "[]"}
    rounds = max(1, ports // hosts)  # port i is on host i % hosts; every `step`-th round is the shared policy's
    step = max(1, rounds * hosts // shared)
    rows = []
    for i in range(ports):
        policy = made[0][0] if (i // hosts) % step == 0 else made[1 + i % 99][0]
        rows.append({"id": str(uuid.uuid4()), "project_id": caller.project.id, "network_id": network,
                     "name": f"p{i}", "mac_address": f"fa:16:3e:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                     "device_id": "", "device_owner": "compute:nova", "host_id": f"host-{i % hosts:04d}",
                     "profile": "{}", "vnic_type": "normal", "qos_policy_id": policy, **common})
    with store._tx("bench: networks and ports", write="qos") as conn:
        conn.execute(insert(neutron_networks).values(id=network, project_id=caller.project.id, name="bench",
                                                     shared=False, mtu=1500, qos_policy_id=None, **common))
        for start in range(0, len(rows), 5000):
            conn.execute(insert(neutron_ports), rows[start:start + 5000])
    return caller, made[0][0], made[0][1]


def _timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _poll(port: int, path: str, token: str) -> tuple[float, bytes]:
    """One GET on its own connection, read to the end: when its answer was in, and the answer. Plain
    asyncio streams: httpx's pool takes seconds to juggle a thousand connections in one process, which
    would measure the client, not the server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-Auth-Token: {token}\r\nConnection: close\r\n\r\n"
                 .encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return time.monotonic(), answer


async def _polls(port: int, token: str, hosts: list[str], since: int, change: Any) -> tuple[list[float], int]:
    """Every host's long poll at once; `change()` once they all wait; the seconds from the change's end to
    each answer, and how many answers held rows."""
    tasks = [asyncio.create_task(_poll(port, f"/v1/hosts/{h}/desired/changes?since={since}&wait=60", token))
             for h in hosts]
    await asyncio.sleep(5 + len(hosts) / 100)  # every request in and waiting (a token check each first)
    done_at = change()
    answers = await asyncio.gather(*tasks)
    return [at - done_at for at, _ in answers], sum(1 for _, body in answers if b'"changes":[{' in body)


def _long_poll(db: str, caller: Any, shared: str, rule: str, hosts: int) -> dict[str, Any]:
    """`vmqos server` in its own process; the rule changed from this one, as another server would."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMQOS_"))}
    server = subprocess.Popen([sys.executable, "-m", "vmqos.cli.main", "server", "--listen", f"127.0.0.1:{port}",
                               "--db", db], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # it recomputes every row before it listens
        while True:
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        token = httpx.post(f"{url}/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}).headers["X-Subject-Token"]
        with Store(db) as store:
            since = fleet_desired.snapshot(store, "host-0000").revision

            def change() -> float:
                policy_rules.update_rule(store, caller, shared, "bandwidth_limit", rule,
                                         {"bandwidth_limit_rule": {"max_kbps": 7000}})
                return time.monotonic()

            latencies, with_rows = asyncio.run(_polls(port, token, [f"host-{i:04d}" for i in range(hosts)], since,
                                                      change))
    finally:
        server.terminate()
        server.wait(30)
    ordered = sorted(latencies)
    return {"waiters": hosts, "with_their_rows": with_rows, "p50_s": round(statistics.median(ordered), 3),
            "p99_s": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 3),
            "max_s": round(ordered[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", type=int, default=100_000)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--shared", type=int, default=10_000)
    parser.add_argument("--db", help="a database URL (default: a throw-away SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vq-fleet-bench-") as tmp:
        with Store(args.db or f"sqlite:///{Path(tmp) / 'vmqos.db'}") as store:
            caller, shared, rule = _populate(store, args.ports, args.hosts, args.shared)
            out: dict[str, Any] = {"ports": args.ports, "hosts": args.hosts, "shared": args.shared,
                                   "backend": store._engine.dialect.name}
            seconds, done = _timed(lambda: fleet_desired.refresh(store))
            out["start"] = {"s": round(seconds, 3), "rows": done.rows, "ports_read": done.ports_read}
            seconds, done = _timed(lambda: fleet_desired.refresh(store))
            out["again"] = {"s": round(seconds, 3), "rows": done.rows, "ports_read": done.ports_read}
            before = fleet_desired.snapshot(store, "host-0000").revision
            body = {"bandwidth_limit_rule": {"max_kbps": 5000}}
            seconds, _ = _timed(lambda: policy_rules.update_rule(store, caller, shared, "bandwidth_limit", rule, body))
            seconds_refresh, done = _timed(lambda: fleet_desired.refresh_policy(store, shared))
            out["rule_change"] = {"s": round(seconds, 3), "hosts_woken": len(
                {h for h in (f"host-{i:04d}" for i in range(args.hosts))
                 if fleet_desired.changes(store, h, before).changes})}
            out["same_rule_refresh"] = {"s": round(seconds_refresh, 3), "rows": done.rows,
                                        "ports_read": done.ports_read}
            seconds, found = _timed(lambda: fleet_desired.changes(store, "host-0000", before))
            out["changes_one_host"] = {"ms": round(seconds * 1e3, 2), "rows": len(found.changes)}
        url = args.db or f"sqlite:///{Path(tmp) / 'vmqos.db'}"
        out["long_poll"] = _long_poll(url, caller, shared, rule, args.hosts)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
