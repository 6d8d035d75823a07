"""`vmqos monitor`, `events`, `usage`, `exporter` and `quarantine`: watching ports and acting on floods.

`vmqos top` lives in `cli.top`; `COMMANDS` lists all six in the order the CLI shows them.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from vmqos.cli.output import print_json, stderr, stdout
from vmqos.cli.port import kernel_options, remote, server_options
from vmqos.cli.top import ARROW, top
from vmqos.core.errors import InvalidValue
from vmqos.core.formats.hostfile import to_data
from vmqos.core.units import human_size, parse_size
from vmqos.services import monitoring
from vmqos.services.ports import open_store

# vmqos.monitor is imported inside the commands that need it: its sampler reads counters through
# pyroute2 and its exporter loads prometheus_client, together ~90 ms of every `vmqos` start.


def parse_since(text: str | None) -> datetime | None:
    """`30m`, `2h`, `7d` ago, or an ISO date/time (UTC when it has no zone)."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue("--since", text, "a duration ago (30m, 2h, 7d) or an ISO time (2026-12-02T08:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- monitor ----------------------------------------------------------------------------------------


def _event_line(ev: Any) -> str:
    where = ev.port + (f" ({ev.instance})" if ev.instance else "") + (f" {ev.direction}" if ev.direction else "")
    return f"{ev.at:%Y-%m-%d %H:%M:%S} {ev.kind:<11} {where}: {ev.message}"


@click.command()
@kernel_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML thresholds and responses "
              "(--example-config prints every key with its default).")
@click.option("--listen", metavar="ADDR:PORT", help="Also serve Prometheus metrics here (e.g. 127.0.0.1:9478).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--example-config", is_flag=True, help="Print the configuration with its defaults and exit.")
def monitor(netns: str | None, db: str | None, config_file: str | None, listen: str | None, duration: float | None,
            example_config: bool) -> None:
    """Sample every managed port, detect floods, quarantine their source, count usage per IP.

    Each interval: one pass over the namespace's counters; detectors on offered traffic (packet
    rate, small packets, SYN share, a port pinned at its limit); a flood from an instance gets
    the quarantine policy live (as one more source of its QoS, the strictest value wins), lifted
    after a cool-down without flood. Events go to the store (`vmqos events`), per-IP totals too
    (`vmqos usage`).

    \b
    Examples:
      vmqos monitor --netns lab-host
      vmqos monitor --netns lab-host --config monitor.yaml --listen 127.0.0.1:9478
      vmqos monitor --example-config > monitor.yaml
    """
    from vmqos.monitor.daemon import EXAMPLE_CONFIG, Monitor, load_config  # lazy: pyroute2

    if example_config:
        sys.stdout.write(EXAMPLE_CONFIG)
        return
    text = None
    if config_file is not None:
        with open(config_file) as f:
            text = f.read()
    config = load_config(text)
    stop = threading.Event()
    with open_store(db) as store, Monitor(store, netns, config) as mon:
        exporter = None
        if listen:
            from vmqos.monitor.exporter import Exporter  # lazy: prometheus_client and pyroute2

            exporter = Exporter(store, netns, listen).start()
            stderr.print(f"metrics on http://{exporter.address}/metrics")
        timer = threading.Timer(duration, stop.set) if duration else None
        if timer:
            timer.daemon = True
            timer.start()
        seen = 0

        def report(step: Any) -> None:
            nonlocal seen
            for ev in monitoring.events(store, netns, after_id=seen):
                seen = ev.id
                stdout.print(_event_line(ev))
            for error in step.errors:
                stderr.print(f"[red]error[/]: {error}", markup=True)

        seen = monitoring.last_event_id(store, netns)
        stderr.print(f"monitoring {netns or 'this namespace'} every {config.interval_s:g} s (Ctrl-C stops)")
        try:
            mon.run(stop, report)
        except KeyboardInterrupt:
            stop.set()
        finally:
            if exporter:
                exporter.stop()


