#!/usr/bin/env python3
"""A fleet on this machine: how long a shared policy's change takes to reach every agent.

Usage (from the repository root, as root or as a user that may run PostgreSQL's initdb):

    .venv/bin/python bench/fleet_bench.py --hosts 1000 --ports 100000 --shared 10000 --burst 100 --runs 3

What runs, each in its own process:

- a throw-away PostgreSQL (tests/pgcluster.py's Cluster: initdb in a temporary directory, a unix
  socket, no TCP), seeded straight through the store (bench/fleet_server_bench.py's `_populate`:
  H hosts, N Neutron ports bound to them, `--shared` of them, spread evenly over every host, on one
  QoS policy, the others on 99 others; creating 100,000 ports through the API would take longer
  than the bench);
- the real server, `vmqos server --db URL` (uvicorn, one process, its access log on as deployed),
  whose CPU is read from /proc/<pid>/stat;
- `--procs` agent processes, each following H/procs hosts with one thread per host. A simulated
  agent is the agent's real client side and not its kernel side: `ServerFeed` over the real
  `ServerClient` (keystoneauth, HTTP, the answers parsed into the agent's own `DesiredPage`, every
  row's policy parsed into a `Policy`), reading `/desired` once, then long-polling
  `/desired/changes?since=R&wait=S` forever and folding each answer into its rows, as the
  agent's cache does. It does not run the reconciler: a thousand reconcilers on the two cores the
  server runs on would measure this machine's CPU, not the server, and on a real fleet each
  agent has its own host (one live change costs 3.6 ms there, bench/apply_bench.py (e)).

Timed, `--runs` times each (the figures are the medians over runs of each statistic):

  one change   the shared policy's bandwidth_limit rule changed once through the Neutron API
               (PUT .../bandwidth_limit_rules/{id}, which recomputes the rows in the request); per
               host, from just before the PUT to the moment its agent holds an answer whose
               revision covers the change: p50, p99, max over hosts
  burst        `--burst` such changes back to back (each PUT waits for its answer): per change and
               host, from that change's PUT to the first answer covering it

For both: the server's CPU (user+system) from the first PUT until the last agent has the last
change, per change; the PUT's own time (median); the watch's bytes per agent (response bodies and
headers as received). Before each run's one change, the idle server's CPU per second over `--idle`
seconds (every agent waiting; their empty answers come in a wave once per long-poll period);
and at the end every agent's rows compared with the server's `/desired` of its host (a missing or
stale row is a missed revision). Prints a Markdown table and a JSON document (`--json FILE`).

"No agent missing a revision", checked for both: every (change, agent) pair covered by an answer
whose revision is the change's or a newer one (the long poll coalesces the changes made while an
agent was away into one answer: `missed` counts the pairs never covered), every agent at the last
change's revision at the end (`behind`), and each agent's answers in strictly increasing revisions,
every row inside its poll's (since, revision] (`out of order`: the agents that broke this once).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from fleet_server_bench import ADMIN_PASSWORD, _populate  # noqa: E402

from tests.pgcluster import _make  # noqa: E402
from vmqos.core.errors import VmqosError  # noqa: E402
from vmqos.store import Store  # noqa: E402
from vmqos.store import fleet as records  # noqa: E402

WAIT_S = 30.0
# `vmqos server` under cProfile (the event loop's thread, where the long poll's answers are made): uvicorn
# raises SIGTERM again once it has shut down, so the profile is written by a handler it hands it back to
PROFILED = """
import cProfile, os, signal, sys
from vmqos.cli.main import main
profile = cProfile.Profile()
def written(signum, frame):
    profile.disable()
    profile.dump_stats({out!r})
    os._exit(0)
signal.signal(signal.SIGTERM, written)
sys.argv[0] = "vmqos"
profile.enable()
try:
    main()
finally:
    written(0, None)
