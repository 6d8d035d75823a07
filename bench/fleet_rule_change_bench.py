#!/usr/bin/env python3
"""A shared QoS policy's rule change: the set-based rewrite of its rows against the full refresh, same run.

Usage (from the repository root; PostgreSQL needs root or a user that may run initdb):

    .venv/bin/python bench/fleet_rule_change_bench.py --ports 100000 --hosts 1000 --shared 10000 --runs 5

On SQLite (a throw-away file) and on a throw-away PostgreSQL (tests/pgcluster.py), seeded as
bench/fleet_server_bench.py seeds (`_populate`: N ports bound to H hosts, `--shared` of them on one
policy); then `--runs` times, alternating, `services.policy_rules.update_rule` on the shared policy's
bandwidth_limit rule (a new max_kbps each time) with

  set-based  what the server does now (`fleet_desired.then_rules`: one UPDATE of the rows that hold
             the policy, one revision, no port read)
  full       the refresh of every port of the policy that the server did before (`then_policy`:
             10,000 ports read, their rows decided and compared in Python, the changed ones written)

Timed: the wall time of the whole use case (the save, its rows, the commit) and this process's CPU
(PostgreSQL's own CPU is in its processes, not counted); printed as the median of the runs, and the
rows of one host the change wrote. Checked after every change (untimed): one revision, one policy text,
and a full refresh of the policy's ports finds nothing left to write.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from fleet_server_bench import _populate  # noqa: E402

from tests.pgcluster import _make  # noqa: E402
from vmqos.services import fleet_desired, policy_rules  # noqa: E402
from vmqos.store import Store  # noqa: E402


def _one(store: Store, caller: Any, policy: str, rule: str, kbps: int, full: bool) -> dict[str, float]:
    original = fleet_desired.then_rules
    if full:
        fleet_desired.then_rules = lambda before, after: fleet_desired.then_policy(after.id)  # type: ignore[assignment]
    try:
        before = fleet_desired.snapshot(store, "host-0000").revision
        wall, cpu = time.perf_counter(), time.process_time()
        policy_rules.update_rule(store, caller, policy, "bandwidth_limit", rule,
                                 {"bandwidth_limit_rule": {"max_kbps": kbps}})
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        fleet_desired.then_rules = original  # type: ignore[assignment]
    rows = fleet_desired.changes(store, "host-0000", before).changes
    assert rows and {r.revision for r in rows} == {before + 1}, rows  # one revision, every row of the policy
    assert len({json.dumps(r.policy, sort_keys=True) for r in rows}) == 1, rows
    left = fleet_desired.refresh_policy(store, policy)  # what the full refresh would still change: nothing
    assert left.rows == 0, f"the {'full' if full else 'set-based'} change left {left.rows} row(s) to write"
    return {"wall_s": wall, "cpu_s": cpu, "rows_host_0000": len(rows)}


def _measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    with Store(url) as store:
        caller, policy, rule = _populate(store, args.ports, args.hosts, args.shared)
        fleet_desired.refresh(store)
        found: dict[str, list[dict[str, float]]] = {"set-based": [], "full": []}
        for run in range(args.runs):
            for k, name in enumerate(("set-based", "full") if run % 2 == 0 else ("full", "set-based")):
                found[name].append(_one(store, caller, policy, rule, 20_000 + 10 * run + k, name == "full"))
        backend = store._engine.dialect.name
    return {"backend": backend, **{name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                                   for name, runs in found.items()}, "runs": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", type=int, default=100_000)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--shared", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vq-rule-bench-"))
    out = []
    try:
        if "sqlite" in args.backends:
            out.append(_measure(f"sqlite:///{tmp / 'vmqos.db'}", args))
        if "postgresql" in args.backends:
            (tmp / "pg").mkdir()
            if os.geteuid() == 0:
                shutil.chown(tmp, "postgres")
            cluster = _make(tmp / "pg")
            try:
                cluster.start()
                out.append(_measure(cluster.url(cluster.create_database()), args))
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for found in out:
        for name in ("set-based", "full"):
            r = found[name]
            print(f"{found['backend']:10} {name:9} wall {r['wall_s'] * 1e3:8.1f} ms  cpu {r['cpu_s'] * 1e3:8.1f} ms"
                  f"  (median of {args.runs})")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
