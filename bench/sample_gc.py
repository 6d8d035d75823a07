#!/usr/bin/env python3
"""What the sampler's handling of Python's cyclic garbage collector is worth, measured in one namespace.

Usage (as root, from the repository root; under the shared kernel lock):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/sample_gc.py --ports 1000 10000 --samples 7 --rounds 2

For each N, one throw-away namespace `vqsmp<hex>` with N ports and vmqos's full plan on each (as
`sample_bench.py` builds it, not timed; deleted in `finally`). Then, in rounds, each variant gets a
fresh `Sampler` (compiled path) and a fresh `Monitor`, one warm-up pass each (the layout is built
there), and --samples timed passes of `Sampler.sample` + `rates` and of `Monitor.step`; the figure
is the median CPU time of this process per pass (user + system, getrusage) over every round:

  plain    the collector on during passes, nothing frozen
  pause    the collector paused during `sample` and `rates` (what the sampler does)
  freeze   pause, and after the warm-up everything alive frozen out of the collector's passes
           (gc.unfreeze, gc.collect, gc.freeze: the branch's `_keep_out_of_collections`, which it
           ran inside the pass that built a layout, issue 17)

The variants alternate within a round, so that a change of the machine's load falls on all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import statistics
import sys
import tempfile
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apply_bench as ab  # noqa: E402

from vmqos.core.desired.ports import scope_of  # noqa: E402
from vmqos.core.plan.host import plan_host  # noqa: E402
from vmqos.monitor import sampler as sampler_module  # noqa: E402
from vmqos.monitor.daemon import Monitor, MonitorConfig  # noqa: E402
from vmqos.monitor.sampler import Sampler, rates  # noqa: E402
from vmqos.store import Store  # noqa: E402

PREFIX = "vqsmp"
VARIANTS = ("plain", "pause", "freeze")
PAUSE = sampler_module._no_cyclic_gc


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def timed(count: int, fn: Callable[[], Any]) -> list[float]:
    out = []
    for _ in range(count):
        c0 = cpu_seconds()
        fn()
        out.append(cpu_seconds() - c0)
    return out


def set_variant(variant: str) -> None:
    """The collector as the variant wants it, from a clean start (nothing frozen, nothing pending)."""
    sampler_module._no_cyclic_gc = PAUSE if variant != "plain" else contextlib.nullcontext  # type: ignore
    if hasattr(sampler_module, "_keep_out_of_collections"):  # the branch's own freeze, replaced by the variants'
        sampler_module._keep_out_of_collections = lambda: None  # type: ignore
    gc.unfreeze()
    gc.collect()


def after_warm_up(variant: str) -> None:
    if variant == "freeze":
        gc.freeze()


def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    state = ab.host_state(n)
    plans = plan_host(state)
    instances = {p: p for p in plans}
    ip_lines, tc_lines, nft = ab.baseline_scripts(plans)
    sample: dict[str, list[float]] = {v: [] for v in VARIANTS}
    step: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with ab.Namespace(n, PREFIX, guard=True) as ns:
        ab.run_batch_baseline(ns.name, ip_lines, tc_lines, nft, args.tmp)
        ab.settle()
        with Store(f"sqlite:///{args.tmp}/monitor-{n}.db") as store:
            store.save(scope_of(ns.name), state)
            for _ in range(args.rounds):
                for variant in VARIANTS:
                    set_variant(variant)
                    with Sampler(ns.name, method="arrays") as sampler:
                        previous = [sampler.sample(plans, instances)]
                        after_warm_up(variant)

                        def one_pass() -> None:
                            current = sampler.sample(plans, instances)
                            rates(previous[0], current)
                            previous[0] = current

                        sample[variant] += timed(args.samples, one_pass)
                    del previous
                    set_variant(variant)
                    config = MonitorConfig(respond=False, usage_interval_s=1e9)
                    with Monitor(store, ns.name, config) as monitor:
                        monitor.step()
                        after_warm_up(variant)
                        step[variant] += timed(args.samples, monitor.step)
    gc.unfreeze()
    sampler_module._no_cyclic_gc = PAUSE  # type: ignore
    return {"ports": n, "rounds": args.rounds, "samples": args.samples,
            "sample_rates_ms": {v: statistics.median(x) * 1000 for v, x in sample.items()},
            "monitor_step_ms": {v: statistics.median(x) * 1000 for v, x in step.items()},
            "per_pass_s": {"sample_rates": sample, "monitor_step": step}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, nargs="+", default=[1000])
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="also write the JSON here")
    ap.add_argument("--scratch", default="/var/tmp", help="where the scratch directory goes")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    ab.exit_on_sigterm()  # `timeout` still deletes the namespace; pyroute2's forked children do not
    scratch = tempfile.TemporaryDirectory(prefix="sample-gc-", dir=args.scratch)
    args.tmp = scratch.name
    info = ab.machine()
    ab.settle()
    print(f"machine: Linux {info['kernel']}, {info['cpus']} CPUs ({info['cpu_model']}); {info['date']}; "
          f"Python {info['python']}; load average {os.getloadavg()}")
    results = []
    for n in args.ports:
        r = one_size(n, args)
        results.append(r)
        print(f"\n{n} ports, median CPU per pass over {args.rounds} rounds x {args.samples} passes "
              f"(load average now {os.getloadavg()[0]:.2f}):")
        print("| variant | `sample` + `rates` | `Monitor.step` |\n|---|---:|---:|")
        for v in VARIANTS:
            print(f"| {v} | {r['sample_rates_ms'][v]:.1f} ms | {r['monitor_step_ms'][v]:.1f} ms |")
        sys.stdout.flush()
    ab.emit_json({"machine": info, "results": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
