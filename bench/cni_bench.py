#!/usr/bin/env python3
"""The first second and the steady state of a container's limit: vmqos-cni against the `bandwidth` plugin.

Usage (as root, from the repository root, under the kernel lock on a shared machine):

    flock /tmp/vmqos-kernel.lock env PYTHONPATH=src:. .venv/bin/python bench/cni_bench.py --runs 5

Each run makes a host namespace `vqbh<hex>` and a container namespace, wires them with Debian's real
`bridge` + `host-local` (tests/cni_chain.py execs the plugins with CNI_* as libcni does), chains either
Debian's `bandwidth` plugin or `vmqos-cni`, and gives both the same `runtimeConfig.bandwidth`, with the
ingress burst one of:

  kubernetes  2^31 - 1 bits (256 MiB): what kubelet sends for a pod's `kubernetes.io/ingress-bandwidth`
              annotation, which has no burst (containerd and CRI-O send more); kubernetes#90838
  small       rate x 10 ms in bits, the smallest burst the bandwidth plugin's TBF takes at these rates

then iperf3 (TCP, 5 s, cubic) from the host into the container, with the receiver's 1 s intervals:

  first s   payload received in the first second, as a fraction of the limit's TCP goodput
            (0.956 of the L2 rate): above 1 is the overshoot a fresh bucket lets through
  steady    the same for seconds 1 to 5

Prints a Markdown table (median of --runs, min-max beside it) and a JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests import cni_chain as cni

TCP_GOODPUT_PER_FRAME = 0.956
SECONDS = 5
BURSTS = ("kubernetes", "small")
PLUGINS = ("bandwidth", "vmqos-cni")


def burst_bits(kind: str, rate: int) -> int:
    return 2**31 - 1 if kind == "kubernetes" else rate // 100


def one_run(plugin: str, rate: int, kind: str, tmp: Path) -> dict[str, float]:
    host, ctr = cni.new_name("vqbh"), cni.new_name("vqbc")
    cni.netns_add(host)
    path = cni.netns_add(ctr)
    try:
        chained: dict[str, Any] = {"type": plugin, "capabilities": {"bandwidth": True}}
        if plugin == "vmqos-cni":
            chained["vmqosDatabase"] = str(tmp / f"{host}.db")
        chain = cni.Chain(host, cni.plugin_dir(tmp), cni.conflist("vqbench", "10.196.0.0/24", "vqbrb", [chained],
                                                                   tmp / f"ipam-{host}"))
        runtime = {"bandwidth": {"ingressRate": rate, "ingressBurst": burst_bits(kind, rate)}}
        out = chain.add(ctr, path, runtime)
        if out.returncode != 0:
            raise SystemExit(f"{plugin} ADD failed: {out.stdout} {out.stderr[-800:]}")
        address = cni.address(out.answer)
        server = subprocess.Popen(["ip", "netns", "exec", ctr, "iperf3", "-s", "-1", "-J"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            subprocess.run(["ip", "netns", "exec", host, "iperf3", "-c", address, "-t", str(SECONDS), "-C", "cubic",
                            "-J"], capture_output=True, text=True, timeout=SECONDS + 20, check=True)
            data = json.loads(server.communicate(timeout=20)[0])
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        goodput = rate * TCP_GOODPUT_PER_FRAME
        intervals = [i["sum"] for i in data["intervals"]]
        first = intervals[0]["bytes"] * 8 / intervals[0]["seconds"]
        late = [i for i in intervals[1:] if i["seconds"] > 0.5]
        steady = sum(i["bytes"] for i in late) * 8 / sum(i["seconds"] for i in late)
        chain.delete(ctr, path, runtime)
        return {"first": first / goodput, "steady": steady / goodput}
    finally:
        cni.netns_del(ctr)
        cni.netns_del(host)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rates", default="10,100", help="Mbit/s, comma-separated")
    parser.add_argument("--json", help="also write the JSON document to this file")
    args = parser.parse_args()
    if cni.missing():
        raise SystemExit(cni.missing())
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vq-cnibench-") as tmp:
        for mbit in (int(r) for r in args.rates.split(",")):
            for kind in BURSTS:
                for plugin in PLUGINS:
                    runs = [one_run(plugin, mbit * 1_000_000, kind, Path(tmp)) for _ in range(args.runs)]
                    row = {"rate_mbit": mbit, "burst": kind, "plugin": plugin, "runs": runs}
                    for key in ("first", "steady"):
                        values = [r[key] for r in runs]
                        row[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
                    results.append(row)
                    print(f"{mbit} Mbit/s {kind:10} {plugin:9} first {row['first']['median']:.2f} "
                          f"steady {row['steady']['median']:.3f}", file=sys.stderr, flush=True)
    print("| rate | burst | plugin | first second (× limit) | steady (× limit) |")
    print("|---|---|---|---|---|")
    for row in results:
        f, s = row["first"], row["steady"]
        print(f"| {row['rate_mbit']} Mbit/s | {row['burst']} | {row['plugin']} | {f['median']:.2f} "
              f"({f['min']:.2f}–{f['max']:.2f}) | {s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f}) |")
    document = {"runs": args.runs, "seconds": SECONDS, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2))
    print(json.dumps(document))


if __name__ == "__main__":
    main()
