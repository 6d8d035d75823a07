#!/usr/bin/env python3
"""Where a sampling pass spends its CPU: each netlink read alone, the kernel's part apart from the decoding.

Usage (as root, from the repository root; the 10,000-port run under the shared kernel lock):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/sample_where.py --ports 1000 3000 --reps 5

For each N, a throw-away namespace `vqsmp<hex>` gets N ports with vmqos's full plan (as
`sample_bench.py` builds it, not timed) and is deleted in `finally`. Each read is repeated --reps
times; the figure is the median CPU time of this process per read, split into user and system
(getrusage), with the number of recv() calls and bytes the kernel handed over:

  raw      the dump received into one buffer and not decoded: the kernel's work plus the syscalls
  decoded  the same dump decoded by vmqos's counter reader (what a pass does today)

Reads: the link counters (RTM_GETSTATS), every qdisc (RTM_GETQDISC), vmqos's named nft counters
(NFT_MSG_GETOBJ), and the candidates named in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import struct
import sys
import tempfile
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apply_bench as ab  # noqa: E402

PREFIX = "vqsmp"  # not `vqbench`: on the shared machine, such a namespace and scratch file went under a running bench

from vmqos.core.plan.host import plan_host  # noqa: E402
from vmqos.drivers import counters as C  # noqa: E402


def cpu() -> tuple[float, float]:
    """(user, system) seconds of this process; getrusage's total is the scheduler's exact runtime
    (os.times() counts in 10 ms ticks), its split between the two is sampled."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def measure(reps: int, fn: Callable[[], Any]) -> dict[str, Any]:
    out = fn()  # warm-up, and the read's shape
    users, systems = [], []
    for _ in range(reps):
        u0, s0 = cpu()
        fn()
        u1, s1 = cpu()
        users.append(u1 - u0)
        systems.append(s1 - s0)
    return {"user_ms": statistics.median(users) * 1e3, "sys_ms": statistics.median(systems) * 1e3,
            "cpu_ms": statistics.median(u + s for u, s in zip(users, systems)) * 1e3,
            **(out if isinstance(out, dict) else {})}


def raw_dump(sock: socket.socket, mtype: int, body: bytes, bufsize: int) -> dict[str, int]:
    """Receive a whole dump without decoding it: (recv calls, bytes, messages of the last chunk)."""
    buf = bytearray(bufsize)
    view = memoryview(buf)
    sock.send(C._NLMSGHDR.pack(16 + len(body), mtype, C.NLM_F_REQUEST | C.NLM_F_DUMP, 1, 0) + body)
    calls = nbytes = 0
    while True:
        n = sock.recv_into(view)
        calls += 1
        nbytes += n
        # the dump ends with NLMSG_DONE: the last message of the last chunk
        off, last = 0, 0
        while off + 16 <= n:
            length, rtype = struct.unpack_from("=IH", buf, off)
            last = rtype
            off += (length + 3) & ~3
        if last in (C.NLMSG_DONE, C.NLMSG_ERROR):
            return {"recv_calls": calls, "bytes": nbytes}


NLM_F_ACK, NLM_F_ECHO = 0x4, 0x8


def doit_batch(sock: socket.socket, mtype: int, bodies: list[bytes], flags: int, batch: int = 256) -> dict[str, int]:
    """One request per object (not a dump), `batch` of them per send(); the last of each batch asks
    for an acknowledgement, which comes after every answer of the batch."""
    buf = bytearray(1 << 16)
    calls = nbytes = 0
    for start in range(0, len(bodies), batch):
        chunk = bodies[start:start + batch]
        last = len(chunk) - 1
        sock.send(b"".join(C._NLMSGHDR.pack(16 + len(b), mtype, C.NLM_F_REQUEST | flags | (NLM_F_ACK if i == last else 0),
                                           i + 1, 0) + b for i, b in enumerate(chunk)))
        while True:
            n = sock.recv_into(buf)
            calls += 1
            nbytes += n
            if struct.unpack_from("=HxxI", buf, 4) == (C.NLMSG_ERROR, last + 1):
                break
    return {"recv_calls": calls, "bytes": nbytes}


