"""`vmqos verify`: real traffic through a port, judged against its limits, with a table, JSON and plots."""

from __future__ import annotations

import socket
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import click

from vmqos.cli.output import print_json, stderr, stdout
from vmqos.cli.option_help import DB_HELP, NETNS_HELP
from vmqos.core.analysis.judge import Metric, Traffic
from vmqos.core.desired.ports import scope_of
from vmqos.core.errors import InvalidValue, NotFound
from vmqos.core.model.network import DIRECTIONS
from vmqos.core.plan.planner import police_first_second
from vmqos.core.units import parse_rate
from vmqos.services.ports import open_store
from vmqos.verify.targets import Endpoint, Target, endpoint, lab_target, port_state, remote_endpoint

MIN_DURATION_S, MAX_DURATION_S = 2.0, 300.0


def _resolve(what: str, lab_name: str | None, netns: str | None, store: Any, instance_netns: str | None,
             instance_address: str | None, peer_netns: str | None, peer_address: str | None,
             peer_remote: str | None) -> Any:
    """The port, its namespace and the two ends: a lab's by its layout, any other's from the options."""
    if peer_remote is not None and (peer_netns or peer_address):
        raise InvalidValue("--peer-remote", peer_remote, "a remote peer is its address alone: not with --peer-netns "
                                                         "or --peer-address")
    if lab_name is not None:
        target = lab_target(lab_name, what)
        instance, peer = target.instance, target.peer
        if instance_netns or instance_address:
            instance = endpoint("instance", instance_netns or instance.netns,
                                instance_address or (None if instance_netns else instance.address))
        if peer_remote is not None:
            peer = remote_endpoint(peer_remote)
        elif peer_netns or peer_address:
            peer = endpoint("peer", peer_netns or peer.netns, peer_address or (None if peer_netns else peer.address))
        return replace(target, instance=instance, peer=peer)  # both at once: the two ends share a family
    state = store.load(scope_of(netns))
    pairs = list(state.ports())
    port, inst_name = what, None
    if what not in {p.device for _, p in pairs}:
        owned = [p.device for i, p in pairs if i.name == what]
        if len(owned) > 1:
            raise InvalidValue("PORT|INSTANCE", what, f"instance {what} has {len(owned)} ports "
                                                      f"({', '.join(owned)}): name one")
        if not owned:
            where = f"netns {netns}" if netns else "this namespace"
            raise NotFound(f"{what} is neither a port nor an instance that vmqos manages in {where}: "
                           f"`vmqos port set {what} --outbound 0` manages a port without limiting it; a lab's "
                           f"instances are verified with --lab LAB")
        port, inst_name = owned[0], what
    else:
        inst_name = next(i.name for i, p in pairs if p.device == what)
    inst = endpoint("instance", instance_netns, instance_address)
    peer = remote_endpoint(peer_remote) if peer_remote is not None else endpoint("peer", peer_netns, peer_address)
    return Target(port, netns, Endpoint(inst_name or inst.name, inst.netns, inst.address), peer, inst_name)


def _rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:#.4g}".rstrip(".") + f" {unit}"
    return f"{bps:.0f} bit/s"


def _cell(value: float | None, metric: Any) -> str:
    if value is None:
        return "-"
    return _rate(value) if metric is Metric.BPS else f"{value:,.0f} pkt/s"


def _ms(us: int | None) -> str:
    return "-" if us is None else f"{us / 1000:.3f}" if abs(us) < 10_000 else f"{us / 1000:.1f}"


