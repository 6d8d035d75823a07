"""A run's rate and RTT over time, with the limit drawn in, as PNG and SVG (matplotlib, Agg, no display)."""

from __future__ import annotations

import os
import re

from vmqos.core.analysis.judge import STEADY_AFTER_S, TOLERANCE, Metric, Verdict
from vmqos.verify.run import Run

_COLOURS = {"delivered": "#1f5fa8", "offered": "#9aa5b1", "limit": "#c0392b", "rtt": "#7b3fa0", "idle": "#555555"}


def default_base(port: str, direction: str, traffic: str, directory: str = ".") -> str:
    """`DIR/vmqos-verify-<port>-<direction>-<traffic>`: the plot's path without its suffix."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", port)
    return os.path.join(directory, f"vmqos-verify-{safe}-{direction}-{traffic}")


def base_of(path: str, direction: str, several: bool) -> str:
    """A `--plot PATH` without .png/.svg; with several runs each gets `-<direction>` before the suffix."""
    root, ext = os.path.splitext(path)
    if ext.lower() not in (".png", ".svg"):
        root = path
    return f"{root}-{direction}" if several else root


def plot(run: Run, port: str, base: str) -> tuple[str, str]:
    """Write `base`.png and `base`.svg; their paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    j = run.judgement
    pps = j.metric is Metric.PPS
    scale, unit = (1e3, "kpackets/s") if pps else (1e6, "Mbit/s")
    fig = Figure(figsize=(9, 6), layout="constrained")
    FigureCanvasAgg(fig)
    rate_ax, rtt_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    times = [s.start_s for s in run.samples] + [run.samples[-1].end_s] if run.samples else []

    def steps(values: list[float]) -> list[float]:
        return [v / scale for v in values] + ([values[-1] / scale] if values else [])

    rate_ax.axvspan(0, STEADY_AFTER_S, color="#f3e9d2", alpha=0.6, lw=0, label="first second (burst)")
    rate_ax.step(times, steps([s.offered(j.metric) for s in run.samples]), where="post", color=_COLOURS["offered"],
                 lw=1.2, ls=(0, (4, 2)), label="offered to the limiter")
    rate_ax.step(times, steps([s.delivered(j.metric) for s in run.samples]), where="post",
                 color=_COLOURS["delivered"], lw=2, label="delivered (port counters, frames)")
    if j.limit:
        rate_ax.axhline(j.limit / scale, color=_COLOURS["limit"], ls="--", lw=1.5,
                        label=f"limit {j.limit / scale:,.3g} {unit}" + (" (peak)" if j.phase == "burst" else ""))
        rate_ax.axhspan(j.limit * (1 - TOLERANCE) / scale, j.limit * (1 + TOLERANCE) / scale,
                        xmin=0, xmax=1, color=_COLOURS["limit"], alpha=0.08, lw=0, label=f"±{TOLERANCE:.0%}")
    if j.average and j.average != j.limit:
        rate_ax.axhline(j.average / scale, color=_COLOURS["limit"], ls=":", lw=1.2,
                        label=f"average {j.average / scale:,.3g} {unit}")
    busy = list(j.measured)
    top = max([*(s.offered(j.metric) for s in run.samples), *(s.delivered(j.metric) for s in run.samples),
               j.limit or 0, j.average or 0]) / scale
    if busy:
        rate_ax.broken_barh(busy, (0, (top or 1) * 0.03), color=_COLOURS["delivered"], alpha=0.35, lw=0,
                            label="the samples judged")
    rate_ax.axvline(j.window[0], color="#888888", lw=0.8, ls=":")
    rate_ax.set_ylabel(f"rate ({unit})")
    rate_ax.set_ylim(0, (top or 1) * 1.45)  # room for the legend above the data
    rate_ax.grid(alpha=0.3)
    rate_ax.legend(loc="upper center", ncol=3, fontsize=8, framealpha=0.9)
    error = "" if j.error is None else f", error {j.error:+.1%}"
    colour = "#1e7d32" if j.verdict is Verdict.PASS else "#b03a2e"
    rate_ax.set_title(f"vmqos verify {port} {run.direction} {run.traffic.value}: {j.verdict.value}\n"
                      f"achieved {j.achieved / scale:,.4g} {unit} ({j.measured_samples} of {j.window_samples} "
                      f"samples after {j.window[0]:.1f} s){error}",
                      fontsize=11, color=colour)

    loaded = [(r.at_s, r.rtt_us / 1000) for r in run.loaded]
    if loaded:
        rtt_ax.plot([t for t, _ in loaded], [ms for _, ms in loaded], marker="o", ms=3, lw=1,
                    color=_COLOURS["rtt"], label="RTT under load (ping, instance -> peer)")
    lat = j.latency
    if lat.idle_p50_us is not None:
        rtt_ax.axhline(lat.idle_p50_us / 1000, color=_COLOURS["idle"], ls="--", lw=1,
                       label=f"idle RTT p50 {lat.idle_p50_us / 1000:.3f} ms")
    rtt_ax.set_xlabel("seconds since the load started")
    rtt_ax.set_ylabel("RTT (ms)")
    highest = max([ms for _, ms in loaded] + [(lat.idle_p50_us or 0) / 1000]) or 1
    rtt_ax.set_ylim(0, highest * 1.4)
    rtt_ax.set_xlim(0, max(run.duration_s, times[-1] if times else 0))
    rtt_ax.grid(alpha=0.3)
    rtt_ax.legend(loc="upper center", ncol=2, fontsize=8, framealpha=0.9)
    directory = os.path.dirname(base)
    if directory:
        os.makedirs(directory, exist_ok=True)
    png, svg = f"{base}.png", f"{base}.svg"
    fig.savefig(png, dpi=110)
    fig.savefig(svg, metadata={"Date": None})
    return png, svg
