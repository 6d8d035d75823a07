#!/usr/bin/env python3
"""Police mode across live changes (issue 13 item 2): before (a git ref) and after (this tree), same run.

Usage (as root, from the repository root, under the kernel lock on a shared machine):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/police_live_changes_bench.py --before main --runs 3

Each run executes `tests/traffic/test_police_live_changes.py` of THIS tree (its three scenarios:
10 DSCP toggles, 10 rate changes 50 <-> 20 Mbit/s, 10 shape <-> police switches, a 6 s TCP flow
from vm1, 256 KiB burst, the receiver's rx bytes read every 100 ms over netlink) once with the
package of `--before` (exported with `git archive` into a temporary directory, the built
_nlstats module copied beside it) and once with this tree's, alternating, and reads what the test
logs. Per scenario and tree: the mean delivered rate, the highest 100 ms sample, the highest
sample's bound (limit x elapsed + burst + one 64 KiB aggregate, as a rate) and how many samples
were above their bound; the median over the runs. The test fails on a tree that breaks the rule:
that is expected for `--before`, and its log is read all the same. Prints a Markdown table and JSON.
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST = "tests/traffic/test_police_live_changes.py"
SCENARIOS = {"other_rules": "10 DSCP toggles (50)", "rate_changes": "10 rate changes 50 <-> 20",
             "shape_to_police": "10 shape <-> police switches (50)"}
LINE = re.compile(r"per 100 ms (\[.*\]); mean ([\d.]+) Mbit/s")


def export(ref: str, into: str) -> str:
    """The package of `ref` in `into`/src, with this tree's built extension beside its drivers."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    for so in glob.glob(os.path.join(ROOT, "src/vmqos/drivers/_nlstats*.so")):
        shutil.copy(so, os.path.join(into, "src/vmqos/drivers"))
    return os.path.join(into, "src")


def run_once(src: str) -> dict[str, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=src)
    done = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out: dict[str, dict[str, float]] = {}
    names = iter(SCENARIOS)  # the test file's order
    for match in LINE.finditer(done.stdout):
        rows = ast.literal_eval(match.group(1))  # (t, received Mbit/s, bound Mbit/s, limit, bucket/burst)
        top = max(rows, key=lambda r: r[1])
        out[next(names)] = {"mean": float(match.group(2)), "max": top[1], "bound_at_max": top[2],
                            "over": sum(1 for r in rows if r[1] > r[2])}
    if len(out) != len(SCENARIOS):
        raise SystemExit(f"the test logged {len(out)} of {len(SCENARIOS)} scenarios:\n{done.stdout[-3000:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git ref of the baseline (default: main)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, dict[str, float]]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="vqbench") as tmp:
        before = export(args.before, tmp)
        for _ in range(args.runs):
            results["before"].append(run_once(before))
            results["after"].append(run_once(os.path.join(ROOT, "src")))
    med = {tree: {s: {k: statistics.median(r[s][k] for r in runs) for k in runs[0][s]} for s in SCENARIOS}
           for tree, runs in results.items()}
    print(f"| scenario (limit Mbit/s) | {args.before}: mean / highest 100 ms sample (its bound) / samples over "
          "| this tree: same |")
    print("|---|---|---|")
    for s, label in SCENARIOS.items():
        cells = [f"{m['mean']:.1f} / {m['max']:.0f} ({m['bound_at_max']:.0f}) / {m['over']:.0f}"
                 for m in (med["before"][s], med["after"][s])]
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    print(json.dumps({"before": args.before, "runs": results, "median": med}))


if __name__ == "__main__":
    main()
