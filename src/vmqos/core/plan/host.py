"""The plans of a host's ports: each port's sources of QoS combined, then planned (pure, cached).

With an uplink in the state (`HostState.uplink`), its plan (`core.plan.uplink`) joins the ports'
under the uplink's device name, and the ports with a guarantee from the instance are planned with
the mark that lets the uplink find their packets.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Mapping

from vmqos.core.desired.effective import QosSource, combine, port_sources
from vmqos.core.model.host import EgressMode, HostState
from vmqos.core.plan.planner import PortPlan, plan_port
from vmqos.core.plan.uplink import Member, assign_minors, plan_uplink, uplink_mark


@lru_cache(maxsize=1 << 16)
def _plan(device: str, sources: tuple[QosSource, ...], mode: EgressMode, mtu: int, window_clamp: bool,
          uplink: str | None = None, mark: int | None = None) -> PortPlan:
    """plan_port is pure: a long-lived reconciler plans each distinct port once, not on every pass."""
    return plan_port(device, combine(sources, mtu=mtu), egress_mode=mode, mtu=mtu, uplink=uplink, uplink_mark=mark,
                     window_clamp=window_clamp)


def plan_host(state: HostState, ports: Iterable[str] | None = None,
              overlays: Mapping[str, QosSource] | None = None,
              egress_modes: Mapping[str, EgressMode] | None = None, *, uplink: bool = True) -> dict[str, PortPlan]:
    """Plans of the state's ports; `overlays` (port -> source) adds a source a port must also obey,
    such as a quarantine, on top of its own (the most restrictive value wins, as for any source);
    `egress_modes` overrides a port's egress mode while it lasts. With `uplink` and an uplink in the
    state, its plan too (whatever `ports` says: a port's guarantee changes the uplink's classes)."""
    wanted = set(ports) if ports is not None else None
    up = state.uplink.device if uplink and state.uplink is not None else None
    everything: dict[str, tuple[tuple[QosSource, ...], EgressMode, int, bool]] = {}
    for inst, port in state.ports():
        if up is None and wanted is not None and port.device not in wanted:
            continue
        sources = tuple(port_sources(state, inst, port))
        if overlays and port.device in overlays:
            sources = (overlays[port.device], *sources)
        mode = (egress_modes or {}).get(port.device, port.egress_mode)
        everything[port.device] = (sources, mode, port.mtu, port.window_clamp)
    plans = {dev: _plan(dev, *args) for dev, args in everything.items()}
    if up is not None and state.uplink is not None:
        specs = {port.device: port for _, port in state.ports()}
        members = [Member(dev, specs[dev].addresses, plan.ingress.min_bps, plan.egress.min_bps,
                          plan.ingress.peak_bps or plan.ingress.rate_bps, plan.egress.peak_bps or plan.egress.rate_bps)
                   for dev, plan in plans.items()]
        minors = assign_minors([m.port for m in members if m.guaranteed])
        for m in members:
            if m.guaranteed:
                mark = uplink_mark(minors[m.port]) if m.min_out else None
                plans[m.port] = _plan(m.port, *everything[m.port], up, mark)
        plans[up] = plan_uplink(state.uplink, members)
    if wanted is not None:
        plans = {dev: plan for dev, plan in plans.items() if dev in wanted or dev == up}
    return plans
