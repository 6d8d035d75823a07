#!/usr/bin/env python3
"""Monitor benchmark: CPU time of one sampling pass over N managed ports, against two ways of reading
the same counters, in the same run.

Usage (as root, from the repository root):

    .venv/bin/python bench/sample_bench.py --ports 1000 --samples 20 --runs 3

A throw-away namespace `vqbench<hex>` gets N veth pairs with vmqos's full plan on each (an HTB
tree on the port, an IFB with its own, the accounting chains that forward to it), applied with the
`ip -batch` / `tc -batch` / `nft -f` baseline of `apply_bench.py` (not timed), and is deleted in
`finally`. Then, for each reader, --samples passes back to back, and the CPU time they used
(this process, user + system, which includes the kernel's work for its netlink dumps, plus the
`nft`/`ip`/`tc` processes it started) is divided by the passes:

  (a) vmqos    `Sampler.sample()` (+ `rates()` against the previous pass): one netlink dump each of
               the qdiscs, the link counters and the named nft counters, decoded by vmqos's
               counter reader, and the per-port flows
  (a') monitor `Monitor.step()`, the daemon's whole pass: (a), plus the desired state's revision
               and quarantines from an SQLite store, and the flood detectors
  (b) pyroute2 the same three reads with pyroute2's generic decoding (`get_qdiscs()`, `get_links()`)
  (c) iproute2 `tc -s -j qdisc show`, `ip -s -j link show` and the same nft listing, parsed as JSON

The target (issue 4): sampling 1,000 ports once a second uses under 10 % of one core, i.e. under
100 ms of CPU per pass of (a'). Prints a Markdown table and a JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apply_bench as ab  # noqa: E402

from vmqos.core.desired.ports import scope_of  # noqa: E402
from vmqos.core.plan.host import plan_host  # noqa: E402
from vmqos.drivers.nft import Nft  # noqa: E402
from vmqos.monitor.daemon import Monitor, MonitorConfig  # noqa: E402
from vmqos.monitor.sampler import Sampler, rates  # noqa: E402
from vmqos.store import Store  # noqa: E402


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def per_pass(passes: int, fn: Callable[[], Any]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per pass, over `passes` passes after one warm-up pass."""
    fn()
    c0, w0 = cpu_seconds(), time.perf_counter()
    for _ in range(passes):
        fn()
    return (cpu_seconds() - c0) / passes, (time.perf_counter() - w0) / passes


def bench(args: argparse.Namespace) -> dict[str, Any]:
    n = args.ports
    state = ab.host_state(n)
    plans = plan_host(state)
    instances = {p: p for p in plans}
    ip_lines, tc_lines, nft = ab.baseline_scripts(plans)
    out: dict[str, list[tuple[float, float]]] = {"vmqos": [], "monitor": [], "pyroute2": [], "iproute2": []}
    counts: dict[str, int] = {}
    for run_no in range(args.runs):
        with ab.Namespace(n) as ns:
            ab.run_batch_baseline(ns.name, ip_lines, tc_lines, nft, args.tmp)
            ab.settle()
            with Sampler(ns.name) as sampler:
                previous = [sampler.sample(plans, instances)]

                def vmqos_pass() -> None:
                    current = sampler.sample(plans, instances)
                    rates(previous[0], current)
                    previous[0] = current

                out["vmqos"].append(per_pass(args.samples, vmqos_pass))
                counts["ports_sampled"] = len(previous[0].ports)
                counts["qdiscs"] = len(sampler._reader.qdiscs())
                counts["links"] = len(sampler._reader.links())
            with Store(f"sqlite:///{args.tmp}/monitor-{run_no}.db") as store:
                store.save(scope_of(ns.name), state)
                config = MonitorConfig(respond=False, usage_interval_s=1e9)  # usage folds once a minute
                with Monitor(store, ns.name, config) as monitor:
                    out["monitor"].append(per_pass(args.samples, monitor.step))
            from pyroute2 import IPRoute

            nft_reader = Nft(ns.name)
            with IPRoute(netns=ns.name) as ipr:
                def pyroute2_pass() -> None:
                    for msg in ipr.get_qdiscs():
                        msg.get_attr("TCA_STATS2")
                    for msg in ipr.get_links():
                        msg.get_attr("IFLA_STATS64")
                    nft_reader.counters()

                out["pyroute2"].append(per_pass(max(1, args.samples // 4), pyroute2_pass))

            def iproute2_pass() -> None:
                json.loads(subprocess.run(["tc", "-n", ns.name, "-s", "-j", "qdisc", "show"], capture_output=True,
                                          check=True).stdout)
                json.loads(subprocess.run(["ip", "-n", ns.name, "-s", "-j", "link", "show"], capture_output=True,
                                          check=True).stdout)
                nft_reader.counters()

            out["iproute2"].append(per_pass(args.samples, iproute2_pass))
            counts["nft_counters"] = len(nft_reader.counters())
    med = {k: {"cpu_s": statistics.median(c for c, _ in v), "wall_s": statistics.median(w for _, w in v)}
           for k, v in out.items()}
    return {"ports": n, "runs": args.runs, "samples_per_run": args.samples, "per_pass": out, "median": med,
            "counts": counts,
            "target": {"cpu_share_at_1hz": med["monitor"]["cpu_s"], "met": med["monitor"]["cpu_s"] < 0.10}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=20, help="passes timed per reader and run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="also write the JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    import tempfile

    scratch = tempfile.TemporaryDirectory(prefix="vqbench")  # removed when done, even on an exception
    args.tmp = scratch.name
    info = ab.machine()
    ab.settle()
    result = bench(args)
    result["machine"] = info
    m = result["median"]
    base = m["iproute2"]["cpu_s"]
    print(f"machine: Linux {info['kernel']}, {info['cpus']} CPUs ({info['cpu_model']}); {info['date']}; "
          f"{info['tc']}; {info['nft']}; pyroute2 {info['pyroute2']}; Python {info['python']}")
    print()
    print(f"### sampling {args.ports} ports, median of {args.runs} run(s) x {args.samples} passes")
    print()
    print("| reader | CPU per pass | share of one core at 1 pass/s | wall per pass | CPU vs iproute2 JSON |")
    print("|---|---:|---:|---:|---:|")
    names = {"vmqos": "(a) vmqos `Sampler.sample` + `rates`", "monitor": "(a') `Monitor.step` (the daemon's pass)",
             "pyroute2": "(b) pyroute2 generic decoding",
             "iproute2": "(c) `tc -s -j` + `ip -s -j` + nft, JSON"}
    for key, label in names.items():
        cpu, wall = m[key]["cpu_s"], m[key]["wall_s"]
        print(f"| {label} | {cpu * 1000:.1f} ms | {cpu:.1%} | {wall * 1000:.1f} ms | {cpu / base:.2f}× |")
    print()
    print(f"read per pass: {result['counts']}")
    ab.emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
