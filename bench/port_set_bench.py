#!/usr/bin/env python3
"""`vmqos port set` on one port of a large scope: the store's share, old code against new, same run.

Usage (from the repository root; no root needed, nothing touches the kernel):

    .venv/bin/python bench/port_set_bench.py --ports 1000 --runs 5 --changes 20
    .venv/bin/python bench/port_set_bench.py --baseline-ref main --ports 1000   # what to compare with

`set_port(..., live=False, config=True)` is what `vmqos port set --config` does and the store's part
of every live `port set` (load the scope, change one port, save it); the kernel's part is measured
by apply_bench.py (e). A baseline tree is `git archive <ref> src` in a temporary directory. Each
run is a fresh child process per code base, alternating old and new, on its own SQLite file in a
temporary directory holding `--ports` ports; a run times `--changes` port sets on different ports
and reports their median; the script prints the median of the runs' medians per code base, and
the state rows one port set wrote (counted by SQLite triggers on a separate file).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, statistics
from vmqos.core.desired.ports import PortChange
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.services.ports import set_port
from vmqos.store import Store

url, ports, changes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
M = 1_000_000
state = HostState(instances={f"vm{i}": InstanceSpec(f"vm{i}", ports=(PortSpec(f"vqp{i}", limits=NetworkQos(
    ingress=DirectionQos(bandwidth=BandwidthLimit((100 + i % 10) * M)),
    egress=DirectionQos(bandwidth=BandwidthLimit((50 + i % 5) * M))), egress_mode=EgressMode.SHAPE),))
    for i in range(ports)})
times, rows = [], []
with Store(url) as store:
    store.save("vqbench", state)
    for k in range(changes):
        dev = f"vqp{(k * 37) % ports}"
        t0 = time.perf_counter()
        set_port(store, "vqbench", dev, PortChange(inbound=f"{2000 + k},0,0"), live=False, config=True)
        times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times), "max_s": max(times)}))
"""

COUNT = r"""
import json, sqlite3, sys
from vmqos.core.desired.ports import PortChange
from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.services.ports import set_port
from vmqos.store import Store

url, path, ports = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10_000_000)))
with Store(url) as store:
    store.save("vqbench", HostState(instances={f"vm{i}": InstanceSpec(f"vm{i}", ports=(PortSpec(f"vqp{i}", limits=q),))
                                               for i in range(ports)}))
db = sqlite3.connect(path, isolation_level=None)
db.execute("CREATE TABLE vq_writes (n INTEGER)")
for table in ("policies", "flavors", "networks", "instances", "ports", "applied"):
    for op in ("INSERT", "UPDATE", "DELETE"):
        db.execute(f"CREATE TRIGGER vq_{table}_{op} AFTER {op} ON {table} BEGIN INSERT INTO vq_writes VALUES (1); END")
db.close()
with Store(url) as store:
    set_port(store, "vqbench", "vqp7", PortChange(inbound="3000,0,0"), live=False, config=True)
db = sqlite3.connect(path)
print(json.dumps({"rows_written": db.execute("SELECT count(*) FROM vq_writes").fetchone()[0]}))
"""


def baseline_tree(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True).stdout
    into.mkdir(parents=True)
    path = into / "baseline.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    for so in (ROOT / "src/vmqos/drivers").glob("_nlstats*.so"):  # built, not in git
        (into / "src/vmqos/drivers" / so.name).write_bytes(so.read_bytes())
    return into / "src"


def run(src: Path, script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode:
        raise SystemExit(f"child failed ({src}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--baseline-ref", default="main", help="git ref of the old code (default: main)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vq-portset-") as tmp:
        root = Path(tmp)
        sides = {"old": baseline_tree(args.baseline_ref, root / "old"), "new": ROOT / "src"}
        results: dict[str, list[float]] = {"old": [], "new": []}
        counts = {}
        for side, src in sides.items():
            path = root / f"count-{side}.db"
            counts[side] = run(src, COUNT, f"sqlite:///{path}", str(path), str(args.ports))["rows_written"]
        for r in range(args.runs):
            for side, src in sides.items():
                path = root / f"{side}-{r}.db"
                results[side].append(run(src, CHILD, f"sqlite:///{path}", str(args.ports), str(args.changes))["median_s"])
        print(f"port set --config on one port of {args.ports} (SQLite), median of {args.runs} runs x "
              f"{args.changes} changes; old = {args.baseline_ref}")
        print("| code | median | runs' medians | state rows written per port set |")
        print("|---|---:|---|---:|")
        for side in ("old", "new"):
            runs = ", ".join(f"{v * 1000:.1f}" for v in results[side])
            print(f"| {side} | {statistics.median(results[side]) * 1000:.1f} ms | {runs} ms | {counts[side]} |")
        print(json.dumps({"ports": args.ports, "runs": args.runs, "changes": args.changes, "medians_s": results,
                          "rows_written": counts}))


if __name__ == "__main__":
    main()
