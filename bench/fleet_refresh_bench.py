#!/usr/bin/env python3
"""The fleet's desired rows at scale: what a server start and a shared policy's rule change cost.

Usage (from the repository root; no root needed):

    .venv/bin/python bench/fleet_refresh_bench.py --ports 100000 --hosts 1000 --shared 10000 [--db URL]

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

Prints the numbers and the ports each refresh read, as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from vmqos.services import fleet_desired, identity, policies, policy_rules
from vmqos.store import Store
from vmqos.store.neutron_tables import neutron_networks, neutron_ports

ADMIN_PASSWORD = "bench-secret"


def _populate(store: Store, ports: int, hosts: int, shared: int) -> tuple[Any, str, str]:
    identity.bootstrap(store, ADMIN_PASSWORD)
    caller = identity.authenticate(store, {"name": "admin", "domain": {"id": "default"}}, ADMIN_PASSWORD,
                                   {"name": "admin", "domain": {"id": "default"}}).caller
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
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
