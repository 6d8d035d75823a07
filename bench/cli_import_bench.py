#!/usr/bin/env python3
"""What a `vmqos` command costs before it does anything: the CPU of `python -m vmqos.cli.main ARGS`
for a few typical commands, with the package of one source tree against another's (a baseline).

Usage (from the repository root; no root needed):

    .venv/bin/python bench/cli_import_bench.py --runs 7 --baseline /path/to/other/checkout/src

Each command runs --runs times with each tree, alternating (tree A, tree B, A, B...), so that a change
of the machine's load hits both alike. Reported: the median CPU time (user + system, from
RUSAGE_CHILDREN) and wall time per command and tree, and the machine's load before and after.
`server init` and `server user` write a fresh SQLite file per run (the server fixture's four calls).
A timed measurement, never a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "port show --help": ["port", "show", "--help"],
    "convert (nova specs)": ["convert", "--from", "nova", "--to", "libvirt", "-"],
    "server init": ["server", "init", "--admin-password", "x", "--db", "sqlite:///{tmp}/init-{n}.db"],
    "server user": ["server", "user", "alice", "--password", "y", "--project", "demo", "--role", "member", "--db",
                    "sqlite:///{tmp}/user.db"],
}
STDIN = {"convert (nova specs)": "quota:vif_inbound_average=1000\n"}


def _run(src: Path, args: list[str], stdin: str | None) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "vmqos.cli.main", *args], input=stdin, capture_output=True,
                          text=True, env=os.environ | {"PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}, timeout=120)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"vmqos {' '.join(args)} failed with {src}: {done.stderr}")
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, required=True, help="the other tree's src directory")
    opts = parser.parse_args()
    trees = {"baseline": opts.baseline.resolve(), "this tree": ROOT / "src"}
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="vq-clibench-") as tmp:
        for label, template in COMMANDS.items():
            cpu: dict[str, list[float]] = {name: [] for name in trees}
            wall: dict[str, list[float]] = {name: [] for name in trees}
            for n in range(opts.runs):
                for name, src in trees.items():
                    if label == "server user":  # a database with the admin already in it, once per tree
                        db = Path(tmp) / "user.db"
                        db.unlink(missing_ok=True)
                        _run(src, ["server", "init", "--admin-password", "x", "--db", f"sqlite:///{db}"], None)
                    args = [a.format(tmp=tmp, n=f"{name[0]}{n}") for a in template]
                    c, w = _run(src, args, STDIN.get(label))
                    cpu[name].append(c)
                    wall[name].append(w)
            row = "  ".join(f"{name}: cpu {statistics.median(cpu[name]):.3f} s, wall {statistics.median(wall[name]):.3f} s"
                            for name in trees)
            saved = statistics.median(cpu["baseline"]) - statistics.median(cpu["this tree"])
            print(f"{label:22} {row}  (cpu saved {saved:.3f} s)")
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
