"""The plans of a host's ports: each port's sources of QoS combined, then planned (pure, cached)."""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Mapping

from vmqos.core.desired.effective import QosSource, combine, port_sources
from vmqos.core.model.host import EgressMode, HostState
from vmqos.core.plan.planner import PortPlan, plan_port


@lru_cache(maxsize=1 << 16)
def _plan(device: str, sources: tuple[QosSource, ...], mode: EgressMode, mtu: int) -> PortPlan:
    """plan_port is pure: a long-lived reconciler plans each distinct port once, not on every pass."""
    return plan_port(device, combine(sources, mtu=mtu), egress_mode=mode, mtu=mtu)


def plan_host(state: HostState, ports: Iterable[str] | None = None,
              overlays: Mapping[str, QosSource] | None = None,
              egress_modes: Mapping[str, EgressMode] | None = None) -> dict[str, PortPlan]:
    """Plans of the state's ports; `overlays` (port -> source) adds a source a port must also obey,
    such as a quarantine, on top of its own (the most restrictive value wins, as for any source);
    `egress_modes` overrides a port's egress mode while it lasts."""
    wanted = set(ports) if ports is not None else None
    plans: dict[str, PortPlan] = {}
    for inst, port in state.ports():
        if wanted is None or port.device in wanted:
            sources = tuple(port_sources(state, inst, port))
            if overlays and port.device in overlays:
                sources = (overlays[port.device], *sources)
            mode = (egress_modes or {}).get(port.device, port.egress_mode)
            plans[port.device] = _plan(port.device, sources, mode, port.mtu)
    return plans
