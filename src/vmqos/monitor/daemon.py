"""The monitor: sample every managed port each interval, detect floods, answer them, count usage.

One `step` is one sample of the namespace (three reads, see `sampler`), rates against the
previous one, the detectors, and the response: a port whose instance floods gets the quarantine
policy as one more source of its effective QoS (the most restrictive value wins), applied live
through the reconciler; it is lifted after a cool-down without flood. Every detection and every
action is an event in the store, with its reason. Per-IP usage is folded into the store's hour
and day totals every `usage_interval_s`.
"""

from __future__ import annotations

import faulthandler
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Callable, Mapping

import yaml

from vmqos.core.analysis.detect import (
    DETECTORS,
    PACKET_RATE,
    SMALL_PACKETS,
    SYN_FLOOD,
    Action,
    Detection,
    Detectors,
    Thresholds,
    decide,
)
from vmqos.core.analysis.samples import PortRates, Sample
from vmqos.core.analysis.usage import account_sets, counts, deltas
from vmqos.core.desired.ports import scope_of
from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.core.formats.hostfile import from_data
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
)
from vmqos.drivers.nft import Nft
from vmqos.monitor.sampler import Sampler, rates
from vmqos.services.monitoring import lift, quarantine
from vmqos.services.ports import WatchedPlans
from vmqos.store import Store
from vmqos.store import monitor as mstore

log = logging.getLogger(__name__)

DEFAULT_QUARANTINE = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(1_000_000),
                                                    packet_rate=PacketRateLimit(1_000)))


@dataclass(frozen=True)
class MonitorConfig:
    interval_s: float = 1.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    respond: bool = True
    triggers: tuple[str, ...] = (PACKET_RATE, SMALL_PACKETS, SYN_FLOOD)
    quarantine: NetworkQos = DEFAULT_QUARANTINE
    cooldown_s: float = 30.0
    usage_interval_s: float = 60.0


EXAMPLE_CONFIG = """\
# vmqos monitor configuration (every key is optional; these are the defaults)
interval: 1                  # seconds between samples
detectors:
  packet_rate_pps: 50000     # offered packets/s in one direction
  small_packet_bytes: 200    # a mean frame this small ...
  small_packet_min_pps: 10000  # ... at this packet rate or more
  syn_share: 0.5             # TCP SYNs among what the instance sends ...
  syn_min_pps: 2000          # ... at this SYN rate or more
  pinned_utilisation: 0.98   # at its limit ...
  pinned_drop_pps: 1         # ... and dropping ...
  pinned_seconds: 30         # ... for this long (an event only, never a quarantine by default)
  for_seconds: 2             # a flood condition must hold this long
response:
  enabled: true
  triggers: [packet_rate, small_packets, syn_flood]   # detectors that quarantine
  quarantine: {egress: {rate: 1mbit, pps: 1000}}   # the host file's QoS shape
  cooldown: 30               # seconds without flood before the quarantine is lifted
usage:
  interval: 60               # seconds between folds of per-IP counters into the store
"""