@click.command()
@kernel_options
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they come (Ctrl-C stops).")
@click.option("--since", metavar="WHEN", help="Only events since WHEN: 30m, 2h, 7d or an ISO time.")
@click.option("--port", metavar="DEV", help="Only this port's events.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many (the newest).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line with --follow, a list otherwise.")
@server_options("with --server: only this host's")
def events(netns: str | None, db: str | None, follow: bool, since: str | None, port: str | None, limit: int,
           as_json: bool, server: str | None, host: str | None) -> None:
    """Flood detections and the actions taken, with their reasons, oldest first.

    With --server URL (or --host HOST and $VMQOS_URL): what the agents reported to that server, the
    newest --limit of them, of every host or of HOST's; with --follow, then each new one as the
    server receives it (its long poll), until Ctrl-C.

    \b
    Examples:
      vmqos events --netns lab-host --since 1h
      vmqos events --netns lab-host --follow --json
      vmqos events --server http://ctl:9696 --host compute1 --limit 20
      vmqos events --server http://ctl:9696 --follow --json
    """
    import json

    if remote(server, host, netns, db, False):
        from vmqos.cli.fleet import events_remote

        events_remote(server, host, port, parse_since(since), limit, as_json, follow)
        return

    with open_store(db, read_only=True) as store:
        found = monitoring.events(store, netns, since=parse_since(since), port=port, limit=limit)
        if as_json and not follow:
            print_json([e.as_json() for e in found])
            return
        for ev in found:
            click.echo(json.dumps(ev.as_json()) if as_json else _event_line(ev))
        last = found[-1].id if found else monitoring.last_event_id(store, netns)
        try:
            while follow:
                time.sleep(0.5)
                for ev in monitoring.events(store, netns, after_id=last, port=port):
                    last = ev.id
                    click.echo(json.dumps(ev.as_json()) if as_json else _event_line(ev))
                    sys.stdout.flush()
        except KeyboardInterrupt:
            pass


@click.command()
@kernel_options
@click.option("--port", metavar="DEV", help="Only this port.")
@click.option("--since", metavar="WHEN", help="Periods since WHEN: 30m, 2h, 7d or an ISO time (default: all).")
@click.option("--by", "granularity", type=click.Choice(["hour", "day"]), default="hour", show_default=True)
@click.option("--min-bytes", metavar="SIZE", default="0", show_default=True,
              help="Leave out pairs that moved less (tc sizes: 1kb = 1,024 bytes): neighbour discovery and "
                   "IGMP show up as tiny multicast pairs.")
@click.option("--collect/--no-collect", default=True, show_default=True,
              help="Fold what the kernel counted since the last fold into the store first.")
@click.option("--json", "as_json", is_flag=True, help="The totals as JSON.")
@server_options("with --server: the host the port is on")
def usage(netns: str | None, db: str | None, port: str | None, since: str | None, granularity: str, min_bytes: str,
          collect: bool, as_json: bool, server: str | None, host: str | None) -> None:
    """Bytes and packets per instance address and remote address, per hour or per day.

    Counted by IP on the port itself (no SPAN port, immune to a poisoned ARP cache): towards
    the instance before its HTB queue, from it after its limits. A running `vmqos monitor` folds
    the counters every minute; `--collect` (the default) folds them now.

    With --server URL --host HOST --port DEV: the port's usage of the current hour and day as its
    host's agent last reported it to that server (the biggest address pairs of each window).

    \b
    Examples:
      vmqos usage --netns lab-host --since 1d --by hour
      vmqos usage --netns lab-host --port tap-vm1 --json
      vmqos usage --server http://ctl:9696 --host compute1 --port tap-vm1 --by day
    """
    smallest = parse_size(min_bytes)
    if remote(server, host, netns, db, since is not None or not collect,
              "--since and --no-collect read this host's store; a server keeps each port's current hour and day"):
        from vmqos.cli.fleet import usage_remote

        usage_remote(server, host, port, granularity, smallest, as_json)
        return
    from vmqos.monitor.daemon import Monitor  # lazy: pyroute2

    with open_store(db, read_only=not collect) as store:
        if collect:
            with Monitor(store, netns) as mon:
                mon.fold_usage()
        totals = monitoring.usage(store, netns, granularity=granularity, since=parse_since(since), port=port, min_bytes=smallest)
    if as_json:
        print_json([t.as_json() for t in totals])
        return
    from rich.table import Table

    table = Table(title=f"usage per {granularity} ({netns or 'this namespace'})", title_justify="left",
                  show_edge=False)
    for column in ("period (UTC)", "port", "direction", "instance address", "remote address", "bytes", "packets"):
        table.add_column(column, justify="right" if column in ("bytes", "packets") else "left")
    for t in totals:
        table.add_row(f"{t.period_start:%Y-%m-%d %H:00}" if granularity == "hour" else f"{t.period_start:%Y-%m-%d}",
                      t.key.device, ARROW[t.key.direction], t.key.local_ip, t.key.remote_ip, human_size(t.bytes),
                      f"{t.packets:,}")
    stdout.print(table)


