#!/usr/bin/env python3
"""Monitor benchmark: CPU time of one sampling pass over N managed ports, the new path against the old
one and two other ways of reading the same counters, in the same run.

Usage (as root, from the repository root; 10,000 ports under the shared kernel lock):

    .venv/bin/python bench/sample_bench.py --ports 1000 --samples 20 --runs 3
    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/sample_bench.py --ports 1000 3000 10000 --samples 5 --runs 1

For each N, a throw-away namespace `vqsmp<hex>` gets N veth pairs with vmqos's full plan on each
(an HTB tree on the port, an IFB with its own, the accounting chains that forward to it), applied
with the `ip -batch` / `tc -batch` / `nft -f` baseline of `apply_bench.py` (not timed), and is
deleted in `finally` (also on SIGTERM). Then, for each reader, --samples passes back to back, and
the CPU time each used (this process, user + system, which includes the kernel's work for its
netlink dumps, plus the `nft`/`ip`/`tc` processes it started):

  (a3) columns  the columnar sample (issue 17): (a2) with its counters as numpy columns, `rates` on
                the columns, no `PortSample`/`PortRates` built (none is asked for); a port whose
                instance sent nothing over two passes has its side carried, not read (`monitor.quiet`):
                in this idle namespace, every port after the second pass. Mean, as (a2)
  (a3-) loud    (a3) with nothing carried (`skip_quiet=False`): what a pass reads when every
                instance sent something in the last two seconds. Mean, as (a2)
  (a3') monitor `Monitor.step()` on (a3): the daemon's whole pass, detectors on the busy rows only. Mean
  (a)  new      `Sampler.sample()` (the compiled decoder's "arrays" path, records) + `rates()` against the
                previous pass
  (a2) needed   (a) with `nft_reads="needed"`, records per port (before the columns): after a whole dump of the nft counters, only those the
                results use, read by name; the whole dump again after an nft commit (none here). Its
                figure is the mean over the passes (the whole dumps included), not the median
  (a3w) whole   (a3) on a pass after an nft commit in the namespace (the ruleset's generation moved):
                the whole dump of the counters and every root qdisc read. Median
  (a3*) busy   (a3-) as if every port had moved since the last pass: its segmenting TBF leaves and
                their classes read every pass (4 gets a port with two such leaves; monitor/leaf_drops.py),
                where an idle port's are not read again. Mean, as (a2)
  (a0) old      the path before issue 17: `Sampler._sample_dumps()` (every message decoded in Python,
                the cyclic garbage collector on) + `rates()`
  (a') monitor  `Monitor.step()`, the daemon's whole pass on (a2) (records; mean, as for (a2)): plus the desired state's revision
                and quarantines from an SQLite store, and the flood detectors
  (b)  pyroute2 the same three reads with pyroute2's generic decoding (`get_qdiscs()`, `get_links()`);
                only up to --pyroute2-max ports (about 2.5 ms a port)
  (c)  iproute2 `tc -s -j qdisc show`, `ip -s -j link show` and the same nft listing, parsed as JSON

The figure is the median CPU per pass over every timed pass of every run. The target (issue 17):
every counter of 10,000 ports once a second in at most 10 % of one core, 100 ms of CPU per pass.
Prints Markdown tables (and the growth per 1,000 ports between the sizes) and a JSON document.
"""

from __future__ import annotations

import argparse
import gc
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

PREFIX = "vqsmp"  # not `vqbench`: on the shared machine, such a namespace and scratch file went under a running bench

from vmqos.core.desired.ports import scope_of  # noqa: E402
from vmqos.core.plan.host import plan_host  # noqa: E402
from vmqos.drivers.nft import Nft  # noqa: E402
from vmqos.monitor.daemon import Monitor, MonitorConfig  # noqa: E402
from vmqos.monitor.sampler import Sampler, rates  # noqa: E402
from vmqos.store import Store  # noqa: E402

