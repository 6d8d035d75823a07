#!/usr/bin/env python3
"""Control-plane benchmark: vmqos's reconcile against `tc -batch` and one `tc` process per command.

Usage (as root, from the repository root):

    .venv/bin/python bench/apply_bench.py --ports 1000 --runs 3
    .venv/bin/python bench/apply_bench.py --ports 10000 --runs 1 --per-process-sample 100
    .venv/bin/python bench/apply_bench.py --ports 1000 --runs 1 --profile   # cProfile of (a)

Every measurement runs in a throw-away network namespace `vqbench<hex>` holding N veth pairs
(`vqp<i>`/`vqq<i>`); creating them is not timed, and the namespace is deleted in `finally`.
Each port is limited in both directions in shape mode, so it gets an HTB tree on the port, an
IFB with its own HTB tree, and two nft chains with their counters (the one on the port's
ingress hook counts, accounts per IP and forwards to the IFB).

Measured (median of --runs runs; the namespace is re-created between from-empty runs):
  plan          plan_host(state) for all N ports (pure Python)
  (a) vmqos     Reconciler(ns).reconcile(plans) from empty, verify=True (reads back first)
  (b) batch     the same objects as `ip -batch` (IFBs) + `tc -batch` + one `nft -f`: the baseline
  (c) per-proc  one `tc`/`ip` process per command (as libvirt does) + one `nft -f`
  (d) no-op     re-apply of all N ports: verify=False (trusted fingerprints) and verify=True
  (e) live      one port's ingress rate changed among N ports, verify=False (median of --changes)

Prints a Markdown table and a JSON document (also written to --json if given).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import secrets
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from vmqos.reconcile.execute import Reconciler

import vmqos.core.plan.host as host_plans
import vmqos.reconcile.execute as reconcile_mod
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.diff import diff
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.render import POLICER_COMMENT, is_nft, nft_script, tc_commands

MBIT = 1_000_000


# -- setup (never timed) ---------------------------------------------------------------------------

def sh(argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, input=input, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return done


def _rtnl_wait() -> float:
    """Seconds a tiny rtnl-locked request (the qdisc dump of this namespace) waited for its answer."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.settimeout(5)
        t0 = time.perf_counter()
        sock.send(struct.pack("=IHHII", 36, 38, 0x301, 1, 0) + bytes(20))  # RTM_GETQDISC, request | dump
        while True:
            data = sock.recv(1 << 16)
            if struct.unpack_from("=H", data, len(data) - 20 + 4)[0] in (2, 3):  # NLMSG_ERROR / NLMSG_DONE
                return time.perf_counter() - t0


def settle(max_wait: float = 90.0, idle_wanted: float = 0.85) -> float:
    """Wait until a deleted namespace's devices are freed: the kernel frees them in the background
    while holding rtnl, the lock every ip/tc/netlink request needs.

    Done when the CPUs are mostly idle, or, on a machine shared with other work (where they never
    are), when rtnl answers at once three times in a row."""
    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return vals[3] + vals[4], sum(vals)
    start = time.monotonic()
    free = 0
    while time.monotonic() - start < max_wait:
        i0, t0 = snap()
        time.sleep(0.5)
        i1, t1 = snap()
        if t1 > t0 and (i1 - i0) / (t1 - t0) >= idle_wanted:
            break
        free = free + 1 if _rtnl_wait() < 0.005 else 0
        if free >= 3:
            break
    return time.monotonic() - start