def _table(target: Any, runs: list[Any]) -> Any:
    """One column per run, one row per measure: two directions side by side fit any terminal."""
    from rich.table import Table

    title = (f"vmqos verify {target.port}" + (f" ({target.instance_name})" if target.instance_name else "") +
             f": {target.peer.name} {target.peer.address} <-> {target.instance.name} {target.instance.address}, "
             f"port in {target.netns or 'this namespace'}")
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("")
    for run in runs:
        table.add_column(f"{run.direction} ({'to' if run.direction == 'ingress' else 'from'} the instance)")
    rows: dict[str, list[str]] = {}
    for run in runs:
        j, lat = run.judgement, run.judgement.latency
        style = "green" if j.verdict.ok else ("yellow" if j.verdict.value == "no limit" else "red")
        added = "-" if lat.added_us is None else f"{'+' if lat.added_us >= 0 else ''}{_ms(lat.added_us)} ms"
        replies = f"{lat.loaded_replies}/{lat.loaded_sent}" if lat.loaded_sent else str(lat.loaded_replies)
        cells = {
            "traffic": f"{run.traffic.value} for {run.duration_s:g} s: {run.sender}",
            "limit": run.limit.describe() + (" (peak judged)" if j.phase == "burst" else ""),
            "offered": _cell(j.offered, j.metric),
            "achieved": _cell(j.achieved, j.metric) + (
                f" ({j.measured_samples} loaded of {j.window_samples} samples after {j.window[0]:.1f} s)"
                if j.measured_samples < j.window_samples else f" (after {j.window[0]:.1f} s)"),
            "iperf3 goodput": _cell(run.iperf.received_bps, Metric.BPS),
            "error": "-" if j.error is None else f"{j.error:+.1%}",
            "1st-second peak": _cell(j.first_second_peak, j.metric) +
            (f" ({j.overshoot:+.0%})" if j.overshoot is not None else ""),
            "idle RTT": f"{_ms(lat.idle_p50_us)} ms",
            "loaded RTT p50/p95": f"{_ms(lat.loaded_p50_us)} / {_ms(lat.loaded_p95_us)} ms ({replies} replies)",
            "added latency": added,
            "verdict": f"[bold {style}]{j.verdict.value}[/]",
        }
        for name, value in cells.items():
            rows.setdefault(name, []).append(value)
    for name, values in rows.items():
        table.add_row(name, *values)
    return table


@click.command()
@click.argument("what", metavar="PORT|INSTANCE")
@click.option("--lab", "lab_name", metavar="LAB", help="The port or instance is a lab's (vm1 or tap-vm1): the port "
              "in LAB-host, the instance LAB-vmN, the peer LAB-wan, their addresses from the lab's layout.")
@click.option("--netns", metavar="NS", help=NETNS_HELP + "; not with --lab")
@click.option("--db", metavar="URL", help=DB_HELP)
@click.option("--instance-netns", metavar="NS", help="Namespace of the instance end (behind the port).")
@click.option("--instance-address", metavar="ADDR",
              help="Its IPv4 or IPv6 address (default: its first global IPv4, else IPv6).")
@click.option("--peer-netns", metavar="NS", help="Namespace of the other end, reached through the port.")
@click.option("--peer-address", metavar="ADDR", help="Its IPv4 or IPv6 address (default: as --instance-address).")
@click.option("--peer-remote", metavar="ADDR", help="The other end is outside this host, at ADDR, where an iperf3 "
              "server already listens (`iperf3 -s`, --iperf-port): the instance's end runs the client both ways "
              "(-R when the peer sends). Not with --peer-netns/--peer-address.")
@click.option("--direction", type=click.Choice(["ingress", "egress", "both"]), default="both", show_default=True,
              help="ingress: the peer sends to the instance; egress: the instance sends; both: one after the other.")
@click.option("--traffic", type=click.Choice(["tcp", "udp", "small-packets"]), default="tcp", show_default=True,
              help="tcp: one iperf3 stream; udp: 1,400-byte datagrams at twice the limit; small-packets: a flood "
                   "of 64-byte frames (iperf3 UDP, 22-byte payload) for packet-rate limits.")
@click.option("--duration", type=float, default=5.0, show_default=True,
              help=f"Seconds of load per direction ({MIN_DURATION_S:g} to {MAX_DURATION_S:g}); the first is the burst. "
                   "Low rates need longer runs: a note says when (3 Mbit/s: 5 s).")
@click.option("--offer", metavar="RATE", help="What udp or small-packets offers (tc units, e.g. 50mbit); default: "
              "twice the limit for udp (1 Gbit/s without one), as fast as it goes for small-packets.")
@click.option("--iperf-port", type=click.IntRange(1, 65535), default=5201, show_default=True,
              help="TCP/UDP port of the one-off iperf3 server on the receiving end (of the remote one "
                   "with --peer-remote).")
