#!/usr/bin/env python3
"""What one `openstack` CLI call of the server tier costs: an exec of the console script, or a forked
child of the warm client of tests/server/osc_cli.py (the tier's way since branch wip-suite).

Usage (from the repository root; no root needed):

    .venv/bin/python bench/osc_cli_bench.py --calls 15 --runs 3 [--cli .venv-osc/bin/openstack]

One `vmqos server` on SQLite in a temp directory (admin only), the same command each call
(`network qos policy list -f json`, one auth round trip and one Neutron request). Each run makes
--calls calls one way, then --calls the other way. Reported per call, median of the runs: wall
time, the client's CPU time (user + system: an exec's from RUSAGE_CHILDREN, a forked child's as
its fork server measured it with wait4) and the server's CPU time (from /proc, its share of the
call: mostly the argon2 verification of the password). The load of the machine is printed too.
--hash tests makes the admin's password hash as the test suite makes its users' (tests/conftest.py,
cheap_password_hashes: argon2id at its smallest cost), to show what that fixture saves per login.
A timed measurement, never a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tests.server's helpers (and its pgcluster import)

from tests.server.conftest import ADMIN_PASSWORD, in_process, vmqos  # noqa: E402
from tests.server.osc_cli import OpenstackForks, console_script_python, exec_openstack  # noqa: E402
from tests.server.serving import running_server  # noqa: E402

ARGS = ("network", "qos", "policy", "list", "-f", "json")


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cli", type=Path, default=Path(os.environ.get("VMQOS_OPENSTACK_CLI")
                                                         or ROOT / ".venv-osc" / "bin" / "openstack"))
    parser.add_argument("--hash", choices=("default", "tests"), default="default",
                        help="the admin's password hash: argon2's default cost, or the suite's (its smallest)")
    opts = parser.parse_args()
    python = console_script_python(opts.cli)
    if python is None:
        sys.exit(f"{opts.cli} is not python-openstackclient's console script")
    results: dict[str, dict[str, list[float]]] = {m: {"wall": [], "client": [], "server": []} for m in ("exec", "fork")}
    with tempfile.TemporaryDirectory(prefix="vq-osc-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db = f"sqlite:///{tmp / 'vmqos.db'}"
        if opts.hash == "tests":  # as tests/conftest.py's cheap_password_hashes does for the suite's own hashes
            from argon2 import PasswordHasher

            from vmqos.services import identity

            identity._HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
            in_process("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db)
        else:
            init = vmqos("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db, cwd=tmp)
            assert init.returncode == 0, init.stderr
        with running_server(tmp, db) as server:
            assert server.pid is not None
            base = {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | {"HOME": str(tmp)}
            env = base | {"OS_AUTH_URL": f"{server.url}/v3", "OS_USERNAME": "admin", "OS_PROJECT_NAME": "admin",
                          "OS_PASSWORD": ADMIN_PASSWORD, "OS_USER_DOMAIN_NAME": "Default",
                          "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3"}
            started = time.monotonic()
            forks = OpenstackForks(opts.cli, python, base, tmp)
            warm_up_s = time.monotonic() - started
            try:
                for _ in range(opts.runs):
                    for mode in ("exec", "fork"):
                        wall, client, server_cpu = [], [], []
                        for _ in range(opts.calls):
                            cpu0, srv0, t0 = _children_cpu_s(), _process_cpu_s(server.pid), time.monotonic()
                            if mode == "exec":
                                done = exec_openstack(opts.cli, ARGS, env, tmp, timeout=60)
                                client.append(_children_cpu_s() - cpu0)
                            else:
                                done = forks.run(ARGS, env, tmp, timeout=60)
                                client.append(forks.last_cpu_s)
                            wall.append(time.monotonic() - t0)
                            server_cpu.append(_process_cpu_s(server.pid) - srv0)
                            assert done.returncode == 0, done.stderr
                        for key, values in (("wall", wall), ("client", client), ("server", server_cpu)):
                            results[mode][key].append(statistics.median(values))
            finally:
                forks.close()
    print(f"# {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f} at the end; {opts.runs} runs of {opts.calls} calls each way; "
          f"--hash {opts.hash}")
    print(f"fork server warm-up (imports, once per server): {warm_up_s:.2f} s")
    print("| per call (median of the runs' medians) | wall s | client CPU s | server CPU s |")
    print("|---|---|---|---|")
    for mode, label in (("exec", "exec of the console script"), ("fork", "forked child of the warm client")):
        r = results[mode]
        print(f"| {label} | {statistics.median(r['wall']):.3f} | {statistics.median(r['client']):.3f} | "
              f"{statistics.median(r['server']):.3f} |")


if __name__ == "__main__":
    main()