def exit_on_sigterm(code: int = 3) -> None:
    """SIGTERM exits through the `finally` blocks (so `timeout` still deletes the namespace), in this
    process only.

    pyroute2 opens a socket in a namespace from a forked child (`netns.create_socket`) and stops it
    with SIGTERM; the child inherits this handler, and a `sys.exit` there unwound the copy of the
    parent's stack: its `finally` blocks and exit handlers deleted the benchmark's namespace and
    scratch directory under the running parent (the "deleted by someone else" of 2026-12-07, seen
    again and traced on the same day). A forked child now leaves at once."""
    owner = os.getpid()

    def on_term(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            os._exit(0)
        sys.exit(code)

    signal.signal(signal.SIGTERM, on_term)


IPV6 = False  # --ipv6: keep IPv6 on the namespace's devices (see --help)


class Namespace:
    """A throw-away namespace with N veth pairs. `guard`: keep its name while it is in use.

    On the shared machine, namespaces of long benchmarks were deleted by name under them
    (2026-12-07, several times, by another process on the machine, not identified). With `guard`, a
    process holds the namespace and a thread puts its name back (a bind mount of the holder's
    namespace, as `ip netns add` makes) when it vanishes, and says so on stderr."""

    def __init__(self, ports: int, prefix: str = "vqbench", guard: bool = False) -> None:
        self.name = prefix + secrets.token_hex(3)
        self.ports = ports
        self.guard = guard
        self._holder: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self.restored = 0

    def __enter__(self) -> "Namespace":
        sh(["ip", "netns", "add", self.name])
        try:
            if self.guard:
                self._holder = subprocess.Popen(["ip", "netns", "exec", self.name, "sleep", "infinity"])
                threading.Thread(target=self._keep_name, daemon=True).start()
            if not IPV6:
                sh(["ip", "netns", "exec", self.name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1"])
            lines = ["link set lo up"]
            lines += [f"link add vqp{i} type veth peer name vqq{i}" for i in range(self.ports)]
            lines += [f"link set vqp{i} up" for i in range(self.ports)]
            lines += [f"link set vqq{i} up" for i in range(self.ports)]
            sh(["ip", "-n", self.name, "-batch", "-"], input="\n".join(lines) + "\n")
        except BaseException:
            self.delete()
            raise
        return self

    def _keep_name(self) -> None:
        path = f"/run/netns/{self.name}"
        while not self._stop.wait(0.05):
            holder = self._holder
            if holder is None or os.path.exists(path):
                continue
            open(path, "w").close()
            subprocess.run(["mount", "--bind", f"/proc/{holder.pid}/ns/net", path], check=False)
            self.restored += 1
            print(f"namespace {self.name}: its name was deleted by someone else; put back", file=sys.stderr)

    def delete(self) -> None:
        self._stop.set()
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __exit__(self, *exc: object) -> None:
        self.delete()
        # The kernel frees a deleted namespace's devices in a worker that holds rtnl, the lock
        # every ip/tc/netlink request needs: measuring before it is done measures the cleanup.
        settle(max_wait=60 + self.ports * 0.1)


# -- the desired state -----------------------------------------------------------------------------

def port_qos(i: int, bump: int = 0) -> NetworkQos:
    return NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit((100 + i % 10 + bump) * MBIT)),
                      egress=DirectionQos(bandwidth=BandwidthLimit((50 + i % 5) * MBIT)))


def instance(i: int, bump: int = 0) -> InstanceSpec:
    return InstanceSpec(f"vm{i}", ports=(PortSpec(f"vqp{i}", limits=port_qos(i, bump), egress_mode=EgressMode.SHAPE),))


def host_state(n: int) -> HostState:
    return HostState(instances={f"vm{i}": instance(i) for i in range(n)})


# -- the baselines ---------------------------------------------------------------------------------

def baseline_scripts(plans: dict[str, Any]) -> tuple[list[str], list[str], str]:
    """(ip lines, tc lines, nft script) for the same objects, rendered with vmqos's own renderer."""
    ip_lines: list[str] = []
    tc_lines: list[str] = []
    nft_ops = []
    for plan in plans.values():
        for op in diff(plan.objects, []):
            if is_nft(op.obj):
                nft_ops.append(op)
                continue
            for cmd in tc_commands(op):
                if cmd.startswith(POLICER_COMMENT):  # a bpf program's description (police, AQM): not a tc command;
                    continue                         # the baselines load no program, vmqos loads it over bpf(2)
                tool, rest = cmd.split(" ", 1)
                (ip_lines if tool == "ip" else tc_lines).append(rest)
    return ip_lines, tc_lines, nft_script(nft_ops)


def run_batch_baseline(ns: str, ip_lines: list[str], tc_lines: list[str], nft: str, tmp: str) -> float:
    ip_file, tc_file, nft_file = (os.path.join(tmp, n) for n in ("ip.batch", "tc.batch", "rules.nft"))
    for path, text in ((ip_file, "\n".join(ip_lines) + "\n"), (tc_file, "\n".join(tc_lines) + "\n"), (nft_file, nft)):
        with open(path, "w") as f:
            f.write(text)
    t0 = time.perf_counter()
    sh(["ip", "-n", ns, "-batch", ip_file])
    sh(["tc", "-n", ns, "-batch", tc_file])
    sh(["ip", "netns", "exec", ns, "nft", "-f", nft_file])
    return time.perf_counter() - t0


def run_per_process(ns: str, ip_lines: list[str], tc_lines: list[str], nft: str, tmp: str) -> float:
    nft_file = os.path.join(tmp, "rules.nft")
    with open(nft_file, "w") as f:
        f.write(nft)
    t0 = time.perf_counter()
    for line in ip_lines:
        sh(["ip", "-n", ns, *shlex.split(line)])
    for line in tc_lines:
        sh(["tc", "-n", ns, *shlex.split(line)])
    sh(["ip", "netns", "exec", ns, "nft", "-f", nft_file])
    return time.perf_counter() - t0


# -- vmqos, with the time split by phase (wrappers only; nothing in src/ is changed) ---------------

class Phases:
    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - t0
        return timed


def instrumented(rec: Reconciler, phases: Phases) -> None:
    rec.observe = phases.wrap("read-back", rec.observe)  # type: ignore[method-assign]
    rec.nft.run_encoded = phases.wrap("nft -j -f", rec.nft.run_encoded)  # type: ignore[method-assign]
    rec.tc.replace = phases.wrap("netlink replace", rec.tc.replace)  # type: ignore[method-assign]


_real_run_batch = reconcile_mod.run_batch
_batch_phases: list[Phases] = []


def _run_batch(tool: str, lines: Any, netns: Any) -> Any:
    fn = _real_run_batch
    for ph in _batch_phases:
        fn = ph.wrap(f"{tool} -batch", fn)
    return fn(tool, lines, netns)


reconcile_mod.run_batch = _run_batch  # type: ignore[assignment]


def writes(results: list[Any]) -> int:
    return sum(r.writes for r in results)


def errors(results: list[Any]) -> list[str]:
    return [f"{r.port}: {r.error}" for r in results if r.error]


# -- one run ---------------------------------------------------------------------------------------

def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def bench(args: argparse.Namespace) -> dict[str, Any]:
    n = args.ports
    t: dict[str, list[float]] = {k: [] for k in (
        "plan", "vmqos_reconcile", "batch_total", "per_process", "noop_trusted", "noop_trusted_with_plan",
        "noop_verify",
        "live_change", "live_change_kernel", "live_change_plan")}
    phase_runs: list[dict[str, float]] = []
    noop_phase_runs: list[dict[str, float]] = []
    checks: dict[str, Any] = {}
    profile_text = None

    state = host_state(n)
    scratch = tempfile.TemporaryDirectory(prefix="vqbench")  # removed when done, even on an exception
    tmp = scratch.name
    for run in range(args.runs):
        host_plans._plan.cache_clear()  # time planning from cold, not the memo of the previous run
        t0 = time.perf_counter()
        plans = plan_host(state)
        t["plan"].append(time.perf_counter() - t0)
        ip_lines, tc_lines, nft = baseline_scripts(plans)
        checks.update(ip_lines=len(ip_lines), tc_lines=len(tc_lines), nft_lines=nft.count("\n"),
                      kernel_objects=sum(len(p.objects) for p in plans.values()))

        # (b) tc -batch baseline, then check that vmqos sees exactly its plan in the kernel
        with Namespace(n) as ns:
            t["batch_total"].append(run_batch_baseline(ns.name, ip_lines, tc_lines, nft, tmp))
            if run == 0:
                vs = min(n, args.verify_sample if args.verify_sample > 0 else n)
                with Reconciler(ns.name) as rec:
                    res, _ = rec.reconcile(dict(list(plans.items())[:vs]))
                checks["baseline_then_vmqos_verify_ports"] = vs
                checks["baseline_then_vmqos_verify_writes"] = writes(res)
                checks["baseline_then_vmqos_verify_errors"] = errors(res)[:3]

        # (a) vmqos from empty, then (d) no-op and (e) live change in the same namespace
        with Namespace(n) as ns:
            phases = Phases()
            _batch_phases.append(phases)
            prof = cProfile.Profile() if args.profile and run == 0 else None
            with Reconciler(ns.name) as rec:
                if args.skip_vmqos_from_empty:  # too slow at this size: the same objects via the batch
                    run_batch_baseline(ns.name, ip_lines, tc_lines, nft, tmp)
                    res, fps = [], {p: plan.fingerprint for p, plan in plans.items()}
                else:
                    instrumented(rec, phases)
                    t0 = time.perf_counter()
                    if prof:
                        prof.enable()
                    res, fps = rec.reconcile(plans)
                    if prof:
                        prof.disable()
                    t["vmqos_reconcile"].append(time.perf_counter() - t0)
                    checks["from_empty_writes"] = writes(res)
            _batch_phases.remove(phases)
            errs = errors(res)
            assert not errs, errs[:5]
            assert len(fps) == n and all(fps.values())
            phase_runs.append(phases.t)
            if prof:
                out = io.StringIO()
                st = pstats.Stats(prof, stream=out).strip_dirs()
                st.sort_stats("tottime").print_stats(15)
                st.sort_stats("cumulative").print_stats(25)
                profile_text = out.getvalue()

            with Reconciler(ns.name) as rec:
                noop_phases = Phases()
                instrumented(rec, noop_phases)
                t0 = time.perf_counter()
                res, rec_fps = rec.reconcile(plans, applied=fps, verify=False)
                t["noop_trusted"].append(time.perf_counter() - t0)
                assert writes(res) == 0, f"no-op (trusted) wrote {writes(res)}"
                assert all(r.skipped for r in res)
                # What a periodic agent pass costs: plan the desired state again (memoized) and reconcile.
                t0 = time.perf_counter()
                res, _ = rec.reconcile(plan_host(state), applied=fps, verify=False)
                t["noop_trusted_with_plan"].append(time.perf_counter() - t0)
                assert writes(res) == 0
                vs = min(n, args.verify_sample if args.verify_sample > 0 else n)
                some = dict(list(plans.items())[:vs]) if vs < n else plans
                t0 = time.perf_counter()
                res, _ = rec.reconcile(some, applied=fps, verify=True)
                t["noop_verify"].append((time.perf_counter() - t0) * n / vs)
                checks["noop_verify_sample_ports"] = vs
                checks["noop_verify_extrapolated"] = vs < n
                assert writes(res) == 0, f"no-op (verify) wrote {writes(res)}: " \
                    f"{[op.describe() for r in res for op in r.ops][:5]}"
                assert not errors(res), errors(res)[:5]
                noop_phase_runs.append(noop_phases.t)

            # (e) one live change among n ports: a fresh Reconciler (as a CLI call would be)
            picks = [(k * 7919) % n for k in range(args.changes)]
            live, kernel, plan_t = [], [], []
            with Reconciler(ns.name) as rec:
                for k, i in enumerate(picks):
                    ph = Phases()
                    instrumented(rec, ph)
                    _batch_phases[:] = [ph]
                    tp = time.perf_counter()
                    one = plan_host(HostState(instances={f"vm{i}": instance(i, bump=10 + k % 7)}))
                    plan_t.append(time.perf_counter() - tp)
                    t0 = time.perf_counter()
                    res, rec_fps = rec.reconcile(one, applied=fps, verify=False)
                    live.append(time.perf_counter() - t0)
                    kernel.append(ph.t.get("netlink replace", 0.0) + ph.t.get("tc -batch", 0.0))
                    assert not errors(res), errors(res)
                    assert 0 < writes(res) <= 3, [op.describe() for r in res for op in r.ops]
                    checks["live_change_ops"] = [op.describe() for r in res for op in r.ops]
                    fps.update(rec_fps)  # type: ignore[arg-type]
                    # restore the recorded plan for the next pick's applied= (fps now holds the new one)
            _batch_phases.clear()
            t["live_change"].append(statistics.median(live))
            t["live_change_kernel"].append(statistics.median(kernel))
            t["live_change_plan"].append(statistics.median(plan_t))
            checks["live_change_max_s"] = max(live)

        # (c) one process per command, once
        if run == 0 and args.per_process_sample != 0:
            sample = min(n, args.per_process_sample if args.per_process_sample > 0 else n)
            sub = dict(list(plans.items())[:sample])
            s_ip, s_tc, s_nft = baseline_scripts(sub)
            with Namespace(n) as ns:  # all n ports' devices exist: each tc process dumps them all
                took = run_per_process(ns.name, s_ip, s_tc, s_nft, tmp)
            t["per_process"].append(took * n / sample)
            checks["per_process_sample_ports"] = sample
            checks["per_process_sample_s"] = took
            checks["per_process_extrapolated"] = sample < n
            checks["per_process_commands"] = len(s_ip) + len(s_tc)

    med = {k: median(v) for k, v in t.items()}
    phase_med = {k: median([p.get(k, 0.0) for p in phase_runs]) for k in sorted({k for p in phase_runs for k in p})}
    noop_med = {k: median([p.get(k, 0.0) for p in noop_phase_runs])
                for k in sorted({k for p in noop_phase_runs for k in p})}
    return {"ports": n, "runs": args.runs, "times_s": t, "median_s": med, "vmqos_phases_median_s": phase_med,
            "noop_verify_phases_median_s": noop_med, "checks": checks, "profile": profile_text}


# -- reporting -------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def first_line(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    import pyroute2
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": model,
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), "tc": first_line(["tc", "-V"]), "nft": first_line(["nft", "-v"]),
            "pyroute2": getattr(pyroute2, "__version__", "?"), "ipv6_in_namespace": IPV6}