def probe(ns: str, reps: int, plans: dict[str, Any], bufsizes: list[int]) -> dict[str, Any]:
    from vmqos.core.plan.handles import TC_H_ROOT
    from vmqos.core.plan.names import ifb_name

    reader = C.CounterReader(ns)
    reader.nft_counters()  # opens its nfnetlink socket
    rt, nf = reader._sock, reader._nfsock
    assert nf is not None
    for sock in (rt, nf):
        sock.settimeout(10)  # a request the kernel does not answer fails the probe, never hangs it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    index = {link["ifname"]: link["ifindex"] for link in json.loads(subprocess.run(
        ["ip", "-n", ns, "-j", "link", "show"], capture_output=True, text=True, check=True).stdout)}
    roots = [C._TCMSG.pack(0, index[d], 0, TC_H_ROOT, 0) for p in plans for d in (p, ifb_name(p))]
    names = sorted(reader.nft_counters())
    ident = C._NFGEN.pack(C.NFPROTO_NETDEV, 0, 0) + C._nla(C.NFTA_OBJ_TABLE, b"vmqos\0")
    typ = C._nla(C.NFTA_OBJ_TYPE, C._BE32.pack(C.NFT_OBJECT_COUNTER))
    by_name = [ident + C._nla(C.NFTA_OBJ_NAME, n.encode() + b"\0") + typ for n in names]
    syn = [ident + C._nla(C.NFTA_OBJ_NAME, n.encode() + b"\0") + typ for n in names if n.endswith("_syn")]
    stats_body = struct.pack("=BBHII", 0, 0, 0, 0, 1 << (C.IFLA_STATS_LINK_64 - 1))
    qdisc_body = C._TCMSG.pack(0, 0, 0, 0, 0)
    name = b"vmqos\0"
    obj_body = C._NFGEN.pack(C.NFPROTO_NETDEV, 0, 0) + C._nla(C.NFTA_OBJ_TABLE, name) + C._nla(
        C.NFTA_OBJ_TYPE, C._BE32.pack(C.NFT_OBJECT_COUNTER))
    getobj = (C.NFNL_SUBSYS_NFTABLES << 8) | C.NFT_MSG_GETOBJ
    res: dict[str, Any] = {}
    for bufsize in bufsizes:
        res[f"links raw buf {bufsize}"] = measure(reps, lambda: raw_dump(rt, C.RTM_GETSTATS, stats_body, bufsize))
        res[f"qdiscs raw buf {bufsize}"] = measure(reps, lambda: raw_dump(rt, C.RTM_GETQDISC, qdisc_body, bufsize))
        res[f"nft raw buf {bufsize}"] = measure(reps, lambda: raw_dump(nf, getobj, obj_body, bufsize))
    res["qdiscs doit: root of each port and IFB"] = measure(reps, lambda: doit_batch(rt, C.RTM_GETQDISC, roots, NLM_F_ECHO))
    res["nft doit: every counter by name"] = measure(reps, lambda: doit_batch(nf, getobj, by_name, 0))
    res["nft doit: SYN counters by name"] = measure(reps, lambda: doit_batch(nf, getobj, syn, 0))
    res["links decoded"] = measure(reps, lambda: {"n": len(reader.links())})
    res["qdiscs decoded (all)"] = measure(reps, lambda: {"n": len(reader.qdiscs())})
    res["qdiscs decoded (top only)"] = measure(reps, lambda: {"n": len(reader.qdiscs(top_only=True))})
    res["nft decoded"] = measure(reps, lambda: {"n": len(reader.nft_counters())})
    reader.close()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, nargs="+", default=[1000])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bufsizes", type=int, nargs="+", default=[32768],
                    help="recv() buffer sizes of the raw dumps (the kernel fills at most 32 KiB a chunk)")
    ap.add_argument("--json", help="also write the JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    ab.exit_on_sigterm()  # `timeout` still deletes the namespace; pyroute2's forked children do not
    out: dict[str, Any] = {"machine": ab.machine(), "by_ports": {}}
    with tempfile.TemporaryDirectory(prefix=PREFIX) as tmp:
        for n in args.ports:
            plans = plan_host(ab.host_state(n))
            ip_lines, tc_lines, nft = ab.baseline_scripts(plans)
            with ab.Namespace(n, PREFIX, guard=True) as ns:
                ab.run_batch_baseline(ns.name, ip_lines, tc_lines, nft, tmp)
                ab.settle()
                out["by_ports"][n] = res = probe(ns.name, args.reps, plans, args.bufsizes)
            print(f"### {n} ports")
            print("| read | user ms | sys ms | CPU ms | recv calls | bytes / objects |")
            print("|---|---:|---:|---:|---:|---:|")
            for k, v in res.items():
                print(f"| {k} | {v['user_ms']:.1f} | {v['sys_ms']:.1f} | {v['cpu_ms']:.1f} | {v.get('recv_calls', '')} "
                      f"| {v.get('bytes', v.get('n', ''))} |")
            sys.stdout.flush()
    ab.emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
