"""Prometheus metrics of every managed port, read at scrape time (node_exporter-style names).

A custom collector, not gauges updated in the background: each scrape is one sampler pass, so
what Prometheus stores is the kernel's own cumulative counters and `rate()` does the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vmqos.core.desired.ports import scope_of
from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.core.model.network import DIRECTIONS
from vmqos.core.plan.names import chain_from
from vmqos.monitor.sampler import Sampler
from vmqos.services.ports import WatchedPlans
from vmqos.store import Store
from vmqos.store import monitor as mstore

LABELS = ["instance", "port", "direction"]
log = logging.getLogger(__name__)


class PortCollector:
    """Collects vmqos_port_* for one network namespace from the desired state in `store`."""

    def __init__(self, store: Store, netns: str | None) -> None:
        self.store, self.netns, self.scope = store, netns, scope_of(netns)
        self.sampler = Sampler(netns, nft_reads="needed")  # it exports flows and SYNs, not every counter
        self._plans = WatchedPlans(store, self.scope)
        self._lock = threading.Lock()  # one scrape at a time on the sampler's socket

    def close(self) -> None:
        self.sampler.close()

    def collect(self) -> Iterator[Any]:
        start = time.monotonic()
        with self._lock:
            sample = self.sampler.sample(*self._plans.current())
            quarantined = set(mstore.quarantines(self.store, self.scope))

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"vmqos_port_{name}", doc, labels=LABELS)

        offered_b = counter("offered_bytes", "Bytes offered to the port's limiter (frames, before any drop).")
        offered_p = counter("offered_packets", "Packets offered to the port's limiter.")
        delivered_b = counter("delivered_bytes", "Bytes the limiter let through (frames).")
        delivered_p = counter("delivered_packets", "Packets the limiter let through.")
        dropped_p = counter("dropped_packets", "Packets the limiter dropped (queue, pps limit or policer).")
        backlog = GaugeMetricFamily("vmqos_port_backlog_bytes", "Bytes queued in the port's limiter.", labels=LABELS)
        limit_bps = GaugeMetricFamily("vmqos_port_limit_bits_per_second", "The port's rate limit (frames).",
                                      labels=LABELS)
        limit_pps = GaugeMetricFamily("vmqos_port_limit_packets_per_second", "The port's packet-rate limit.",
                                      labels=LABELS)
        device = CounterMetricFamily("vmqos_port_device_bytes", "The device's own counters: what it saw before "
                                     "any limiter (rx: sent by the instance, tx: towards it).",
                                     labels=["instance", "port", "counter"])
        syn = CounterMetricFamily("vmqos_port_tcp_syn_packets", "TCP SYNs sent by the instance.",
                                  labels=["instance", "port"])
        quarantine = GaugeMetricFamily("vmqos_port_quarantined", "1 while the port is quarantined.",
                                       labels=["instance", "port"])
        for port, ps in sorted(sample.ports.items()):
            inst = ps.instance or ""
            for direction in DIRECTIONS:
                labels = [inst, port, direction]
                flow = ps.flows.get(direction)
                if flow is not None:
                    offered_b.add_metric(labels, flow.offered_bytes)
                    offered_p.add_metric(labels, flow.offered_packets)
                    delivered_b.add_metric(labels, flow.delivered_bytes)
                    delivered_p.add_metric(labels, flow.delivered_packets)
                    dropped_p.add_metric(labels, flow.dropped_packets)
                    backlog.add_metric(labels, flow.backlog_bytes)
                if (bps := ps.limits.bps(direction)) is not None:
                    limit_bps.add_metric(labels, bps)
                if (pps := ps.limits.pps(direction)) is not None:
                    limit_pps.add_metric(labels, pps)
            if ps.link is not None:
                device.add_metric([inst, port, "rx"], ps.link.rx_bytes)
                device.add_metric([inst, port, "tx"], ps.link.tx_bytes)
            syn_counter = ps.counters.get(f"{chain_from(port)}_syn")
            if syn_counter is not None:
                syn.add_metric([inst, port], syn_counter.packets)
            quarantine.add_metric([inst, port], 1 if port in quarantined else 0)
        yield from (offered_b, offered_p, delivered_b, delivered_p, dropped_p, backlog, limit_bps, limit_pps,
                    device, syn, quarantine)
        took = GaugeMetricFamily("vmqos_scrape_duration_seconds", "How long reading the namespace took.")
        took.add_metric([], time.monotonic() - start)
        log.debug("scrape: %d ports in %.3f s", len(sample.ports), time.monotonic() - start)
        yield took


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT, [ADDR6]:PORT or PORT (loopback)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidValue("--listen", text, "ADDR:PORT, e.g. 127.0.0.1:9478 or :9478 (0 picks a free port)")
    return host, int(port)


class Exporter:
    """The HTTP endpoint (/metrics); `start()` serves in a thread, `stop()` ends it."""

    def __init__(self, store: Store, netns: str | None, listen: str = "127.0.0.1:9478") -> None:
        self.collector = PortCollector(store, netns)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        host, port = parse_listen(listen)
        try:
            self.server = make_server(host, port, make_wsgi_app(self.registry), _Server, handler_class=_QuietHandler)
        except OSError as exc:
            self.collector.close()
            raise VmqosError(f"cannot listen on {listen}: {exc.strerror or exc}; choose another --listen") from None
        self.thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> "Exporter":
        self.thread = threading.Thread(target=self.server.serve_forever, name="vmqos-exporter", daemon=True)
        self.thread.start()
        netns = self.collector.netns
        log.info("exporter serving metrics on http://%s/metrics for %s", self.address,
                 f"netns {netns}" if netns else "this namespace", extra={"listen": self.address, "netns": netns})
        return self

    def stop(self) -> None:
        log.info("exporter on %s stopping", self.address)
        self.server.shutdown()
        self.server.server_close()
        self.collector.close()
