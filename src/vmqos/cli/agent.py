"""`vmqos agent`: the per-host agent that follows `vmqos server` and enforces its desired state here.

Thin: the options become `AgentSettings`, the feed comes from `agent.feed.feed_for`, and
`agent.daemon.Agent` does the rest; SIGTERM and SIGINT stop it cleanly, leaving every limit in place.
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import Any

import click

from vmqos.cli.logs import daemon_logs
from vmqos.core.errors import InvalidValue
from vmqos.core.model.host import check_netns_name, check_object_name
from vmqos.services.agent_cache import DEFAULT_CACHE, cache_url


@click.command()
@click.option("--server", required=True, metavar="URL", help="the vmqos server, e.g. http://controller:9696 "
              "(credentials from $OS_USERNAME, $OS_PASSWORD, $OS_PROJECT_NAME: a user with the service role "
              "bound to this host)")
@click.option("--host", "host_name", metavar="NAME", help="this host's name at the server, its ports' "
              "binding:host_id (default: this machine's hostname)")
@click.option("--netns", metavar="NS", help="the network namespace that holds the ports' devices (default: this "
              "one; a lab's host namespace is LAB-host)")
@click.option("--cache", metavar="PATH", help=f"the agent's own store: the last desired state, what it placed, "
              f"the revision (default: {DEFAULT_CACHE}; a database URL works too)")
@click.option("--resync", type=float, default=30.0, show_default=True, metavar="S",
              help="read every port back and repair drift every S seconds")
@click.option("--metrics-listen", metavar="ADDR:PORT", help="serve Prometheus metrics here (e.g. 127.0.0.1:9478)")
@click.option("--libvirt", "libvirt_uri", metavar="URI", help="follow this libvirt's domain events (default: "
              "libvirt's own default URI, skipped with one line when nothing answers there)")
@click.option("--monitor-config", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="the monitor's thresholds and responses (`vmqos monitor --example-config` shows them)")
def agent(server: str, host_name: str | None, netns: str | None, cache: str | None, resync: float,
          metrics_listen: str | None, libvirt_uri: str | None, monitor_config: str | None) -> None:
    """Follow this host's desired state on a vmqos server and enforce it on the kernel (needs root).

    It enforces its cached state at once (a dead server never removes a limit), follows the
    server's changes, places a port's limits as soon as its device appears (a VM's tap created
    on start, reboot or migration), repairs drift every --resync seconds, and reports each
    port's status, rates, floods and quarantines once a second. Stopping it leaves every limit
    in place.

    \b
    Example:
      OS_USERNAME=agent-compute1 OS_PASSWORD=... OS_PROJECT_NAME=service \\
        vmqos agent --server http://controller:9696 --host compute1 --metrics-listen 127.0.0.1:9478
    """
    from vmqos.agent.daemon import AgentSettings, serve  # lazy: pyroute2, the reconciler
    from vmqos.agent.feed import feed_for
    from vmqos.monitor.daemon import load_config

    host = host_name or socket.gethostname()
    if not host or not check_object_name("host", host):
        raise InvalidValue("--host", host, "give this host's name at the server, e.g. compute1")
    if netns is not None:
        check_netns_name(netns)
    if not 0 < resync <= 86400:
        raise InvalidValue("--resync", resync, "seconds between read-backs, above 0 (e.g. 30)")
    text = None
    if monitor_config is not None:
        with open(monitor_config) as f:
            text = f.read()
    settings = AgentSettings(server, host, netns, resync_s=resync, metrics_listen=metrics_listen,
                             libvirt=libvirt_uri, monitor=load_config(text))
    feed = feed_for(server, host, netns)
    daemon_logs("vmqos.agent", "vmqos.services.enforcer", "vmqos.monitor", "vmqos.drivers.libvirt_events")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve(settings, feed, cache_url(cache), stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
