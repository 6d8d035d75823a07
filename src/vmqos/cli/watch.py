"""`vmqos top`, `monitor`, `events`, `usage`, `exporter` and `quarantine`: watching ports and acting on floods."""

from __future__ import annotations

import os
import re
import select
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Iterator

import click

from vmqos.cli.output import print_json, stderr, stdout
from vmqos.cli.port import kernel_options
from vmqos.core.errors import InvalidValue, NotFound
from vmqos.core.units import human_rate

SORT_KEYS = {"o": "offered", "d": "delivered", "x": "dropped", "p": "pps", "u": "util", "n": "port"}
SPARK = "▁▂▃▄▅▆▇█"
ARROW = {"ingress": "↓ in", "egress": "↑ out"}


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


# -- top --------------------------------------------------------------------------------------------


def _rows(port_rates: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for port, pr in port_rates.items():
        for direction, r in pr.rates.items():
            rows.append({"instance": pr.instance, "port": port, "direction": direction, "limit_bps": r.limit_bps,
                         "limit_pps": r.limit_pps, "offered_bps": r.offered_bps, "delivered_bps": r.delivered_bps,
                         "dropped_bps": r.dropped_bps, "offered_pps": r.offered_pps, "dropped_pps": r.dropped_pps,
                         "utilisation": r.utilisation, "syn_pps": pr.syn_pps if direction == "egress" else None})
    return rows


def _sort(rows: list[dict[str, Any]], key: str, reverse: bool) -> list[dict[str, Any]]:
    field = {"offered": "offered_bps", "delivered": "delivered_bps", "dropped": "dropped_pps",
             "pps": "offered_pps", "util": "utilisation"}.get(key)
    if field is None:
        return sorted(rows, key=lambda r: (r["port"], r["direction"]), reverse=reverse)
    return sorted(rows, key=lambda r: (r[field] or 0.0, r["port"]), reverse=not reverse)


def sparkline(values: list[float], top: float | None) -> str:
    scale = max([top or 0.0, *values]) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / scale * (len(SPARK) - 1) + 0.5))] for v in values)