READERS = {"columns": "(a3) columns: `Sampler(nft_reads=\"needed\")` + `rates`, columnar, quiet ports carried (mean)",
           "loud": "(a3-) (a3) with every port's instance sending: nothing carried (`skip_quiet=False`) (mean)",
           "monitor_columns": "(a3') `Monitor.step` on (a3), the daemon's pass (mean)",
           "busy": "(a3*) (a3-) with every port busy both ways: its TBF leaves read every pass too (mean)",
           "whole": "(a3w) (a3) after an nft commit: the whole counter dump and every root read",
           "needed": "(a2) records: `Sampler(nft_reads=\"needed\", columns=False)` + `rates` (mean)",
           "monitor": "(a') `Monitor.step` on (a2), records (mean)",
           "new": "(a) records, nft dump each pass: `Sampler(columns=False)` + `rates`",
           "old": "(a0) old: the Python decoder, as before issue 17, + `rates`",
           "pyroute2": "(b) pyroute2 generic decoding",
           "iproute2": "(c) `tc -s -j` + `ip -s -j` + nft, JSON"}


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def calibration() -> float:
    """µs of `sum(x)` over a list of 1,000 ints (the figure docs/benchmarks.md scales by), best of 5."""
    import timeit

    x = list(range(1000))
    return min(timeit.repeat(lambda: sum(x), number=2000, repeat=5)) / 2000 * 1e6


def passes(count: int, fn: Callable[[], Any]) -> list[tuple[float, float]]:
    """(CPU seconds, wall seconds) of each of `count` passes, after one warm-up pass."""
    fn()
    out = []
    for _ in range(count):
        c0, w0 = cpu_seconds(), time.perf_counter()
        fn()
        out.append((cpu_seconds() - c0, time.perf_counter() - w0))
    return out


TOP = "from vmqos.cli.main import main; main()"