@click.option("--plot", "plot_path", metavar="PATH", help="Write the plot to PATH.png and PATH.svg (with "
              "--direction both: PATH-ingress.*, PATH-egress.*).")
@click.option("--plot-dir", metavar="DIR", help="Write plots as DIR/vmqos-verify-PORT-DIRECTION-TRAFFIC.png and "
              ".svg (default: the current directory).")
@click.option("--no-plot", is_flag=True, help="Write no plot.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts, with every sample, as JSON.")
@click.option("--server", metavar="URL", help="Also keep each run, with its plot, on this vmqos server (the "
              "port's dashboard page lists them); credentials from OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME "
              "(an admin, or the host's service user). A failed upload is one warning: the result stays here.")
@click.option("--host", "host_name", metavar="HOST", help="The port's host at the server (its binding:host_id; "
              "default: this machine's hostname); with --host alone the server is $VMQOS_URL.")
def verify(what: str, lab_name: str | None, netns: str | None, db: str | None, instance_netns: str | None,
           instance_address: str | None, peer_netns: str | None, peer_address: str | None, peer_remote: str | None,
           direction: str, traffic: str, duration: float, offer: str | None, iperf_port: int,
           plot_path: str | None, plot_dir: str | None, no_plot: bool, as_json: bool, server: str | None,
           host_name: str | None) -> None:
    """Drive real traffic through a port and judge it against the port's limits.

    For each direction: the idle RTT (ping from the instance to the peer), then DURATION seconds
    of iperf3 load while the port's limiters' counters are read every 100 ms and ping goes on
    every 100 ms. The delivered rate is what passed the limiters, in frames (bytes with the
    Ethernet header), as the limits count it; iperf3's goodput is shown beside it (0.956 of the
    frame rate for full-size TCP). The limits are those vmqos holds for the port (`vmqos port
    show`); a warning says when the kernel is not in sync with them.

    \b
    Judged on the samples after the first second (after a peak's burst, when it has one):
      achieved           what passed divided by the time, over the time in which the limiter
                         was loaded: its queue and what reached it held at least the limit
                         (there the limiter set the rate, not a sender recovering from a
                         loss), in bins as long as one 64 KB GSO aggregate needs to be 5 %
                         of the bytes (0.5 s at 20 Mbit/s); error = (achieved - limit) / limit
      tcp                passes when |error| <= 5 %
      udp, small-packets pass when delivered <= limit + 5 %, with offered >= 1.25 x limit
                         (else: "not enough load offered"); small packets are judged in
                         packets/s when a packet-rate limit binds before the byte limit
      1st-second peak    the highest 100 ms rate of the first second, and its overshoot
      added latency      loaded RTT p50 minus idle RTT p50
    A direction without a limit still runs and reports what it carried: "no limit".

    \b
    Exit status: 0 when every run passes; 1 when one does not (over or below the limit, not
    enough load, no limit) or the run could not be made (one line says why); 2 for bad options.

    \b
    Examples:
      vmqos verify vm1 --lab lab                          # tap-vm1 both ways, TCP, 5 s each
      vmqos verify tap-vm2 --lab lab --direction egress --traffic udp --duration 3
      vmqos verify vm3 --lab lab --traffic small-packets --plot-dir /tmp/plots --json
      vmqos verify tap-a --netns hv --instance-netns guest-a --peer-netns outside \\
          --peer-address 192.0.2.10 --direction ingress --no-plot
      vmqos verify vm1 --lab lab --instance-address fd00::1 --peer-netns lab-vm2 \\
          --peer-address fd00::2                            # IPv6, both ends given
      vmqos verify tap-a --netns hv --instance-netns guest-a --peer-remote 198.51.100.7  # iperf3 -s there
      OS_USERNAME=admin OS_PASSWORD=... OS_PROJECT_NAME=admin \\
        vmqos verify tap0123456789a --netns hv ... --server http://controller:9696 --host compute1
    """
    # lazy: verify.run reads counters through drivers.counters, which loads pyroute2 (~65 ms of every
    # `vmqos` start otherwise); only `vmqos verify` needs it
    from vmqos.verify.run import run_direction

    if lab_name is not None and netns is not None:
        raise InvalidValue("--netns", netns, f"give --lab or --netns, not both: the ports of lab {lab_name} are in "
                                             f"{lab_name}-host")
    if not MIN_DURATION_S <= duration <= MAX_DURATION_S:
        raise InvalidValue("--duration", duration, f"{MIN_DURATION_S:g} to {MAX_DURATION_S:g} seconds: the first "
                                                   "second is the burst, the steady state is judged after it")
    if sum(x is not None and x is not False for x in (plot_path, plot_dir, no_plot or None)) > 1:
        raise InvalidValue("--plot/--plot-dir/--no-plot", "several", "give at most one of them")
    offer_bps = parse_rate(offer) if offer is not None else None
    if offer_bps == 0 and traffic == "udp":
        raise InvalidValue("--offer", offer, "a rate above 0 for udp (small-packets floods without --offer)")
    kind = Traffic(traffic)
    uploader = None
    if server is not None or host_name is not None:  # checked before any traffic: a missing credential is said now
        from vmqos.cli.fleet import client

        host_name = host_name or socket.gethostname()
        uploader = client(server)
    with open_store(db) as store:
        target = _resolve(what, lab_name, netns if lab_name is None else None, store, instance_netns,
                          instance_address, peer_netns, peer_address, peer_remote)
        state = port_state(store, target.netns, target.port)
    if target.instance_name is None and state.instance:
        target = replace(target, instance_name=state.instance)
    notes = []
    if not state.in_sync:
        notes.append(f"the kernel does not hold the desired plan of {target.port}: the run is judged against the "
                     f"desired limits (`vmqos port show {target.port} --netns {target.netns}` shows the drift)")
    if direction in ("both", "egress") and (first := police_first_second(state.plan.objects)):
        notes.append(first)
    for note in notes:
        stderr.print(f"[yellow]warning[/]: {note}", markup=True)
    directions = DIRECTIONS if direction == "both" else (direction,)
    runs, plots, started = [], {}, {}
    for d in directions:
        started[d] = datetime.now(UTC)
        run = run_direction(target, state, d, kind, duration_s=duration, offer_bps=offer_bps, iperf_port=iperf_port,
                            progress=lambda text: stderr.print(f"verify {target.port}: {text}"))
        j = run.judgement
        stderr.print(f"verify {target.port}: {d} {kind.value}: {j.verdict.value}: {j.reason}")
        runs.append(run)
        if not no_plot:
            from vmqos.verify.plot import base_of, default_base, plot  # lazy: imports verify.run (pyroute2)

            base = base_of(plot_path, d, len(directions) > 1) if plot_path else \
                default_base(target.port, d, kind.value, plot_dir or ".")
            plots[d] = plot(run, target.port, base)
    ok = all(r.judgement.verdict.ok for r in runs)
    if as_json:
        print_json({
            "port": target.port, "netns": target.netns, "instance": target.instance_name, "lab": target.lab,
            "endpoints": {role: {"name": e.name, "netns": e.netns, "address": e.address}
                          for role, e in (("instance", target.instance), ("peer", target.peer))},
            "in_sync": state.in_sync, "ok": ok,
            "runs": [{**r.as_json(), "plots": list(plots.get(r.direction, ()))} for r in runs], "notes": notes})
    else:
        stdout.print(_table(target, runs))
        for r in runs:
            stdout.print(f"{r.direction} {r.traffic.value}: {r.judgement.reason}")
        for d, files in plots.items():
            stdout.print(f"plot ({d}): {files[0]}, {files[1]}")
    if uploader is not None and host_name is not None:
        from rich.markup import escape

        from vmqos.cli.verify_upload import Finished, upload_runs

        finished = [Finished(r, started[r.direction], plots[r.direction][0] if r.direction in plots else None)
                    for r in runs]
        upload_runs(uploader, target.port, host_name, finished, notes,
                    say=lambda text: stderr.print(f"verify {target.port}: {text}", markup=False),
                    warn=lambda text: stderr.print(f"[yellow]warning[/]: {escape(text)}", markup=True))
    sys.exit(0 if ok else 1)