@click.command()
@kernel_options
@click.option("--listen", metavar="ADDR:PORT", default="127.0.0.1:9478", show_default=True)
def exporter(netns: str | None, db: str | None, listen: str) -> None:
    """Serve Prometheus metrics of every managed port (vmqos_port_*_total, limits, quarantines).

    \b
    Example:
      vmqos exporter --netns lab-host --listen 127.0.0.1:9478 &
      curl -s 127.0.0.1:9478/metrics | grep vmqos_port_dropped_packets_total
    """
    from vmqos.monitor.exporter import Exporter  # lazy: prometheus_client and pyroute2

    with open_store(db, read_only=True) as store:  # it only reads: no write access needed
        server = Exporter(store, netns, listen).start()
        stderr.print(f"metrics on http://{server.address}/metrics (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


@click.group()
def quarantine() -> None:
    """Put a port under the quarantine policy now, or lift it (what `vmqos monitor` does on a flood).

    \b
    Examples:
      vmqos quarantine set tap-vm3 --netns lab-host --reason "abuse report 4711"
      vmqos quarantine list --netns lab-host
      vmqos quarantine lift tap-vm3 --netns lab-host
    """


@quarantine.command("set")
@click.argument("device")
@kernel_options
@click.option("--reason", default="set by hand", show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Take the quarantine policy from "
              "this monitor configuration (default: egress 1 Mbit/s and 1,000 packets/s).")
def quarantine_set(device: str, netns: str | None, db: str | None, reason: str, config_file: str | None) -> None:
    from vmqos.monitor.daemon import load_config  # lazy: pyroute2

    config = load_config(open(config_file).read() if config_file else None)
    with open_store(db) as store:
        now = datetime.now(UTC)
        report = monitoring.quarantine(store, netns, device, config.quarantine, reason, at=now)
        if not report.ok:
            raise click.ClickException("; ".join(r.error or "" for r in report.results if r.error))
        monitoring.add_event(store, netns, device, "quarantined", f"quarantined: {reason}", at=now)
    stdout.print(f"{device}: quarantined ({reason})")


@quarantine.command("lift")
@click.argument("device")
@kernel_options
def quarantine_lift(device: str, netns: str | None, db: str | None) -> None:
    with open_store(db) as store:
        report = monitoring.lift(store, netns, device)
        monitoring.add_event(store, netns, device, "lifted", "lifted by hand")
    stdout.print(f"{device}: quarantine lifted")
    if not report.ok:
        raise click.ClickException("; ".join(r.error or "" for r in report.results if r.error))


@quarantine.command("list")
@kernel_options
@click.option("--json", "as_json", is_flag=True, help="print the quarantines as JSON")
@server_options("with --server: only this host's")
def quarantine_list(netns: str | None, db: str | None, as_json: bool, server: str | None, host: str | None) -> None:
    """The ports under quarantine: this host's, or with --server URL those its agents reported (of HOST's with
    --host).

    \b
    Examples:
      vmqos quarantine list --netns lab-host
      vmqos quarantine list --server http://ctl:9696 --json
    """
    if remote(server, host, netns, db, False):
        from vmqos.cli.fleet import quarantines_remote

        quarantines_remote(server, host, as_json)
        return
    with open_store(db, read_only=True) as store:
        found = monitoring.quarantined(store, netns)
    if as_json:
        print_json([{"port": q.device, "since": q.since.isoformat(), "reason": q.reason, "qos": to_data(q.qos)}
                    for q in found.values()])
        return
    if not found:
        stdout.print("no port is quarantined")
    for q in found.values():
        stdout.print(f"{q.device}: since {q.since:%Y-%m-%d %H:%M:%S} UTC: {q.reason}")


COMMANDS = (top, monitor, events, usage, exporter, quarantine)