def _table(rows: list[dict[str, Any]], history: dict[tuple[str, str], list[float]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("instance", "port", "dir", "limit", "offered", "delivered", "dropped", "pps", "util", "history"):
        table.add_column(column, justify="right" if column not in ("instance", "port", "dir", "history") else "left")
    for r in rows:
        limit = human_rate(r["limit_bps"]) if r["limit_bps"] else (f"{r['limit_pps']:,} pps" if r["limit_pps"] else "-")
        util = f"{r['utilisation']:.0%}" if r["utilisation"] is not None else "-"
        dropped = f"{human_rate(r['dropped_bps'])} {r['dropped_pps']:,.0f}/s" if r["dropped_pps"] else "0"
        style = "red" if r["dropped_pps"] else None
        table.add_row(r["instance"] or "", r["port"], ARROW[r["direction"]], limit, human_rate(r["offered_bps"]),
                      human_rate(r["delivered_bps"]), dropped, f"{r['offered_pps']:,.0f}", util,
                      sparkline(history.get((r["port"], r["direction"]), []), r["limit_bps"]), style=style)
    return table


@contextmanager
def _keys() -> Iterator[Any]:
    """Single key presses from a terminal (cbreak mode), or nothing when stdin is not one."""
    if not sys.stdin.isatty():
        yield lambda timeout: (time.sleep(timeout), "")[1]
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return os.read(fd, 32).decode(errors="ignore") if ready else ""

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


@click.command()
@kernel_options
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between samples.")
@click.option("--sort", "sort_by", type=click.Choice(["offered", "delivered", "dropped", "pps", "util", "port"]),
              default="delivered", show_default=True)
@click.option("--filter", "filter_text", metavar="TEXT", help="Show only ports or instances containing TEXT.")
@click.option("--once", is_flag=True, help="Take one sample (two reads --interval apart), print it and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: the sample as JSON for scripts.")
def top(netns: str | None, db: str | None, interval: float, sort_by: str, filter_text: str | None, once: bool,
        as_json: bool) -> None:
    """A live view of every managed port, busiest first: limit, offered, delivered, dropped, pps.

    Offered is what reached the limiter, delivered what it let through, dropped what it threw
    away; the device's own counters (which count before any limiter) are not used.

    \b
    Keys: o offered, d delivered, x dropped, p pps, u utilisation, n name (sort); r reverse;
          / filter (type, Enter; Esc clears); q quit.
    Examples:
      vmqos top --netns lab-host
      vmqos top --netns lab-host --once --json | jq '.ports[] | select(.dropped_pps > 0)'
    """
    from vmqos.core.desired.ports import scope_of
    from vmqos.monitor.sampler import Sampler, rates
    from vmqos.services.ports import WatchedPlans, open_store

    if interval <= 0:
        raise InvalidValue("--interval", interval, "a number of seconds above 0")
    if as_json and not once:
        raise click.UsageError("--json prints one sample: add --once")
    scope = scope_of(netns)
    with open_store(db) as store, Sampler(netns) as sampler:
        watched = WatchedPlans(store, scope)

        def sample() -> Any:
            return sampler.sample(*watched.current())

        def visible(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not filter_text:
                return rows
            return [r for r in rows if filter_text in r["port"] or filter_text in (r["instance"] or "")]

        previous = sample()
        if not previous.ports:
            where = f"netns {netns}" if netns else "this namespace"
            raise NotFound(f"no managed port in {where} (`vmqos port set` or `vmqos apply -f` manages some)")
        if once:
            time.sleep(interval)
            current = sample()
            rows = _sort(visible(_rows(rates(previous, current))), sort_by, False)
            if as_json:
                print_json({"netns": netns, "at": current.at.isoformat(), "interval_s": interval, "ports": rows})
            else:
                stdout.print(_table(rows, {}, f"vmqos top: {netns or 'this namespace'}"))
            return
        from rich.live import Live

        history: dict[tuple[str, str], list[float]] = {}
        reverse, typing_filter = False, None
        with _keys() as read_key, Live(console=stdout, auto_refresh=False, screen=sys.stdout.isatty()) as live:
            next_at = time.monotonic() + interval
            while True:
                key = read_key(next_at - time.monotonic())
                if key:
                    for ch in key:
                        if typing_filter is not None:
                            if ch in "\r\n":
                                filter_text, typing_filter = typing_filter or None, None
                            elif ch == "\x1b":
                                filter_text, typing_filter = None, None
                            elif ch in "\x7f\b":
                                typing_filter = typing_filter[:-1]
                            else:
                                typing_filter += ch
                        elif ch == "q":
                            return
                        elif ch == "r":
                            reverse = not reverse
                        elif ch == "/":
                            typing_filter = ""
                        elif ch in SORT_KEYS:
                            sort_by = SORT_KEYS[ch]
                if time.monotonic() < next_at and not key:
                    continue
                if time.monotonic() >= next_at:
                    current = sample()
                    port_rates = rates(previous, current)
                    previous = current
                    next_at += interval
                    for r in _rows(port_rates):
                        series = history.setdefault((r["port"], r["direction"]), [])
                        series.append(r["delivered_bps"])
                        del series[:-24]
                    rows = _rows(port_rates)
                shown = _sort(visible(rows), sort_by, reverse) if "rows" in locals() else []
                prompt = f"  filter: {typing_filter}_" if typing_filter is not None else (
                    f"  filter: {filter_text}" if filter_text else "")
                title = (f"vmqos top: {netns or 'this namespace'}  sort: {sort_by}{' (reversed)' if reverse else ''}"
                         f"{prompt}  [o d x p u n sort, r reverse, / filter, q quit]")
                live.update(_table(shown, history, title), refresh=True)


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
    from vmqos.monitor.daemon import EXAMPLE_CONFIG, Monitor, load_config
    from vmqos.services.ports import open_store

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
            from vmqos.monitor.exporter import Exporter

            exporter = Exporter(store, netns, listen).start()
            stderr.print(f"metrics on http://{exporter.address}/metrics")
        timer = threading.Timer(duration, stop.set) if duration else None
        if timer:
            timer.daemon = True
            timer.start()
        seen = 0

        def report(step: Any) -> None:
            nonlocal seen
            from vmqos.store.monitor import events

            for ev in events(mstore_store, mon.scope, after_id=seen):
                seen = ev.id
                stdout.print(_event_line(ev))
            for error in step.errors:
                stderr.print(f"[red]error[/]: {error}", markup=True)

        from vmqos.store.monitor import events as _events

        mstore_store = store
        last = _events(store, mon.scope, limit=1)
        seen = last[-1].id if last else 0
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
def events(netns: str | None, db: str | None, follow: bool, since: str | None, port: str | None, limit: int,
           as_json: bool) -> None:
    """Flood detections and the actions taken, with their reasons, oldest first.

    \b
    Examples:
      vmqos events --netns lab-host --since 1h
      vmqos events --netns lab-host --follow --json
    """
    import json

    from vmqos.core.desired.ports import scope_of
    from vmqos.services.ports import open_store
    from vmqos.store.monitor import events as read

    scope = scope_of(netns)
    with open_store(db) as store:
        found = read(store, scope, since=parse_since(since), port=port, limit=limit)
        if as_json and not follow:
            print_json([e.as_json() for e in found])
            return
        for ev in found:
            click.echo(json.dumps(ev.as_json()) if as_json else _event_line(ev))
        last = found[-1].id if found else max((e.id for e in read(store, scope, limit=1)), default=0)
        try:
            while follow:
                time.sleep(0.5)
                for ev in read(store, scope, after_id=last, port=port):
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
def usage(netns: str | None, db: str | None, port: str | None, since: str | None, granularity: str, min_bytes: str,
          collect: bool, as_json: bool) -> None:
    """Bytes and packets per instance address and remote address, per hour or per day.

    Counted by IP on the port itself (no SPAN port, immune to a poisoned ARP cache): towards
    the instance before its HTB queue, from it after its limits. A running `vmqos monitor` folds
    the counters every minute; `--collect` (the default) folds them now.

    \b
    Examples:
      vmqos usage --netns lab-host --since 1d --by hour
      vmqos usage --netns lab-host --port tap-vm1 --json
    """
    from vmqos.core.desired.ports import scope_of
    from vmqos.core.units import human_size, parse_size
    from vmqos.monitor.daemon import Monitor
    from vmqos.services.ports import open_store
    from vmqos.store.monitor import usage as read

    smallest = parse_size(min_bytes)
    scope = scope_of(netns)
    with open_store(db) as store:
        if collect:
            with Monitor(store, netns) as mon:
                mon.fold_usage()
        totals = [t for t in read(store, scope, granularity=granularity, since=parse_since(since), port=port)
                  if t.bytes >= smallest]
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
    from vmqos.monitor.exporter import Exporter
    from vmqos.services.ports import open_store

    with open_store(db) as store:
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
    from vmqos.core.desired.ports import scope_of
    from vmqos.monitor.daemon import load_config
    from vmqos.services.ports import open_store, reconcile_ports
    from vmqos.store.monitor import (
        Quarantine,
        add_event,
        lift_quarantine,
        put_quarantine,
    )

    config = load_config(open(config_file).read() if config_file else None)
    scope = scope_of(netns)
    with open_store(db) as store:
        state = store.load(scope)
        if device not in {p.device for _, p in state.ports()}:
            raise NotFound(f"port {device} is not managed in {netns or 'this namespace'}")
        now = datetime.now(UTC)
        put_quarantine(store, scope, Quarantine(device, config.quarantine, reason, now))
        report = reconcile_ports(store, netns, state, [device])
        if not report.ok:
            lift_quarantine(store, scope, device)
            raise click.ClickException("; ".join(r.error or "" for r in report.results if r.error))
        add_event(store, scope, now, device, "quarantined", f"quarantined: {reason}")
    stdout.print(f"{device}: quarantined ({reason})")


@quarantine.command("lift")
@click.argument("device")
@kernel_options
def quarantine_lift(device: str, netns: str | None, db: str | None) -> None:
    from vmqos.core.desired.ports import scope_of
    from vmqos.services.ports import open_store, reconcile_ports
    from vmqos.store.monitor import add_event, lift_quarantine

    scope = scope_of(netns)
    with open_store(db) as store:
        if not lift_quarantine(store, scope, device):
            raise NotFound(f"port {device} is not quarantined in {netns or 'this namespace'}")
        report = reconcile_ports(store, netns, store.load(scope), [device])
        add_event(store, scope, datetime.now(UTC), device, "lifted", "lifted by hand")
    stdout.print(f"{device}: quarantine lifted")
    if not report.ok:
        raise click.ClickException("; ".join(r.error or "" for r in report.results if r.error))


@quarantine.command("list")
@kernel_options
@click.option("--json", "as_json", is_flag=True)
def quarantine_list(netns: str | None, db: str | None, as_json: bool) -> None:
    from vmqos.core.desired.ports import scope_of
    from vmqos.core.formats.hostfile import to_data
    from vmqos.services.ports import open_store
    from vmqos.store.monitor import quarantines

    with open_store(db) as store:
        found = quarantines(store, scope_of(netns))
    if as_json:
        print_json([{"port": q.device, "since": q.since.isoformat(), "reason": q.reason, "qos": to_data(q.qos)}
                    for q in found.values()])
        return
    if not found:
        stdout.print("no port is quarantined")
    for q in found.values():
        stdout.print(f"{q.device}: since {q.since:%Y-%m-%d %H:%M:%S} UTC: {q.reason}")


COMMANDS = (top, monitor, events, usage, exporter, quarantine)
