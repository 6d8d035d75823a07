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

import numpy as np

from vmqos.core.analysis.columns import FLOW_FIELDS
from vmqos.core.analysis.samples import PortLimits, Sample
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

        yield from families(sample, quarantined)
        took = GaugeMetricFamily("vmqos_scrape_duration_seconds", "How long reading the namespace took.")
        took.add_metric([], time.monotonic() - start)
        log.debug("scrape: %d ports in %.3f s", len(sample.ports), time.monotonic() - start)
        yield took


PortLine = tuple[str, str, list[Any], PortLimits, "tuple[int, int] | None", "int | None"]


def _ports(sample: Sample) -> Iterator[PortLine]:
    """Per port, by name: (port, instance or "", per direction its flow's FLOW_FIELDS or None, limits,
    the device's (rx, tx) bytes or None, SYN packets or None). A columnar sample is read from its
    columns (one list per column, no `PortSample` built: 10,000 ports a scrape); records from theirs."""
    cols = sample.columns
    if cols is None:
        for port, ps in sorted(sample.ports.items()):
            syn_counter = ps.counters.get(f"{chain_from(port)}_syn")
            yield (port, ps.instance or "", [None if (f := ps.flows.get(d)) is None else
                                             [getattr(f, name) for name in FLOW_FIELDS] for d in DIRECTIONS],
                   ps.limits, None if ps.link is None else (ps.link.rx_bytes, ps.link.tx_bytes),
                   None if syn_counter is None else syn_counter.packets)
        return
    table = cols.table
    flows, has = cols.flows.tolist(), cols.has_flow.tolist()
    rx, tx, has_link = cols.links[:, 2].tolist(), cols.links[:, 3].tolist(), cols.has_link.tolist()
    syn, has_syn = cols.syn.tolist(), cols.has_syn.tolist()
    for row in np.argsort(table.name_rank).tolist():
        port = table.ports[row]
        yield (port, cols.instances.get(port) or "", [flows[row][d] if has[row][d] else None for d in (0, 1)],
               table.limits[row], (rx[row], tx[row]) if has_link[row] else None, syn[row] if has_syn[row] else None)


def families(sample: Sample, quarantined: set[str]) -> Iterator[Any]:
    """The vmqos_port_* families of one sample (records or columns: the same metrics)."""
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
    flow_families: tuple[Any, ...] = (offered_b, offered_p, delivered_b, delivered_p, dropped_p, backlog)  # in FLOW_FIELDS' order
    for port, inst, port_flows, limits, link, syn_packets in _ports(sample):
        for direction, flow in zip(DIRECTIONS, port_flows):
            labels = [inst, port, direction]
            if flow is not None:
                for family, value in zip(flow_families, flow):
                    family.add_metric(labels, value)
            if (bps := limits.bps(direction)) is not None:
                limit_bps.add_metric(labels, bps)
            if (pps := limits.pps(direction)) is not None:
                limit_pps.add_metric(labels, pps)
        if link is not None:
            device.add_metric([inst, port, "rx"], link[0])
            device.add_metric([inst, port, "tx"], link[1])
        if syn_packets is not None:
            syn.add_metric([inst, port], syn_packets)
        quarantine.add_metric([inst, port], 1 if port in quarantined else 0)
    yield from (offered_b, offered_p, delivered_b, delivered_p, dropped_p, backlog, limit_bps, limit_pps,
                device, syn, quarantine)


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
