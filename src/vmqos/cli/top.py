"""`vmqos top`: every port's offered and delivered rates, live, sortable and filterable from the keyboard."""

from __future__ import annotations

import os
import select
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import click

from vmqos.cli.output import print_json, stdout
from vmqos.cli.port import kernel_options
from vmqos.cli.top_rows import ColumnRows
from vmqos.core.analysis.columns import LazyRates
from vmqos.core.desired.ports import scope_of
from vmqos.core.errors import InvalidValue, NotFound
from vmqos.core.units import human_pps, human_rate
from vmqos.services.ports import WatchedPlans, open_store

SORT_KEYS = {"o": "offered", "d": "delivered", "x": "dropped", "p": "pps", "u": "util", "n": "port"}
SPARK = "▁▂▃▄▅▆▇█"
ARROW = {"ingress": "↓ in", "egress": "↑ out"}


def _row(pr: Any, direction: str, peaks: dict[tuple[str, str], int]) -> dict[str, Any]:
    """One port's direction as a row; `peaks`: (port, direction) -> the peak rate its plan allows."""
    r = pr.rates[direction]
    return {"instance": pr.instance, "port": pr.port, "direction": direction, "limit_bps": r.limit_bps,
            "peak_bps": peaks.get((pr.port, direction)),
            "limit_pps": r.limit_pps, "offered_bps": r.offered_bps, "delivered_bps": r.delivered_bps,
            "dropped_bps": r.dropped_bps, "offered_pps": r.offered_pps, "dropped_pps": r.dropped_pps,
            "utilisation": r.utilisation, "syn_pps": pr.syn_pps if direction == "egress" else None}


def _rows(port_rates: Mapping[str, Any], peaks: dict[tuple[str, str], int] | None = None) -> list[dict[str, Any]]:
    """One row per port and direction."""
    peaks = peaks or {}
    return [_row(pr, direction, peaks) for pr in port_rates.values() for direction in pr.rates]


def _sort(rows: list[dict[str, Any]], key: str, reverse: bool) -> list[dict[str, Any]]:
    field = {"offered": "offered_bps", "delivered": "delivered_bps", "dropped": "dropped_pps",
             "pps": "offered_pps", "util": "utilisation"}.get(key)
    if field is None:
        return sorted(rows, key=lambda r: (r["port"], r["direction"]), reverse=reverse)
    return sorted(rows, key=lambda r: (r[field] or 0.0, r["port"]), reverse=not reverse)


def sparkline(values: list[float], top: float | None) -> str:
    scale = max([top or 0.0, *values]) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / scale * (len(SPARK) - 1) + 0.5))] for v in values)


def utilisation_cell(row: dict[str, Any]) -> str:
    """Delivered against the port's average rate, the limit that holds in the long run.

    A port with a peak above its average may send at the peak while its burst lasts: above 100 %
    such a port is spending its burst, not overshooting, and the cell says so with the peak as a
    multiple of the average ("200% (peak 2×)"). Above 100 % without a peak is a real overshoot."""
    util = row["utilisation"]
    if util is None:
        return "-"
    text = f"{util:.0%}"
    peak, limit = row.get("peak_bps"), row["limit_bps"]
    if util > 1 and peak and limit and peak > limit:
        ratio = f"{peak / limit:.2f}".rstrip("0").rstrip(".")
        text += f" (peak {ratio}×)"
    return text


def row_cells(row: dict[str, Any]) -> list[str]:
    """The table's cells for one row: every rate with its unit (never a raw float)."""
    if row["limit_bps"]:
        limit = human_rate(row["limit_bps"])
    else:
        limit = human_pps(row["limit_pps"]) if row["limit_pps"] else "-"
    dropped = f"{human_rate(row['dropped_bps'])} {human_pps(row['dropped_pps'])}" if row["dropped_pps"] else "0"
    return [row["instance"] or "", row["port"], ARROW[row["direction"]], limit, human_rate(row["offered_bps"]),
            human_rate(row["delivered_bps"]), dropped, human_pps(row["offered_pps"]), utilisation_cell(row)]