def run_top(ns: str, db: str, seconds: float) -> dict[str, Any]:
    """`vmqos top` on the namespace: `--once --json` (its interval_s and requested_interval_s), then
    the live view at 1 Hz in a pseudo-terminal for `seconds`: the intervals its titles showed and
    the CPU it used (user + system, its whole run)."""
    import pty
    import re
    import select
    import signal

    argv = [sys.executable, "-c", TOP, "top", "--netns", ns, "--db", db]
    once = json.loads(subprocess.run(argv + ["--once", "--json"], capture_output=True, check=True, text=True).stdout)
    out: dict[str, Any] = {"once_interval_s": once["interval_s"], "once_requested_interval_s": once["requested_interval_s"],
                           "once_rows": len(once["ports"])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["COLUMNS"], os.environ["LINES"] = "200", "50"
        os.execv(sys.executable, argv + ["--interval", "1"])
    screen, started = b"", time.monotonic()
    while time.monotonic() - started < seconds:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                screen += os.read(fd, 1 << 16)
            except OSError:
                break
    os.kill(pid, signal.SIGINT)
    try:
        os.write(fd, b"q")
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                os.read(fd, 1 << 16)
            except OSError:
                pass
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", screen).decode(errors="replace")
    titles = re.findall(r"every ([0-9.]+) s(?: \(asked ([0-9.]+) s\))?", text)
    out.update({"live_seconds": seconds, "live_titles": len(titles),
                "live_intervals_s": [float(t[0]) for t in titles],
                "live_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime})
    return out


def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    state = ab.host_state(n)
    plans = plan_host(state)
    instances = {p: p for p in plans}
    ip_lines, tc_lines, nft = ab.baseline_scripts(plans)
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in READERS}
    counts: dict[str, int] = {}
    for run_no in range(args.runs):
        with ab.Namespace(n, PREFIX, guard=True) as ns:
            ab.run_batch_baseline(ns.name, ip_lines, tc_lines, nft, args.tmp)
            ab.settle()
            with Sampler(ns.name, method="arrays", columns=False) as new, Sampler(ns.name, method="dumps") as old, \
                    Sampler(ns.name, method="arrays", nft_reads="needed", columns=False) as needed, \
                    Sampler(ns.name, method="arrays", nft_reads="needed") as columns, \
                    Sampler(ns.name, method="arrays", nft_reads="needed", skip_quiet=False) as loud:
                previous = {"new": new.sample(plans, instances), "old": old._sample_dumps(plans, instances),
                            "needed": needed.sample(plans, instances), "columns": columns.sample(plans, instances),
                            "loud": loud.sample(plans, instances)}

                def columns_pass() -> None:
                    current = columns.sample(plans, instances)
                    rates(previous["columns"], current)
                    previous["columns"] = current

                def needed_pass() -> None:
                    current = needed.sample(plans, instances)
                    rates(previous["needed"], current)
                    previous["needed"] = current

                def new_pass() -> None:
                    current = new.sample(plans, instances)
                    rates(previous["new"], current)
                    previous["new"] = current

                def old_pass() -> None:
                    current = old._sample_dumps(plans, instances)  # as before: no pause of the collector
                    rates(previous["old"], current)
                    previous["old"] = current

                def loud_pass() -> None:
                    current = loud.sample(plans, instances)
                    rates(previous["loud"], current)
                    previous["loud"] = current

                def whole_pass() -> None:
                    columns._full_generation = -1  # as after an nft commit: the whole dump and every root
                    columns_pass()

                def busy_pass() -> None:
                    loud._leaf_memo.clear()  # as if every root had moved: every TBF leaf is read again
                    loud_pass()

                out["columns"] += passes(max(args.samples, 10), columns_pass)
                out["loud"] += passes(max(args.samples, 10), loud_pass)
                out["needed"] += passes(max(args.samples, 10), needed_pass)
                out["new"] += passes(args.samples, new_pass)
                out["busy"] += passes(max(args.samples, 10), busy_pass)
                out["whole"] += passes(args.samples, whole_pass)
                col_now, col_rates = columns.sample(plans, instances), None
                counts["quiet_ports_last_pass"] = columns.quiet_ports
                col_rates = rates(previous["columns"], col_now)
                same_columns = col_now.columns is not None and type(col_rates).__name__ == "LazyRates" and all(
                    (a.flows, a.link) == (b.flows, b.link) for a, b in zip(
                        col_now.ports.values(), old._sample_dumps(plans, instances).ports.values()))
                same_needed = all((a.flows, a.link) == (b.flows, b.link) for a, b in zip(
                    needed.sample(plans, instances).ports.values(), old._sample_dumps(plans, instances).ports.values()))
                out["old"] += passes(args.samples, old_pass)
                same = new.sample(plans, instances).ports == old._sample_dumps(plans, instances).ports
                counts["ports_sampled"] = len(previous["new"].ports)
                counts["qdiscs"] = len(old._reader.qdiscs())
                counts["links"] = len(old._reader.links())
            with Store(f"sqlite:///{args.tmp}/monitor-{n}-{run_no}.db") as store:
                store.save(scope_of(ns.name), state)
                config = MonitorConfig(respond=False, usage_interval_s=1e9)  # usage folds once a minute
                with Monitor(store, ns.name, config) as monitor:
                    monitor.step()  # the first pass lays out; the first with rates (the next) builds the detectors' state
                    out["monitor_columns"] += passes(max(args.samples, 10), monitor.step)
                    monitor.sampler.close()
                    monitor.sampler = Sampler(ns.name, nft_reads="needed", columns=False)  # records, as before
                    monitor.last = None
                    monitor.step()
                    out["monitor"] += passes(max(args.samples, 10), monitor.step)
            if n in args.top:
                counts["top"] = run_top(ns.name, f"sqlite:///{args.tmp}/monitor-{n}-{run_no}.db", args.top_seconds)
            nft_reader = Nft(ns.name)
            if n <= args.pyroute2_max:
                from pyroute2 import IPRoute

                with IPRoute(netns=ns.name) as ipr:
                    def pyroute2_pass() -> None:
                        for msg in ipr.get_qdiscs():
                            msg.get_attr("TCA_STATS2")
                        for msg in ipr.get_links():
                            msg.get_attr("IFLA_STATS64")
                        nft_reader.counters()

                    out["pyroute2"] += passes(max(1, args.samples // 4), pyroute2_pass)

            def iproute2_pass() -> None:
                json.loads(subprocess.run(["tc", "-n", ns.name, "-s", "-j", "qdisc", "show"], capture_output=True,
                                          check=True).stdout)
                json.loads(subprocess.run(["ip", "-n", ns.name, "-s", "-j", "link", "show"], capture_output=True,
                                          check=True).stdout)
                nft_reader.counters()

            out["iproute2"] += passes(args.samples, iproute2_pass)
            counts["nft_counters"] = len(nft_reader.counters())
            gc.collect()
    med = {k: {"cpu_s": (statistics.mean if k in ("needed", "busy", "monitor", "columns", "monitor_columns", "loud")
                       else statistics.median)(c for c, _ in v),
               "cpu_median_s": statistics.median(c for c, _ in v),
               "wall_s": statistics.median(w for _, w in v)} for k, v in out.items() if v}
    return {"ports": n, "runs": args.runs, "samples_per_run": args.samples, "per_pass": out, "median": med,
            "counts": counts, "same_ports_both_paths": same,
            "same_flows_needed": same_needed, "same_flows_columns": same_columns,
            "target": {"cpu_per_pass_s": med["monitor_columns"]["cpu_s"],
                       "met": med["monitor_columns"]["cpu_s"] <= 0.10}}


def table(r: dict[str, Any]) -> str:
    m = r["median"]
    base, old = m["iproute2"]["cpu_s"], m["old"]["cpu_s"]
    lines = [f"### sampling {r['ports']} ports, median of {r['runs']} run(s) x {r['samples_per_run']} passes", "",
             "| reader | CPU per pass | share of one core at 1 pass/s | wall per pass | vs old | vs iproute2 JSON |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, label in READERS.items():
        if key in m:
            cpu, wall = m[key]["cpu_s"], m[key]["wall_s"]
            med = m[key].get("cpu_median_s", cpu)
            median = f" ({med * 1000:.1f})" if "mean" in label else ""
            lines.append(f"| {label} | {cpu * 1000:.1f} ms{median} | {cpu:.1%} | {wall * 1000:.1f} ms | "
                         f"{cpu / old:.2f}× | {cpu / base:.2f}× |")
    counts = {k: v for k, v in r["counts"].items() if k != "top"}
    top = r["counts"].get("top")
    if top:
        iv = top["live_intervals_s"]
        lines += ["", f"`vmqos top --once --json`: interval_s {top['once_interval_s']} (requested "
                  f"{top['once_requested_interval_s']}), {top['once_rows']} rows; live for {top['live_seconds']:g} s "
                  f"at --interval 1: {top['live_titles']} screens, intervals shown "
                  f"{sorted(set(iv)) if iv else '-'}, CPU {top['live_cpu_s']:.2f} s "
                  f"({top['live_cpu_s'] / top['live_seconds']:.1%} of a core, start-up included)"]
    lines += ["", f"read per pass: {counts}; both paths gave equal samples: {r['same_ports_both_paths']}; "
              f"(a2) gave the same flows and links: {r['same_flows_needed']}; (a3), columnar, the same: "
              f"{r['same_flows_columns']}"]
    return "\n".join(lines)


def growth(results: list[dict[str, Any]]) -> str:
    lines = ["| reader | " + " | ".join(f"{a['ports']}→{b['ports']}" for a, b in zip(results, results[1:])) + " |",
             "|---|" + "---:|" * (len(results) - 1)]
    for key, label in READERS.items():
        cells = []
        for a, b in zip(results, results[1:]):
            if key in a["median"] and key in b["median"]:
                slope = (b["median"][key]["cpu_s"] - a["median"][key]["cpu_s"]) / ((b["ports"] - a["ports"]) / 1000)
                cells.append(f"{slope * 1000:.1f} ms")
            else:
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "CPU per pass added by each 1,000 ports more:\n\n" + "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, nargs="+", default=[1000])
    ap.add_argument("--samples", type=int, default=20, help="passes timed per reader and run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pyroute2-max", type=int, default=3000, help="above this many ports, (b) is not run")
    ap.add_argument("--json", help="also write the JSON here")
    ap.add_argument("--top", type=int, nargs="*", default=[], help="at these sizes, also run `vmqos top` (once, "
                    "then live in a pseudo-terminal)")
    ap.add_argument("--top-seconds", type=float, default=20.0, help="how long the live `vmqos top` runs")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    ab.exit_on_sigterm()  # `timeout` still deletes the namespace; pyroute2's forked children do not
    import tempfile

    # removed when done, even on an exception; not in /tmp, where its database was deleted under a run
    scratch = tempfile.TemporaryDirectory(prefix="sample-bench-", dir="/var/tmp")
    args.tmp = scratch.name
    info = ab.machine()
    info["calibration_before_us"], info["load_before"] = calibration(), os.getloadavg()
    ab.settle()
    results = []
    print(f"machine: Linux {info['kernel']}, {info['cpus']} CPUs ({info['cpu_model']}); {info['date']}; "
          f"{info['tc']}; {info['nft']}; pyroute2 {info['pyroute2']}; Python {info['python']}")
    for n in args.ports:
        results.append(one_size(n, args))
        print()
        print(table(results[-1]))
        sys.stdout.flush()
    if len(results) > 1:
        print()
        print(growth(results))
    info["calibration_after_us"], info["load_after"] = calibration(), os.getloadavg()
    print(f"\ncalibration sum(range(1000)): {info['calibration_before_us']:.2f} µs before, "
          f"{info['calibration_after_us']:.2f} µs after; load average {info['load_before']} before, "
          f"{info['load_after']} after")
    ab.emit_json({"machine": info, "results": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