def _number(data: dict[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidValue(f"{where}.{key}", value, "a number above 0")
    return float(value)


def load_config(text: str | None) -> MonitorConfig:
    """The monitor's YAML configuration (`EXAMPLE_CONFIG` shows every key); None: the defaults."""
    if text is None:
        return MonitorConfig()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidValue("monitor config", "YAML", f"it does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidValue("monitor config", type(data).__name__, "a mapping, as in `vmqos monitor --example-config`")
    unknown = set(data) - {"interval", "detectors", "response", "usage"}
    if unknown:
        raise InvalidValue("monitor config", ", ".join(sorted(unknown)), "known keys: interval, detectors, "
                           "response, usage")
    det = data.get("detectors") or {}
    known = set(Thresholds.__dataclass_fields__)
    if not isinstance(det, dict) or set(det) - known:
        raise InvalidValue("detectors", ", ".join(sorted(set(det) - known)) if isinstance(det, dict) else det,
                           f"known detector settings: {', '.join(sorted(known))}")
    thresholds = Thresholds(**det)
    resp = data.get("response") or {}
    if not isinstance(resp, dict) or set(resp) - {"enabled", "triggers", "quarantine", "cooldown"}:
        raise InvalidValue("response", resp, "keys: enabled, triggers, quarantine, cooldown")
    triggers = tuple(resp.get("triggers", MonitorConfig.triggers))
    bad = [t for t in triggers if t not in DETECTORS]
    if bad:
        raise InvalidValue("response.triggers", ", ".join(map(str, bad)), f"detectors are {', '.join(DETECTORS)}")
    quarantine = DEFAULT_QUARANTINE
    if "quarantine" in resp:
        try:
            quarantine = from_data(NetworkQos, resp["quarantine"], path=("response", "quarantine"))
        except VmqosError as exc:
            raise InvalidValue("response.quarantine", resp["quarantine"], str(exc)) from None
    usage = data.get("usage") or {}
    return MonitorConfig(interval_s=_number(data, "interval", "config", 1.0), thresholds=thresholds,
                         respond=bool(resp.get("enabled", True)), triggers=triggers, quarantine=quarantine,
                         cooldown_s=_number(resp, "cooldown", "response", 30.0),
                         usage_interval_s=_number(usage, "interval", "usage", 60.0))


def _fields(det: Detection) -> dict[str, Any]:
    """A detection's values as log fields (in --log-json lines)."""
    return {"port": det.port, "instance": det.instance, "direction": det.direction, "detector": det.detector,
            "value": det.value, "threshold": det.threshold}


def next_tick(next_at: float, now: float, interval_s: float) -> tuple[float, int]:
    """When the next pass starts, and how many ticks were let go: a pass that outlasted its
    interval does not make the passes pile up behind it (they would then run back to back, every
    one late); the next pass waits for the next tick of the schedule instead, so the monitor
    samples at the interval it can keep, a whole multiple of the one asked for."""
    next_at += interval_s
    skipped = 0
    if now > next_at:
        skipped = int((now - next_at) // interval_s) + 1
        next_at += skipped * interval_s
    return next_at, skipped


@dataclass
class StepReport:
    sample: Sample
    rates: Mapping[str, PortRates]
    started: list[Detection]
    ended: list[Detection]
    actions: list[Action]
    errors: list[str]
    interval_s: float | None = None  # the real time since the previous pass, over which the rates are


class Monitor:
    """The monitor of one network namespace; `step()` once per interval, or `run()` until stopped."""

    def __init__(self, store: Store, netns: str | None, config: MonitorConfig = MonitorConfig()) -> None:
        self.store, self.netns, self.config = store, netns, config
        self.scope = scope_of(netns)
        self.sampler = Sampler(netns, nft_reads="needed")  # every second: nft counters by name (sampler)
        self.detectors = Detectors(config.thresholds)
        self.last: Sample | None = None
        self.last_rates: Mapping[str, PortRates] = {}
        self._last_flood: dict[str, float] = {}
        self._quarantined_at: dict[str, float] = {}
        self._next_usage = 0.0
        self._plans = WatchedPlans(store, self.scope)

    def close(self) -> None:
        self.sampler.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event(self, at: datetime, port: str, kind: str, message: str, det: Detection | None = None,
               instance: str | None = None) -> None:
        mstore.add_event(self.store, self.scope, at, port, kind, message,
                         instance=det.instance if det else instance, direction=det.direction if det else None,
                         detector=det.detector if det else None)

    def plans(self) -> tuple[dict[str, Any], dict[str, str]]:
        return self._plans.current()

    def step(self, now: float | None = None) -> StepReport:
        self.store.check_file()  # deleted, replaced or immutable: stop now, not silently or by SIGBUS
        plans, instances = self.plans()
        sample = self.sampler.sample(plans, instances)
        now = sample.monotonic if now is None else now
        at = sample.at
        port_rates = rates(self.last, sample) if self.last is not None else {}
        interval = sample.monotonic - self.last.monotonic if self.last is not None else None
        self.last, self.last_rates = sample, port_rates
        started, ended = self.detectors.update(now, port_rates)
        for det in started:
            log.warning("port %s (instance %s) %s: %s detected: %s", det.port, det.instance or "-", det.direction,
                        det.detector, det.message, extra=_fields(det))
            self._event(at, det.port, "detected", det.message, det)
        for det in ended:
            log.info("port %s (instance %s) %s: %s ended", det.port, det.instance or "-", det.direction,
                     det.detector, extra=_fields(det))
            self._event(at, det.port, "ended", f"{det.detector} ended", det)
        active = self.detectors.active()
        for det in active:
            if det.detector in self.config.triggers and det.direction == "egress":
                self._last_flood[det.port] = now
        actions: list[Action] = []
        errors: list[str] = []
        if self.config.respond:
            quarantined = mstore.quarantines(self.store, self.scope)
            since = {p: self._quarantined_at.setdefault(p, now) for p in quarantined}
            for gone in set(self._quarantined_at) - set(quarantined):
                del self._quarantined_at[gone]
            actions = decide(now, active, since, self._last_flood, self.config.triggers, self.config.cooldown_s)
            for action in actions:
                error = self._act(action, at, now, instances.get(action.port))
                if error:
                    errors.append(error)
        if now >= self._next_usage:
            self._next_usage = now + self.config.usage_interval_s
            try:
                self.fold_usage(at)
            except VmqosError as exc:
                log.warning("usage fold failed (the counters are folded at the next one): %s", exc)
                errors.append(f"usage: {exc}")
        return StepReport(sample, port_rates, started, ended, actions, errors, interval)

    def _act(self, action: Action, at: datetime, now: float, instance: str | None) -> str | None:
        if action.kind == "quarantine":
            report = quarantine(self.store, self.netns, action.port, self.config.quarantine, action.reason, at=at,
                                verify=False, managed_only=False)
            if report.ok:
                self._quarantined_at[action.port] = now
        else:
            self._quarantined_at.pop(action.port, None)
            self._last_flood.pop(action.port, None)
            report = lift(self.store, self.netns, action.port, verify=False, missing_ok=True)
        fields = {"port": action.port, "instance": instance, "action": action.kind, "reason": action.reason}
        if report.ok:
            what = "quarantined" if action.kind == "quarantine" else "lifted"
            if action.kind == "quarantine":
                log.warning("port %s (instance %s) quarantined: %s", action.port, instance or "-", action.reason,
                            extra=fields)
            else:
                log.info("port %s (instance %s): quarantine lifted: %s", action.port, instance or "-", action.reason,
                         extra=fields)
            self._event(at, action.port, what, f"{what}: {action.reason}", instance=instance)
            return None
        message = "; ".join(r.error or "" for r in report.results if r.error)
        log.warning("port %s (instance %s): %s failed: %s", action.port, instance or "-", action.kind, message,
                    extra=fields)
        # a quarantine not in force was removed again by the service, so the next step tries again
        self._event(at, action.port, "failed", f"{action.kind} failed: {message}", instance=instance)
        return f"{action.port}: {action.kind} failed: {message}"

    def fold_usage(self, at: datetime | None = None) -> int:
        """Add what the accounting sets counted since the last fold to the hour/day totals; the
        number of (port, address pair) entries that counted something."""
        at = at or datetime.now(UTC)
        nft = Nft(self.netns)
        current = {}
        for name, direction in account_sets():
            current.update(counts(direction, nft.set_elements(name)))
        cursors = mstore.usage_cursors(self.store, self.scope)
        counted = deltas(cursors, current)
        mstore.record_usage(self.store, self.scope, at, counted, current)
        return len(counted)

    def run(self, stop: threading.Event, on_step: Callable[[StepReport], None] | None = None) -> None:
        c = self.config
        log.info("monitor started in %s: interval %g s, respond %s (triggers %s, cool-down %g s), usage every %g s",
                 f"netns {self.netns}" if self.netns else "this namespace", c.interval_s, "on" if c.respond else "off",
                 ", ".join(c.triggers), c.cooldown_s, c.usage_interval_s,
                 extra={"netns": self.netns, "interval_s": c.interval_s, "respond": c.respond,
                        "triggers": list(c.triggers), "cooldown_s": c.cooldown_s, "usage_interval_s": c.usage_interval_s})
        passes = 0
        if not faulthandler.is_enabled():  # a fatal signal (SIGBUS from a mapped file) still says where
            try:
                faulthandler.enable()
            except (RuntimeError, OSError, ValueError):  # no real stderr: nowhere to say it anyway
                pass
        try:
            next_at = time.monotonic()
            while not stop.is_set():
                began = time.monotonic()
                report = self.step()
                passes += 1
                took = time.monotonic() - began
                if on_step is not None:
                    on_step(report)
                next_at, skipped = next_tick(next_at, time.monotonic(), c.interval_s)
                if skipped:
                    got = (skipped + 1) * c.interval_s
                    log.warning("monitor pass took %.2f s, longer than its interval of %g s (%d ports): "
                                "%d pass(es) left out, the rates are over %.3g s", took, c.interval_s,
                                len(report.sample.ports), skipped, got,
                                extra={"seconds": took, "interval_s": c.interval_s, "ports": len(report.sample.ports),
                                       "skipped": skipped})
                stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # logged, then raised as before: journalctl says why it stopped
            interrupted = isinstance(exc, KeyboardInterrupt)
            log.log(logging.INFO if interrupted else logging.ERROR, "monitor stopped by %s after %d passes%s",
                    type(exc).__name__, passes, f": {exc}" if str(exc) else "", extra={"passes": passes},
                    exc_info=not interrupted and not isinstance(exc, VmqosError))
            raise
        try:
            self.fold_usage()
        except VmqosError as exc:
            log.warning("last usage fold failed: %s", exc)
        log.info("monitor stopped after %d passes", passes, extra={"passes": passes})