def _table(rows: list[dict[str, Any]], history: dict[tuple[str, str], list[float]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("instance", "port", "dir", "limit", "offered", "delivered", "dropped", "pps", "util", "history"):
        table.add_column(column, justify="right" if column not in ("instance", "port", "dir", "history") else "left")
    for r in rows:
        style = "red" if r["dropped_pps"] else None
        table.add_row(*row_cells(r), sparkline(history.get((r["port"], r["direction"]), []), r["limit_bps"]),
                      style=style)
    return table


@contextmanager
def _keys() -> Iterator[Any]:
    """Single key presses from a terminal (cbreak mode), or nothing when stdin is not one."""
    if not sys.stdin.isatty():
        def wait(timeout: float) -> str:
            time.sleep(timeout)
            return ""

        yield wait
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

    Util is delivered against the port's average rate, the limit that holds in the long run. A
    port whose limit has a peak may send at the peak while its burst lasts: then util is above
    100 % and says so, e.g. "200% (peak 2×)" (its peak is twice its average). Above 100 % with
    no peak is an overshoot. With --json, utilisation is the same ratio and peak_bps the peak.

    \b
    Keys: o offered, d delivered, x dropped, p pps, u utilisation, n name (sort); r reverse;
          / filter (type, Enter; Esc clears); q quit.
    Examples:
      vmqos top --netns lab-host
      vmqos top --netns lab-host --once --json | jq '.ports[] | select(.dropped_pps > 0)'
    """
    from vmqos.monitor.daemon import next_tick  # lazy: the monitor loads pyroute2 (~65 ms), only `top` needs it
    from vmqos.monitor.sampler import Sampler, rates

    if interval <= 0:
        raise InvalidValue("--interval", interval, "a number of seconds above 0")
    if as_json and not once:
        raise click.UsageError("--json prints one sample: add --once")
    scope = scope_of(netns)
    with open_store(db, read_only=True) as store, Sampler(netns, nft_reads="needed") as sampler:
        watched = WatchedPlans(store, scope)
        peaks: dict[tuple[str, str], int] = {}

        def sample() -> Any:
            plans, instances = watched.current()
            peaks.clear()
            peaks.update({(port, d): getattr(plan, d).peak_bps for port, plan in plans.items()
                          for d in ("ingress", "egress") if getattr(plan, d).peak_bps})
            return sampler.sample(plans, instances)

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
            rows = _sort(visible(_rows(rates(previous, current), peaks)), sort_by, False)
            if as_json:  # interval_s: the real time between the two reads, over which the rates are
                print_json({"netns": netns, "at": current.at.isoformat(),
                            "interval_s": round(current.monotonic - previous.monotonic, 3),
                            "requested_interval_s": interval, "ports": rows})
            else:
                stdout.print(_table(rows, {}, f"vmqos top: {netns or 'this namespace'}"))
            return
        from rich.live import Live

        history: dict[tuple[str, str], list[float]] = {}
        columns = ColumnRows()  # columnar rates: sorted on the columns, rows built for the screen only
        port_rates: Mapping[str, Any] = {}
        reverse, typing_filter = False, None
        got = interval  # the interval the rates are over: longer than asked when a pass outlasts it
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
                    got = current.monotonic - previous.monotonic
                    previous = current
                    next_at, _ = next_tick(next_at, time.monotonic(), interval)
                    if isinstance(port_rates, LazyRates):
                        columns.record(port_rates)
                    else:
                        rows = _rows(port_rates, peaks)
                        for r in rows:
                            series = history.setdefault((r["port"], r["direction"]), [])
                            series.append(r["delivered_bps"])
                            del series[:-24]
                height = max(1, stdout.size.height - 4)
                if isinstance(port_rates, LazyRates):
                    keep = (lambda port, inst: filter_text in port or filter_text in (inst or "")) \
                        if filter_text else None
                    order = columns.order(port_rates, sort_by, reverse, keep)[:height]
                    shown, history = columns.rows(port_rates, order, lambda pr, d: _row(pr, d, peaks))
                else:
                    shown = _sort(visible(rows), sort_by, reverse) if "rows" in locals() else []
                prompt = f"  filter: {typing_filter}_" if typing_filter is not None else (
                    f"  filter: {filter_text}" if filter_text else "")
                every = f"every {got:.3g} s" + (f" (asked {interval:g} s)" if got > 1.1 * interval else "")
                title = (f"vmqos top: {netns or 'this namespace'}  {every}  sort: {sort_by}"
                         f"{' (reversed)' if reverse else ''}{prompt}  [o d x p u n sort, r reverse, / filter, q quit]")
                # only what fits on the screen is laid out: 20,000 rows of a 10,000-port host cost seconds
                live.update(_table(shown[:height], history, title), refresh=True)