"""
CLK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the simulated agents (child processes)

def _agents(url: str, token: str, hosts: list[str], conn: Any) -> None:
    """One process's agents: a thread per host; answers the parent's commands on `conn`."""
    from keystoneauth1 import session as ks_session
    from keystoneauth1 import token_endpoint
    from requests.adapters import HTTPAdapter

    from vmqos.agent.feed import ServerFeed
    from vmqos.services.server_client import ServerClient

    session = ks_session.Session(auth=token_endpoint.Token(url, token), timeout=WAIT_S + 30)
    session.session.mount("http://", HTTPAdapter(pool_connections=2, pool_maxsize=len(hosts) + 8))
    local = threading.local()

    def count(response: Any, *args: Any, **kwargs: Any) -> None:
        head = sum(len(k) + len(v) + 4 for k, v in response.headers.items()) + 17
        local.bytes = getattr(local, "bytes", 0) + len(response.content) + head

    session.session.hooks["response"].append(count)
    stop = threading.Event()
    state: dict[str, dict[str, Any]] = {h: {"arrivals": [], "rows": {}, "revision": None, "errors": 0, "bytes": 0,
                                            "bytes_start": 0, "backwards": 0, "why": []} for h in hosts}

    def failed(mine: dict[str, Any], exc: VmqosError) -> None:
        """Count a failed request and keep the first few messages, so a run with errors says which."""
        mine["errors"] += 1
        if len(mine["why"]) < 3:
            mine["why"].append(f"{time.strftime('%H:%M:%S')} {str(exc)[:300]}")

    def follow(host: str) -> None:
        feed, mine = ServerFeed(ServerClient(url, session, host=host)), state[host]
        while mine["revision"] is None and not stop.is_set():
            try:
                page = feed.desired()
            except VmqosError as exc:
                failed(mine, exc)
                time.sleep(0.5)
                continue
            mine["rows"] = {p.device: (p.revision, p.policy) for p in page.ports}
            mine["revision"] = page.revision
        mine["bytes_start"] = getattr(local, "bytes", 0)
        while not stop.is_set():
            try:
                page = feed.changes(mine["revision"], WAIT_S)
            except VmqosError as exc:
                failed(mine, exc)
                time.sleep(0.5)
                continue
            now = time.monotonic()
            if page.revision < mine["revision"] or any(not mine["revision"] < p.revision <= page.revision
                                                       for p in page.ports):
                mine["backwards"] += 1  # an answer behind the poll's revision, or a row outside (since, revision]
            for p in page.ports:
                if p.policy is None:
                    mine["rows"].pop(p.device, None)
                else:
                    mine["rows"][p.device] = (p.revision, p.policy)
            if page.ports:
                mine["arrivals"].append((now, page.revision))
            mine["revision"] = page.revision
            mine["bytes"] = getattr(local, "bytes", 0) - mine["bytes_start"]

    for h in hosts:
        threading.Thread(target=follow, args=(h,), daemon=True).start()
        time.sleep(0.002)  # 1,000 first reads of 100 rows, not all in the same millisecond
    while True:
        command, arg = conn.recv()
        if command == "reached":  # how many of my hosts hold revision >= arg
            conn.send(sum(1 for s in state.values() if s["revision"] is not None and s["revision"] >= arg))
        elif command == "mark":  # forget the arrivals and bytes so far
            for s in state.values():
                s["arrivals"].clear()
                s["bytes_start"] += s["bytes"]
                s["bytes"] = 0
            conn.send(True)
        elif command == "collect":
            conn.send({h: {"arrivals": list(s["arrivals"]), "bytes": s["bytes"], "errors": s["errors"],
                           "backwards": s["backwards"], "why": list(s["why"])} for h, s in state.items()})
        elif command == "verify":  # every host's rows against the server's /desired, read now
            client = ServerClient(url, session)
            wrong = []
            unread = []
            for h, s in state.items():
                for attempt in range(3):
                    try:
                        snap = ServerFeed(ServerClient(url, session, host=h)).desired()
                        break
                    except VmqosError:  # a busy server's timeout: said, not a crash of the whole bench
                        time.sleep(1)
                else:
                    unread.append(h)
                    continue
                want = {p.device: (p.revision, p.policy) for p in snap.ports}
                if want != s["rows"]:
                    wrong.append(h)
            del client
            conn.send((wrong, unread))
        elif command == "cpu":
            t = os.times()
            conn.send(t.user + t.system)
        elif command == "stop":
            stop.set()
            conn.send(True)
            return


# ------------------------------------------------------------------ the parent

def _cpu(pid: int) -> float:
    """The CPU seconds of the process and of its living children (`--workers N`: uvicorn's workers), read
    from /proc: utime and stime (fields 14 and 15), and the children's through /proc/PID/task/*/children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / CLK
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        total += sum(_cpu(int(child)) for child in task.read_text().split())
    return total


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


class Fleet:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        (tmp / "pg").mkdir()
        self.server: subprocess.Popen[bytes] | None = None
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        self.cluster = _make(tmp / "pg")
        try:
            self.cluster.start()
            self.db = self.cluster.url(self.cluster.create_database())
        except BaseException:
            self.cluster.stop()
            raise

    def seed(self) -> tuple[str, str, float]:
        start = time.perf_counter()
        with Store(self.db) as store:
            _, policy, rule = _populate(store, self.args.ports, self.args.hosts, self.args.shared)
        return policy, rule, time.perf_counter() - start

    def start_server(self) -> float:
        start = time.perf_counter()
        self.url = f"http://127.0.0.1:{self.args.port}"
        log = open(self.tmp / "server.log", "wb")  # noqa: SIM115 - the child's, closed with the run
        run = ["-c", PROFILED.format(out=self.args.profile)] if self.args.profile else ["-m", "vmqos.cli.main"]
        self.server = subprocess.Popen([sys.executable, *run, "server", "--listen",
                                        f"127.0.0.1:{self.args.port}", "--db", self.db,
                                        "--workers", str(self.args.workers)], stdout=log,
                                       stderr=subprocess.STDOUT)
        while True:
            if self.server.poll() is not None:
                raise SystemExit(f"the server exited: {(self.tmp / 'server.log').read_text()[-2000:]}")
            try:
                requests.get(f"{self.url}/v3", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.3)
        body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        answer = requests.post(f"{self.url}/v3/auth/tokens", json=body, timeout=30)
        answer.raise_for_status()
        self.token = answer.headers["X-Subject-Token"]
        return time.perf_counter() - start

    def start_agents(self) -> float:
        start = time.perf_counter()
        names = [f"host-{i:04d}" for i in range(self.args.hosts)]
        ctx = mp.get_context("spawn")
        for k in range(self.args.procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_agents, args=(self.url, self.token, names[k::self.args.procs], child),
                               daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        with Store(self.db) as store:
            now = records.counters(store).revision
        self.settle(now, 600)
        return time.perf_counter() - start

    def ask(self, command: str, arg: Any = None) -> list[Any]:
        for p in self.pipes:
            p.send((command, arg))
        return [p.recv() for p in self.pipes]

    def settle(self, revision: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while sum(self.ask("reached", revision)) < self.args.hosts:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def change(self, policy: str, rule: str, kbps: int) -> tuple[float, int, float]:
        """One rule change through the Neutron API: (monotonic time before the PUT, the counter after it,
        the PUT's own time)."""
        at = time.monotonic()
        answer = requests.put(f"{self.url}/v2.0/qos/policies/{policy}/bandwidth_limit_rules/{rule}",
                              json={"bandwidth_limit_rule": {"max_kbps": kbps}},
                              headers={"X-Auth-Token": self.token}, timeout=120)
        answer.raise_for_status()
        took = time.monotonic() - at
        with Store(self.db) as store:
            return at, records.counters(store).revision, took

    def stop(self) -> None:
        try:
            if self.pipes:
                self.ask("stop")
        except (OSError, EOFError):
            pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
        self.cluster.stop()


def _round(fleet: Fleet, policy: str, rule: str, changes: int, kbps: int, idle: float) -> dict[str, Any]:
    """`changes` rule changes back to back; per change and host the time to its agent's first answer
    that covers it; the server's CPU over the round, and over `idle` seconds before it."""
    assert fleet.server is not None
    idle_from = _cpu(fleet.server.pid)
    time.sleep(idle)
    idle_cpu = (_cpu(fleet.server.pid) - idle_from) / idle if idle else None
    fleet.ask("mark")
    cpu0, agents0 = _cpu(fleet.server.pid), sum(fleet.ask("cpu"))
    sent = [fleet.change(policy, rule, kbps + i) for i in range(changes)]
    settled = fleet.settle(sent[-1][1], fleet.args.timeout)
    end = time.monotonic()
    cpu = _cpu(fleet.server.pid) - cpu0
    agents_cpu = sum(fleet.ask("cpu")) - agents0
    seen: dict[str, Any] = {}
    for part in fleet.ask("collect"):
        seen.update(part)
    latencies, missing = [], 0
    for at, revision, _ in sent:
        for host in seen.values():
            first = next((t for t, r in host["arrivals"] if r >= revision), None)
            if first is None:
                missing += 1
            else:
                latencies.append(first - at)
    # "no agent missing a revision": every change covered by an answer (its own or a newer one that
    # coalesced it), every agent at the last change's revision at the end, each agent's answers in
    # strictly increasing revisions with every row inside the poll's (since, revision]
    last = sent[-1][1]
    behind = sum(1 for host in seen.values() if not host["arrivals"] or host["arrivals"][-1][1] < last)
    unordered = sum(1 for host in seen.values()
                    if any(a[1] >= b[1] for a, b in zip(host["arrivals"], host["arrivals"][1:])) or host["backwards"])
    answers = [len(host["arrivals"]) for host in seen.values()]
    wall = end - sent[0][0]
    return {"changes": changes, "settled": settled, "missing": missing, "behind": behind, "unordered": unordered,
            "answers_per_agent": statistics.mean(answers), "samples": len(latencies),
            "p50_s": _pct(latencies, 0.5), "p99_s": _pct(latencies, 0.99), "max_s": max(latencies),
            "wall_s": wall, "put_s": statistics.median(took for _, _, took in sent),
            "server_cpu_s": cpu, "server_cpu_per_change_s": cpu / changes,
            "server_idle_cpu_per_s": idle_cpu, "agents_cpu_s": agents_cpu,
            "bytes_per_agent": statistics.mean(h["bytes"] for h in seen.values()),
            "errors": sum(h["errors"] for h in seen.values()),
            "error_samples": [why for h in seen.values() for why in h["why"]][:10]}


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in rounds[0].items():
        values = [r[key] for r in rounds]
        if isinstance(value, bool):
            out[key] = all(values)
        elif isinstance(value, (int, float)) and key != "changes" and None not in values:
            out[key] = max(values) if key in ("missing", "behind", "unordered", "errors") else statistics.median(values)
        elif key == "error_samples":  # the agents' first messages, kept across rounds: the last round's
            out[key] = rounds[-1][key]
        else:
            out[key] = value
    return out


def _stop_on_sigterm() -> None:
    """SIGTERM (a background job ignores SIGINT) unwinds through `main`'s `finally`, which stops the server,
    the agents and PostgreSQL, in this process only: a forked child that inherited the handler leaves at
    once instead of running a copy of the parent's cleanup under it (apply_bench.exit_on_sigterm's lesson;
    the agents are spawned, not forked, and a spawned child does not run `main`, but a library's fork
    would inherit the handler)."""
    owner = os.getpid()

    def on_term(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            os._exit(0)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


def main() -> None:
    _stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--ports", type=int, default=100_000)
    parser.add_argument("--shared", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=4, help="agent processes (threads: hosts/procs each)")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30.5,
                        help="seconds of idle server CPU measured before each run's one change (at least one long-poll "
                             "period: the agents' empty answers come in a wave every 30 s after the last change)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--port", type=int, default=19696)
    parser.add_argument("--workers", type=int, default=1, help="the server's processes (`vmqos server --workers`); "
                                                               "its CPU is the sum over them")
    parser.add_argument("--json", help="write the JSON document here too")
    parser.add_argument("--profile", help="run the server under cProfile (its event loop's thread) and write the "
                                          "profile here when it stops (python -m pstats FILE)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vq-fleet-bench-"))
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
    fleet: Fleet | None = None
    out: dict[str, Any] = {"hosts": args.hosts, "ports": args.ports, "shared": args.shared, "procs": args.procs,
                           "workers": args.workers}
    try:
        fleet = Fleet(args, tmp)
        policy, rule, out["seed_s"] = fleet.seed()
        out["server_start_s"] = fleet.start_server()
        out["agents_start_s"] = fleet.start_agents()
        singles, bursts = [], []
        for run in range(args.runs):
            singles.append(_round(fleet, policy, rule, 1, 20_000 + 1000 * run, args.idle))
            bursts.append(_round(fleet, policy, rule, args.burst, 40_000 + 1000 * run, 2.0))
            print(f"run {run + 1}: one {singles[-1]['p99_s']:.3f} s p99, burst {bursts[-1]['p99_s']:.3f} s p99",
                  json.dumps({"one": singles[-1], "burst": bursts[-1]}), file=sys.stderr, flush=True)
        checked = fleet.ask("verify")
        out["wrong_hosts"] = sorted(h for wrong, _ in checked for h in wrong)
        out["unverified_hosts"] = sorted(h for _, unread in checked for h in unread)
        out["one"], out["burst"] = _median(singles), _median(bursts)
        out["runs"] = {"one": singles, "burst": bursts}
    finally:
        if fleet is not None:
            fleet.stop()
        if any(r.get("errors") for r in out.get("runs", {}).get("one", []) + out.get("runs", {}).get("burst", [])):
            kept = Path(tempfile.gettempdir()) / f"fleet_bench-server-{os.getpid()}.log"
            shutil.copyfile(tmp / "server.log", kept)  # failed requests: the server's side of them is kept
            print(f"requests failed: the server's log is kept at {kept}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    _print(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


def _print(out: dict[str, Any]) -> None:
    print(f"\n{out['hosts']} agents, {out['ports']} ports, a policy on {out['shared']} of them "
          f"(seed {out['seed_s']:.1f} s, server start {out['server_start_s']:.1f} s, agents' first read "
          f"{out['agents_start_s']:.1f} s); medians of {len(out['runs']['one'])} runs\n")
    print("| | p50 | p99 | max | PUT | server CPU / change | bytes / agent / change | answers / agent | missed "
          "| behind at the end | out of order |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("one", "burst"):
        r = out[name]
        print(f"| {r['changes']} change{'s' if r['changes'] > 1 else ''} | {r['p50_s']:.3f} s | {r['p99_s']:.3f} s "
              f"| {r['max_s']:.3f} s | {r['put_s']:.3f} s | {r['server_cpu_per_change_s'] * 1e3:.0f} ms "
              f"| {r['bytes_per_agent'] / r['changes']:,.0f} | {r['answers_per_agent']:.1f} | {r['missing']} "
              f"| {r['behind']} | {r['unordered']} |")
    print(f"\nthe idle server (every agent waiting): {out['one']['server_idle_cpu_per_s']:.3f} CPU-s per s")
    print(f"agents whose rows differ from the server's at the end: {len(out['wrong_hosts'])} "
          f"(not compared, the server's /desired unread after 3 tries: {len(out['unverified_hosts'])})")
    errors = max(out["one"]["errors"], out["burst"]["errors"])
    if errors:
        print(f"requests that failed (the agents retried them): {errors}; the first messages:")
        for why in out["one"]["error_samples"] or out["burst"]["error_samples"]:
            print(f"  {why}")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