def emit_json(doc: dict[str, Any], path: str | None) -> None:
    """Print the run's JSON document, and write it to `path` too when given (--json)."""
    text = json.dumps(doc, indent=2)
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


def fmt(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x * 1000:.2f} ms" if x < 1 else f"{x:.3f} s"


def table(r: dict[str, Any]) -> str:
    m = r["median_s"]
    base = m["batch_total"]
    c = r["checks"]

    def ratio(x: float | None) -> str:
        return f"{x / base:.2f}×" if x is not None and base else "–"
    pp = "per-process (c): one `tc`/`ip` process per command + `nft -f`"
    if c.get("per_process_extrapolated"):
        pp += f" — **extrapolated** from {c['per_process_sample_ports']} ports"
    both = m["plan"] + m["vmqos_reconcile"] if m["vmqos_reconcile"] is not None else None
    rows = [
        ("plan: `plan_host` (Python only)", m["plan"], ratio(m["plan"])),
        ("(a) vmqos from empty: `reconcile(plans)`, verify=True", m["vmqos_reconcile"], ratio(m["vmqos_reconcile"])),
        ("(a) vmqos plan + reconcile", both, ratio(both)),
        ("(b) baseline: `ip -batch` + `tc -batch` + `nft -f`", base, "1.00×"),
        (pp, m["per_process"], ratio(m["per_process"])),
        ("(d) no-op re-apply, verify=False (trusted fingerprints)", m["noop_trusted"], ratio(m["noop_trusted"])),
        ("(d) … with `plan_host` of the desired state again (an agent's pass; plans are memoized)",
         m["noop_trusted_with_plan"], ratio(m["noop_trusted_with_plan"])),
        ("(d) no-op re-apply, verify=True (full read-back)" + (
            f" — **extrapolated** from {c['noop_verify_sample_ports']} ports" if c.get("noop_verify_extrapolated")
            else ""), m["noop_verify"], ratio(m["noop_verify"])),
        ("(e) one live change, `reconcile` (verify=False)", m["live_change"], "–"),
        ("(e) … of which kernel (`tc -batch` process or netlink class replace)", m["live_change_kernel"], "–"),
        ("(e) … planning the changed port (not in the row above)", m["live_change_plan"], "–"),
    ]
    out = [f"### {r['ports']} ports, median of {r['runs']} run(s)", "",
           "| measurement | median | vs `tc -batch` |", "|---|---:|---:|"]
    out += [f"| {name} | {fmt(v)} | {rt} |" for name, v, rt in rows]
    out += ["", "vmqos from-empty time by phase (median): " + ", ".join(
        f"{k} {fmt(v)}" for k, v in r["vmqos_phases_median_s"].items())]
    other = (m["vmqos_reconcile"] or 0) - sum(r["vmqos_phases_median_s"].values())
    out[-1] += f", rest (fingerprints, diff, Python) {fmt(other)}"
    out += ["", f"objects: {c.get('kernel_objects')} kernel objects; baseline {c.get('ip_lines')} ip lines, "
            f"{c.get('tc_lines')} tc lines, {c.get('nft_lines')} nft lines; "
            f"vmqos verify after the baseline: {c.get('baseline_then_vmqos_verify_writes')} writes"]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--changes", type=int, default=20, help="live changes timed per run (e)")
    ap.add_argument("--per-process-sample", type=int, default=-1,
                    help="ports applied one process per command (c); -1: all, 0: skip; fewer than --ports "
                         "is extrapolated linearly (and marked so)")
    ap.add_argument("--verify-sample", type=int, default=-1,
                    help="ports re-applied with verify=True in (d); -1: all; fewer than --ports is "
                         "extrapolated linearly (and marked so)")
    ap.add_argument("--skip-vmqos-from-empty", action="store_true",
                    help="skip (a); (d) and (e) then start from the baseline's objects with computed fingerprints")
    ap.add_argument("--profile", action="store_true", help="cProfile the first from-empty reconcile")
    ap.add_argument("--ipv6", action="store_true",
                    help="leave IPv6 on in the bench namespace; off by default, because with thousands of "
                         "veth pairs the kernel's IPv6 autoconfiguration between them (DAD, MLD, the shared "
                         "fe80::/64 route list) holds rtnl and dominates every measurement")
    ap.add_argument("--json", help="also write the JSON here")
    args = ap.parse_args()
    global IPV6
    IPV6 = args.ipv6
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    info = machine()
    settle()
    result = bench(args)
    result["machine"] = info
    m = result["median_s"]
    base = m["batch_total"]
    va = m["vmqos_reconcile"]
    result["targets"] = {
        "full_apply_within_1.2x_of_batch": {"ratio": va / base if va else None,
                                            "ratio_with_plan": (va + m["plan"]) / base if va else None,
                                            "met": va / base <= 1.2 if va else None},
        "noop_under_0.5s": {"trusted_s": m["noop_trusted"], "met": m["noop_trusted"] < 0.5,
                            "applies_to": "10,000 ports"},
        "live_change_under_10ms": {"s": m["live_change"], "met": m["live_change"] < 0.010},
    }
    print(f"machine: Linux {info['kernel']}, {info['cpus']} CPUs ({info['cpu_model']}); {info['date']}; "
          f"{info['tc']}; {info['nft']}; pyroute2 {info['pyroute2']}; Python {info['python']}")
    print()
    print(table(result))
    print()
    if result["profile"]:
        print("cProfile of (a), first run:")
        print(result["profile"])
    emit_json({k: v for k, v in result.items() if k != "profile"}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
